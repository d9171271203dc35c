#include "models/fold_in.h"

#include <random>

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

}  // namespace
}  // namespace recsys
