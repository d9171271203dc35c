// The benchmark programs, briefly: the latency histogram against exact
// percentiles, recsys-bench for a fraction of a second per workload against
// a server it starts on generated data (its --json output must parse and
// every workload must have succeeded calls), recsys-grpc-ceiling, and the
// smallest kernel benchmarks. Figures are never checked here: CI machines are
// noisy.
#include <sys/wait.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/histogram.h"
#include "bench/server_process.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/recsys.grpc.pb.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using bench::LatencyHistogram;

TEST(LatencyHistogramTest, PercentilesWithinBucketPrecision) {
  LatencyHistogram h;
  for (int64_t v = 1; v <= 100000; ++v) h.Record(v * 1000);
  EXPECT_EQ(h.count(), 100000);
  EXPECT_EQ(h.min(), 1000);
  EXPECT_EQ(h.max(), 100000000);
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const double exact = p * 1000 * 1000;
    EXPECT_NEAR(h.Percentile(p), exact, exact * 0.008) << p;
  }
  EXPECT_NEAR(h.mean(), 50000.5 * 1000, 1);
  EXPECT_EQ(h.Percentile(100), 100000000);
}

TEST(LatencyHistogramTest, BucketsAreContiguousAndMonotone) {
  for (int b = 0; b < 7000; ++b) {
    const int64_t low = LatencyHistogram::BucketLow(b);
    ASSERT_EQ(LatencyHistogram::BucketOf(low), b);
    ASSERT_LT(low, LatencyHistogram::BucketLow(b + 1));
    ASSERT_EQ(
        LatencyHistogram::BucketOf(LatencyHistogram::BucketLow(b + 1) - 1), b);
  }
}

TEST(LatencyHistogramTest, MergeAndEmpty) {
  LatencyHistogram a, b;
  EXPECT_EQ(a.Percentile(99), 0);
  a.Record(5);
  b.Record(500);
  b.Record(-3);  // clock skew never goes negative
  a.Merge(b);
  EXPECT_EQ(a.count(), 3);
  EXPECT_EQ(a.min(), 0);
  EXPECT_EQ(a.max(), 500);
  EXPECT_EQ(a.Percentile(50), 5);
}

using testing::RunCommand;

google::protobuf::Struct ParseJson(const std::string& text) {
  google::protobuf::Struct s;
  const auto status = google::protobuf::util::JsonStringToMessage(text, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << text;
  return s;
}

double Number(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? -1 : it->second.number_value();
}

// Runs recsys-bench with `flags` (and --json) against a baseline server it
// starts on `data`, in a new directory named after `name`; its log goes to
// bench.log there.
testing::CommandResult RunBenchOnData(const std::string& name,
                                      const RatingData& data,
                                      const std::string& flags,
                                      const std::string& kind = "baseline") {
  const std::string dir = testing::MakeTempDir(name);
  const std::string csv = testing::WriteRatingsCsv(data, dir + "/ratings.csv");
  testing::CommandResult r = RunCommand(absl::StrCat(
      RECSYS_BENCH_BIN, " --server-bin=", RECSYS_SERVER_BIN,
      " --train-data=", csv, " --server-flags='--threads=2 --model-kind=", kind,
      "' ", flags, " --json 2>", dir, "/bench.log"));
  if (r.exit_code != 0) absl::StrAppend(&r.output, "\nsee ", dir, "/bench.log");
  return r;
}

TEST(BenchSmokeTest, EveryWorkloadAgainstAServerItStarts) {
  const testing::CommandResult r = RunBenchOnData(
      "bench", testing::PlantedData(200, 150, 4, 0.15, 0.3, 12, true),
      "--workloads=empty,recommend,rate,stream,mix --open-fraction=0.5"
      " --channels=2 --inflight=8 --stream-window=64 --warmup=0.1"
      " --duration=0.4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const google::protobuf::Struct json = ParseJson(r.output);
  const auto& results = json.fields().at("results").list_value().values();
  // Five closed-loop runs, and an open-loop one after each but the stream.
  ASSERT_EQ(results.size(), 9);
  std::vector<std::string> names;
  for (const auto& v : results) {
    const google::protobuf::Struct& res = v.struct_value();
    const std::string name = res.fields().at("workload").string_value();
    const std::string loop = res.fields().at("loop").string_value();
    names.push_back(name + "/" + loop);
    EXPECT_GT(Number(res, "qps"), 0) << name;
    EXPECT_EQ(Number(res, "errors"), 0)
        << name << ": " << res.fields().at("first_error").string_value();
    EXPECT_GT(Number(res, "ratio_to_empty"), 0) << name;
    const auto& lat = res.fields().at("latency_us").struct_value();
    EXPECT_GT(Number(lat, "p50"), 0) << name;
    EXPECT_LE(Number(lat, "p50"), Number(lat, "p99")) << name;
    EXPECT_LE(Number(lat, "p99"), Number(lat, "p999")) << name;
    // Open-loop runs report how late the client sent, which is part of
    // (so at most) the latency.
    EXPECT_EQ(res.fields().contains("send_lag_us"), loop == "open") << name;
    if (loop == "open") {
      const auto& lag = res.fields().at("send_lag_us").struct_value();
      EXPECT_LE(Number(lag, "p50"), Number(lat, "p50") + 1) << name;
    }
  }
  EXPECT_THAT(names, ::testing::ElementsAre(
                         "empty/closed", "empty/open", "recommend/closed",
                         "recommend/open", "rate/closed", "rate/open",
                         "stream/closed", "mix/closed", "mix/open"));
  const auto& mix = results[7].struct_value().fields().at("ops").struct_value();
  EXPECT_TRUE(mix.fields().contains("recommend"));
  EXPECT_TRUE(mix.fields().contains("rate"));
}

// SimilarItems needs item vectors, so a factor model, and so do
// Recommends with candidate lists; responses both kept as bytes and
// decoded.
TEST(BenchSmokeTest, SimilarAndCandidateWorkloadsAgainstAFactorModel) {
  for (const char* decode : {"", " --decode-responses"}) {
    const testing::CommandResult r = RunBenchOnData(
        "bench-similar", testing::PlantedData(60, 80, 3, 0.2, 0.3, 15, true),
        absl::StrCat("--workloads=empty,similar,recommend --k=5 --channels=2"
                     " --recommend-candidates=12"
                     " --inflight=8 --warmup=0.05 --duration=0.2",
                     decode),
        "ials");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const google::protobuf::Struct json = ParseJson(r.output);
    EXPECT_EQ(Number(json, "recommend_candidates"), 12);
    const auto& results = json.fields().at("results").list_value().values();
    ASSERT_EQ(results.size(), 3);
    for (int w : {1, 2}) {
      const google::protobuf::Struct& res = results[w].struct_value();
      const std::string name = res.fields().at("workload").string_value();
      EXPECT_EQ(name, w == 1 ? "similar" : "recommend");
      EXPECT_GT(Number(res, "qps"), 0) << name << decode;
      EXPECT_EQ(Number(res, "errors"), 0)
          << name << decode << ": "
          << res.fields().at("first_error").string_value();
      EXPECT_TRUE(
          res.fields().at("ops").struct_value().fields().contains(name));
    }
  }
}

TEST(BenchSmokeTest, RoundsAlternateTheWorkloadsAndMergeThem) {
  const testing::CommandResult r = RunBenchOnData(
      "bench-rounds", testing::PlantedData(120, 90, 4, 0.15, 0.3, 13, true),
      "--workloads=empty,recommend --rounds=3 --channels=2 --inflight=8"
      " --warmup=0.05 --duration=0.25");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const google::protobuf::Struct json = ParseJson(r.output);
  EXPECT_EQ(Number(json, "rounds"), 3);
  const auto& results = json.fields().at("results").list_value().values();
  ASSERT_EQ(results.size(), 2);
  const google::protobuf::Struct& empty = results[0].struct_value();
  const google::protobuf::Struct& rec = results[1].struct_value();
  // One row per workload, measured over all three rounds.
  for (const google::protobuf::Struct* res : {&empty, &rec}) {
    EXPECT_NEAR(Number(*res, "seconds"), 0.75, 0.2);
    EXPECT_NEAR(Number(*res, "qps") * Number(*res, "seconds"),
                Number(*res, "ok"), 1);
  }
  EXPECT_NEAR(Number(rec, "ratio_to_empty"),
              Number(rec, "qps") / Number(empty, "qps"), 1e-4);
  const auto& each = rec.fields().at("round_ratios").list_value().values();
  ASSERT_EQ(each.size(), 3);
  for (const auto& v : each) EXPECT_GT(v.number_value(), 0);
}

// recsys-grpc-ceiling answers health, GetModelInfo and a Recommend-shaped
// call of the size asked for, refuses every other method, and recsys-bench
// drives it as it drives recsys-server.
TEST(BenchSmokeTest, GrpcCeilingServesWhatItDocuments) {
  bench::ServerProcess server(
      RECSYS_CEILING_BIN, {"--recommend-work-us=5", "--recommend-bytes=700"});
  const absl::Status started = server.Start(absl::Seconds(30));
  ASSERT_TRUE(started.ok()) << started << "\n" << server.LogTail();
  auto channel =
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Recommender::NewStub(channel);
  {
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    ASSERT_TRUE(stub->GetModelInfo(&ctx, {}, &info).ok());
    EXPECT_EQ(info.kind(), "grpc-ceiling");
  }
  {
    grpc::ClientContext ctx;
    v1::RecommendRequest req;
    req.set_user_id("1");
    v1::RecommendResponse resp;
    ASSERT_TRUE(stub->Recommend(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.items_size(), 10);
    EXPECT_GE(resp.ByteSizeLong(), 700u);
    EXPECT_LE(resp.ByteSizeLong(), 710u);
  }
  {
    grpc::ClientContext ctx;
    v1::RateResponse resp;
    const grpc::Status s = stub->Rate(&ctx, v1::RateRequest(), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("Rate"));
  }
  {
    // The client's health command reads the answer as a HealthCheckResponse.
    std::ostringstream out, err;
    Streams io;
    io.out = &out;
    io.err = &err;
    const absl::Status s = RunHealth(ClientOptions(), {}, channel, io);
    ASSERT_TRUE(s.ok()) << s << " " << err.str();
    EXPECT_EQ(out.str(), "SERVING\n");
  }
  server.Stop();

  const std::string dir = testing::MakeTempDir("bench-ceiling");
  const std::string csv = testing::WriteRatingsCsv(
      testing::PlantedData(50, 40, 3, 0.2, 0.3, 14, true), dir + "/r.csv");
  const testing::CommandResult r = RunCommand(absl::StrCat(
      RECSYS_BENCH_BIN, " --server-bin=", RECSYS_CEILING_BIN,
      " --train-data=", csv,
      " --server-flags='--recommend-bytes=600 --threads=2'"
      " --workloads=empty,recommend,info --decode-responses --channels=2"
      " --inflight=8 --warmup=0.05 --duration=0.2 --json 2>",
      dir, "/bench.log"));
  ASSERT_EQ(r.exit_code, 0) << r.output << "\nsee " << dir << "/bench.log";
  const google::protobuf::Struct json = ParseJson(r.output);
  const auto& results = json.fields().at("results").list_value().values();
  ASSERT_EQ(results.size(), 3);
  for (const auto& v : results) {
    const google::protobuf::Struct& res = v.struct_value();
    const std::string name = res.fields().at("workload").string_value();
    EXPECT_GT(Number(res, "qps"), 0) << name;
    EXPECT_EQ(Number(res, "errors"), 0)
        << name << ": " << res.fields().at("first_error").string_value();
  }
}

// Options out of range are refused before any connection is tried (the
// target here has no server: trying would fail differently).
TEST(BenchSmokeTest, RefusesOptionsOutOfRangeBeforeConnecting) {
  const std::pair<const char*, const char*> bad[] = {
      {"--duration=-1", "--duration must be > 0 seconds"},
      {"--warmup=-1", "--warmup must be >= 0 seconds"},
      {"--qps=-5", "--qps must be >= 0 (0 = closed loop)"},
      {"--threads=0", "--threads must be 1..256"},
      {"--k=0", "--k must be 1..1000 (the server's limit)"},
      {"--mix-rate-percent=200", "--mix_rate_percent must be 0..100"},
      {"--stream-window=0", "--stream_window must be at least 1"},
      {"--workloads=stream,events --event-type=",
       "--event_type must not be empty"},
      {"--workloads=stream,event",
       "unknown workload 'event' (empty, recommend, rate, stream, events, "
       "mix, info, similar)"},
      {"--open-fraction=2", "--open_fraction must be 0..1"},
      {"--timeout=0", "--timeout must be > 0 seconds"}};
  for (const auto& [flag, message] : bad) {
    const testing::CommandResult r = RunCommand(absl::StrCat(
        RECSYS_BENCH_BIN, " --target=127.0.0.1:1 ", flag, " 2>&1"));
    EXPECT_EQ(r.exit_code, 1) << flag << ": " << r.output;
    EXPECT_EQ(r.output, absl::StrCat("recsys-bench: ", message, "\n")) << flag;
  }
}

TEST(BenchSmokeTest, KernelBenchmarksRunOnTheSmallestCatalogue) {
  const testing::CommandResult r = RunCommand(absl::StrCat(
      RECSYS_KERNELS_BENCH_BIN,
      " --benchmark_filter='^(score_topk|score_topk_genre|read_factors)/"
      "1682x64$|^fold_in/64f/10$|^engine_rate/10$' --benchmark_min_time=0.01"
      " --benchmark_format=json 2>/dev/null"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const google::protobuf::Struct json = ParseJson(r.output);
  std::vector<std::string> names;
  for (const auto& b : json.fields().at("benchmarks").list_value().values()) {
    const auto& fields = b.struct_value().fields();
    names.push_back(fields.at("name").string_value());
    // (A benchmark that called SkipWithError says so.)
    EXPECT_FALSE(fields.count("error_occurred") &&
                 fields.at("error_occurred").bool_value())
        << names.back() << ": "
        << (fields.count("error_message")
                ? fields.at("error_message").string_value()
                : "");
    EXPECT_GT(Number(b.struct_value(), "real_time"), 0);
  }
  EXPECT_THAT(names,
              ::testing::ElementsAre(
                  "score_topk/1682x64", "score_topk_genre/1682x64",
                  "read_factors/1682x64", "fold_in/64f/10", "engine_rate/10"));
}

}  // namespace
}  // namespace recsys
