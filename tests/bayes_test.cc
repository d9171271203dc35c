// Bayesian MF by Gibbs sampling: planted structure, the serving form against
// the per-sample predictions, fold-in against an independent solve of each
// sample's posterior mean, determinism, and the model file round trip.
#include "models/bayes.h"

#include <cmath>

#include "Eigen/QR"
#include "gtest/gtest.h"
#include "models/fold_in.h"
#include "models/metrics.h"
#include "models/model_io.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

Hyperparameters SmallBayes() {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kBayes);
  p.factors = 4;
  p.epochs = 60;
  p.burn_in = 20;
  p.samples = 8;
  return p;
}

Model Train(const RatingData& data, const Hyperparameters& p, int threads) {
  TrainOptions opt;
  opt.threads = threads;
  absl::StatusOr<Model> m = TrainModel(data, ModelKind::kBayes, p, opt);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

double HeldOutRmse(const Model& m, const RatingData& test) {
  RatingAccumulator acc;
  for (const Rating& r : test.ratings) {
    acc.Add(m.scale.Clip(m.Score(r.user, r.item)), r.value);
  }
  return acc.Result().rmse;
}

// Rank-3 data with noise 0.3: the sampler must get close to the noise and
// well below the baseline on held-out pairs.
TEST(BayesTest, RecoversPlantedStructure) {
  const RatingData all = testing::PlantedData(300, 200, 3, 0.25, 0.3, 11);
  RatingData train, test;
  RandomSplit(all, 0.2, 5, &train, &test);
  const Model m = Train(train, SmallBayes(), 2);
  TrainOptions opt;
  opt.threads = 2;
  absl::StatusOr<Model> base =
      TrainModel(train, ModelKind::kBaseline,
                 DefaultHyperparameters(ModelKind::kBaseline), opt);
  ASSERT_TRUE(base.ok());
  const double rmse = HeldOutRmse(m, test);
  const double baseline = HeldOutRmse(*base, test);
  std::cout << "planted rank 3, noise 0.3: bayes " << rmse << ", baseline "
            << baseline << "\n";
  EXPECT_LT(rmse, 0.4);
  EXPECT_LT(rmse, 0.6 * baseline);
}

// Each block of a served row holds one sample: [p, b_u - mean, 1] / sqrt(S)
// for users and [q, 1, b_i - mean] / sqrt(S) for items. The served score
// must be the mean over samples of mu + b_u^s + b_i^s + p^s . q^s.
TEST(BayesTest, ServedScoreIsTheMeanOverSamples) {
  const RatingData data = testing::PlantedData(80, 60, 2, 0.3, 0.3, 2);
  const Model m = Train(data, SmallBayes(), 2);
  const int s = m.posterior.samples;
  ASSERT_EQ(s, 8);
  const int k = 4, block = k + 2;
  ASSERT_EQ(m.factors(), s * block);
  const double root = std::sqrt(static_cast<double>(s));
  for (int32_t u : {0, 17, 79}) {
    for (int32_t i : {0, 31, 59}) {
      double sum = 0;
      for (int b = 0; b < s; ++b) {
        const auto pu = m.user_factors.row(u).segment(b * block, block);
        const auto qi = m.item_factors.row(i).segment(b * block, block);
        // The scaled constants are exactly 1 / sqrt(S).
        EXPECT_FLOAT_EQ(pu[k + 1], static_cast<float>(1 / root));
        EXPECT_FLOAT_EQ(qi[k], static_cast<float>(1 / root));
        const double bu = m.user_bias[u] + root * pu[k];
        const double bi = m.item_bias[i] + root * qi[k + 1];
        double dot = 0;
        for (int c = 0; c < k; ++c) dot += root * pu[c] * root * qi[c];
        sum += m.mu + bu + bi + dot;
      }
      EXPECT_NEAR(m.Score(u, i), sum / s, 1e-4) << u << " " << i;
    }
  }
}

// Fold-in must be each sample's conditional posterior mean: solved here
// independently as a stacked least-squares problem by QR,
//   min alpha |Z^T x - t|^2 + (x - mean)^T Lambda (x - mean),
// from the samples read back out of the served item rows.
TEST(BayesTest, FoldInIsEachSamplesPosteriorMean) {
  const RatingData data = testing::PlantedData(100, 70, 3, 0.3, 0.3, 4, true);
  const Model m = Train(data, SmallBayes(), 2);
  const std::vector<IndexedRating> mine = {{3, 5}, {10, 1}, {42, 3}, {69, 4}};
  absl::StatusOr<FoldInResult> got = FoldInUser(m, mine);
  ASSERT_TRUE(got.ok()) << got.status();
  const int s = m.posterior.samples, k = 4, d = k + 1, block = k + 2;
  const double root = std::sqrt(static_cast<double>(s));
  const int n = static_cast<int>(mine.size());
  Eigen::MatrixXd want(s, d);
  for (int b = 0; b < s; ++b) {
    const Eigen::MatrixXd precision =
        m.posterior.user_precision.middleRows(b * d, d).cast<double>();
    const Eigen::VectorXd mean =
        m.posterior.user_mean.row(b).transpose().cast<double>();
    const double alpha = m.posterior.alpha[b];
    // Lambda = R^T R with R upper triangular.
    const Eigen::MatrixXd r = precision.llt().matrixU();
    Eigen::MatrixXd a(n + d, d);
    Eigen::VectorXd y(n + d);
    for (int j = 0; j < n; ++j) {
      const auto q =
          m.item_factors.row(mine[j].index).segment(b * block, block);
      const double bi = m.item_bias[mine[j].index] + root * q[k + 1];
      a(j, 0) = std::sqrt(alpha);
      for (int c = 0; c < k; ++c) a(j, 1 + c) = std::sqrt(alpha) * root * q[c];
      y[j] = std::sqrt(alpha) * (mine[j].value - m.mu - bi);
    }
    a.bottomRows(d) = r;
    y.tail(d) = r * mean;
    want.row(b) = a.colPivHouseholderQr().solve(y).transpose();
  }
  const double mean_bias = want.col(0).mean();
  EXPECT_NEAR(got->bias, mean_bias, 1e-4);
  for (int b = 0; b < s; ++b) {
    for (int c = 0; c < k; ++c) {
      EXPECT_NEAR(got->factors[b * block + c] * root, want(b, 1 + c), 1e-3)
          << b << " " << c;
    }
    EXPECT_NEAR(got->factors[b * block + k] * root, want(b, 0) - mean_bias,
                1e-3);
    EXPECT_FLOAT_EQ(got->factors[b * block + k + 1],
                    static_cast<float>(1 / root));
  }
}

// Rows are sampled from streams seeded by (seed, sweep, row), so the thread
// count cannot change the result.
TEST(BayesTest, SameSeedSameModelOnAnyThreadCount) {
  const RatingData data = testing::PlantedData(60, 40, 2, 0.3, 0.3, 8);
  Hyperparameters p = SmallBayes();
  p.epochs = 30;
  const Model one = Train(data, p, 1);
  const Model two = Train(data, p, 2);
  EXPECT_EQ(one.user_factors, two.user_factors);
  EXPECT_EQ(one.item_factors, two.item_factors);
  EXPECT_EQ(one.posterior.alpha, two.posterior.alpha);
}

TEST(BayesTest, ModelFileRoundTripKeepsThePosterior) {
  const RatingData data = testing::PlantedData(50, 30, 2, 0.3, 0.3, 9);
  const Model m = Train(data, SmallBayes(), 2);
  const std::string path = testing::MakeTempDir("bayes") + "/m.rsm";
  ASSERT_EQ(SaveModel(m, path), absl::OkStatus());
  absl::StatusOr<Model> back = LoadModel(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, ModelKind::kBayes);
  EXPECT_EQ(back->params.burn_in, m.params.burn_in);
  EXPECT_EQ(back->params.samples, m.params.samples);
  EXPECT_EQ(back->user_factors, m.user_factors);
  EXPECT_EQ(back->posterior.samples, m.posterior.samples);
  EXPECT_EQ(back->posterior.alpha, m.posterior.alpha);
  EXPECT_EQ(back->posterior.user_mean, m.posterior.user_mean);
  EXPECT_EQ(back->posterior.user_precision, m.posterior.user_precision);
  EXPECT_EQ(back->posterior.item_mean, m.posterior.item_mean);
  EXPECT_EQ(back->posterior.item_precision, m.posterior.item_precision);
  const std::vector<IndexedRating> mine = {{1, 4}, {7, 2}};
  absl::StatusOr<FoldInResult> a = FoldInUser(m, mine);
  absl::StatusOr<FoldInResult> b = FoldInUser(*back, mine);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->factors, b->factors);
}

TEST(BayesTest, UnusableSettingsAreRefused) {
  const RatingData data = testing::PlantedData(20, 10, 2, 0.5, 0.3, 1);
  Hyperparameters p = SmallBayes();
  p.samples = 0;
  TrainOptions opt;
  EXPECT_EQ(TrainModel(data, ModelKind::kBayes, p, opt).status().code(),
            absl::StatusCode::kInvalidArgument);
  p = SmallBayes();
  p.burn_in = p.epochs;  // nothing left to keep
  EXPECT_EQ(TrainModel(data, ModelKind::kBayes, p, opt).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recsys
