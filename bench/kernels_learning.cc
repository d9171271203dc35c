// recsys-kernels-bench's kernels of learning from ratings: fold-in alone
// (fold_in, fold_in_update), inside the Engine (engine_rate,
// engine_recommend) and TrainModel (train).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "bench/kernels_bench_internal.h"
#include "engine/engine.h"
#include "models/fold_in.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/train.h"
#include "storage/rating_log.h"

namespace recsys::kernels {
namespace {

// An engine serving `m` from a fresh directory, without the disk's costs
// (log policy "never"), with user "heavy" holding n random ratings (their
// fold-in equations kept). The directory goes with it.
struct BenchEngine {
  std::string dir;
  std::vector<RatingInput> history;  // "heavy"'s ratings
  std::unique_ptr<Engine> engine;

  ~BenchEngine() {
    engine.reset();  // closed before its directory goes
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

absl::Status OpenBenchEngine(const Model& m, int32_t n, BenchEngine* out) {
  out->dir = absl::StrCat(std::filesystem::temp_directory_path().string(),
                          "/recsys-kernels-", getpid(), "-", n);
  std::filesystem::remove_all(out->dir);
  EngineOptions options;
  options.data_dir = out->dir;
  options.log.sync = SyncPolicy::kNever;
  options.snapshot_every = 0;
  RECSYS_ASSIGN_OR_RETURN(
      out->engine,
      Engine::Open(options, [&]() -> absl::StatusOr<Model> { return m; }));
  for (const IndexedRating& r : RandomRatings(m, n, 5)) {
    out->history.push_back({"heavy", m.items.External(r.index), r.value, 0});
  }
  for (const absl::StatusOr<RateResult>& r :
       out->engine->RateBatch(out->history)) {
    RECSYS_RETURN_IF_ERROR(r.status());
  }
  return absl::OkStatus();
}

}  // namespace

void FoldIn(benchmark::State& state, int32_t factors, int32_t n) {
  constexpr int32_t kItems = 62423;
  const Model& m = RandomModel(kItems, factors, ModelKind::kAls, 0.3f);
  std::mt19937_64 rng(5);
  std::vector<IndexedRating> ratings;
  std::vector<char> used(kItems, 0);
  while (static_cast<int32_t>(ratings.size()) < n) {
    const auto i = static_cast<int32_t>(rng() % kItems);
    if (used[i]) continue;
    used[i] = 1;
    ratings.push_back({i, static_cast<float>(1 + rng() % 5)});
  }
  for (auto _ : state) {
    absl::StatusOr<FoldInResult> r = FoldInUser(m, ratings);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(r->factors.data());
  }
}
// What the server does per rating of a user whose fold-in equations it
// keeps (FoldInEquations): a re-rating (the old value out, the new in) of
// a user with n ratings, then the solve. Not `hybrid`: an ALS-shaped
// random model with `factors` over 62k items; else the hybrid model.
void FoldInUpdate(benchmark::State& state, bool hybrid, int32_t factors,
                  int32_t n) {
  const Model& m = hybrid ? HybridModel()
                          : RandomModel(62423, factors, ModelKind::kAls, 0.3f);
  const std::vector<IndexedRating> ratings = RandomRatings(m, n, 5);
  FoldInEquations eq(m, /*user_side=*/true);
  auto row = [&](int32_t i) { return m.item_factors.row(i).data(); };
  for (const IndexedRating& r : ratings) {
    eq.Add(row(r.index), m.item_bias[r.index], r.value);
  }
  int64_t j = 0;
  for (auto _ : state) {
    const IndexedRating& r = ratings[j++ % n];
    eq.Add(row(r.index), m.item_bias[r.index], r.value, -1.0f);
    eq.Add(row(r.index), m.item_bias[r.index], 6.0f - r.value);
    FoldInResult solved = eq.Solve();
    benchmark::DoNotOptimize(solved.factors.data());
    eq.Add(row(r.index), m.item_bias[r.index], 6.0f - r.value, -1.0f);
    eq.Add(row(r.index), m.item_bias[r.index], r.value);
  }
}

// FoldInUser from all n ratings of the hybrid model: what a rating costs
// without kept equations.
void FoldInHybrid(benchmark::State& state, int32_t n) {
  const Model& m = HybridModel();
  const std::vector<IndexedRating> ratings = RandomRatings(m, n, 5);
  for (auto _ : state) {
    absl::StatusOr<FoldInResult> r = FoldInUser(m, ratings);
    benchmark::DoNotOptimize(r->factors.data());
  }
}

// Engine::Rate without the disk: a re-rating by a user with n ratings, over
// an ALS-shaped model of 62k items x 32 factors, the user's fold-in
// equations kept. What a Rate costs the server besides the transport and
// the fsync, and how it grows with the user's history.
void EngineRate(benchmark::State& state, int32_t n) {
  BenchEngine b;
  if (absl::Status s =
          OpenBenchEngine(RandomModel(62423, 32, ModelKind::kAls, 0.3f), n, &b);
      !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  int64_t j = 0;
  for (auto _ : state) {
    RatingInput& again = b.history[static_cast<size_t>(j++ % n)];
    again.value = 6.0f - again.value;  // a new value each time
    absl::StatusOr<RateResult> r = b.engine->Rate(again);
    benchmark::DoNotOptimize(r.ok());
  }
}

// Engine::Recommend (k = 10) on the hybrid ML-100K-shaped model: for the
// stored user "heavy" with n ratings, or (session) for a visitor with the
// same n ratings, folded in at each call. The difference is what a
// visitor's fold-in costs.
void EngineRecommend(benchmark::State& state, int32_t n, bool session) {
  BenchEngine b;
  if (absl::Status s = OpenBenchEngine(HybridModel(), n, &b); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  RecommendQuery q;
  if (session) {
    for (const RatingInput& r : b.history)
      q.session.push_back({r.item, r.value});
  } else {
    q.user = "heavy";
  }
  for (auto _ : state) {
    absl::StatusOr<RecommendResult> r = b.engine->Recommend(
        q, [](const RecommendedItemRef& it) { benchmark::DoNotOptimize(&it); });
    benchmark::DoNotOptimize(r.ok());
  }
}

void TrainOneEpoch(benchmark::State& state, const DataSize& size,
                   ModelKind kind) {
  const RatingData& data = Data(size);
  Hyperparameters params = DefaultHyperparameters(kind);
  params.epochs = 1;
  if (kind == ModelKind::kBayes) {  // one Gibbs sweep, kept as the sample
    params.burn_in = 0;
    params.samples = 1;
  }
  TrainOptions options;
  options.threads = 2;
  for (auto _ : state) {
    absl::StatusOr<Model> m = TrainModel(data, kind, params, options);
    if (!m.ok()) {
      state.SkipWithError(std::string(m.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(m->item_bias.data());
  }
  state.counters["ratings_per_s"] = benchmark::Counter(
      static_cast<double>(data.ratings.size()) * state.iterations(),
      benchmark::Counter::kIsRate);
}

}  // namespace recsys::kernels
