// Internals of the load generator (load_generator.h): the client thread
// (Worker) and the RateStream call (RatingStream) it drives, shared by
// load_generator.cc (the run), load_worker.cc (the thread's loop),
// load_requests.cc (the calls it issues) and load_stream.cc.
#ifndef RECSYS_BENCH_LOAD_GENERATOR_INTERNAL_H_
#define RECSYS_BENCH_LOAD_GENERATOR_INTERNAL_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/histogram.h"
#include "bench/load_generator.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys::bench::internal {

using v1::Recommender;

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

enum Op {
  kOpEmpty,
  kOpRecommend,
  kOpRate,
  kOpStream,
  kOpInfo,
  kOpSimilar,
  kOpEvents,
  kNumOps
};
constexpr const char* kOpNames[kNumOps] = {
    "empty", "recommend", "rate", "stream", "info", "similar", "events"};

// What a completion-queue tag points at.
class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Done(bool ok) = 0;
};

class Worker;

// One RateStream call kept busy: at most `window` ratings (or, for
// kEvents, events) written and not yet acknowledged, one Write and one Read
// outstanding at a time (what the async API allows), closed with WritesDone
// when the run ends.
class RatingStream {
 public:
  RatingStream(Worker* worker, Recommender::Stub* stub);
  void Begin(grpc::CompletionQueue* cq);
  // Stops writing once the current write (if any) is done.
  void Close();
  void Cancel() { ctx_.TryCancel(); }
  bool finished() const { return finished_; }

 private:
  // Binds a completion to a member function.
  class Step final : public Tag {
   public:
    Step(RatingStream* s, void (RatingStream::*fn)(bool)) : s_(s), fn_(fn) {}
    void Done(bool ok) override { (s_->*fn_)(ok); }

   private:
    RatingStream* s_;
    void (RatingStream::*fn_)(bool);
  };

  void OnStarted(bool ok);
  void OnWritten(bool ok);
  void OnRead(bool ok);
  void OnWritesDone(bool) {}
  void OnFinished(bool ok);
  void MaybeWrite();

  Worker* worker_;
  Recommender::Stub* stub_;
  Op op_;  // kOpStream or kOpEvents: what the acks are recorded as
  Step started_{this, &RatingStream::OnStarted};
  Step written_{this, &RatingStream::OnWritten};
  Step read_{this, &RatingStream::OnRead};
  Step writes_done_{this, &RatingStream::OnWritesDone};
  Step finished_step_{this, &RatingStream::OnFinished};
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<v1::RateRequest, v1::RateStreamResponse>>
      rw_;
  v1::RateRequest out_;
  v1::RateStreamResponse in_;
  grpc::Status status_;
  // Ratings [oldest_, next_) are in flight; slot index % window holds the
  // send time and whether the ack came (acks may arrive out of order).
  uint64_t next_ = 0;
  uint64_t oldest_ = 0;
  std::vector<int64_t> sent_ns_;
  std::vector<char> acked_;
  bool started_ok_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
  int unflushed_ = 0;
};

// One client thread: its CompletionQueue, stubs over its channels, the
// calls it issues and what it measured of them.
class Worker {
 public:
  Worker(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
         const RequestIds& ids, const LoadOptions& o, int index);

  void AddStream();

  // Closed loop: `inflight` calls; open loop: one call every `interval_ns`
  // starting at start + offset_ns.
  void Run(int64_t start, int64_t warm_end, int64_t end, int inflight,
           int64_t interval_ns, int64_t offset_ns);

  void Finished(Op op, int64_t scheduled, const grpc::Status& status);

  void Record(Op op, int64_t scheduled, int64_t now,
              const grpc::Status& status);

  int64_t end() const { return end_; }
  const OpStats& stats(int op) const { return stats_[op]; }
  const LatencyHistogram& send_lag() const { return send_lag_; }

  // These two are in load_requests.cc, as are Issue and the request
  // builders below.
  void SetDeadline(grpc::ClientContext* ctx) const;

  v1::RateRequest RandomRating();
  // An event of the options' event_type, count 1, on a random (user, item).
  v1::RateRequest RandomEvent();

 private:
  const std::string& Pick(const std::vector<std::string>& v) {
    return v[rng_() % v.size()];
  }

  void Issue(int64_t scheduled);

  v1::SimilarItemsRequest SimilarRequest();

  // A Recommend for `user`, with the options' genre and candidates (drawn
  // from the model's items).
  v1::RecommendRequest RecommendRequestFor(const std::string& user);

  // Encoded once per user id and reused (a ByteBuffer shares its slices).
  grpc::ByteBuffer RecommendRequestBytes(const std::string& user);

  const RequestIds& ids_;
  const LoadOptions& o_;
  std::mt19937_64 rng_;
  std::map<std::string, grpc::ByteBuffer> recommend_bytes_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Recommender::Stub>> stubs_;
  std::vector<std::unique_ptr<grpc::GenericStub>> generic_;
  std::vector<std::unique_ptr<RatingStream>> streams_;
  grpc::ByteBuffer empty_request_;
  size_t next_channel_ = 0;
  // Calls started and not finished: the sender thread (open loop) starts
  // them, the completion-queue thread finishes them.
  std::atomic<int64_t> outstanding_{0};
  bool closed_loop_ = true;
  int64_t warm_end_ = 0;
  int64_t end_ = 0;
  OpStats stats_[kNumOps];
  LatencyHistogram send_lag_;  // open loop, measured window

  friend class RatingStream;
};

}  // namespace recsys::bench::internal

#endif  // RECSYS_BENCH_LOAD_GENERATOR_INTERNAL_H_
