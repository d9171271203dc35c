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

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/kernels_bench_internal.h"
#include "models/model.h"
#include "models/scoring.h"

namespace recsys::kernels {
namespace {

// Scoring and top-k, and the memory floor beside them, for every shape.
void RegisterScoring() {
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
}

// Fold-in and its update for random models of 64 and 128 factors.
void RegisterFoldIn() {
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
}

void RegisterEngineRate() {
  for (int32_t n : {10, 100, 1000, 10000}) {
    benchmark::RegisterBenchmark(absl::StrCat("engine_rate/", n).c_str(),
                                 EngineRate, n)
        ->Unit(benchmark::kMicrosecond);
  }
}

// Recommend and fold-in on the default hybrid model. Its items number 1682:
// up to 1000 ratings.
void RegisterHybrid() {
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
}

// One epoch of training of each kind on each generated data size.
void RegisterTraining() {
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

// Every kernel, in the order --benchmark_list_tests shows them.
void RegisterAll() {
  RegisterScoring();
  RegisterFoldIn();
  RegisterEngineRate();
  RegisterHybrid();
  RegisterTraining();
}

}  // namespace
}  // namespace recsys::kernels

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  recsys::kernels::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
