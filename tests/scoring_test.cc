#include "models/scoring.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace recsys {
namespace {

// Direct dot products in double: the reference the panels must match.
std::vector<double> Reference(const RowMatrix& q, const Eigen::VectorXf& bias,
                              const Eigen::VectorXf& p, float offset) {
  std::vector<double> out(static_cast<size_t>(q.rows()));
  for (int64_t i = 0; i < q.rows(); ++i) {
    double s = offset + (bias.size() > 0 ? bias[i] : 0.0f);
    for (int64_t f = 0; f < q.cols(); ++f) {
      s += static_cast<double>(q(i, f)) * p[f];
    }
    out[static_cast<size_t>(i)] = s;
  }
  return out;
}

TEST(ItemPanelsTest, MatchesDirectProductForEveryShape) {
  std::mt19937 rng(3);
  std::normal_distribution<float> gauss(0.0f, 0.3f);
  const int w = ItemPanels::kWidth;
  // Catalogues shorter than, equal to and around multiples of a panel, with
  // odd, even and zero factor counts.
  for (int32_t rows : {0, 1, w - 1, w, w + 1, 3 * w + 5, 1682}) {
    for (int32_t k : {0, 1, 7, 64, 129}) {
      RowMatrix q(rows, k);
      for (int64_t j = 0; j < q.size(); ++j) q.data()[j] = gauss(rng);
      Eigen::VectorXf bias(rows);
      for (int32_t i = 0; i < rows; ++i) bias[i] = gauss(rng);
      Eigen::VectorXf p(k);
      for (int32_t f = 0; f < k; ++f) p[f] = gauss(rng);
      const ItemPanels panels(q, bias);
      ASSERT_EQ(panels.rows(), rows);
      ASSERT_EQ(panels.factors(), k);
      // A guard value after the end checks nothing is written past rows.
      std::vector<float> out(static_cast<size_t>(rows) + 1, -7.0f);
      panels.Score(p.data(), 3.5f, out.data());
      const std::vector<double> want = Reference(q, bias, p, 3.5f);
      for (int32_t i = 0; i < rows; ++i) {
        ASSERT_NEAR(out[i], want[i], 1e-4) << rows << "x" << k << " item " << i;
      }
      EXPECT_EQ(out[rows], -7.0f) << rows << "x" << k;
    }
  }
}

TEST(ItemPanelsTest, EmptyBiasMeansZero) {
  RowMatrix q(3, 2);
  q << 1, 2, 3, 4, 5, 6;
  const ItemPanels panels(q, Eigen::VectorXf());
  const float p[2] = {1.0f, -1.0f};
  float out[3];
  panels.Score(p, 0.5f, out);
  EXPECT_FLOAT_EQ(out[0], -0.5f);
  EXPECT_FLOAT_EQ(out[1], -0.5f);
  EXPECT_FLOAT_EQ(out[2], -0.5f);
}

// What ScoreTopK must equal bit for bit: every score, then TopKInPlace.
std::vector<ScoredItem> PlainTopK(const ItemPanels& panels, const float* p,
                                  float offset, const std::vector<float>& tail,
                                  int k, const std::vector<int32_t>& exclude) {
  std::vector<float> all(static_cast<size_t>(panels.rows()) + tail.size());
  if (panels.rows() > 0) panels.Score(p, offset, all.data());
  std::copy(tail.begin(), tail.end(), all.begin() + panels.rows());
  std::vector<ScoredItem> out;
  TopKInPlace(absl::MakeSpan(all), k, exclude, &out);
  return out;
}

// Equal items and bit-identical scores, in order.
void ExpectSameList(const std::vector<ScoredItem>& got,
                    const std::vector<ScoredItem>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t r = 0; r < got.size(); ++r) {
    EXPECT_EQ(got[r].item, want[r].item) << what << " rank " << r;
    EXPECT_EQ(std::memcmp(&got[r].score, &want[r].score, sizeof(float)), 0)
        << what << " rank " << r << ": " << got[r].score << " vs "
        << want[r].score;
  }
}

// Items as a low-rank model makes them (a few tastes plus noise), the
// shape ScoreTopK's bounds are built for.
RowMatrix LowRankItems(int32_t rows, int32_t k, std::mt19937* rng) {
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  const int32_t rank = std::max(1, std::min(k, 4));
  RowMatrix basis(rank, k);
  for (int64_t j = 0; j < basis.size(); ++j) basis.data()[j] = gauss(*rng);
  RowMatrix q(rows, k);
  for (int32_t i = 0; i < rows; ++i) {
    for (int32_t f = 0; f < k; ++f) q(i, f) = 0.05f * gauss(*rng);
    for (int32_t r = 0; r < rank; ++r) {
      q.row(i) += (0.3f * gauss(*rng)) * basis.row(r);
    }
  }
  return q;
}

TEST(ItemPanelsTopKTest, EqualsScoringEveryItemForEveryShape) {
  std::mt19937 rng(5);
  std::normal_distribution<float> gauss(0.0f, 0.5f);
  const int w = ItemPanels::kCodeWidth;
  int64_t two_stage_calls = 0;
  for (int32_t rows : {1, w - 1, w, w + 1, 3 * w + 5, 1682, 6000}) {
    for (int32_t k : {1, 3, 4, 7, 32, 129}) {
      const RowMatrix q = LowRankItems(rows, k, &rng);
      Eigen::VectorXf bias(rows);
      for (int32_t i = 0; i < rows; ++i) bias[i] = 0.3f * gauss(rng);
      for (bool with_bias : {false, true}) {
        const ItemPanels panels(q, with_bias ? bias : Eigen::VectorXf(),
                                ItemPanels::Int8::kAlways);
        ASSERT_TRUE(panels.quantized()) << rows << "x" << k;
        for (int user = 0; user < 6; ++user) {
          // A user like the items, or plain noise.
          Eigen::VectorXf p(k);
          if (user % 2 == 0) {
            p = q.row(static_cast<int32_t>(rng() % rows)).transpose() * 3.0f;
          } else {
            for (int32_t f = 0; f < k; ++f) p[f] = gauss(rng);
          }
          std::vector<float> tail;
          for (int t = 0; t < user % 3 * 4; ++t) tail.push_back(gauss(rng));
          std::vector<int32_t> exclude;
          const auto n = static_cast<int32_t>(rows + tail.size());
          for (int e = 0; e < user * 7; ++e) {
            exclude.push_back(static_cast<int32_t>(rng() % n));
          }
          exclude.push_back(-3);  // ignored, as TopKInPlace ignores it
          for (int top : {1, 10, 40}) {
            const float offset = with_bias ? 3.5f : 0.0f;
            std::vector<ScoredItem> got;
            panels.ScoreTopK(p.data(), offset, tail, top, exclude, &got);
            two_stage_calls += ItemPanels::LastExactCount() >= 0;
            ExpectSameList(
                got, PlainTopK(panels, p.data(), offset, tail, top, exclude),
                absl::StrCat(rows, "x", k, " user ", user, " k ", top,
                             with_bias ? " bias" : ""));
          }
        }
      }
    }
  }
  // Most calls take the int8 path (the rest: fewer than k items left).
  EXPECT_GT(two_stage_calls, 1000);
}

// On a catalogue shaped like a real model's, few items need exact scores.
TEST(ItemPanelsTopKTest, ScoresFewItemsExactlyOnLowRankData) {
  std::mt19937 rng(9);
  const RowMatrix q = LowRankItems(20000, 64, &rng);
  const ItemPanels panels(q, Eigen::VectorXf());
  ASSERT_TRUE(panels.quantized()) << "large enough for kIfLarge";
  int64_t most = 0;
  for (int user = 0; user < 20; ++user) {
    const Eigen::VectorXf p = q.row(user * 997).transpose();
    std::vector<ScoredItem> got;
    panels.ScoreTopK(p.data(), 0.0f, {}, 10, {}, &got);
    ASSERT_GE(ItemPanels::LastExactCount(), 10);
    most = std::max(most, ItemPanels::LastExactCount());
    ExpectSameList(got, PlainTopK(panels, p.data(), 0.0f, {}, 10, {}),
                   absl::StrCat("user ", user));
  }
  EXPECT_LT(most, 2000) << "of 20000 items";
}

// Ties, duplicates, zero rows and users, wide ranges of magnitude: still
// exactly the plain result.
TEST(ItemPanelsTopKTest, HardCasesStayExact) {
  std::mt19937 rng(11);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  const int32_t rows = 700, k = 16;
  RowMatrix q(rows, k);
  for (int32_t i = 0; i < rows; ++i) {
    if (i % 5 == 0) {
      q.row(i).setZero();  // zero items tie at the offset
    } else if (i % 5 == 1 && i > 1) {
      q.row(i) = q.row(i - 5);  // duplicates tie exactly
    } else {
      for (int32_t f = 0; f < k; ++f) q(i, f) = gauss(rng);
      // One huge factor beside tiny ones.
      if (i % 7 == 0) q(i, i % k) = 1e6f;
      if (i % 11 == 0) q.row(i) *= 1e-30f;
    }
  }
  const ItemPanels panels(q, Eigen::VectorXf(), ItemPanels::Int8::kAlways);
  ASSERT_TRUE(panels.quantized());
  std::vector<Eigen::VectorXf> users;
  users.push_back(Eigen::VectorXf::Zero(k));
  users.push_back(Eigen::VectorXf::Constant(k, 1.0f));
  users.push_back(Eigen::VectorXf::Constant(k, -1e-20f));
  Eigen::VectorXf spiky = Eigen::VectorXf::Zero(k);
  spiky[3] = 1e5f;
  spiky[4] = 1e-5f;
  users.push_back(spiky);
  for (size_t u = 0; u < users.size(); ++u) {
    for (int top : {1, 10, 200}) {
      std::vector<ScoredItem> got;
      panels.ScoreTopK(users[u].data(), 0.25f, {}, top, {}, &got);
      ExpectSameList(got,
                     PlainTopK(panels, users[u].data(), 0.25f, {}, top, {}),
                     absl::StrCat("user ", u, " k ", top));
    }
  }
}

// A long exclusion list (a filter that leaves little of the catalogue)
// takes another lookup; the answer is the same.
TEST(ItemPanelsTopKTest, LongExclusionListsToo) {
  std::mt19937 rng(29);
  const RowMatrix q = LowRankItems(6000, 24, &rng);
  const ItemPanels panels(q, Eigen::VectorXf());
  ASSERT_TRUE(panels.quantized());
  for (int32_t excluded : {100, 3000, 5990, 6000}) {
    std::vector<int32_t> all(6000);
    for (int32_t i = 0; i < 6000; ++i) all[i] = i;
    std::shuffle(all.begin(), all.end(), rng);
    const std::vector<int32_t> exclude(all.begin(), all.begin() + excluded);
    const Eigen::VectorXf p = q.row(excluded % 6000).transpose();
    std::vector<ScoredItem> got;
    panels.ScoreTopK(p.data(), 0.0f, {}, 10, exclude, &got);
    ExpectSameList(got, PlainTopK(panels, p.data(), 0.0f, {}, 10, exclude),
                   absl::StrCat(excluded, " excluded"));
  }
}

// An `allowed` bit set (a genre) gives what excluding every other item
// gives, on both paths, with the user's own exclusions and a tail beside
// it; bits past the end of the set count as clear.
TEST(ItemPanelsTopKTest, AllowedBitsEqualExcludingTheRest) {
  std::mt19937 rng(37);
  std::normal_distribution<float> gauss(0.0f, 0.5f);
  int64_t two_stage_calls = 0;
  for (const auto& [rows, int8] :
       {std::pair{6000, ItemPanels::Int8::kIfLarge},
        std::pair{1000, ItemPanels::Int8::kIfLarge},
        std::pair{1000, ItemPanels::Int8::kAlways}}) {
    const RowMatrix q = LowRankItems(rows, 24, &rng);
    const ItemPanels panels(q, Eigen::VectorXf(), int8);
    ASSERT_EQ(panels.quantized(),
              rows == 6000 || int8 == ItemPanels::Int8::kAlways);
    const auto words = static_cast<size_t>((rows + 63) / 64);
    // Each of these shares of the items allowed; the last set is one word
    // long, so only the first 64 items can be allowed.
    for (const auto& [per_mille, length] :
         {std::pair{0, words}, std::pair{5, words}, std::pair{125, words},
          std::pair{500, words}, std::pair{1000, words},
          std::pair{1000, size_t{1}}}) {
      std::vector<uint64_t> allowed(length, 0);
      std::vector<int32_t> rest;  // every item not allowed
      for (int32_t i = 0; i < rows; ++i) {
        const bool in = static_cast<size_t>(i / 64) < length &&
                        static_cast<int>(rng() % 1000) < per_mille;
        if (in) {
          allowed[static_cast<size_t>(i / 64)] |= uint64_t{1} << (i % 64);
        } else {
          rest.push_back(i);
        }
      }
      for (int user = 0; user < 4; ++user) {
        const Eigen::VectorXf p =
            q.row(static_cast<int32_t>(rng() % rows)).transpose() * 2.0f;
        std::vector<float> tail;
        for (int t = 0; t < user * 3; ++t) tail.push_back(gauss(rng));
        std::vector<int32_t> exclude;
        for (int e = 0; e < user * 20; ++e) {
          exclude.push_back(static_cast<int32_t>(rng() % (rows + tail.size())));
        }
        std::vector<int32_t> both = exclude;
        both.insert(both.end(), rest.begin(), rest.end());
        for (int top : {1, 10, 100}) {
          std::vector<ScoredItem> got;
          panels.ScoreTopK(p.data(), 0.5f, tail, top, exclude, allowed, &got);
          two_stage_calls += ItemPanels::LastExactCount() >= 0;
          ExpectSameList(
              got, PlainTopK(panels, p.data(), 0.5f, tail, top, both),
              absl::StrCat(rows, " items, ", per_mille, "/1000 allowed in ",
                           length, " words, user ", user, " k ", top));
        }
      }
    }
  }
  EXPECT_GT(two_stage_calls, 20) << "the int8 path was taken";
}

TEST(ItemPanelsTest, ScoreItemsEqualsScore) {
  std::mt19937 rng(31);
  for (int32_t rows : {1, 100, 1682}) {
    for (int32_t k : {1, 7, 20, 129}) {
      const RowMatrix q = LowRankItems(rows, k, &rng);
      Eigen::VectorXf bias(rows);
      for (int32_t i = 0; i < rows; ++i)
        bias[i] = 0.01f * static_cast<float>(i % 13);
      const ItemPanels panels(q, bias);
      const Eigen::VectorXf p = q.row(0).transpose();
      std::vector<float> all(static_cast<size_t>(rows));
      panels.Score(p.data(), 1.5f, all.data());
      std::vector<int32_t> items;
      for (int32_t i = 0; i < rows; ++i) {
        if (rng() % 4 == 0 || i == rows - 1) items.push_back(i);
      }
      std::vector<float> some(items.size());
      panels.ScoreItems(p.data(), 1.5f, items, some.data());
      for (size_t j = 0; j < items.size(); ++j) {
        EXPECT_EQ(std::memcmp(&some[j], &all[static_cast<size_t>(items[j])],
                              sizeof(float)),
                  0)
            << rows << "x" << k << ", item " << items[j];
      }
    }
  }
}

// When the bounds cannot separate the scores (every item nearly the same),
// ScoreTopK gives up on them and scores every item: the same answer.
TEST(ItemPanelsTopKTest, NearlyEqualScoresFallBackToScoringEveryItem) {
  std::mt19937 rng(23);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  const int32_t rows = 30000, k = 32;
  Eigen::VectorXf base(k);
  for (int32_t f = 0; f < k; ++f) base[f] = gauss(rng);
  RowMatrix q(rows, k);
  for (int32_t i = 0; i < rows; ++i) {
    for (int32_t f = 0; f < k; ++f)
      q(i, f) = base[f] * (1 + 1e-4f * gauss(rng));
  }
  const ItemPanels panels(q, Eigen::VectorXf());
  ASSERT_TRUE(panels.quantized());
  std::vector<ScoredItem> got;
  panels.ScoreTopK(base.data(), 0.0f, {}, 10, {}, &got);
  EXPECT_EQ(ItemPanels::LastExactCount(), -1);
  ExpectSameList(got, PlainTopK(panels, base.data(), 0.0f, {}, 10, {}),
                 "nearly equal");
}

// Fewer items left than k, non-finite inputs and models without an int8
// copy take the plain path, with the plain answer.
TEST(ItemPanelsTopKTest, FallsBackToScoringEveryItem) {
  std::mt19937 rng(13);
  RowMatrix q = LowRankItems(100, 8, &rng);
  const ItemPanels panels(q, Eigen::VectorXf(), ItemPanels::Int8::kAlways);
  Eigen::VectorXf p = q.row(1).transpose();
  std::vector<int32_t> most;
  for (int32_t i = 0; i < 95; ++i) most.push_back(i);
  std::vector<ScoredItem> got;
  panels.ScoreTopK(p.data(), 0.0f, {}, 10, most, &got);
  EXPECT_EQ(got.size(), 5u);
  ExpectSameList(got, PlainTopK(panels, p.data(), 0.0f, {}, 10, most),
                 "five left");

  p[2] = std::numeric_limits<float>::quiet_NaN();
  panels.ScoreTopK(p.data(), 0.0f, {}, 10, {}, &got);
  EXPECT_EQ(ItemPanels::LastExactCount(), -1) << "NaN user";
  EXPECT_EQ(got.size(), 10u);

  // Bounds that would overflow a float.
  const Eigen::VectorXf huge = Eigen::VectorXf::Constant(8, 1e37f);
  panels.ScoreTopK(huge.data(), 0.0f, {}, 10, {}, &got);
  EXPECT_EQ(ItemPanels::LastExactCount(), -1) << "huge user";
  ExpectSameList(got, PlainTopK(panels, huge.data(), 0.0f, {}, 10, {}),
                 "huge user");

  RowMatrix bad = q;
  bad(7, 3) = std::numeric_limits<float>::infinity();
  const ItemPanels unquantized(bad, Eigen::VectorXf(),
                               ItemPanels::Int8::kAlways);
  EXPECT_FALSE(unquantized.quantized());
  p = q.row(1).transpose();
  unquantized.ScoreTopK(p.data(), 0.0f, {}, 10, {}, &got);
  EXPECT_EQ(ItemPanels::LastExactCount(), -1);
  ExpectSameList(got, PlainTopK(unquantized, p.data(), 0.0f, {}, 10, {}),
                 "infinite factor");

  const ItemPanels no_factors(RowMatrix(50, 0), Eigen::VectorXf::Ones(50),
                              ItemPanels::Int8::kAlways);
  EXPECT_FALSE(no_factors.quantized());
  no_factors.ScoreTopK(nullptr, 1.0f, {}, 3, {}, &got);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].item, 0);
  EXPECT_EQ(got[0].score, 2.0f);
}

TEST(ItemPanelsTopKTest, SmallCataloguesKeepNoInt8Copy) {
  std::mt19937 rng(19);
  // (1000 x 32 floats: just under ItemPanels::kInt8MinFloats.)
  const RowMatrix small = LowRankItems(1000, 32, &rng);
  ASSERT_LT(small.size(), ItemPanels::kInt8MinFloats);
  const ItemPanels panels(small, Eigen::VectorXf());
  EXPECT_FALSE(panels.quantized());
  const Eigen::VectorXf p = small.row(3).transpose();
  std::vector<ScoredItem> got;
  panels.ScoreTopK(p.data(), 0.0f, {}, 10, {}, &got);
  EXPECT_EQ(ItemPanels::LastExactCount(), -1);
  ExpectSameList(got, PlainTopK(panels, p.data(), 0.0f, {}, 10, {}), "small");
}

TEST(CodePanelDotTest, VectorKernelEqualsPortableLoop) {
  std::mt19937 rng(17);
  for (int32_t groups : {1, 2, 8, 33}) {
    std::vector<uint8_t> codes(static_cast<size_t>(groups) *
                               ItemPanels::kCodeWidth * 4);
    for (uint8_t& c : codes) c = static_cast<uint8_t>(rng() % 256);
    std::vector<uint32_t> user(static_cast<size_t>(groups));
    for (uint32_t& u : user) u = static_cast<uint32_t>(rng());
    std::vector<int32_t> a(ItemPanels::kCodeWidth), b(ItemPanels::kCodeWidth);
    internal::CodePanelDot(codes.data(), user.data(), groups, a.data());
    internal::CodePanelDotPortable(codes.data(), user.data(), groups, b.data());
    EXPECT_EQ(a, b) << groups << " groups";
    // And the portable loop against the definition, for item 5.
    int64_t want = 0;
    for (int32_t g = 0; g < groups; ++g) {
      for (int t = 0; t < 4; ++t) {
        const auto user_code =
            static_cast<int8_t>((user[g] >> (8 * t)) & 0xffu);
        want +=
            static_cast<int64_t>(user_code) *
            codes[(static_cast<size_t>(g) * ItemPanels::kCodeWidth + 5) * 4 +
                  t];
      }
    }
    EXPECT_EQ(b[5], want);
  }
}

}  // namespace
}  // namespace recsys
