// Events of implicit feedback through the engine: an event adds its type's
// weight times its count to the pair, and so does a plain rating its value
// (on implicit feedback everything adds); what is served survives the log, a
// restart, a snapshot, a replica and an erasure; a retried event (same
// event_id) counts once; bad inputs are refused naming the field; an implicit
// model predicts no ratings.
#include "engine/events.h"

#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/model_io.h"
#include "server/metrics.h"
#include "storage/rating_log.h"
#include "tests/test_util.h"

namespace recsys {

// Applies records to the serving generation directly, in any order (as
// racing writers may: each appends, then waits for the user's lock).
class EngineTestPeer {
 public:
  static void Apply(Engine& e, const LogRecord& rec) {
    e.Apply(*e.current(), rec);
  }
};

namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::Pair;

using ModelFn = std::function<absl::StatusOr<Model>()>;
using Values = std::map<std::string, float>;  // item -> the pair's value

RatingInput Event(const std::string& user, const std::string& item,
                  const std::string& type, float count,
                  const std::string& id = "") {
  RatingInput in;
  in.user = user;
  in.item = item;
  in.event_type = type;
  in.count = count;
  in.event_id = id;
  return in;
}

RatingInput Plain(const std::string& user, const std::string& item,
                  float value) {
  RatingInput in;
  in.user = user;
  in.item = item;
  in.value = value;
  return in;
}

// Every pair of `user` as GetUser lists them (empty for an unknown user).
Values ValuesOf(const Engine& e, const std::string& user) {
  Values out;
  absl::StatusOr<UserResult> u = e.GetUser(user, kMaxK);
  if (!u.ok()) return out;
  for (const UserRatingView& r : u->recent) out[r.item.id] = r.value;
  return out;
}

std::optional<float> PairValue(const Engine& e, const std::string& user,
                               const std::string& item) {
  const Values v = ValuesOf(e, user);
  auto it = v.find(item);
  if (it == v.end()) return std::nullopt;
  return it->second;
}

class EventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(120, 80, 4, 0.15, 0.3, 8, true);
    data_.feedback = Feedback::kImplicit;
    dir_ = testing::MakeTempDir("events");
    engine_ = Open(Options(dir_));
    ASSERT_NE(engine_, nullptr);
  }

  // play weighs 2, click 0.5; nothing else is an event type.
  static EngineOptions Options(const std::string& dir) {
    EngineOptions opt;
    opt.data_dir = dir;
    opt.train_threads = 2;
    opt.snapshot_every = 0;
    opt.event_weights = {{"click", 0.5f}, {"play", 2.0f}};
    return opt;
  }

  // An engine on opt.data_dir whose first model is `first` (by default an
  // iALS model of data_).
  std::unique_ptr<Engine> Open(const EngineOptions& opt,
                               ModelFn first = nullptr) {
    if (!first) first = [this] { return testing::SmallIalsModel(data_); };
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(opt, first);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  // Closes the engine and opens it again on the same directory.
  void Reopen() {
    engine_.reset();
    engine_ = Open(Options(dir_));
    ASSERT_NE(engine_, nullptr);
  }

  RateResult MustRate(const RatingInput& in) {
    absl::StatusOr<RateResult> r = engine_->Rate(in);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RateResult{};
  }

  RateResult Play(const std::string& user, const std::string& item, float count,
                  const std::string& id = "") {
    return MustRate(Event(user, item, "play", count, id));
  }

  std::optional<float> Value(const std::string& user,
                             const std::string& item) const {
    return PairValue(*engine_, user, item);
  }

  // Runs a training job to its end; its last update.
  TrainingUpdate Train(const TrainSpec& spec) {
    absl::StatusOr<std::string> job = engine_->StartTraining(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return TrainingUpdate();
    engine_->WaitForTraining();
    bool done = false;
    absl::StatusOr<std::vector<TrainingUpdate>> updates =
        engine_->WatchTraining(*job, 0, absl::Now(), &done);
    EXPECT_TRUE(updates.ok() && done) << updates.status();
    if (!updates.ok() || updates->empty()) return TrainingUpdate();
    return updates->back();
  }

  // A trained user and one of their trained pairs.
  std::pair<std::string, std::string> TrainedPair() const {
    const std::string user = "u5";
    const Values v = ValuesOf(*engine_, user);
    EXPECT_FALSE(v.empty());
    return {user, v.empty() ? std::string() : v.begin()->first};
  }

  // Events of a new user on a trained and a new item, a plain rating
  // between them, and events of a trained user.
  void WriteHistory() {
    Play("listener", "i3", 3, "h-1");
    Play("listener", "i3", 3, "h-2");
    MustRate(Event("listener", "i3", "click", 1));
    Play("listener", "fresh-track", 1);
    MustRate(Plain("listener", "i9", 7));
    Play("listener", "i9", 2);
    Play("u5", "fresh-track", 2);
    MustRate(Event("u5", "i3", "click", 4));
  }

  RatingData data_;
  std::string dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EventsTest, EventsAddTheirTypesWeightTimesTheirCount) {
  const RateResult first = Play("listener", "i3", 3);
  EXPECT_TRUE(first.new_user);
  EXPECT_FALSE(first.duplicate);
  Play("listener", "i3", 3);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(12)));  // 2*3*2
  MustRate(Event("listener", "i3", "click", 1));
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(12.5f)));
  // A plain rating adds its value too (on implicit feedback a pair weighs
  // the sum of what it got), and a count of 0 means once.
  MustRate(Plain("listener", "i3", 4));
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(16.5f)));
  Play("listener", "i3", 0);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(18.5f)));
  Play("listener", "i3", 0.25f);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(19)));
  EXPECT_EQ(engine_->GetUser("listener", 10)->rating_count, 1);

  const EngineInfo info = engine_->Info();
  EXPECT_EQ(info.feedback, Feedback::kImplicit);
  EXPECT_EQ(info.event_weights,
            (std::map<std::string, float>{{"click", 0.5f}, {"play", 2.0f}}));
  EXPECT_THAT(info.events_accepted,
              ElementsAre(Pair("click", 1u), Pair("play", 4u)));
  // And the metrics page counts them by type.
  const std::string text = ServerMetrics().Render(engine_.get(), absl::Now());
  EXPECT_THAT(text,
              HasSubstr("recsys_events_accepted_total{type=\"click\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("recsys_events_accepted_total{type=\"play\"} 4\n"));
}

TEST_F(EventsTest, EventsAddToTrainedPairsAndToNewItems) {
  const auto [user, item] = TrainedPair();
  const std::optional<float> trained = Value(user, item);
  ASSERT_TRUE(trained.has_value());
  const int64_t count = engine_->GetUser(user, 1)->rating_count;
  MustRate(Event(user, item, "click", 2));
  EXPECT_THAT(Value(user, item), Optional(FloatEq(*trained + 1)));
  EXPECT_EQ(engine_->GetUser(user, 1)->rating_count, count);

  const RateResult added = Play(user, "fresh-track", 1);
  EXPECT_TRUE(added.new_item);
  EXPECT_FALSE(Play(user, "fresh-track", 1).new_item);
  EXPECT_THAT(Value(user, "fresh-track"), Optional(FloatEq(4)));
  Play("listener", "fresh-track", 3);
  EXPECT_THAT(Value("listener", "fresh-track"), Optional(FloatEq(6)));
  EXPECT_THAT(Value(user, "fresh-track"), Optional(FloatEq(4)));
}

// Recommend of an implicit model: no predicted rating on any item, for a
// trained user, a user of events, a stranger and a visitor; through both
// forms of Recommend.
TEST_F(EventsTest, AnImplicitModelPredictsNoRatings) {
  Play("listener", "i3", 2);
  std::vector<RecommendQuery> queries(4);
  queries[0].user = "u1";
  queries[1].user = "listener";
  queries[2].user = "nobody";
  queries[3].session = {{"i3", 2}, {"i4", 0.5f}};
  for (const RecommendQuery& q : queries) {
    SCOPED_TRACE(q.user);
    absl::StatusOr<RecommendResult> r = engine_->Recommend(q);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->feedback, Feedback::kImplicit);
    ASSERT_FALSE(r->items.empty());
    for (const RecommendedItem& it : r->items) {
      EXPECT_FALSE(it.has_predicted_rating) << it.item.id;
      EXPECT_EQ(it.predicted_rating, 0.0f) << it.item.id;
    }
    int emitted = 0;
    absl::StatusOr<RecommendResult> refs =
        engine_->Recommend(q, [&](const RecommendedItemRef& it) {
          ++emitted;
          EXPECT_FALSE(it.has_predicted_rating) << it.id;
        });
    ASSERT_TRUE(refs.ok()) << refs.status();
    EXPECT_EQ(refs->feedback, Feedback::kImplicit);
    EXPECT_EQ(emitted, static_cast<int>(r->items.size()));
  }
}

TEST_F(EventsTest, AnExplicitModelPredictsRatingsAndRefusesEvents) {
  RatingData ratings = data_;
  ratings.feedback = Feedback::kExplicit;
  std::unique_ptr<Engine> e =
      Open(Options(testing::MakeTempDir("events-explicit")),
           [&ratings] { return testing::SmallAlsModel(ratings); });
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->Info().feedback, Feedback::kExplicit);
  RecommendQuery q;
  q.user = "u1";
  absl::StatusOr<RecommendResult> r = e->Recommend(q);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->feedback, Feedback::kExplicit);
  ASSERT_FALSE(r->items.empty());
  for (const RecommendedItem& it : r->items) {
    EXPECT_TRUE(it.has_predicted_rating) << it.item.id;
    EXPECT_GE(it.predicted_rating, 1.0f) << it.item.id;
    EXPECT_LE(it.predicted_rating, 5.0f) << it.item.id;
  }
  const uint64_t logged = e->log().last_seq();
  for (const RatingInput& in :
       {Event("u1", "i3", "play", 1), Event("u1", "i3", "play", 1, "x-1")}) {
    absl::StatusOr<RateResult> refused = e->Rate(in);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
        << refused.status();
    EXPECT_THAT(refused.status().message(), HasSubstr("implicit"));
  }
  EXPECT_EQ(e->log().last_seq(), logged);
  // An id without an event is wrong whatever the model.
  RatingInput rated = Plain("u1", "i3", 4);
  rated.event_id = "x-2";
  EXPECT_EQ(e->Rate(rated).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(e->Rate(Plain("u1", "i3", 4)).ok());
}

TEST_F(EventsTest, EventsSurviveARestart) {
  WriteHistory();
  const Values listener = ValuesOf(*engine_, "listener");
  const Values trained = ValuesOf(*engine_, "u5");
  EXPECT_THAT(listener,
              ElementsAre(Pair("fresh-track", FloatEq(2)),
                          Pair("i3", FloatEq(12.5f)), Pair("i9", FloatEq(11))));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(ValuesOf(*engine_, "listener"), listener);
  EXPECT_EQ(ValuesOf(*engine_, "u5"), trained);
  // And events go on adding to the replayed values.
  Play("listener", "i3", 1);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(14.5f)));
}

TEST_F(EventsTest, EventsSurviveASnapshotAndTheLogAfterIt) {
  WriteHistory();
  ASSERT_TRUE(engine_->WriteSnapshot().ok());
  // Events after the snapshot add to its values (from the log at Open).
  Play("listener", "i3", 1);
  Play("u5", "fresh-track", 1);
  const Values listener = ValuesOf(*engine_, "listener");
  const Values trained = ValuesOf(*engine_, "u5");
  EXPECT_THAT(listener, Contains(Pair("i3", FloatEq(14.5f))));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(ValuesOf(*engine_, "listener"), listener);
  EXPECT_EQ(ValuesOf(*engine_, "u5"), trained);
  // A snapshot of the replayed state holds the same.
  ASSERT_TRUE(engine_->WriteSnapshot().ok());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(ValuesOf(*engine_, "listener"), listener);
  EXPECT_EQ(ValuesOf(*engine_, "u5"), trained);
  EXPECT_EQ(engine_->Info().feedback, Feedback::kImplicit);
}

// Copies what `from`'s log holds beyond `to`'s, as a replica does.
void CopyLog(LogReader& reader, const Engine& from, Engine& to) {
  std::vector<LogRecord> batch;
  const absl::Status read = reader.Next(10000, absl::Now(), &batch);
  ASSERT_TRUE(read.ok()) << read;
  const absl::Status applied = to.ApplyReplicated(std::move(batch));
  ASSERT_TRUE(applied.ok()) << applied;
  EXPECT_EQ(to.log().last_seq(), from.log().last_seq());
}

TEST_F(EventsTest, AReplicaAddsWhatThePrimaryAdded) {
  std::unique_ptr<Engine> replica =
      Open(Options(testing::MakeTempDir("events-replica")));
  ASSERT_NE(replica, nullptr);
  absl::StatusOr<SnapshotRef> ref = engine_->NewestSnapshot();
  ASSERT_TRUE(ref.ok()) << ref.status();
  absl::StatusOr<Model> m = LoadModel(ref->path);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(replica->InstallSnapshot(*std::move(m), ref->generation).ok());
  std::unique_ptr<LogReader> reader =
      engine_->log().NewReader(replica->log().last_seq());

  WriteHistory();
  EXPECT_TRUE(Play("listener", "i3", 3, "h-1").duplicate);  // not logged
  ASSERT_NO_FATAL_FAILURE(CopyLog(*reader, *engine_, *replica));
  for (const char* user : {"listener", "u5"}) {
    EXPECT_EQ(ValuesOf(*replica, user), ValuesOf(*engine_, user)) << user;
  }
  EXPECT_THAT(PairValue(*replica, "listener", "i3"), Optional(FloatEq(12.5f)));
  EXPECT_EQ(replica->Info().feedback, Feedback::kImplicit);

  // An erasure, then events that start from nothing.
  ASSERT_TRUE(engine_->DeleteUser("listener").ok());
  ASSERT_NO_FATAL_FAILURE(CopyLog(*reader, *engine_, *replica));
  EXPECT_EQ(replica->GetUser("listener", 10).status().code(),
            absl::StatusCode::kNotFound);
  Play("listener", "i3", 1, "h-1");
  ASSERT_NO_FATAL_FAILURE(CopyLog(*reader, *engine_, *replica));
  EXPECT_THAT(ValuesOf(*replica, "listener"),
              ElementsAre(Pair("i3", FloatEq(2))));
}

TEST_F(EventsTest, AnErasureTakesTheUsersEventsAndTheirIds) {
  Play("listener", "i3", 3, "tap-1");
  Play("listener", "fresh-track", 1, "tap-2");
  const RateResult other = Play("other", "i3", 1, "tap-3");
  absl::StatusOr<DeleteUserResult> erased = engine_->DeleteUser("listener");
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->ratings_deleted, 2);
  EXPECT_EQ(engine_->GetUser("listener", 10).status().code(),
            absl::StatusCode::kNotFound);

  // The same ids count again, from zero; another user's id is remembered.
  const RateResult again = Play("listener", "i3", 1, "tap-1");
  EXPECT_FALSE(again.duplicate);
  EXPECT_TRUE(again.new_user);
  EXPECT_THAT(ValuesOf(*engine_, "listener"),
              ElementsAre(Pair("i3", FloatEq(2))));
  const RateResult retried = Play("other", "i3", 1, "tap-3");
  EXPECT_TRUE(retried.duplicate);
  EXPECT_EQ(retried.sequence, other.sequence);
  EXPECT_THAT(Value("other", "i3"), Optional(FloatEq(2)));

  // A restart rebuilds the same, and the id recorded since the erasure.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(ValuesOf(*engine_, "listener"),
              ElementsAre(Pair("i3", FloatEq(2))));
  const RateResult replayed = Play("listener", "i3", 1, "tap-1");
  EXPECT_TRUE(replayed.duplicate);
  EXPECT_EQ(replayed.sequence, again.sequence);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(2)));
}

TEST_F(EventsTest, AnErasedTrainedUsersPairsStartFromZero) {
  const auto [user, item] = TrainedPair();
  ASSERT_TRUE(engine_->DeleteUser(user).ok());
  MustRate(Event(user, item, "click", 1));
  EXPECT_THAT(ValuesOf(*engine_, user), ElementsAre(Pair(item, FloatEq(0.5f))));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(ValuesOf(*engine_, user), ElementsAre(Pair(item, FloatEq(0.5f))));
}

TEST_F(EventsTest, ARetriedEventCountsOnce) {
  const RateResult first = Play("listener", "i3", 3, "evt-1");
  EXPECT_FALSE(first.duplicate);
  const uint64_t logged = engine_->log().last_seq();
  const RateResult retry = Play("listener", "i3", 3, "evt-1");
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.sequence, first.sequence);
  // Whatever else the retry says, the id is the event recorded.
  EXPECT_TRUE(MustRate(Event("listener", "i4", "click", 5, "evt-1")).duplicate);
  EXPECT_THAT(ValuesOf(*engine_, "listener"),
              ElementsAre(Pair("i3", FloatEq(6))));
  EXPECT_EQ(engine_->log().last_seq(), logged);
  EXPECT_THAT(engine_->Info().events_accepted,
              ElementsAre(Pair("click", 0u), Pair("play", 1u)));
  // Events without an id count every time.
  Play("listener", "i3", 1);
  Play("listener", "i3", 1);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(10)));

  // The id is replayed from the log.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  const RateResult after = Play("listener", "i3", 3, "evt-1");
  EXPECT_TRUE(after.duplicate);
  EXPECT_EQ(after.sequence, first.sequence);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(10)));
}

// Twice in one batch (a RateStream resending): recorded once; the second
// is a duplicate or asked to retry, and a retry is a duplicate.
TEST_F(EventsTest, AnIdTwiceInOneBatchCountsOnce) {
  const std::vector<absl::StatusOr<RateResult>> r =
      engine_->RateBatch({Event("listener", "i3", "play", 1, "b-1"),
                          Event("listener", "i3", "play", 1, "b-1")});
  ASSERT_EQ(r.size(), 2u);
  ASSERT_TRUE(r[0].ok()) << r[0].status();
  EXPECT_FALSE(r[0]->duplicate);
  if (r[1].ok()) {
    EXPECT_TRUE(r[1]->duplicate);
    EXPECT_EQ(r[1]->sequence, r[0]->sequence);
  } else {
    EXPECT_EQ(r[1].status().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(2)));
  const RateResult retry = Play("listener", "i3", 1, "b-1");
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.sequence, r[0]->sequence);
}

TEST_F(EventsTest, OnlyTheNewestIdsAreRemembered) {
  EngineOptions opt = Options(testing::MakeTempDir("events-window"));
  opt.event_id_window = 2;
  engine_ = Open(opt);
  ASSERT_NE(engine_, nullptr);
  for (const char* id : {"w-1", "w-2", "w-3"}) Play("listener", "i3", 1, id);
  EXPECT_TRUE(Play("listener", "i3", 1, "w-3").duplicate);
  EXPECT_FALSE(Play("listener", "i3", 1, "w-1").duplicate);
  EXPECT_THAT(Value("listener", "i3"), Optional(FloatEq(8)));
}

RatingInput WithValue(RatingInput in, float value) {
  in.value = value;
  return in;
}

RatingInput WithId(RatingInput in, const std::string& id) {
  in.event_id = id;
  return in;
}

TEST_F(EventsTest, BadEventsAreRefusedNamingTheField) {
  Play("listener", "i3", 1);
  const uint64_t logged = engine_->log().last_seq();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const RatingInput play = Event("listener", "i3", "play", 1);
  const std::vector<std::pair<RatingInput, std::string>> cases = {
      {Event("listener", "i3", "swipe", 1), "event_type"},
      {Event("listener", "i3", "Play", 1), "event_type"},
      {Event("listener", "i3", "play", -1), "count"},
      {Event("listener", "i3", "play", kNaN), "count"},
      {Event("listener", "i3", "play", kInf), "count"},
      {Event("listener", "i3", "play", 3e38f), "count"},  // weight overflows
      {Event("listener", "i3", "play", 6e8f), "count"},   // weight 1.2e9 > 1e9
      {Plain("listener", "i3", 2e9f), "rating"},          // over 1e9
      {WithValue(play, 3), "rating"},
      {WithValue(play, -1), "rating"},
      {WithId(Plain("listener", "i3", 1), "id-1"), "event_id"},
      {WithId(play, std::string(kMaxIdBytes + 1, 'x')), "event_id"},
      {Plain("listener", "i3", -1), "rating"},
      {Plain("listener", "i3", kNaN), "rating"},
      {Plain("listener", "i3", kInf), "rating"},
  };
  for (const auto& [in, field] : cases) {
    SCOPED_TRACE(field + " of case with type '" + in.event_type + "'");
    absl::StatusOr<RateResult> r = engine_->Rate(in);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(field));
  }
  EXPECT_EQ(engine_->log().last_seq(), logged);
  EXPECT_THAT(ValuesOf(*engine_, "listener"),
              ElementsAre(Pair("i3", FloatEq(2))));
  // A plain rating of an implicit model may be any weight >= 0.
  MustRate(Plain("listener", "i3", 0));
  MustRate(Plain("listener", "i4", 250));
  EXPECT_THAT(ValuesOf(*engine_, "listener"),
              ElementsAre(Pair("i3", FloatEq(2)), Pair("i4", FloatEq(250))));
}

// Two writers of one user may apply their records out of log order (each
// appends, then waits for the user's lock). Whatever the order, the pair
// must end as the log says (as a restart replaying it in order rebuilds
// it). On implicit feedback every record adds, so the order cannot
// matter: a rating and an event of a pair are their sum either way.
TEST_F(EventsTest, RatingsAndEventsAppliedOutOfLogOrderServeWhatTheLogSays) {
  auto record = [](uint64_t seq, const std::string& user, bool add,
                   float value) {
    LogRecord r;
    r.seq = seq;
    r.user = user;
    r.item = "i3";
    r.value = value;
    r.timestamp = 1700000000;
    r.add = add;
    if (add) r.event_type = "play";
    return r;
  };
  // Logged: rating 4 (1000), then event +2 (1001); applied the other way.
  EngineTestPeer::Apply(*engine_, record(1001, "racer-a", true, 2));
  EngineTestPeer::Apply(*engine_, record(1000, "racer-a", false, 4));
  EXPECT_THAT(Value("racer-a", "i3"), Optional(FloatEq(6)));
  // Logged: event +2 (1001), then rating 4 (1002); applied the other way.
  EngineTestPeer::Apply(*engine_, record(1002, "racer-b", false, 4));
  EngineTestPeer::Apply(*engine_, record(1001, "racer-b", true, 2));
  EXPECT_THAT(Value("racer-b", "i3"), Optional(FloatEq(6)));
  // In log order, for comparison.
  EngineTestPeer::Apply(*engine_, record(1000, "ordered", false, 4));
  EngineTestPeer::Apply(*engine_, record(1001, "ordered", true, 2));
  EXPECT_THAT(Value("ordered", "i3"), Optional(FloatEq(6)));
}

// The same through Rate: writers of plays and of plain ratings of one pair
// race, and the values served must be those a restart rebuilds from the
// log.
TEST_F(EventsTest, RacingRatingsAndEventsServeWhatARestartRebuilds) {
  EngineOptions opt = Options(dir_);
  opt.log.sync = SyncPolicy::kNever;  // (many rounds in little time)
  engine_.reset();
  engine_ = Open(opt);
  ASSERT_NE(engine_, nullptr);
  const std::vector<std::string> users = {"racer-0", "racer-1", "racer-2",
                                          "racer-3"};
  for (int round = 0; round < 5; ++round) {
    std::vector<std::thread> writers;
    for (const std::string& user : users) {
      for (const RatingInput& in :
           {Event(user, "i3", "play", 1), Plain(user, "i3", 1)}) {
        writers.emplace_back([this, in] {
          for (int k = 0; k < 200; ++k) engine_->Rate(in).IgnoreError();
        });
      }
    }
    for (std::thread& t : writers) t.join();
    std::map<std::string, Values> served;
    for (const std::string& user : users) {
      served[user] = ValuesOf(*engine_, user);
    }
    engine_.reset();
    engine_ = Open(opt);
    ASSERT_NE(engine_, nullptr);
    for (const std::string& user : users) {
      EXPECT_EQ(ValuesOf(*engine_, user), served[user])
          << user << ", round " << round;
    }
  }
}

// Snapshots taken while events stream in hold exactly the records up to
// their log sequence (an event applied after the cut but inside the
// snapshot would be added again when a restart replays it), so each event
// counts once across restarts: every pair ends at its number of events.
TEST_F(EventsTest, SnapshotsWhileEventsStreamCountEachEventOnce) {
  EngineOptions opt = Options(dir_);
  opt.log.sync = SyncPolicy::kNever;  // (many events in little time)
  engine_.reset();
  engine_ = Open(opt);
  ASSERT_NE(engine_, nullptr);
  constexpr int kWriters = 4, kEvents = 2000;
  // Snapshots while the first three quarters stream in; the last of them
  // is what a restart starts from (the records after it are replayed).
  std::atomic<int> written{0};
  std::thread snapshots([&] {
    while (written.load() < kWriters * kEvents * 3 / 4) {
      ASSERT_TRUE(engine_->WriteSnapshot().ok());
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([this, w, &written] {
      const std::string user = absl::StrCat("streamer-", w);
      for (int k = 0; k < kEvents; ++k) {
        // Weight 2 (play), on two pairs in turn.
        ASSERT_TRUE(
            engine_->Rate(Event(user, k % 2 == 0 ? "i3" : "i4", "play", 1))
                .ok());
        ++written;
      }
    });
  }
  for (std::thread& t : writers) t.join();
  snapshots.join();
  engine_.reset();
  engine_ = Open(opt);
  ASSERT_NE(engine_, nullptr);
  for (int w = 0; w < kWriters; ++w) {
    const std::string user = absl::StrCat("streamer-", w);
    EXPECT_THAT(
        ValuesOf(*engine_, user),
        ElementsAre(Pair("i3", FloatEq(kEvents)), Pair("i4", FloatEq(kEvents))))
        << user;
  }
}

// Retraining an implicit model: the values so far are its training data
// and stay, the model stays implicit, and events go on adding. `auto`
// without selection means ials for implicit feedback (models/selection.h
// AutoKind), as the library's TrainWithSpec has it.
TEST_F(EventsTest, RetrainingKeepsTheValuesAndImplicitFeedback) {
  WriteHistory();
  std::vector<TrainSpec> specs(3);
  specs[0].model.kind = ModelKind::kIals;
  specs[0].model.select = false;
  // specs[1]: auto, chosen by selection.
  specs[2].model.select = false;  // auto: AutoKind(kImplicit), ials
  for (size_t k = 0; k < specs.size(); ++k) {
    SCOPED_TRACE(absl::StrCat("spec ", k));
    const Values before = ValuesOf(*engine_, "listener");
    const TrainingUpdate last = Train(specs[k]);
    ASSERT_EQ(last.state, TrainingUpdate::kSucceeded) << last.error;
    EXPECT_EQ(engine_->generation(), k + 2);
    EXPECT_EQ(engine_->Info().feedback, Feedback::kImplicit);
    EXPECT_EQ(ValuesOf(*engine_, "listener"), before);
    Play("listener", "i3", 1);
    EXPECT_THAT(Value("listener", "i3"),
                Optional(FloatEq(before.at("i3") + 2)));
  }
}

// --event_weights: types with finite weights > 0, each named once; the
// message names the bad part.
TEST(EventWeightsTest, ParsesAndRefusesNamingThePart) {
  absl::StatusOr<std::map<std::string, float>> w =
      internal::ParseEventWeights("play:1, click:0.5,purchase:4");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w, (std::map<std::string, float>{
                    {"click", 0.5f}, {"play", 1.0f}, {"purchase", 4.0f}}));
  EXPECT_EQ(internal::FormatEventWeights(*w), "click:0.5,play:1,purchase:4");
  for (const auto& [spec, part] :
       std::vector<std::pair<std::string, std::string>>{
           {"play", "'play'"},
           {"play:x", "'play:x'"},
           {":1", "':1'"},
           {"play:-1", "finite and > 0"},
           {"play:0", "finite and > 0"},
           {"play:inf", "finite and > 0"},
           {"play:nan", "finite and > 0"},
           {"play:1,play:2", "named twice"}}) {
    absl::StatusOr<std::map<std::string, float>> bad =
        internal::ParseEventWeights(spec);
    ASSERT_FALSE(bad.ok()) << spec;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(part)) << spec;
  }
}

}  // namespace
}  // namespace recsys
