// Running it like production, in process: the /metrics endpoint after real
// traffic, TLS and mutual TLS, the bearer token on writes (and reads with
// protect_reads), and the plaintext health port. Certificates come from the
// openssl command (tests/test_certs.h); servers listen on loopback ports
// picked at run time. ops_binary_test.cc does the same through the real
// binaries, and SIGTERM under load.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/recsys.grpc.pb.h"
#include "server/server.h"
#include "tests/test_certs.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;
using v1::Recommender;
using Code = grpc::StatusCode;

constexpr char kToken[] = "test-token-0123456789abcdef";

#define REQUIRE_CERTS()                              \
  do {                                               \
    if (!testing::GetTestCerts().error.empty()) {    \
      GTEST_SKIP() << testing::GetTestCerts().error; \
    }                                                \
  } while (0)

// ---------------------------------------------------------------------------
// Calls, each with a deadline so a refused handshake cannot hang a test.
void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
}

Code RateCall(const std::shared_ptr<grpc::Channel>& ch, const std::string& user,
              const std::string& item, float rating) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::RateRequest req;
  req.set_user_id(user);
  req.set_item_id(item);
  req.set_rating(rating);
  v1::RateResponse resp;
  return Recommender::NewStub(ch)->Rate(&ctx, req, &resp).error_code();
}

Code RecommendCall(const std::shared_ptr<grpc::Channel>& ch,
                   const std::string& user) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::RecommendRequest req;
  req.set_user_id(user);
  v1::RecommendResponse resp;
  return Recommender::NewStub(ch)->Recommend(&ctx, req, &resp).error_code();
}

Code TrainCall(const std::shared_ptr<grpc::Channel>& ch,
               std::string* job = nullptr) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::TrainRequest req;
  req.set_model_kind("sgd");
  req.set_select(false);
  req.set_epochs(3);
  v1::TrainResponse resp;
  const Code code =
      Recommender::NewStub(ch)->Train(&ctx, req, &resp).error_code();
  if (job != nullptr) *job = resp.job_id();
  return code;
}

// Streams `ratings` (user, item, value) and returns the call's status code;
// `accepted` counts the acknowledged ones.
Code RateStreamCall(
    const std::shared_ptr<grpc::Channel>& ch,
    const std::vector<std::tuple<std::string, std::string, float>>& ratings,
    int* accepted = nullptr) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stub = Recommender::NewStub(ch);
  auto stream = stub->RateStream(&ctx);
  for (const auto& [u, i, r] : ratings) {
    v1::RateRequest req;
    req.set_user_id(u);
    req.set_item_id(i);
    req.set_rating(r);
    if (!stream->Write(req)) break;
  }
  stream->WritesDone();
  v1::RateStreamResponse resp;
  int n = 0;
  while (stream->Read(&resp)) {
    for (const auto& ack : resp.acks()) n += ack.accepted();
  }
  if (accepted != nullptr) *accepted = n;
  return stream->Finish().error_code();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// grpc.health.v1/Check by hand (Debian ships no generated health stub):
// "SERVING\n" and so on, or "" when the call failed.
std::string HealthCall(const std::shared_ptr<grpc::Channel>& ch) {
  grpc::GenericStub stub(ch);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  if (!done.get_future().get().ok()) return "";
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return "";
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // One enum field: 0x08 then the value (1 = SERVING, 2 = NOT_SERVING).
  if (bytes == std::string("\x08\x01", 2)) return "SERVING\n";
  if (bytes == std::string("\x08\x02", 2)) return "NOT_SERVING\n";
  return "UNKNOWN\n";
}

// How a test client connects: plaintext, or TLS trusting `ca` and
// verifying kTestServerName, with an optional client certificate and token.
// Built with gRPC directly rather than the client library, so the server is
// checked against an independent client.
struct Dial {
  int port = 0;
  bool tls = false;
  std::string ca, cert, key;
  std::string server_name = testing::kTestServerName;
  std::string token;
};

std::shared_ptr<grpc::Channel> Channel(const Dial& d) {
  const std::string target = absl::StrCat("127.0.0.1:", d.port);
  if (!d.tls) {
    return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadAll(d.ca);
  if (!d.cert.empty()) {
    ssl.pem_cert_chain = ReadAll(d.cert);
    ssl.pem_private_key = ReadAll(d.key);
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(ssl);
  if (!d.token.empty()) {
    creds = grpc::CompositeChannelCredentials(
        creds, grpc::AccessTokenCredentials(d.token));
  }
  grpc::ChannelArguments args;
  if (!d.server_name.empty()) args.SetSslTargetNameOverride(d.server_name);
  return grpc::CreateCustomChannel(target, creds, args);
}

Dial Plain(int port) {
  Dial d;
  d.port = port;
  return d;
}

Dial Tls(int port) {
  Dial d = Plain(port);
  d.tls = true;
  d.ca = testing::GetTestCerts().ca;
  return d;
}

// GET /metrics over a plain socket.
std::string Scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n";
    (void)!write(fd, req.data(), req.size());
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  }
  close(fd);
  return out;
}

// The value of one series ("name{labels}" exactly as exposed), or -1.
double Metric(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  const size_t start = at + key.size();
  double v = -1;
  if (!absl::SimpleAtod(text.substr(start, text.find('\n', start) - start),
                        &v)) {
    return -1;
  }
  return v;
}

std::string Rpc(const std::string& method, const std::string& code) {
  return absl::StrCat(
      "recsys_grpc_requests_total{service=\"recsys.v1.Recommender\",method=\"",
      method, "\",code=\"", code, "\"}");
}

// ---------------------------------------------------------------------------
class OpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("ops");
    csv_ = testing::WriteRatingsCsv(
        testing::PlantedData(120, 80, 4, 0.2, 0.3, 5, true),
        dir_ + "/ratings.csv");
  }

  ServerOptions Options() {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.engine.data_dir = dir_ + "/data" + std::to_string(servers_++);
    o.engine.train_threads = 2;
    o.train_data = csv_;
    o.grace = absl::Seconds(1);
    return o;
  }

  std::unique_ptr<Server> Start(const ServerOptions& o) {
    auto s = std::make_unique<Server>(o);
    const absl::Status started = s->Start();
    EXPECT_TRUE(started.ok()) << started;
    if (!started.ok()) return nullptr;
    return s;
  }

  ServerOptions TlsOptions() {
    ServerOptions o = Options();
    o.security.tls_cert = testing::GetTestCerts().server_cert;
    o.security.tls_key = testing::GetTestCerts().server_key;
    return o;
  }

  std::string dir_, csv_;
  int servers_ = 0;
};

TEST_F(OpsTest, MetricsEndpointCountsTheTrafficItSaw) {
  ServerOptions o = Options();
  o.metrics_listen = "127.0.0.1:0";
  auto server = Start(o);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->metrics_port(), 0);
  auto ch = Channel(Plain(server->port()));

  EXPECT_EQ(RateCall(ch, "u1", "i1", 4), Code::OK);
  EXPECT_EQ(RateCall(ch, "metrics-new-user", "i2", 5), Code::OK);
  EXPECT_EQ(RateCall(ch, "u2", "metrics-new-item", 3), Code::OK);
  EXPECT_EQ(RateCall(ch, "u1", "i3", 9), Code::INVALID_ARGUMENT);
  std::vector<std::tuple<std::string, std::string, float>> batch;
  for (int i = 0; i < 10; ++i) {
    batch.emplace_back("u3", absl::StrCat("i", 10 + i), i == 4 ? 0.0f : 4.0f);
  }
  int accepted = 0;
  EXPECT_EQ(RateStreamCall(ch, batch, &accepted), Code::OK);
  EXPECT_EQ(accepted, 9);
  EXPECT_EQ(RecommendCall(ch, "u1"), Code::OK);
  EXPECT_EQ(RecommendCall(ch, "nobody-at-all"), Code::OK);
  EXPECT_EQ(RecommendCall(ch, ""), Code::INVALID_ARGUMENT);
  EXPECT_EQ(HealthCall(ch), "SERVING\n");
  std::string job;
  ASSERT_EQ(TrainCall(ch, &job), Code::OK);

  // The watcher records the job's end a moment after the engine swaps.
  std::string text;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    text = Scrape(server->metrics_port());
    if (Metric(text, "recsys_training_jobs_total{result=\"succeeded\"}") == 1)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_THAT(text, HasSubstr("HTTP/1.0 200 OK"));
  EXPECT_THAT(text, HasSubstr("Content-Type: text/plain; version=0.0.4"));

  EXPECT_EQ(Metric(text, Rpc("Rate", "OK")), 3);
  EXPECT_EQ(Metric(text, Rpc("Rate", "INVALID_ARGUMENT")), 1);
  EXPECT_EQ(Metric(text, Rpc("RateStream", "OK")), 1);
  EXPECT_EQ(Metric(text, Rpc("Recommend", "OK")), 2);
  EXPECT_EQ(Metric(text, Rpc("Recommend", "INVALID_ARGUMENT")), 1);
  EXPECT_EQ(Metric(text, Rpc("Train", "OK")), 1);
  EXPECT_EQ(Metric(text,
                   "recsys_grpc_requests_total{service=\"grpc.health.v1."
                   "Health\",method=\"Check\",code=\"OK\"}"),
            1);
  EXPECT_EQ(Metric(text,
                   "recsys_grpc_request_duration_seconds_count{service="
                   "\"recsys.v1.Recommender\",method=\"Recommend\"}"),
            3);
  EXPECT_EQ(Metric(text,
                   "recsys_grpc_request_duration_seconds_bucket{service="
                   "\"recsys.v1.Recommender\",method=\"Rate\",le=\"+Inf\"}"),
            4);
  EXPECT_GT(Metric(text,
                   "recsys_grpc_request_duration_seconds_sum{service="
                   "\"recsys.v1.Recommender\",method=\"Rate\"}"),
            0);

  EXPECT_EQ(Metric(text, "recsys_ratings_accepted_total"), 12);
  EXPECT_EQ(Metric(text, "recsys_user_fold_ins_total"), 12);
  EXPECT_EQ(
      Metric(text, "recsys_ratings_rejected_total{code=\"INVALID_ARGUMENT\"}"),
      2);
  EXPECT_EQ(Metric(text, "recsys_new_users_total"), 1);
  EXPECT_EQ(Metric(text, "recsys_new_items_total"), 1);

  // One lookup per user per group commit; every user's first is a miss.
  // The retraining since started an empty cache for the new model.
  const double hits =
      Metric(text, "recsys_fold_in_cache_lookups_total{result=\"hit\"}");
  const double misses =
      Metric(text, "recsys_fold_in_cache_lookups_total{result=\"miss\"}");
  EXPECT_GE(misses, 1);
  EXPECT_GE(hits, 0);
  EXPECT_LE(hits + misses, 12);
  EXPECT_EQ(Metric(text, "recsys_fold_in_cache_users"), 0);
  EXPECT_EQ(Metric(text, "recsys_fold_in_cache_bytes"), 0);

  EXPECT_EQ(Metric(text, "recsys_log_records_total"), 12);
  EXPECT_GE(Metric(text, "recsys_log_fsync_seconds_count"), 1);
  EXPECT_GT(Metric(text, "recsys_log_fsync_seconds_sum"), 0);
  EXPECT_GT(Metric(text, "recsys_log_bytes_total"), 12 * 28);

  EXPECT_EQ(Metric(text, "recsys_ready"), 1);
  EXPECT_EQ(Metric(text, "recsys_model_version"), 2);
  EXPECT_EQ(Metric(text, "recsys_model_info{kind=\"sgd\"}"), 1);
  EXPECT_GE(Metric(text, "recsys_model_users"), 121);
  EXPECT_GE(Metric(text, "recsys_model_items"), 81);
  EXPECT_GT(Metric(text, "recsys_model_factors"), 0);
  EXPECT_GE(Metric(text, "recsys_model_age_seconds"), 0);
  EXPECT_EQ(Metric(text, "recsys_training_running"), 0);
  EXPECT_EQ(Metric(text, "recsys_training_last_epochs"), 3);
  EXPECT_GT(Metric(text, "recsys_training_last_duration_seconds"), 0);
  EXPECT_EQ(Metric(text, "recsys_auth_failures_total{reason=\"missing\"}"), 0);
}

TEST_F(OpsTest, TlsOnRefusesPlaintextAndWrongNamesTlsOffRefusesTls) {
  REQUIRE_CERTS();
  auto tls_server = Start(TlsOptions());
  ASSERT_NE(tls_server, nullptr);
  const int port = tls_server->port();
  EXPECT_EQ(RecommendCall(Channel(Tls(port)), "u1"), Code::OK);
  EXPECT_EQ(HealthCall(Channel(Tls(port))), "SERVING\n");
  EXPECT_EQ(RecommendCall(Channel(Plain(port)), "u1"), Code::UNAVAILABLE);
  Dial wrong_name = Tls(port);
  wrong_name.server_name.clear();  // 127.0.0.1 is not in the cert
  EXPECT_EQ(RecommendCall(Channel(wrong_name), "u1"), Code::UNAVAILABLE);
  Dial wrong_ca = Tls(port);
  wrong_ca.ca = testing::GetTestCerts().rogue_ca;
  EXPECT_EQ(RecommendCall(Channel(wrong_ca), "u1"), Code::UNAVAILABLE);

  auto plain_server = Start(Options());
  ASSERT_NE(plain_server, nullptr);
  EXPECT_EQ(RecommendCall(Channel(Plain(plain_server->port())), "u1"),
            Code::OK);
  EXPECT_EQ(RecommendCall(Channel(Tls(plain_server->port())), "u1"),
            Code::UNAVAILABLE);
}

TEST_F(OpsTest, MutualTlsRefusesClientsWithoutAGoodCertificate) {
  REQUIRE_CERTS();
  ServerOptions o = TlsOptions();
  o.security.tls_client_ca = testing::GetTestCerts().ca;
  auto server = Start(o);
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  EXPECT_EQ(RecommendCall(Channel(Tls(port)), "u1"), Code::UNAVAILABLE);
  EXPECT_EQ(HealthCall(Channel(Tls(port))), "");
  Dial rogue = Tls(port);
  rogue.cert = testing::GetTestCerts().rogue_cert;
  rogue.key = testing::GetTestCerts().rogue_key;
  EXPECT_EQ(RecommendCall(Channel(rogue), "u1"), Code::UNAVAILABLE);
  Dial good = Tls(port);
  good.cert = testing::GetTestCerts().client_cert;
  good.key = testing::GetTestCerts().client_key;
  EXPECT_EQ(RecommendCall(Channel(good), "u1"), Code::OK);
  EXPECT_EQ(RateCall(Channel(good), "u1", "i1", 4), Code::OK);
}

TEST_F(OpsTest, WritesNeedTheTokenReadsStayOpen) {
  REQUIRE_CERTS();
  ServerOptions o = TlsOptions();
  o.security.token = kToken;
  o.metrics_listen = "127.0.0.1:0";
  auto server = Start(o);
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  auto anonymous = Channel(Tls(port));
  Dial w = Tls(port);
  w.token = "not-the-token-0123456789";
  auto wrong = Channel(w);
  w.token = kToken;
  auto writer = Channel(w);
  const std::vector<std::tuple<std::string, std::string, float>> one = {
      {"tok-user", "i1", 4.0f}};

  EXPECT_EQ(RateCall(anonymous, "tok-user", "i1", 4), Code::UNAUTHENTICATED);
  EXPECT_EQ(RateStreamCall(anonymous, one), Code::UNAUTHENTICATED);
  EXPECT_EQ(TrainCall(anonymous), Code::UNAUTHENTICATED);
  EXPECT_EQ(RateCall(wrong, "tok-user", "i1", 4), Code::UNAUTHENTICATED);
  EXPECT_EQ(TrainCall(wrong), Code::UNAUTHENTICATED);
  // Nothing refused reached the engine.
  EXPECT_EQ(server->engine()->GetUser("tok-user", 10).status().code(),
            absl::StatusCode::kNotFound);

  EXPECT_EQ(RecommendCall(anonymous, "u1"), Code::OK);
  EXPECT_EQ(HealthCall(anonymous), "SERVING\n");
  EXPECT_EQ(RateCall(writer, "tok-user", "i1", 4), Code::OK);
  int accepted = 0;
  EXPECT_EQ(RateStreamCall(writer, {{"tok-user", "i2", 5.0f}}, &accepted),
            Code::OK);
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(TrainCall(writer), Code::OK);
  EXPECT_EQ(RecommendCall(writer, "tok-user"), Code::OK);

  const std::string text = Scrape(server->metrics_port());
  EXPECT_EQ(Metric(text, "recsys_auth_failures_total{reason=\"missing\"}"), 3);
  EXPECT_EQ(Metric(text, "recsys_auth_failures_total{reason=\"invalid\"}"), 2);
  // Refused before any handler: the RPC counters never see those calls.
  EXPECT_EQ(Metric(text, Rpc("Rate", "UNAUTHENTICATED")), -1);
  EXPECT_EQ(Metric(text, Rpc("Rate", "OK")), 1);
}

TEST_F(OpsTest, ProtectReadsNeedsTheTokenForReadsButNotHealth) {
  REQUIRE_CERTS();
  ServerOptions o = TlsOptions();
  o.security.token = kToken;
  o.security.protect_reads = true;
  auto server = Start(o);
  ASSERT_NE(server, nullptr);
  auto anonymous = Channel(Tls(server->port()));
  Dial w = Tls(server->port());
  w.token = kToken;
  auto reader = Channel(w);
  EXPECT_EQ(RecommendCall(anonymous, "u1"), Code::UNAUTHENTICATED);
  EXPECT_EQ(HealthCall(anonymous), "SERVING\n");
  EXPECT_EQ(RecommendCall(reader, "u1"), Code::OK);
}

TEST_F(OpsTest, PlaintextHealthPortServesHealthAndNothingElse) {
  REQUIRE_CERTS();
  ServerOptions o = TlsOptions();
  o.health_listen = "127.0.0.1:0";
  auto server = Start(o);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->health_port(), 0);
  auto health = Channel(Plain(server->health_port()));
  EXPECT_EQ(HealthCall(health), "SERVING\n");
  EXPECT_EQ(RecommendCall(health, "u1"), Code::UNIMPLEMENTED);
  EXPECT_EQ(RateCall(health, "u1", "i1", 4), Code::UNIMPLEMENTED);
  ASSERT_TRUE(server->Shutdown().ok());
}

TEST_F(OpsTest, StartRefusesATokenWithoutTls) {
  ServerOptions o = Options();
  o.security.token = kToken;
  Server server(o);
  const absl::Status s = server.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr(kToken)));
}

}  // namespace
}  // namespace recsys
