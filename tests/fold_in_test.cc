#include "models/fold_in.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "Eigen/QR"
#include "gtest/gtest.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

// The oracle: the same regularised problem written as an ordinary least
// squares over an augmented system, [Y; sqrt(n D)] x ~ [t; 0], solved by QR
// in double precision (no normal equations, no Cholesky).
Eigen::VectorXd DirectSolve(const RowMatrix& other, const Eigen::VectorXf& bias,
                            float mu, const std::vector<IndexedRating>& rs,
                            double reg, double reg_bias) {
  const int64_t n = static_cast<int64_t>(rs.size());
  const int64_t k = other.cols();
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(n + k + 1, k + 1);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(n + k + 1);
  for (int64_t j = 0; j < n; ++j) {
    a(j, 0) = 1.0;
    a.row(j).tail(k) = other.row(rs[j].index).cast<double>();
    b[j] = rs[j].value - mu - bias[rs[j].index];
  }
  a(n, 0) = std::sqrt(n * reg_bias);
  for (int64_t f = 0; f < k; ++f) a(n + 1 + f, 1 + f) = std::sqrt(n * reg);
  return a.colPivHouseholderQr().solve(b);
}

class FoldInTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(80, 70, 4, 0.25, 0.2, 3);
    Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
    p.factors = 6;
    p.epochs = 8;
    TrainOptions opt;
    opt.threads = 2;
    auto m = TrainModel(data_, ModelKind::kAls, p, opt);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = *std::move(m);
  }

  std::vector<IndexedRating> UserRatings(int32_t u) const {
    std::vector<IndexedRating> rs;
    const SparseRows& r = model_.user_ratings;
    for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
      rs.push_back({r.cols[k], r.values[k]});
    }
    return rs;
  }

  RatingData data_;
  Model model_;
};

TEST_F(FoldInTest, UserMatchesDirectLeastSquares) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<IndexedRating> rs;
    const int n = 1 + static_cast<int>(rng() % 30);
    for (int j = 0; j < n; ++j) {
      rs.push_back({static_cast<int32_t>(rng() % model_.num_items()),
                    1.0f + static_cast<float>(rng() % 9) / 2});
    }
    auto got = FoldInUser(model_, rs);
    ASSERT_TRUE(got.ok()) << got.status();
    const Eigen::VectorXd want =
        DirectSolve(model_.item_factors, model_.item_bias, model_.mu, rs,
                    model_.params.reg, model_.params.reg_bias);
    EXPECT_NEAR(got->bias, want[0], 1e-4);
    for (int f = 0; f < model_.factors(); ++f) {
      EXPECT_NEAR(got->factors[f], want[1 + f], 1e-4) << "factor " << f;
    }
  }
}

TEST_F(FoldInTest, ItemMatchesDirectLeastSquares) {
  std::vector<IndexedRating> rs = {{0, 5}, {3, 1}, {7, 4}, {12, 2.5f}};
  auto got = FoldInItem(model_, rs);
  ASSERT_TRUE(got.ok());
  const Eigen::VectorXd want =
      DirectSolve(model_.user_factors, model_.user_bias, model_.mu, rs,
                  model_.params.reg, model_.params.reg_bias);
  EXPECT_NEAR(got->bias, want[0], 1e-4);
  for (int f = 0; f < model_.factors(); ++f) {
    EXPECT_NEAR(got->factors[f], want[1 + f], 1e-4);
  }
}

// ALS ends on a user half-step with the same solve, so folding a training
// user's own ratings back in reproduces that user's row.
TEST_F(FoldInTest, AlsTrainingUserRowIsReproduced) {
  for (int32_t u = 0; u < model_.num_users(); ++u) {
    auto got = FoldInUser(model_, UserRatings(u));
    ASSERT_TRUE(got.ok());
    EXPECT_NEAR(got->bias, model_.user_bias[u], 1e-5) << "user " << u;
    for (int f = 0; f < model_.factors(); ++f) {
      EXPECT_NEAR(got->factors[f], model_.user_factors(u, f), 1e-5)
          << "user " << u << " factor " << f;
    }
  }
}

TEST_F(FoldInTest, EmptyListGivesZeros) {
  auto got = FoldInUser(model_, {});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->bias, 0);
  EXPECT_EQ(got->factors.size(), model_.factors());
  EXPECT_TRUE(got->factors.isZero());
}

TEST_F(FoldInTest, BadInputIsRejected) {
  const std::vector<IndexedRating> out_of_range = {{model_.num_items(), 3}};
  EXPECT_EQ(FoldInUser(model_, out_of_range).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<IndexedRating> negative = {{-1, 3}};
  EXPECT_EQ(FoldInUser(model_, negative).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<IndexedRating> nan = {{0, std::nanf("")}};
  EXPECT_EQ(FoldInUser(model_, nan).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<IndexedRating> bad_user = {{model_.num_users(), 3}};
  EXPECT_EQ(FoldInItem(model_, bad_user).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FoldInBaselineTest, BiasIsTheRidgeEstimate) {
  RatingData data = testing::PlantedData(30, 20, 2, 0.5, 0.3, 9);
  auto m = TrainModel(data, ModelKind::kBaseline,
                      DefaultHyperparameters(ModelKind::kBaseline), {});
  ASSERT_TRUE(m.ok());
  const std::vector<IndexedRating> rs = {{0, 5}, {1, 4}, {2, 1}};
  auto got = FoldInUser(*m, rs);
  ASSERT_TRUE(got.ok());
  double sum = 0;
  for (const IndexedRating& r : rs)
    sum += r.value - m->mu - m->item_bias[r.index];
  EXPECT_NEAR(got->bias, sum / (m->params.baseline_reg_user + 3), 1e-6);
  EXPECT_EQ(got->factors.size(), 0);
}

// Kept equations, updated one rating at a time, against the solve from
// scratch over the same final ratings, for every model kind.
class FoldInEquationsTest : public ::testing::TestWithParam<ModelKind> {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(60, 50, 3, 0.3, 0.2, 5);
    Hyperparameters p = DefaultHyperparameters(GetParam());
    p.factors = 4;
    p.epochs = 24;
    p.burn_in = 8;
    p.samples = 5;
    p.rank_factors = 6;
    p.rank_epochs = 4;
    TrainOptions opt;
    opt.threads = 2;
    auto m = TrainModel(data_, GetParam(), p, opt);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = *std::move(m);
  }

  // Rating `r` of item `i`, as Add takes it.
  void Add(FoldInEquations* eq, const IndexedRating& r, float sign) const {
    const float* q = model_.factors() > 0
                         ? model_.item_factors.row(r.index).data()
                         : nullptr;
    eq->Add(q, model_.item_bias[r.index], r.value, sign);
  }

  void ExpectSame(const FoldInEquations& eq,
                  const std::vector<IndexedRating>& final) const {
    auto want = FoldInUser(model_, final);
    ASSERT_TRUE(want.ok()) << want.status();
    const FoldInResult got = eq.Solve();
    EXPECT_NEAR(got.bias, want->bias, 1e-4);
    ASSERT_EQ(got.factors.size(), want->factors.size());
    for (int64_t f = 0; f < got.factors.size(); ++f) {
      EXPECT_NEAR(got.factors[f], want->factors[f],
                  1e-4 * (1 + std::abs(want->factors[f])))
          << "factor " << f;
    }
    EXPECT_EQ(eq.count(), static_cast<int64_t>(final.size()));
  }

  RatingData data_;
  Model model_;
};

TEST_P(FoldInEquationsTest, AddsReplacementsAndRemovalsMatchTheFullSolve) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> item(0, model_.num_items() - 1);
  std::uniform_int_distribution<int> star(1, 5);
  FoldInEquations eq(model_, /*user_side=*/true);
  ExpectSame(eq, {});
  // One rating per item, as the server keeps them: a second rating of an
  // item replaces the first (out with the old, in with the new).
  std::vector<IndexedRating> current;
  for (int step = 0; step < 60; ++step) {
    const IndexedRating r{item(rng), static_cast<float>(star(rng))};
    auto old = std::find_if(
        current.begin(), current.end(),
        [&](const IndexedRating& x) { return x.index == r.index; });
    if (old != current.end()) {
      Add(&eq, *old, -1.0f);
      *old = r;
    } else {
      current.push_back(r);
    }
    Add(&eq, r, 1.0f);
    if (step == 0 || step % 20 == 19) ExpectSame(eq, current);
  }
  // Removing ratings leaves what the rest gives.
  for (int j = 0; j < 10; ++j) {
    Add(&eq, current.back(), -1.0f);
    current.pop_back();
  }
  ExpectSame(eq, current);
}

TEST_P(FoldInEquationsTest, ItemSideMatchesTheFullSolve) {
  FoldInEquations eq(model_, /*user_side=*/false);
  std::vector<IndexedRating> rs = {{0, 5}, {3, 2}, {7, 4}, {11, 1}, {20, 3}};
  for (const IndexedRating& r : rs) {
    const float* p = model_.factors() > 0
                         ? model_.user_factors.row(r.index).data()
                         : nullptr;
    eq.Add(p, model_.user_bias[r.index], r.value);
  }
  auto want = FoldInItem(model_, rs);
  ASSERT_TRUE(want.ok()) << want.status();
  const FoldInResult got = eq.Solve();
  EXPECT_NEAR(got.bias, want->bias, 1e-4);
  ASSERT_EQ(got.factors.size(), want->factors.size());
  EXPECT_TRUE(got.factors.isApprox(want->factors, 1e-4f) ||
              (got.factors - want->factors).norm() < 1e-5f)
      << got.factors.transpose() << "\n"
      << want->factors.transpose();
}

INSTANTIATE_TEST_SUITE_P(Kinds, FoldInEquationsTest,
                         ::testing::Values(ModelKind::kBaseline,
                                           ModelKind::kPopularity,
                                           ModelKind::kSgd, ModelKind::kAls,
                                           ModelKind::kIals, ModelKind::kBayes,
                                           ModelKind::kHybrid),
                         [](const ::testing::TestParamInfo<ModelKind>& info) {
                           return std::string(ModelKindName(info.param));
                         });

}  // namespace
}  // namespace recsys
