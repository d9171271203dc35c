// Internals of recsys-kernels-bench, shared by kernels_bench.cc (the
// registrations and main), kernels_fixtures.cc, kernels_scoring.cc and
// kernels_learning.cc: the models and data the kernels run on, and the
// kernels themselves (described where they are defined).
#ifndef RECSYS_BENCH_KERNELS_BENCH_INTERNAL_H_
#define RECSYS_BENCH_KERNELS_BENCH_INTERNAL_H_

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "models/fold_in.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/scoring.h"

namespace recsys::kernels {

// --- kernels_fixtures.cc: models and data, built once and cached.

// A model of the given shape with Gaussian factors and biases. Only the
// latest one is kept: the 1M x 128 matrix alone is 512 MB.
const Model& RandomModel(int32_t items, int32_t factors, ModelKind kind,
                         float factor_std);

struct DataSize {
  const char* name;
  int32_t users;
  int32_t items;
  int64_t ratings;
};
// ML-100K, ML-1M and ML-10M-like shapes, scaled to stay quick.
inline constexpr DataSize kDataSizes[] = {{"100k", 943, 1682, 100000},
                                          {"1M", 6040, 3706, 1000000},
                                          {"5M", 35000, 10000, 5000000}};

// The generated data of `size` (the latest size asked for is kept).
const RatingData& Data(const DataSize& size);

// n distinct random items of `m` with random 1..5 ratings.
std::vector<IndexedRating> RandomRatings(const Model& m, int32_t n,
                                         uint64_t seed);

// The default hybrid model's shape (32 iALS columns, 48 Bayesian samples of
// 8 factors) trained on the generated 100k set with fewer sweeps.
const Model& HybridModel();

// --- kernels_scoring.cc: scoring and top-k.

// How a genre of 1/8 of the items, drawn at random, reaches ScoreTopK: not
// at all, as an `allowed` bit set (as Recommend passes it), or listed as
// exclusions, every item outside it, as Recommend did before.
enum class Genre { kNone, kBits, kListed };

void ScoreTopK(benchmark::State& state, int32_t items, int32_t factors);
void ScoreTopKFloat(benchmark::State& state, int32_t items, int32_t factors);
void ScoreTopKExclude(benchmark::State& state, int32_t items, int32_t factors,
                      Genre genre, ItemPanels::Int8 int8);
void ScoreTopKRowMajor(benchmark::State& state, int32_t items, int32_t factors);
void ScoreOnly(benchmark::State& state, int32_t items, int32_t factors);
void TopKOnly(benchmark::State& state, int32_t items, int32_t factors);
void ReadFactors(benchmark::State& state, int32_t items, int32_t factors);
void WhatIfScoreColMajor(benchmark::State& state, int32_t items,
                         int32_t factors);

// --- kernels_learning.cc: fold-in, the engine, training.

void FoldIn(benchmark::State& state, int32_t factors, int32_t n);
void FoldInUpdate(benchmark::State& state, bool hybrid, int32_t factors,
                  int32_t n);
void FoldInHybrid(benchmark::State& state, int32_t n);
void EngineRate(benchmark::State& state, int32_t n);
void EngineRecommend(benchmark::State& state, int32_t n, bool session);
void TrainOneEpoch(benchmark::State& state, const DataSize& size,
                   ModelKind kind);

}  // namespace recsys::kernels

#endif  // RECSYS_BENCH_KERNELS_BENCH_INTERNAL_H_
