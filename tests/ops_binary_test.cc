// Running it like production through the real binaries: recsys-client's
// TLS and token flags against recsys-server started with a certificate and
// a token from the environment, and SIGTERM while ratings stream in (the
// server exits 0 and, restarted, has every rating it acknowledged).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/recsys.grpc.pb.h"
#include "tests/rating_stream.h"
#include "tests/test_certs.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;
using v1::Recommender;

constexpr char kToken[] = "test-token-0123456789abcdef";

void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
}

std::shared_ptr<grpc::Channel> Channel(const ChannelOptions& o) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = MakeChannel(o);
  EXPECT_TRUE(ch.ok()) << ch.status();
  return ch.ok() ? *ch : nullptr;
}

ChannelOptions Plain(int port) {
  ChannelOptions o;
  o.target = absl::StrCat("127.0.0.1:", port);
  return o;
}

ChannelOptions Tls(int port) {
  ChannelOptions o = Plain(port);
  o.tls_ca = testing::GetTestCerts().ca;
  o.tls_server_name = testing::kTestServerName;
  return o;
}

// grpc.health.v1 through the client library: "SERVING\n", or "" when the
// call failed.
std::string HealthCall(const std::shared_ptr<grpc::Channel>& ch) {
  ClientOptions o;
  o.timeout = absl::Seconds(10);
  std::ostringstream out, err;
  Streams io;
  io.out = &out;
  io.err = &err;
  const absl::Status s = RunHealth(o, {}, ch, io);
  if (!s.ok() && out.str().empty()) return "";
  return out.str();
}

class OpsBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("ops_bin");
    csv_ = testing::WriteRatingsCsv(
        testing::PlantedData(120, 80, 4, 0.2, 0.3, 5, true),
        dir_ + "/ratings.csv");
  }
  std::string dir_, csv_;
};

class Process {
 public:
  Process(std::vector<std::string> args, std::string log,
          std::map<std::string, std::string> env = {})
      : args_(std::move(args)), log_(std::move(log)), env_(std::move(env)) {}
  ~Process() { Stop(SIGKILL); }

  void Start() {
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      for (const auto& [k, v] : env_) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args_) argv.push_back(a.data());
      argv.push_back(nullptr);
      (void)!freopen(log_.c_str(), "a", stderr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  // Sends `sig` and returns the wait status.
  int Stop(int sig) {
    if (pid_ <= 0) return status_;
    kill(pid_, sig);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    return status_;
  }

 private:
  std::vector<std::string> args_;
  std::string log_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  int status_ = 0;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts recsys-server with `flags` and waits until it is SERVING on its
// plaintext health port; returns the main port.
int StartServer(Process* p, const std::string& port_file,
                const std::string& log, const ChannelOptions& channel) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int port = 0;
  while (std::chrono::steady_clock::now() < deadline && port == 0) {
    std::ifstream in(port_file);
    if (!(in >> port)) port = 0;
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(port, 0) << ReadAll(log);
  ChannelOptions o = channel;
  o.target = absl::StrCat("127.0.0.1:", port);
  auto ch = Channel(o);
  while (std::chrono::steady_clock::now() < deadline) {
    if (HealthCall(ch) == "SERVING\n") return port;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "server never became SERVING: " << ReadAll(log);
  (void)p;
  return port;
}

using testing::CommandResult;

CommandResult RunClient(const std::string& args) {
  return testing::RunCommand(
      absl::StrCat(RECSYS_CLIENT_BIN, " --timeout=20 ", args, " 2>&1"));
}

// Numeric flags out of range stop the server before it touches anything,
// naming the flag and its range.
TEST_F(OpsBinaryTest, ServerRefusesNumericFlagsOutOfRange) {
  const std::pair<const char*, const char*> bad[] = {
      {"--rate-lead-budget-ms=-1", "--rate_lead_budget_ms must be 0..1000"},
      {"--rate-lead-budget-ms=1001", "--rate_lead_budget_ms must be 0..1000"},
      {"--rate-lead-budget-ms=nan", "--rate_lead_budget_ms must be 0..1000"},
      {"--threads=-1", "--threads must be 0..1024, not -1"},
      {"--fsync-interval-ms=0", "--fsync_interval_ms must be 1..60000"},
      {"--snapshot-every=-1", "--snapshot_every must be 0.."},
      {"--grace-seconds=-5", "--grace_seconds must be 0..3600, not -5"},
      {"--grace-seconds=inf", "--grace_seconds must be 0..3600, not inf"},
      {"--max-message-bytes=0", "--max_message_bytes must be 65536.."},
      {"--fold-in-cache-mb=-1", "--fold_in_cache_mb must be 0.."}};
  for (const auto& [flag, message] : bad) {
    const CommandResult r = testing::RunCommand(absl::StrCat(
        RECSYS_SERVER_BIN, " --listen=127.0.0.1:0 --data-dir=", dir_,
        "/never --train-data=", csv_, " ", flag, " 2>&1"));
    EXPECT_EQ(r.exit_code, 1) << flag << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr(message)) << flag;
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/never")) << flag;
  }
}

// gRPC would let a second server share the first one's port (SO_REUSEPORT)
// and take half of its calls, with ratings going to another data directory.
// The second server must refuse to start instead.
TEST_F(OpsBinaryTest, SecondServerOnAPortInUseRefusesToStart) {
  const std::string port_file = dir_ + "/first.port";
  const std::string log = dir_ + "/first.log";
  Process first(
      {RECSYS_SERVER_BIN, "--listen=127.0.0.1:0",
       "--data-dir=" + dir_ + "/first", "--train-data=" + csv_, "--threads=2",
       "--port-file=" + port_file, "--grace-seconds=1"},
      log);
  first.Start();
  const int port = StartServer(&first, port_file, log, {});
  ASSERT_GT(port, 0);
  // (Bounded: a second server that did start would serve until stopped.)
  const CommandResult second = testing::RunCommand(absl::StrCat(
      "timeout 30 ", RECSYS_SERVER_BIN, " --listen=127.0.0.1:", port,
      " --data-dir=", dir_, "/second --train-data=", csv_, " 2>&1"));
  EXPECT_EQ(second.exit_code, 1) << second.output;
  EXPECT_THAT(second.output,
              HasSubstr(absl::StrCat("cannot listen on 127.0.0.1:", port)));
  // The first still answers.
  const CommandResult r =
      RunClient(absl::StrCat("--target=127.0.0.1:", port, " health"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const int status = first.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(OpsBinaryTest, ClientBinaryTlsAndTokenFlagsAgainstServerBinary) {
  const testing::TestCerts& c = testing::GetTestCerts();
  if (!c.error.empty()) GTEST_SKIP() << c.error;
  const std::string port_file = dir_ + "/server.port";
  const std::string log = dir_ + "/server.log";
  testing::WriteFile(dir_ + "/token", absl::StrCat(kToken, "\n"));
  // The server takes its token from the environment here, the client from
  // a file.
  Process server({RECSYS_SERVER_BIN, "--listen=127.0.0.1:0",
                  "--data-dir=" + dir_ + "/bin-data", "--train-data=" + csv_,
                  "--threads=2", "--port-file=" + port_file,
                  "--grace-seconds=1", "--tls-cert=" + c.server_cert,
                  "--tls-key=" + c.server_key, "--log-format=json"},
                 log, {{"RECSYS_TOKEN", kToken}});
  server.Start();
  const int port = StartServer(&server, port_file, log, Tls(0));
  ASSERT_GT(port, 0);
  const std::string tls =
      absl::StrCat("--target=127.0.0.1:", port, " --tls-ca=", c.ca,
                   " --tls-server-name=", testing::kTestServerName);

  CommandResult r = RunClient(tls + " health");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("SERVING"));
  r = RunClient(tls + " rate --user=cli --item=i1 --rating=4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("UNAUTHENTICATED"));
  r = RunClient(tls + " --token-file=" + dir_ + "/token" +
                " rate --user=cli --item=i1 --rating=4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("accepted"));
  r = RunClient(tls + " recommend --user=cli -k 3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Plaintext against the TLS port: the client says TLS may be the cause.
  r = RunClient(absl::StrCat("--target=127.0.0.1:", port, " --timeout=5 info"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("Does TLS match"));
  // A token is never sent in clear text.
  r = RunClient(absl::StrCat("--target=127.0.0.1:", port,
                             " --token=abc rate --user=cli --item=i2 "
                             "--rating=4"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("only over TLS"));

  const int status = server.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const std::string logged = ReadAll(log);
  EXPECT_THAT(logged, HasSubstr("\"msg\":\"serving\""));
  EXPECT_THAT(logged, HasSubstr("\"msg\":\"stopped\""));
  EXPECT_THAT(logged, HasSubstr("\"token\":true"));
  EXPECT_THAT(logged, ::testing::Not(HasSubstr(kToken)));
}

// recsys-bench against a server that needs TLS and, for Rate, a token: with
// the client's flags every call succeeds; without the token every Rate is
// refused; in plaintext it cannot connect and says why.
TEST_F(OpsBinaryTest, BenchBinaryTlsAndTokenFlagsAgainstServerBinary) {
  const testing::TestCerts& c = testing::GetTestCerts();
  if (!c.error.empty()) GTEST_SKIP() << c.error;
  const std::string port_file = dir_ + "/bench.port";
  const std::string log = dir_ + "/bench-server.log";
  testing::WriteFile(dir_ + "/token", absl::StrCat(kToken, "\n"));
  Process server(
      {RECSYS_SERVER_BIN, "--listen=127.0.0.1:0",
       "--data-dir=" + dir_ + "/bench-data", "--train-data=" + csv_,
       "--threads=2", "--port-file=" + port_file, "--grace-seconds=1",
       "--tls-cert=" + c.server_cert, "--tls-key=" + c.server_key},
      log, {{"RECSYS_TOKEN", kToken}});
  server.Start();
  const int port = StartServer(&server, port_file, log, Tls(0));
  ASSERT_GT(port, 0);
  auto bench = [&](const std::string& flags) {
    return testing::RunCommand(absl::StrCat(
        RECSYS_BENCH_BIN, " --target=127.0.0.1:", port,
        " --workloads=empty,recommend,rate --channels=2 --inflight=4"
        " --warmup=0.05 --duration=0.2 --json ",
        flags, " 2>&1"));
  };
  const std::string tls = absl::StrCat(
      "--tls-ca=", c.ca, " --tls-server-name=", testing::kTestServerName);
  // Rows as `"workload":"NAME"...` with their error counts: one JSON line.
  auto errors_of = [](const std::string& json, const std::string& name) {
    const size_t at = json.find(absl::StrCat("\"workload\":\"", name, "\""));
    if (at == std::string::npos) return std::string("(no row)");
    const size_t e = json.find("\"errors\":", at);
    if (e == std::string::npos) return std::string("(no errors field)");
    const size_t end = json.find_first_of(",}", e);
    return json.substr(e + 9, end - e - 9);
  };

  testing::CommandResult r =
      bench(absl::StrCat(tls, " --token-file=", dir_, "/token"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* w : {"empty", "recommend", "rate"}) {
    EXPECT_EQ(errors_of(r.output, w), "0") << w << "\n" << r.output;
  }
  r = bench(tls);  // no token: reads pass, every Rate is refused
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(errors_of(r.output, "recommend"), "0") << r.output;
  EXPECT_NE(errors_of(r.output, "rate"), "0") << r.output;
  EXPECT_THAT(r.output, HasSubstr("rate: no call succeeded (UNAUTHENTICATED"));

  r = bench("--timeout=2");  // plaintext against TLS
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("does TLS match"));
  // TLS flags with a server the bench would start itself.
  r = testing::RunCommand(absl::StrCat(RECSYS_BENCH_BIN, " --train-data=", csv_,
                                       " ", tls, " 2>&1"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("TLS and token flags are for --target"));

  const int status = server.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// SIGTERM while a stream and unary writers are busy: the server exits 0 and,
// restarted, holds every rating it acknowledged.
TEST_F(OpsBinaryTest, SigtermUnderLoadKeepsEveryAcknowledgedRating) {
  const std::string port_file = dir_ + "/load.port";
  const std::string log = dir_ + "/load.log";
  const std::string data = dir_ + "/load-data";
  // The second round hands every Rate commit to the batcher's own thread
  // (--rate-lead-budget-ms=0), so SIGTERM also lands while it leads.
  auto make = [&](const std::string& lead_budget_ms) {
    return std::make_unique<Process>(
        std::vector<std::string>{RECSYS_SERVER_BIN, "--listen=127.0.0.1:0",
                                 "--data-dir=" + data, "--train-data=" + csv_,
                                 "--threads=2", "--port-file=" + port_file,
                                 "--grace-seconds=1", "--snapshot-every=500",
                                 "--rate-lead-budget-ms=" + lead_budget_ms},
        log);
  };
  testing::AckedRatings acked;
  std::mutex mu;
  for (int round = 0; round < 2; ++round) {
    std::filesystem::remove(port_file);
    auto server = make(round == 0 ? "3" : "0");
    server->Start();
    const int port = StartServer(server.get(), port_file, log, {});
    ASSERT_GT(port, 0);
    auto ch = Channel(Plain(port));
    std::atomic<bool> stop{false};
    std::thread streamer([&] {
      auto stub = Recommender::NewStub(ch);
      testing::StreamRatingsUntil(*stub, absl::StrCat("term", round, "-"), 30,
                                  80, stop, &acked, &mu);
    });
    std::thread unary([&] {
      auto stub = Recommender::NewStub(ch);
      for (int i = 0; !stop.load(); ++i) {
        grpc::ClientContext ctx;
        Deadline(&ctx);
        v1::RateRequest r;
        r.set_user_id(absl::StrCat("unary", round));
        r.set_item_id(absl::StrCat("i", i % 80));
        r.set_rating(3);
        v1::RateResponse resp;
        if (stub->Rate(&ctx, r, &resp).ok()) {
          std::lock_guard<std::mutex> lock(mu);
          acked.insert({r.user_id(), r.item_id()});
        } else {
          break;
        }
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const int status = server->Stop(SIGTERM);
    stop = true;
    streamer.join();
    unary.join();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n"
                                                               << ReadAll(log);
  }
  ASSERT_GT(acked.size(), 50u);
  for (int round = 0; round < 2; ++round) {
    const std::string user = absl::StrCat("unary", round);
    EXPECT_TRUE(std::any_of(acked.begin(), acked.end(),
                            [&](const auto& a) { return a.first == user; }))
        << "no unary Rate acknowledged in round " << round;
  }
  std::filesystem::remove(port_file);
  auto server = make("3");
  server->Start();
  const int port = StartServer(server.get(), port_file, log, {});
  auto stub = Recommender::NewStub(Channel(Plain(port)));
  std::map<std::string, std::set<std::string>> by_user;
  for (const auto& [u, i] : acked) by_user[u].insert(i);
  for (const auto& [user, items] : by_user) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::GetUserRequest req;
    req.set_user_id(user);
    req.set_recent(1000);
    v1::GetUserResponse resp;
    ASSERT_TRUE(stub->GetUser(&ctx, req, &resp).ok()) << user;
    std::set<std::string> have;
    for (const auto& r : resp.recent()) have.insert(r.item().id());
    for (const std::string& item : items) {
      EXPECT_TRUE(have.count(item)) << user << " lost " << item;
    }
  }
  std::cout << "acknowledged ratings checked after 2 SIGTERMs: " << acked.size()
            << "\n";
  server->Stop(SIGTERM);
}

}  // namespace
}  // namespace recsys
