// Streaming ratings at a server until told to stop, remembering which ones
// it acknowledged: the load of the tests that kill or stop a server and
// then check that nothing acknowledged was lost.
#ifndef RECSYS_TESTS_RATING_STREAM_H_
#define RECSYS_TESTS_RATING_STREAM_H_

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys::testing {

using AckedRatings = std::set<std::pair<std::string, std::string>>;

// Streams ratings by users "<prefix><n % users>" of items "i<7n % items>"
// over one RateStream until `stop` is set or the server goes away. Each
// (user, item) the server accepts is added to *acked under *mu.
inline void StreamRatingsUntil(recsys::v1::Recommender::StubInterface& stub,
                               const std::string& prefix, int users, int items,
                               const std::atomic<bool>& stop,
                               AckedRatings* acked, std::mutex* mu) {
  grpc::ClientContext ctx;
  auto stream = stub.RateStream(&ctx);
  std::vector<std::pair<std::string, std::string>> sent;
  std::mutex sent_mu;
  std::thread reader([&] {
    recsys::v1::RateStreamResponse resp;
    while (stream->Read(&resp)) {
      std::lock_guard<std::mutex> lock(sent_mu);
      for (const auto& ack : resp.acks()) {
        if (!ack.accepted()) continue;
        std::lock_guard<std::mutex> acked_lock(*mu);
        acked->insert(sent[ack.index()]);
      }
    }
  });
  for (int i = 0; !stop.load(); ++i) {
    recsys::v1::RateRequest r;
    r.set_user_id(absl::StrCat(prefix, i % users));
    r.set_item_id(absl::StrCat("i", (i * 7) % items));
    r.set_rating(1 + i % 5);
    {
      std::lock_guard<std::mutex> lock(sent_mu);
      sent.emplace_back(r.user_id(), r.item_id());
    }
    if (!stream->Write(r)) break;
  }
  stream->WritesDone();
  reader.join();
  stream->Finish().IgnoreError();
}

}  // namespace recsys::testing

#endif  // RECSYS_TESTS_RATING_STREAM_H_
