#include "models/train.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluation.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;

double TestRmse(const Model& m, const RatingData& test) {
  auto r = EvaluateRatings(m, test, nullptr);
  EXPECT_TRUE(r.ok());
  return r->rmse;
}

class PlantedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Rank-4 structure plus noise 0.1: a model that recovers the structure
    // gets close to 0.1 on held-out pairs; one that does not stays near the
    // spread of the interaction term (~0.5).
    all_ = new RatingData(testing::PlantedData(400, 300, 4, 0.15, 0.1, 21));
    train_ = new RatingData;
    test_ = new RatingData;
    RandomSplit(*all_, 0.1, 99, train_, test_);
  }
  static void TearDownTestSuite() {
    delete all_;
    delete train_;
    delete test_;
  }
  static Model Train(ModelKind kind, const Hyperparameters& p, int threads) {
    TrainOptions opt;
    opt.threads = threads;
    auto m = TrainModel(*train_, kind, p, opt);
    EXPECT_TRUE(m.ok()) << m.status();
    return *std::move(m);
  }
  static RatingData* all_;
  static RatingData* train_;
  static RatingData* test_;
};
RatingData* PlantedTest::all_ = nullptr;
RatingData* PlantedTest::train_ = nullptr;
RatingData* PlantedTest::test_ = nullptr;

TEST_F(PlantedTest, BaselineBeatsTheGlobalMean) {
  const Model m = Train(ModelKind::kBaseline,
                        DefaultHyperparameters(ModelKind::kBaseline), 1);
  double se = 0;
  for (const Rating& r : test_->ratings)
    se += (m.mu - r.value) * (m.mu - r.value);
  const double mean_rmse = std::sqrt(se / test_->ratings.size());
  EXPECT_LT(TestRmse(m, *test_), 0.9 * mean_rmse);
}

TEST_F(PlantedTest, SgdRecoversPlantedLowRankMatrix) {
  const Model base = Train(ModelKind::kBaseline,
                           DefaultHyperparameters(ModelKind::kBaseline), 1);
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = 8;
  p.epochs = 60;
  p.learning_rate = 0.05f;
  p.lr_decay = 0.97f;
  p.reg = 0.01f;
  p.init_std = 0.1f;
  const Model m = Train(ModelKind::kSgd, p, 1);
  const double rmse = TestRmse(m, *test_);
  EXPECT_LT(rmse, 0.25);
  EXPECT_LT(rmse, 0.5 * TestRmse(base, *test_));
}

// A learning rate far too large makes SGD overflow: the fit is refused,
// with a message that names the cause, rather than returned full of NaN.
TEST_F(PlantedTest, DivergedSgdIsRefused) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.learning_rate = 5.0f;
  p.epochs = 30;
  int epochs_run = 0;
  TrainOptions opt;
  opt.threads = 1;
  opt.on_epoch = [&](const EpochReport&) { ++epochs_run; };
  absl::StatusOr<Model> m = TrainModel(*train_, ModelKind::kSgd, p, opt);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(TrainingDiverged(m.status()));
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("lower the learning rate (it was 5)"));
  EXPECT_LT(epochs_run, 30);  // it stopped once the error was not finite
  EXPECT_FALSE(TrainingDiverged(absl::InvalidArgumentError("bad k")));
  // The same data at the default rate trains.
  p.learning_rate = DefaultHyperparameters(ModelKind::kSgd).learning_rate;
  EXPECT_TRUE(TrainModel(*train_, ModelKind::kSgd, p, opt).ok());
}

// Every kind stops after the epoch (or sweep) in which `stop` turns true,
// and TrainModel fails with Cancelled.
TEST_F(PlantedTest, EveryKindStopsWhenAsked) {
  for (ModelKind kind :
       {ModelKind::kSgd, ModelKind::kAls, ModelKind::kIals, ModelKind::kBayes,
        ModelKind::kHybrid, ModelKind::kBaseline}) {
    SCOPED_TRACE(ModelKindName(kind));
    Hyperparameters p = DefaultHyperparameters(kind);
    p.factors = 4;
    p.epochs = 1000;
    p.rank_epochs = 1000;
    int epochs_run = 0;
    TrainOptions opt;
    opt.threads = 2;
    // Hybrid trains its ranking part quietly: count the stop's questions.
    opt.stop = [&epochs_run] { return ++epochs_run >= 3; };
    absl::StatusOr<Model> m = TrainModel(*train_, kind, p, opt);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kCancelled) << m.status();
    EXPECT_THAT(std::string(m.status().message()),
                HasSubstr("stopped on request"));
    EXPECT_LE(epochs_run, 4);  // the third epoch's question, and TrainModel's
  }
}

TEST_F(PlantedTest, AlsRecoversPlantedLowRankMatrix) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
  p.factors = 8;
  p.epochs = 15;
  p.reg = 0.02f;
  const Model m = Train(ModelKind::kAls, p, 2);
  EXPECT_LT(TestRmse(m, *test_), 0.25);
}

TEST_F(PlantedTest, SgdIsReproducibleWithOneThreadAndASeed) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = 8;
  p.epochs = 5;
  const Model a = Train(ModelKind::kSgd, p, 1);
  const Model b = Train(ModelKind::kSgd, p, 1);
  EXPECT_TRUE(a.user_factors == b.user_factors);
  EXPECT_TRUE(a.item_factors == b.item_factors);
  EXPECT_TRUE(a.user_bias == b.user_bias);
  p.seed += 1;
  const Model c = Train(ModelKind::kSgd, p, 1);
  EXPECT_FALSE(a.user_factors == c.user_factors);
}

TEST_F(PlantedTest, ParallelSgdMatchesSingleThreadedQuality) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = 8;
  p.epochs = 60;
  p.learning_rate = 0.05f;
  p.lr_decay = 0.97f;
  p.reg = 0.01f;
  p.init_std = 0.1f;
  const double one = TestRmse(Train(ModelKind::kSgd, p, 1), *test_);
  const double two = TestRmse(Train(ModelKind::kSgd, p, 2), *test_);
  const double four = TestRmse(Train(ModelKind::kSgd, p, 4), *test_);
  EXPECT_NEAR(two, one, 0.03 * one);
  EXPECT_NEAR(four, one, 0.03 * one);
  // Stratified blocks make parallel runs deterministic too.
  const Model a = Train(ModelKind::kSgd, p, 2);
  const Model b = Train(ModelKind::kSgd, p, 2);
  EXPECT_TRUE(a.item_factors == b.item_factors);
}

TEST_F(PlantedTest, AlsIsIdenticalForAnyThreadCount) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
  p.factors = 6;
  p.epochs = 3;
  const Model a = Train(ModelKind::kAls, p, 1);
  const Model b = Train(ModelKind::kAls, p, 3);
  EXPECT_TRUE(a.user_factors == b.user_factors);
  EXPECT_TRUE(a.item_bias == b.item_bias);
}

TEST_F(PlantedTest, ProgressIsReportedEveryEpochWithValidation) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
  p.factors = 4;
  p.epochs = 4;
  std::vector<EpochReport> seen;
  TrainOptions opt;
  opt.threads = 2;
  opt.validation = test_;
  opt.on_epoch = [&](const EpochReport& r) { seen.push_back(r); };
  ASSERT_TRUE(TrainModel(*train_, ModelKind::kAls, p, opt).ok());
  ASSERT_EQ(seen.size(), 4u);
  for (size_t e = 0; e < seen.size(); ++e) {
    EXPECT_EQ(seen[e].epoch, static_cast<int>(e) + 1);
    EXPECT_GT(seen[e].validation_rmse, 0);
    if (e > 0) {
      EXPECT_LE(seen[e].train_rmse, seen[e - 1].train_rmse + 1e-6);
    }
  }
}

TEST(TrainTest, PredictionsAreClippedToTheScale) {
  RatingData data = testing::PlantedData(50, 40, 3, 0.3, 0.5, 4);
  data.scale = {0.5f, 4.0f};
  for (Rating& r : data.ratings) r.value = data.scale.Clip(r.value);
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = 4;
  auto m = TrainModel(data, ModelKind::kSgd, p, {});
  ASSERT_TRUE(m.ok());
  for (int32_t u = 0; u < m->num_users(); ++u) {
    for (int32_t i = 0; i < m->num_items(); ++i) {
      const float r = m->Predict(u, i);
      ASSERT_GE(r, 0.5f);
      ASSERT_LE(r, 4.0f);
    }
  }
  EXPECT_GE(m->Predict(-1, -1), 0.5f);
}

TEST(TrainTest, UnratedItemsScoreByBiasesOnly) {
  RatingData data = testing::PlantedData(30, 20, 2, 0.4, 0.2, 5);
  const int32_t lonely = data.items.Insert("never-rated");
  data.SyncItemInfo();
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = 4;
  auto m = TrainModel(data, ModelKind::kSgd, p, {});
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->item_factors.row(lonely).isZero());
  EXPECT_EQ(m->item_bias[lonely], 0);
  EXPECT_EQ(m->item_counts[lonely], 0);
}

TEST(TrainTest, RejectsBadInput) {
  RatingData empty;
  EXPECT_EQ(TrainModel(empty, ModelKind::kSgd,
                       DefaultHyperparameters(ModelKind::kSgd), {})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  RatingData data = testing::PlantedData(10, 10, 2, 0.5, 0.1, 1);
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = 0;
  EXPECT_FALSE(TrainModel(data, ModelKind::kSgd, p, {}).ok());
  p = DefaultHyperparameters(ModelKind::kSgd);
  p.learning_rate = std::nanf("");
  EXPECT_FALSE(TrainModel(data, ModelKind::kSgd, p, {}).ok());
  p = DefaultHyperparameters(ModelKind::kAls);
  p.reg = 0;
  EXPECT_FALSE(TrainModel(data, ModelKind::kAls, p, {}).ok());
}

// The message names the parameter and the value that was given.
TEST(TrainTest, HyperparameterErrorsNameTheValue) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
  p.factors = -3;
  EXPECT_EQ(std::string(ValidateHyperparameters(ModelKind::kSgd, p).message()),
            "hyper-parameter factors must be in 1..4096, got -3");
  p = DefaultHyperparameters(ModelKind::kSgd);
  p.epochs = 0;
  EXPECT_EQ(std::string(ValidateHyperparameters(ModelKind::kSgd, p).message()),
            "hyper-parameter epochs must be in 1..100000, got 0");
  p = DefaultHyperparameters(ModelKind::kHybrid);
  p.fold_in_reg_bias = -0.5f;
  EXPECT_EQ(
      std::string(ValidateHyperparameters(ModelKind::kHybrid, p).message()),
      "hyper-parameter fold_in_reg_bias must be finite and >= 0, got "
      "-0.5");
  EXPECT_TRUE(
      ValidateHyperparameters(ModelKind::kHybrid,
                              DefaultHyperparameters(ModelKind::kHybrid))
          .ok());
}

}  // namespace
}  // namespace recsys
