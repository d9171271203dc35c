// PureSVD: the randomized SVD against a dense one, and fold-in against the
// projection it is meant to be.
#include "models/puresvd.h"

#include <cmath>
#include <random>
#include <vector>

#include "Eigen/SVD"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/fold_in.h"
#include "models/ials.h"
#include "models/model_io.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

// The dense matrix of `rows` (rows x cols).
Eigen::MatrixXd Dense(const SparseRows& rows, int64_t cols) {
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(rows.rows(), cols);
  for (int32_t r = 0; r < rows.rows(); ++r) {
    for (int64_t k = rows.offsets[r]; k < rows.offsets[r + 1]; ++k) {
      a(r, rows.cols[k]) = rows.values[k];
    }
  }
  return a;
}

// Rows of a matrix as SparseRows, every entry stored.
SparseRows AsRows(const Eigen::MatrixXd& a) {
  SparseRows rows;
  rows.offsets = {0};
  for (Eigen::Index r = 0; r < a.rows(); ++r) {
    for (Eigen::Index c = 0; c < a.cols(); ++c) {
      rows.cols.push_back(static_cast<int32_t>(c));
      rows.values.push_back(static_cast<float>(a(r, c)));
    }
    rows.offsets.push_back(static_cast<int64_t>(rows.cols.size()));
  }
  return rows;
}

// On a matrix of exact rank 3 the sketch captures the range at once: the
// triplets are the dense SVD's to rounding.
TEST(PureSvdTest, RandomizedSvdIsExactOnALowRankMatrix) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> g(0, 1);
  Eigen::MatrixXd l(50, 3), r(30, 3);
  for (Eigen::Index k = 0; k < l.size(); ++k) l.data()[k] = g(rng);
  for (Eigen::Index k = 0; k < r.size(); ++k) r.data()[k] = g(rng);
  // Through float, as the library stores ratings.
  const Eigen::MatrixXd a = (l * r.transpose()).cast<float>().cast<double>();
  Eigen::JacobiSVD<Eigen::MatrixXd> dense(
      a, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const internal::TruncatedSvd svd =
      internal::RandomizedSvd(AsRows(a), AsRows(a.transpose()), 3, 1, 7, 2);
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(svd.sigma[j], dense.singularValues()[j],
                1e-9 * dense.singularValues()[0])
        << j;
    EXPECT_NEAR(std::abs(svd.v.col(j).dot(dense.matrixV().col(j))), 1.0, 1e-9)
        << j;
    EXPECT_NEAR(std::abs(svd.u.col(j).dot(dense.matrixU().col(j))), 1.0, 1e-9)
        << j;
  }
  // (The float entries are rank 3 only up to their rounding.)
  EXPECT_NEAR((svd.u * svd.sigma.asDiagonal() * svd.v.transpose() - a).norm(),
              0.0, 1e-6 * a.norm());
}

// On sparse noisy ratings the power iterations bring the leading k close to
// the dense truncation, on any thread count.
TEST(PureSvdTest, RandomizedSvdMatchesADenseSvdOnRatings) {
  const RatingData data = testing::PlantedData(60, 40, 3, 0.3, 0.3, 11);
  const SparseRows by_user = BuildRows(data, false);
  const SparseRows by_item = BuildRows(data, true);
  const Eigen::MatrixXd a = Dense(by_user, data.num_items());
  Eigen::JacobiSVD<Eigen::MatrixXd> dense(
      a, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const double top = dense.singularValues()[0];
  for (int threads : {1, 3}) {
    const internal::TruncatedSvd svd =
        internal::RandomizedSvd(by_user, by_item, 6, 6, 1, threads);
    ASSERT_EQ(svd.sigma.size(), 6);
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(svd.sigma[j], dense.singularValues()[j], 1e-4 * top) << j;
    }
    EXPECT_TRUE((svd.v.transpose() * svd.v)
                    .isApprox(Eigen::MatrixXd::Identity(6, 6), 1e-9));
    EXPECT_TRUE((svd.u.transpose() * svd.u)
                    .isApprox(Eigen::MatrixXd::Identity(6, 6), 1e-9));
    const Eigen::MatrixXd approx =
        svd.u * svd.sigma.asDiagonal() * svd.v.transpose();
    const Eigen::MatrixXd best = dense.matrixU().leftCols(6) *
                                 dense.singularValues().head(6).asDiagonal() *
                                 dense.matrixV().leftCols(6).transpose();
    EXPECT_NEAR((a - approx).norm(), (a - best).norm(), 1e-5 * a.norm());
    EXPECT_LT((approx - best).norm(), 1e-2 * a.norm());
  }
}

TEST(PureSvdTest, KIsCappedAtTheSmallerSide) {
  const RatingData data = testing::PlantedData(8, 5, 2, 0.8, 0.3, 3);
  const internal::TruncatedSvd svd = internal::RandomizedSvd(
      BuildRows(data, false), BuildRows(data, true), 50, 2, 1, 1);
  EXPECT_EQ(svd.v.cols(), 5);
  EXPECT_EQ(svd.u.rows(), 8);
}

// The served user vector is the projection of the user's targets onto the
// item factors; fold-in computes the same vector from the ratings alone,
// and an item's fold-in is its projection onto the user factors.
TEST(PureSvdTest, FoldInIsTheProjection) {
  const RatingData data = testing::PlantedData(80, 50, 3, 0.25, 0.3, 5);
  Hyperparameters p = DefaultHyperparameters(ModelKind::kPuresvd);
  p.factors = 8;
  p.epochs = 10;  // power iterations: the trailing directions settle too
  absl::StatusOr<Model> m = TrainModel(data, ModelKind::kPuresvd, p, {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->ranks_by_rating());
  EXPECT_TRUE(m->item_gram.isApprox(Eigen::MatrixXf::Identity(8, 8), 1e-4f));
  for (int32_t u : {0, 17, 79}) {
    std::vector<IndexedRating> mine;
    Eigen::VectorXf direct = Eigen::VectorXf::Zero(8);
    for (int64_t k = m->user_ratings.offsets[u];
         k < m->user_ratings.offsets[u + 1]; ++k) {
      const int32_t i = m->user_ratings.cols[k];
      const float v = m->user_ratings.values[k];
      mine.push_back({i, v});
      direct += internal::ImplicitTarget(m->params, *m, v) *
                m->item_factors.row(i).transpose();
    }
    absl::StatusOr<FoldInResult> row = FoldInUser(*m, mine);
    ASSERT_TRUE(row.ok()) << row.status();
    EXPECT_TRUE(row->factors.isApprox(direct, 1e-4f)) << u;
    EXPECT_TRUE(
        row->factors.isApprox(m->user_factors.row(u).transpose(), 1e-4f))
        << u;
  }
  // Items: least squares against every user's row, (P^T P)^-1 P^T t_i.
  const SparseRows by_item = BuildRows(data, true);
  for (int32_t i : {0, 9, 49}) {
    std::vector<IndexedRating> theirs;
    Eigen::VectorXd rhs = Eigen::VectorXd::Zero(8);
    for (int64_t k = by_item.offsets[i]; k < by_item.offsets[i + 1]; ++k) {
      const float v = by_item.values[k];
      theirs.push_back({by_item.cols[k], v});
      rhs += internal::ImplicitTarget(m->params, *m, v) *
             m->user_factors.row(by_item.cols[k]).transpose().cast<double>();
    }
    const Eigen::MatrixXd ptp =
        (m->user_factors.transpose() * m->user_factors).cast<double>();
    const Eigen::VectorXd want = ptp.ldlt().solve(rhs);
    absl::StatusOr<FoldInResult> row = FoldInItem(*m, theirs);
    ASSERT_TRUE(row.ok()) << row.status();
    EXPECT_TRUE(row->factors.cast<double>().isApprox(want, 1e-3)) << i;
    // The trained item's own row, up to rounding.
    EXPECT_TRUE(
        row->factors.isApprox(m->item_factors.row(i).transpose(), 1e-3f))
        << i;
  }
}

// A hybrid whose ranking part is PureSVD (or popularity) serves, saves and
// folds in like the iALS one.
TEST(PureSvdTest, HybridRankingPartsRoundTripAndFoldIn) {
  const RatingData data = testing::PlantedData(60, 40, 3, 0.3, 0.3, 9);
  for (ModelKind rank : {ModelKind::kPuresvd, ModelKind::kPopularity}) {
    Hyperparameters p = DefaultHyperparameters(ModelKind::kHybrid);
    p.epochs = 30;
    p.burn_in = 10;
    p.samples = 4;
    p.rank_kind = rank;
    p.rank_factors = rank == ModelKind::kPopularity ? 1 : 6;
    p.rank_epochs = 3;
    p.value_weight = 0.8f;
    absl::StatusOr<Model> m = TrainModel(data, ModelKind::kHybrid, p, {});
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->ranking_kind(), rank);
    absl::StatusOr<std::string> bytes = SerializeModel(*m);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<Model> back = ParseModel(*bytes, "hybrid");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->ranking_kind(), rank);
    // The ranking columns of user 3 from its ratings.
    std::vector<IndexedRating> mine;
    for (int64_t k = m->user_ratings.offsets[3]; k < m->user_ratings.offsets[4];
         ++k) {
      mine.push_back({m->user_ratings.cols[k], m->user_ratings.values[k]});
    }
    absl::StatusOr<FoldInResult> row = FoldInUser(*m, mine);
    ASSERT_TRUE(row.ok()) << row.status();
    const int32_t r = m->rank_cols();
    EXPECT_TRUE(row->factors.head(r).isApprox(
        m->user_factors.row(3).head(r).transpose(), 1e-3f))
        << ModelKindName(rank);
  }
}

}  // namespace
}  // namespace recsys
