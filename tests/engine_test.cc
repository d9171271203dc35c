// The serving engine in process: fold-in on Rate, new users and items,
// durability across restarts and snapshots, training while serving, input
// checks, and protocol F through the server's own fold-in path.
#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/evaluation.h"
#include "models/fold_in.h"
#include "models/loaders.h"
#include "models/model_io.h"
#include "models/scoring.h"
#include "models/selection.h"
#include "models/topk.h"
#include "models/train.h"
#include "tests/test_util.h"

namespace recsys {

// Applies records to the serving generation directly, in any order.
class EngineTestPeer {
 public:
  static void Apply(Engine& e, const LogRecord& rec) {
    e.Apply(*e.current(), rec);
  }
};

namespace {

using ::testing::HasSubstr;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(150, 120, 4, 0.15, 0.3, 8, true);
    dir_ = testing::MakeTempDir("engine");
    Open();
  }

  void Open() {
    engine_.reset();
    EngineOptions opt;
    opt.data_dir = dir_;
    opt.train_threads = 2;
    opt.snapshot_every = 0;
    auto e =
        Engine::Open(opt, [this] { return testing::SmallAlsModel(data_); });
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
  }

  // Waits for the running training job to end; `job`'s last update.
  TrainingUpdate FinalUpdate(const std::string& job) {
    engine_->WaitForTraining();
    bool done = false;
    absl::StatusOr<std::vector<TrainingUpdate>> updates =
        engine_->WatchTraining(job, 0, absl::Now(), &done);
    EXPECT_TRUE(updates.ok()) << updates.status();
    EXPECT_TRUE(done);
    if (!updates.ok() || updates->empty()) {
      ADD_FAILURE() << "job " << job << " has no update";
      return TrainingUpdate();
    }
    return updates->back();
  }

  RateResult MustRate(const std::string& user, const std::string& item,
                      float value) {
    absl::StatusOr<RateResult> r = engine_->Rate({user, item, value, 0});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RateResult{};
  }

  RatingData data_;
  std::string dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, NewUserStartsFromPopularityAndBecomesPersonalized) {
  RecommendQuery q;
  q.user = "newcomer";
  q.k = 10;
  absl::StatusOr<RecommendResult> before = engine_->Recommend(q);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->personalized);
  ASSERT_EQ(before->items.size(), 10u);

  std::vector<std::string> rated;
  for (int i = 0; i < 20; ++i) {
    rated.push_back(absl::StrCat("i", i * 5));
    const RateResult r =
        MustRate("newcomer", rated.back(), i % 2 ? 5.0f : 1.0f);
    EXPECT_EQ(r.new_user, i == 0);
    EXPECT_FALSE(r.new_item);
  }
  absl::StatusOr<RecommendResult> after = engine_->Recommend(q);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->personalized);
  ASSERT_EQ(after->items.size(), 10u);
  std::vector<std::string> before_ids, after_ids;
  for (const auto& it : before->items) before_ids.push_back(it.item.id);
  for (const auto& it : after->items) {
    after_ids.push_back(it.item.id);
    EXPECT_EQ(std::count(rated.begin(), rated.end(), it.item.id), 0)
        << it.item.id << " was rated";
    EXPECT_GE(it.predicted_rating, 1.0f);
    EXPECT_LE(it.predicted_rating, 5.0f);
  }
  EXPECT_NE(before_ids, after_ids);
  absl::StatusOr<UserResult> user = engine_->GetUser("newcomer", 50);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->rating_count, 20);
}

// PlantedData has no genres: any genre filter is a mistake, and says why.
TEST_F(EngineTest, GenreFilterOnACatalogueWithoutGenres) {
  RecommendQuery q;
  q.user = "u1";
  q.k = 10;
  q.genre = "Comedy";
  absl::StatusOr<RecommendResult> got = engine_->Recommend(q);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(),
            "unknown genre 'Comedy': no item of this catalogue has a genre");
}

// The vector Rate folds in is the fold-in of the user's whole history: for a
// trained user with one more rating it equals FoldInUser on the model.
TEST_F(EngineTest, RateFoldsInLikeTheLibrary) {
  const std::string user = "u3";
  const std::string item = "i7";
  Model model =
      testing::SmallAlsModel(data_);  // same data, same seed: the served model
  const int32_t u = model.users.Find(user);
  const int32_t i = model.items.Find(item);
  std::vector<IndexedRating> mine;
  const SparseRows& r = model.user_ratings;
  bool had = false;
  for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
    const float v = r.cols[k] == i ? 2.0f : r.values[k];
    had = had || r.cols[k] == i;
    mine.push_back({r.cols[k], v});
  }
  if (!had) mine.push_back({i, 2.0f});
  absl::StatusOr<FoldInResult> want = FoldInUser(model, mine);
  ASSERT_TRUE(want.ok());

  MustRate(user, item, 2.0f);
  RecommendQuery q;
  q.user = user;
  q.k = 5;
  q.include_rated = true;
  q.candidates = {"i0", "i1", "i2", "i3", "i4"};
  absl::StatusOr<RecommendResult> got = engine_->Recommend(q);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->items.size(), 5u);
  for (const auto& it : got->items) {
    const int32_t j = model.items.Find(it.item.id);
    const float score =
        model.mu + want->bias + model.item_bias[j] +
        want->factors.dot(model.item_factors.row(j).transpose());
    EXPECT_NEAR(it.score, score, 1e-4) << it.item.id;
  }
}

TEST_F(EngineTest, TrainedUsersListTheirRatingsNewestFirst) {
  absl::StatusOr<UserResult> user = engine_->GetUser("u1", 5);
  ASSERT_TRUE(user.ok()) << user.status();
  ASSERT_EQ(user->recent.size(), 5u);
  EXPECT_GT(user->recent[0].timestamp, 0);
  for (size_t j = 1; j < user->recent.size(); ++j) {
    EXPECT_GE(user->recent[j - 1].timestamp, user->recent[j].timestamp);
  }
  // They are the newest of all of the user's ratings.
  ASSERT_GT(user->rating_count, 5);
  absl::StatusOr<UserResult> all =
      engine_->GetUser("u1", static_cast<int>(user->rating_count));
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->recent.size(), static_cast<size_t>(user->rating_count));
  for (size_t j = 0; j < all->recent.size(); ++j) {
    if (j > 0) {
      EXPECT_GE(all->recent[j - 1].timestamp, all->recent[j].timestamp);
    }
    if (j < 5) {
      EXPECT_EQ(all->recent[j].timestamp, user->recent[j].timestamp);
    }
  }
  // A snapshot and restart keep the times.
  const int64_t newest = user->recent[0].timestamp;
  ASSERT_EQ(engine_->WriteSnapshot(), absl::OkStatus());
  Open();
  EXPECT_EQ(engine_->GetUser("u1", 5)->recent[0].timestamp, newest);
}

// Whatever ranks the list, the rating shown is the model's predicted rating
// (Model::Predict): counts (popularity) and preferences (iALS) never leak
// out as ratings.
TEST(EngineKinds, ShownRatingsAreTheModelsPredictions) {
  const RatingData data = testing::PlantedData(60, 50, 3, 0.3, 0.3, 2, true);
  for (ModelKind kind : {ModelKind::kPopularity, ModelKind::kIals,
                         ModelKind::kBaseline, ModelKind::kSgd}) {
    Hyperparameters p = DefaultHyperparameters(kind);
    if (p.factors > 8) p.factors = 8;
    absl::StatusOr<Model> model = TrainModel(data, kind, p, {});
    ASSERT_TRUE(model.ok());
    EngineOptions opt;
    opt.data_dir = testing::MakeTempDir(std::string(ModelKindName(kind)));
    opt.snapshot_every = 0;
    auto engine = Engine::Open(opt, [&]() { return *model; });
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (const std::string user : {"u1", "stranger"}) {
      RecommendQuery q;
      q.user = user;
      absl::StatusOr<RecommendResult> r = (*engine)->Recommend(q);
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->items.size(), 10u);
      for (const auto& it : r->items) {
        EXPECT_NEAR(it.predicted_rating,
                    model->Predict(model->users.Find(user),
                                   model->items.Find(it.item.id)),
                    1e-4)
            << ModelKindName(kind) << " " << user << " " << it.item.id;
      }
    }
  }
}

// A catalogue large enough for ItemPanels' int8 bounds (48 factors), and
// one scored in float (8): Recommend returns exactly the float top k
// (items and scores, bit for bit) of every item's score, skipping what the
// user rated and what the query excludes, with a genre, a short or a long
// candidate list (each filter takes its own path), and SimilarItems the
// float top k of every item's cosine.
TEST(EngineKinds, LargeCatalogueRecommendsTheExactTopK) {
  const RatingData data = testing::PlantedData(40, 3000, 4, 0.05, 0.3, 3, true);
  for (const auto& [kind, factors] :
       {std::pair{ModelKind::kIals, 48}, std::pair{ModelKind::kSgd, 48},
        std::pair{ModelKind::kIals, 8}}) {
    Hyperparameters p = DefaultHyperparameters(kind);
    p.factors = factors;
    p.epochs = 3;
    absl::StatusOr<Model> model = TrainModel(data, kind, p, {});
    ASSERT_TRUE(model.ok()) << model.status();
    Model& m = *model;
    // Genres G0..G6, one or two per item.
    for (int32_t i = 0; i < m.num_items(); ++i) {
      m.item_info[i].genres = {absl::StrCat("G", i % 7)};
      if (i % 5 == 0) m.item_info[i].genres.push_back("G9");
    }
    const ItemPanels panels =
        m.ranks_by_rating() ? ItemPanels(m.item_factors, m.item_bias)
                            : ItemPanels(m.item_factors.leftCols(m.rank_cols()),
                                         Eigen::VectorXf());
    ASSERT_EQ(panels.quantized(), factors == 48) << ModelKindName(kind);
    EngineOptions opt;
    opt.data_dir = testing::MakeTempDir(
        absl::StrCat(ModelKindName(kind), "_", factors, "_large"));
    opt.snapshot_every = 0;
    auto engine = Engine::Open(opt, [&]() { return m; });
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::vector<float> scores(static_cast<size_t>(m.num_items()));
    std::vector<std::string> short_list, long_list;
    for (int32_t i = 0; i < m.num_items(); i += 150) {
      short_list.push_back(m.items.External(i));
    }
    short_list.push_back(short_list[3]);  // a duplicate
    short_list.push_back("no-such-item");
    for (int32_t i = 0; i < m.num_items(); i += 2) {
      long_list.push_back(m.items.External(i));
    }
    struct Filter {
      std::string genre;
      const std::vector<std::string>* candidates;
    };
    const Filter filters[] = {{"", nullptr},
                              {"G3", nullptr},
                              {"", &short_list},
                              {"", &long_list},
                              {"G9", &long_list}};
    for (int32_t u = 0; u < m.num_users(); u += 3) {
      for (const Filter& filter : filters) {
        RecommendQuery q;
        q.user = m.users.External(u);
        q.k = 20;
        q.exclude = {m.items.External(u), m.items.External(u + 100)};
        q.genre = filter.genre;
        if (filter.candidates != nullptr) q.candidates = *filter.candidates;
        absl::StatusOr<RecommendResult> got = (*engine)->Recommend(q);
        ASSERT_TRUE(got.ok()) << got.status();

        const float offset = m.ranks_by_rating() ? m.mu + m.user_bias[u] : 0.0f;
        panels.Score(m.user_factors.row(u).data(), offset, scores.data());
        const SparseRows& rated = m.user_ratings;
        std::vector<int32_t> exclude(rated.cols.begin() + rated.offsets[u],
                                     rated.cols.begin() + rated.offsets[u + 1]);
        exclude.push_back(u);
        exclude.push_back(u + 100);
        for (int32_t i = 0; i < m.num_items(); ++i) {
          const auto& genres = m.item_info[i].genres;
          const bool genre_ok =
              filter.genre.empty() || std::find(genres.begin(), genres.end(),
                                                filter.genre) != genres.end();
          const bool listed =
              filter.candidates == nullptr ||
              std::find(filter.candidates->begin(), filter.candidates->end(),
                        m.items.External(i)) != filter.candidates->end();
          if (!genre_ok || !listed) exclude.push_back(i);
        }
        std::vector<ScoredItem> want;
        TopKInPlace(absl::MakeSpan(scores), q.k, exclude, &want);
        const std::string what =
            absl::StrCat(ModelKindName(kind), "/", factors, " user ", u,
                         " genre '", filter.genre, "' candidates ",
                         filter.candidates ? filter.candidates->size() : 0);
        ASSERT_EQ(got->items.size(), want.size()) << what;
        for (size_t r = 0; r < want.size(); ++r) {
          EXPECT_EQ(got->items[r].item.id, m.items.External(want[r].item))
              << what << " rank " << r;
          EXPECT_EQ(got->items[r].score, want[r].score)
              << what << " rank " << r;
        }
        EXPECT_EQ(got->unknown_items.size(),
                  filter.candidates == &short_list ? 1u : 0u)
            << what;
      }
    }

    // A user without ratings ranks by rating counts, filtered the same way.
    for (const Filter& filter : filters) {
      RecommendQuery q;
      q.user = "stranger";
      q.k = 20;
      q.genre = filter.genre;
      if (filter.candidates != nullptr) q.candidates = *filter.candidates;
      absl::StatusOr<RecommendResult> got = (*engine)->Recommend(q);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_FALSE(got->personalized);
      std::vector<float> counts(m.item_counts.begin(), m.item_counts.end());
      std::vector<int32_t> exclude;
      for (int32_t i = 0; i < m.num_items(); ++i) {
        const auto& genres = m.item_info[i].genres;
        if ((!filter.genre.empty() &&
             std::find(genres.begin(), genres.end(), filter.genre) ==
                 genres.end()) ||
            (filter.candidates != nullptr &&
             std::find(filter.candidates->begin(), filter.candidates->end(),
                       m.items.External(i)) == filter.candidates->end())) {
          exclude.push_back(i);
        }
      }
      std::vector<ScoredItem> want;
      TopKInPlace(absl::MakeSpan(counts), q.k, exclude, &want);
      ASSERT_EQ(got->items.size(), want.size()) << filter.genre;
      for (size_t r = 0; r < want.size(); ++r) {
        EXPECT_EQ(got->items[r].item.id, m.items.External(want[r].item))
            << "stranger, genre '" << filter.genre << "' rank " << r;
      }
    }

    // A genre no item has is an error that lists the catalogue's genres,
    // for a user with ratings and one without, with or without candidates.
    const std::vector<std::string> users = {m.users.External(0), "stranger"};
    for (const std::string& user : users) {
      for (const bool with_candidates : {false, true}) {
        RecommendQuery q;
        q.user = user;
        q.genre = "g3";
        if (with_candidates) q.candidates = short_list;
        absl::StatusOr<RecommendResult> got = (*engine)->Recommend(q);
        EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
        EXPECT_EQ(got.status().message(),
                  "unknown genre 'g3' (genres are case-sensitive; this "
                  "catalogue has 8: G0, G1, G2, G3, G4, G5, G6, G9)");
      }
    }

    // SimilarItems: the cosine top k over unit-length ranking vectors,
    // skipping the item itself.
    const RowMatrix unit_rows =
        UnitRows(m.item_factors.leftCols(m.rank_cols()));
    const ItemPanels unit(unit_rows, Eigen::VectorXf());
    ASSERT_EQ(unit.quantized(), factors == 48) << ModelKindName(kind);
    for (int32_t i = 0; i < m.num_items(); i += 97) {
      absl::StatusOr<SimilarResult> got =
          (*engine)->SimilarItems(m.items.External(i), 15);
      ASSERT_TRUE(got.ok()) << got.status();
      unit.Score(unit_rows.row(i).data(), 0.0f, scores.data());
      std::vector<ScoredItem> want;
      const int32_t self[] = {i};
      TopKInPlace(absl::MakeSpan(scores), 15, self, &want);
      ASSERT_EQ(got->similar.size(), want.size());
      for (size_t r = 0; r < want.size(); ++r) {
        EXPECT_EQ(got->similar[r].first.id, m.items.External(want[r].item))
            << ModelKindName(kind) << " item " << i << " rank " << r;
        EXPECT_EQ(got->similar[r].second, want[r].score)
            << ModelKindName(kind) << " item " << i << " rank " << r;
      }
    }
  }
}

TEST_F(EngineTest, ReRatingReplacesTheEarlierValue) {
  MustRate("z", "i1", 1.0f);
  MustRate("z", "i1", 5.0f);
  absl::StatusOr<UserResult> user = engine_->GetUser("z", 10);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->rating_count, 1);
  EXPECT_EQ(user->recent[0].value, 5.0f);
}

TEST_F(EngineTest, NewItemGetsAVectorFromItsRatings) {
  for (int u = 0; u < 30; ++u) {
    const RateResult r = MustRate(absl::StrCat("u", u), "brand-new", 5.0f);
    EXPECT_EQ(r.new_item, u == 0);
  }
  const EngineInfo info = engine_->Info();
  EXPECT_EQ(info.items, data_.num_items() + 1);
  absl::StatusOr<SimilarResult> sim = engine_->SimilarItems("brand-new", 5);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ(sim->similar.size(), 5u);
  // Loved by everyone who rated it: it is among the top picks of a user
  // who has not.
  RecommendQuery q;
  q.user = "u100";
  q.k = 20;
  absl::StatusOr<RecommendResult> rec = engine_->Recommend(q);
  ASSERT_TRUE(rec.ok());
  bool found = false;
  for (const auto& it : rec->items) found = found || it.item.id == "brand-new";
  EXPECT_TRUE(found);
}

TEST_F(EngineTest, RatingsSurviveARestartAndASnapshot) {
  for (int i = 0; i < 15; ++i) MustRate("keeper", absl::StrCat("i", i), 4.0f);
  MustRate("u1", "late-item", 3.0f);
  Open();  // replay from the log
  absl::StatusOr<UserResult> user = engine_->GetUser("keeper", 100);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->rating_count, 15);
  EXPECT_EQ(engine_->Info().items, data_.num_items() + 1);

  ASSERT_EQ(engine_->WriteSnapshot(), absl::OkStatus());
  MustRate("keeper", "i50", 2.0f);
  Open();  // snapshot plus the log after it
  user = engine_->GetUser("keeper", 100);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->rating_count, 16);
  EXPECT_EQ(engine_->Info().items, data_.num_items() + 1);
  int snapshots = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    snapshots += e.path().extension() == ".rsm";
  }
  EXPECT_LE(snapshots, 2);
}

// Forty new items (their rows span several of NewItems' blocks), rated in
// turn by several users, with re-ratings: each keeps a vector of its own,
// and a snapshot and restart, which turns them into model items, gives the
// same scores and neighbours.
TEST_F(EngineTest, ManyNewItemsKeepTheirVectorsAcrossARestart) {
  constexpr int kItems = 40;
  for (int round = 0; round < 8; ++round) {
    for (int j = 0; j < kItems; ++j) {
      MustRate(absl::StrCat("u", (j + 3 * round) % 30), absl::StrCat("n", j),
               1.0f + static_cast<float>((j * (round + 1)) % 5));
    }
  }
  MustRate("u3", "n5", 2.0f);  // re-ratings
  MustRate("u5", "n33", 5.0f);
  EXPECT_EQ(engine_->Info().items, data_.num_items() + kItems);

  RecommendQuery q;
  q.user = "u50";
  q.k = kItems;
  for (int j = 0; j < kItems; ++j) q.candidates.push_back(absl::StrCat("n", j));
  auto scores_of = [&]() {
    std::map<std::string, float> out;
    absl::StatusOr<RecommendResult> r = engine_->Recommend(q);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) {
      for (const auto& it : r->items) out[it.item.id] = it.score;
    }
    return out;
  };
  auto neighbours_of = [&](const std::string& item) {
    std::vector<std::string> out;
    absl::StatusOr<SimilarResult> r = engine_->SimilarItems(item, 5);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) {
      for (const auto& s : r->similar) out.push_back(s.first.id);
    }
    return out;
  };
  const std::map<std::string, float> before = scores_of();
  ASSERT_EQ(before.size(), static_cast<size_t>(kItems));
  std::set<float> distinct;
  for (const auto& [id, score] : before) distinct.insert(score);
  EXPECT_GT(distinct.size(), static_cast<size_t>(kItems / 2));
  const std::vector<std::string> near17 = neighbours_of("n17");
  const std::vector<std::string> near38 = neighbours_of("n38");

  ASSERT_EQ(engine_->WriteSnapshot(), absl::OkStatus());
  Open();
  EXPECT_EQ(engine_->Info().items, data_.num_items() + kItems);
  const std::map<std::string, float> after = scores_of();
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [id, score] : before) {
    EXPECT_NEAR(after.at(id), score, 1e-4) << id;
  }
  EXPECT_EQ(neighbours_of("n17"), near17);
  EXPECT_EQ(neighbours_of("n38"), near38);
}

// A new item is folded again from all of its raters at every rating up to
// 64 raters; beyond that, once its ratings have changed by 1/64 since the
// last fold, so a popular new item does not make each Rate O(raters). Seen
// from a user who never rates it: the item's score moves at every rating
// first, then every few ratings, never more than n/64 + 1 apart.
TEST_F(EngineTest, PopularNewItemIsFoldedAgainAsItsRatingsGrow) {
  RecommendQuery q;
  q.user = "u50";
  q.k = 1;
  q.candidates = {"hit"};
  float last = 0;
  int moved_early = 0, moved_late = 0, longest_still = 0, still = 0;
  constexpr int kRaters = 300;
  for (int r = 1; r <= kRaters; ++r) {
    MustRate(absl::StrCat("fan", r), "hit",
             1.0f + static_cast<float>((r * 7) % 5));
    absl::StatusOr<RecommendResult> got = engine_->Recommend(q);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->items.size(), 1u);
    const float score = got->items[0].score;
    if (r > 1) {
      const bool moved = score != last;
      if (r <= 64) {
        moved_early += moved;
      } else {
        moved_late += moved;
        still = moved ? 0 : still + 1;
        longest_still = std::max(longest_still, still);
        ASSERT_LE(still, r / 64) << "rating " << r;
      }
    }
    last = score;
  }
  EXPECT_EQ(moved_early, 63);
  // Ratings 65..300: folds at about one in n/64 + 1 of them.
  EXPECT_GT(moved_late, 40);
  EXPECT_LT(moved_late, 150);
  EXPECT_GE(longest_still, 2);
}

// A new item rated only by brand-new users has no vector to compare (its
// raters have nothing else to go by): SimilarItems gives no list rather
// than items tied at 0.
TEST_F(EngineTest, NewItemWithoutAVectorHasNoSimilarItems) {
  for (int r = 0; r < 5; ++r) MustRate(absl::StrCat("fan", r), "cult", 5.0f);
  absl::StatusOr<SimilarResult> sim = engine_->SimilarItems("cult", 5);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ(sim->item.id, "cult");
  EXPECT_TRUE(sim->similar.empty());
  // Once someone with other ratings rates it, it has neighbours.
  MustRate("u7", "cult", 5.0f);
  sim = engine_->SimilarItems("cult", 5);
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ(sim->similar.size(), 5u);
}

// DeleteUser of a user who rated through the service and of a user the
// model was trained on: both are gone from every reader, from the counts,
// from the new items they rated and from every file of the data directory,
// and stay gone across a restart. Everyone else is served as before.
TEST_F(EngineTest, DeletedUserIsGoneFromServingAndFromDisk) {
  const std::string kGone = "erin-7f3a";  // in no other id
  for (int i = 0; i < 12; ++i) {
    MustRate(kGone, absl::StrCat("i", i * 3), 1.0f + static_cast<float>(i % 5));
  }
  MustRate(kGone, "only-erin", 5.0f);   // a new item nobody else rated
  MustRate(kGone, "shared-new", 2.0f);  // a new item others rated too
  for (int u = 0; u < 6; ++u) {
    MustRate(absl::StrCat("u", u + 10), "shared-new", 5.0f);
  }
  MustRate("u5", "i7", 5.0f);  // a trained user with a rating since
  ASSERT_EQ(engine_->WriteSnapshot(), absl::OkStatus());  // one older file
  MustRate(kGone, "i100", 4.0f);                          // and the log
  EXPECT_FALSE(testing::FilesHolding(dir_, kGone).empty());

  // (The new items' vectors change with the erasure.)
  RecommendQuery other;
  other.user = "u7";
  other.k = 15;
  other.exclude = {"only-erin", "shared-new"};
  absl::StatusOr<RecommendResult> other_before = engine_->Recommend(other);
  ASSERT_TRUE(other_before.ok());
  const EngineInfo before = engine_->Info();
  const int64_t u5_count = engine_->GetUser("u5", 1)->rating_count;
  absl::StatusOr<SimilarResult> sim = engine_->SimilarItems("only-erin", 3);
  ASSERT_TRUE(sim.ok());
  EXPECT_EQ(sim->similar.size(), 3u);

  absl::StatusOr<DeleteUserResult> gone = engine_->DeleteUser(kGone);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(gone->ratings_deleted, 15);
  EXPECT_EQ(gone->sequence, engine_->Info().log_sequence);
  // (The snapshot written before the erasure held the user: it went too.)
  EXPECT_THAT(testing::FilesHolding(dir_, kGone), ::testing::IsEmpty());
  absl::StatusOr<DeleteUserResult> trained = engine_->DeleteUser("u5");
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->ratings_deleted, u5_count);
  // Their kept fold-in equations went with them.
  EXPECT_EQ(engine_->Info().fold_in_cache_users,
            before.fold_in_cache_users - 2);

  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    for (const std::string& user : {kGone, std::string("u5")}) {
      EXPECT_EQ(engine_->GetUser(user, 10).status().code(),
                absl::StatusCode::kNotFound);
      EXPECT_EQ(engine_->DeleteUser(user).status().code(),
                absl::StatusCode::kNotFound);
      RecommendQuery q;
      q.user = user;
      absl::StatusOr<RecommendResult> rec = engine_->Recommend(q);
      ASSERT_TRUE(rec.ok());
      EXPECT_FALSE(rec->personalized);
    }
    const EngineInfo info = engine_->Info();
    EXPECT_EQ(info.users, before.users - 2);
    EXPECT_EQ(info.ratings, before.ratings - 15 - u5_count);
    EXPECT_EQ(info.items, before.items);  // the catalogue stays
    // Rated by the erased user alone: no vector left to compare.
    absl::StatusOr<SimilarResult> sim = engine_->SimilarItems("only-erin", 3);
    ASSERT_TRUE(sim.ok());
    EXPECT_TRUE(sim->similar.empty());
    absl::StatusOr<RecommendResult> rec = engine_->Recommend(other);
    ASSERT_TRUE(rec.ok());
    ASSERT_EQ(rec->items.size(), other_before->items.size());
    for (size_t j = 0; j < rec->items.size(); ++j) {
      EXPECT_EQ(rec->items[j].item.id, other_before->items[j].item.id);
    }
    EXPECT_THAT(testing::FilesHolding(dir_, kGone), ::testing::IsEmpty());
  };
  check("after DeleteUser");
  Open();
  check("after a restart");
  // The newest snapshot has no trace of the trained user either.
  absl::StatusOr<Model> snap = LoadModel([&] {
    std::string newest;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string p = e.path().string();
      if (e.path().extension() == ".rsm" && p > newest) newest = p;
    }
    return newest;
  }());
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->users.Find("u5"), -1);
  EXPECT_EQ(snap->users.Find(kGone), -1);
  EXPECT_EQ(snap->num_users(), before.users - 2);

  // Coming back is starting again.
  EXPECT_TRUE(MustRate(kGone, "i1", 3.0f).new_user);
  EXPECT_EQ(engine_->GetUser(kGone, 10)->rating_count, 1);
  EXPECT_TRUE(MustRate("u5", "i1", 3.0f).new_user);
  EXPECT_EQ(engine_->GetUser("u5", 10)->rating_count, 1);
  Open();
  EXPECT_EQ(engine_->GetUser("u5", 10)->rating_count, 1);
  EXPECT_EQ(engine_->Info().users, before.users);
}

// DeleteUsers erases many users with one log append and one snapshot:
// every known one is gone from serving and from disk, unknown, repeated
// and bad ids are answered as the header says, and the log holds the
// erasures in list order.
TEST_F(EngineTest, DeleteUsersErasesManyWithOneSnapshot) {
  const std::vector<std::string> gone = {"kim-51d0", "lee-8a2c", "u3"};
  for (const std::string& user : gone) {
    for (int i = 0; i < 4; ++i) MustRate(user, absl::StrCat("i", i + 20), 4);
  }
  MustRate("lee-8a2c", "new-lee", 3.0f);
  const int64_t ratings_before = engine_->Info().ratings;
  const int64_t u3_ratings = engine_->GetUser("u3", 1)->rating_count;
  const uint64_t seq = engine_->Info().log_sequence;
  absl::StatusOr<std::vector<DeleteUserResult>> r = engine_->DeleteUsers(
      {"kim-51d0", "nobody-ever", "lee-8a2c", "kim-51d0", "u3"});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ((*r)[0].sequence, seq + 1);
  EXPECT_EQ((*r)[0].ratings_deleted, 4);
  EXPECT_EQ((*r)[1].sequence, 0u);  // unknown
  EXPECT_EQ((*r)[2].sequence, seq + 2);
  EXPECT_EQ((*r)[2].ratings_deleted, 5);
  EXPECT_EQ((*r)[3].sequence, 0u);  // named before
  EXPECT_EQ((*r)[4].sequence, seq + 3);
  EXPECT_EQ((*r)[4].ratings_deleted, u3_ratings);
  EXPECT_EQ(engine_->Info().ratings, ratings_before - 9 - u3_ratings);
  for (const std::string& user : gone) {
    EXPECT_EQ(engine_->GetUser(user, 1).status().code(),
              absl::StatusCode::kNotFound)
        << user;
  }
  EXPECT_THAT(testing::FilesHolding(dir_, "kim-51d0"), ::testing::IsEmpty());
  EXPECT_THAT(testing::FilesHolding(dir_, "lee-8a2c"), ::testing::IsEmpty());
  // Again: nothing left to erase, and nothing logged.
  r = engine_->DeleteUsers({"kim-51d0", "u3"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].sequence, 0u);
  EXPECT_EQ((*r)[1].sequence, 0u);
  EXPECT_EQ(engine_->Info().log_sequence, seq + 3);
  // Bad ids refuse the whole call.
  r = engine_->DeleteUsers({"u4", ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("user_ids[1]: user id is empty"));
  EXPECT_EQ(
      engine_->DeleteUsers(std::vector<std::string>(kMaxListItems + 1, "u4"))
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine_->GetUser("u4", 1).ok());
  Open();
  for (const std::string& user : gone) {
    EXPECT_EQ(engine_->GetUser(user, 1).status().code(),
              absl::StatusCode::kNotFound)
        << user;
  }
}

// An erasure that reached the log but not its snapshot (a crash between
// the two) is replayed at start, and the older files go then.
TEST_F(EngineTest, ErasureInTheLogIsCompletedAtStart) {
  const std::string kGone = "zed-41c9";
  for (int i = 0; i < 5; ++i) MustRate(kGone, absl::StrCat("i", i), 4.0f);
  engine_.reset();
  {
    absl::StatusOr<std::unique_ptr<RatingLog>> log =
        RatingLog::Open(dir_, RatingLogOptions(), 0, nullptr);
    ASSERT_TRUE(log.ok()) << log.status();
    std::vector<LogRecord> erase(1);
    erase[0].user = kGone;
    erase[0].erase_user = true;
    ASSERT_TRUE((*log)->Append(&erase).ok());
  }
  EXPECT_FALSE(testing::FilesHolding(dir_, kGone).empty());
  Open();
  EXPECT_EQ(engine_->GetUser(kGone, 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(testing::FilesHolding(dir_, kGone), ::testing::IsEmpty());
}

// A user erased while a model trains on a copy that still holds them is
// erased from the new model too, and from its snapshot.
TEST_F(EngineTest, ErasureDuringTrainingReachesTheNewModel) {
  const std::string kGone = "ann-93be";
  for (int i = 0; i < 30; ++i) MustRate(kGone, absl::StrCat("i", i), 4.0f);
  TrainSpec spec;
  spec.model.kind = engine_->Info().kind;  // exactly as told
  spec.model.select = false;
  spec.model.params.epochs = 800;  // long enough to still run after the erasure
  absl::StatusOr<std::string> job = engine_->StartTraining(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  // Once an epoch has ended, the training copy (which holds the user) is
  // fixed: the erasure reaches the new model only through the journal.
  bool done = false;
  absl::StatusOr<std::vector<TrainingUpdate>> first =
      engine_->WatchTraining(*job, 0, absl::Now() + absl::Seconds(60), &done);
  ASSERT_TRUE(first.ok() && !first->empty());
  ASSERT_FALSE(done);
  ASSERT_TRUE(engine_->DeleteUser(kGone).ok());
  EXPECT_FALSE(engine_->Info().training_job.empty());
  engine_->WaitForTraining();
  EXPECT_EQ(engine_->Info().version, 2u);
  EXPECT_EQ(engine_->GetUser(kGone, 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(testing::FilesHolding(dir_, kGone), ::testing::IsEmpty());
  Open();
  EXPECT_EQ(engine_->Info().version, 2u);
  EXPECT_EQ(engine_->GetUser(kGone, 10).status().code(),
            absl::StatusCode::kNotFound);
}

// A snapshot (which takes the engine's swap lock exclusive) gets its turn
// while Rates (which hold it shared) never pause. With a reader-first lock
// it waited as long as the writers went on (here, with four writers of one
// user, which always overlap: one applies while the others, in the lock
// already, wait for the user's turn): no snapshot in 30 s, twice in two
// runs; with a writer-first lock (now absl::Mutex) it took 0.16-0.26 s.
TEST_F(EngineTest, SnapshotIsNotStarvedBySteadyRatings) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop; ++i) {
        engine_
            ->Rate({"steady", absl::StrCat("i", (i + 25 * w) % 100), 3.0f, 0})
            .IgnoreError();
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::atomic<bool> written{false};
  std::thread snapshot([&] {
    EXPECT_EQ(engine_->WriteSnapshot(), absl::OkStatus());
    written = true;
  });
  // A liveness check, not a timing one: the bound is generous.
  for (int waited = 0; waited < 300 && !written; ++waited) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(written) << "no snapshot after 30 s of steady ratings";
  stop = true;  // (lets a starved snapshot finish, so the test ends)
  for (std::thread& t : writers) t.join();
  snapshot.join();
}

// Two writers of one user may apply their records out of log order (each
// appends, then waits for the user's lock). A rating logged before an
// erasure but applied after it must not survive it, or the engine would
// serve a rating that a restart, replaying the log in order, drops.
TEST_F(EngineTest, RatingLoggedBeforeAnErasureIsVoidWhenAppliedAfterIt) {
  auto rating = [](uint64_t seq, const std::string& item) {
    LogRecord r;
    r.seq = seq;
    r.user = "late";
    r.item = item;
    r.value = 4;
    return r;
  };
  LogRecord erase;
  erase.seq = 1001;
  erase.user = "late";
  erase.erase_user = true;
  EngineTestPeer::Apply(*engine_, rating(1000, "i1"));
  EngineTestPeer::Apply(*engine_, erase);
  EngineTestPeer::Apply(*engine_, rating(999, "i2"));  // logged earlier
  EXPECT_EQ(engine_->GetUser("late", 10).status().code(),
            absl::StatusCode::kNotFound);
  EngineTestPeer::Apply(*engine_, rating(1002, "i3"));  // logged later
  absl::StatusOr<UserResult> user = engine_->GetUser("late", 10);
  ASSERT_TRUE(user.ok()) << user.status();
  ASSERT_EQ(user->rating_count, 1);
  EXPECT_EQ(user->recent[0].item.id, "i3");
  EngineTestPeer::Apply(*engine_, rating(998, "i4"));  // still void
  EXPECT_EQ(engine_->GetUser("late", 10)->rating_count, 1);
}

// Ratings and erasures of one user racing each other: what the engine
// serves afterwards is what a restart rebuilds from the log, whatever order
// the two were applied in.
TEST_F(EngineTest, ErasuresRacingRatingsServeWhatTheLogSays) {
  const std::string kUser = "flux";
  auto items_of = [&]() -> std::map<std::string, float> {
    std::map<std::string, float> out;
    absl::StatusOr<UserResult> user = engine_->GetUser(kUser, 1000);
    if (!user.ok()) return out;
    for (const UserRatingView& r : user->recent) out[r.item.id] = r.value;
    return out;
  };
  for (int round = 0; round < 4; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < 2; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; !stop; ++i) {
          engine_
              ->Rate({kUser, absl::StrCat("i", (i * 7 + w * 3) % 40),
                      1.0f + static_cast<float>((i + w) % 5), 0})
              .IgnoreError();
        }
      });
    }
    int erased = 0;
    for (int d = 0; d < 40; ++d) {
      // (Each erasure once the writers have brought the user back.)
      while (!engine_->GetUser(kUser, 1).ok()) std::this_thread::yield();
      erased += engine_->DeleteUser(kUser).ok();
    }
    stop = true;
    for (std::thread& t : writers) t.join();
    EXPECT_EQ(erased, 40);
    const std::map<std::string, float> served = items_of();
    Open();
    EXPECT_EQ(items_of(), served) << "round " << round;
  }
}

TEST_F(EngineTest, BadInputGetsTheRightCodes) {
  auto code = [](const absl::Status& s) { return s.code(); };
  RecommendQuery q;
  q.user = "u1";
  q.k = 0;
  EXPECT_EQ(code(engine_->Recommend(q).status()),
            absl::StatusCode::kInvalidArgument);
  q.k = kMaxK + 1;
  EXPECT_EQ(code(engine_->Recommend(q).status()),
            absl::StatusCode::kInvalidArgument);
  q.k = 10;
  q.user = "";
  EXPECT_EQ(code(engine_->Recommend(q).status()),
            absl::StatusCode::kInvalidArgument);
  q.user = std::string(kMaxIdBytes + 1, 'x');
  EXPECT_EQ(code(engine_->Recommend(q).status()),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(engine_->Rate({"u1", "i1", std::nanf(""), 0}).status()),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(engine_->Rate({"u1", "i1", INFINITY, 0}).status()),
            absl::StatusCode::kInvalidArgument);
  const absl::Status out = engine_->Rate({"u1", "i1", 5.5f, 0}).status();
  EXPECT_EQ(code(out), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.message()), HasSubstr("outside the scale"));
  EXPECT_EQ(code(engine_->Rate({"", "i1", 3, 0}).status()),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(engine_->SimilarItems("nope", 5).status()),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(code(engine_->GetUser("nobody", 5).status()),
            absl::StatusCode::kNotFound);
  // A batch: the bad ones fail, the good ones are accepted.
  std::vector<absl::StatusOr<RateResult>> batch =
      engine_->RateBatch({{"b", "i1", 3, 0},
                          {"b", "i2", 9, 0},
                          {"b", "", 3, 0},
                          {"b", "i3", 4, 0}});
  ASSERT_EQ(batch.size(), 4u);
  EXPECT_TRUE(batch[0].ok());
  EXPECT_FALSE(batch[1].ok());
  EXPECT_FALSE(batch[2].ok());
  EXPECT_TRUE(batch[3].ok());
  EXPECT_LT(batch[0]->sequence, batch[3]->sequence);
}

// Automatic retraining (keep_params) trains as the serving model was made:
// a model trained as told keeps its kind and settings, a selected one is
// selected again.
TEST_F(EngineTest, RetrainingRepeatsHowTheModelWasMade) {
  TrainSpec again;
  again.keep_params = true;
  absl::StatusOr<std::string> job = engine_->StartTraining(again);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(FinalUpdate(*job).state, TrainingUpdate::kSucceeded);
  EngineInfo info = engine_->Info();
  EXPECT_EQ(info.kind, ModelKind::kAls);  // SmallAlsModel, as told
  EXPECT_TRUE(info.selection.empty());

  TrainSpec select;  // nothing pinned: the engine's default, auto
  select.model.selection.budget = 150;
  select.model.params.epochs = 30;  // a quick Bayesian rating part
  select.model.params.burn_in = 10;
  select.model.params.samples = 4;
  job = engine_->StartTraining(select);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(FinalUpdate(*job).state, TrainingUpdate::kSucceeded);
  info = engine_->Info();
  EXPECT_FALSE(info.selection.empty());
  const uint64_t version = info.version;

  job = engine_->StartTraining(again);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(FinalUpdate(*job).state, TrainingUpdate::kSucceeded);
  info = engine_->Info();
  EXPECT_EQ(info.version, version + 1);
  EXPECT_FALSE(info.selection.empty());
}

TEST_F(EngineTest, TrainingWhileServingLosesNothing) {
  TrainSpec spec;
  spec.model.kind = engine_->Info().kind;  // exactly as told
  spec.model.select = false;
  spec.model.params.epochs = 30;
  absl::StatusOr<std::string> job = engine_->StartTraining(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(engine_->StartTraining(spec).status().code(),
            absl::StatusCode::kAlreadyExists);
  // Traffic during training: every call must succeed.
  std::atomic<int> failures{0};
  std::atomic<int> rated{0};
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      if (!engine_->Rate({"during", absl::StrCat("i", i % 120), 4.0f, 0})
               .ok()) {
        ++failures;
      }
      ++rated;
    }
  });
  std::thread reader([&] {
    RecommendQuery q;
    q.user = "during";
    for (int i = 0; i < 200; ++i) {
      if (!engine_->Recommend(q).ok()) ++failures;
    }
  });
  writer.join();
  reader.join();
  const TrainingUpdate last = FinalUpdate(*job);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(last.state, TrainingUpdate::kSucceeded) << last.error;
  EXPECT_EQ(last.model_version, 2u);
  EXPECT_EQ(engine_->Info().version, 2u);
  absl::StatusOr<UserResult> user = engine_->GetUser("during", 1000);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->rating_count, 120);  // 200 ratings of 120 distinct items
  // And the new model is what a restart serves.
  Open();
  EXPECT_EQ(engine_->Info().version, 2u);
  EXPECT_EQ(engine_->GetUser("during", 1000)->rating_count, 120);
}

// A visitor's session ratings give the recommendations of a stored user
// who rated the same (the same fold-in), for an explicit kind and for
// hybrid, and store nothing.
TEST_F(EngineTest, SessionRecommendsAsForAUserWhoRatedTheSame) {
  Hyperparameters hp = DefaultHyperparameters(ModelKind::kHybrid);
  hp.epochs = 60;
  hp.burn_in = 20;
  hp.samples = 8;
  EngineOptions opt;
  opt.data_dir = testing::MakeTempDir("hybrid");
  opt.snapshot_every = 0;
  absl::StatusOr<std::unique_ptr<Engine>> hybrid = Engine::Open(opt, [&] {
    TrainOptions train;
    train.threads = 2;
    return TrainModel(data_, ModelKind::kHybrid, hp, train);
  });
  ASSERT_TRUE(hybrid.ok()) << hybrid.status();
  for (Engine* e : {engine_.get(), hybrid->get()}) {
    SCOPED_TRACE(ModelKindName(e->Info().kind));
    const EngineInfo before = e->Info();
    RecommendQuery visit;
    visit.k = 15;
    // i3 twice: the later rating counts.
    visit.session = {
        {"i3", 5}, {"i17", 4}, {"no-such", 3}, {"i40", 2}, {"i3", 4}};
    const absl::StatusOr<RecommendResult> got = e->Recommend(visit);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->personalized);
    EXPECT_THAT(got->unknown_items, ::testing::ElementsAre("no-such"));
    EXPECT_EQ(e->Info().users, before.users);
    EXPECT_EQ(e->Info().log_sequence, before.log_sequence);

    for (const auto& [item, value] : std::vector<std::pair<std::string, float>>{
             {"i3", 4}, {"i17", 4}, {"i40", 2}}) {
      ASSERT_TRUE(e->Rate({"twin", item, value, 0}).ok());
    }
    RecommendQuery twin;
    twin.user = "twin";
    twin.k = 15;
    const absl::StatusOr<RecommendResult> want = e->Recommend(twin);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_EQ(got->items.size(), want->items.size());
    for (size_t r = 0; r < want->items.size(); ++r) {
      EXPECT_EQ(got->items[r].item.id, want->items[r].item.id) << r;
      EXPECT_NEAR(got->items[r].score, want->items[r].score,
                  1e-4f * (1 + std::abs(want->items[r].score)))
          << r;
      EXPECT_NEAR(got->items[r].predicted_rating,
                  want->items[r].predicted_rating, 1e-3f)
          << r;
      for (const char* rated : {"i3", "i17", "i40"}) {
        EXPECT_NE(got->items[r].item.id, rated);
      }
    }
    visit.include_rated = true;
    visit.candidates = {"i3", "i17"};
    const absl::StatusOr<RecommendResult> rated = e->Recommend(visit);
    ASSERT_TRUE(rated.ok()) << rated.status();
    EXPECT_EQ(rated->items.size(), 2u);
  }

  RecommendQuery bad;
  bad.session = {{"i3", 5}};
  bad.user = "u1";
  EXPECT_THAT(std::string(engine_->Recommend(bad).status().message()),
              HasSubstr("a user id or session items, not both"));
  bad.user.clear();
  bad.session = {{"i3", 5}, {"i4", 9}};
  absl::Status status = engine_->Recommend(bad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("session_items[1]: rating 9 is outside the scale"));
  bad.session = {{"", 5}};
  EXPECT_THAT(std::string(engine_->Recommend(bad).status().message()),
              HasSubstr("session_items[0]: item id is empty"));
  bad.session = {{"i3", std::nanf("")}};
  EXPECT_EQ(engine_->Recommend(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad.session.assign(kMaxListItems + 1, {"i3", 4});
  EXPECT_EQ(engine_->Recommend(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing known: the popular items, as for a user without ratings.
  bad.session = {{"unknown-1", 4}};
  const absl::StatusOr<RecommendResult> popular = engine_->Recommend(bad);
  ASSERT_TRUE(popular.ok()) << popular.status();
  EXPECT_FALSE(popular->personalized);
  RecommendQuery stranger;
  stranger.user = "stranger";
  ASSERT_EQ(popular->items.size(), engine_->Recommend(stranger)->items.size());
  for (size_t r = 0; r < popular->items.size(); ++r) {
    EXPECT_EQ(popular->items[r].item.id,
              engine_->Recommend(stranger)->items[r].item.id);
  }
}

// A training job whose fit diverges fails with the reason, and the model
// it would have replaced keeps serving.
TEST_F(EngineTest, DivergedTrainingFailsAndTheModelStays) {
  const EngineInfo before = engine_->Info();
  RecommendQuery q;
  q.user = "u1";
  const absl::StatusOr<RecommendResult> served = engine_->Recommend(q);
  ASSERT_TRUE(served.ok()) << served.status();
  TrainSpec spec;
  spec.model.select = false;
  spec.model.kind = ModelKind::kSgd;
  spec.model.params.learning_rate = 5.0f;
  absl::StatusOr<std::string> job = engine_->StartTraining(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const TrainingUpdate last = FinalUpdate(*job);
  EXPECT_EQ(last.state, TrainingUpdate::kFailed);
  EXPECT_THAT(last.error, HasSubstr("training diverged"));
  EXPECT_EQ(engine_->Info().version, before.version);
  EXPECT_EQ(engine_->Info().kind, before.kind);
  const absl::StatusOr<RecommendResult> after = engine_->Recommend(q);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->items.size(), served->items.size());
  for (size_t k = 0; k < after->items.size(); ++k) {
    EXPECT_EQ(after->items[k].item.id, served->items[k].item.id);
    EXPECT_TRUE(std::isfinite(after->items[k].predicted_rating));
  }
}

// CancelTraining stops a running job between epochs: it ends kCancelled,
// the serving model stays, and the next job can start at once.
TEST_F(EngineTest, CancelledTrainingEndsAndTheModelStays) {
  const uint64_t version = engine_->Info().version;
  TrainSpec spec;
  spec.model.select = false;
  spec.model.kind = ModelKind::kAls;
  spec.model.params.epochs = 100000;  // hours: only a cancel ends it
  absl::StatusOr<std::string> job = engine_->StartTraining(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(engine_->CancelTraining("train-nope").code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(engine_->CancelTraining(*job).ok());
  const TrainingUpdate last = FinalUpdate(*job);
  EXPECT_EQ(last.state, TrainingUpdate::kCancelled);
  EXPECT_LT(last.epoch, 100000);
  EXPECT_EQ(engine_->Info().version, version);
  const absl::Status again = engine_->CancelTraining(*job);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.message()), HasSubstr("has already ended"));
  // Nothing is left running.
  spec.model.params.epochs = 2;
  job = engine_->StartTraining(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(FinalUpdate(*job).state, TrainingUpdate::kSucceeded);
  EXPECT_EQ(engine_->Info().version, version + 1);
}

// A big batch is folded in per user and across users in parallel; the
// result must be what applying the ratings one at a time gives.
TEST_F(EngineTest, LargeBatchEqualsOneAtATime) {
  std::vector<RatingInput> batch;
  std::mt19937 rng(9);
  for (int i = 0; i < 400; ++i) {
    batch.push_back({absl::StrCat(i % 3 == 0 ? "fresh" : "u", i % 25),
                     absl::StrCat("i", rng() % 120), 1.0f + rng() % 5, 0});
  }
  const std::vector<absl::StatusOr<RateResult>> got = engine_->RateBatch(batch);
  ASSERT_EQ(got.size(), batch.size());
  std::set<std::string> seen;
  for (size_t j = 0; j < got.size(); ++j) {
    ASSERT_TRUE(got[j].ok()) << got[j].status();
    if (j > 0) {
      EXPECT_EQ(got[j]->sequence, got[j - 1]->sequence + 1);
    }
    const bool first = seen.insert(batch[j].user).second;
    EXPECT_EQ(got[j]->new_user, first && batch[j].user.rfind("fresh", 0) == 0)
        << j;
  }
  // The same ratings one at a time into a second engine.
  EngineOptions opt;
  opt.data_dir = testing::MakeTempDir("one_at_a_time");
  opt.snapshot_every = 0;
  auto other =
      Engine::Open(opt, [this] { return testing::SmallAlsModel(data_); });
  ASSERT_TRUE(other.ok());
  for (const RatingInput& r : batch) ASSERT_TRUE((*other)->Rate(r).ok());
  for (const std::string& user : seen) {
    RecommendQuery q;
    q.user = user;
    q.k = 20;
    absl::StatusOr<RecommendResult> a = engine_->Recommend(q);
    absl::StatusOr<RecommendResult> b = (*other)->Recommend(q);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->items.size(), b->items.size());
    for (size_t k = 0; k < a->items.size(); ++k) {
      EXPECT_NEAR(a->items[k].score, b->items[k].score, 1e-4) << user;
    }
    EXPECT_EQ(engine_->GetUser(user, 1000)->rating_count,
              (*other)->GetUser(user, 1000)->rating_count);
  }
}

// Rate updates the user's kept fold-in equations rather than solving from
// all of their ratings: the rows must equal those solved from scratch (no
// cache), also when the cache is so small that users are evicted and
// rebuilt, with re-ratings and ratings of items new to the catalogue.
TEST(EngineFoldInCache, KeptEquationsGiveTheRowsOfAFullSolve) {
  const RatingData data = testing::PlantedData(80, 60, 3, 0.3, 0.3, 4, true);
  for (ModelKind kind : {ModelKind::kAls, ModelKind::kHybrid}) {
    Hyperparameters p = DefaultHyperparameters(kind);
    p.factors = 4;
    p.epochs = kind == ModelKind::kHybrid ? 24 : 8;
    p.burn_in = 8;
    p.samples = 4;
    p.rank_factors = 6;
    p.rank_epochs = 4;
    absl::StatusOr<Model> model = TrainModel(data, kind, p, {});
    ASSERT_TRUE(model.ok()) << model.status();
    std::vector<std::unique_ptr<Engine>> engines;
    // No cache, a few users' worth (evictions), plenty.
    for (int64_t budget : {int64_t{0}, int64_t{64} << 10, int64_t{64} << 20}) {
      EngineOptions opt;
      opt.data_dir = testing::MakeTempDir(
          absl::StrCat("cache_", ModelKindName(kind), "_", budget));
      opt.snapshot_every = 0;
      opt.fold_in_cache_bytes = budget;
      opt.log.sync = SyncPolicy::kNever;  // durability is not under test
      auto e = Engine::Open(opt, [&]() { return *model; });
      ASSERT_TRUE(e.ok()) << e.status();
      engines.push_back(*std::move(e));
    }
    std::mt19937 rng(4);
    std::vector<RatingInput> ratings;
    for (int j = 0; j < 600; ++j) {
      // Trained users and new ones; a few items re-rated often; new items.
      const std::string user =
          absl::StrCat(j % 7 == 0 ? "new" : "u", rng() % 40);
      const std::string item = j % 11 == 0 ? absl::StrCat("fresh", rng() % 5)
                                           : absl::StrCat("i", rng() % 30);
      ratings.push_back({user, item, 1.0f + rng() % 5, 0});
    }
    for (const RatingInput& r : ratings) {
      for (auto& e : engines) ASSERT_TRUE(e->Rate(r).ok());
    }
    std::set<std::string> users;
    for (const RatingInput& r : ratings) users.insert(r.user);
    for (const std::string& user : users) {
      RecommendQuery q;
      q.user = user;
      q.k = 30;
      q.include_rated = true;
      absl::StatusOr<RecommendResult> want = engines[0]->Recommend(q);
      ASSERT_TRUE(want.ok());
      for (size_t k = 1; k < engines.size(); ++k) {
        absl::StatusOr<RecommendResult> got = engines[k]->Recommend(q);
        ASSERT_TRUE(got.ok());
        ASSERT_EQ(got->items.size(), want->items.size());
        for (size_t j = 0; j < got->items.size(); ++j) {
          EXPECT_NEAR(got->items[j].score, want->items[j].score, 1e-4)
              << ModelKindName(kind) << " " << user << " engine " << k;
          EXPECT_NEAR(got->items[j].predicted_rating,
                      want->items[j].predicted_rating, 1e-4);
        }
      }
    }
  }
}

// A user's kept equations are rebuilt from the ratings after 65536 updates,
// so rounding error cannot pile up; the rows stay those of a full solve.
TEST(EngineFoldInCache, ManyUpdatesRebuildTheEquations) {
  const RatingData data = testing::PlantedData(40, 30, 3, 0.3, 0.3, 6, true);
  absl::StatusOr<Model> model =
      TrainModel(data, ModelKind::kAls,
                 [] {
                   Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
                   p.factors = 4;
                   p.epochs = 6;
                   return p;
                 }(),
                 {});
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<std::unique_ptr<Engine>> engines;
  for (int64_t budget : {int64_t{0}, int64_t{1} << 20}) {
    EngineOptions opt;
    opt.data_dir = testing::MakeTempDir(absl::StrCat("rebuild_", budget));
    opt.snapshot_every = 0;
    opt.fold_in_cache_bytes = budget;
    opt.log.sync = SyncPolicy::kNever;
    auto e = Engine::Open(opt, [&]() { return *model; });
    ASSERT_TRUE(e.ok()) << e.status();
    engines.push_back(*std::move(e));
  }
  // 17 batches of 4096 ratings of 12 items by one user: each batch is one
  // fold-in, and a re-rating is two updates (out with the old value, in
  // with the new), so the ~139k updates cross the rebuild point once.
  std::mt19937 rng(8);
  for (int b = 0; b < 17; ++b) {
    std::vector<RatingInput> batch;
    for (int j = 0; j < 4096; ++j) {
      batch.push_back(
          {"u1", absl::StrCat("i", rng() % 12), 1.0f + rng() % 5, 0});
    }
    for (auto& e : engines) {
      for (const auto& r : e->RateBatch(batch)) ASSERT_TRUE(r.ok());
    }
  }
  const EngineInfo info = engines[1]->Info();
  EXPECT_EQ(info.fold_in_cache_hits, 15u);
  EXPECT_EQ(info.fold_in_cache_misses, 2u);  // the first build, one rebuild
  EXPECT_EQ(info.fold_in_cache_users, 1);
  RecommendQuery q;
  q.user = "u1";
  q.k = 30;
  q.include_rated = true;
  absl::StatusOr<RecommendResult> want = engines[0]->Recommend(q);
  absl::StatusOr<RecommendResult> got = engines[1]->Recommend(q);
  ASSERT_TRUE(want.ok() && got.ok());
  ASSERT_EQ(got->items.size(), want->items.size());
  for (size_t j = 0; j < got->items.size(); ++j) {
    EXPECT_NEAR(got->items[j].score, want->items[j].score, 1e-4);
  }
}

TEST_F(EngineTest, ConcurrentRatesAndReads) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 150; ++i) {
        const std::string user = absl::StrCat("c", rng() % 20);
        if (t % 2 == 0) {
          if (!engine_->Rate({user, absl::StrCat("i", rng() % 130), 3.0f, 0})
                   .ok()) {
            ++failures;
          }
        } else {
          RecommendQuery q;
          q.user = user;
          if (!engine_->Recommend(q).ok()) ++failures;
          engine_->Info();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Protocol F of PROTOCOLS.md through the server's own path: the cold users'
// u1.base ratings go in one Rate at a time, in timestamp order, into an
// engine serving a model trained without them. The parameter is a kind with
// its defaults, or none: what model selection picks on u1.base (then both
// models take the chosen kind and settings).
class ProtocolF : public ::testing::TestWithParam<std::optional<ModelKind>> {
 protected:
  void SetUp() override {
    const std::string ml = testing::SharedDataset("ml-100k");
    if (ml.empty()) {
      GTEST_SKIP() << "MovieLens copy not found: ../shared/data/ml-100k (set "
                      "RECSYS_TEST_DATA_DIR)";
    }
    LoadOptions load;
    absl::StatusOr<RatingData> base = LoadRatings(ml + "/u1.base", load);
    ASSERT_TRUE(base.ok());
    base_ = *std::move(base);
    load.load_metadata = false;
    load.scale = base_.scale;
    absl::StatusOr<RatingData> test = LoadRatings(ml + "/u1.test", load);
    ASSERT_TRUE(test.ok());
    test_ = *std::move(test);

    TrainOptions opt;
    opt.threads = 2;
    ModelKind kind = ModelKind::kHybrid;
    Hyperparameters params;
    if (GetParam()) {
      kind = *GetParam();
      params = DefaultHyperparameters(kind);
    } else {
      SelectionOptions select;
      select.threads = 2;
      absl::StatusOr<Selection> chosen = SelectModel(base_, select);
      ASSERT_TRUE(chosen.ok()) << chosen.status();
      kind = chosen->kind;
      params = chosen->params;
      std::cout << "protocol F: selection on u1.base chose "
                << chosen->report.summary << "\n";
    }
    kind_ = kind;
    absl::StatusOr<Model> full = TrainModel(base_, kind, params, opt);
    ASSERT_TRUE(full.ok());
    full_ = *std::move(full);

    RatingData warm = base_;
    warm.ratings.clear();
    std::vector<Rating> cold_ratings;
    int cold_in_base = 0;
    for (int32_t u = 0; u < base_.num_users(); ++u) {
      cold_in_base += Cold(base_.users.External(u));
    }
    EXPECT_EQ(cold_in_base, 94);
    for (const Rating& r : base_.ratings) {
      (Cold(base_.users.External(r.user)) ? cold_ratings : warm.ratings)
          .push_back(r);
    }
    std::stable_sort(cold_ratings.begin(), cold_ratings.end(),
                     [](const Rating& a, const Rating& b) {
                       return a.timestamp < b.timestamp;
                     });
    EngineOptions eopt;
    eopt.data_dir = testing::MakeTempDir("protocol_f");
    eopt.snapshot_every = 0;
    eopt.log.sync = SyncPolicy::kNever;  // quality, not durability, is tested
    auto engine = Engine::Open(eopt, [&]() -> absl::StatusOr<Model> {
      return TrainModel(warm, kind, params, opt);
    });
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    for (const Rating& r : cold_ratings) {
      ASSERT_TRUE(
          engine_
              ->Rate({base_.users.External(r.user),
                      base_.items.External(r.item), r.value, r.timestamp})
              .ok());
    }
    rows_ = BuildRows(test_, false);
    for (int32_t tu = 0; tu < test_.num_users(); ++tu) {
      if (Cold(test_.users.External(tu))) cold_users_.push_back(tu);
    }
  }

  static bool Cold(const std::string& id) { return std::stoi(id) % 10 == 0; }
  std::string Label() const {
    return GetParam() ? std::string(ModelKindName(kind_))
                      : absl::StrCat("selected ", ModelKindName(kind_));
  }

  ModelKind kind_ = ModelKind::kHybrid;  // the kind trained
  RatingData base_, test_;
  Model full_;
  std::unique_ptr<Engine> engine_;
  SparseRows rows_;
  std::vector<int32_t> cold_users_;
};

// The rating side: RMSE on the cold users' test pairs, the engine's
// predictions coming from Recommend with a candidate list.
TEST_P(ProtocolF, RmseOfFoldInAgainstRetraining) {
  RatingAccumulator with_full, with_fold_in;
  for (int32_t tu : cold_users_) {
    const std::string& user = test_.users.External(tu);
    RecommendQuery q;
    q.user = user;
    q.include_rated = true;
    for (int64_t k = rows_.offsets[tu]; k < rows_.offsets[tu + 1]; ++k) {
      q.candidates.push_back(test_.items.External(rows_.cols[k]));
    }
    q.k = static_cast<int>(q.candidates.size());
    absl::StatusOr<RecommendResult> rec = engine_->Recommend(q);
    ASSERT_TRUE(rec.ok()) << rec.status();
    absl::flat_hash_map<std::string, float> predicted;
    for (const auto& it : rec->items)
      predicted[it.item.id] = it.predicted_rating;
    for (int64_t k = rows_.offsets[tu]; k < rows_.offsets[tu + 1]; ++k) {
      const std::string& item = test_.items.External(rows_.cols[k]);
      ASSERT_TRUE(predicted.count(item)) << item;
      with_fold_in.Add(predicted[item], rows_.values[k]);
      with_full.Add(
          full_.Predict(full_.users.Find(user), full_.items.Find(item)),
          rows_.values[k]);
    }
  }
  const double ratio = with_fold_in.Result().rmse / with_full.Result().rmse;
  std::cout << "protocol F, " << Label() << " (u1, " << cold_users_.size()
            << " cold users with test pairs, " << with_full.Result().n
            << " pairs): RMSE full " << with_full.Result().rmse << ", fold-in "
            << with_fold_in.Result().rmse << ", ratio " << ratio << "\n";
  // The bar applies to the models with a rating part (iALS predicts with
  // its baseline).
  if (kind_ != ModelKind::kIals && kind_ != ModelKind::kPuresvd) {
    EXPECT_LE(ratio, 1.02);
  }
}

// The ranking side: nDCG@10 of the cold users' top 10 (protocol T's rules)
// from the engine's Recommend against the fully retrained model.
TEST_P(ProtocolF, NdcgOfFoldInAgainstRetraining) {
  RankingAccumulator with_full(10), with_fold_in(10);
  Eigen::VectorXf scores;
  const float relevant_min = DefaultRelevanceThreshold(full_.scale);
  for (int32_t tu : cold_users_) {
    const std::string& user = test_.users.External(tu);
    absl::flat_hash_set<int32_t> relevant;
    int64_t num_relevant = 0;
    for (int64_t k = rows_.offsets[tu]; k < rows_.offsets[tu + 1]; ++k) {
      if (rows_.values[k] < relevant_min) continue;
      ++num_relevant;
      relevant.insert(full_.items.Find(test_.items.External(rows_.cols[k])));
    }
    if (num_relevant == 0) continue;
    std::vector<int32_t> full_list, fold_list;
    for (const ScoredItem& s :
         RecommendForUser(full_, full_.users.Find(user), 10, true, &scores)) {
      full_list.push_back(s.item);
    }
    RecommendQuery q;
    q.user = user;
    absl::StatusOr<RecommendResult> rec = engine_->Recommend(q);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_TRUE(rec->personalized);
    for (const auto& it : rec->items) {
      fold_list.push_back(full_.items.Find(it.item.id));
    }
    with_full.Add(full_list, relevant, num_relevant);
    with_fold_in.Add(fold_list, relevant, num_relevant);
  }
  const double full = with_full.Result().ndcg;
  const double fold = with_fold_in.Result().ndcg;
  std::cout << "protocol F, " << Label() << " (u1, " << with_full.Result().users
            << " cold users with relevant items): "
            << "nDCG@10 full " << full << ", fold-in " << fold << ", ratio "
            << fold / full << "\n";
  // For the ranking model, folded-in users must rank nearly as well as
  // retrained ones: issue 4's bar is a ratio of 0.97 (the defaults measure
  // 0.995 on u1's 45 users). The rating models' ratios are reported only.
  if (kind_ == ModelKind::kIals || kind_ == ModelKind::kHybrid || !GetParam()) {
    EXPECT_GE(fold / full, 0.97);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, ProtocolF,
    ::testing::Values(std::optional<ModelKind>(ModelKind::kSgd),
                      std::optional<ModelKind>(ModelKind::kIals),
                      std::optional<ModelKind>(ModelKind::kBayes),
                      std::optional<ModelKind>(ModelKind::kHybrid),
                      std::optional<ModelKind>()),
    [](const ::testing::TestParamInfo<std::optional<ModelKind>>& info) {
      return info.param ? std::string(ModelKindName(*info.param))
                        : std::string("selected");
    });

}  // namespace
}  // namespace recsys
