// A minimal HTTP/1.0 responder for Prometheus scrapes: `GET /metrics` (and
// HEAD) answers the text `render` returns; any other path is 404, any other
// method 405. One thread serves one connection at a time, with 2-second
// read and write timeouts, so a stalled client delays scrapes by at most
// that and can never reach the gRPC port's threads.
//
//   RECSYS_ASSIGN_OR_RETURN(
//       std::unique_ptr<MetricsHttpServer> http,
//       MetricsHttpServer::Start("127.0.0.1:9464", [&] { return text(); }));
//   ... http->port() ...
//   http.reset();  // stops and joins
//
// Why not a library: the one Debian package that fits (cpp-httplib) is
// built against OpenSSL, zlib and brotli and needs their defines to match
// its ABI; one route does not justify that.
#ifndef RECSYS_SERVER_METRICS_HTTP_H_
#define RECSYS_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recsys {

class MetricsHttpServer {
 public:
  using Render = std::function<std::string()>;

  // `listen` is "host:port" ("[::1]:9464", "0.0.0.0:9464"; port 0 picks a
  // free one). UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, Render render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer(int listen_fd, int wake_fd, int port, Render render);
  void Loop();
  void Serve(int fd);

  const int listen_fd_;
  const int wake_fd_;  // an eventfd the destructor signals
  const int port_;
  const Render render_;
  std::thread thread_;
};

namespace internal {
// Splits "host:port" / "[v6]:port"; the host may be empty (all addresses).
absl::Status SplitHostPort(absl::string_view listen, std::string* host,
                           std::string* port);
// The response to one request head (request line and headers); exposed for
// tests.
std::string MetricsHttpResponse(absl::string_view request,
                                const MetricsHttpServer::Render& render);
}  // namespace internal

}  // namespace recsys

#endif  // RECSYS_SERVER_METRICS_HTTP_H_
