// The gRPC service in process, over an in-process channel: Recommend's
// response must carry exactly what Engine::Recommend returns for the same
// query (the service builds the response from references into the serving
// state, written as bytes by server/wire.h), for every kind of query. Rate
// from many threads at once; the other unary calls against the engine; and
// every call before a model is loaded.
#include "server/service.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "models/train.h"
#include "net/channel.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RatingData data = testing::PlantedData(80, 60, 4, 0.2, 0.3, 5, true);
    // Titles too long for the small-string buffer, and 0 to 3 genres.
    const std::vector<std::string> genres = {"Action", "Children's", "Drama"};
    for (size_t i = 0; i < data.item_info.size(); ++i) {
      ItemInfo& info = data.item_info[i];
      info.title = absl::StrCat("A title long enough for the heap #", i);
      info.genres.clear();
      for (size_t g = 0; g < genres.size(); ++g) {
        if ((i >> g) & 1) info.genres.push_back(genres[g]);
      }
    }
    EngineOptions opt;
    opt.data_dir = testing::MakeTempDir("service");
    opt.train_threads = 1;
    opt.snapshot_every = 0;
    auto e = Engine::Open(opt, [&data]() -> absl::StatusOr<Model> {
      Hyperparameters p = DefaultHyperparameters(ModelKind::kAls);
      p.factors = 6;
      p.epochs = 4;
      TrainOptions topt;
      topt.threads = 1;
      return TrainModel(data, ModelKind::kAls, p, topt);
    });
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    // A new item (its description is empty) and a user folded in since.
    ASSERT_TRUE(
        engine_->Rate({"u3", "an-item-added-after-training", 5, 0}).ok());
    ASSERT_TRUE(engine_->Rate({"u3", "i7", 1, 0}).ok());

    service_.SetEngine(engine_.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Recommender::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // Sends `req` and checks the answer against the engine's for the same
  // query, field by field.
  void ExpectSameAsEngine(const v1::RecommendRequest& req) {
    SCOPED_TRACE(req.ShortDebugString());
    grpc::ClientContext ctx;
    v1::RecommendResponse resp;
    const grpc::Status s = stub_->Recommend(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();

    RecommendQuery q;
    q.user = req.user_id();
    q.k = req.k() == 0 ? 10 : req.k();
    q.include_rated = req.include_rated();
    q.exclude.assign(req.exclude_item_ids().begin(),
                     req.exclude_item_ids().end());
    q.genre = req.genre();
    q.candidates.assign(req.candidate_item_ids().begin(),
                        req.candidate_item_ids().end());
    for (const v1::SessionItem& it : req.session_items()) {
      q.session.push_back({it.item_id(), it.rating()});
    }
    absl::StatusOr<RecommendResult> want = engine_->Recommend(q);
    ASSERT_TRUE(want.ok()) << want.status();

    ASSERT_EQ(resp.items_size(), static_cast<int>(want->items.size()));
    for (int r = 0; r < resp.items_size(); ++r) {
      const v1::ScoredItem& got = resp.items(r);
      const RecommendedItem& w = want->items[static_cast<size_t>(r)];
      EXPECT_EQ(got.item().id(), w.item.id) << "rank " << r;
      EXPECT_EQ(got.item().title(), w.item.title) << "rank " << r;
      EXPECT_THAT(got.item().genres(),
                  ::testing::ElementsAreArray(w.item.genres))
          << "rank " << r;
      EXPECT_EQ(got.has_predicted_rating(), w.has_predicted_rating)
          << "rank " << r;
      EXPECT_EQ(got.predicted_rating(), w.predicted_rating) << "rank " << r;
      EXPECT_EQ(got.score(), w.score) << "rank " << r;
    }
    EXPECT_EQ(resp.strategy(), want->personalized ? v1::STRATEGY_PERSONALIZED
                                                  : v1::STRATEGY_POPULARITY);
    EXPECT_EQ(resp.model_version(), want->model_version);
    EXPECT_EQ(resp.feedback(), v1::FEEDBACK_EXPLICIT);
    EXPECT_THAT(resp.unknown_item_ids(),
                ::testing::ElementsAreArray(want->unknown_items));
  }

  // Rate from many client threads at once, so that calls queue behind a
  // running commit and are answered by its leader: every call is answered,
  // the valid ones once each with their own log position and the invalid
  // one per thread with INVALID_ARGUMENT, and the engine holds every valid
  // rating. Users are named `prefix` + thread.
  void RateFromManyThreads(v1::Recommender::Stub* stub,
                           const std::string& prefix) {
    constexpr int kThreads = 8, kCalls = 40;
    const int64_t before = engine_->Info().ratings_since_training;
    std::mutex mu;
    std::vector<uint64_t> sequences;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int n = 0; n < kCalls; ++n) {
          v1::RateRequest req;
          req.set_user_id(absl::StrCat(prefix, t));
          req.set_item_id(absl::StrCat("i", n));
          // One rating per thread is off the 1-5 scale.
          req.set_rating(n == 17 ? 9.0f : static_cast<float>(1 + n % 5));
          grpc::ClientContext ctx;
          // A call left unanswered fails the test instead of hanging it.
          ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(20));
          v1::RateResponse resp;
          const grpc::Status s = stub->Rate(&ctx, req, &resp);
          if (n == 17) {
            EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
                << s.error_message();
            continue;
          }
          ASSERT_TRUE(s.ok()) << s.error_message();
          EXPECT_EQ(resp.new_user(), n == 0);
          std::lock_guard<std::mutex> lock(mu);
          sequences.push_back(resp.sequence());
        }
      });
    }
    for (std::thread& th : threads) th.join();
    ASSERT_EQ(sequences.size(), size_t{kThreads * (kCalls - 1)});
    std::sort(sequences.begin(), sequences.end());
    EXPECT_EQ(std::adjacent_find(sequences.begin(), sequences.end()),
              sequences.end());
    EXPECT_EQ(engine_->Info().ratings_since_training - before,
              kThreads * (kCalls - 1));
    for (int t = 0; t < kThreads; ++t) {
      absl::StatusOr<UserResult> user =
          engine_->GetUser(absl::StrCat(prefix, t), 1);
      ASSERT_TRUE(user.ok()) << user.status();
      EXPECT_EQ(user->rating_count, kCalls - 1);
    }
  }

  std::unique_ptr<Engine> engine_;
  RecommenderService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Recommender::Stub> stub_;
};

TEST_F(ServiceTest, RecommendAnswersWhatTheEngineDoes) {
  std::vector<v1::RecommendRequest> reqs;
  for (const char* user : {"u0", "u3", "u17", "someone-new"}) {
    v1::RecommendRequest req;
    req.set_user_id(user);
    reqs.push_back(req);  // k = 0: the default 10
    req.set_k(1000);      // more than the catalogue
    reqs.push_back(req);
    req.set_k(7);
    req.set_include_rated(true);
    reqs.push_back(req);
    req.set_include_rated(false);
    req.add_exclude_item_ids("i1");
    req.add_exclude_item_ids("i2");
    req.add_exclude_item_ids("no-such-item");
    reqs.push_back(req);
    req.set_genre("Children's");
    reqs.push_back(req);
    req.clear_genre();
    for (const char* c : {"i5", "i9", "an-item-added-after-training", "i2",
                          "unknown-1", "unknown-2"}) {
      req.add_candidate_item_ids(c);
    }
    reqs.push_back(req);
  }
  // Visitors: session items instead of a user id.
  v1::RecommendRequest visitor;
  for (const auto& [item, rating] : std::vector<std::pair<const char*, float>>{
           {"i5", 5},
           {"an-item-added-after-training", 4},
           {"unknown-3", 2},
           {"i9", 1}}) {
    v1::SessionItem* it = visitor.add_session_items();
    it->set_item_id(item);
    it->set_rating(rating);
    reqs.push_back(visitor);
  }
  visitor.set_genre("Children's");
  reqs.push_back(visitor);
  for (const v1::RecommendRequest& req : reqs) ExpectSameAsEngine(req);
}

// Many calls at once, each with its own request and response: the per-call
// messages must not leak from one call into another.
TEST_F(ServiceTest, ConcurrentRecommendsGetTheirOwnAnswers) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int n = 0; n < 50; ++n) {
        v1::RecommendRequest req;
        req.set_user_id(absl::StrCat("u", (t * 50 + n) % 80));
        req.set_k(1 + (n % 12));
        ExpectSameAsEngine(req);
      }
    });
  }
  for (std::thread& th : threads) th.join();
}

// A request and an answer of more than 1 MB (6,000 unknown candidates of
// 200 bytes, each listed back), then small ones: the per-thread request and
// buffer let go of the big call's memory and still serve the next calls.
TEST_F(ServiceTest, ABigCallIsAnsweredAndSmallOnesAfterIt) {
  v1::RecommendRequest big;
  big.set_user_id("u3");
  big.add_candidate_item_ids("i5");
  for (int c = 0; c < 6000; ++c) {
    std::string id = absl::StrCat("unknown-", c, "-");
    id.resize(200, 'x');
    big.add_candidate_item_ids(id);
  }
  ASSERT_GT(big.ByteSizeLong(), size_t{1} << 20);
  ExpectSameAsEngine(big);
  for (const char* user : {"u0", "u3", "someone-new"}) {
    v1::RecommendRequest small;
    small.set_user_id(user);
    ExpectSameAsEngine(small);
  }
}

TEST_F(ServiceTest, ConcurrentRatesAreEachAnsweredAndKept) {
  RateFromManyThreads(stub_.get(), "rater-");
}

// The same with the two extreme budgets of the gRPC thread that leads a
// commit: none (the batcher's own thread leads every commit) and an hour
// (gRPC threads lead until nothing is queued).
TEST_F(ServiceTest, ConcurrentRatesWithEitherThreadLeading) {
  for (const auto budget :
       {std::chrono::microseconds(0), std::chrono::microseconds(3600000000)}) {
    SCOPED_TRACE(budget.count());
    RecommenderService service(budget);
    service.SetEngine(engine_.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    auto stub = v1::Recommender::NewStub(
        server->InProcessChannel(grpc::ChannelArguments()));
    RateFromManyThreads(stub.get(),
                        absl::StrCat("rater-", budget.count(), "-"));
    server->Shutdown();
  }
}

TEST_F(ServiceTest, RecommendErrorsCarryNoItems) {
  v1::RecommendRequest req;
  req.set_user_id("u0");
  req.set_k(-3);
  grpc::ClientContext ctx;
  v1::RecommendResponse resp;
  const grpc::Status s = stub_->Recommend(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.items_size(), 0);

  v1::RecommendRequest visitor;
  v1::SessionItem* it = visitor.add_session_items();
  it->set_item_id("i5");  // no rating: 0 is outside the scale
  grpc::ClientContext ctx2;
  const grpc::Status unrated = stub_->Recommend(&ctx2, visitor, &resp);
  EXPECT_EQ(unrated.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unrated.error_message(),
              ::testing::HasSubstr("session_items[0]: rating 0 is outside"));
}

// The service reads Recommend's request bytes itself: bytes that are not a
// RecommendRequest get INVALID_ARGUMENT.
TEST_F(ServiceTest, RecommendRefusesBytesThatDoNotParse) {
  grpc::GenericStub generic(
      server_->InProcessChannel(grpc::ChannelArguments()));
  // Field 1 (user_id) claims 100 bytes and holds 3.
  const std::string bad = std::string("\x0a\x64") + "abc";
  grpc::Slice slice(bad.data(), bad.size());
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ClientContext ctx;
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/recsys.v1.Recommender/Recommend",
                    grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      status = std::move(s);
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  // (Not the empty user id's complaint: the bytes were refused as a whole.)
  EXPECT_THAT(status.error_message(),
              ::testing::HasSubstr("not a RecommendRequest"));
}

// The quick unary calls other than Recommend and Rate (callback methods,
// answered on the thread that received them) carry what the engine says.
TEST_F(ServiceTest, TheOtherUnaryCallsAnswerWhatTheEngineDoes) {
  {
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
    const EngineInfo want = engine_->Info();
    EXPECT_EQ(info.kind(), ModelKindName(want.kind));
    EXPECT_EQ(info.version(), want.version);
    EXPECT_EQ(info.factors(), want.factors);
    EXPECT_EQ(info.users(), want.users);
    EXPECT_EQ(info.items(), want.items);
    EXPECT_EQ(info.ratings_since_training(), want.ratings_since_training);
    EXPECT_EQ(info.log_sequence(), want.log_sequence);
    EXPECT_EQ(info.scale().max(), want.scale.max);
  }
  {
    v1::GetUserRequest req;
    req.set_user_id("u3");
    req.set_recent(2);
    grpc::ClientContext ctx;
    v1::GetUserResponse resp;
    ASSERT_TRUE(stub_->GetUser(&ctx, req, &resp).ok());
    absl::StatusOr<UserResult> want = engine_->GetUser("u3", 2);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(resp.user_id(), "u3");
    EXPECT_EQ(resp.rating_count(), want->rating_count);
    ASSERT_EQ(resp.recent_size(), 2);
    // Newest first: the two ratings SetUp added.
    EXPECT_EQ(resp.recent(0).item().id(), want->recent[0].item.id);
    EXPECT_EQ(resp.recent(0).item().id(), "i7");
    EXPECT_EQ(resp.recent(0).rating(), 1.0f);
    EXPECT_EQ(resp.recent(1).item().id(), "an-item-added-after-training");
  }
  {
    v1::SimilarItemsRequest req;
    req.set_item_id("i7");
    req.set_k(5);
    grpc::ClientContext ctx;
    v1::SimilarItemsResponse resp;
    ASSERT_TRUE(stub_->SimilarItems(&ctx, req, &resp).ok());
    absl::StatusOr<SimilarResult> want = engine_->SimilarItems("i7", 5);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(resp.item().id(), "i7");
    EXPECT_EQ(resp.item().title(), want->item.title);
    ASSERT_EQ(resp.items_size(), static_cast<int>(want->similar.size()));
    for (int r = 0; r < resp.items_size(); ++r) {
      EXPECT_EQ(resp.items(r).item().id(), want->similar[r].first.id);
      EXPECT_EQ(resp.items(r).similarity(), want->similar[r].second);
    }
  }
  {
    v1::SimilarItemsRequest req;
    req.set_item_id("no-such-item");
    grpc::ClientContext ctx;
    v1::SimilarItemsResponse resp;
    EXPECT_EQ(stub_->SimilarItems(&ctx, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::TrainRequest req;
    req.set_model_kind("no-such-kind");
    grpc::ClientContext ctx;
    v1::TrainResponse resp;
    EXPECT_EQ(stub_->Train(&ctx, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::TrainRequest req;
    req.set_model_kind("sgd");
    req.set_select(false);
    req.set_epochs(2);
    grpc::ClientContext ctx;
    v1::TrainResponse resp;
    const grpc::Status s = stub_->Train(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_THAT(resp.job_id(), ::testing::StartsWith("train-"));
    engine_->WaitForTraining();
  }
  {
    v1::CancelTrainingRequest req;
    req.set_job_id("no-such-job");
    grpc::ClientContext ctx;
    v1::CancelTrainingResponse resp;
    EXPECT_EQ(stub_->CancelTraining(&ctx, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    // A job that only a cancel ends: the watcher sees CANCELLED.
    v1::TrainRequest train;
    train.set_epochs(100000);
    grpc::ClientContext ctx;
    v1::TrainResponse started;
    ASSERT_TRUE(stub_->Train(&ctx, train, &started).ok());
    v1::CancelTrainingRequest req;
    req.set_job_id(started.job_id());
    grpc::ClientContext cancel_ctx;
    v1::CancelTrainingResponse resp;
    const grpc::Status cancelled =
        stub_->CancelTraining(&cancel_ctx, req, &resp);
    EXPECT_TRUE(cancelled.ok()) << cancelled.error_message();
    v1::WatchTrainingRequest watch;
    watch.set_job_id(started.job_id());
    grpc::ClientContext watch_ctx;
    auto reader = stub_->WatchTraining(&watch_ctx, watch);
    v1::TrainingEvent ev, last;
    while (reader->Read(&ev)) last = ev;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(last.state(), v1::TrainingEvent::STATE_CANCELLED);
    grpc::ClientContext again_ctx;
    EXPECT_EQ(stub_->CancelTraining(&again_ctx, req, &resp).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
}

// A Train call that pins nothing runs model selection: WatchTraining
// streams each trial as it finishes, and GetModelInfo then says what ranks,
// what predicts ratings, and every trial with its score.
TEST_F(ServiceTest, TrainWithNothingPinnedSelectsAndReportsTheTrials) {
  v1::TrainRequest train;
  train.set_budget(300);  // room for the rating part (215) and a search
  grpc::ClientContext ctx;
  v1::TrainResponse started;
  const grpc::Status s = stub_->Train(&ctx, train, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::WatchTrainingRequest watch;
  watch.set_job_id(started.job_id());
  grpc::ClientContext watch_ctx;
  auto reader = stub_->WatchTraining(&watch_ctx, watch);
  v1::TrainingEvent ev, last;
  int trials = 0;
  while (reader->Read(&ev)) {
    if (ev.has_trial()) {
      ++trials;
      EXPECT_EQ(ev.state(), v1::TrainingEvent::STATE_RUNNING);
      EXPECT_FALSE(ev.trial().candidate().empty());
      EXPECT_TRUE(ev.trial().part() == "ranking" ||
                  ev.trial().part() == "rating");
    }
    last = ev;
  }
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_EQ(last.state(), v1::TrainingEvent::STATE_SUCCEEDED) << last.error();
  EXPECT_GT(trials, 3);

  grpc::ClientContext info_ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(
      stub_->GetModelInfo(&info_ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.version(), last.model_version());
  const v1::ModelSelection& sel = info.selection();
  EXPECT_EQ(sel.trials_size(), trials);
  EXPECT_EQ(sel.budget(), 300);
  EXPECT_LE(sel.work(), 300);
  EXPECT_GT(sel.validation_users(), 0);
  EXPECT_FALSE(sel.summary().empty());
  int chosen = 0;
  for (const v1::SelectionTrial& t : sel.trials()) chosen += t.chosen();
  EXPECT_EQ(chosen, 2);  // one ranking, one rating part
  EXPECT_FALSE(info.ranking_kind().empty());
  EXPECT_FALSE(info.rating_kind().empty());
  EXPECT_GT(info.last_validation_rmse(), 0);

  // Selection off: the kind exactly as told, and no trials.
  v1::TrainRequest exact;
  exact.set_model_kind("ials");
  exact.set_select(false);
  grpc::ClientContext exact_ctx;
  ASSERT_TRUE(stub_->Train(&exact_ctx, exact, &started).ok());
  engine_->WaitForTraining();
  grpc::ClientContext info2_ctx;
  ASSERT_TRUE(
      stub_->GetModelInfo(&info2_ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.kind(), "ials");
  EXPECT_EQ(info.ranking_kind(), "ials");
  EXPECT_EQ(info.rating_kind(), "baseline");
  EXPECT_EQ(info.selection().trials_size(), 0);

  // A ranking setting pinned through the RPC is never varied.
  v1::TrainRequest pinned;
  pinned.set_budget(300);
  pinned.set_rank_factors(12);
  pinned.set_reg_exponent(0.5f);
  grpc::ClientContext pinned_ctx;
  ASSERT_TRUE(stub_->Train(&pinned_ctx, pinned, &started).ok());
  engine_->WaitForTraining();
  grpc::ClientContext info3_ctx;
  ASSERT_TRUE(
      stub_->GetModelInfo(&info3_ctx, v1::GetModelInfoRequest(), &info).ok());
  int ials = 0;
  for (const v1::SelectionTrial& t : info.selection().trials()) {
    if (t.kind() != "ials") continue;
    ++ials;
    EXPECT_THAT(t.candidate(), ::testing::HasSubstr("factors=12 "));
    EXPECT_THAT(t.candidate(), ::testing::HasSubstr("reg_exponent=0.5 "));
  }
  EXPECT_GT(ials, 0);

  v1::TrainRequest bad;
  bad.set_budget(-1);
  grpc::ClientContext bad_ctx;
  EXPECT_EQ(stub_->Train(&bad_ctx, bad, &started).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// A model of implicit feedback: Recommend's items carry no predicted_rating
// and the response says why; Rate takes events, and a retried one (same
// event_id) is a duplicate with the first one's sequence.
TEST(ImplicitServiceTest, NoPredictedRatingsAndRetriedEventsCountOnce) {
  RatingData data = testing::PlantedData(80, 60, 4, 0.2, 0.3, 5, true);
  data.feedback = Feedback::kImplicit;
  EngineOptions opt;
  opt.data_dir = testing::MakeTempDir("service-implicit");
  opt.snapshot_every = 0;
  auto engine =
      Engine::Open(opt, [&data] { return testing::SmallIalsModel(data); });
  ASSERT_TRUE(engine.ok()) << engine.status();
  RecommenderService service;
  service.SetEngine(engine->get());
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::Recommender::NewStub(
      server->InProcessChannel(grpc::ChannelArguments()));

  v1::RecommendRequest req;
  req.set_user_id("u0");
  grpc::ClientContext ctx;
  v1::RecommendResponse resp;
  ASSERT_TRUE(stub->Recommend(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.feedback(), v1::FEEDBACK_IMPLICIT);
  ASSERT_GT(resp.items_size(), 0);
  for (const v1::ScoredItem& it : resp.items()) {
    EXPECT_FALSE(it.has_predicted_rating()) << it.item().id();
  }

  v1::RateRequest play;
  play.set_user_id("u0");
  play.set_item_id("i7");
  play.set_event_type("play");
  play.set_count(2);
  play.set_event_id("play-1");
  v1::RateResponse first, retry;
  grpc::ClientContext ctx1, ctx2;
  ASSERT_TRUE(stub->Rate(&ctx1, play, &first).ok());
  EXPECT_FALSE(first.duplicate());
  ASSERT_TRUE(stub->Rate(&ctx2, play, &retry).ok());
  EXPECT_TRUE(retry.duplicate());
  EXPECT_EQ(retry.sequence(), first.sequence());
  EXPECT_EQ((*engine)->log().last_seq(), first.sequence());

  grpc::ClientContext info_ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&info_ctx, {}, &info).ok());
  EXPECT_EQ(info.feedback(), v1::FEEDBACK_IMPLICIT);
  EXPECT_EQ(info.event_weights().at("play"), 1.0f);
  server->Shutdown();
}

// A client with the retry policy (recsys-client's) rides through a server
// that is still loading: its call waits, backing off, and succeeds once the
// model is in; without the policy the same call fails UNAVAILABLE at once.
TEST(ServiceWithoutModelTest, ARetryingClientRidesThroughTheLoad) {
  RecommenderService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ChannelOptions o;
  o.target = absl::StrCat("127.0.0.1:", port);
  auto plain = v1::Recommender::NewStub(*MakeChannel(o));
  o.retry_unavailable = true;
  auto retrying = v1::Recommender::NewStub(*MakeChannel(o));
  {
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    EXPECT_EQ(plain->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info)
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  const RatingData data = testing::PlantedData(40, 30, 3, 0.3, 0.3, 5, true);
  EngineOptions opt;
  opt.data_dir = testing::MakeTempDir("service-load");
  opt.snapshot_every = 0;
  std::unique_ptr<Engine> engine;
  std::thread loader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    auto e = Engine::Open(opt, [&] { return testing::SmallAlsModel(data); });
    ASSERT_TRUE(e.ok()) << e.status();
    engine = *std::move(e);
    service.SetEngine(engine.get());
  });
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::ModelInfo info;
  const grpc::Status s =
      retrying->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
  loader.join();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.kind(), "als");
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(300));
  server->Shutdown();
}

// Before a model is loaded (the server answers while its first model
// trains, or its log replays), every call fails UNAVAILABLE, the code
// clients retry, and says why.
TEST(ServiceWithoutModelTest, EveryCallIsUnavailableAndSaysWhy) {
  RecommenderService service;
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::Recommender::NewStub(
      server->InProcessChannel(grpc::ChannelArguments()));
  auto expect = [](const std::string& call, const grpc::Status& s) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << call;
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("no model")) << call;
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("retry")) << call;
  };
  // One unary call (a method of the stub) with its own context.
  auto expect_unary = [&](const std::string& call, auto method, const auto& req,
                          auto resp) {
    grpc::ClientContext ctx;
    expect(call, ((*stub).*method)(&ctx, req, &resp));
  };
  using Stub = v1::Recommender::Stub;
  v1::RecommendRequest recommend;
  recommend.set_user_id("u0");
  expect_unary("Recommend", &Stub::Recommend, recommend,
               v1::RecommendResponse());
  v1::RateRequest rate;
  rate.set_user_id("u0");
  rate.set_item_id("i0");
  rate.set_rating(3);
  expect_unary("Rate", &Stub::Rate, rate, v1::RateResponse());
  expect_unary("Train", &Stub::Train, v1::TrainRequest(), v1::TrainResponse());
  v1::SimilarItemsRequest similar;
  similar.set_item_id("i0");
  expect_unary("SimilarItems", &Stub::SimilarItems, similar,
               v1::SimilarItemsResponse());
  v1::GetUserRequest user;
  user.set_user_id("u0");
  expect_unary("GetUser", &Stub::GetUser, user, v1::GetUserResponse());
  expect_unary("GetModelInfo", &Stub::GetModelInfo, v1::GetModelInfoRequest(),
               v1::ModelInfo());
  v1::DeleteUserRequest erase;
  erase.set_user_id("u0");
  expect_unary("DeleteUser", &Stub::DeleteUser, erase,
               v1::DeleteUserResponse());
  v1::DeleteUsersRequest erase_many;
  erase_many.add_user_ids("u0");
  expect_unary("DeleteUsers", &Stub::DeleteUsers, erase_many,
               v1::DeleteUsersResponse());
  v1::UpsertItemsRequest upsert;
  upsert.add_items()->set_item_id("i0");
  expect_unary("UpsertItems", &Stub::UpsertItems, upsert,
               v1::UpsertItemsResponse());
  v1::GetItemRequest item;
  item.set_item_id("i0");
  expect_unary("GetItem", &Stub::GetItem, item, v1::GetItemResponse());
  v1::CancelTrainingRequest cancel;
  cancel.set_job_id("train-1");
  expect_unary("CancelTraining", &Stub::CancelTraining, cancel,
               v1::CancelTrainingResponse());
  {
    grpc::ClientContext ctx;
    auto stream = stub->RateStream(&ctx);
    stream->WritesDone();
    v1::RateStreamResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    expect("RateStream", stream->Finish());
  }
  {
    v1::WatchTrainingRequest req;
    req.set_job_id("train-1");
    grpc::ClientContext ctx;
    auto reader = stub->WatchTraining(&ctx, req);
    v1::TrainingEvent ev;
    EXPECT_FALSE(reader->Read(&ev));
    expect("WatchTraining", reader->Finish());
  }
  server->Shutdown();
}

}  // namespace
}  // namespace recsys
