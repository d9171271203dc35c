#include "trainer/generate.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/loaders.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;

std::vector<GeneratedRating> Collect(const GenerateOptions& o,
                                     GenerateStats* stats = nullptr) {
  std::vector<GeneratedRating> out;
  absl::StatusOr<GenerateStats> s =
      GenerateRatings(o, [&](const GeneratedRating& r) { out.push_back(r); });
  EXPECT_TRUE(s.ok()) << s.status();
  if (stats != nullptr && s.ok()) *stats = *s;
  return out;
}

GenerateOptions Small() {
  GenerateOptions o;
  o.users = 400;
  o.items = 300;
  o.ratings = 20000;
  o.rank = 5;
  o.seed = 9;
  return o;
}

TEST(GenerateTest, ExactCountDistinctSortedPairsOnTheScaleGrid) {
  const GenerateOptions o = Small();
  GenerateStats stats;
  const std::vector<GeneratedRating> r = Collect(o, &stats);
  ASSERT_EQ(static_cast<int64_t>(r.size()), o.ratings);
  EXPECT_EQ(stats.ratings, o.ratings);
  std::vector<int64_t> per_user(o.users, 0);
  for (size_t j = 0; j < r.size(); ++j) {
    ASSERT_GE(r[j].user, 0);
    ASSERT_LT(r[j].user, o.users);
    ASSERT_GE(r[j].item, 0);
    ASSERT_LT(r[j].item, o.items);
    ++per_user[r[j].user];
    if (j > 0) {
      // Users in order, each user's items strictly increasing: no pair twice.
      ASSERT_TRUE(r[j - 1].user < r[j].user ||
                  (r[j - 1].user == r[j].user && r[j - 1].item < r[j].item));
    }
    ASSERT_TRUE(o.scale.Contains(r[j].value)) << r[j].value;
    const float steps = (r[j].value - o.scale.min) / o.step;
    ASSERT_FLOAT_EQ(steps, std::round(steps));
    ASSERT_GE(r[j].timestamp, o.first_timestamp);
    ASSERT_LE(r[j].timestamp, o.last_timestamp);
  }
  for (int64_t c : per_user) EXPECT_GE(c, o.min_user_ratings);
  EXPECT_NEAR(stats.mean_rating, 3.5, 0.3);
}

TEST(GenerateTest, SameSeedSameRatingsOtherSeedOthers) {
  GenerateOptions o = Small();
  const auto a = Collect(o);
  const auto b = Collect(o);
  ASSERT_EQ(a.size(), b.size());
  for (size_t j = 0; j < a.size(); ++j) {
    ASSERT_EQ(a[j].item, b[j].item);
    ASSERT_EQ(a[j].value, b[j].value);
  }
  o.seed = 10;
  const auto c = Collect(o);
  int same = 0;
  for (size_t j = 0; j < std::min(a.size(), c.size()); ++j) {
    same += a[j].user == c[j].user && a[j].item == c[j].item;
  }
  EXPECT_LT(same, static_cast<int>(a.size()) / 2);
}

TEST(GenerateTest, PopularityAndActivityHaveLongTails) {
  GenerateOptions o;
  o.users = 3000;
  o.items = 2000;
  o.ratings = 150000;
  o.seed = 4;
  std::vector<int64_t> items(o.items, 0), users(o.users, 0);
  for (const GeneratedRating& r : Collect(o)) {
    ++items[r.item];
    ++users[r.user];
  }
  std::sort(items.rbegin(), items.rend());
  std::sort(users.rbegin(), users.rend());
  int64_t head = 0;
  for (int i = 0; i < o.items / 10; ++i) head += items[i];
  int64_t tail = 0;
  for (int i = o.items / 2; i < o.items; ++i) tail += items[i];
  // A tenth of the catalogue takes over 40% of the ratings, the less
  // popular half under 20% (with 62k items, as in ML-25M, the head is
  // steeper still).
  EXPECT_GT(static_cast<double>(head) / o.ratings, 0.4);
  EXPECT_LT(static_cast<double>(tail) / o.ratings, 0.2);
  // The busiest user rates several times as much as the median one.
  EXPECT_GT(users.front(), 5 * users[o.users / 2]);
  EXPECT_GE(users.back(), o.min_user_ratings);
}

TEST(GenerateTest, UsersRatingMostOfTheCatalogueGetDistinctItems) {
  GenerateOptions o;
  o.users = 3;
  o.items = 50;
  o.ratings = 140;  // at least one user must take more than half the items
  o.min_user_ratings = 1;
  std::set<std::pair<int32_t, int32_t>> pairs;
  for (const GeneratedRating& r : Collect(o)) {
    EXPECT_TRUE(pairs.insert({r.user, r.item}).second);
  }
  EXPECT_EQ(pairs.size(), 140u);
}

TEST(GenerateTest, WholeStarScale) {
  GenerateOptions o = Small();
  o.scale = {1.0f, 5.0f};
  o.step = 1.0f;
  std::set<float> values;
  for (const GeneratedRating& r : Collect(o)) values.insert(r.value);
  EXPECT_EQ(values, (std::set<float>{1, 2, 3, 4, 5}));
}

TEST(GenerateTest, PlantedFactorsAreLearnable) {
  GenerateOptions o;
  o.users = 1500;
  o.items = 400;
  o.ratings = 80000;
  o.rank = 4;
  o.noise = 0.2f;
  o.step = 0.01f;  // fine steps: rounding would hide the structure
  o.seed = 2;
  absl::StatusOr<RatingData> data = GenerateRatingData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  RatingData train, valid;
  RandomSplit(*data, 0.1, 1, &train, &valid);
  auto rmse = [&](ModelKind kind, int factors) {
    Hyperparameters p = DefaultHyperparameters(kind);
    if (factors > 0) p.factors = factors;
    p.epochs = 10;
    TrainOptions t;
    t.threads = 2;
    t.validation = &valid;
    double last = 0;
    t.on_epoch = [&](const EpochReport& r) { last = r.validation_rmse; };
    EXPECT_TRUE(TrainModel(train, kind, p, t).ok());
    return last;
  };
  const double baseline = rmse(ModelKind::kBaseline, 0);
  const double als = rmse(ModelKind::kAls, 8);
  // Noise alone would give 0.2 * (4 / 4.5) ~ 0.18; biases alone cannot
  // explain the factor part (sd ~0.5).
  EXPECT_LT(als, 0.75 * baseline) << "als " << als << " baseline " << baseline;
}

TEST(GenerateTest, CsvLoadsAsMovieLensWithCatalogue) {
  const std::string dir = testing::MakeTempDir("gen");
  GenerateCommand cmd;
  cmd.options = Small();
  cmd.out = dir + "/ratings.csv";
  cmd.movies_out = dir + "/movies.csv";
  std::ostringstream log;
  ASSERT_TRUE(RunGenerate(cmd, log).ok());
  EXPECT_THAT(log.str(), HasSubstr("wrote 20000 ratings"));
  EXPECT_FALSE(std::filesystem::exists(cmd.out + ".tmp"));
  {
    std::ifstream in(cmd.out);
    std::string header;
    std::getline(in, header);
    EXPECT_EQ(header, "userId,movieId,rating,timestamp");
  }
  absl::StatusOr<RatingData> d = LoadRatings(dir, LoadOptions());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ratings.size(), 20000u);
  EXPECT_EQ(d->stats.duplicates_replaced, 0);
  EXPECT_EQ(d->num_users(), cmd.options.users);
  EXPECT_EQ(d->num_items(), cmd.options.items);  // the whole catalogue
  const int32_t i = d->items.Find("7");
  ASSERT_GE(i, 0);
  EXPECT_THAT(d->item_info[i].title, HasSubstr("Synthetic Film 7 ("));
  EXPECT_FALSE(d->item_info[i].genres.empty());
}

TEST(GenerateTest, RejectsImpossibleSizes) {
  GenerateOptions o = Small();
  o.ratings = static_cast<int64_t>(o.users) * o.items + 1;
  EXPECT_EQ(ValidateGenerateOptions(o).code(),
            absl::StatusCode::kInvalidArgument);
  o.ratings = o.users - 1;
  EXPECT_EQ(ValidateGenerateOptions(o).code(),
            absl::StatusCode::kInvalidArgument);
  o = Small();
  o.step = 0;
  EXPECT_FALSE(ValidateGenerateOptions(o).ok());
  GenerateCommand cmd;
  cmd.options = Small();
  std::ostringstream log;
  EXPECT_EQ(RunGenerate(cmd, log).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recsys
