// recsys-kernels-bench: Google Benchmark programs for the hot kernels.
//
//   score_topk/<items>x<factors>    ItemPanels::ScoreTopK(10), one user:
//                                   what the server does per Recommend
//                                   (exact_items: how many it scored in
//                                   float after the int8 bounds)
//   score_topk_float/...            ItemPanels::Score + TopK(10): the same
//                                   answer from every item's float score
//   score_only, topk_only           the two halves of that
//   score_topk_exclude/...          score_topk skipping 100 items, the
//                                   way Recommend skips a user's ratings
//   score_topk_genre/...            score_topk_exclude within a genre of
//                                   1/8 of the items (an `allowed` bit
//                                   set; whatif_score_topk_genre_listed:
//                                   the rest listed as exclusions)
//   score_topk_rowmajor/...         ScoreAllItems (Eigen's row-major
//                                   product) + TopK(10), the old path
//   read_factors/<items>x<factors>  one pass summing the item-factor matrix:
//                                   the memory-bandwidth floor for scoring
//   fold_in/<factors>f/<n>          FoldInUser from n ratings
//   fold_in/hybrid/<n>              the same for the default (hybrid) model
//   fold_in_update/<factors>f/<n>   one re-rating of a user with n ratings
//   fold_in_update/hybrid/<n>       through kept FoldInEquations, and the
//                                   solve: the server's cost per rating
//   engine_rate/<n>                 Engine::Rate (no fsync) re-rating an
//                                   item of a user with n ratings
//   engine_recommend/hybrid/<n>     Engine::Recommend(k = 10) for a user
//                                   with n ratings; _session: for a visitor
//                                   with the same ratings (folded in)
//   train/<kind>/<ratings>          TrainModel with epochs = 1, 2 threads, on
//                                   generated MovieLens-like data
//   whatif_*                        alternatives the profiles suggest, timed
//                                   beside the kernels they would replace
//
// Scoring every item in float reads every item vector once, so
// score_topk_float / read_factors of the same shape says how close it runs
// to the memory system's limit; score_topk, reading int8 codes instead,
// can go below it. They are registered next to each other so they run
// under the same load.
//
//   recsys-kernels-bench --benchmark_filter='score_topk|read_factors'
//   recsys-kernels-bench --benchmark_filter=fold_in --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "Eigen/Core"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "models/fold_in.h"
#include "models/model.h"
#include "models/scoring.h"
#include "models/topk.h"
#include "models/train.h"
#include "engine/engine.h"
#include "storage/rating_log.h"
#include "trainer/generate.h"

namespace recsys {
namespace {

// A model of the given shape with Gaussian factors and biases. Only the
// latest one is kept: the 1M x 128 matrix alone is 512 MB.
const Model& RandomModel(int32_t items, int32_t factors, ModelKind kind,
                         float factor_std) {
  static std::unique_ptr<Model> cached;
  static std::tuple<int32_t, int32_t, ModelKind> key;
  if (cached && key == std::make_tuple(items, factors, kind)) return *cached;
  cached.reset();
  auto m = std::make_unique<Model>();
  m->kind = kind;
  m->params = DefaultHyperparameters(kind);
  m->params.factors = factors;
  m->mu = 3.5f;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (int32_t i = 0; i < items; ++i) m->items.Insert(absl::StrCat(i));
  m->users.Insert("u");
  m->item_bias.resize(items);
  for (int32_t i = 0; i < items; ++i) m->item_bias[i] = 0.4f * gauss(rng);
  m->item_factors.resize(items, factors);
  for (int64_t j = 0; j < m->item_factors.size(); ++j) {
    m->item_factors.data()[j] = factor_std * gauss(rng);
  }
  m->user_bias = Eigen::VectorXf::Zero(1);
  m->user_factors = RowMatrix::Zero(1, factors);
  m->user_ratings.offsets = {0, 0};  // "u" rated nothing
  m->item_counts.assign(items, 1);
  m->item_info.resize(items);
  cached = std::move(m);
  key = std::make_tuple(items, factors, kind);
  return *cached;
}

Eigen::VectorXf RandomUser(int32_t factors) {
  std::mt19937_64 rng(11);
  std::normal_distribution<float> gauss(0.0f, 0.1f);
  Eigen::VectorXf p(factors);
  for (int32_t f = 0; f < factors; ++f) p[f] = gauss(rng);
  return p;
}

void SetMatrixBytes(benchmark::State& state, const Model& m) {
  const int64_t bytes = static_cast<int64_t>(m.item_factors.size()) * 4;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.counters["matrix_MB"] = static_cast<double>(bytes) / 1e6;
}

// The panels of a model, built once per model as the server builds them once
// per generation (not timed: it is not part of a request).
// `int8` kAlways makes the int8 copy whatever the size.
const ItemPanels& PanelsOf(const Model& m,
                           ItemPanels::Int8 int8 = ItemPanels::Int8::kIfLarge) {
  static std::unique_ptr<ItemPanels> cached;
  static const Model* key = nullptr;
  static int64_t key_size = -1;
  static ItemPanels::Int8 key_int8 = ItemPanels::Int8::kIfLarge;
  if (!cached || key != &m || key_size != m.item_factors.size() ||
      key_int8 != int8) {
    cached = std::make_unique<ItemPanels>(m.item_factors, m.item_bias, int8);
    key = &m;
    key_size = m.item_factors.size();
    key_int8 = int8;
  }
  return *cached;
}

// How many items the last ScoreTopK call scored exactly, as a counter
// (-1: it scored them all).
void SetExactItems(benchmark::State& state) {
  state.counters["exact_items"] =
      static_cast<double>(ItemPanels::LastExactCount());
}

// What the server does per Recommend: ItemPanels::ScoreTopK(10), the int8
// bounds and then the exact scores of the few items that can win, into a
// reused vector.
void ScoreTopK(benchmark::State& state, int32_t items, int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const ItemPanels& panels = PanelsOf(m);
  const Eigen::VectorXf p = RandomUser(factors);
  std::vector<ScoredItem> top;
  for (auto _ : state) {
    panels.ScoreTopK(p.data(), m.mu + 0.1f, {}, 10, {}, &top);
    benchmark::DoNotOptimize(top.data());
  }
  SetMatrixBytes(state, m);
  SetExactItems(state);
}

// The same answer from every item's float score and TopK(10): the path
// before ScoreTopK's int8 bounds.
void ScoreTopKFloat(benchmark::State& state, int32_t items, int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const ItemPanels& panels = PanelsOf(m);
  const Eigen::VectorXf p = RandomUser(factors);
  std::vector<float> scores(static_cast<size_t>(items));
  std::vector<ScoredItem> top;
  for (auto _ : state) {
    panels.Score(p.data(), m.mu + 0.1f, scores.data());
    TopK(scores, 10, {}, &top);
    benchmark::DoNotOptimize(top.data());
  }
  SetMatrixBytes(state, m);
}

// How a genre of 1/8 of the items, drawn at random, reaches ScoreTopK: not
// at all, as an `allowed` bit set (as Recommend passes it), or listed as
// exclusions, every item outside it, as Recommend did before.
enum class Genre { kNone, kBits, kListed };

// The same, skipping 100 items in random order: about what an ML-100K user
// has rated (106 on average), which Recommend leaves out by default, the
// way Recommend does it (overwriting its own scores). It cycles through 64
// users, each with its own vector and exclusions: with one user, every
// iteration repeats the same branches and the predictor learns them, which
// the server, serving a different user each call, never sees. With a
// `genre`, within it. whatif_score_topk_int8 is this with the int8 copy
// made whatever the catalogue's size: where it beats score_topk_exclude,
// ItemPanels::kInt8MinFloats is too high.
void ScoreTopKExclude(benchmark::State& state, int32_t items, int32_t factors,
                      Genre genre, ItemPanels::Int8 int8) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const ItemPanels& panels = PanelsOf(m, int8);
  constexpr int kUsers = 64;
  std::mt19937_64 rng(13);
  std::normal_distribution<float> gauss(0.0f, 0.1f);
  std::vector<Eigen::VectorXf> users(kUsers, Eigen::VectorXf(factors));
  std::vector<std::vector<int32_t>> excludes(kUsers);
  std::vector<int32_t> all(static_cast<size_t>(items));
  for (int32_t i = 0; i < items; ++i) all[i] = i;
  for (int u = 0; u < kUsers; ++u) {
    for (int32_t f = 0; f < factors; ++f) users[u][f] = gauss(rng);
    std::shuffle(all.begin(), all.end(), rng);
    excludes[u].assign(all.begin(),
                       all.begin() + std::min<size_t>(100, all.size()));
  }
  std::vector<uint64_t> in_genre;
  std::vector<int32_t> outside;
  if (genre != Genre::kNone) {
    in_genre.assign(static_cast<size_t>((items + 63) / 64), 0);
    std::mt19937_64 draw(17);
    for (int32_t i = 0; i < items; ++i) {
      if (draw() % 8 == 0) {
        in_genre[static_cast<size_t>(i / 64)] |= uint64_t{1} << (i % 64);
      } else {
        outside.push_back(i);
      }
    }
  }
  std::vector<int32_t> exclude;
  std::vector<ScoredItem> top;
  int u = 0;
  int64_t exact_items = 0;
  for (auto _ : state) {
    if (genre == Genre::kListed) {
      // Built per call, as Recommend built it.
      exclude.assign(excludes[u].begin(), excludes[u].end());
      exclude.insert(exclude.end(), outside.begin(), outside.end());
      panels.ScoreTopK(users[u].data(), m.mu + 0.1f, {}, 10, exclude, &top);
    } else {
      panels.ScoreTopK(users[u].data(), m.mu + 0.1f, {}, 10, excludes[u],
                       in_genre, &top);
    }
    exact_items += ItemPanels::LastExactCount();
    benchmark::DoNotOptimize(top.data());
    u = (u + 1) % kUsers;
  }
  SetMatrixBytes(state, m);
  state.counters["exact_items"] =
      static_cast<double>(exact_items) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

// The library's ScoreAllItems (Eigen's row-major product) + TopK(10), as
// the server did before the panels.
void ScoreTopKRowMajor(benchmark::State& state, int32_t items,
                       int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const Eigen::VectorXf p = RandomUser(factors);
  Eigen::VectorXf scores;
  for (auto _ : state) {
    ScoreAllItems(m, 0.1f, p.data(), &scores);
    std::vector<ScoredItem> top = TopK(scores, 10, {});
    benchmark::DoNotOptimize(top.data());
  }
  SetMatrixBytes(state, m);
}

void ScoreOnly(benchmark::State& state, int32_t items, int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const ItemPanels& panels = PanelsOf(m);
  const Eigen::VectorXf p = RandomUser(factors);
  std::vector<float> scores(static_cast<size_t>(items));
  for (auto _ : state) {
    panels.Score(p.data(), m.mu + 0.1f, scores.data());
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  SetMatrixBytes(state, m);
}

void TopKOnly(benchmark::State& state, int32_t items, int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const Eigen::VectorXf p = RandomUser(factors);
  Eigen::VectorXf scores;
  ScoreAllItems(m, 0.1f, p.data(), &scores);
  std::vector<ScoredItem> top;
  for (auto _ : state) {
    TopK(scores, 10, {}, &top);
    benchmark::DoNotOptimize(top.data());
  }
}

void ReadFactors(benchmark::State& state, int32_t items, int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  for (auto _ : state) {
    float sum = m.item_factors.sum();
    benchmark::DoNotOptimize(sum);
  }
  SetMatrixBytes(state, m);
}

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

// What-if kernels: not used by the library, here to measure the gains the
// profiles suggest, next to the real kernels under the same conditions.

// The same product with the item factors stored column-major (one factor of
// every item contiguous): Eigen then streams axpy over whole columns instead
// of 4-row dot products.
void WhatIfScoreColMajor(benchmark::State& state, int32_t items,
                         int32_t factors) {
  const Model& m = RandomModel(items, factors, ModelKind::kSgd, 0.1f);
  const Eigen::MatrixXf q = m.item_factors;  // column-major copy
  const Eigen::VectorXf p = RandomUser(factors);
  Eigen::VectorXf scores(items);
  for (auto _ : state) {
    scores = m.item_bias.array() + (m.mu + 0.1f);
    scores.noalias() += q * p;
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  SetMatrixBytes(state, m);
}

struct DataSize {
  const char* name;
  int32_t users;
  int32_t items;
  int64_t ratings;
};
// ML-100K, ML-1M and ML-10M-like shapes, scaled to stay quick.
constexpr DataSize kDataSizes[] = {{"100k", 943, 1682, 100000},
                                   {"1M", 6040, 3706, 1000000},
                                   {"5M", 35000, 10000, 5000000}};

const RatingData& Data(const DataSize& size) {
  static std::unique_ptr<RatingData> cached;
  static std::string key;
  if (cached && key == size.name) return *cached;
  cached.reset();
  GenerateOptions o;
  o.users = size.users;
  o.items = size.items;
  o.ratings = size.ratings;
  o.rank = 16;
  o.seed = 3;
  absl::StatusOr<RatingData> d = GenerateRatingData(o);
  if (!d.ok()) std::abort();
  cached = std::make_unique<RatingData>(*std::move(d));
  key = size.name;
  return *cached;
}

// n distinct random items of `m` with random 1..5 ratings.
std::vector<IndexedRating> RandomRatings(const Model& m, int32_t n,
                                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<IndexedRating> ratings;
  std::vector<char> used(m.num_items(), 0);
  while (static_cast<int32_t>(ratings.size()) < n) {
    const auto i = static_cast<int32_t>(rng() % m.num_items());
    if (used[i]) continue;
    used[i] = 1;
    ratings.push_back({i, static_cast<float>(1 + rng() % 5)});
  }
  return ratings;
}

// The default hybrid model's shape (32 iALS columns, 48 Bayesian samples of
// 8 factors) trained on the generated 100k set with fewer sweeps.
const Model& HybridModel() {
  static const Model* m = [] {
    Hyperparameters p = DefaultHyperparameters(ModelKind::kHybrid);
    p.epochs = p.burn_in + p.samples;
    TrainOptions o;
    o.threads = 2;
    absl::StatusOr<Model> trained =
        TrainModel(Data(kDataSizes[0]), ModelKind::kHybrid, p, o);
    return trained.ok() ? new Model(*std::move(trained)) : nullptr;
  }();
  return *m;
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

void RegisterAll() {
  for (int32_t items : {1682, 4096, 9742, 62423, 1000000}) {
    // 32 factors: the ranking part of the default kHybrid model.
    for (int32_t factors : {32, 64, 128}) {
      const std::string shape = absl::StrCat(items, "x", factors);
      benchmark::RegisterBenchmark(("score_topk/" + shape).c_str(), ScoreTopK,
                                   items, factors)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("score_topk_float/" + shape).c_str(),
                                   ScoreTopKFloat, items, factors)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("score_topk_exclude/" + shape).c_str(),
                                   ScoreTopKExclude, items, factors,
                                   Genre::kNone, ItemPanels::Int8::kIfLarge)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("score_topk_genre/" + shape).c_str(),
                                   ScoreTopKExclude, items, factors,
                                   Genre::kBits, ItemPanels::Int8::kIfLarge)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(
          ("whatif_score_topk_genre_listed/" + shape).c_str(), ScoreTopKExclude,
          items, factors, Genre::kListed, ItemPanels::Int8::kIfLarge)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("whatif_score_topk_int8/" + shape).c_str(),
                                   ScoreTopKExclude, items, factors,
                                   Genre::kNone, ItemPanels::Int8::kAlways)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("read_factors/" + shape).c_str(),
                                   ReadFactors, items, factors)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("score_topk_rowmajor/" + shape).c_str(),
                                   ScoreTopKRowMajor, items, factors)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("score_only/" + shape).c_str(), ScoreOnly,
                                   items, factors)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("topk_only/" + shape).c_str(), TopKOnly,
                                   items, factors)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("whatif_score_colmajor/" + shape).c_str(),
                                   WhatIfScoreColMajor, items, factors)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (int32_t factors : {64, 128}) {
    for (int32_t n : {10, 100, 1000}) {
      benchmark::RegisterBenchmark(
          absl::StrCat("fold_in/", factors, "f/", n).c_str(), FoldIn, factors,
          n)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(
          absl::StrCat("fold_in_update/", factors, "f/", n).c_str(),
          FoldInUpdate, false, factors, n)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (int32_t n : {10, 100, 1000, 10000}) {
    benchmark::RegisterBenchmark(absl::StrCat("engine_rate/", n).c_str(),
                                 EngineRate, n)
        ->Unit(benchmark::kMicrosecond);
  }
  // The hybrid model's items number 1682: up to 1000 ratings.
  for (int32_t n : {10, 100, 1000}) {
    benchmark::RegisterBenchmark(
        absl::StrCat("engine_recommend/hybrid/", n).c_str(), EngineRecommend, n,
        false)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(
        absl::StrCat("engine_recommend_session/hybrid/", n).c_str(),
        EngineRecommend, n, true)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(absl::StrCat("fold_in/hybrid/", n).c_str(),
                                 FoldInHybrid, n)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(
        absl::StrCat("fold_in_update/hybrid/", n).c_str(), FoldInUpdate, true,
        0, n)
        ->Unit(benchmark::kMicrosecond);
  }
  for (const DataSize& size : kDataSizes) {
    for (const char* name : {"sgd", "als", "ials", "bayes", "baseline"}) {
      absl::StatusOr<ModelKind> kind = ParseModelKind(name);
      if (!kind.ok()) continue;
      benchmark::RegisterBenchmark(
          absl::StrCat("train/", name, "/", size.name).c_str(), TrainOneEpoch,
          size, *kind)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

}  // namespace
}  // namespace recsys

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  recsys::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
