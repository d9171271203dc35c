// recsys-bench: a gRPC load generator for recsys.v1.Recommender.
//
//   recsys-bench --model=/tmp/ml100k.rsm --workloads=empty,recommend,rate
//   recsys-bench --target=127.0.0.1:50051 --workloads=recommend --qps=5000
//   recsys-bench --train-data=ratings.csv --workloads=stream --json
//   recsys-bench --target=127.0.0.1:50051 --workloads=stream,events
//
// With --model or --train-data (and no --target) it starts its own
// recsys-server on a free loopback port and a temporary data directory, and
// stops it at the end. Workloads run one after another in one process, so
// each is reported as a ratio to the empty RPC measured in the same run.
// `events` (of --event-type, "play" by default) needs a server whose model
// learnt from implicit feedback and whose --event_weights weighs that type.
// Flag names accept dashes or underscores.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/flag_names.h"
#include "bench/bench.h"
#include "client/security_flags.h"

ABSL_FLAG(std::string, target, "",
          "Server address host:port; empty = start one (needs --model or "
          "--train-data)");
ABSL_FLAG(std::string, model, "",
          "Model file: the started server serves it, and user/item ids are "
          "drawn from it");
ABSL_FLAG(std::string, train_data, "",
          "Ratings (dataset name or path): the started server trains its "
          "first model on them, and ids are drawn from them");
ABSL_FLAG(std::string, server_bin, "",
          "recsys-server to start (default: next to recsys-bench or in "
          "../server/)");
ABSL_FLAG(std::string, server_flags, "",
          "Extra flags for the started server, space-separated (e.g. "
          "'--fsync=never --snapshot-every=0')");
ABSL_FLAG(double, server_start_timeout, 600,
          "Seconds the started server may take to load or train its model");
ABSL_FLAG(std::string, workloads, "empty,recommend",
          "Comma-separated, run in order: empty, recommend, rate, stream, "
          "events (stream's twin: events of --event_type over RateStream; "
          "needs an implicit model and the server's --event_weights), mix, "
          "info (GetModelInfo: the service's own per-call cost), similar "
          "(SimilarItems of items drawn from the model)");
ABSL_FLAG(int, channels, 4, "gRPC channels (one TCP connection each)");
ABSL_FLAG(int, threads, 1, "Client threads, one completion queue each");
ABSL_FLAG(int, inflight, 64, "Closed loop: calls in flight over all channels");
ABSL_FLAG(double, qps, 0,
          "> 0: open loop, one call every 1/qps seconds, latency measured "
          "from the scheduled send time");
ABSL_FLAG(double, open_fraction, 0,
          "> 0: after each closed-loop run, an open-loop run at this fraction "
          "of the throughput it reached (0.5 = p99 at half the maximum)");
ABSL_FLAG(int, rounds, 1,
          "Run the closed-loop workloads this many times in turn and merge "
          "them, so slow drifts of a shared machine fall evenly on each; "
          "ratios to empty are also printed per round");
ABSL_FLAG(double, warmup, 1, "Seconds of warm-up before each measurement");
ABSL_FLAG(double, duration, 5, "Seconds measured per workload");
ABSL_FLAG(double, timeout, 10, "Deadline of every call, seconds");
ABSL_FLAG(int, k, 10, "recommend and similar: how many items");
ABSL_FLAG(std::string, recommend_genre, "",
          "recommend and mix: only items of this genre");
ABSL_FLAG(int, recommend_candidates, 0,
          "recommend and mix: rank only this many items drawn from the "
          "model (0 = the whole catalogue)");
ABSL_FLAG(int, mix_rate_percent, 10,
          "mix: share of calls that are Rate (the rest Recommend)");
ABSL_FLAG(int, streams, 1, "stream, events: concurrent RateStream calls");
ABSL_FLAG(int, stream_window, 1024,
          "stream, events: ratings (events) sent but not yet acknowledged, "
          "per stream");
ABSL_FLAG(int, stream_flush_every, 32,
          "stream, events: writes coalesced before a flush (1 = flush every "
          "write)");
ABSL_FLAG(std::string, event_type, "play",
          "events: the event type of every event (count 1), one of the "
          "server's --event_weights");
ABSL_FLAG(uint64_t, seed, 1, "Seed for the ids and ratings drawn");
ABSL_FLAG(bool, decode_responses, false,
          "Decode unary responses into their messages (a real client's "
          "cost); by default they stay bytes, as `empty`'s always do, so the "
          "client's CPU per call is the same for every workload");
ABSL_FLAG(bool, json, false, "Print the results as one JSON object");
int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "recsys-bench [--target=HOST:PORT | --model=FILE | --train-data=D] "
      "[--workloads=empty,recommend,rate,stream,events,mix,info,similar] "
      "[--inflight=64 | "
      "--qps=R] [--json] [--tls-ca=F --token-file=F ...]");
  std::vector<std::string> storage(argv, argv + argc);
  std::vector<char*> args = recsys::NormalizeFlagNames(&storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  // Debian builds Abseil without NDEBUG, which leaves Mutex deadlock
  // detection on: a global graph update on every lock gRPC takes. The load
  // generator should cost as little as possible.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  recsys::bench::BenchOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.model_file = absl::GetFlag(FLAGS_model);
  o.train_data = absl::GetFlag(FLAGS_train_data);
  o.server_binary = absl::GetFlag(FLAGS_server_bin);
  o.server_flags =
      absl::StrSplit(absl::GetFlag(FLAGS_server_flags), ' ', absl::SkipEmpty());
  o.server_start_timeout_seconds = absl::GetFlag(FLAGS_server_start_timeout);
  o.workloads =
      absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty());
  o.channels = absl::GetFlag(FLAGS_channels);
  o.load.threads = absl::GetFlag(FLAGS_threads);
  o.load.inflight = absl::GetFlag(FLAGS_inflight);
  o.load.qps = absl::GetFlag(FLAGS_qps);
  o.open_fraction = absl::GetFlag(FLAGS_open_fraction);
  o.rounds = absl::GetFlag(FLAGS_rounds);
  o.load.warmup_seconds = absl::GetFlag(FLAGS_warmup);
  o.load.duration_seconds = absl::GetFlag(FLAGS_duration);
  o.load.timeout_seconds = absl::GetFlag(FLAGS_timeout);
  o.load.k = absl::GetFlag(FLAGS_k);
  o.load.recommend_genre = absl::GetFlag(FLAGS_recommend_genre);
  o.load.recommend_candidates = absl::GetFlag(FLAGS_recommend_candidates);
  o.load.mix_rate_percent = absl::GetFlag(FLAGS_mix_rate_percent);
  o.load.streams = absl::GetFlag(FLAGS_streams);
  o.load.stream_window = absl::GetFlag(FLAGS_stream_window);
  o.load.stream_flush_every = absl::GetFlag(FLAGS_stream_flush_every);
  o.load.event_type = absl::GetFlag(FLAGS_event_type);
  o.load.seed = absl::GetFlag(FLAGS_seed);
  o.load.decode_responses = absl::GetFlag(FLAGS_decode_responses);
  o.json = absl::GetFlag(FLAGS_json);
  // TLS and token flags, as recsys-client takes them (for --target).
  absl::StatusOr<recsys::ChannelOptions> security = recsys::SecurityFromFlags();
  if (!security.ok()) {
    std::cerr << "recsys-bench: " << security.status().message() << "\n";
    return 1;
  }
  o.security = *std::move(security);

  const absl::Status status = recsys::bench::RunBench(o, std::cout, std::cerr);
  if (!status.ok()) {
    std::cerr << "recsys-bench: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
