// Read replicas: an engine that copies another's log (Engine::ApplyReplicated,
// InstallSnapshot, RatingLog's LogReader), then the same through gRPC
// between two in-process servers (server/replication.h).
#include "server/replication.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "models/model_io.h"
#include "proto/recsys.grpc.pb.h"
#include "server/server.h"
#include "storage/rating_log.h"
#include "tests/test_certs.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;

// Every byte of every file in `dir`, for checks that an id is gone.
std::string AllBytes(const std::string& dir) {
  std::string all;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), {});
  }
  return all;
}

class ReplicaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::PlantedData(150, 120, 4, 0.15, 0.3, 8, true);
    primary_dir_ = testing::MakeTempDir("primary");
    replica_dir_ = testing::MakeTempDir("replica");
    primary_ = OpenEngine(primary_dir_);
    ASSERT_NE(primary_, nullptr);
    OpenReplica();
  }

  std::unique_ptr<Engine> OpenEngine(const std::string& dir) {
    EngineOptions opt;
    opt.data_dir = dir;
    opt.train_threads = 2;
    opt.snapshot_every = 0;
    auto e =
        Engine::Open(opt, [this] { return testing::SmallAlsModel(data_); });
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  // Opens the replica on its directory; a new one starts from the
  // primary's newest snapshot, as the server's replica does.
  void OpenReplica() {
    replica_.reset();
    const bool fresh = std::filesystem::is_empty(replica_dir_);
    replica_ = OpenEngine(replica_dir_);
    ASSERT_NE(replica_, nullptr);
    if (fresh) Bootstrap();
  }

  void Bootstrap() {
    absl::StatusOr<SnapshotRef> ref = primary_->NewestSnapshot();
    ASSERT_TRUE(ref.ok()) << ref.status();
    absl::StatusOr<Model> m = LoadModel(ref->path);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE(replica_->InstallSnapshot(*std::move(m), ref->generation).ok());
    EXPECT_EQ(replica_->generation(), primary_->generation());
    EXPECT_EQ(replica_->log().last_seq(), ref->log_sequence);
  }

  // Copies what the primary's log holds beyond the replica's, or its
  // newest snapshot when its log no longer holds what comes next. Returns
  // whether it had to.
  bool Pump() {
    bool bootstrapped = false;
    std::unique_ptr<LogReader> reader =
        primary_->log().NewReader(replica_->log().last_seq());
    while (true) {
      std::vector<LogRecord> batch;
      const absl::Status s = reader->Next(7, absl::Now(), &batch);
      if (s.code() == absl::StatusCode::kOutOfRange && !bootstrapped) {
        Bootstrap();
        bootstrapped = true;
        reader = primary_->log().NewReader(replica_->log().last_seq());
        continue;
      }
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) break;
      if (batch.empty()) break;
      const absl::Status applied = replica_->ApplyReplicated(std::move(batch));
      EXPECT_TRUE(applied.ok()) << applied;
    }
    EXPECT_EQ(replica_->log().last_seq(), primary_->log().last_seq());
    return bootstrapped;
  }

  void Rate(const std::string& user, const std::string& item, float value) {
    absl::StatusOr<RateResult> r = primary_->Rate({user, item, value, 0});
    ASSERT_TRUE(r.ok()) << r.status();
  }

  // The replica answers as the primary does.
  void ExpectSameAnswers(const std::vector<std::string>& users) {
    for (const std::string& user : users) {
      SCOPED_TRACE(user);
      RecommendQuery q;
      q.user = user;
      q.k = 10;
      absl::StatusOr<RecommendResult> p = primary_->Recommend(q);
      absl::StatusOr<RecommendResult> r = replica_->Recommend(q);
      ASSERT_TRUE(p.ok()) << p.status();
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(p->personalized, r->personalized);
      EXPECT_EQ(p->model_version, r->model_version);
      ASSERT_EQ(p->items.size(), r->items.size());
      for (size_t k = 0; k < p->items.size(); ++k) {
        EXPECT_EQ(p->items[k].item.id, r->items[k].item.id) << "rank " << k;
        EXPECT_EQ(p->items[k].item.title, r->items[k].item.title);
        EXPECT_NEAR(p->items[k].score, r->items[k].score, 1e-4);
      }
      absl::StatusOr<UserResult> pu = primary_->GetUser(user, 1000);
      absl::StatusOr<UserResult> ru = replica_->GetUser(user, 1000);
      ASSERT_EQ(pu.ok(), ru.ok());
      if (pu.ok()) {
        EXPECT_EQ(pu->rating_count, ru->rating_count);
      }
    }
    const EngineInfo pi = primary_->Info();
    const EngineInfo ri = replica_->Info();
    EXPECT_EQ(pi.users, ri.users);
    EXPECT_EQ(pi.items, ri.items);
    EXPECT_EQ(pi.retired_items, ri.retired_items);
    EXPECT_EQ(pi.ratings, ri.ratings);
    EXPECT_EQ(pi.version, ri.version);
  }

  RatingData data_;
  std::string primary_dir_, replica_dir_;
  std::unique_ptr<Engine> primary_, replica_;
};

TEST_F(ReplicaEngineTest, FollowsRatingsCatalogueAndErasures) {
  Rate("u1", "i7", 5);
  Rate("visitor", "i3", 4);         // a new user
  Rate("visitor", "brand-new", 5);  // and a new item
  Rate("u2", "brand-new", 3);
  std::vector<ItemUpdate> updates(2);
  updates[0].id = "i5";
  updates[0].retired = true;
  updates[1].id = "catalogue-only";
  updates[1].title = "Listed (2026)";
  ASSERT_TRUE(primary_->UpsertItems(updates).ok());
  for (int k = 0; k < 30; ++k) {
    Rate(absl::StrCat("u", k % 5), absl::StrCat("i", k), 1 + k % 5);
  }
  Pump();
  ExpectSameAnswers({"u0", "u1", "u2", "u3", "visitor", "nobody"});
  absl::StatusOr<ItemView> listed = replica_->GetItem("catalogue-only");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->title, "Listed (2026)");
  EXPECT_TRUE(replica_->GetItem("i5")->retired);

  // An erasure reaches the replica's files too. Read as it is written it
  // comes as a record...
  std::unique_ptr<LogReader> live =
      primary_->log().NewReader(replica_->log().last_seq());
  std::vector<LogRecord> erasure;
  ASSERT_TRUE(live->Next(10, absl::Now(), &erasure).ok());  // caught up
  ASSERT_TRUE(erasure.empty());
  ASSERT_TRUE(primary_->DeleteUser("visitor").ok());
  ASSERT_TRUE(live->Next(10, absl::Now(), &erasure).ok());
  ASSERT_EQ(erasure.size(), 1u);
  EXPECT_TRUE(erasure[0].erase_user);
  ASSERT_TRUE(replica_->ApplyReplicated(erasure).ok());
  EXPECT_EQ(replica_->GetUser("visitor", 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(AllBytes(replica_dir_), ::testing::Not(HasSubstr("visitor")));
  ExpectSameAnswers({"u0", "u1", "u2"});
  // ... and later, once the primary's snapshot has covered it, in that
  // snapshot.
  Rate("visitor", "i9", 4);
  Pump();
  ASSERT_TRUE(primary_->DeleteUser("visitor").ok());
  EXPECT_TRUE(Pump());
  EXPECT_EQ(replica_->GetUser("visitor", 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(AllBytes(replica_dir_), ::testing::Not(HasSubstr("visitor")));
  ExpectSameAnswers({"u0", "u1", "u2"});

  // A restart resumes from the replica's own files.
  Rate("u3", "i40", 2);
  Pump();
  OpenReplica();
  ExpectSameAnswers({"u0", "u3"});
  EXPECT_EQ(replica_->log().last_seq(), primary_->log().last_seq());
  Rate("u3", "i41", 4);
  Pump();
  ExpectSameAnswers({"u3"});
}

TEST_F(ReplicaEngineTest, InstallsTheSnapshotOfARetrainedModel) {
  for (int k = 0; k < 20; ++k) Rate(absl::StrCat("u", k), "i1", 4);
  Pump();
  // The replica runs ahead of the snapshot it installs: records after it
  // are applied again on the new model.
  absl::StatusOr<std::string> job = primary_->StartTraining({});
  ASSERT_TRUE(job.ok()) << job.status();
  primary_->WaitForTraining();
  ASSERT_EQ(primary_->generation(), 2u);
  Rate("late", "i2", 5);
  Pump();
  EXPECT_EQ(replica_->generation(), 1u);
  absl::StatusOr<SnapshotRef> ref = primary_->NewestSnapshot();
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->generation, 2u);
  ASSERT_LT(ref->log_sequence, replica_->log().last_seq());
  absl::StatusOr<Model> m = LoadModel(ref->path);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(replica_->InstallSnapshot(*std::move(m), 2).ok());
  // The log stays as it was; the records after the snapshot come again.
  EXPECT_EQ(replica_->log().last_seq(), primary_->log().last_seq());
  std::unique_ptr<LogReader> reader =
      primary_->log().NewReader(ref->log_sequence);
  std::vector<LogRecord> again;
  ASSERT_TRUE(reader->Next(100, absl::Now(), &again).ok());
  ASSERT_TRUE(replica_->ApplyReplicated(std::move(again)).ok());
  ExpectSameAnswers({"u1", "late"});
  // The retraining (a Train that pins nothing) selected the model; the
  // replica serves that choice, trials and all.
  const EngineInfo chosen = primary_->Info();
  const EngineInfo served = replica_->Info();
  EXPECT_FALSE(chosen.selection.empty());
  EXPECT_EQ(served.kind, chosen.kind);
  EXPECT_EQ(served.ranking_kind, chosen.ranking_kind);
  EXPECT_EQ(served.rating_kind, chosen.rating_kind);
  EXPECT_EQ(served.selection.summary, chosen.selection.summary);
  EXPECT_EQ(served.selection.trials.size(), chosen.selection.trials.size());
  OpenReplica();
  ExpectSameAnswers({"u1", "late"});

  // A replica behind the new snapshot: the log skips to it.
  ASSERT_TRUE(primary_->StartTraining({}).ok());
  primary_->WaitForTraining();
  Rate("later", "i3", 5);
  ASSERT_TRUE(primary_->WriteSnapshot().ok());
  ref = primary_->NewestSnapshot();
  ASSERT_TRUE(ref.ok()) << ref.status();
  ASSERT_GT(ref->log_sequence, replica_->log().last_seq());
  std::vector<LogRecord> none;
  EXPECT_EQ(primary_->log()
                .NewReader(replica_->log().last_seq())
                ->Next(10, absl::Now(), &none)
                .code(),
            absl::StatusCode::kOutOfRange);
  Bootstrap();
  ExpectSameAnswers({"u1", "late", "later"});
  OpenReplica();
  ExpectSameAnswers({"u1", "later"});
  EXPECT_EQ(replica_->log().last_seq(), primary_->log().last_seq());
}

TEST_F(ReplicaEngineTest, AGapInTheRecordsIsRefused) {
  Rate("u1", "i1", 4);
  Rate("u1", "i2", 4);
  std::unique_ptr<LogReader> reader =
      primary_->log().NewReader(replica_->log().last_seq());
  std::vector<LogRecord> two;
  ASSERT_TRUE(reader->Next(10, absl::Now(), &two).ok());
  ASSERT_EQ(two.size(), 2u);
  two.erase(two.begin());
  const absl::Status gap = replica_->ApplyReplicated(two);
  EXPECT_EQ(gap.code(), absl::StatusCode::kFailedPrecondition) << gap;
  EXPECT_EQ(replica_->Info().ratings,
            testing::SmallAlsModel(data_).user_ratings.cols.size());
}

TEST_F(ReplicaEngineTest, ReadsCanWaitForTheCallersOwnWrite) {
  absl::StatusOr<RateResult> mine = primary_->Rate({"u1", "i9", 5, 0});
  ASSERT_TRUE(mine.ok()) << mine.status();
  RecommendQuery q;
  q.user = "u1";
  q.min_log_sequence = mine->sequence;
  // The primary applied it before acknowledging it.
  EXPECT_TRUE(primary_->Recommend(q).ok());
  EXPECT_TRUE(primary_->GetUser("u1", 5, mine->sequence).ok());
  // A replica that has not applied it says so, until it has.
  const absl::StatusOr<RecommendResult> early = replica_->Recommend(q);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(early.status().message()),
              HasSubstr(absl::StrCat("not yet ", mine->sequence)));
  EXPECT_EQ(replica_->GetUser("u1", 5, mine->sequence).status().code(),
            absl::StatusCode::kUnavailable);
  q.min_log_sequence = 0;
  EXPECT_TRUE(replica_->Recommend(q).ok());  // any state will do
  Pump();
  q.min_log_sequence = mine->sequence;
  EXPECT_TRUE(replica_->Recommend(q).ok());
  EXPECT_EQ(replica_->applied_sequence(), mine->sequence);
  // A sequence from the future is not there yet on the primary either.
  q.min_log_sequence = mine->sequence + 1;
  EXPECT_EQ(primary_->Recommend(q).status().code(),
            absl::StatusCode::kUnavailable);

  // Installing a snapshot older than what was applied takes the state back
  // until the records after it come again.
  const uint64_t before = replica_->applied_sequence();
  ASSERT_TRUE(primary_->StartTraining({}).ok());
  primary_->WaitForTraining();
  absl::StatusOr<SnapshotRef> ref = primary_->NewestSnapshot();
  ASSERT_TRUE(ref.ok()) << ref.status();
  absl::StatusOr<Model> m = LoadModel(ref->path);
  ASSERT_TRUE(m.ok()) << m.status();
  m->log_sequence = before - 1;  // as if the snapshot ended one earlier
  ASSERT_TRUE(replica_->InstallSnapshot(*std::move(m), ref->generation).ok());
  EXPECT_EQ(replica_->applied_sequence(), before - 1);
  q.min_log_sequence = before;
  EXPECT_EQ(replica_->Recommend(q).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(ReplicaEngineTest, ReadersNeverWaitForCopyingOrInstalling) {
  std::atomic<bool> done{false};
  std::atomic<int64_t> answered{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      RecommendQuery q;
      q.k = 5;
      while (!done.load()) {
        q.user = absl::StrCat("u", (answered.load() + t) % 20);
        absl::StatusOr<RecommendResult> r = replica_->Recommend(q);
        EXPECT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->items.size(), 5u);
        ++answered;
      }
    });
  }
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 40; ++k) {
      Rate(absl::StrCat("u", k % 20), absl::StrCat("i", (k * 7 + round) % 120),
           1 + (k + round) % 5);
    }
    Pump();
    ASSERT_TRUE(primary_->StartTraining({}).ok());
    primary_->WaitForTraining();
    Bootstrap();
  }
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_GT(answered.load(), 0);
  Pump();
  ExpectSameAnswers({"u0", "u7", "u19"});
}

// A primary that accepts FollowLog and then says nothing, as one behind a
// network that drops packets would.
class SilentPrimary final : public v1::Replication::Service {
 public:
  grpc::Status FollowLog(grpc::ServerContext* ctx, const v1::FollowLogRequest*,
                         grpc::ServerWriter<v1::LogBatch>*) override {
    ++calls;
    while (!ctx->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    return grpc::Status::CANCELLED;
  }
  std::atomic<int> calls{0};
};

// What FollowLog sends carries an event whole: the resolved weight, that it
// adds, its type and id, so a replica folds in exactly what the primary did.
TEST(LogEntryTest, EventsRoundTripThroughTheWireForm) {
  LogRecord r;
  r.seq = 42;
  r.user = "u7";
  r.item = "a51";
  r.value = 1.5f;
  r.timestamp = 1700000000;
  r.add = true;
  r.event_type = "play";
  r.event_id = "session-9/3";
  v1::LogEntry e;
  ToLogEntry(r, &e);
  const LogRecord back = FromLogEntry(e);
  EXPECT_EQ(back.seq, 42u);
  EXPECT_EQ(back.user, "u7");
  EXPECT_EQ(back.item, "a51");
  EXPECT_EQ(back.value, 1.5f);
  EXPECT_EQ(back.timestamp, 1700000000);
  EXPECT_TRUE(back.add);
  EXPECT_EQ(back.event_type, "play");
  EXPECT_EQ(back.event_id, "session-9/3");
  EXPECT_FALSE(back.erase_user);
  // A rating stays a rating.
  LogRecord rating = r;
  rating.add = false;
  rating.event_type.clear();
  rating.event_id.clear();
  ToLogEntry(rating, &e);
  EXPECT_FALSE(FromLogEntry(e).add);
  EXPECT_EQ(FromLogEntry(e).event_type, "");
}

TEST(ReplicatorTest, GivesUpAStreamThePrimaryKeepsSilentAndOpensAnother) {
  SilentPrimary silent;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&silent);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  const RatingData data = testing::PlantedData(50, 40, 4, 0.2, 0.3, 3, true);
  EngineOptions opt;
  opt.data_dir = testing::MakeTempDir("replica");
  auto engine = Engine::Open(opt, [&] { return testing::SmallAlsModel(data); });
  ASSERT_TRUE(engine.ok()) << engine.status();
  const std::string target = absl::StrCat("127.0.0.1:", port);
  Replicator replicator(
      target, grpc::CreateChannel(target, grpc::InsecureChannelCredentials()),
      absl::Milliseconds(20), /*silence=*/absl::Milliseconds(300));
  replicator.Start(engine->get());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (silent.calls.load() < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(silent.calls.load(), 3);
  replicator.Stop();
  server->Shutdown();
}

// ---------------------------------------------------------------------------
// Two servers in this process: a primary and a replica following it.

class ReplicaServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartPrimary({}); }

  // The primary, with `security` for its gRPC port.
  void StartPrimary(const SecurityOptions& security) {
    primary_.reset();
    dir_ = testing::MakeTempDir("replicas");
    model_file_ = dir_ + "/first.rsm";
    ASSERT_TRUE(SaveModel(testing::SmallAlsModel(testing::PlantedData(
                              150, 120, 4, 0.15, 0.3, 8, true)),
                          model_file_)
                    .ok());
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.engine.data_dir = dir_ + "/primary";
    o.engine.train_threads = 2;
    o.model_file = model_file_;
    o.grace = absl::Seconds(1);
    o.security = security;
    primary_ = std::make_unique<Server>(o);
    ASSERT_TRUE(primary_->Start().ok());
    if (!security.tls()) primary_stub_ = Stub(primary_->port());
  }

  std::unique_ptr<Server> StartReplica(const ChannelOptions& how = {}) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.engine.data_dir = dir_ + "/replica";
    o.grace = absl::Seconds(1);
    o.replica = how;
    o.replica.target = absl::StrCat("127.0.0.1:", primary_->port());
    o.replica_retry = absl::Milliseconds(50);
    o.replica_start_timeout = absl::Seconds(2);
    auto r = std::make_unique<Server>(o);
    const absl::Status started = r->Start();
    EXPECT_TRUE(started.ok()) << started;
    return started.ok() ? std::move(r) : nullptr;
  }

  static std::shared_ptr<grpc::Channel> Channel(int port) {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                               grpc::InsecureChannelCredentials());
  }
  static std::unique_ptr<v1::Recommender::Stub> Stub(int port) {
    return v1::Recommender::NewStub(Channel(port));
  }

  grpc::Status Rate(v1::Recommender::Stub& stub, const std::string& user,
                    const std::string& item, float value) {
    grpc::ClientContext ctx;
    v1::RateRequest req;
    req.set_user_id(user);
    req.set_item_id(item);
    req.set_rating(value);
    v1::RateResponse resp;
    return stub.Rate(&ctx, req, &resp);
  }

  // Waits (up to 20 s) until the replica has applied everything the
  // primary's log holds and serves the primary's model.
  void WaitCaughtUp(Server& replica) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (replica.replicator()->status().applied_sequence ==
              primary_->engine()->log().last_seq() &&
          replica.engine()->generation() == primary_->engine()->generation()) {
        return;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "the replica is at seq "
                  << replica.engine()->log().last_seq() << ", version "
                  << replica.engine()->generation() << "; the primary at "
                  << primary_->engine()->log().last_seq() << ", version "
                  << primary_->engine()->generation();
  }

  static int64_t RatingsOf(Server& s, const std::string& user) {
    absl::StatusOr<UserResult> u = s.engine()->GetUser(user, 1);
    return u.ok() ? u->rating_count : -1;
  }

  std::string dir_, model_file_;
  std::unique_ptr<Server> primary_;
  std::unique_ptr<v1::Recommender::Stub> primary_stub_;
};

TEST_F(ReplicaServerTest, FollowsThePrimaryAndRefusesWrites) {
  ASSERT_TRUE(Rate(*primary_stub_, "early", "i1", 4).ok());
  std::unique_ptr<Server> replica = StartReplica();
  ASSERT_NE(replica, nullptr);
  // A new replica starts from the primary's snapshot and its log.
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "early"), 1);
  EXPECT_EQ(replica->replicator()->status().snapshots_installed, 1u);

  for (int k = 0; k < 50; ++k) {
    ASSERT_TRUE(Rate(*primary_stub_, absl::StrCat("u", k % 7),
                     absl::StrCat("i", k), 1 + k % 5)
                    .ok());
  }
  ASSERT_TRUE(Rate(*primary_stub_, "newcomer", "new-film", 5).ok());
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "newcomer"), 1);
  EXPECT_EQ(RatingsOf(*replica, "u3"), RatingsOf(*primary_, "u3"));

  // Reads answer from the copy, through gRPC.
  auto replica_stub = Stub(replica->port());
  {
    grpc::ClientContext ctx;
    v1::RecommendRequest req;
    req.set_user_id("u3");
    req.set_k(5);
    v1::RecommendResponse on_replica, on_primary;
    ASSERT_TRUE(replica_stub->Recommend(&ctx, req, &on_replica).ok());
    grpc::ClientContext ctx2;
    ASSERT_TRUE(primary_stub_->Recommend(&ctx2, req, &on_primary).ok());
    ASSERT_EQ(on_replica.items_size(), 5);
    for (int k = 0; k < 5; ++k) {
      EXPECT_EQ(on_replica.items(k).item().id(),
                on_primary.items(k).item().id());
    }
  }
  // Read your writes: the sequence the primary acknowledged, asked of the
  // replica, is answered once the replica holds it (UNAVAILABLE before).
  {
    grpc::ClientContext ctx;
    v1::RateRequest rate;
    rate.set_user_id("u3");
    rate.set_item_id("i77");
    rate.set_rating(5);
    v1::RateResponse acked;
    ASSERT_TRUE(primary_stub_->Rate(&ctx, rate, &acked).ok());
    v1::RecommendRequest req;
    req.set_user_id("u3");
    req.set_min_log_sequence(acked.sequence());
    grpc::Status s;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    do {
      grpc::ClientContext c;
      v1::RecommendResponse resp;
      s = replica_stub->Recommend(&c, req, &resp);
      if (s.ok()) break;
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
          << s.error_message();
      absl::SleepFor(absl::Milliseconds(5));
    } while (absl::Now() < deadline);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_GE(replica->engine()->applied_sequence(), acked.sequence());
  }
  // Writes do not: they name the primary.
  const grpc::Status refused = Rate(*replica_stub, "u1", "i1", 5);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(
      refused.error_message(),
      HasSubstr(absl::StrCat("read replica of 127.0.0.1:", primary_->port())));
  {
    grpc::ClientContext ctx;
    v1::TrainRequest req;
    v1::TrainResponse resp;
    EXPECT_EQ(replica_stub->Train(&ctx, req, &resp).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  // Nor does a replica serve replicas.
  {
    auto repl = v1::Replication::NewStub(Channel(replica->port()));
    grpc::ClientContext ctx;
    v1::FollowLogRequest req;
    auto reader = repl->FollowLog(&ctx, req);
    v1::LogBatch batch;
    EXPECT_FALSE(reader->Read(&batch));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }

  // A model trained on the primary reaches the replica with the ratings
  // that came after it.
  absl::StatusOr<std::string> job = primary_->engine()->StartTraining({});
  ASSERT_TRUE(job.ok()) << job.status();
  primary_->engine()->WaitForTraining();
  ASSERT_TRUE(Rate(*primary_stub_, "after-training", "i2", 3).ok());
  WaitCaughtUp(*replica);
  EXPECT_EQ(replica->engine()->generation(), 2u);
  EXPECT_EQ(RatingsOf(*replica, "after-training"), 1);
  EXPECT_EQ(replica->engine()->Info().ratings,
            primary_->engine()->Info().ratings);
  const ReplicaStatus st = replica->replicator()->status();
  EXPECT_TRUE(st.connected);
  EXPECT_EQ(st.snapshots_installed, 2u);
  const std::string metrics = RenderReplicaMetrics(st, absl::Now());
  EXPECT_THAT(metrics, HasSubstr("recsys_replica_connected 1\n"));
  EXPECT_THAT(metrics,
              HasSubstr("recsys_replica_snapshots_installed_total 2\n"));
  EXPECT_THAT(metrics, HasSubstr("recsys_replica_lag_records 0\n"));

  // An erasure on the primary reaches the replica.
  {
    grpc::ClientContext ctx;
    v1::DeleteUserRequest req;
    req.set_user_id("newcomer");
    v1::DeleteUserResponse resp;
    ASSERT_TRUE(primary_stub_->DeleteUser(&ctx, req, &resp).ok());
  }
  ASSERT_TRUE(Rate(*primary_stub_, "u1", "i99", 2).ok());
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "newcomer"), -1);
  ASSERT_TRUE(replica->Shutdown().ok());
}

TEST_F(ReplicaServerTest, RestartsFromItsOwnFilesOrTheNewestSnapshot) {
  std::unique_ptr<Server> replica = StartReplica();
  ASSERT_NE(replica, nullptr);
  ASSERT_TRUE(Rate(*primary_stub_, "a", "i1", 4).ok());
  WaitCaughtUp(*replica);
  ASSERT_TRUE(replica->Shutdown().ok());
  replica.reset();

  // Down for a while: what it missed is still in the primary's log.
  ASSERT_TRUE(Rate(*primary_stub_, "a", "i2", 4).ok());
  replica = StartReplica();
  ASSERT_NE(replica, nullptr);
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "a"), 2);
  EXPECT_EQ(replica->replicator()->status().snapshots_installed, 0u);
  ASSERT_TRUE(replica->Shutdown().ok());
  replica.reset();

  // Down while a snapshot covered the primary's log: it starts again from
  // that snapshot.
  ASSERT_TRUE(Rate(*primary_stub_, "a", "i3", 4).ok());
  ASSERT_TRUE(primary_->engine()->WriteSnapshot().ok());
  ASSERT_TRUE(Rate(*primary_stub_, "a", "i4", 4).ok());
  replica = StartReplica();
  ASSERT_NE(replica, nullptr);
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "a"), 4);
  EXPECT_EQ(replica->replicator()->status().snapshots_installed, 1u);

  // Started without --replica_of, its directory serves as a primary.
  ASSERT_TRUE(replica->Shutdown().ok());
  replica.reset();
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.engine.data_dir = dir_ + "/replica";
  o.grace = absl::Seconds(1);
  Server promoted(o);
  ASSERT_TRUE(promoted.Start().ok());
  EXPECT_EQ(RatingsOf(promoted, "a"), 4);
  auto stub = Stub(promoted.port());
  EXPECT_TRUE(Rate(*stub, "a", "i5", 4).ok());
  EXPECT_EQ(promoted.engine()->log().last_seq(),
            primary_->engine()->log().last_seq() + 1);
}

TEST_F(ReplicaServerTest, ReconnectsWhenThePrimaryComesBack) {
  std::unique_ptr<Server> replica = StartReplica();
  ASSERT_NE(replica, nullptr);
  ASSERT_TRUE(Rate(*primary_stub_, "a", "i1", 4).ok());
  WaitCaughtUp(*replica);
  const int port = primary_->port();
  ASSERT_TRUE(primary_->Shutdown().ok());
  primary_.reset();
  // Still answering reads meanwhile.
  EXPECT_EQ(RatingsOf(*replica, "a"), 1);
  absl::SleepFor(absl::Milliseconds(200));  // a few failed attempts
  EXPECT_FALSE(replica->replicator()->status().connected);

  ServerOptions o;
  o.listen = absl::StrCat("127.0.0.1:", port);
  o.engine.data_dir = dir_ + "/primary";
  o.grace = absl::Seconds(1);
  primary_ = std::make_unique<Server>(o);
  ASSERT_TRUE(primary_->Start().ok());
  primary_stub_ = Stub(primary_->port());
  ASSERT_TRUE(Rate(*primary_stub_, "a", "i2", 4).ok());
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "a"), 2);
  EXPECT_TRUE(replica->replicator()->status().connected);
}

TEST_F(ReplicaServerTest, AReplicaAheadOfItsPrimaryIsRefused) {
  std::unique_ptr<Server> replica = StartReplica();
  ASSERT_NE(replica, nullptr);
  auto repl = v1::Replication::NewStub(Channel(primary_->port()));
  grpc::ClientContext ctx;
  v1::FollowLogRequest req;
  req.set_after_sequence(primary_->engine()->log().last_seq() + 10);
  auto reader = repl->FollowLog(&ctx, req);
  v1::LogBatch batch;
  EXPECT_FALSE(reader->Read(&batch));
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("another primary"));
}

TEST_F(ReplicaServerTest, OverTlsTheReplicaNeedsThePrimarysToken) {
  const testing::TestCerts& certs = testing::GetTestCerts();
  if (!certs.error.empty()) GTEST_SKIP() << certs.error;
  SecurityOptions sec;
  sec.tls_cert = certs.server_cert;
  sec.tls_key = certs.server_key;
  sec.token = "replication-test-token-0123456789";
  StartPrimary(sec);
  ChannelOptions how;
  how.tls_ca = certs.ca;
  how.tls_server_name = testing::kTestServerName;

  // Without the token the primary refuses the snapshot, and a new replica
  // does not start.
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.engine.data_dir = dir_ + "/refused";
  o.replica = how;
  o.replica.target = absl::StrCat("127.0.0.1:", primary_->port());
  o.replica_start_timeout = absl::Seconds(2);
  Server refused(o);
  const absl::Status no_token = refused.Start();
  EXPECT_EQ(no_token.code(), absl::StatusCode::kUnauthenticated) << no_token;
  EXPECT_THAT(std::string(no_token.message()),
              HasSubstr("cannot fetch a snapshot from the primary"));

  how.token = sec.token;
  std::unique_ptr<Server> replica = StartReplica(how);
  ASSERT_NE(replica, nullptr);
  ASSERT_TRUE(primary_->engine()->Rate({"over-tls", "i1", 4, 0}).ok());
  WaitCaughtUp(*replica);
  EXPECT_EQ(RatingsOf(*replica, "over-tls"), 1);
}

}  // namespace
}  // namespace recsys
