// End to end through the real binaries: recsys-server processes on loopback
// ports chosen at run time, queried with recsys-client and the gRPC stub;
// killed with SIGKILL and restarted to check that acknowledged ratings
// survive.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/recsys.grpc.pb.h"
#include "tests/rating_stream.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;
using v1::Recommender;

// A recsys-server child process.
class ServerProcess {
 public:
  ServerProcess(std::string data_dir, std::vector<std::string> flags)
      : data_dir_(std::move(data_dir)), flags_(std::move(flags)) {}
  ~ServerProcess() { Kill(); }

  // Starts the server and waits until it answers GetModelInfo.
  void Start() {
    port_file_ = data_dir_ + ".port";
    std::filesystem::remove(port_file_);
    // Open client channels hold shutdown for the whole grace period (gRPC
    // waits for them); a short one keeps the test quick.
    std::vector<std::string> args = {
        RECSYS_SERVER_BIN, "--listen=127.0.0.1:0", "--data-dir=" + data_dir_,
        "--port-file=" + port_file_, "--grace-seconds=1"};
    args.insert(args.end(), flags_.begin(), flags_.end());
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const std::string log = data_dir_ + ".log";
      freopen(log.c_str(), "a", stderr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(port_file_);
      if (in >> port_ && port_ > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GT(port_, 0) << "server did not start; see " << data_dir_ << ".log";
    channel_ =
        grpc::CreateChannel(target(), grpc::InsecureChannelCredentials());
    stub_ = Recommender::NewStub(channel_);
    while (std::chrono::steady_clock::now() < deadline) {
      grpc::ClientContext ctx;
      v1::ModelInfo info;
      if (stub_->GetModelInfo(&ctx, {}, &info).ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "server never served a model";
  }

  void Kill(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_status_ = status;
    pid_ = -1;
    stub_.reset();
    channel_.reset();
    port_ = 0;
  }

  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }
  Recommender::Stub& stub() { return *stub_; }
  int exit_status() const { return exit_status_; }

 private:
  std::string data_dir_;
  std::vector<std::string> flags_;
  std::string port_file_;
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_status_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Recommender::Stub> stub_;
};

using testing::CommandResult;

// Runs recsys-client with `args`, stdout and stderr together.
CommandResult RunClient(const std::string& target, const std::string& args) {
  return testing::RunCommand(absl::StrCat(RECSYS_CLIENT_BIN,
                                          " --target=", target,
                                          " --timeout=30 ", args, " 2>&1"));
}

std::string WriteGeneratedCsv(const std::string& path) {
  return testing::WriteRatingsCsv(
      testing::PlantedData(200, 150, 4, 0.15, 0.3, 12, true), path);
}

std::vector<std::string> Recommended(Recommender::Stub& stub,
                                     const std::string& user,
                                     v1::Strategy* strategy = nullptr) {
  grpc::ClientContext ctx;
  v1::RecommendRequest req;
  req.set_user_id(user);
  req.set_k(10);
  v1::RecommendResponse resp;
  const grpc::Status s = stub.Recommend(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  if (strategy != nullptr) *strategy = resp.strategy();
  std::vector<std::string> ids;
  for (const auto& it : resp.items()) ids.push_back(it.item().id());
  return ids;
}

int64_t RatingCount(Recommender::Stub& stub, const std::string& user) {
  grpc::ClientContext ctx;
  v1::GetUserRequest req;
  req.set_user_id(user);
  req.set_recent(1);
  v1::GetUserResponse resp;
  if (!stub.GetUser(&ctx, req, &resp).ok()) return 0;
  return resp.rating_count();
}

class ServerE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("e2e");
    csv_ = WriteGeneratedCsv(dir_ + "/ratings.csv");
  }
  std::unique_ptr<ServerProcess> Server(std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = {"--train-data=" + csv_, "--threads=2"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    return std::make_unique<ServerProcess>(dir_ + "/data", flags);
  }
  std::string dir_, csv_;
};

TEST_F(ServerE2eTest, NewUserRatesTwentyItemsThroughTheClient) {
  auto server = Server();
  server->Start();
  const CommandResult health = RunClient(server->target(), "health");
  EXPECT_EQ(health.exit_code, 0) << health.output;
  EXPECT_THAT(health.output, HasSubstr("SERVING"));

  v1::Strategy strategy;
  const std::vector<std::string> before =
      Recommended(server->stub(), "walk-in", &strategy);
  EXPECT_EQ(strategy, v1::STRATEGY_POPULARITY);

  // Twenty ratings streamed from a file by the client.
  std::ostringstream file;
  file << "user,item,rating\n";
  std::vector<std::string> rated;
  for (int i = 0; i < 20; ++i) {
    rated.push_back(absl::StrCat("i", i * 7));
    file << "walk-in," << rated.back() << ',' << (i % 3 == 0 ? 1 : 5) << '\n';
  }
  testing::WriteFile(dir_ + "/mine.csv", file.str());
  const CommandResult rate =
      RunClient(server->target(), "rate --file=" + dir_ + "/mine.csv");
  EXPECT_EQ(rate.exit_code, 0) << rate.output;
  EXPECT_THAT(rate.output, HasSubstr("20"));

  const std::vector<std::string> after =
      Recommended(server->stub(), "walk-in", &strategy);
  EXPECT_EQ(strategy, v1::STRATEGY_PERSONALIZED);
  ASSERT_EQ(after.size(), 10u);
  EXPECT_NE(before, after);
  for (const std::string& id : after) {
    EXPECT_EQ(std::count(rated.begin(), rated.end(), id), 0)
        << id << " was rated";
  }
  EXPECT_EQ(RatingCount(server->stub(), "walk-in"), 20);

  const CommandResult shown =
      RunClient(server->target(), "recommend --user=walk-in -k 10");
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_THAT(shown.output, HasSubstr("personalized"));
  for (const std::string& id : after) EXPECT_THAT(shown.output, HasSubstr(id));

  // A visitor with the same ratings, given as a session, gets what the
  // stored user gets (the same fold-in, up to float rounding near ties),
  // and nothing is stored.
  std::vector<std::string> session;
  for (int i = 0; i < 20; ++i) {
    session.push_back(absl::StrCat(rated[i], "=", i % 3 == 0 ? 1 : 5));
  }
  const CommandResult visited =
      RunClient(server->target(), "--json recommend -k 10 --session=" +
                                      absl::StrJoin(session, ","));
  EXPECT_EQ(visited.exit_code, 0) << visited.output;
  EXPECT_THAT(visited.output, HasSubstr("STRATEGY_PERSONALIZED"));
  int same = 0;
  for (const std::string& id : after) {
    same += visited.output.find("\"id\":\"" + id + "\"") != std::string::npos;
  }
  EXPECT_GE(same, 9) << visited.output;
  for (const std::string& id : rated) {
    EXPECT_THAT(visited.output,
                ::testing::Not(HasSubstr("\"id\":\"" + id + "\"")));
  }
  EXPECT_EQ(RatingCount(server->stub(), "walk-in"), 20);

  // SIGTERM: a clean exit with status 0, and everything is still there.
  server->Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(server->exit_status()));
  EXPECT_EQ(WEXITSTATUS(server->exit_status()), 0);
  server->Start();
  EXPECT_EQ(RatingCount(server->stub(), "walk-in"), 20);
}

// SIGTERM during a long training job cancels it rather than wait for it
// (100,000 Gibbs sweeps would take minutes): a clean exit at once, and the
// model that served before comes back.
TEST_F(ServerE2eTest, ShutdownCancelsALongTrainingJob) {
  auto server = Server();
  server->Start();
  grpc::ClientContext ctx;
  v1::TrainRequest req;
  req.set_model_kind("bayes");
  req.set_epochs(100000);
  v1::TrainResponse resp;
  ASSERT_TRUE(server->stub().Train(&ctx, req, &resp).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const absl::Time start = absl::Now();
  server->Kill(SIGTERM);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_TRUE(WIFEXITED(server->exit_status()));
  EXPECT_EQ(WEXITSTATUS(server->exit_status()), 0);
  std::ifstream log(dir_ + "/data.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_THAT(text, HasSubstr("msg=\"training cancelled\""));
  server->Start();
  grpc::ClientContext info_ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(server->stub().GetModelInfo(&info_ctx, {}, &info).ok());
  EXPECT_EQ(info.version(), 1u);
}

// --retrain-after-ratings: once that many ratings arrived, the server
// retrains by itself with the serving model's kind, and the new model
// serves every rating held.
TEST_F(ServerE2eTest, RetrainsAfterEnoughRatings) {
  auto server = Server({"--retrain-after-ratings=20", "--model-kind=als"});
  server->Start();
  grpc::ClientContext before_ctx;
  v1::ModelInfo before;
  ASSERT_TRUE(server->stub().GetModelInfo(&before_ctx, {}, &before).ok());
  for (int i = 0; i < 19; ++i) {
    grpc::ClientContext ctx;
    v1::RateRequest req;
    req.set_user_id("retrain-me");
    req.set_item_id(absl::StrCat("i", i));
    req.set_rating(4);
    v1::RateResponse resp;
    ASSERT_TRUE(server->stub().Rate(&ctx, req, &resp).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  grpc::ClientContext waiting_ctx;
  v1::ModelInfo waiting;
  ASSERT_TRUE(server->stub().GetModelInfo(&waiting_ctx, {}, &waiting).ok());
  EXPECT_EQ(waiting.version(), before.version());  // 19 < 20: no job
  {
    grpc::ClientContext ctx;
    v1::RateRequest req;
    req.set_user_id("retrain-me");
    req.set_item_id("i19");
    req.set_rating(5);
    v1::RateResponse resp;
    ASSERT_TRUE(server->stub().Rate(&ctx, req, &resp).ok());
  }
  v1::ModelInfo after;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    grpc::ClientContext ctx;
    ASSERT_TRUE(server->stub().GetModelInfo(&ctx, {}, &after).ok());
    if (after.version() > before.version()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(after.version(), before.version() + 1);
  EXPECT_EQ(after.kind(), "als");
  EXPECT_EQ(after.ratings(), before.ratings() + 20);
  EXPECT_EQ(RatingCount(server->stub(), "retrain-me"), 20);
  server->Kill(SIGTERM);
  std::ifstream log(dir_ + "/data.log");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_THAT(text, HasSubstr("msg=\"automatic retraining\""));
  EXPECT_THAT(text, HasSubstr("reason=ratings ratings_since_training=20"));
}

// A user asks to be forgotten: recsys-client delete-user erases them from
// the answers and from every file of the data directory, a SIGKILL and a
// restart bring nothing back, and the server's log records the erasure
// without the id.
TEST_F(ServerE2eTest, DeleteUserForgetsTheUserAcrossAKill) {
  auto server = Server();
  server->Start();
  const std::string kUser = "forget-me-5e1d";
  std::ostringstream file;
  for (int i = 0; i < 12; ++i) file << kUser << ",i" << i * 5 << ",4\n";
  testing::WriteFile(dir_ + "/mine.csv", file.str());
  const CommandResult rate =
      RunClient(server->target(), "rate --file=" + dir_ + "/mine.csv");
  ASSERT_EQ(rate.exit_code, 0) << rate.output;
  ASSERT_EQ(RatingCount(server->stub(), kUser), 12);
  EXPECT_FALSE(testing::FilesHolding(dir_ + "/data", kUser).empty());

  const CommandResult deleted =
      RunClient(server->target(), "delete-user --user=" + kUser);
  EXPECT_EQ(deleted.exit_code, 0) << deleted.output;
  EXPECT_THAT(deleted.output,
              HasSubstr("deleted user " + kUser + ": 12 ratings"));
  EXPECT_THAT(testing::FilesHolding(dir_ + "/data", kUser),
              ::testing::IsEmpty());
  v1::Strategy strategy;
  Recommended(server->stub(), kUser, &strategy);
  EXPECT_EQ(strategy, v1::STRATEGY_POPULARITY);
  const CommandResult shown =
      RunClient(server->target(), "user --user=" + kUser);
  EXPECT_EQ(shown.exit_code, 1) << shown.output;
  EXPECT_THAT(shown.output, HasSubstr("NOT_FOUND"));
  const CommandResult again =
      RunClient(server->target(), "delete-user --user=" + kUser);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_THAT(again.output, HasSubstr("NOT_FOUND"));
  // Many at once, from a file: the known ones go, the others are listed.
  for (const char* user : {"bulk-a-11", "bulk-b-22"}) {
    RunClient(server->target(),
              absl::StrCat("rate --user=", user, " --item=i3 --rating=4"));
    ASSERT_EQ(RatingCount(server->stub(), user), 1) << user;
  }
  testing::WriteFile(dir_ + "/gone.txt",
                     "bulk-a-11\r\n\nnot-a-user\nbulk-b-22\n");
  const CommandResult bulk = RunClient(
      server->target(), "delete-users --batch=2 --file=" + dir_ + "/gone.txt");
  EXPECT_EQ(bulk.exit_code, 0) << bulk.output;
  EXPECT_THAT(bulk.output, HasSubstr("deleted 2 users (2 ratings) in 2 calls"));
  EXPECT_THAT(bulk.output, HasSubstr("1 ids not found: not-a-user"));
  EXPECT_EQ(RatingCount(server->stub(), "bulk-a-11"), 0);
  EXPECT_EQ(RatingCount(server->stub(), "bulk-b-22"), 0);
  EXPECT_THAT(testing::FilesHolding(dir_ + "/data", "bulk-a-11"),
              ::testing::IsEmpty());
  for (const char* user : {"bulk-c-33", "bulk-d-44"}) {
    RunClient(server->target(),
              absl::StrCat("rate --user=", user, " --item=i3 --rating=4"));
  }
  testing::WriteFile(dir_ + "/gone2.txt", "bulk-c-33\nbulk-d-44\n");
  const CommandResult one_call =
      RunClient(server->target(), "delete-users --file=" + dir_ + "/gone2.txt");
  EXPECT_EQ(one_call.exit_code, 0) << one_call.output;
  EXPECT_THAT(one_call.output,
              HasSubstr("deleted 2 users (2 ratings) in 1 calls"));
  const CommandResult no_user = RunClient(server->target(), "delete-user");
  EXPECT_EQ(no_user.exit_code, 2) << no_user.output;
  {
    grpc::ClientContext ctx;
    v1::DeleteUserRequest req;
    v1::DeleteUserResponse resp;
    EXPECT_EQ(server->stub().DeleteUser(&ctx, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  server->Kill(SIGKILL);
  server->Start();
  EXPECT_EQ(RatingCount(server->stub(), kUser), 0);
  Recommended(server->stub(), kUser, &strategy);
  EXPECT_EQ(strategy, v1::STRATEGY_POPULARITY);
  EXPECT_THAT(testing::FilesHolding(dir_ + "/data", kUser),
              ::testing::IsEmpty());
  std::ifstream log(dir_ + "/data.log");
  const std::string server_log((std::istreambuf_iterator<char>(log)),
                               std::istreambuf_iterator<char>());
  EXPECT_THAT(server_log, HasSubstr("user deleted"));
  EXPECT_THAT(server_log, HasSubstr("msg=\"users deleted\" users=2 ratings=2"));
  EXPECT_THAT(server_log, ::testing::Not(HasSubstr(kUser)));
}

// The catalogue commands of the client against a real server: a
// catalogue file import, a retirement that every Recommend honours, bad
// updates refused with the right exit codes, and entries that survive a
// SIGKILL (they are in the log).
TEST_F(ServerE2eTest, CatalogueEditsThroughTheClientSurviveAKill) {
  auto server = Server();
  server->Start();
  testing::WriteFile(dir_ + "/movies.csv",
                     "movieId,title,genres\n"
                     "i3,\"Three, The (1999)\",Drama|Crime|Drama\n"
                     "tt-n,New Arrival (2026),(no genres listed)\n");
  const CommandResult imported =
      RunClient(server->target(), "set-items --file=" + dir_ + "/movies.csv");
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  EXPECT_THAT(imported.output,
              HasSubstr("2 items in 1 calls: 1 added, 1 changed, 0 unchanged"));
  const CommandResult retired =
      RunClient(server->target(), "set-item --item=i3 --retired=true");
  EXPECT_EQ(retired.exit_code, 0) << retired.output;
  EXPECT_THAT(retired.output, HasSubstr("item i3: changed"));
  auto check = [&] {
    const CommandResult shown = RunClient(server->target(), "item --item=i3");
    EXPECT_EQ(shown.exit_code, 0) << shown.output;
    EXPECT_THAT(shown.output, HasSubstr("title: Three, The (1999)"));
    EXPECT_THAT(shown.output, HasSubstr("genres: Drama|Crime"));
    EXPECT_THAT(shown.output, HasSubstr("retired: yes"));
    const CommandResult added = RunClient(server->target(), "item --item=tt-n");
    EXPECT_THAT(added.output, HasSubstr("title: New Arrival (2026)"));
    EXPECT_THAT(added.output, HasSubstr("genres: (none)"));
    for (const char* user : {"u1", "u7", "someone-new"}) {
      grpc::ClientContext ctx;
      v1::RecommendRequest req;
      req.set_user_id(user);
      req.set_k(200);  // every item
      v1::RecommendResponse resp;
      ASSERT_TRUE(server->stub().Recommend(&ctx, req, &resp).ok());
      EXPECT_GT(resp.items_size(), 100);
      for (const auto& it : resp.items()) EXPECT_NE(it.item().id(), "i3");
    }
  };
  check();

  const CommandResult bad = RunClient(
      server->target(), "set-item --item=i4 --genres='Sci-Fi|Sci-Fi'");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_THAT(bad.output,
              HasSubstr("INVALID_ARGUMENT: items[0]: genre 'Sci-Fi' is listed "
                        "twice"));
  const CommandResult nothing =
      RunClient(server->target(), "set-item --item=i4");
  EXPECT_EQ(nothing.exit_code, 2) << nothing.output;
  // A title that is not UTF-8 (latin-1 here) is converted, as from a file.
  const CommandResult latin1 =
      RunClient(server->target(),
                "set-item --item=i5 --title=\"$(printf 'Am\\351lie')\"");
  EXPECT_EQ(latin1.exit_code, 0) << latin1.output;
  EXPECT_THAT(RunClient(server->target(), "item --item=i5").output,
              HasSubstr("title: Am\xc3\xa9lie"));
  const CommandResult unknown =
      RunClient(server->target(), "item --item=no-such");
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("NOT_FOUND"));
  testing::WriteFile(dir_ + "/bad.csv", "i5,Five\n");
  const CommandResult bad_file =
      RunClient(server->target(), "set-items --file=" + dir_ + "/bad.csv");
  EXPECT_EQ(bad_file.exit_code, 2) << bad_file.output;
  EXPECT_THAT(bad_file.output, HasSubstr("bad.csv:1: expected 3 fields"));

  // Field presence on the wire: genres set with none clears them, an unset
  // title keeps it.
  {
    grpc::ClientContext ctx;
    v1::UpsertItemsRequest req;
    v1::ItemUpdate* u = req.add_items();
    u->set_item_id("tt-n");
    u->mutable_genres();
    v1::UpsertItemsResponse resp;
    ASSERT_TRUE(server->stub().UpsertItems(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.unchanged(), 1);  // it had none already
    grpc::ClientContext ctx2;
    req.mutable_items(0)->mutable_genres()->add_genres("Documentary");
    ASSERT_TRUE(server->stub().UpsertItems(&ctx2, req, &resp).ok());
    EXPECT_EQ(resp.changed(), 1);
    grpc::ClientContext ctx3;
    req.mutable_items(0)->mutable_genres()->clear_genres();
    ASSERT_TRUE(server->stub().UpsertItems(&ctx3, req, &resp).ok());
    EXPECT_EQ(resp.changed(), 1);
  }

  server->Kill(SIGKILL);
  server->Start();
  check();
  std::ifstream log(dir_ + "/data.log");
  const std::string server_log((std::istreambuf_iterator<char>(log)),
                               std::istreambuf_iterator<char>());
  EXPECT_THAT(server_log,
              HasSubstr("msg=\"catalogue updated\" added=1 changed=1"));
}

TEST_F(ServerE2eTest, BadInputGetsCanonicalStatusCodes) {
  auto server = Server({"--max-message-bytes=65536"});
  server->Start();
  Recommender::Stub& stub = server->stub();
  auto recommend = [&](const std::string& user, int k) {
    grpc::ClientContext ctx;
    v1::RecommendRequest req;
    req.set_user_id(user);
    req.set_k(k);
    v1::RecommendResponse resp;
    return stub.Recommend(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(recommend("u1", -1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(recommend("u1", 1001), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(recommend("", 10), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(recommend(std::string(300, 'x'), 10),
            grpc::StatusCode::INVALID_ARGUMENT);
  auto rate = [&](const std::string& user, float value) {
    grpc::ClientContext ctx;
    v1::RateRequest req;
    req.set_user_id(user);
    req.set_item_id("i1");
    req.set_rating(value);
    v1::RateResponse resp;
    return stub.Rate(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(rate("u1", std::nanf("")), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(rate("u1", INFINITY), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(rate("u1", 5.5f), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(rate("u1", 0.5f), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(rate("u1", 4.0f), grpc::StatusCode::OK);
  {
    grpc::ClientContext ctx;
    v1::SimilarItemsRequest req;
    req.set_item_id("no-such-item");
    v1::SimilarItemsResponse resp;
    EXPECT_EQ(stub.SimilarItems(&ctx, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    // Bigger than --max-message-bytes.
    grpc::ClientContext ctx;
    v1::RecommendRequest req;
    req.set_user_id("u1");
    for (int i = 0; i < 9000; ++i)
      req.add_exclude_item_ids(absl::StrCat("item-", i));
    v1::RecommendResponse resp;
    EXPECT_EQ(stub.Recommend(&ctx, req, &resp).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() -
                     std::chrono::seconds(1));
    v1::RecommendRequest req;
    req.set_user_id("u1");
    v1::RecommendResponse resp;
    EXPECT_EQ(stub.Recommend(&ctx, req, &resp).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    grpc::ClientContext c1, c2;
    v1::TrainRequest req;
    req.set_epochs(200);
    v1::TrainResponse r1, r2;
    ASSERT_TRUE(stub.Train(&c1, req, &r1).ok());
    EXPECT_EQ(stub.Train(&c2, req, &r2).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
    grpc::ClientContext c3;
    req.set_model_kind("nonsense");
    EXPECT_EQ(stub.Train(&c3, req, &r2).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(ServerE2eTest, StreamAcknowledgesEveryRatingAndSurvivesABadOne) {
  auto server = Server();
  server->Start();
  grpc::ClientContext ctx;
  auto stream = server->stub().RateStream(&ctx);
  const int n = 500;
  for (int i = 0; i < n; ++i) {
    v1::RateRequest r;
    r.set_user_id(absl::StrCat("s", i % 25));
    r.set_item_id(absl::StrCat("i", i % 150));
    r.set_rating(i == 123 ? 42.0f : 3.0f);  // one out of scale
    ASSERT_TRUE(stream->Write(r));
  }
  stream->WritesDone();
  std::vector<int> seen(n, 0);
  v1::RateStreamResponse resp;
  while (stream->Read(&resp)) {
    for (const auto& ack : resp.acks()) {
      ASSERT_LT(ack.index(), static_cast<uint64_t>(n));
      ++seen[ack.index()];
      if (ack.index() == 123) {
        EXPECT_FALSE(ack.accepted());
        EXPECT_EQ(ack.code(),
                  static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        EXPECT_THAT(ack.error(), HasSubstr("outside the scale"));
      } else {
        EXPECT_TRUE(ack.accepted()) << ack.error();
        EXPECT_GT(ack.sequence(), 0u);
      }
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  for (int i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "rating " << i;
}

// SIGKILL at a random moment while ratings stream in; after a restart every
// acknowledged rating is there.
// Unary Rate calls wait for a committer that makes a whole batch durable at
// once: many concurrent calls, a few of them invalid, must each get their
// own answer, acknowledged ones distinct sequence numbers, and survive a
// SIGKILL.
TEST_F(ServerE2eTest, ConcurrentRatesAreBatchedAndSurviveAKill) {
  auto server = Server({"--snapshot-every=0"});
  server->Start();
  constexpr int kThreads = 16;
  constexpr int kCalls = 25;
  std::mutex mu;
  std::set<uint64_t> sequences;
  std::map<std::string, std::set<std::string>> acked;
  int oks = 0, invalid = 0, other = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int j = 0; j < kCalls; ++j) {
        grpc::ClientContext ctx;
        v1::RateRequest req;
        req.set_user_id(absl::StrCat("c", t));
        req.set_item_id(absl::StrCat("i", 1 + (t * 7 + j) % 150));
        const bool bad = j % 10 == 3;
        req.set_rating(bad ? 6.0f : 1.0f + static_cast<float>(j % 5));
        v1::RateResponse resp;
        const grpc::Status s = server->stub().Rate(&ctx, req, &resp);
        std::lock_guard<std::mutex> lock(mu);
        if (s.ok() && !bad) {
          ++oks;
          sequences.insert(resp.sequence());
          acked[req.user_id()].insert(req.item_id());
        } else if (bad &&
                   s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          ++invalid;
        } else {
          ++other;
          ADD_FAILURE() << "rating " << j << " of thread " << t << ": "
                        << s.error_code() << " " << s.error_message();
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(other, 0);
  EXPECT_EQ(invalid, kThreads * 3);
  EXPECT_EQ(oks, kThreads * (kCalls - 3));
  EXPECT_EQ(sequences.size(), static_cast<size_t>(oks));
  server->Kill(SIGKILL);
  server->Start();
  for (const auto& [user, items] : acked) {
    EXPECT_EQ(RatingCount(server->stub(), user),
              static_cast<int64_t>(items.size()))
        << user;
  }
}

TEST_F(ServerE2eTest, KilledServerKeepsEveryAcknowledgedRating) {
  std::mt19937 rng(1234);
  auto server = Server({"--snapshot-every=700"});
  testing::AckedRatings acked;
  std::mutex mu;
  for (int round = 0; round < 4; ++round) {
    server->Start();
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      testing::StreamRatingsUntil(server->stub(), absl::StrCat("k", round, "-"),
                                  40, 150, stop, &acked, &mu);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 400));
    server->Kill(SIGKILL);
    stop = true;
    writer.join();
  }
  ASSERT_FALSE(acked.empty());
  server->Start();
  // Every acknowledged (user, item) pair is in the user's history.
  std::map<std::string, std::set<std::string>> by_user;
  for (const auto& [u, i] : acked) by_user[u].insert(i);
  for (const auto& [user, items] : by_user) {
    grpc::ClientContext ctx;
    v1::GetUserRequest req;
    req.set_user_id(user);
    req.set_recent(1000);
    v1::GetUserResponse resp;
    ASSERT_TRUE(server->stub().GetUser(&ctx, req, &resp).ok()) << user;
    std::set<std::string> have;
    for (const auto& r : resp.recent()) have.insert(r.item().id());
    for (const std::string& item : items) {
      EXPECT_TRUE(have.count(item)) << user << " lost " << item;
    }
  }
  std::cout << "acknowledged ratings checked after 4 kills: " << acked.size()
            << "\n";
}

TEST_F(ServerE2eTest, TrainingWhileServingFailsNoCallAndKeepsNewRatings) {
  auto server = Server();
  server->Start();
  Recommender::Stub& stub = server->stub();
  std::string job;
  {
    grpc::ClientContext ctx;
    v1::TrainRequest req;
    req.set_model_kind("sgd");  // 60 epochs: slow enough to overlap calls
    req.set_epochs(60);
    v1::TrainResponse resp;
    ASSERT_TRUE(stub.Train(&ctx, req, &resp).ok());
    job = resp.job_id();
  }
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::thread traffic([&] {
    for (int i = 0; !done.load() || i < 50; ++i) {
      grpc::ClientContext c1, c2;
      v1::RateRequest r;
      r.set_user_id("trainee");
      r.set_item_id(absl::StrCat("i", i % 150));
      r.set_rating(4);
      v1::RateResponse rr;
      if (!stub.Rate(&c1, r, &rr).ok()) ++failures;
      v1::RecommendRequest q;
      q.set_user_id("trainee");
      v1::RecommendResponse qr;
      if (!stub.Recommend(&c2, q, &qr).ok()) ++failures;
    }
  });
  grpc::ClientContext ctx;
  v1::WatchTrainingRequest req;
  req.set_job_id(job);
  auto watch = stub.WatchTraining(&ctx, req);
  v1::TrainingEvent ev, last;
  int epochs = 0;
  while (watch->Read(&ev)) {
    last = ev;
    if (ev.state() == v1::TrainingEvent::STATE_RUNNING) ++epochs;
  }
  EXPECT_TRUE(watch->Finish().ok());
  done = true;
  traffic.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(last.state(), v1::TrainingEvent::STATE_SUCCEEDED) << last.error();
  EXPECT_EQ(epochs, 60);
  EXPECT_EQ(last.model_version(), 2u);
  grpc::ClientContext ictx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub.GetModelInfo(&ictx, {}, &info).ok());
  EXPECT_EQ(info.version(), 2u);
  // Each of the first 150 items was rated at least once by "trainee" only if
  // the loop got that far; every accepted one is in the history.
  EXPECT_GE(RatingCount(stub, "trainee"), 50);
}

TEST(ServerE2eRealData, MovieLens100kServesTitledRecommendations) {
  const std::string ml = testing::SharedDataset("ml-100k");
  if (ml.empty()) {
    GTEST_SKIP() << "MovieLens copy not found: ../shared/data/ml-100k (set "
                    "RECSYS_TEST_DATA_DIR)";
  }
  const std::string dir = testing::MakeTempDir("e2e_ml");
  ServerProcess server(dir + "/data", {"--train-data=" + ml, "--threads=2"});
  server.Start();
  const CommandResult shown =
      RunClient(server.target(), "recommend --user=1 -k 10");
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_THAT(shown.output, HasSubstr("personalized"));
  EXPECT_THAT(shown.output, ::testing::ContainsRegex("\\(19[0-9][0-9]\\)"));
  EXPECT_THAT(shown.output, ::testing::Not(HasSubstr("Toy Story")));  // rated
  const CommandResult similar =
      RunClient(server.target(), "similar --item=50 -k 3");
  EXPECT_EQ(similar.exit_code, 0) << similar.output;
  EXPECT_THAT(similar.output, HasSubstr("Star Wars"));
}

}  // namespace
// Polls until `check` holds (up to 20 s).
bool Eventually(const std::function<bool()>& check) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    if (check()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return check();
}

TEST_F(ServerE2eTest, ReadReplicaFollowsThePrimaryThroughItsCrash) {
  auto primary = Server();
  primary->Start();
  ASSERT_TRUE(RunClient(primary->target(),
                        "rate --user=before --item=i3 "
                        "--rating=4")
                  .exit_code == 0);
  auto replica = std::make_unique<ServerProcess>(
      dir_ + "/replica",
      std::vector<std::string>{"--replica-of=" + primary->target()});
  replica->Start();
  EXPECT_TRUE(
      Eventually([&] { return RatingCount(replica->stub(), "before") == 1; }));
  std::ostringstream file;
  for (int i = 0; i < 30; ++i) file << "streamed,i" << i << ",4\n";
  testing::WriteFile(dir_ + "/streamed.csv", file.str());
  const CommandResult rated =
      RunClient(primary->target(), "rate --file=" + dir_ + "/streamed.csv");
  ASSERT_EQ(rated.exit_code, 0) << rated.output;
  EXPECT_TRUE(Eventually(
      [&] { return RatingCount(replica->stub(), "streamed") == 30; }));
  EXPECT_EQ(Recommended(replica->stub(), "streamed"),
            Recommended(primary->stub(), "streamed"));

  const CommandResult info = RunClient(replica->target(), "info");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output,
              HasSubstr("replica_of: " + primary->target() +
                        " (connected, 0 records behind, heard from"));
  // A write sent to the replica names the primary.
  const CommandResult refused = RunClient(
      replica->target(), "rate --user=streamed --item=i40 --rating=5");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(refused.output,
              HasSubstr("read replica of " + primary->target()));

  // The primary dies: the replica goes on answering reads, and follows the
  // primary again once it is back (on another port here, as after a move).
  primary->Kill();
  EXPECT_EQ(Recommended(replica->stub(), "streamed").size(), 10u);
  primary->Start();
  ASSERT_TRUE(RunClient(primary->target(),
                        "rate --user=after --item=i5 "
                        "--rating=5")
                  .exit_code == 0);
  replica->Kill(SIGTERM);
  replica = std::make_unique<ServerProcess>(
      dir_ + "/replica",
      std::vector<std::string>{"--replica-of=" + primary->target()});
  replica->Start();
  EXPECT_TRUE(
      Eventually([&] { return RatingCount(replica->stub(), "after") == 1; }));
  EXPECT_EQ(RatingCount(replica->stub(), "streamed"), 30);
}

}  // namespace recsys
