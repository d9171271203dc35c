// The hybrid kind: an iALS ranking part and a Bayesian rating part spliced
// into one model must behave exactly like the two models trained alone, in
// ranking, predicted ratings, fold-in and the model file.
#include <cmath>

#include "gtest/gtest.h"
#include "models/fold_in.h"
#include "models/model_io.h"
#include "models/topk.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

Hyperparameters SmallHybrid() {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kHybrid);
  p.factors = 3;
  p.epochs = 40;
  p.burn_in = 10;
  p.samples = 6;
  p.rank_factors = 8;
  p.rank_epochs = 6;
  return p;
}

Model Train(const RatingData& data, ModelKind kind, const Hyperparameters& p) {
  TrainOptions opt;
  opt.threads = 2;
  absl::StatusOr<Model> m = TrainModel(data, kind, p, opt);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

class HybridTest : public ::testing::Test {
 protected:
  HybridTest()
      : data_(testing::PlantedData(90, 70, 3, 0.3, 0.3, 12, true)),
        hybrid_(Train(data_, ModelKind::kHybrid, SmallHybrid())),
        ranking_(Train(data_, ModelKind::kIals, RankingPart(SmallHybrid()))),
        rating_(Train(data_, ModelKind::kBayes, SmallHybrid())) {}

  RatingData data_;
  Model hybrid_, ranking_, rating_;
};

TEST_F(HybridTest, PartsAreTheModelsTrainedAlone) {
  ASSERT_EQ(hybrid_.rank_cols(), 8);
  ASSERT_EQ(hybrid_.rating_col(), 8);
  ASSERT_EQ(hybrid_.factors(), 8 + rating_.factors());
  EXPECT_FALSE(hybrid_.ranks_by_rating());
  EXPECT_EQ(hybrid_.user_factors.leftCols(8), ranking_.user_factors);
  EXPECT_EQ(hybrid_.item_factors.rightCols(rating_.factors()),
            rating_.item_factors);
  EXPECT_EQ(hybrid_.item_gram, ranking_.item_gram);
  Eigen::VectorXf got, want;
  for (int32_t u : {0, 33, 89}) {
    // Ranking by the iALS part alone...
    ScoreAllItems(hybrid_, hybrid_.user_bias[u],
                  hybrid_.user_factors.row(u).data(), &got);
    ScoreAllItems(ranking_, 0, ranking_.user_factors.row(u).data(), &want);
    EXPECT_EQ(got, want);
    // ...and predicted ratings from the Bayesian part alone.
    for (int32_t i : {0, 20, 69}) {
      EXPECT_NEAR(hybrid_.Predict(u, i), rating_.Predict(u, i), 1e-5);
    }
  }
}

TEST_F(HybridTest, FoldInSolvesEachPartAsItsOwnKindDoes) {
  const std::vector<IndexedRating> mine = {{2, 5}, {9, 2}, {40, 4}, {61, 1}};
  absl::StatusOr<FoldInResult> got = FoldInUser(hybrid_, mine);
  absl::StatusOr<FoldInResult> rank = FoldInUser(ranking_, mine);
  absl::StatusOr<FoldInResult> rate = FoldInUser(rating_, mine);
  ASSERT_TRUE(got.ok() && rank.ok() && rate.ok());
  EXPECT_EQ(got->bias, rate->bias);
  EXPECT_EQ(got->factors.head(8), rank->factors);
  EXPECT_EQ(got->factors.tail(rating_.factors()), rate->factors);
  // Items too (the server folds new items in).
  const std::vector<IndexedRating> raters = {{1, 4}, {5, 3}, {70, 5}};
  absl::StatusOr<FoldInResult> item = FoldInItem(hybrid_, raters);
  absl::StatusOr<FoldInResult> item_rank = FoldInItem(ranking_, raters);
  absl::StatusOr<FoldInResult> item_rate = FoldInItem(rating_, raters);
  ASSERT_TRUE(item.ok() && item_rank.ok() && item_rate.ok());
  EXPECT_EQ(item->factors.head(8), item_rank->factors);
  EXPECT_EQ(item->factors.tail(rating_.factors()), item_rate->factors);
}

TEST_F(HybridTest, ModelFileRoundTrip) {
  const std::string path = testing::MakeTempDir("hybrid") + "/m.rsm";
  ASSERT_EQ(SaveModel(hybrid_, path), absl::OkStatus());
  absl::StatusOr<Model> back = LoadModel(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, ModelKind::kHybrid);
  EXPECT_EQ(back->params.rank_factors, 8);
  EXPECT_EQ(back->user_factors, hybrid_.user_factors);
  EXPECT_EQ(back->item_gram, hybrid_.item_gram);
  EXPECT_EQ(back->posterior.alpha, hybrid_.posterior.alpha);
  // A ranking part that leaves no room for the posterior is refused.
  Model bad = hybrid_;
  bad.params.rank_factors = bad.factors();
  EXPECT_EQ(SaveModel(bad, path + ".bad").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recsys
