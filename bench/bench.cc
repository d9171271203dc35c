#include "bench/bench.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "bench/server_process.h"
#include "models/model_io.h"
#include "proto/recsys.grpc.pb.h"
#include "trainer/trainer.h"

namespace recsys::bench {
namespace {

struct ServerInfo {
  std::string target;
  bool started = false;
  std::string kind;
  int32_t factors = 0;
  int64_t users = 0;
  int64_t items = 0;
  int64_t ratings = 0;
  float scale_min = 1;
  float scale_max = 5;
};

absl::StatusOr<std::vector<std::shared_ptr<grpc::Channel>>> MakeChannels(
    const std::string& target, const ChannelOptions& security, int n) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  ChannelOptions o = security;
  o.target = target;
  for (int c = 0; c < n; ++c) {
    grpc::ChannelArguments args;
    // Channels with equal arguments share one TCP connection through the
    // global subchannel pool; a pool per channel gives each its own.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("recsys.bench.channel", c);
    args.SetMaxReceiveMessageSize(-1);
    RECSYS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                            MakeChannel(o, std::move(args)));
    channels.push_back(std::move(channel));
  }
  return channels;
}

// Waits up to `timeout_seconds` (the calls' deadline) for every channel.
absl::Status Connect(const std::vector<std::shared_ptr<grpc::Channel>>& chans,
                     double timeout_seconds, ServerInfo* info) {
  const auto deadline =
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  for (const auto& ch : chans) {
    if (!ch->WaitForConnected(deadline)) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to ", info->target, " within ", timeout_seconds,
          " s (is the server up, and does TLS match: --tls-ca for a TLS "
          "server, none for plaintext?)"));
    }
  }
  auto stub = v1::Recommender::NewStub(chans.front());
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  v1::ModelInfo m;
  const grpc::Status s = stub->GetModelInfo(&ctx, {}, &m);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("GetModelInfo on ", info->target,
                                               ": ", s.error_message()));
  }
  info->kind = m.kind();
  info->factors = m.factors();
  info->users = m.users();
  info->items = m.items();
  info->ratings = m.ratings();
  if (m.has_scale() && m.scale().min() < m.scale().max()) {
    info->scale_min = m.scale().min();
    info->scale_max = m.scale().max();
  }
  return absl::OkStatus();
}

absl::StatusOr<RequestIds> LoadIds(const BenchOptions& o,
                                   const ServerInfo& info) {
  RequestIds ids;
  if (!o.model_file.empty()) {
    RECSYS_ASSIGN_OR_RETURN(Model m, LoadModel(o.model_file));
    ids.users = m.users.ids();
    ids.items = m.items.ids();
  } else if (!o.train_data.empty()) {
    DataSource source;
    source.data = o.train_data;
    source.load.load_metadata = false;
    RECSYS_ASSIGN_OR_RETURN(RatingData d, LoadSource(source));
    ids.users = d.users.ids();
    ids.items = d.items.ids();
  } else {
    for (int64_t u = 1; u <= info.users; ++u)
      ids.users.push_back(absl::StrCat(u));
    for (int64_t i = 1; i <= info.items; ++i)
      ids.items.push_back(absl::StrCat(i));
  }
  if (ids.users.empty() || ids.items.empty()) {
    return absl::FailedPreconditionError("the model has no users or items");
  }
  // Half-star steps across the scale (whole stars when the scale is whole
  // and odd-sized steps would fall outside it).
  for (float v = info.scale_min; v <= info.scale_max + 1e-6f; v += 0.5f) {
    ids.rating_values.push_back(v);
  }
  return ids;
}

Json LatencyJson(const LatencyHistogram& h) {
  Json j;
  j["p50"] = JsonNumber(h.Percentile(50) / 1e3);
  j["p90"] = JsonNumber(h.Percentile(90) / 1e3);
  j["p99"] = JsonNumber(h.Percentile(99) / 1e3);
  j["p999"] = JsonNumber(h.Percentile(99.9) / 1e3);
  j["mean"] = JsonNumber(h.mean() / 1e3);
  j["max"] = JsonNumber(h.max() / 1e3);
  return j;
}

struct Row {
  WorkloadResult result;
  LoadOptions load;
  double ratio = -1;  // to the empty RPC; -1 when none was measured
  // With several rounds: the ratio within each round, in order.
  std::vector<double> round_ratios;
};

// Adds a later round of the same workload: counts and histograms add up,
// rates and CPU shares are weighted by each round's measured seconds.
void MergeRound(WorkloadResult* into, const WorkloadResult& r) {
  const double total = into->seconds + r.seconds;
  if (total <= 0) return;
  auto weighted = [&](double a, double b) {
    return (a * into->seconds + b * r.seconds) / total;
  };
  into->qps = weighted(into->qps, r.qps);
  into->offered_qps = weighted(into->offered_qps, r.offered_qps);
  into->client_cpu = weighted(into->client_cpu, r.client_cpu);
  into->server_cpu = into->server_cpu >= 0 && r.server_cpu >= 0
                         ? weighted(into->server_cpu, r.server_cpu)
                         : -1;
  into->seconds = total;
  into->total.Merge(r.total);
  for (const auto& [op, s] : r.by_op) into->by_op[op].Merge(s);
  into->send_lag.Merge(r.send_lag);
}

Json ResultJson(const Row& row) {
  const WorkloadResult& r = row.result;
  const bool stream = IsStreamWorkload(r.workload);
  Json j;
  j["workload"] = WorkloadName(r.workload);
  j["loop"] = r.open_loop ? "open" : "closed";
  j["offered_qps"] = JsonNumber(r.offered_qps);
  j["inflight"] = r.open_loop ? 0 : row.load.inflight;
  if (stream) {
    j["streams"] = row.load.streams;
    j["stream_window"] = row.load.stream_window;
  }
  if (r.workload == Workload::kEvents) j["event_type"] = row.load.event_type;
  j["seconds"] = JsonNumber(r.seconds);
  j["qps"] = JsonNumber(r.qps);
  if (stream) {
    j[r.workload == Workload::kEvents ? "events_per_s" : "ratings_per_s"] =
        JsonNumber(r.qps);
  }
  j["ok"] = r.total.ok;
  j["errors"] = r.total.errors;
  j["first_error"] = r.total.first_error;
  j["ratio_to_empty"] = row.ratio >= 0 ? JsonNumber(row.ratio) : Json();
  if (row.round_ratios.size() > 1) {
    Json ratios = Json::array();
    for (double v : row.round_ratios) ratios.push_back(JsonNumber(v));
    j["round_ratios"] = std::move(ratios);
  }
  j["latency_us"] = LatencyJson(r.total.latency);
  if (r.open_loop) j["send_lag_us"] = LatencyJson(r.send_lag);
  j["client_cpu_cores"] = JsonNumber(r.client_cpu);
  j["server_cpu_cores"] = r.server_cpu >= 0 ? JsonNumber(r.server_cpu) : Json();
  Json ops = Json::object();
  for (const auto& [name, st] : r.by_op) {
    Json op;
    op["ok"] = st.ok;
    op["errors"] = st.errors;
    op["latency_us"] = LatencyJson(st.latency);
    ops[name] = std::move(op);
  }
  j["ops"] = std::move(ops);
  return j;
}

std::string Us(double ns) { return absl::StrFormat("%.0f", ns / 1e3); }

void PrintTable(const std::vector<Row>& rows, std::ostream& out) {
  out << absl::StrFormat("%-22s %10s %7s %8s %8s %8s %9s %7s %11s\n",
                         "workload", "qps", "x empty", "p50 us", "p90 us",
                         "p99 us", "p99.9 us", "errors", "cpu cli/srv");
  for (const Row& row : rows) {
    const WorkloadResult& r = row.result;
    std::string name = WorkloadName(r.workload);
    if (r.workload == Workload::kStream) {
      name += " (ratings/s)";
    } else if (r.workload == Workload::kEvents) {
      name += " (events/s)";
    } else if (r.open_loop) {
      name += absl::StrFormat(" @%.0f/s", r.offered_qps);
    } else {
      name += absl::StrCat(" x", row.load.inflight);
    }
    const LatencyHistogram& h = r.total.latency;
    out << absl::StrFormat(
        "%-22s %10.0f %7s %8s %8s %8s %9s %7d %5.2f/%s\n", name, r.qps,
        row.ratio >= 0 ? absl::StrFormat("%.3f", row.ratio) : "-",
        Us(h.Percentile(50)), Us(h.Percentile(90)), Us(h.Percentile(99)),
        Us(h.Percentile(99.9)), r.total.errors, r.client_cpu,
        r.server_cpu >= 0 ? absl::StrFormat("%.2f", r.server_cpu) : "-");
    if (r.open_loop) {
      // The client's own lateness is part of every latency above (they
      // count from the scheduled time); shown so it can be told apart.
      const LatencyHistogram& lag = r.send_lag;
      out << absl::StrFormat("  %-20s %10s %7s %8s %8s %8s %9s\n",
                             "client send lag", "", "", Us(lag.Percentile(50)),
                             Us(lag.Percentile(90)), Us(lag.Percentile(99)),
                             Us(lag.Percentile(99.9)));
    }
    if (row.round_ratios.size() > 1 && r.workload != Workload::kEmpty) {
      std::vector<std::string> each;
      for (double v : row.round_ratios) {
        each.push_back(absl::StrFormat("%.3f", v));
      }
      out << absl::StrFormat("  %-20s %s\n", "x empty by round",
                             absl::StrJoin(each, " "));
    }
    if (r.by_op.size() > 1) {
      for (const auto& [op, s] : r.by_op) {
        out << absl::StrFormat("  %-20s %10.0f %7s %8s %8s %8s %9s %7d\n", op,
                               static_cast<double>(s.ok) / r.seconds, "",
                               Us(s.latency.Percentile(50)),
                               Us(s.latency.Percentile(90)),
                               Us(s.latency.Percentile(99)),
                               Us(s.latency.Percentile(99.9)), s.errors);
      }
    }
    if (!r.total.first_error.empty()) {
      out << "  first error: " << r.total.first_error << "\n";
    }
  }
}

// Parses --workloads; at least one is needed.
absl::StatusOr<std::vector<Workload>> ParseWorkloads(const BenchOptions& o) {
  std::vector<Workload> workloads;
  for (const std::string& name : o.workloads) {
    RECSYS_ASSIGN_OR_RETURN(Workload w, ParseWorkload(name));
    workloads.push_back(w);
  }
  if (workloads.empty()) return absl::InvalidArgumentError("no workloads");
  return workloads;
}

// Every option's range, checked before any connection is made.
absl::Status CheckRanges(const BenchOptions& o) {
  const LoadOptions& l = o.load;
  const std::pair<bool, const char*> checks[] = {
      {o.channels >= 1, "--channels must be at least 1"},
      {o.rounds >= 1, "--rounds must be at least 1"},
      {l.timeout_seconds > 0, "--timeout must be > 0 seconds"},
      {l.duration_seconds > 0, "--duration must be > 0 seconds"},
      {l.warmup_seconds >= 0, "--warmup must be >= 0 seconds"},
      {l.qps >= 0, "--qps must be >= 0 (0 = closed loop)"},
      {l.qps > 0 || l.inflight >= 1, "--inflight must be at least 1"},
      {l.threads >= 1 && l.threads <= 256, "--threads must be 1..256"},
      {l.k >= 1 && l.k <= 1000, "--k must be 1..1000 (the server's limit)"},
      {l.recommend_candidates >= 0 && l.recommend_candidates <= 10000,
       "--recommend_candidates must be 0..10000 (the server's limit)"},
      {l.mix_rate_percent >= 0 && l.mix_rate_percent <= 100,
       "--mix_rate_percent must be 0..100"},
      {l.streams >= 1, "--streams must be at least 1"},
      {l.stream_window >= 1, "--stream_window must be at least 1"},
      {l.stream_flush_every >= 1, "--stream_flush_every must be at least 1"},
      {!l.event_type.empty(), "--event_type must not be empty"},
      {o.open_fraction >= 0 && o.open_fraction <= 1,
       "--open_fraction must be 0..1"}};
  for (const auto& [ok, message] : checks) {
    if (!ok) return absl::InvalidArgumentError(message);
  }
  return absl::OkStatus();
}

// Without --target, starts a child recsys-server on --model or
// --train-data; null when the server is external. Sets info->target.
absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer(
    const BenchOptions& o, std::ostream& log, ServerInfo* info) {
  std::unique_ptr<ServerProcess> server;
  if (o.target.empty()) {
    if (o.security.UsesTls() || !o.security.token.empty()) {
      return absl::InvalidArgumentError(
          "TLS and token flags are for --target: a server recsys-bench "
          "starts listens in plaintext on loopback");
    }
    if (o.model_file.empty() && o.train_data.empty()) {
      return absl::InvalidArgumentError(
          "give --target, or --model / --train-data to start a server");
    }
    std::string bin =
        o.server_binary.empty() ? FindServerBinary() : o.server_binary;
    if (bin.empty()) {
      return absl::NotFoundError(
          "recsys-server not found next to recsys-bench; pass --server-bin");
    }
    std::vector<std::string> flags;
    if (!o.model_file.empty()) {
      flags.push_back("--model=" + o.model_file);
    } else {
      flags.push_back("--train-data=" + o.train_data);
    }
    flags.insert(flags.end(), o.server_flags.begin(), o.server_flags.end());
    server = std::make_unique<ServerProcess>(bin, flags);
    log << "recsys-bench: starting " << bin << " " << absl::StrJoin(flags, " ")
        << "\n";
    RECSYS_RETURN_IF_ERROR(
        server->Start(absl::Seconds(o.server_start_timeout_seconds)));
    info->target = server->target();
    info->started = true;
  } else {
    info->target = o.target;
  }
  return server;
}

// Runs one workload with the given options (logging it first).
using RunFn = std::function<WorkloadResult(const LoadOptions&)>;

// Each round runs every workload once, starting one further along the list
// each round (round r runs workload r first, then the rest in order, then
// those before it); a workload's row merges its rounds. Rounds spread the
// machine's slow drifts (other tenants, clock speed, and for writes the
// state that grows as they run) evenly over the workloads compared: over
// as many rounds as workloads, each runs once in every position.
std::vector<Row> RunRounds(const BenchOptions& o,
                           const std::vector<Workload>& workloads,
                           const RunFn& run, std::ostream& log) {
  std::vector<Row> closed(workloads.size());
  for (int round = 0; round < o.rounds; ++round) {
    if (o.rounds > 1) {
      log << "recsys-bench: round " << round + 1 << " of " << o.rounds << "\n";
    }
    double empty_qps = -1;
    std::vector<double> qps(workloads.size());
    for (size_t step = 0; step < workloads.size(); ++step) {
      const size_t w = (step + static_cast<size_t>(round)) % workloads.size();
      LoadOptions lo = o.load;
      lo.workload = workloads[w];
      // Ids drawn afresh for every run: a write workload that replayed the
      // previous one's (user, item) pairs would update pairs that one had
      // created (two fold-in updates each instead of one), not compare
      // like with like. Still a fixed sequence for a given --seed.
      lo.seed =
          o.load.seed + 0x9e3779b97f4a7c15ULL *
                            static_cast<uint64_t>(round * workloads.size() + w);
      const WorkloadResult r = run(lo);
      qps[w] = r.qps;
      if (workloads[w] == Workload::kEmpty && lo.qps <= 0 && empty_qps < 0) {
        empty_qps = r.qps;
      }
      if (round == 0) {
        closed[w].load = lo;
        closed[w].result = r;
      } else {
        MergeRound(&closed[w].result, r);
      }
    }
    for (size_t w = 0; w < workloads.size(); ++w) {
      if (empty_qps > 0) closed[w].round_ratios.push_back(qps[w] / empty_qps);
    }
  }
  return closed;
}

// Follows each closed-loop row with an open-loop run at --open_fraction of
// its throughput, then sets every row's ratio to the closed-loop empty RPC.
std::vector<Row> AddOpenLoopRows(const BenchOptions& o, std::vector<Row> closed,
                                 const RunFn& run) {
  std::vector<Row> rows;
  double empty_qps = -1;
  for (const Row& row : closed) {
    if (row.result.workload == Workload::kEmpty && !row.result.open_loop &&
        empty_qps < 0) {
      empty_qps = row.result.qps;
    }
  }
  for (Row& row : closed) {
    LoadOptions lo = row.load;
    const double measured_qps = row.result.qps;
    rows.push_back(std::move(row));
    if (o.open_fraction > 0 && lo.qps <= 0 && !IsStreamWorkload(lo.workload) &&
        measured_qps > 0) {
      lo.qps = measured_qps * o.open_fraction;
      Row open;
      open.load = lo;
      open.result = run(lo);
      rows.push_back(std::move(open));
    }
  }
  for (Row& row : rows) {
    if (empty_qps > 0) row.ratio = row.result.qps / empty_qps;
  }
  return rows;
}

// Connects to info->target, learns the model and its ids, and runs every
// workload. The channels close on return, before the server is stopped:
// an open channel holds its shutdown for the whole grace period.
absl::StatusOr<std::vector<Row>> Measure(const BenchOptions& o,
                                         const std::vector<Workload>& workloads,
                                         ServerProcess* server,
                                         ServerInfo* info, std::ostream& log) {
  RECSYS_ASSIGN_OR_RETURN(const auto channels,
                          MakeChannels(info->target, o.security, o.channels));
  RECSYS_RETURN_IF_ERROR(Connect(channels, o.load.timeout_seconds, info));
  RECSYS_ASSIGN_OR_RETURN(RequestIds ids, LoadIds(o, *info));
  log << "recsys-bench: " << info->target << " serves a " << info->kind
      << " model (" << info->factors << " factors, " << info->users
      << " users, " << info->items << " items); " << ids.users.size()
      << " user ids to draw from\n";
  std::function<double()> server_cpu;
  if (server) server_cpu = [&] { return server->CpuSeconds(); };

  const RunFn run = [&](LoadOptions lo) {
    log << "recsys-bench: " << WorkloadName(lo.workload) << ", "
        << (IsStreamWorkload(lo.workload)
                ? absl::StrCat(lo.streams, " stream(s), window ",
                               lo.stream_window)
            : lo.qps > 0 ? absl::StrFormat("open loop at %.0f/s", lo.qps)
                         : absl::StrCat(lo.inflight, " in flight"))
        << ", " << lo.warmup_seconds << " s warm-up + " << lo.duration_seconds
        << " s\n";
    return RunWorkload(channels, ids, lo, server_cpu);
  };
  std::vector<Row> closed = RunRounds(o, workloads, run, log);
  return AddOpenLoopRows(o, std::move(closed), run);
}

void PrintJsonReport(const BenchOptions& o, const ServerInfo& info,
                     const std::vector<Row>& rows, std::ostream& out) {
  Json report;
  report["target"] = info.target;
  report["server_started"] = info.started;
  report["model"] = {{"kind", info.kind},
                     {"factors", info.factors},
                     {"users", info.users},
                     {"items", info.items}};
  report["channels"] = o.channels;
  report["client_threads"] = o.load.threads;
  report["decode_responses"] = o.load.decode_responses;
  report["warmup_s"] = JsonNumber(o.load.warmup_seconds);
  report["duration_s"] = JsonNumber(o.load.duration_seconds);
  report["rounds"] = o.rounds;
  report["recommend_genre"] = o.load.recommend_genre;
  report["recommend_candidates"] = o.load.recommend_candidates;
  Json results = Json::array();
  for (const Row& row : rows) results.push_back(ResultJson(row));
  report["results"] = std::move(results);
  out << DumpJson(report) << "\n";
}

void PrintTextReport(const BenchOptions& o, const ServerInfo& info,
                     const std::vector<Row>& rows, std::ostream& out) {
  out << absl::StrFormat(
      "target %s (%s), %s model: %d factors, %d users, %d items\n"
      "%d channels, %d client thread(s), %.1f s warm-up, %.1f s measured "
      "per workload and round, %d round(s), responses %s\n",
      info.target, info.started ? "started by recsys-bench" : "external",
      info.kind, info.factors, info.users, info.items, o.channels,
      o.load.threads, o.load.warmup_seconds, o.load.duration_seconds, o.rounds,
      o.load.decode_responses ? "decoded" : "kept as bytes");
  if (!o.load.recommend_genre.empty() || o.load.recommend_candidates > 0) {
    out << absl::StrFormat(
        "recommend: genre '%s', %d candidate items per user\n",
        o.load.recommend_genre, o.load.recommend_candidates);
  }
  PrintTable(rows, out);
}

// An error for the first workload of which no call succeeded.
absl::Status CheckEverySucceeded(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    if (row.result.total.ok == 0) {
      return absl::UnavailableError(absl::StrCat(
          WorkloadName(row.result.workload), ": no call succeeded",
          row.result.total.first_error.empty()
              ? ""
              : absl::StrCat(" (", row.result.total.first_error, ")")));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunBench(const BenchOptions& o, std::ostream& out,
                      std::ostream& log) {
  RECSYS_ASSIGN_OR_RETURN(const std::vector<Workload> workloads,
                          ParseWorkloads(o));
  RECSYS_RETURN_IF_ERROR(CheckRanges(o));

  ServerInfo info;
  RECSYS_ASSIGN_OR_RETURN(std::unique_ptr<ServerProcess> server,
                          StartServer(o, log, &info));
  RECSYS_ASSIGN_OR_RETURN(const std::vector<Row> rows,
                          Measure(o, workloads, server.get(), &info, log));
  if (server) server->Stop();

  if (o.json) {
    PrintJsonReport(o, info, rows, out);
  } else {
    PrintTextReport(o, info, rows, out);
  }
  return CheckEverySucceeded(rows);
}

}  // namespace recsys::bench
