#include "models/topk.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

// The oracle: sort everything by (score desc, index asc), drop exclusions.
std::vector<ScoredItem> FullSort(const Eigen::VectorXf& scores, int k,
                                 const std::vector<int32_t>& exclude) {
  std::vector<ScoredItem> all;
  for (int32_t i = 0; i < scores.size(); ++i) {
    if (std::find(exclude.begin(), exclude.end(), i) != exclude.end()) continue;
    all.push_back({i, scores[i]});
  }
  std::sort(
      all.begin(), all.end(), [](const ScoredItem& a, const ScoredItem& b) {
        return a.score > b.score || (a.score == b.score && a.item < b.item);
      });
  if (static_cast<int>(all.size()) > k) all.resize(k);
  return all;
}

void ExpectSame(const std::vector<ScoredItem>& got,
                const std::vector<ScoredItem>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t r = 0; r < got.size(); ++r) {
    EXPECT_EQ(got[r].item, want[r].item) << "rank " << r;
    EXPECT_EQ(got[r].score, want[r].score) << "rank " << r;
  }
}

TEST(TopKTest, MatchesFullSortWithTiesAndExclusions) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 300);
    Eigen::VectorXf scores(n);
    // Few distinct values so ties are common.
    for (int i = 0; i < n; ++i) scores[i] = static_cast<float>(rng() % 17) / 4;
    std::vector<int32_t> exclude;
    const int ex = static_cast<int>(rng() % (n + 1)) / 3;
    for (int j = 0; j < ex; ++j)
      exclude.push_back(static_cast<int32_t>(rng() % n));
    const int k = 1 + static_cast<int>(rng() % 40);
    ExpectSame(TopK(scores, k, exclude), FullSort(scores, k, exclude));
  }
}

// Excluded items are overwritten with -inf internally, so items that really
// score -inf must still come back (after every other, lowest index first)
// when the catalogue runs short, and excluded ones never. TopKInPlace must
// agree with TopK.
TEST(TopKTest, NegativeInfinityScoresAreRankedNotExcluded) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::mt19937 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 700);
    Eigen::VectorXf scores(n);
    for (int i = 0; i < n; ++i) {
      const unsigned r = rng() % 10;
      scores[i] = r < 3 ? -kInf : r == 3 ? kInf : static_cast<float>(r) / 2;
    }
    std::vector<int32_t> exclude;
    const int ex = static_cast<int>(rng() % (n + 1));
    for (int j = 0; j < ex; ++j)
      exclude.push_back(static_cast<int32_t>(rng() % (n + 8)) - 4);
    const int k = 1 + static_cast<int>(rng() % (n + 5));
    const std::vector<ScoredItem> want = FullSort(scores, k, exclude);
    ExpectSame(TopK(scores, k, exclude), want);
    Eigen::VectorXf scratch = scores;
    std::vector<ScoredItem> got;
    TopKInPlace(absl::MakeSpan(scratch.data(), static_cast<size_t>(n)), k,
                exclude, &got);
    ExpectSame(got, want);
  }
}

TEST(TopKTest, InPlaceOverwritesOnlyExcludedScores) {
  Eigen::VectorXf scores(5);
  scores << 1, 5, 3, 4, 2;
  const std::vector<int32_t> exclude = {1, 7, -1};
  std::vector<ScoredItem> got;
  TopKInPlace(absl::MakeSpan(scores.data(), 5), 2, exclude, &got);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].item, 3);
  EXPECT_EQ(got[1].item, 2);
  EXPECT_EQ(scores[0], 1);
  EXPECT_EQ(scores[1], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(scores[4], 2);
}

// TopK skips whole blocks of items below the current k-th score; a NaN at
// the start of a block must not hide a winner later in it, and winners in
// the last, partial block count too.
TEST(TopKTest, NaNDoesNotHideAWinnerInItsBlock) {
  Eigen::VectorXf scores = Eigen::VectorXf::Zero(100);
  for (int i = 0; i < 100; ++i) scores[i] = static_cast<float>(i % 7) / 10;
  scores[48] = std::numeric_limits<float>::quiet_NaN();
  scores[50] = 5.0f;
  scores[99] = 4.0f;
  const std::vector<ScoredItem> got = TopK(scores, 3, {});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].item, 50);
  EXPECT_EQ(got[1].item, 99);
}

TEST(TopKTest, KLargerThanCatalogueReturnsEverythingSorted) {
  Eigen::VectorXf scores(4);
  scores << 0.5f, 2.0f, -1.0f, 2.0f;
  const std::vector<ScoredItem> got = TopK(scores, 10, {});
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].item, 1);
  EXPECT_EQ(got[1].item, 3);
  EXPECT_EQ(got[2].item, 0);
  EXPECT_EQ(got[3].item, 2);
}

TEST(TopKTest, EdgeCases) {
  Eigen::VectorXf scores(3);
  scores << 1, 2, 3;
  EXPECT_TRUE(TopK(scores, 0, {}).empty());
  EXPECT_TRUE(TopK(scores, -1, {}).empty());
  EXPECT_TRUE(TopK(Eigen::VectorXf(), 5, {}).empty());
  // Everything excluded, with duplicates and out-of-range ids ignored.
  const std::vector<int32_t> all = {0, 1, 2, 2, -5, 99};
  EXPECT_TRUE(TopK(scores, 3, all).empty());
  const std::vector<int32_t> top = {2, 2};
  const std::vector<ScoredItem> got = TopK(scores, 5, top);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].item, 1);
}

class ScoringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(40, 60, 3, 0.3, 0.1, 11);
    Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
    p.factors = 4;
    p.epochs = 5;
    TrainOptions opt;
    opt.threads = 1;
    auto m = TrainModel(data_, ModelKind::kAls, p, opt);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = *std::move(m);
  }
  RatingData data_;
  Model model_;
};

TEST_F(ScoringTest, ScoreAllItemsEqualsPerItemScore) {
  Eigen::VectorXf scores;
  for (int32_t u = 0; u < model_.num_users(); u += 7) {
    ScoreAllItems(model_, model_.user_bias[u],
                  model_.user_factors.row(u).data(), &scores);
    ASSERT_EQ(scores.size(), model_.num_items());
    for (int32_t i = 0; i < model_.num_items(); ++i) {
      EXPECT_NEAR(scores[i], model_.Score(u, i), 1e-5);
    }
  }
}

TEST_F(ScoringTest, RecommendForUserNeverReturnsRatedItems) {
  Eigen::VectorXf scores;
  for (int32_t u = 0; u < model_.num_users(); ++u) {
    const SparseRows& r = model_.user_ratings;
    std::vector<int32_t> rated(r.cols.begin() + r.offsets[u],
                               r.cols.begin() + r.offsets[u + 1]);
    const auto got = RecommendForUser(model_, u, 1000, true, &scores);
    EXPECT_EQ(got.size(), model_.num_items() - rated.size());
    for (const ScoredItem& s : got) {
      EXPECT_EQ(std::count(rated.begin(), rated.end(), s.item), 0);
    }
    ExpectSame(RecommendForUser(model_, u, 10, true, &scores),
               FullSort(scores, 10, rated));
  }
}

// Retired items are left out like rated ones, for known and unknown users.
TEST_F(ScoringTest, RecommendForUserNeverReturnsRetiredItems) {
  Model m = model_;
  std::vector<int32_t> retired;
  for (int32_t i = 0; i < m.num_items(); i += 4) {
    m.item_info[static_cast<size_t>(i)].retired = true;
    retired.push_back(i);
  }
  Eigen::VectorXf scores;
  for (int32_t u : {-1, 0, 1, 2}) {
    std::vector<int32_t> excluded = retired;
    if (u >= 0) {
      const SparseRows& r = m.user_ratings;
      excluded.insert(excluded.end(), r.cols.begin() + r.offsets[u],
                      r.cols.begin() + r.offsets[u + 1]);
    }
    const auto got = RecommendForUser(m, u, 10, true, &scores);
    ASSERT_EQ(got.size(), 10u);
    for (const ScoredItem& s : got) {
      EXPECT_EQ(std::count(excluded.begin(), excluded.end(), s.item), 0)
          << "user " << u << " item " << s.item;
    }
    if (u >= 0) ExpectSame(got, FullSort(scores, 10, excluded));
  }
}

TEST_F(ScoringTest, PopularityRanksByCountAndServesUnknownUsers) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kPopularity);
  TrainOptions opt;
  auto m = TrainModel(data_, ModelKind::kPopularity, p, opt);
  ASSERT_TRUE(m.ok());
  Eigen::VectorXf scores;
  const auto got = RecommendForUser(*m, -1, 5, true, &scores);
  ASSERT_EQ(got.size(), 5u);
  for (size_t r = 1; r < got.size(); ++r) {
    EXPECT_GE(m->item_counts[got[r - 1].item], m->item_counts[got[r].item]);
  }
  const int32_t best = static_cast<int32_t>(
      std::max_element(m->item_counts.begin(), m->item_counts.end()) -
      m->item_counts.begin());
  EXPECT_EQ(got[0].item, best);
}

// A user the model never saw gets the most-rated items from every kind, as
// from the server: a ranking kind's scores (no biases) would otherwise tie
// at zero and list the catalogue's first items.
TEST_F(ScoringTest, UnknownUsersGetTheMostRatedItemsFromEveryKind) {
  std::vector<int32_t> by_count(static_cast<size_t>(model_.num_items()));
  std::iota(by_count.begin(), by_count.end(), 0);
  std::stable_sort(by_count.begin(), by_count.end(), [&](int32_t a, int32_t b) {
    return model_.item_counts[a] > model_.item_counts[b];
  });
  for (ModelKind kind : {ModelKind::kAls, ModelKind::kIals}) {
    Hyperparameters p = DefaultHyperparameters(kind);
    p.factors = 4;
    p.epochs = 3;
    TrainOptions opt;
    opt.threads = 1;
    auto m = TrainModel(data_, kind, p, opt);
    ASSERT_TRUE(m.ok()) << m.status();
    Eigen::VectorXf scores;
    const auto got = RecommendForUser(*m, -1, 8, true, &scores);
    ASSERT_EQ(got.size(), 8u);
    for (size_t r = 0; r < got.size(); ++r) {
      // (Equal counts may come in either order.)
      EXPECT_EQ(m->item_counts[got[r].item], m->item_counts[by_count[r]])
          << ModelKindName(kind) << " rank " << r;
    }
  }
}

}  // namespace
}  // namespace recsys
