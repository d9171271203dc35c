// server/wire.h writes Recommend's response without building the message:
// its bytes must be exactly protobuf's own serialization of the same
// message, for every shape of field (empty and long strings, multi-byte
// lengths, zero and negative-zero floats, many items).
#include "server/wire.h"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/recsys.pb.h"

namespace recsys {
namespace {

std::string RandomText(std::mt19937_64& rng) {
  // Mostly short, sometimes past 127 bytes (a two-byte length), with
  // multi-byte UTF-8 characters and sometimes empty.
  const std::vector<std::string> pieces = {"a",    "Zq", " ",     "é",
                                           "日本", "🎬",  "(1995)"};
  const int n = std::uniform_int_distribution<int>(0, 9)(rng) == 0
                    ? 0
                    : std::uniform_int_distribution<int>(1, 120)(rng);
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += pieces[std::uniform_int_distribution<size_t>(0,
                                                      pieces.size() - 1)(rng)];
  }
  return s;
}

float RandomFloat(std::mt19937_64& rng) {
  const std::vector<float> special = {0.0f,
                                      -0.0f,
                                      1.0f,
                                      -3.25f,
                                      std::numeric_limits<float>::infinity(),
                                      std::numeric_limits<float>::denorm_min(),
                                      std::numeric_limits<float>::quiet_NaN()};
  if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
    return special[std::uniform_int_distribution<size_t>(
        0, special.size() - 1)(rng)];
  }
  return std::uniform_real_distribution<float>(-10, 10)(rng);
}

TEST(WireTest, RecommendResponseBytesEqualProtobufs) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    v1::RecommendResponse want;
    std::string got;
    const int items = trial % 50 == 0
                          ? 300  // a response longer than a few KB
                          : std::uniform_int_distribution<int>(0, 12)(rng);
    // Every few responses come from a model of implicit feedback: no
    // predicted ratings (an optional field, absent, not zero).
    const bool implicit = trial % 5 == 4;
    for (int i = 0; i < items; ++i) {
      const std::string id = RandomText(rng);
      const std::string title = RandomText(rng);
      std::vector<std::string> genres;
      const int n_genres = std::uniform_int_distribution<int>(0, 4)(rng);
      for (int g = 0; g < n_genres; ++g) genres.push_back(RandomText(rng));
      const float predicted = RandomFloat(rng);
      const float score = RandomFloat(rng);
      v1::ScoredItem* s = want.add_items();
      s->mutable_item()->set_id(id);
      s->mutable_item()->set_title(title);
      for (const std::string& g : genres) s->mutable_item()->add_genres(g);
      if (!implicit) s->set_predicted_rating(predicted);
      s->set_score(score);
      internal::AppendScoredItem(
          id, title, genres,
          implicit ? std::nullopt : std::optional<float>(predicted), score,
          &got);
    }
    const v1::Strategy strategy = static_cast<v1::Strategy>(trial % 3);
    const uint64_t version = trial % 4 == 0   ? 0
                             : trial % 4 == 1 ? 1
                             : trial % 4 == 2 ? 300
                                              : (uint64_t{1} << 63) + trial;
    std::vector<std::string> unknown;
    for (int u = 0; u < trial % 3; ++u) unknown.push_back(RandomText(rng));
    const v1::Feedback feedback =
        implicit ? v1::FEEDBACK_IMPLICIT
                 : (trial % 2 == 0 ? v1::FEEDBACK_EXPLICIT
                                   : v1::FEEDBACK_UNSPECIFIED);
    want.set_strategy(strategy);
    want.set_model_version(version);
    for (const std::string& id : unknown) want.add_unknown_item_ids(id);
    want.set_feedback(feedback);
    internal::AppendRecommendTail(strategy, version, unknown, feedback, &got);

    ASSERT_EQ(got, want.SerializeAsString()) << "trial " << trial;
    v1::RecommendResponse parsed;
    ASSERT_TRUE(parsed.ParseFromString(got)) << "trial " << trial;
    EXPECT_EQ(parsed.items_size(), items);
  }
}

TEST(WireTest, AnItemWithNoFieldsSetIsStillPresent) {
  // An empty Item is written as a present, empty sub-message, as
  // mutable_item() makes it.
  v1::RecommendResponse want;
  want.add_items()->mutable_item();
  std::string got;
  internal::AppendScoredItem("", "", {}, std::nullopt, 0.0f, &got);
  internal::AppendRecommendTail(0, 0, {}, 0, &got);
  EXPECT_EQ(got, want.SerializeAsString());
  v1::RecommendResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(got));
  ASSERT_EQ(parsed.items_size(), 1);
  EXPECT_TRUE(parsed.items(0).has_item());
  EXPECT_FALSE(parsed.items(0).has_predicted_rating());
}

TEST(WireTest, APredictedRatingOfZeroIsPresent) {
  // An optional field set to its default is still written (and parsed back
  // as present): a rating of 0 on a scale [-5, 5] is not "no rating".
  v1::RecommendResponse want;
  v1::ScoredItem* s = want.add_items();
  s->mutable_item();
  s->set_predicted_rating(0.0f);
  std::string got;
  internal::AppendScoredItem("", "", {}, 0.0f, 0.0f, &got);
  internal::AppendRecommendTail(0, 0, {}, 0, &got);
  EXPECT_EQ(got, want.SerializeAsString());
  v1::RecommendResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(got));
  EXPECT_TRUE(parsed.items(0).has_predicted_rating());
}

}  // namespace
}  // namespace recsys
