// The models and rating data recsys-kernels-bench's kernels run on: random
// models of a given shape, generated MovieLens-like data and the hybrid
// model trained on it, each built once and cached.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/kernels_bench_internal.h"
#include "models/fold_in.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/train.h"
#include "trainer/generate.h"

namespace recsys::kernels {

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

}  // namespace recsys::kernels
