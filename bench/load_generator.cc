// The load generator's run: workers dealt channels and threads, the
// measured window and its CPU, and the merged results; workload names.
#include "bench/load_generator.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "bench/load_generator_internal.h"
#include "grpcpp/grpcpp.h"

namespace recsys::bench {
namespace {

using internal::kNumOps;
using internal::kOpNames;
using internal::NowNs;
using internal::Worker;

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

absl::StatusOr<Workload> ParseWorkload(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "empty") return Workload::kEmpty;
  if (n == "recommend") return Workload::kRecommend;
  if (n == "rate") return Workload::kRate;
  if (n == "stream") return Workload::kStream;
  if (n == "mix") return Workload::kMix;
  if (n == "info") return Workload::kInfo;
  if (n == "similar") return Workload::kSimilar;
  if (n == "events") return Workload::kEvents;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown workload '", name,
      "' (empty, recommend, rate, stream, events, mix, info, similar)"));
}

std::string WorkloadName(Workload w) {
  switch (w) {
    case Workload::kEmpty:
      return "empty";
    case Workload::kRecommend:
      return "recommend";
    case Workload::kRate:
      return "rate";
    case Workload::kStream:
      return "stream";
    case Workload::kMix:
      return "mix";
    case Workload::kInfo:
      return "info";
    case Workload::kSimilar:
      return "similar";
    case Workload::kEvents:
      return "events";
  }
  return "?";
}

void OpStats::Merge(const OpStats& other) {
  latency.Merge(other.latency);
  ok += other.ok;
  errors += other.errors;
  for (const auto& [code, n] : other.errors_by_code) errors_by_code[code] += n;
  if (first_error.empty()) first_error = other.first_error;
}

WorkloadResult RunWorkload(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const RequestIds& ids, const LoadOptions& o,
    const std::function<double()>& server_cpu_seconds) {
  const int threads = std::max(1, o.threads);
  // Channels are dealt to threads round-robin; with fewer channels than
  // threads they are shared.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t) {
    std::vector<std::shared_ptr<grpc::Channel>> mine;
    for (size_t c = t % channels.size(); c < channels.size(); c += threads) {
      mine.push_back(channels[c]);
    }
    if (mine.empty()) mine.push_back(channels[t % channels.size()]);
    workers.push_back(std::make_unique<Worker>(mine, ids, o, t));
  }
  if (IsStreamWorkload(o.workload)) {
    for (int s = 0; s < std::max(1, o.streams); ++s) {
      workers[s % threads]->AddStream();
    }
  }

  WorkloadResult result;
  result.workload = o.workload;
  result.open_loop = o.qps > 0 && !IsStreamWorkload(o.workload);
  result.offered_qps = result.open_loop ? o.qps : 0;
  const int64_t start = NowNs() + 1'000'000;
  const int64_t warm_end = start + static_cast<int64_t>(o.warmup_seconds * 1e9);
  const int64_t end = warm_end + static_cast<int64_t>(o.duration_seconds * 1e9);
  const int64_t interval =
      result.open_loop ? static_cast<int64_t>(1e9 * threads / o.qps) : 0;

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const int inflight = o.inflight / threads + (t < o.inflight % threads);
    const int64_t offset = result.open_loop ? interval * t / threads : 0;
    pool.emplace_back([&, t, inflight, offset] {
      workers[t]->Run(start, warm_end, end, inflight, interval, offset);
    });
  }
  auto sleep_until = [](int64_t t) {
    const int64_t d = t - NowNs();
    if (d > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(d));
  };
  sleep_until(warm_end);
  const double cpu0 = ProcessCpuSeconds();
  const double server0 = server_cpu_seconds ? server_cpu_seconds() : 0;
  const int64_t t0 = NowNs();
  sleep_until(end);
  const double cpu1 = ProcessCpuSeconds();
  const double server1 = server_cpu_seconds ? server_cpu_seconds() : 0;
  const double wall = static_cast<double>(NowNs() - t0) / 1e9;
  for (std::thread& t : pool) t.join();

  result.seconds = o.duration_seconds;
  result.client_cpu = wall > 0 ? (cpu1 - cpu0) / wall : 0;
  if (server_cpu_seconds) {
    result.server_cpu = wall > 0 ? (server1 - server0) / wall : 0;
  }
  for (int op = 0; op < kNumOps; ++op) {
    OpStats merged;
    for (const auto& w : workers) merged.Merge(w->stats(op));
    if (merged.ok + merged.errors == 0) continue;
    result.total.Merge(merged);
    result.by_op[kOpNames[op]] = std::move(merged);
  }
  for (const auto& w : workers) result.send_lag.Merge(w->send_lag());
  result.qps = o.duration_seconds > 0
                   ? static_cast<double>(result.total.ok) / o.duration_seconds
                   : 0;
  return result;
}

}  // namespace recsys::bench
