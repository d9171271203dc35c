// The client commands against a fake in-process Recommender over a real
// channel: what they print, what they send, and how failures read.
#include "client/client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

void SetItem(v1::Item* item, const std::string& id, const std::string& title,
             std::vector<std::string> genres) {
  item->set_id(id);
  item->set_title(title);
  for (auto& g : genres) item->add_genres(g);
}

// Canned answers, plus a record of what Rate and RateStream saw. Ratings
// above 5 are rejected, as a server on the 1..5 scale would, and so are
// events of type "bogus"; an event with event_id "dup" is acknowledged as a
// duplicate. RateStream acknowledges in batches of kAckBatch, newest first,
// to exercise the index-to-line mapping.
class FakeRecommender final : public v1::Recommender::Service {
 public:
  static constexpr int kAckBatch = 3;

  grpc::Status Recommend(grpc::ServerContext*,
                         const v1::RecommendRequest* request,
                         v1::RecommendResponse* response) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_recommend_ = *request;
    }
    if (request->user_id() == "err") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "no model loaded");
    }
    if (request->min_log_sequence() > 3) {  // a replica that is behind
      return grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("this server has applied the log up to seq 3, not "
                       "yet ",
                       request->min_log_sequence(),
                       ": retry shortly, or ask the primary"));
    }
    response->set_strategy(request->user_id() == "new"
                               ? v1::STRATEGY_POPULARITY
                               : v1::STRATEGY_PERSONALIZED);
    response->set_model_version(7);
    // User "plays" stands for a model of implicit feedback: no ratings.
    const bool implicit = request->user_id() == "plays";
    response->set_feedback(implicit ? v1::FEEDBACK_IMPLICIT
                                    : v1::FEEDBACK_EXPLICIT);
    auto add = [&](const std::string& id, const std::string& title,
                   std::vector<std::string> genres, float rating) {
      v1::ScoredItem* s = response->add_items();
      SetItem(s->mutable_item(), id, title, std::move(genres));
      if (!implicit) s->set_predicted_rating(rating);
      s->set_score(implicit ? rating / 10 : rating);
    };
    add("50", "Star Wars (1977)", {"Action", "Sci-Fi"}, 4.871f);
    add("408", "Close Shave, A (1995)", {"Animation", "Comedy"}, 4.5f);
    add("1", "Misérables, Les (1995)", {"Drama"}, 3.25f);
    return grpc::Status::OK;
  }

  // Why the server would refuse `request`, or "" when it would not.
  static std::string Refusal(const v1::RateRequest& request) {
    if (request.rating() > 5) return "rating outside [1, 5]";
    if (request.event_type() == "bogus") return "unknown event type 'bogus'";
    return "";
  }

  grpc::Status Rate(grpc::ServerContext*, const v1::RateRequest* request,
                    v1::RateResponse* response) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_rate_ = *request;
    }
    const std::string refusal = Refusal(*request);
    if (!refusal.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, refusal);
    }
    response->set_sequence(42);
    response->set_new_user(request->user_id() == "newbie");
    response->set_duplicate(request->event_id() == "dup");
    return grpc::Status::OK;
  }

  grpc::Status RateStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::RateStreamResponse, v1::RateRequest>* stream)
      override {
    v1::RateRequest request;
    v1::RateStreamResponse pending;
    uint64_t index = 0;
    int64_t acked = 0;
    bool stall = false;
    auto flush = [&] {
      if (pending.acks_size() == 0) return;
      std::reverse(pending.mutable_acks()->begin(),
                   pending.mutable_acks()->end());
      acked += pending.acks_size();
      stream->Write(pending);
      pending.Clear();
    };
    while (stream->Read(&request)) {
      if (request.user_id() == "stall") stall = true;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stream_received_;
        stream_requests_.push_back(request);
        max_outstanding_ =
            std::max(max_outstanding_, static_cast<int64_t>(index + 1) - acked);
      }
      if (stall) continue;  // never acknowledge: the client must give up
      v1::RatingAck* ack = pending.add_acks();
      ack->set_index(index++);
      const std::string refusal = Refusal(request);
      if (!refusal.empty()) {
        ack->set_code(3);
        ack->set_error(refusal);
      } else {
        ack->set_accepted(true);
        ack->set_sequence(index);
        ack->set_duplicate(request.event_id() == "dup");
      }
      if (pending.acks_size() >= kAckBatch) flush();
    }
    while (stall && !context->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    flush();
    std::lock_guard<std::mutex> lock(mu_);
    stream_acked_ += acked;
    return grpc::Status::OK;
  }

  grpc::Status Train(grpc::ServerContext*, const v1::TrainRequest* request,
                     v1::TrainResponse* response) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_train_ = *request;
    }
    response->set_job_id(request->model_kind() == "fail" ? "job-fail"
                                                         : "job-1");
    return grpc::Status::OK;
  }

  grpc::Status WatchTraining(
      grpc::ServerContext*, const v1::WatchTrainingRequest* request,
      grpc::ServerWriter<v1::TrainingEvent>* writer) override {
    const std::string& job = request->job_id();
    if (job != "job-1" && job != "job-fail") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no job " + job);
    }
    v1::TrainingEvent e;
    e.set_job_id(job);
    e.set_epochs(3);
    e.set_state(v1::TrainingEvent::STATE_RUNNING);
    writer->Write(e);
    if (job == "job-1") {  // a model selection's trial, as it finishes
      v1::TrainingEvent trial = e;
      v1::SelectionTrial* t = trial.mutable_trial();
      t->set_candidate("ials factors=64 reg=0.1");
      t->set_kind("ials");
      t->set_part("ranking");
      t->set_ndcg(0.3125);
      t->set_rmse(-1);
      t->set_seconds(0.25);
      writer->Write(trial);
    }
    const int epochs = job == "job-fail" ? 1 : 3;
    for (int i = 1; i <= epochs; ++i) {
      e.set_epoch(i);
      e.set_train_rmse(1.0 - 0.1 * i);
      e.set_validation_rmse(1.1 - 0.1 * i);
      e.set_elapsed_seconds(0.5 * i);
      writer->Write(e);
    }
    if (job == "job-fail") {
      e.set_state(v1::TrainingEvent::STATE_FAILED);
      e.set_error("diverged");
    } else {
      e.set_state(v1::TrainingEvent::STATE_SUCCEEDED);
      e.set_model_version(8);
      e.set_ratings_folded_after(2);
    }
    writer->Write(e);
    return grpc::Status::OK;
  }

  grpc::Status SimilarItems(grpc::ServerContext*,
                            const v1::SimilarItemsRequest* request,
                            v1::SimilarItemsResponse* response) override {
    if (request->item_id() != "50") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown item");
    }
    SetItem(response->mutable_item(), "50", "Star Wars (1977)", {"Action"});
    v1::SimilarItem* s = response->add_items();
    SetItem(s->mutable_item(), "172", "Empire Strikes Back, The (1980)",
            {"Action", "Sci-Fi"});
    s->set_similarity(0.9312f);
    response->set_model_version(7);
    return grpc::Status::OK;
  }

  grpc::Status GetUser(grpc::ServerContext*, const v1::GetUserRequest* request,
                       v1::GetUserResponse* response) override {
    response->set_user_id(request->user_id());
    response->set_rating_count(2);
    response->set_personalized(true);
    v1::UserRating* r = response->add_recent();
    SetItem(r->mutable_item(), "50", "Star Wars (1977)", {});
    r->set_rating(4.5f);
    r->set_timestamp(978300760);
    r = response->add_recent();
    SetItem(r->mutable_item(), "1", "Toy Story (1995)", {});
    r->set_rating(3);
    return grpc::Status::OK;
  }

  grpc::Status GetModelInfo(grpc::ServerContext*,
                            const v1::GetModelInfoRequest*,
                            v1::ModelInfo* info) override {
    info->set_kind("sgd");
    info->set_version(7);
    info->set_factors(128);
    info->set_users(943);
    info->set_items(1682);
    info->set_ratings(100000);
    info->mutable_scale()->set_min(1);
    info->mutable_scale()->set_max(5);
    info->set_last_validation_rmse(-1);
    info->set_ranking_kind("ials + popularity prior");
    info->set_rating_kind("bayes");
    v1::ModelSelection* sel = info->mutable_selection();
    sel->set_summary("hybrid: ranking ials; ratings bayes");
    sel->add_trials()->set_candidate("popularity");
    sel->set_budget(400);
    sel->set_work(351);
    info->set_feedback(v1::FEEDBACK_IMPLICIT);
    (*info->mutable_event_weights())["play"] = 1;
    (*info->mutable_event_weights())["click"] = 0.25f;
    return grpc::Status::OK;
  }

  std::mutex mu_;
  v1::RecommendRequest last_recommend_;
  v1::RateRequest last_rate_;
  v1::TrainRequest last_train_;
  int64_t stream_received_ = 0;
  int64_t stream_acked_ = 0;
  int64_t max_outstanding_ = 0;
  std::vector<v1::RateRequest> stream_requests_;
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    options_.target = absl::StrCat("127.0.0.1:", port);
    options_.timeout = absl::Seconds(5);
    channel_ = grpc::CreateChannel(options_.target,
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Recommender::NewStub(channel_);
    io_.in = &in_;
    io_.out = &out_;
    io_.err = &err_;
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  absl::Status RateText(const std::string& contents, RateFileSummary* summary,
                        int max_in_flight = 1024) {
    const std::string path = testing::MakeTempDir("rate") + "/ratings.csv";
    testing::WriteFile(path, contents);
    RateFileOptions command;
    command.path = path;
    command.max_in_flight = max_in_flight;
    return RunRateFile(options_, command, *stub_, io_, summary);
  }

  // `event --file` of `contents`, written to a file named `name`.
  absl::Status EventText(const std::string& contents, RateFileSummary* summary,
                         const std::string& name = "events.csv") {
    const std::string path = testing::MakeTempDir("event") + "/" + name;
    testing::WriteFile(path, contents);
    RateFileOptions command;
    command.path = path;
    command.events = true;
    return RunRateFile(options_, command, *stub_, io_, summary);
  }

  // What RateStream received, in order.
  std::vector<v1::RateRequest> StreamRequests() {
    std::lock_guard<std::mutex> lock(service_.mu_);
    return service_.stream_requests_;
  }

  FakeRecommender service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Recommender::Stub> stub_;
  ClientOptions options_;
  std::istringstream in_;
  std::ostringstream out_, err_;
  Streams io_;
};

// Whether `text` is one JSON value. Fields are checked by parsing into the
// response message, or by exact substrings of our own JSON: reading a
// google::protobuf::Struct's map crashes Debian's protobuf under TSan.
bool IsJson(const std::string& text) {
  google::protobuf::Value value;
  const auto status = google::protobuf::util::JsonStringToMessage(text, &value);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << text;
  return status.ok();
}

template <typename Message>
Message FromJson(const std::string& text) {
  Message message;
  const auto status =
      google::protobuf::util::JsonStringToMessage(text, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << text;
  return message;
}

TEST_F(ClientTest, RecommendPrintsTableAndSendsEveryOption) {
  RecommendOptions command;
  command.user = "1";
  command.k = 3;
  command.genre = "Comedy";
  command.include_rated = true;
  command.exclude = {"2", "3"};
  command.candidates = {"50", "408", "1"};
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  const std::string out = out_.str();
  EXPECT_THAT(out,
              AllOf(HasSubstr("personalized"), HasSubstr("model version 7"),
                    HasSubstr("Star Wars (1977)"), HasSubstr("4.87"),
                    HasSubstr("Action|Sci-Fi"), HasSubstr("3.25"),
                    HasSubstr("Misérables, Les (1995)")));
  // Columns line up although one title holds a two-byte character.
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  ASSERT_GE(lines.size(), 5u);
  EXPECT_EQ(lines[2].find("Star Wars"), lines[1].find("title"));
  EXPECT_EQ(lines[4].find("Drama") - lines[4].find("Mis"),
            lines[2].find("Action") - lines[2].find("Star") + 1);

  std::lock_guard<std::mutex> lock(service_.mu_);
  const v1::RecommendRequest& sent = service_.last_recommend_;
  EXPECT_EQ(sent.user_id(), "1");
  EXPECT_EQ(sent.k(), 3);
  EXPECT_EQ(sent.genre(), "Comedy");
  EXPECT_TRUE(sent.include_rated());
  EXPECT_EQ(sent.exclude_item_ids_size(), 2);
  EXPECT_EQ(sent.candidate_item_ids_size(), 3);
}

// Fewer items than asked for, from candidates, with the user's rated items
// left out (the default): the table says they may be why.
TEST_F(ClientTest, RecommendSaysRatedItemsWereLeftOut) {
  const std::string hint =
      "(items the user has rated are left out; --include-rated keeps them)";
  RecommendOptions command;
  command.user = "1";
  command.k = 10;  // the fake answers 3
  command.candidates = {"50", "408", "1", "7"};
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), HasSubstr(hint));

  out_.str("");
  command.include_rated = true;
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), Not(HasSubstr(hint)));

  out_.str("");
  command.include_rated = false;
  command.candidates.clear();  // nothing narrowed: fewer is not from that
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), Not(HasSubstr(hint)));

  // As many candidates (one listed twice) as items answered: none left out.
  out_.str("");
  command.candidates = {"50", "408", "1", "50"};
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), Not(HasSubstr(hint)));
}

TEST_F(ClientTest, RecommendSaysPopularityForNewUsers) {
  RecommendOptions command;
  command.user = "new";
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), HasSubstr("popularity"));
}

TEST_F(ClientTest, RecommendOfImplicitModelShowsScoresNotRatings) {
  RecommendOptions command;
  command.user = "plays";
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), HasSubstr("score"));
  EXPECT_THAT(out_.str(), HasSubstr("0.487"));  // 4.871 / 10, a score
  EXPECT_THAT(out_.str(), Not(HasSubstr("4.87")));
}

TEST_F(ClientTest, RecommendJsonIsOneObject) {
  options_.json = true;
  RecommendOptions command;
  command.user = "1";
  ASSERT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
  const std::string out = out_.str();
  ASSERT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  const auto json = FromJson<v1::RecommendResponse>(out);
  EXPECT_EQ(json.strategy(), v1::STRATEGY_PERSONALIZED);
  EXPECT_EQ(json.model_version(), 7u);
  ASSERT_EQ(json.items_size(), 3);
  EXPECT_FLOAT_EQ(json.items(0).predicted_rating(), 4.871f);
  EXPECT_EQ(json.items(0).item().title(), "Star Wars (1977)");
  // Proto field names, and zero values printed rather than left out.
  EXPECT_THAT(out, AllOf(HasSubstr("\"model_version\":\"7\""),
                         HasSubstr("\"unknown_item_ids\":[]")));
}

TEST_F(ClientTest, RecommendNeedsUser) {
  const absl::Status s = RunRecommend(options_, {}, *stub_, io_);
  const Failure f = DescribeFailure("recommend", s, options_);
  EXPECT_EQ(f.exit_code, 2);
  EXPECT_THAT(f.message, HasSubstr("--user"));
}

// A k or recent of 0 would reach the server as "unset" and get 10 back.
TEST_F(ClientTest, CountsBelowOneAreUsageErrors) {
  RecommendOptions recommend;
  recommend.user = "1";
  SimilarOptions similar;
  similar.item = "50";
  for (int k : {0, -2}) {
    SCOPED_TRACE(k);
    recommend.k = k;
    similar.k = k;
    const Failure r = DescribeFailure(
        "recommend", RunRecommend(options_, recommend, *stub_, io_), options_);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.message, absl::StrCat("recsys-client: recommend: -k must be "
                                      "at least 1, got ",
                                      k));
    const Failure s = DescribeFailure(
        "similar", RunSimilar(options_, similar, *stub_, io_), options_);
    EXPECT_EQ(s.exit_code, 2);
    EXPECT_THAT(s.message, HasSubstr("similar: -k must be at least 1"));
  }
  UserOptions user;
  user.user = "1";
  user.recent = 0;
  const Failure u =
      DescribeFailure("user", RunUser(options_, user, *stub_, io_), options_);
  EXPECT_EQ(u.exit_code, 2);
  EXPECT_EQ(u.message,
            "recsys-client: user: --recent must be at least 1, got 0");
  // Nothing reached the server.
  EXPECT_EQ(service_.last_recommend_.user_id(), "");
}

TEST_F(ClientTest, ServerErrorNamesTheCode) {
  RecommendOptions command;
  command.user = "err";
  const absl::Status s = RunRecommend(options_, command, *stub_, io_);
  ASSERT_FALSE(s.ok());
  const Failure f = DescribeFailure("recommend", s, options_);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_EQ(f.message,
            "recsys-client: recommend failed: FAILED_PRECONDITION: no model "
            "loaded");
}

// The server's own UNAVAILABLE (a replica behind the caller's write) is not
// a server that cannot be reached.
TEST_F(ClientTest, AReplicaBehindTheWriteIsNotAnUnreachableServer) {
  RecommendOptions command;
  command.user = "1";
  command.min_log_sequence = 9;
  const absl::Status s = RunRecommend(options_, command, *stub_, io_);
  EXPECT_EQ(service_.last_recommend_.min_log_sequence(), 9u);
  const Failure f = DescribeFailure("recommend", s, options_);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_EQ(f.message,
            "recsys-client: recommend: the server has not applied log "
            "sequence 9 yet (UNAVAILABLE: this server has applied the log up "
            "to seq 3, not yet 9: retry shortly, or ask the primary)");
  command.min_log_sequence = 3;
  EXPECT_TRUE(RunRecommend(options_, command, *stub_, io_).ok());
}

TEST_F(ClientTest, RateUnary) {
  RateOptions command;
  command.user = "newbie";
  command.item = "50";
  command.rating = 4.5f;
  ASSERT_TRUE(RunRate(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("sequence 42"), HasSubstr("new user: yes"),
                    HasSubstr("new item: no")));

  command.rating = 9;
  const absl::Status s = RunRate(options_, command, *stub_, io_);
  EXPECT_THAT(DescribeFailure("rate", s, options_).message,
              HasSubstr("rate failed: INVALID_ARGUMENT: rating outside"));

  command.rating.reset();
  EXPECT_EQ(
      DescribeFailure("rate", RunRate(options_, command, *stub_, io_), options_)
          .exit_code,
      2);
}

TEST_F(ClientTest, RateFileReportsRejectionsAndBadLinesByLine) {
  RateFileSummary summary;
  const absl::Status s = RateText(
      "userId,movieId,rating,timestamp\n"  // 1: header
      "1,10,4,100\n"                       // 2
      "oops\n"                             // 3: unparsable
      "1,11,6,100\n"                       // 4: rejected
      "\n"                                 // 5
      "2,10,3.5\r\n"                       // 6
      "2,12,7\n"                           // 7: rejected
      "3,13,abc\n"                         // 8: unparsable
      "3,14,5\n",                          // 9
      &summary);
  const Failure f = DescribeFailure("rate", s, options_);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.message, HasSubstr("2 ratings rejected, 2 lines unparsable"));

  EXPECT_EQ(summary.lines, 9);
  EXPECT_EQ(summary.sent, 5);
  EXPECT_EQ(summary.accepted, 3);
  EXPECT_EQ(summary.rejected, 2);
  EXPECT_EQ(summary.unparsable, 2);
  EXPECT_EQ(summary.unexpected_acks, 0);
  EXPECT_EQ(summary.unacknowledged, 0);
  ASSERT_EQ(summary.rejections.size(), 2u);
  EXPECT_EQ(summary.rejections[0].line, 4);
  EXPECT_EQ(summary.rejections[0].code, "INVALID_ARGUMENT");
  EXPECT_EQ(summary.rejections[1].line, 7);
  ASSERT_EQ(summary.bad_lines.size(), 2u);
  EXPECT_EQ(summary.bad_lines[0].line, 3);
  EXPECT_EQ(summary.bad_lines[1].line, 8);
  EXPECT_THAT(
      out_.str(),
      AllOf(HasSubstr("sent 5, accepted 3, rejected 2, unparsable 2"),
            HasSubstr("ratings.csv:4: INVALID_ARGUMENT: rating outside"),
            HasSubstr("ratings.csv:7: INVALID_ARGUMENT"),
            HasSubstr("ratings.csv:3: expected user,item,rating"),
            HasSubstr("ratings.csv:8: rating 'abc' is not a number"),
            HasSubstr("ratings/s")));

  std::lock_guard<std::mutex> lock(service_.mu_);
  EXPECT_EQ(service_.stream_received_, 5);
  EXPECT_EQ(service_.stream_acked_, 5);
  ASSERT_EQ(service_.stream_requests_.size(), 5u);
  EXPECT_EQ(service_.stream_requests_[0].timestamp(), 100);
  EXPECT_EQ(service_.stream_requests_[2].user_id(), "2");
  EXPECT_FLOAT_EQ(service_.stream_requests_[2].rating(), 3.5f);
}

TEST_F(ClientTest, RateFileFromStdinWithOtherDelimiters) {
  RateFileOptions command;
  command.path = "-";
  RateFileSummary summary;
  in_.str("1::10::4::978300760\n2::11::3\n");
  ASSERT_TRUE(RunRateFile(options_, command, *stub_, io_, &summary).ok())
      << out_.str();
  EXPECT_EQ(summary.file, "stdin");
  EXPECT_EQ(summary.accepted, 2);

  in_.clear();
  in_.str("u1\ti1\t5\nu2\ti2\t1\t0\n");
  ASSERT_TRUE(RunRateFile(options_, command, *stub_, io_, &summary).ok());
  EXPECT_EQ(summary.accepted, 2);
  EXPECT_TRUE(err_.str().empty()) << "no progress line without a terminal";
}

TEST_F(ClientTest, RateFileWithoutDelimiterIsUnusable) {
  RateFileSummary summary;
  const absl::Status s = RateText("\nnothing to see here\n", &summary);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("ratings.csv:2: no ','"));
  std::lock_guard<std::mutex> lock(service_.mu_);
  EXPECT_EQ(service_.stream_received_, 0);
}

TEST_F(ClientTest, RateFileJsonSummary) {
  options_.json = true;
  RateFileSummary summary;
  EXPECT_FALSE(RateText("1,2,3\n1,3,9\n", &summary).ok());
  const std::string out = out_.str();
  ASSERT_TRUE(IsJson(out));
  EXPECT_THAT(out,
              AllOf(HasSubstr("\"file\":\""), HasSubstr("\"sent\":2,"),
                    HasSubstr("\"accepted\":1,"), HasSubstr("\"rejected\":1,"),
                    HasSubstr("\"rejections\":[{\"line\":2,\"code\":"
                              "\"INVALID_ARGUMENT\",\"error\":"),
                    HasSubstr("\"bad_lines\":[]}")));
}

TEST_F(ClientTest, BigFileStreamsWithBoundedInFlight) {
  constexpr int kLines = 20000;
  constexpr int kInFlight = 64;
  std::string text;
  for (int line = 1; line <= kLines; ++line) {
    absl::StrAppend(&text, "u", line % 97, ",i", line % 1013, ",",
                    line % 1000 == 0 ? 9 : 1 + line % 5, "\n");
  }
  RateFileSummary summary;
  io_.err_is_tty = true;
  RateText(text, &summary, kInFlight).IgnoreError();
  // The progress line is redrawn at most ten times a second, then erased.
  const std::string err = err_.str();
  const auto redraws = std::count(err.begin(), err.end(), '\r');
  EXPECT_LE(redraws, 2 + static_cast<int64_t>(summary.elapsed_seconds * 10));
  EXPECT_TRUE(absl::EndsWith(err, "\r\033[K")) << err;
  EXPECT_EQ(summary.sent, kLines);
  EXPECT_EQ(summary.rejected, kLines / 1000);
  EXPECT_EQ(summary.accepted, kLines - kLines / 1000);
  EXPECT_EQ(summary.unacknowledged, 0);
  EXPECT_EQ(summary.unexpected_acks, 0);
  ASSERT_EQ(summary.rejections.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(summary.rejections[i].line, 1000 * (i + 1));
  }
  std::lock_guard<std::mutex> lock(service_.mu_);
  EXPECT_EQ(service_.stream_received_, kLines);
  EXPECT_EQ(service_.stream_acked_, kLines);
  EXPECT_LE(service_.max_outstanding_, kInFlight);
}

TEST_F(ClientTest, RateFileGivesUpWhenAcknowledgementsStop) {
  options_.timeout = absl::Milliseconds(300);
  RateFileSummary summary;
  const auto start = std::chrono::steady_clock::now();
  const absl::Status s = RateText("stall,1,3\nstall,2,3\n", &summary);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(DescribeFailure("rate", s, options_).message,
              HasSubstr("DEADLINE_EXCEEDED: no acknowledgement"));
  EXPECT_EQ(summary.unacknowledged, 2);
}

// The fields of an event RateRequest, as one string to compare.
std::string EventFields(const v1::RateRequest& r) {
  return absl::StrCat(r.user_id(), "|", r.item_id(), "|", r.event_type(), "|",
                      r.count(), "|", r.timestamp(), "|", r.event_id(), "|",
                      r.rating());
}

TEST_F(ClientTest, EventSendsTheEventFields) {
  EventOptions command;
  command.user = "newbie";
  command.item = "51";
  command.type = "play";
  command.count = 3;
  command.event_id = "e1";
  command.timestamp = 978300760;
  ASSERT_TRUE(RunEvent(options_, command, *stub_, io_).ok());
  {
    std::lock_guard<std::mutex> lock(service_.mu_);
    EXPECT_EQ(EventFields(service_.last_rate_),
              "newbie|51|play|3|978300760|e1|0");
  }
  EXPECT_EQ(out_.str(),
            "accepted: user newbie, item 51: play x3 at log sequence 42 (new "
            "user: yes, new item: no)\n");

  // The defaults: count 1, no id, the server's clock.
  out_.str("");
  EventOptions plain;
  plain.user = "7";
  plain.item = "50";
  plain.type = "click";
  ASSERT_TRUE(RunEvent(options_, plain, *stub_, io_).ok());
  {
    std::lock_guard<std::mutex> lock(service_.mu_);
    EXPECT_EQ(EventFields(service_.last_rate_), "7|50|click|1|0||0");
  }
  EXPECT_THAT(out_.str(), HasSubstr("user 7, item 50: click x1 at log"));

  command.type = "bogus";
  EXPECT_THAT(DescribeFailure("event", RunEvent(options_, command, *stub_, io_),
                              options_)
                  .message,
              HasSubstr("event failed: INVALID_ARGUMENT: unknown event type"));
}

TEST_F(ClientTest, EventSaysWhenItWasADuplicate) {
  EventOptions command;
  command.user = "7";
  command.item = "51";
  command.type = "play";
  command.event_id = "dup";
  ASSERT_TRUE(RunEvent(options_, command, *stub_, io_).ok());
  EXPECT_EQ(out_.str(),
            "accepted as a duplicate: event dup (user 7, item 51: play x1) "
            "was already recorded at log sequence 42; nothing new recorded\n");

  options_.json = true;
  out_.str("");
  ASSERT_TRUE(RunEvent(options_, command, *stub_, io_).ok());
  const auto json = FromJson<v1::RateResponse>(out_.str());
  EXPECT_TRUE(json.duplicate());
  EXPECT_EQ(json.sequence(), 42u);
  EXPECT_THAT(out_.str(), HasSubstr("\"duplicate\":true"));

  // Not a duplicate: the field is printed all the same.
  out_.str("");
  command.event_id = "e2";
  ASSERT_TRUE(RunEvent(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), HasSubstr("\"duplicate\":false"));
}

TEST_F(ClientTest, EventNeedsUserItemAndType) {
  EventOptions full;
  full.user = "7";
  full.item = "51";
  full.type = "play";
  const std::pair<std::function<void(EventOptions&)>, const char*> cases[] = {
      {[](EventOptions& o) { o.user.clear(); }, "event needs --user"},
      {[](EventOptions& o) { o.item.clear(); }, "event needs --item"},
      {[](EventOptions& o) { o.type.clear(); }, "event needs --type"},
      {[](EventOptions& o) { o.count = -1; },
       "event: --count must be a finite number >= 0, got -1"},
  };
  for (const auto& [change, message] : cases) {
    EventOptions command = full;
    change(command);
    const Failure f = DescribeFailure(
        "event", RunEvent(options_, command, *stub_, io_), options_);
    EXPECT_EQ(f.exit_code, 2) << message;
    EXPECT_THAT(f.message, HasSubstr(message));
  }
  // Nothing reached the server.
  std::lock_guard<std::mutex> lock(service_.mu_);
  EXPECT_EQ(service_.last_rate_.user_id(), "");
}

TEST_F(ClientTest, EventFileCsvWithHeader) {
  RateFileSummary summary;
  const absl::Status s = EventText(
      "user,item,type,count,timestamp,event_id\n"  // 1: header
      "7,51,play\n"                                // 2
      "7,52,play,3\n"                              // 3
      "8,51,click,,100\n"                          // 4
      "8,53,play,2,200,e1\n"                       // 5
      "8,53,play,2,200,dup\r\n",                   // 6: a duplicate
      &summary);
  ASSERT_TRUE(s.ok()) << s << "\n" << out_.str();
  EXPECT_TRUE(summary.events);
  EXPECT_EQ(summary.lines, 6);
  EXPECT_EQ(summary.sent, 5);
  EXPECT_EQ(summary.accepted, 5);
  EXPECT_EQ(summary.duplicates, 1);
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("events.csv: 6 lines, sent 5, accepted 5 (1 "
                              "duplicate), rejected 0, unparsable 0\n"),
                    HasSubstr(" events/s\n")));
  const std::vector<v1::RateRequest> sent = StreamRequests();
  ASSERT_EQ(sent.size(), 5u);
  EXPECT_EQ(EventFields(sent[0]), "7|51|play|0|0||0");
  EXPECT_EQ(EventFields(sent[1]), "7|52|play|3|0||0");
  EXPECT_EQ(EventFields(sent[2]), "8|51|click|0|100||0");
  EXPECT_EQ(EventFields(sent[3]), "8|53|play|2|200|e1|0");
  EXPECT_EQ(EventFields(sent[4]), "8|53|play|2|200|dup|0");
}

TEST_F(ClientTest, EventFileCsvWithoutHeaderFromStdin) {
  RateFileOptions command;
  command.path = "-";
  command.events = true;
  RateFileSummary summary;
  in_.str("7\t51\tplay\t1\n\n8\t52\tclick\n");
  ASSERT_TRUE(RunRateFile(options_, command, *stub_, io_, &summary).ok())
      << out_.str();
  EXPECT_EQ(summary.file, "stdin");
  EXPECT_EQ(summary.accepted, 2);
  EXPECT_EQ(summary.duplicates, 0);
  EXPECT_THAT(out_.str(), HasSubstr("accepted 2 (0 duplicates)"));
  const std::vector<v1::RateRequest> sent = StreamRequests();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(EventFields(sent[0]), "7|51|play|1|0||0");
  EXPECT_EQ(EventFields(sent[1]), "8|52|click|0|0||0");
}

TEST_F(ClientTest, EventFileJsonLines) {
  RateFileSummary summary;
  options_.json = true;
  const absl::Status s = EventText(
      R"({"user":"7","item":"51","type":"play","count":3,"timestamp":0,"event_id":"e1"})"
      "\n"
      R"({"user":8,"item":52,"type":"click"})"
      "\n"
      R"(  {"user":"8","item":"53","type":"play","event_id":"dup"})"
      "\n",
      &summary, "events.jsonl");
  ASSERT_TRUE(s.ok()) << s << "\n" << out_.str();
  EXPECT_EQ(summary.accepted, 3);
  EXPECT_EQ(summary.duplicates, 1);
  const std::string out = out_.str();
  ASSERT_TRUE(IsJson(out));
  EXPECT_THAT(out, AllOf(HasSubstr("\"accepted\":3,\"duplicates\":1,"),
                         HasSubstr("\"events_per_second\":")));
  const std::vector<v1::RateRequest> sent = StreamRequests();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(EventFields(sent[0]), "7|51|play|3|0|e1|0");
  EXPECT_EQ(EventFields(sent[1]), "8|52|click|0|0||0");
  EXPECT_EQ(EventFields(sent[2]), "8|53|play|0|0|dup|0");
}

TEST_F(ClientTest, EventFileNamesTheLinesOfBadAndRejectedEvents) {
  // Lines 2 and 6 are bad CSV, 4, 5 and 7 bad JSON (no type, cut short, an
  // unknown key), and the server refuses the type of line 3.
  const std::vector<std::string> lines = {
      "7,51,play",
      "7,51",
      "7,52,bogus",
      R"({"user":"7","item":"53"})",
      R"({"user":"7","item":"53","type":)",
      "8,51,play,lots",
      R"({"user":"8","item":"9","type":"play","weight":2})",
      R"({"user":"8","item":"54","type":"play"})",
  };
  RateFileSummary summary;
  const absl::Status s =
      EventText(absl::StrCat(absl::StrJoin(lines, "\n"), "\n"), &summary);
  const Failure f = DescribeFailure("event", s, options_);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.message, HasSubstr("1 event rejected, 5 lines unparsable"));
  EXPECT_EQ(summary.sent, 3);
  EXPECT_EQ(summary.accepted, 2);
  EXPECT_EQ(summary.rejected, 1);
  ASSERT_EQ(summary.bad_lines.size(), 5u);
  EXPECT_EQ(summary.bad_lines[0].line, 2);
  EXPECT_EQ(summary.bad_lines[4].line, 7);
  EXPECT_THAT(
      out_.str(),
      AllOf(HasSubstr("events.csv:3: INVALID_ARGUMENT: unknown event type"),
            HasSubstr("events.csv:2: expected user,item,type[,count[,"
                      "timestamp[,event_id]]] but found 2 fields"),
            HasSubstr("events.csv:4: \"type\" is missing or empty"),
            HasSubstr("events.csv:5: not a JSON object"),
            HasSubstr("events.csv:6: count 'lots' is not a number"),
            HasSubstr("events.csv:7: unknown key \"weight\"")));
}

TEST_F(ClientTest, EventFileWithoutDelimiterOrJsonIsUnusable) {
  RateFileSummary summary;
  const absl::Status s = EventText("\nplay\n", &summary);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("events.csv:2: no ','"),
                    HasSubstr("user,item,type[,count[,timestamp[,event_id]]] "
                              "or a JSON object")));
  EXPECT_TRUE(StreamRequests().empty());
}

TEST_F(ClientTest, TrainWaitPrintsEpochsAndFinalState) {
  TrainRpcOptions command;
  command.model = "als";
  command.factors = 16;
  command.wait = true;
  ASSERT_TRUE(RunTrain(options_, command, *stub_, io_).ok());
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("started training job job-1"),
                    HasSubstr("epoch   1/3  train RMSE 0.9000  validation "
                              "RMSE 1.0000  0.50s"),
                    HasSubstr("trial ranking nDCG@10 0.3125   0.25s  ials "
                              "factors=64 reg=0.1"),
                    HasSubstr("epoch   3/3"), HasSubstr("job job-1 SUCCEEDED"),
                    HasSubstr("serving model version 8")));
  {
    std::lock_guard<std::mutex> lock(service_.mu_);
    EXPECT_EQ(service_.last_train_.model_kind(), "als");
    EXPECT_EQ(service_.last_train_.factors(), 16);
    EXPECT_FALSE(service_.last_train_.has_epochs());
  }

  command.model = "fail";
  out_.str("");
  const absl::Status s = RunTrain(options_, command, *stub_, io_);
  EXPECT_THAT(out_.str(), HasSubstr("job job-fail STATE_FAILED"));
  const Failure f = DescribeFailure("train", s, options_);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.message, HasSubstr("diverged"));
}

TEST_F(ClientTest, TrainJsonIsOneObjectPerEvent) {
  options_.json = true;
  TrainRpcOptions command;
  command.wait = true;
  ASSERT_TRUE(RunTrain(options_, command, *stub_, io_).ok());
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  // The job id, start, a selection trial, 3 epochs, the end.
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(FromJson<v1::TrainResponse>(lines[0]).job_id(), "job-1");
  EXPECT_EQ(FromJson<v1::TrainingEvent>(lines[2]).trial().ndcg(), 0.3125);
  EXPECT_EQ(FromJson<v1::TrainingEvent>(lines[6]).state(),
            v1::TrainingEvent::STATE_SUCCEEDED);
}

TEST_F(ClientTest, SimilarUserAndInfo) {
  SimilarOptions similar;
  similar.item = "50";
  ASSERT_TRUE(RunSimilar(options_, similar, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("Star Wars (1977)"),
                                HasSubstr("Empire Strikes Back, The (1980)"),
                                HasSubstr("0.931")));
  similar.item = "nope";
  EXPECT_THAT(
      DescribeFailure("similar", RunSimilar(options_, similar, *stub_, io_),
                      options_)
          .message,
      HasSubstr("NOT_FOUND"));

  out_.str("");
  UserOptions user;
  user.user = "1";
  ASSERT_TRUE(RunUser(options_, user, *stub_, io_).ok());
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("user 1: 2 ratings"),
                                HasSubstr("2000-12-31 22:12"),
                                HasSubstr("Toy Story (1995)")));

  out_.str("");
  ASSERT_TRUE(RunInfo(options_, *stub_, io_).ok());
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("kind: sgd\n"), HasSubstr("version: 7\n"),
                    HasSubstr("scale: 1..5\n"),
                    HasSubstr("last_validation_rmse: none\n"),
                    HasSubstr("ranking: ials + popularity prior\n"),
                    HasSubstr("ratings_by: bayes\n"),
                    HasSubstr("selection: hybrid: ranking ials; ratings "
                              "bayes\n"),
                    HasSubstr("selection_trials: 1 (work 351 of 400 units"),
                    HasSubstr("feedback: implicit\n"),
                    HasSubstr("event_weights: click=0.25, play=1\n")));
}

TEST_F(ClientTest, Health) {
  ASSERT_TRUE(RunHealth(options_, {}, channel_, io_).ok());
  EXPECT_EQ(out_.str(), "SERVING\n");

  server_->GetHealthCheckService()->SetServingStatus(false);
  out_.str("");
  const absl::Status s = RunHealth(options_, {}, channel_, io_);
  EXPECT_EQ(out_.str(), "NOT_SERVING\n");
  EXPECT_EQ(DescribeFailure("health", s, options_).exit_code, 1);

  options_.json = true;
  out_.str("");
  RunHealth(options_, {}, channel_, io_).IgnoreError();
  EXPECT_TRUE(IsJson(out_.str()));
  EXPECT_EQ(out_.str(), "{\"service\":\"\",\"status\":\"NOT_SERVING\"}\n");
}

TEST_F(ClientTest, InteractivePromptsUntilBlankOrEof) {
  in_.str("1\n\n");
  ASSERT_TRUE(RunInteractive(options_, {}, *stub_, io_).ok());
  std::string out = out_.str();
  EXPECT_THAT(out, HasSubstr("Star Wars (1977)"));
  size_t prompts = 0;
  for (size_t at = 0; (at = out.find("Enter user id (blank to quit): ", at)) !=
                      std::string::npos;
       ++at) {
    ++prompts;
  }
  EXPECT_EQ(prompts, 2u);

  in_.clear();
  in_.str("err\n1");  // an error does not end the loop; EOF does
  out_.str("");
  ASSERT_TRUE(RunInteractive(options_, {}, *stub_, io_).ok());
  EXPECT_THAT(err_.str(), HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(out_.str(), HasSubstr("Star Wars (1977)"));
}

int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(ClientUnreachableTest, SaysItCannotReachTheServerQuickly) {
  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", UnusedPort());
  options.timeout = absl::Seconds(3);
  auto channel =
      grpc::CreateChannel(options.target, grpc::InsecureChannelCredentials());
  auto stub = v1::Recommender::NewStub(channel);
  std::ostringstream out, err;
  Streams io;
  io.out = &out;
  io.err = &err;

  const auto start = std::chrono::steady_clock::now();
  const absl::Status s = RunInfo(options, *stub, io);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  const Failure f = DescribeFailure("info", s, options, false);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.message,
              AllOf(HasSubstr(absl::StrCat("cannot reach recsys server at ",
                                           options.target, " (UNAVAILABLE: ")),
                    HasSubstr("is recsys-server running?")));

  EXPECT_THAT(
      DescribeFailure("health", RunHealth(options, {}, channel, io), options)
          .message,
      HasSubstr("cannot reach"));

  std::istringstream in("1,2,3\n");
  io.in = &in;
  RateFileOptions file;
  file.path = "-";
  EXPECT_THAT(DescribeFailure("rate", RunRateFile(options, file, *stub, io),
                              options, false)
                  .message,
              HasSubstr("cannot reach"));
}

TEST(ClientParseTest, RatingLines) {
  EXPECT_EQ(internal::DetectDelimiter("1::2::3"), "::");
  EXPECT_EQ(internal::DetectDelimiter("1\t2\t3"), "\t");
  EXPECT_EQ(internal::DetectDelimiter("1,2,3"), ",");
  EXPECT_EQ(internal::DetectDelimiter("1 2 3"), "");

  v1::RateRequest r;
  ASSERT_TRUE(
      internal::ParseRatingLine(" u1 , i9 , 4.5 , 77 \r", ",", &r).ok());
  EXPECT_EQ(r.user_id(), "u1");
  EXPECT_EQ(r.item_id(), "i9");
  EXPECT_FLOAT_EQ(r.rating(), 4.5f);
  EXPECT_EQ(r.timestamp(), 77);
  EXPECT_FALSE(internal::ParseRatingLine("u,i", ",", &r).ok());
  EXPECT_FALSE(internal::ParseRatingLine("u,i,1,2,3", ",", &r).ok());
  EXPECT_FALSE(internal::ParseRatingLine(",i,1", ",", &r).ok());
  EXPECT_FALSE(internal::ParseRatingLine("u,i,x", ",", &r).ok());
  EXPECT_FALSE(internal::ParseRatingLine("u,i,1,yesterday", ",", &r).ok());
}

TEST(ClientParseTest, EventLines) {
  v1::RateRequest r;
  ASSERT_TRUE(
      internal::ParseEventLine(" u1 , i9 , play , 2.5 , 77 , e-1 \r", ",", &r)
          .ok());
  EXPECT_EQ(EventFields(r), "u1|i9|play|2.5|77|e-1|0");
  // A request reused for the next line keeps nothing of the last one.
  ASSERT_TRUE(internal::ParseEventLine("u2::i3::click", "::", &r).ok());
  EXPECT_EQ(EventFields(r), "u2|i3|click|0|0||0");
  ASSERT_TRUE(internal::ParseEventLine("u,i,play,,,e2", ",", &r).ok());
  EXPECT_EQ(EventFields(r), "u|i|play|0|0|e2|0");
  for (const char* bad : {"u,i", "u,i,play,1,2,e,extra", ",i,play", "u,,play",
                          "u,i,", "u,i,play,x", "u,i,play,1,yesterday"}) {
    EXPECT_FALSE(internal::ParseEventLine(bad, ",", &r).ok()) << bad;
  }
  EXPECT_FALSE(internal::ParseEventLine("u i play", "", &r).ok());

  EXPECT_TRUE(internal::IsEventHeader("user,item,type", ","));
  EXPECT_TRUE(
      internal::IsEventHeader("userId\titemId\tEvent_Type\tcount", "\t"));
  EXPECT_FALSE(internal::IsEventHeader("7,51,play", ","));
  EXPECT_FALSE(internal::IsEventHeader("user,item", ","));
  EXPECT_TRUE(internal::IsJsonLine("  {\"user\":1}"));
  EXPECT_FALSE(internal::IsJsonLine("7,51,play"));
}

TEST(ClientParseTest, EventJson) {
  v1::RateRequest r;
  ASSERT_TRUE(internal::ParseEventJson(
                  R"({"user":"7","item":"51","type":"play","count":3,)"
                  R"("timestamp":978300760,"event_id":"e1"})",
                  &r)
                  .ok());
  EXPECT_EQ(EventFields(r), "7|51|play|3|978300760|e1|0");
  // Ids may be integers; the optional keys may be left out.
  ASSERT_TRUE(internal::ParseEventJson(
                  R"( {"item": 51, "user": 7, "type": "click"} )", &r)
                  .ok());
  EXPECT_EQ(EventFields(r), "7|51|click|0|0||0");

  const std::pair<const char*, const char*> bad[] = {
      {R"({"user":"7","item":"51"})", "\"type\" is missing or empty"},
      {R"({"user":"","item":"51","type":"play"})",
       "\"user\" is missing or empty"},
      {R"({"user":7.5,"item":"51","type":"play"})",
       "\"user\" must be a string or an integer"},
      {R"({"user":"7","item":null,"type":"play"})",
       "\"item\" must be a string or an integer"},
      {R"({"user":"7","item":"51","type":1})", "\"type\" must be a string"},
      {R"({"user":"7","item":"51","type":"play","count":"3"})",
       "\"count\" must be a number"},
      {R"({"user":"7","item":"51","type":"play","timestamp":1.5})",
       "\"timestamp\" must be an integer"},
      {R"({"user":"7","item":"51","type":"play","timestamp":18446744073709551615})",
       "\"timestamp\" must be an integer"},
      {R"({"user":"7","item":"51","type":"play","event_id":5})",
       "\"event_id\" must be a string"},
      {R"({"user":"7","item":"51","type":"play","rating":5})",
       "unknown key \"rating\""},
      {R"({"user":"7",)", "not a JSON object"},
      {R"(["7","51","play"])", "not a JSON object"},
  };
  for (const auto& [line, message] : bad) {
    const absl::Status s = internal::ParseEventJson(line, &r);
    EXPECT_THAT(s.message(), HasSubstr(message)) << line;
  }
}

TEST(ClientHealthWireTest, HandSerialisedMessages) {
  EXPECT_EQ(internal::EncodeHealthCheckRequest(""), "");
  EXPECT_EQ(internal::EncodeHealthCheckRequest("ab"), std::string("\x0a\x02"
                                                                  "ab"));
  EXPECT_EQ(internal::DecodeHealthCheckResponse(""), 0);
  EXPECT_EQ(internal::DecodeHealthCheckResponse("\x08\x01"), 1);
  EXPECT_EQ(internal::DecodeHealthCheckResponse("\x08\x02"), 2);
  // Unknown fields are skipped, as any protobuf reader would.
  EXPECT_EQ(
      internal::DecodeHealthCheckResponse(std::string("\x12\x01x\x08\x01", 5)),
      1);
  EXPECT_EQ(internal::DecodeHealthCheckResponse("\x08"), -1);
  EXPECT_EQ(internal::DecodeHealthCheckResponse("\x08\x80"), -1);
}

}  // namespace
}  // namespace recsys
