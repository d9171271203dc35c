// The gRPC load generator behind recsys-bench: drives one workload over a
// set of channels with the asynchronous (CompletionQueue) API, each client
// thread polling its own queue, and measures it.
//
// Two ways to apply load:
//  - closed loop (qps == 0): `inflight` calls are kept outstanding; each
//    completion starts the next call. Measures the maximum throughput.
//  - open loop (qps > 0): call j is scheduled at start + j / qps whether or
//    not earlier calls have returned, and its latency runs from that
//    scheduled time, not from when the client got around to sending it. A
//    stalled server therefore shows up as latency instead of silently
//    lowering the offered load (no coordinated omission).
// Only calls scheduled after the warm-up and before the end are measured;
// the calls still in flight at the end are awaited (each has a deadline) so
// the slowest ones are not dropped from the percentiles.
//
//   LoadOptions o;
//   o.workload = Workload::kRecommend;
//   o.inflight = 64;
//   WorkloadResult r = RunWorkload(channels, ids, o);
//   std::cout << r.qps << " " << r.latency.Percentile(99) / 1e3 << " us\n";
#ifndef RECSYS_BENCH_LOAD_GENERATOR_H_
#define RECSYS_BENCH_LOAD_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/histogram.h"
#include "grpcpp/grpcpp.h"

namespace recsys::bench {

enum class Workload {
  kEmpty,      // grpc.health.v1.Health/Check, empty request: gRPC's ceiling
  kRecommend,  // Recommend, k from the options, users drawn uniformly
  kRate,       // unary Rate of random (user, item, rating)
  kStream,     // ratings over RateStream calls; acks are the measure
  kMix,        // Recommend or Rate per call, mix_rate_percent of them Rate
  // GetModelInfo: a trivial call on the Recommender service itself, which
  // separates the service's own per-call cost (threading, status, protobuf)
  // from the work Recommend does.
  kInfo,
  // SimilarItems of items drawn uniformly, k from the options.
  kSimilar,
  // kStream's twin for implicit feedback: events (event_type, count 1, no
  // rating) over RateStream calls. The server needs an implicit model and
  // the type in its --event_weights.
  kEvents,
};

absl::StatusOr<Workload> ParseWorkload(absl::string_view name);
std::string WorkloadName(Workload w);
// kStream and kEvents: RateStream calls kept busy, measured by their acks
// (never open loop).
inline bool IsStreamWorkload(Workload w) {
  return w == Workload::kStream || w == Workload::kEvents;
}

// What requests are made of: external ids the server knows and the rating
// values it accepts.
struct RequestIds {
  std::vector<std::string> users;
  std::vector<std::string> items;
  std::vector<float> rating_values;  // drawn uniformly for Rate
};

struct LoadOptions {
  Workload workload = Workload::kRecommend;
  int inflight = 64;  // closed loop: calls outstanding over all threads
  double qps = 0;     // > 0: open loop at this many calls per second
  int threads = 1;    // client threads, one CompletionQueue each
  double warmup_seconds = 1;
  double duration_seconds = 5;
  double timeout_seconds = 10;  // deadline of every call
  int k = 10;
  // recommend (and mix): a genre filter, and that many candidate items
  // drawn from the model (0 = none): once per user when responses stay
  // bytes (the request is encoded once), at every call when decoded.
  std::string recommend_genre;
  int recommend_candidates = 0;
  int mix_rate_percent = 10;
  // kStream and kEvents: concurrent RateStream calls, ratings (events) sent
  // but not yet acknowledged per call, and how many writes may be coalesced
  // before the transport is told to flush (1 = every write goes out at
  // once).
  int streams = 1;
  int stream_window = 1024;
  int stream_flush_every = 32;
  // kEvents: the event_type of every event.
  std::string event_type = "play";
  uint64_t seed = 1;
  // Unary calls: false sends encoded bytes and takes the response as bytes
  // (the way `empty` always does), so the generator's own CPU per call is
  // about the same for every workload and the ratios to `empty` measure the
  // server; true decodes every response into its message (what a real
  // client pays, on the same cores as the server here).
  bool decode_responses = false;
};

struct OpStats {
  LatencyHistogram latency;  // successful calls only
  int64_t ok = 0;
  int64_t errors = 0;
  std::map<int, int64_t> errors_by_code;
  std::string first_error;
  void Merge(const OpStats& other);
};

struct WorkloadResult {
  Workload workload = Workload::kRecommend;
  bool open_loop = false;
  double offered_qps = 0;  // open loop
  double seconds = 0;      // measured window
  // Successful calls (kStream: accepted ratings; kEvents: accepted events)
  // per second of the window.
  double qps = 0;
  OpStats total;
  // Per RPC ("recommend", "rate", "empty", "stream", "events", "info",
  // "similar"); one entry unless kMix.
  std::map<std::string, OpStats> by_op;
  // Open loop: how late the client started each call after its scheduled
  // time (its own scheduling delay, already inside the latencies above).
  LatencyHistogram send_lag;
  // CPU used during the window, in cores (1.0 = one core busy).
  double client_cpu = 0;
  double server_cpu = -1;  // -1 when unknown
};

// Runs one workload. `server_cpu_seconds`, when set, returns the server's
// cumulative CPU time, sampled at the window's start and end.
WorkloadResult RunWorkload(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const RequestIds& ids, const LoadOptions& options,
    const std::function<double()>& server_cpu_seconds = nullptr);

}  // namespace recsys::bench

#endif  // RECSYS_BENCH_LOAD_GENERATOR_H_
