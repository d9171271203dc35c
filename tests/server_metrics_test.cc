// The metrics registry's exposition text and the /metrics HTTP responder
// (server/metrics.h, server/metrics_http.h), without a gRPC server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"
#include "server/metrics_http.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The whole HTTP exchange for `request` against 127.0.0.1:port.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  (void)!write(fd, request.data(), request.size());
  shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

TEST(ServerMetrics, CountsByMethodAndCodeWithCumulativeBuckets) {
  ServerMetrics m;
  const int rate = ServerMetrics::MethodIndex("/recsys.v1.Recommender/Rate");
  EXPECT_EQ(ServerMetrics::MethodLabel(rate), "Rate");
  EXPECT_EQ(ServerMetrics::MethodIndex("/made.up/Method"),
            ServerMetrics::NumMethods() - 1);
  m.RecordRpc(rate, 0, absl::Microseconds(50));  // first bucket
  m.RecordRpc(rate, 0, absl::Milliseconds(3));   // le 0.005
  m.RecordRpc(rate, 3, absl::Seconds(60));       // +Inf only
  m.RecordAccepted(5, 1, 2);
  m.RecordRejected(3, 2);
  const std::string text = m.Render(nullptr, absl::Now());
  const std::string labels =
      "service=\"recsys.v1.Recommender\",method=\"Rate\"";
  EXPECT_THAT(text, HasSubstr(absl::StrCat("recsys_grpc_requests_total{",
                                           labels, ",code=\"OK\"} 2\n")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("recsys_grpc_requests_total{", labels,
                                     ",code=\"INVALID_ARGUMENT\"} 1\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "recsys_grpc_request_duration_seconds_bucket{", labels,
                        ",le=\"0.0001\"} 1\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "recsys_grpc_request_duration_seconds_bucket{", labels,
                        ",le=\"0.005\"} 2\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "recsys_grpc_request_duration_seconds_bucket{", labels,
                        ",le=\"10\"} 2\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "recsys_grpc_request_duration_seconds_bucket{", labels,
                        ",le=\"+Inf\"} 3\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "recsys_grpc_request_duration_seconds_count{", labels,
                        "} 3\n")));
  EXPECT_THAT(text, HasSubstr("recsys_ratings_accepted_total 5\n"));
  EXPECT_THAT(text, HasSubstr("recsys_user_fold_ins_total 5\n"));
  EXPECT_THAT(text, HasSubstr("recsys_new_items_total 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "recsys_ratings_rejected_total{code=\"INVALID_ARGUMENT\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("recsys_ready 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE recsys_grpc_request_duration_seconds "
                              "histogram\n"));
}

TEST(ServerMetrics, TrainingStateAndDuration) {
  ServerMetrics m;
  m.TrainingStarted();
  EXPECT_THAT(m.Render(nullptr, absl::Now()),
              HasSubstr("recsys_training_running 1\n"));
  m.TrainingEnded(ServerMetrics::JobResult::kSucceeded, 2.5, 30);
  m.TrainingStarted();
  m.TrainingEnded(ServerMetrics::JobResult::kCancelled, 7, 3);
  m.TrainingStarted();
  m.TrainingEnded(ServerMetrics::JobResult::kFailed, 0.25, 1);
  const std::string text = m.Render(nullptr, absl::Now());
  EXPECT_THAT(text, HasSubstr("recsys_training_running 0\n"));
  EXPECT_THAT(
      text, HasSubstr("recsys_training_jobs_total{result=\"succeeded\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("recsys_training_jobs_total{result=\"failed\"} 1\n"));
  EXPECT_THAT(
      text, HasSubstr("recsys_training_jobs_total{result=\"cancelled\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("recsys_training_last_duration_seconds 0.25\n"));
}

TEST(MetricsHttp, AnswersOnlyGetMetrics) {
  auto render = [] { return std::string("x_total 1\n"); };
  EXPECT_THAT(internal::MetricsHttpResponse(
                  "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", render),
              StartsWith("HTTP/1.0 200 OK\r\n"));
  EXPECT_THAT(
      internal::MetricsHttpResponse("GET /metrics?x=1 HTTP/1.0\n\n", render),
      HasSubstr("\r\n\r\nx_total 1\n"));
  const std::string head =
      internal::MetricsHttpResponse("HEAD /metrics HTTP/1.0\r\n\r\n", render);
  EXPECT_THAT(head, HasSubstr("Content-Length: 10\r\n"));
  EXPECT_THAT(head, ::testing::EndsWith("\r\n\r\n"));
  EXPECT_THAT(internal::MetricsHttpResponse("GET / HTTP/1.0\r\n\r\n", render),
              StartsWith("HTTP/1.0 404"));
  EXPECT_THAT(
      internal::MetricsHttpResponse("POST /metrics HTTP/1.0\r\n\r\n", render),
      StartsWith("HTTP/1.0 405"));
  EXPECT_THAT(internal::MetricsHttpResponse("garbage\r\n\r\n", render),
              StartsWith("HTTP/1.0 400"));
}

TEST(MetricsHttp, SplitsAddresses) {
  std::string host, port;
  ASSERT_TRUE(internal::SplitHostPort("127.0.0.1:9464", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, "9464");
  ASSERT_TRUE(internal::SplitHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  ASSERT_TRUE(internal::SplitHostPort(":9464", &host, &port).ok());
  EXPECT_EQ(host, "");
  EXPECT_FALSE(internal::SplitHostPort("9464", &host, &port).ok());
  EXPECT_FALSE(internal::SplitHostPort("a:99999", &host, &port).ok());
  EXPECT_FALSE(internal::SplitHostPort("[::1]9", &host, &port).ok());
}

TEST(MetricsHttp, ServesOverTcpAndStops) {
  int calls = 0;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", [&calls] {
        ++calls;
        return absl::StrCat("recsys_scrapes ", calls, "\n");
      });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);
  EXPECT_THAT(Exchange(port, "GET /metrics HTTP/1.0\r\n\r\n"),
              HasSubstr("\r\n\r\nrecsys_scrapes 1\n"));
  EXPECT_THAT(Exchange(port, "GET /metrics HTTP/1.0\r\n\r\n"),
              HasSubstr("recsys_scrapes 2\n"));
  // A client that sends half a request and goes away does not wedge it.
  EXPECT_THAT(Exchange(port, "GET /met"), HasSubstr("HTTP/1.0 4"));
  EXPECT_THAT(Exchange(port, "GET /metrics HTTP/1.0\r\n\r\n"),
              HasSubstr("recsys_scrapes 3\n"));
  // The same port cannot be bound twice.
  EXPECT_FALSE(MetricsHttpServer::Start(absl::StrCat("127.0.0.1:", port), [] {
                 return std::string();
               }).ok());
  server->reset();
  EXPECT_EQ(Exchange(port, "GET /metrics HTTP/1.0\r\n\r\n"), "");
}

// Connections are served one at a time, so a client that sends its request
// a byte at a time must lose the endpoint after one deadline (2 s), not
// keep it as long as it keeps sending.
TEST(MetricsHttp, ADrippingClientHoldsItForOneDeadlineOnly) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0",
                               [] { return std::string("recsys_up 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const int slow = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(slow, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // 12 s of dripping, unless the server hangs up first.
  std::thread drip([slow] {
    const std::string request =
        "GET /metrics HTTP/1.0\r\nX-Pad: " + std::string(200, 'x') + "\r\n\r\n";
    for (size_t k = 0; k < 40 && k < request.size(); ++k) {
      if (send(slow, &request[k], 1, MSG_NOSIGNAL) != 1) return;
      absl::SleepFor(absl::Milliseconds(300));
    }
  });
  absl::SleepFor(absl::Milliseconds(200));  // the server is reading it
  const absl::Time start = absl::Now();
  EXPECT_THAT(Exchange(port, "GET /metrics HTTP/1.0\r\n\r\n"),
              HasSubstr("recsys_up 1\n"));
  // Without the deadline the scrape waits out the whole drip (12 s).
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  shutdown(slow, SHUT_RDWR);
  drip.join();
  close(slow);
}

}  // namespace
}  // namespace recsys
