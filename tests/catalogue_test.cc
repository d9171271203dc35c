// The engine's catalogue: entries added and changed through UpsertItems,
// retired items left out of every ranking, and entries kept across
// restarts, snapshots and training.
#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kItems = 120;

ItemUpdate Retire(const std::string& id, bool retired = true) {
  ItemUpdate u;
  u.id = id;
  u.retired = retired;
  return u;
}

ItemUpdate Describe(const std::string& id, const std::string& title,
                    std::vector<std::string> genres) {
  ItemUpdate u;
  u.id = id;
  u.title = title;
  u.genres = std::move(genres);
  return u;
}

std::vector<std::string> Ids(const RecommendResult& r) {
  std::vector<std::string> ids;
  for (const RecommendedItem& it : r.items) ids.push_back(it.item.id);
  return ids;
}

class CatalogueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(150, kItems, 4, 0.15, 0.3, 8, true);
    dir_ = testing::MakeTempDir("catalogue");
    Open();
  }

  void Open() {
    engine_.reset();
    EngineOptions opt;
    opt.data_dir = dir_;
    opt.train_threads = 2;
    opt.snapshot_every = snapshot_every_;
    auto e =
        Engine::Open(opt, [this] { return testing::SmallAlsModel(data_); });
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
  }

  // The newest snapshot's log sequence (0 when there is none).
  uint64_t NewestSnapshotSeq() const {
    uint64_t newest = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      uint64_t generation = 0, seq = 0;
      if (std::sscanf(name.c_str(), "snapshot-%" SCNu64 "-%" SCNu64 ".rsm",
                      &generation, &seq) == 2) {
        newest = std::max(newest, seq);
      }
    }
    return newest;
  }

  UpsertItemsResult MustUpsert(const std::vector<ItemUpdate>& updates) {
    absl::StatusOr<UpsertItemsResult> r = engine_->UpsertItems(updates);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : UpsertItemsResult{};
  }

  RecommendResult MustRecommend(const RecommendQuery& q) {
    absl::StatusOr<RecommendResult> r = engine_->Recommend(q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RecommendResult{};
  }

  ItemView MustGetItem(const std::string& id) {
    absl::StatusOr<ItemView> r = engine_->GetItem(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ItemView{};
  }

  int64_t snapshot_every_ = 0;
  RatingData data_;
  std::string dir_;
  std::unique_ptr<Engine> engine_;
};

// Retiring items gives, for every kind of query, exactly what excluding
// them by hand gave before: a personalized user (the bit set path), a user
// without ratings (popularity), a genre, a candidate list; and the whole
// catalogue (k = every item) loses exactly the retired ones. A new item
// (arrived through Rate) retires too. Restoring brings the old lists back.
TEST_F(CatalogueTest, RetiredItemsLeaveEveryRankingAsIfExcluded) {
  for (int u = 0; u < 6; ++u) {
    ASSERT_TRUE(engine_->Rate({absl::StrCat("fan", u), "new-1", 5, 0}).ok());
  }
  // Every third item is a Drama (the genre path needs genres).
  std::vector<ItemUpdate> genres;
  for (int i = 0; i < kItems; i += 3) {
    genres.push_back(Describe(absl::StrCat("i", i), "", {"Drama"}));
  }
  genres.push_back(Describe("new-1", "A New Film", {"Drama"}));
  MustUpsert(genres);

  std::vector<RecommendQuery> queries(5);
  queries[0].user = "u1";
  queries[1].user = "nobody-yet";
  queries[2].user = "u2";
  queries[2].genre = "Drama";
  queries[3].user = "nobody-yet";
  queries[3].genre = "Drama";
  queries[4].user = "fan0";
  for (int i = 0; i < 40; ++i) {
    queries[4].candidates.push_back(absl::StrCat("i", i));
  }
  queries[4].candidates.push_back("new-1");
  for (RecommendQuery& q : queries) q.k = 10;
  queries.push_back(queries[0]);
  queries.back().k = kItems + 1;  // every item

  // Retire the items these queries rank first (and the new item).
  std::vector<std::string> retired = {"new-1"};
  for (const RecommendQuery& q : queries) {
    const RecommendResult r = MustRecommend(q);
    for (size_t j = 0; j < 2 && j < r.items.size(); ++j) {
      retired.push_back(r.items[j].item.id);
    }
  }
  std::sort(retired.begin(), retired.end());
  retired.erase(std::unique(retired.begin(), retired.end()), retired.end());
  std::vector<RecommendResult> before, excluded;
  for (RecommendQuery q : queries) {
    before.push_back(MustRecommend(q));
    q.exclude = retired;
    excluded.push_back(MustRecommend(q));
  }
  std::vector<ItemUpdate> retire;
  for (const std::string& id : retired) retire.push_back(Retire(id));
  const UpsertItemsResult r = MustUpsert(retire);
  EXPECT_EQ(r.changed, static_cast<int32_t>(retired.size()));
  EXPECT_EQ(engine_->Info().retired_items,
            static_cast<int64_t>(retired.size()));

  for (size_t k = 0; k < queries.size(); ++k) {
    const RecommendResult got = MustRecommend(queries[k]);
    EXPECT_EQ(Ids(got), Ids(excluded[k])) << "query " << k;
    for (const RecommendedItem& it : got.items) {
      EXPECT_FALSE(
          std::binary_search(retired.begin(), retired.end(), it.item.id))
          << it.item.id;
    }
  }
  // The whole catalogue, less what u1 rated, less the retired items.
  EXPECT_EQ(Ids(MustRecommend(queries.back())).size(),
            before.back().items.size() - (retired.size() - 1));

  // Similar items: never a retired one; a retired item itself still has
  // its list.
  const std::string kept = Ids(excluded[0])[0];
  absl::StatusOr<SimilarResult> similar = engine_->SimilarItems(kept, kItems);
  ASSERT_TRUE(similar.ok()) << similar.status();
  EXPECT_EQ(similar->similar.size(), kItems + 1 - 1 - retired.size());
  for (const auto& [item, score] : similar->similar) {
    EXPECT_FALSE(std::binary_search(retired.begin(), retired.end(), item.id))
        << item.id;
  }
  absl::StatusOr<SimilarResult> of_retired =
      engine_->SimilarItems(retired[0], 5);
  ASSERT_TRUE(of_retired.ok()) << of_retired.status();
  EXPECT_TRUE(of_retired->item.retired);
  EXPECT_EQ(of_retired->similar.size(), 5u);

  // A retired item can still be rated, and shows in the user's history.
  ASSERT_TRUE(engine_->Rate({"fan0", retired[1], 2, 0}).ok());
  absl::StatusOr<UserResult> fan = engine_->GetUser("fan0", 1);
  ASSERT_TRUE(fan.ok());
  ASSERT_EQ(fan->recent.size(), 1u);
  EXPECT_EQ(fan->recent[0].item.id, retired[1]);
  EXPECT_TRUE(fan->recent[0].item.retired);

  std::vector<ItemUpdate> restore;
  for (const std::string& id : retired) restore.push_back(Retire(id, false));
  MustUpsert(restore);
  EXPECT_EQ(engine_->Info().retired_items, 0);
  for (size_t k = 0; k < queries.size(); ++k) {
    if (queries[k].user == "fan0") continue;  // rated one more since
    EXPECT_EQ(Ids(MustRecommend(queries[k])), Ids(before[k])) << "query " << k;
  }
}

// A genre whose items are all retired is still a genre of the catalogue:
// a filter on it returns nothing rather than "unknown genre".
TEST_F(CatalogueTest, GenreWithEveryItemRetiredIsEmptyNotUnknown) {
  MustUpsert({Describe("i3", "", {"Western"}), Describe("i4", "", {"Western"}),
              Retire("i3"), Retire("i4")});
  for (const char* user : {"u1", "nobody-yet"}) {
    RecommendQuery q;
    q.user = user;
    q.genre = "Western";
    EXPECT_THAT(Ids(MustRecommend(q)), IsEmpty()) << user;
  }
  RecommendQuery q;
  q.user = "u1";
  q.genre = "Musical";
  EXPECT_EQ(engine_->Recommend(q).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Each update changes only the fields it sets; repeated names apply in
// order; updates that change nothing are counted and not logged.
TEST_F(CatalogueTest, PartialUpdatesMergeInOrder) {
  UpsertItemsResult r =
      MustUpsert({Describe("i7", "Seven (1995)", {"Crime", "Thriller"})});
  EXPECT_EQ(r.changed, 1);
  EXPECT_EQ(r.added, 0);
  const uint64_t first = r.sequence;
  EXPECT_GT(first, 0u);

  ItemUpdate title_only;
  title_only.id = "i7";
  title_only.title = "Se7en (1995)";
  ItemUpdate genres_only;
  genres_only.id = "i7";
  genres_only.genres = std::vector<std::string>{"Mystery"};
  r = MustUpsert({title_only, genres_only, Retire("i7")});
  EXPECT_EQ(r.changed, 3);
  EXPECT_EQ(r.sequence, first + 1);  // one entry per item
  ItemView got = MustGetItem("i7");
  EXPECT_EQ(got.title, "Se7en (1995)");
  EXPECT_THAT(got.genres, ElementsAre("Mystery"));
  EXPECT_TRUE(got.retired);

  r = MustUpsert({title_only, Retire("i7")});
  EXPECT_EQ(r.unchanged, 2);
  EXPECT_EQ(r.sequence, 0u);
  EXPECT_EQ(engine_->Info().log_sequence, first + 1);
  // A later update that undoes an earlier one in the same call: both count
  // as changes, but the item's entry is as before, so nothing is logged.
  r = MustUpsert({Retire("i7", false), Retire("i7", true)});
  EXPECT_EQ(r.changed, 2);
  EXPECT_EQ(r.sequence, 0u);
  EXPECT_EQ(engine_->Info().log_sequence, first + 1);
  EXPECT_TRUE(MustGetItem("i7").retired);

  // An empty genre list clears them; an absent one keeps them.
  genres_only.genres = std::vector<std::string>{};
  r = MustUpsert({genres_only});
  EXPECT_EQ(r.changed, 1);
  got = MustGetItem("i7");
  EXPECT_THAT(got.genres, IsEmpty());
  EXPECT_EQ(got.title, "Se7en (1995)");
}

// An item new to the catalogue has its entry at once, no vector until it is
// rated, and then the vector its ratings give; its first rating does not
// count it as new.
TEST_F(CatalogueTest, AddedItemIsServedAndFoldedInOnceRated) {
  UpsertItemsResult r =
      MustUpsert({Describe("tt-new", "Brand New (2026)", {"Drama"})});
  EXPECT_EQ(r.added, 1);
  EXPECT_EQ(engine_->Info().items, kItems + 1);
  EXPECT_EQ(MustGetItem("tt-new").title, "Brand New (2026)");
  absl::StatusOr<SimilarResult> similar = engine_->SimilarItems("tt-new", 5);
  ASSERT_TRUE(similar.ok());
  EXPECT_THAT(similar->similar, IsEmpty());  // no vector yet

  absl::StatusOr<RateResult> rated = engine_->Rate({"u1", "tt-new", 5, 0});
  ASSERT_TRUE(rated.ok());
  EXPECT_FALSE(rated->new_item);
  for (int u = 2; u < 12; ++u) {
    ASSERT_TRUE(engine_->Rate({absl::StrCat("u", u), "tt-new", 5, 0}).ok());
  }
  similar = engine_->SimilarItems("tt-new", 5);
  ASSERT_TRUE(similar.ok());
  EXPECT_EQ(similar->similar.size(), 5u);
  absl::StatusOr<UserResult> user = engine_->GetUser("u11", 1);
  ASSERT_TRUE(user.ok());
  ASSERT_EQ(user->recent.size(), 1u);
  EXPECT_EQ(user->recent[0].item.title, "Brand New (2026)");
}

// Entries are durable: replayed from the log after a restart, kept by a
// snapshot, and carried into a retrained model, including one changed
// while the model trained.
TEST_F(CatalogueTest, EntriesSurviveRestartSnapshotAndTraining) {
  MustUpsert({Describe("i0", "Zero (2001)", {"Drama", "Comedy"}),
              Describe("tt-cat", "Only In The Catalogue", {"Horror"}),
              Retire("i1")});
  ASSERT_TRUE(engine_->Rate({"u1", "new-by-rate", 4, 0}).ok());
  MustUpsert({Retire("new-by-rate")});
  int64_t retired = 2;
  std::string zero_title = "Zero (2001)";
  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    ItemView zero = MustGetItem("i0");
    EXPECT_EQ(zero.title, zero_title);
    EXPECT_THAT(zero.genres, ElementsAre("Drama", "Comedy"));
    EXPECT_FALSE(zero.retired);
    EXPECT_EQ(MustGetItem("tt-cat").title, "Only In The Catalogue");
    EXPECT_TRUE(MustGetItem("i1").retired);
    EXPECT_TRUE(MustGetItem("new-by-rate").retired);
    EXPECT_EQ(engine_->Info().retired_items, retired);
    RecommendQuery q;
    q.user = "u1";
    q.k = kItems + 2;
    const std::vector<std::string> ids = Ids(MustRecommend(q));
    EXPECT_EQ(std::count(ids.begin(), ids.end(), "i1"), 0);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), "new-by-rate"), 0);
    q.genre = "Horror";
    q.user = "nobody-yet";
    EXPECT_THAT(Ids(MustRecommend(q)), ElementsAre("tt-cat"));
  };
  check("serving");
  Open();
  check("after a restart (log replay)");
  ASSERT_TRUE(engine_->WriteSnapshot().ok());
  Open();
  check("after a snapshot and a restart");

  TrainSpec spec;
  spec.model.kind = engine_->Info().kind;  // exactly as told
  spec.model.select = false;
  spec.model.params.epochs = 400;  // long enough to still run after the change
  absl::StatusOr<std::string> job = engine_->StartTraining(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  // Once an epoch has ended, the training copy is fixed: what follows
  // reaches the new model only through the journal.
  bool done = false;
  absl::StatusOr<std::vector<TrainingUpdate>> first =
      engine_->WatchTraining(*job, 0, absl::Now() + absl::Seconds(60), &done);
  ASSERT_TRUE(first.ok() && !first->empty());
  ASSERT_FALSE(done);
  MustUpsert({Describe("i0", "Zero (2001)", {"Drama", "Comedy"}), Retire("i2"),
              Retire("i2", false)});
  ItemUpdate during;
  during.id = "tt-cat";
  during.title = "Only In The Catalogue";
  MustUpsert({during, Describe("tt-late", "Late Arrival", {"Horror"}),
              Retire("tt-late")});
  ItemUpdate renamed;
  renamed.id = "i0";
  renamed.title = zero_title = "Zero, Again (2001)";
  MustUpsert({renamed});
  retired = 3;  // tt-late
  EXPECT_FALSE(engine_->Info().training_job.empty());
  engine_->WaitForTraining();
  EXPECT_EQ(engine_->Info().version, 2u);
  check("after training");
  EXPECT_TRUE(MustGetItem("tt-late").retired);
  Open();
  check("after training and a restart");
  EXPECT_TRUE(MustGetItem("tt-late").retired);
}

// Catalogue edits racing Rates (of items they add too) and readers: no
// call fails, nothing retired is ever recommended once its retirement has
// returned, and what is served equals what a restart rebuilds from the
// log. Run under ThreadSanitizer by scripts/test.sh.
TEST_F(CatalogueTest, ConcurrentEditsRatesAndReadsServeWhatTheLogSays) {
  constexpr int kRounds = 60;
  std::atomic<bool> failed{false};
  auto expect_ok = [&](const absl::Status& s, const char* what) {
    if (!s.ok()) {
      failed = true;
      ADD_FAILURE() << what << ": " << s;
    }
  };
  // (So that the readers' genre exists before the writers start.)
  MustUpsert({Describe("i50", "Fifty", {"Drama"})});
  // Items i100.. stay retired from the first round on.
  std::atomic<int> always_retired{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // edits of model items
    for (int r = 0; r < kRounds; ++r) {
      std::vector<ItemUpdate> u = {
          Describe(absl::StrCat("i", r % 20), absl::StrCat("Title ", r),
                   {r % 2 ? "Drama" : "Comedy"}),
          Retire(absl::StrCat("i", r % 20), r % 3 == 0),
          Retire(absl::StrCat("i", 100 + r % 10))};
      expect_ok(engine_->UpsertItems(u).status(), "upsert model items");
      always_retired = std::min(r + 1, 10);
    }
  });
  threads.emplace_back([&] {  // new items, some retired
    for (int r = 0; r < kRounds; ++r) {
      expect_ok(
          engine_
              ->UpsertItems({Describe(absl::StrCat("c", r), "New", {"Drama"}),
                             Retire(absl::StrCat("c", r / 2), r % 2)})
              .status(),
          "upsert new items");
    }
  });
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {  // ratings, of new items among others
      for (int r = 0; r < kRounds; ++r) {
        expect_ok(engine_
                      ->Rate({absl::StrCat("rater", w, "-", r % 7),
                              absl::StrCat(r % 2 ? "c" : "i", r), 4, 0})
                      .status(),
                  "rate");
      }
    });
  }
  threads.emplace_back([&] {  // readers
    for (int r = 0; r < kRounds; ++r) {
      const int retired_now = always_retired.load();
      RecommendQuery q;
      q.user = absl::StrCat("u", r);
      q.k = kItems;
      if (r % 3 == 1) q.genre = "Drama";
      absl::StatusOr<RecommendResult> got = engine_->Recommend(q);
      expect_ok(got.status(), "recommend");
      if (got.ok()) {
        for (const RecommendedItem& it : got->items) {
          for (int j = 0; j < retired_now; ++j) {
            EXPECT_NE(it.item.id, absl::StrCat("i", 100 + j));
          }
        }
      }
      expect_ok(engine_->SimilarItems(absl::StrCat("i", r % 30), 10).status(),
                "similar");
      engine_->Info();
    }
  });
  for (std::thread& t : threads) t.join();
  ASSERT_FALSE(failed);

  std::vector<std::string> ids;
  for (int i = 0; i < kItems; ++i) ids.push_back(absl::StrCat("i", i));
  for (int r = 0; r < kRounds; ++r) ids.push_back(absl::StrCat("c", r));
  std::vector<ItemView> served;
  for (const std::string& id : ids) served.push_back(MustGetItem(id));
  const int64_t retired = engine_->Info().retired_items;
  Open();
  EXPECT_EQ(engine_->Info().retired_items, retired);
  for (size_t k = 0; k < ids.size(); ++k) {
    const ItemView got = MustGetItem(ids[k]);
    EXPECT_EQ(got.title, served[k].title) << ids[k];
    EXPECT_EQ(got.genres, served[k].genres) << ids[k];
    EXPECT_EQ(got.retired, served[k].retired) << ids[k];
  }
}

// A bad update refuses the whole call, names the update, and changes
// nothing.
TEST_F(CatalogueTest, BadUpdatesAreRefusedWhole) {
  const uint64_t seq = engine_->Info().log_sequence;
  const std::string title = MustGetItem("i4").title;
  const std::string long_title(RatingLog::kMaxTitleBytes + 1, 't');
  struct Case {
    ItemUpdate bad;
    std::string message;
  };
  std::vector<Case> cases = {
      {Describe("", "x", {}), "items[1]: item id is empty"},
      {Describe(std::string(kMaxIdBytes + 1, 'i'), "x", {}),
       "items[1]: item id is 257 bytes"},
      {Describe("i5", long_title, {}), "items[1]: title is 1025 bytes"},
      {Describe("i5", "x", {"Drama", ""}), "items[1]: a genre is empty"},
      {Describe("i5", "x", {"Drama", "Drama"}),
       "items[1]: genre 'Drama' is listed twice"},
      {Describe("i5", "x", {"Sci-Fi|Drama"}),
       "items[1]: genre 'Sci-Fi|Drama' contains '|'"},
      {Describe("i5", "x", {std::string(RatingLog::kMaxGenreBytes + 1, 'g')}),
       "items[1]: a genre is 129 bytes"},
      {Describe("i5", "x",
                std::vector<std::string>(RatingLog::kMaxGenres + 1, "g")),
       "items[1]: 33 genres"},
  };
  for (auto& c : cases) {
    absl::StatusOr<UpsertItemsResult> r =
        engine_->UpsertItems({Describe("i4", "Fine", {"Fine"}), c.bad});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << c.message;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message));
  }
  std::vector<ItemUpdate> too_many(kMaxListItems + 1, Retire("i4"));
  EXPECT_EQ(engine_->UpsertItems(too_many).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Info().log_sequence, seq);
  EXPECT_EQ(MustGetItem("i4").title, title);
  EXPECT_EQ(engine_->GetItem("no-such-item").status().code(),
            absl::StatusCode::kNotFound);
}

// The model's data sets no limit on titles and genres, but the log records
// whole entries: an item over the limits can be retired only with a new
// title or genres, and the error says so.
TEST_F(CatalogueTest, EntryOverTheLimitsFromTheModelNeedsANewOne) {
  const int32_t i7 = data_.items.Find("i7");
  ASSERT_GE(i7, 0);
  data_.item_info[i7].title.assign(RatingLog::kMaxTitleBytes + 1, 't');
  const int32_t i8 = data_.items.Find("i8");
  ASSERT_GE(i8, 0);
  data_.item_info[i8].genres.assign(RatingLog::kMaxGenres + 1, "g");
  dir_ = testing::MakeTempDir("catalogue");
  Open();
  ASSERT_NE(engine_, nullptr);
  const uint64_t seq = engine_->Info().log_sequence;
  for (const char* id : {"i7", "i8"}) {
    absl::StatusOr<UpsertItemsResult> r =
        engine_->UpsertItems({Retire("i4"), Retire(id)});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr(absl::StrCat("items[1]: the entry of item '", id,
                                       "' would be over the limits")));
  }
  EXPECT_EQ(engine_->Info().log_sequence, seq);
  EXPECT_FALSE(MustGetItem("i4").retired);
  // An update that changes nothing logs nothing, so it is no error.
  EXPECT_EQ(MustUpsert({Retire("i7", false)}).unchanged, 1);

  ItemUpdate retire_and_rename = Retire("i7");
  retire_and_rename.title = "Seven";
  ItemUpdate retire_and_regenre = Retire("i8");
  retire_and_regenre.genres = std::vector<std::string>{"Drama"};
  MustUpsert({retire_and_rename, retire_and_regenre});
  EXPECT_TRUE(MustGetItem("i7").retired);
  EXPECT_EQ(MustGetItem("i7").title, "Seven");
  EXPECT_TRUE(MustGetItem("i8").retired);
  EXPECT_THAT(MustGetItem("i8").genres, ElementsAre("Drama"));
  Open();  // the entries come back from the log
  ASSERT_NE(engine_, nullptr);
  EXPECT_EQ(MustGetItem("i7").title, "Seven");
  EXPECT_TRUE(MustGetItem("i8").retired);
}

// Catalogue entries lengthen the log as ratings do, so they count toward
// --snapshot_every: a server whose traffic is catalogue edits still bounds
// its log and its start-up replay.
TEST_F(CatalogueTest, CatalogueEntriesCountTowardSnapshots) {
  snapshot_every_ = 4;
  dir_ = testing::MakeTempDir("catalogue");
  Open();
  ASSERT_NE(engine_, nullptr);
  const uint64_t first = NewestSnapshotSeq();
  // Three records: "n1" named twice is one entry, and "i4" unchanged none.
  MustUpsert(
      {Describe("n1", "One", {}), Describe("n2", "Two", {}), Retire("n1"),
       Describe("i5", "Five", {}),
       Describe("i4", MustGetItem("i4").title, MustGetItem("i4").genres)});
  engine_->WaitForSnapshots();
  EXPECT_EQ(NewestSnapshotSeq(), first);
  const UpsertItemsResult fourth = MustUpsert({Retire("n2")});
  // (Written by the snapshot thread, off the write path.)
  engine_->WaitForSnapshots();
  EXPECT_EQ(NewestSnapshotSeq(), fourth.sequence);
  EXPECT_GT(fourth.sequence, first);
  Open();  // from that snapshot, with nothing to replay
  ASSERT_NE(engine_, nullptr);
  EXPECT_TRUE(MustGetItem("n1").retired);
  EXPECT_TRUE(MustGetItem("n2").retired);
  EXPECT_EQ(MustGetItem("i5").title, "Five");
}

}  // namespace
}  // namespace recsys
