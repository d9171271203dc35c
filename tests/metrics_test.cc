#include "models/metrics.h"

#include <cmath>

#include "gtest/gtest.h"

namespace recsys {
namespace {

TEST(RatingAccumulatorTest, HandComputedCase) {
  // Errors 0, -1, +1: RMSE sqrt(2/3), MAE 2/3.
  RatingAccumulator acc;
  acc.Add(5.0, 5.0);
  acc.Add(2.0, 3.0);
  acc.Add(2.0, 1.0);
  const RatingMetrics m = acc.Result();
  EXPECT_EQ(m.n, 3);
  EXPECT_NEAR(m.rmse, std::sqrt(2.0 / 3.0), 1e-12);
  EXPECT_NEAR(m.mae, 2.0 / 3.0, 1e-12);
}

TEST(RatingAccumulatorTest, EmptyIsZero) {
  const RatingMetrics m = RatingAccumulator().Result();
  EXPECT_EQ(m.n, 0);
  EXPECT_EQ(m.rmse, 0);
}

// The worked example of PROTOCOLS.md's scorer: user 1 has relevant {3, 4}
// and gets [4, 6, 3]; user 2 has relevant {2} and gets nothing.
TEST(RankingAccumulatorTest, HandComputedAtThree) {
  RankingAccumulator acc(3);
  acc.Add({4, 6, 3}, {3, 4}, 2);
  acc.Add({}, {2}, 1);
  const RankingMetrics m = acc.Result();
  EXPECT_EQ(m.users, 2);
  EXPECT_NEAR(m.precision, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.recall, 0.5, 1e-12);
  // nDCG of user 1: (1/log2 2 + 1/log2 4) / (1/log2 2 + 1/log2 3).
  EXPECT_NEAR(m.ndcg, 0.5 * 1.5 / (1.0 + 1.0 / std::log2(3.0)), 1e-12);
  EXPECT_NEAR(m.ndcg, 0.459860, 1e-6);
  // MAP of user 1: (1/1 + 2/3) / min(2, 3).
  EXPECT_NEAR(m.map, 0.5 * (1.0 + 2.0 / 3.0) / 2.0, 1e-12);
}

TEST(RankingAccumulatorTest, PrecisionDividesByKEvenForShortLists) {
  RankingAccumulator acc(10);
  acc.Add({4, 6, 3}, {3, 4}, 2);
  acc.Add({}, {2}, 1);
  const RankingMetrics m = acc.Result();
  EXPECT_NEAR(m.precision, 0.1, 1e-12);
  EXPECT_NEAR(m.recall, 0.5, 1e-12);
  EXPECT_NEAR(m.ndcg, 0.459860, 1e-6);
  EXPECT_NEAR(m.map, 0.416667, 1e-6);
}

TEST(RankingAccumulatorTest, UnreachableRelevantItemsStillCount) {
  // Two relevant items, one unknown to the model: a perfect first hit gives
  // recall 1/2 and nDCG 1 / (1 + 1/log2 3).
  RankingAccumulator acc(10);
  acc.Add({7}, {7}, 2);
  const RankingMetrics m = acc.Result();
  EXPECT_NEAR(m.recall, 0.5, 1e-12);
  EXPECT_NEAR(m.ndcg, 1.0 / (1.0 + 1.0 / std::log2(3.0)), 1e-12);
  EXPECT_NEAR(m.map, 0.5, 1e-12);
}

TEST(RankingAccumulatorTest, OnlyFirstKCountAndUsersWithoutRelevantSkipped) {
  RankingAccumulator acc(2);
  acc.Add({1, 2, 3}, {3}, 1);  // the hit is at rank 3 > k
  acc.Add({1}, {}, 0);         // not evaluated
  const RankingMetrics m = acc.Result();
  EXPECT_EQ(m.users, 1);
  EXPECT_EQ(m.precision, 0);
  EXPECT_EQ(m.ndcg, 0);
}

TEST(SummarizeTest, SampleStandardDeviation) {
  const MeanSd s = Summarize({1.0, 2.0, 3.0, 4.0});
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_NEAR(s.sd, std::sqrt(5.0 / 3.0), 1e-12);
  EXPECT_EQ(Summarize({7.0}).sd, 0);
  EXPECT_EQ(Summarize({}).mean, 0);
}

}  // namespace
}  // namespace recsys
