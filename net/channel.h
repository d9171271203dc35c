// How a program reaches a recsys server: plaintext, TLS (the server
// verified against a CA file or the system roots), mutual TLS (a client
// certificate), and a bearer token on every call (TLS only: gRPC will not
// send call credentials in clear text, and neither should we). Used by
// recsys-client, recsys-bench and a read replica's recsys-server.
//
//   ChannelOptions o;
//   o.target = "recsys:50051";
//   o.tls_ca = "/etc/recsys/ca.pem";
//   RECSYS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
//                           MakeChannel(o));
#ifndef RECSYS_NET_CHANNEL_H_
#define RECSYS_NET_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace recsys {

// How to reach the server.
struct ChannelOptions {
  std::string target = "localhost:50051";
  bool tls = false;      // TLS with the system's roots; implied by the below
  std::string tls_ca;    // PEM file of CAs to trust instead
  std::string tls_cert;  // PEM client certificate for mutual TLS ...
  std::string tls_key;   // ... and its key
  // The name the server's certificate must carry, when it differs from the
  // target's host (tests, or an address reached through a tunnel).
  std::string tls_server_name;
  std::string token;  // sent as "authorization: Bearer <token>"
  // Retry calls that fail UNAVAILABLE (a server that is starting, replaying
  // its log or loading its model, or shutting down; a connection lost),
  // with backoff, under kRetryServiceConfig. Off for load generators and
  // replicas, which count or handle such failures themselves.
  bool retry_unavailable = false;
  bool UsesTls() const {
    return tls || !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty() ||
           !tls_server_name.empty();
  }
};

// The service config of a channel with retry_unavailable: every Recommender
// method retried on UNAVAILABLE, up to 5 attempts, backing off from 0.2 s
// by x2 to 3 s (gRPC jitters each wait). A call that was applied before the
// connection failed may be applied again: a rating replaces itself, and an
// event needs its event_id to count once.
extern const char kRetryServiceConfig[];

// A usage error (exit code 2) for contradictory options; NOT_FOUND for a
// file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options);
// The same with `args` for the channel (e.g. a subchannel pool of its own,
// as recsys-bench gives each of its connections).
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options, grpc::ChannelArguments args);
// The token in `path`, surrounding whitespace dropped; messages never
// include it.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace recsys

#endif  // RECSYS_NET_CHANNEL_H_
