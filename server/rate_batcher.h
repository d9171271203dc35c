// Group commit of Rate calls (see RateBatcher).
#ifndef RECSYS_SERVER_RATE_BATCHER_H_
#define RECSYS_SERVER_RATE_BATCHER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.pb.h"

namespace recsys {

// Group commit for Rate, led from gRPC's own threads. A call that finds no
// commit running leads: it takes every call queued so far (up to kMaxBatch)
// and gives them to Engine::RateBatch (one log append and fsync for all of
// them, each user folded in once), answers them, and goes on with whatever
// queued meanwhile until the queue is empty. A call that finds a commit
// running only queues and returns; the leader will answer it. So batches
// grow with the load, and most calls are answered without a hand-off to
// another thread and back, while gRPC keeps polling on its other threads.
//
// A gRPC thread that leads holds up the rest of what it was doing, such as
// reading the next calls of the connection its call came in on. So it
// leads for at most its budget (RecommenderService::kRateLeadBudget); if
// calls are still queued then, it hands the lead to the batcher's own
// thread, which leads until the queue is empty. The budget trades
// throughput for tail latency: leading without a limit left p99.9 at
// 10,000 Rates/s at ~20 ms; 3 ms keeps it near that of dedicated committer
// threads and keeps most of the throughput gained (docs/performance-log/
// 2026-11-24-rate-commit-on-grpc-threads.md).
class RateBatcher {
 public:
  struct Call {
    Engine* engine;
    RatingInput rating;
    v1::RateResponse* resp;
    grpc::ServerUnaryReactor* reactor;
  };
  using Observer =
      std::function<void(absl::Span<const absl::StatusOr<RateResult>>)>;

  RateBatcher(Observer observe, std::chrono::microseconds lead_budget)
      : observe_(std::move(observe)),
        lead_budget_(lead_budget),
        thread_([this] { Loop(); }) {}
  // Answers every queued call first.
  ~RateBatcher();

  // Returns once `call` is answered, or queued for a running leader.
  void Add(Call call);

 private:
  static constexpr size_t kMaxBatch = 4096;

  // The batcher's thread: leads when a gRPC thread hands the lead over.
  void Loop();

  // Commits up to kMaxBatch queued calls, with `lock` (on mu_) released
  // meanwhile.
  void CommitQueued(std::unique_lock<std::mutex>* lock);

  void Commit(std::vector<Call>* batch, std::vector<RatingInput>* inputs);

  const Observer observe_;
  const std::chrono::microseconds lead_budget_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Call> queue_;
  bool leading_ = false;     // a thread is committing
  bool handed_off_ = false;  // thread_ is to take the lead
  bool stop_ = false;
  std::thread thread_;  // last: started once the rest is set up
};

}  // namespace recsys

#endif  // RECSYS_SERVER_RATE_BATCHER_H_
