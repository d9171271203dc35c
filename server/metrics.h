// Prometheus metrics for recsys-server: what the RPC layer, the service and
// the training watcher count, plus the engine's state read at scrape time.
//
//   ServerMetrics metrics;
//   builder.experimental().SetInterceptorCreators(
//       MetricsInterceptors(&metrics));        // every RPC: count, latency
//   metrics.RecordRatings(...);                // from the service
//   std::string text = metrics.Render(engine); // for GET /metrics
//
// Costs on the request path: one interceptor object per call (gRPC's
// design), two clock reads and three relaxed atomic increments; no lock.
// Everything else (engine info, log statistics) is read when scraped.
//
// Names (all prefixed recsys_): see Render and its helpers in metrics.cc and
// docs/operations/metrics.md.
#ifndef RECSYS_SERVER_METRICS_H_
#define RECSYS_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/support/server_interceptor.h"

namespace recsys {

class Engine;
struct EngineInfo;

class ServerMetrics {
 public:
  // Latency bucket upper bounds, seconds.
  static constexpr std::array<double, 16> kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  static constexpr int kCodes = 17;  // canonical status codes 0..16

  ServerMetrics();

  // A small index for a full method path ("/recsys.v1.Recommender/Rate");
  // methods we do not name share the last index ("other"), which keeps the
  // label set bounded whatever clients send.
  static int MethodIndex(absl::string_view path);
  static int NumMethods();
  static absl::string_view MethodLabel(int index);

  void RecordRpc(int method, int code, absl::Duration latency);
  // Ratings the engine accepted (each one re-solves the user's vector: a
  // user fold-in) and how many of them brought a new user or item.
  void RecordAccepted(int64_t accepted, int64_t new_users, int64_t new_items);
  void RecordRejected(int code, int64_t n = 1);
  // A call refused for a missing or wrong bearer token.
  void RecordAuthFailure(bool token_missing);

  // Training jobs, as the server's watcher sees them.
  void TrainingStarted();
  enum class JobResult { kSucceeded, kFailed, kCancelled };
  void TrainingEnded(JobResult result, double seconds, int epochs);
  // The serving model changed (or was loaded) at `when`.
  void ModelServedSince(uint64_t version, absl::Time when);

  // The exposition text (format 0.0.4). `engine` may be null while no model
  // is loaded.
  std::string Render(const Engine* engine, absl::Time now) const;

 private:
  // Builds the exposition text (defined in metrics.cc).
  class Writer;

  // Render's parts, each writing a group of metric families: RPC counts,
  // RPC latencies, ratings, auth failures, then training jobs (and, with an
  // engine, the model, fold-in cache and rating log).
  void RenderRequests(Writer& w) const;
  void RenderRequestDurations(Writer& w) const;
  void RenderRatings(Writer& w) const;
  void RenderAuthFailures(Writer& w) const;
  void RenderTraining(const Engine* engine, absl::Time now, Writer& w) const;
  static void RenderModel(const EngineInfo& info, uint64_t served_version,
                          absl::Time served_since, absl::Time now, Writer& w);
  static void RenderFoldInCache(const EngineInfo& info, Writer& w);
  static void RenderEvents(const EngineInfo& info, Writer& w);
  static void RenderLog(const Engine& engine, Writer& w);

  struct alignas(64) MethodStats {
    std::array<std::atomic<uint64_t>, kCodes> codes{};
    std::array<std::atomic<uint64_t>, kBuckets.size() + 1> buckets{};
    std::atomic<uint64_t> sum_nanos{0};
  };
  std::unique_ptr<MethodStats[]> methods_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> new_users_{0};
  std::atomic<uint64_t> new_items_{0};
  std::array<std::atomic<uint64_t>, kCodes> rejected_{};
  std::atomic<uint64_t> auth_missing_{0};
  std::atomic<uint64_t> auth_invalid_{0};
  const absl::Time start_;

  mutable std::mutex mu_;  // training and model state: rare writes
  bool training_running_ = false;
  uint64_t jobs_succeeded_ = 0;
  uint64_t jobs_failed_ = 0;
  uint64_t jobs_cancelled_ = 0;
  double last_job_seconds_ = 0;
  int last_job_epochs_ = 0;
  absl::Time last_job_started_ = absl::InfinitePast();
  uint64_t served_version_ = 0;
  absl::Time served_since_ = absl::InfinitePast();
};

// The interceptor factories to hand to ServerBuilder: one that counts every
// RPC by method and status code and records its latency (from the call's
// start to its status) in `metrics`, which must outlive the server.
std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MetricsInterceptors(ServerMetrics* metrics);

}  // namespace recsys

#endif  // RECSYS_SERVER_METRICS_H_
