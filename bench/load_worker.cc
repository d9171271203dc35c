// One client thread of the load generator: its completion-queue loop, the
// open loop's paced sender, and the recording of each finished call.
#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/load_generator.h"
#include "bench/load_generator_internal.h"
#include "grpc/support/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace recsys::bench::internal {
namespace {

// How often an idle worker wakes to look at the clock.
constexpr int64_t kPollNs = 20'000'000;

// gRPC's monotonic clock has its own origin, so deadlines are built relative
// to its "now" rather than converted from steady_clock.
gpr_timespec DeadlineIn(int64_t ns) {
  return gpr_time_add(
      gpr_now(GPR_CLOCK_MONOTONIC),
      gpr_time_from_nanos(std::max<int64_t>(0, ns), GPR_TIMESPAN));
}

}  // namespace

Worker::Worker(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
               const RequestIds& ids, const LoadOptions& o, int index)
    : ids_(ids), o_(o), rng_(o.seed * 7919 + static_cast<uint64_t>(index)) {
  for (const auto& ch : channels) {
    stubs_.push_back(Recommender::NewStub(ch));
    generic_.push_back(std::make_unique<grpc::GenericStub>(ch));
  }
  // Health's request message with no fields set is zero bytes long.
  grpc::Slice empty("");
  empty_request_ = grpc::ByteBuffer(&empty, 1);
}

void Worker::AddStream() {
  streams_.push_back(std::make_unique<RatingStream>(
      this, stubs_[streams_.size() % stubs_.size()].get()));
}

void Worker::Run(int64_t start, int64_t warm_end, int64_t end, int inflight,
                 int64_t interval_ns, int64_t offset_ns) {
  warm_end_ = warm_end;
  end_ = end;
  const bool open_loop = interval_ns > 0;
  closed_loop_ = !open_loop;
  int64_t next_send = start + offset_ns;
  if (IsStreamWorkload(o_.workload)) {
    closed_loop_ = false;
    for (auto& s : streams_) s->Begin(&cq_);
  } else if (!open_loop) {
    for (int i = 0; i < inflight; ++i) Issue(NowNs());
  }
  // The open loop's calls are issued by a thread of their own that sleeps
  // until each send time. Waiting for them in AsyncNext's deadline, as
  // this loop once did, left sends 0.5 ms late at the median and 1.9 ms
  // at p99 at only 4,000 calls/s with the client on a core of its own
  // (gRPC's timers are coarse), and a late send counts as latency.
  const bool paced = open_loop && !IsStreamWorkload(o_.workload);
  std::atomic<bool> sending{paced};
  std::thread sender;
  if (paced) {
    sender =
        std::thread([this, &sending, next_send, end, interval_ns]() mutable {
          // Wake-ups as exact as the kernel allows (the default slack is
          // 50 us).
          prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
          while (next_send < end) {
            std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
                std::chrono::nanoseconds(next_send)));
            const int64_t now = NowNs();
            while (next_send <= now && next_send < end) {
              if (next_send >= warm_end_) send_lag_.Record(NowNs() - next_send);
              Issue(next_send);
              next_send += interval_ns;
            }
          }
          sending = false;
        });
  }
  const int64_t cancel_at =
      end + static_cast<int64_t>(o_.timeout_seconds * 1e9) + 1'000'000'000;
  bool cancelled = false;
  while (true) {
    int64_t now = NowNs();
    if (now >= end && !sending) {
      for (auto& s : streams_) s->Close();
      const bool streams_done =
          std::all_of(streams_.begin(), streams_.end(),
                      [](const auto& s) { return s->finished(); });
      if (outstanding_ == 0 && streams_done) break;
      if (now > cancel_at && !cancelled) {
        for (auto& s : streams_) s->Cancel();
        cancelled = true;
      }
    }
    int64_t wake = now + kPollNs;
    if (now < end) wake = std::min(wake, end);
    void* tag = nullptr;
    bool ok = false;
    const auto status = cq_.AsyncNext(&tag, &ok, DeadlineIn(wake - now));
    if (status == grpc::CompletionQueue::GOT_EVENT) {
      static_cast<Tag*>(tag)->Done(ok);
    } else if (status == grpc::CompletionQueue::SHUTDOWN) {
      break;
    }
  }
  if (sender.joinable()) sender.join();
  cq_.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
  }
}

void Worker::Finished(Op op, int64_t scheduled, const grpc::Status& status) {
  --outstanding_;
  const int64_t now = NowNs();
  Record(op, scheduled, now, status);
  if (closed_loop_ && now < end_) Issue(now);
}

void Worker::Record(Op op, int64_t scheduled, int64_t now,
                    const grpc::Status& status) {
  if (scheduled < warm_end_ || scheduled >= end_) return;
  OpStats& s = stats_[op];
  if (status.ok()) {
    ++s.ok;
    s.latency.Record(now - scheduled);
  } else {
    ++s.errors;
    ++s.errors_by_code[status.error_code()];
    if (s.first_error.empty()) {
      s.first_error =
          absl::StrCat(absl::StatusCodeToString(
                           static_cast<absl::StatusCode>(status.error_code())),
                       ": ", status.error_message());
    }
  }
}

}  // namespace recsys::bench::internal
