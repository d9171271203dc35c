// recsys-kernels-bench's scoring and top-k kernels (score_*, topk_only,
// read_factors, whatif_score_*): what the server does per Recommend, the
// paths it replaced, and the memory-bandwidth floor.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "Eigen/Core"
#include "bench/kernels_bench_internal.h"
#include "models/model.h"
#include "models/scoring.h"
#include "models/topk.h"

namespace recsys::kernels {
namespace {

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

}  // namespace

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

}  // namespace recsys::kernels
