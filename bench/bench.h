// recsys-bench's driver: finds or starts the server, learns which ids to ask
// for, runs each workload in turn over the same channels and reports every
// one next to the empty RPC measured in the same run.
//
//   BenchOptions o;
//   o.model_file = "/tmp/ml100k.rsm";        // start a server on it
//   o.workloads = {"empty", "recommend"};
//   RECSYS_RETURN_IF_ERROR(RunBench(o, std::cout, std::cerr));
#ifndef RECSYS_BENCH_BENCH_H_
#define RECSYS_BENCH_BENCH_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/load_generator.h"
#include "client/client.h"

namespace recsys::bench {

struct BenchOptions {
  // Where the server is: `target` (host:port), or a child recsys-server
  // started on `model_file` or, failing that, trained on `train_data`.
  std::string target;
  // TLS, mutual TLS and the bearer token for `target`, as recsys-client
  // takes them (its `target` field is not used). Not for a started server.
  ChannelOptions security;
  std::string model_file;
  std::string train_data;
  std::string server_binary;              // "" = FindServerBinary()
  std::vector<std::string> server_flags;  // extra flags for the child
  double server_start_timeout_seconds = 600;
  // Ids come from `model_file` or `train_data` when given; against a bare
  // target they are "1".."N" for the counts GetModelInfo reports (the
  // MovieLens numbering).
  std::vector<std::string> workloads = {"empty", "recommend"};
  int channels = 4;
  LoadOptions load;  // .workload is set per run
  // > 0: after each closed-loop run, an open-loop run of the same workload
  // at this fraction of the throughput just measured (e.g. 0.5 for "p99 at
  // half the maximum").
  double open_fraction = 0;
  // The closed-loop workloads run this many times in turn (empty, recommend,
  // empty, recommend, ...); each row merges its rounds, and the ratio to
  // `empty` is also given per round. Open-loop runs follow, once, at
  // `open_fraction` of the merged throughput.
  int rounds = 1;
  bool json = false;
};

absl::Status RunBench(const BenchOptions& options, std::ostream& out,
                      std::ostream& log);

}  // namespace recsys::bench

#endif  // RECSYS_BENCH_BENCH_H_
