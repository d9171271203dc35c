// Implicit ALS: planted structure, the exact fold-in against a direct solve,
// ranking-only scores, and the model file round trip.
#include "models/ials.h"

#include <algorithm>
#include <random>

#include "Eigen/QR"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/evaluation.h"
#include "models/fold_in.h"
#include "models/model_io.h"
#include "models/topk.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

Hyperparameters SmallIals() {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kIals);
  p.factors = 8;
  p.epochs = 8;
  return p;
}

Model Train(const RatingData& data, const Hyperparameters& p) {
  TrainOptions opt;
  opt.threads = 2;
  absl::StatusOr<Model> m = TrainModel(data, ModelKind::kIals, p, opt);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// Users in two taste groups each interact only with "their" half of the
// catalogue; a held-out interaction must rank above the other half.
TEST(IalsTest, RecoversPlantedGroups) {
  RatingData data;
  data.scale = {1, 5};
  std::mt19937 rng(3);
  const int users = 200, items = 100;
  for (int u = 0; u < users; ++u) data.users.Insert(absl::StrCat("u", u));
  for (int i = 0; i < items; ++i) data.items.Insert(absl::StrCat("i", i));
  data.SyncItemInfo();
  std::vector<std::pair<int, int>> held_out;
  for (int u = 0; u < users; ++u) {
    const int group = u % 2;
    std::vector<int> mine;
    for (int i = group; i < items; i += 2) {
      if (rng() % 3 == 0) mine.push_back(i);
    }
    // A random one of them, so every item keeps training interactions.
    std::swap(mine[rng() % mine.size()], mine.back());
    held_out.emplace_back(u, mine.back());
    mine.pop_back();
    for (int i : mine) data.ratings.push_back({u, i, 4.0f, 0});
  }
  const Model m = Train(data, SmallIals());
  Eigen::VectorXf scores;
  int wins = 0;
  for (const auto& [u, i] : held_out) {
    ScoreAllItems(m, 0, m.user_factors.row(u).data(), &scores);
    // The held-out item beats the median item of the other group.
    std::vector<float> other;
    for (int j = 1 - u % 2; j < items; j += 2) other.push_back(scores[j]);
    std::nth_element(other.begin(), other.begin() + other.size() / 2,
                     other.end());
    wins += scores[i] > other[other.size() / 2];
  }
  EXPECT_GE(wins, users * 95 / 100);
}

TEST(IalsTest, FoldInIsTheExactSolveOfTheNormalEquations) {
  const RatingData data = testing::PlantedData(120, 90, 3, 0.2, 0.3, 4, true);
  const Model m = Train(data, SmallIals());
  ASSERT_EQ(m.item_gram.rows(), m.factors());
  std::vector<IndexedRating> mine = {{3, 5}, {10, 1}, {42, 3}, {77, 4}};
  absl::StatusOr<FoldInResult> got = FoldInUser(m, mine);
  ASSERT_TRUE(got.ok());
  // Oracle: least squares over [Y; sqrt(a0) Q; sqrt(reg_u) I] x ~ [t; 0; 0],
  // the objective whose normal equations the solve uses, with the targets t
  // lowered for low ratings as value_weight says.
  ASSERT_GT(m.params.value_weight, 0);
  const int k = m.factors();
  const int n = static_cast<int>(mine.size());
  const double a0 = m.params.implicit_weight;
  const double reg_u = internal::ImplicitPenalty(m.params, n, m.num_items());
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(n + m.num_items() + k, k);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(n + m.num_items() + k);
  for (int j = 0; j < n; ++j) {
    a.row(j) = m.item_factors.row(mine[j].index).cast<double>();
    b[j] = 1 - m.params.value_weight * (m.scale.max - mine[j].value) /
                   (m.scale.max - m.scale.min);
  }
  a.block(n, 0, m.num_items(), k) =
      std::sqrt(a0) * m.item_factors.cast<double>();
  a.block(n + m.num_items(), 0, k, k) =
      std::sqrt(reg_u) * Eigen::MatrixXd::Identity(k, k);
  const Eigen::VectorXd want = a.colPivHouseholderQr().solve(b);
  for (int f = 0; f < k; ++f) EXPECT_NEAR(got->factors[f], want[f], 1e-4);
}

// Implicit feedback: counts weigh their pairs by confidence c = 1 + alpha
// log(1 + v / eps), targets are all 1, and fold-in solves the weighted
// normal equations exactly (oracle: least squares with rows sqrt(c) q).
TEST(IalsTest, ConfidenceWeightsCountsInTrainingAndFoldIn) {
  RatingData data = testing::PlantedData(120, 90, 3, 0.2, 0.3, 4, true);
  data.feedback = Feedback::kImplicit;
  for (Rating& r : data.ratings) r.value = std::round(r.value * 7);  // counts
  Hyperparameters p = SmallIals();
  p.confidence_alpha = 2;
  p.confidence_eps = 3;
  const Model m = Train(data, p);
  EXPECT_EQ(m.feedback, Feedback::kImplicit);
  std::vector<IndexedRating> mine = {{3, 40}, {10, 1}, {42, 0}, {77, 300}};
  absl::StatusOr<FoldInResult> got = FoldInUser(m, mine);
  ASSERT_TRUE(got.ok());
  const int k = m.factors();
  const int n = static_cast<int>(mine.size());
  const double reg_u = internal::ImplicitPenalty(m.params, n, m.num_items());
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(n + m.num_items() + k, k);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(n + m.num_items() + k);
  for (int j = 0; j < n; ++j) {
    const double c = 1 + 2 * std::log1p(mine[j].value / 3.0);
    EXPECT_NEAR(internal::ImplicitConfidence(m.params, mine[j].value), c, 1e-5);
    a.row(j) = std::sqrt(c) * m.item_factors.row(mine[j].index).cast<double>();
    b[j] = std::sqrt(c);  // target 1, whatever the count
  }
  a.block(n, 0, m.num_items(), k) =
      std::sqrt(m.params.implicit_weight) * m.item_factors.cast<double>();
  a.block(n + m.num_items(), 0, k, k) =
      std::sqrt(reg_u) * Eigen::MatrixXd::Identity(k, k);
  const Eigen::VectorXd want = a.colPivHouseholderQr().solve(b);
  for (int f = 0; f < k; ++f) EXPECT_NEAR(got->factors[f], want[f], 1e-4);

  // The kept equations, one count at a time (a re-count out, then in),
  // give the same row.
  FoldInEquations eq(m, /*user_side=*/true);
  eq.Add(m.item_factors.row(3).data(), m.item_bias[3], 5);
  eq.Add(m.item_factors.row(3).data(), m.item_bias[3], 5, -1.0f);
  for (const IndexedRating& r : mine) {
    eq.Add(m.item_factors.row(r.index).data(), m.item_bias[r.index], r.value);
  }
  const FoldInResult kept = eq.Solve();
  for (int f = 0; f < k; ++f) {
    EXPECT_NEAR(kept.factors[f], got->factors[f], 1e-4);
  }

  // Without confidence the counts would not matter at all.
  Hyperparameters flat = p;
  flat.confidence_alpha = 0;
  const Model plain = Train(data, flat);
  std::vector<IndexedRating> ones = mine;
  for (IndexedRating& r : ones) r.value = 1;
  EXPECT_TRUE(FoldInUser(plain, mine)
                  ->factors.isApprox(FoldInUser(plain, ones)->factors));
  EXPECT_FALSE(FoldInUser(m, mine)->factors.isApprox(
      FoldInUser(m, ones)->factors, 1e-3f));
}

// Kinds that predict ratings have nothing to learn from counts.
TEST(IalsTest, ImplicitDataTrainsOnlyRankingKinds) {
  RatingData data = testing::PlantedData(60, 40, 3, 0.2, 0.3, 4, true);
  data.feedback = Feedback::kImplicit;
  for (ModelKind kind : {ModelKind::kAls, ModelKind::kHybrid,
                         ModelKind::kBaseline, ModelKind::kBayes}) {
    absl::StatusOr<Model> m =
        TrainModel(data, kind, DefaultHyperparameters(kind), TrainOptions());
    ASSERT_FALSE(m.ok()) << ModelKindName(kind);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("implicit feedback"),
              absl::string_view::npos);
  }
  for (ModelKind kind :
       {ModelKind::kIals, ModelKind::kPuresvd, ModelKind::kPopularity}) {
    absl::StatusOr<Model> m =
        TrainModel(data, kind, DefaultHyperparameters(kind), TrainOptions());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->feedback, Feedback::kImplicit);
  }
}

// With value_weight 1, an interaction at the bottom of the scale has target
// 0: a user who only rated items 1 star gets no ranking vector, and mixing
// in such ratings never raises the pull towards the items rated highly.
TEST(IalsTest, BottomRatingsHaveNoPullAtFullValueWeight) {
  const RatingData data = testing::PlantedData(120, 90, 3, 0.2, 0.3, 4, true);
  Hyperparameters p = SmallIals();
  p.value_weight = 1;
  const Model m = Train(data, p);
  absl::StatusOr<FoldInResult> low = FoldInUser(m, {{3, 1}, {10, 1}});
  ASSERT_TRUE(low.ok());
  EXPECT_LT(low->factors.norm(), 1e-6);
  absl::StatusOr<FoldInResult> high = FoldInUser(m, {{3, 5}, {10, 5}});
  ASSERT_TRUE(high.ok());
  EXPECT_GT(high->factors.norm(), 1e-3);
}

TEST(IalsTest, RanksByFactorsAndPredictsWithTheBaseline) {
  const RatingData data = testing::PlantedData(80, 60, 3, 0.25, 0.3, 6, true);
  const Model m = Train(data, SmallIals());
  EXPECT_FALSE(m.ranks_by_rating());
  Eigen::VectorXf scores;
  ScoreAllItems(m, m.user_bias[0], m.user_factors.row(0).data(), &scores);
  for (int i = 0; i < m.num_items(); ++i) {
    EXPECT_NEAR(scores[i], m.user_factors.row(0).dot(m.item_factors.row(i)),
                1e-5);
    EXPECT_NEAR(m.Predict(0, i),
                m.scale.Clip(m.mu + m.user_bias[0] + m.item_bias[i]), 1e-6);
  }
}

TEST(IalsTest, ModelFileRoundTripRebuildsTheGrams) {
  const RatingData data = testing::PlantedData(50, 40, 3, 0.3, 0.3, 8, true);
  const Model m = Train(data, SmallIals());
  const std::string path = testing::MakeTempDir("ials") + "/m.rsm";
  ASSERT_EQ(SaveModel(m, path), absl::OkStatus());
  absl::StatusOr<Model> back = LoadModel(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, ModelKind::kIals);
  EXPECT_EQ(back->params.implicit_weight, m.params.implicit_weight);
  EXPECT_TRUE(back->item_factors == m.item_factors);
  EXPECT_TRUE(back->item_gram.isApprox(m.item_gram));
  EXPECT_TRUE(back->user_gram.isApprox(m.user_gram));
}

}  // namespace
}  // namespace recsys
