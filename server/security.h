// Who may talk to the server: TLS on the gRPC port (mutual TLS when a client
// CA is given) and a bearer token that writing RPCs must carry (reading ones
// too with protect_reads).
//
//   SecurityOptions sec;
//   sec.tls_cert = "/etc/recsys/tls/tls.crt";
//   sec.tls_key = "/etc/recsys/tls/tls.key";
//   RECSYS_ASSIGN_OR_RETURN(sec.token,
//                           LoadToken(token_file,
//                           std::getenv("RECSYS_TOKEN")));
//   RECSYS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
//                           MakeServerCredentials(sec, &metrics));
//   builder.AddListeningPort(address, creds, &port);
//
// The token is checked by a grpc::AuthMetadataProcessor, before any handler
// runs, for every method by its path: health checks are always open (load
// balancers and kubelets carry no token); Rate, RateStream, Train and any
// method this file does not name need the token (a new RPC is closed until
// someone decides otherwise); the other Recommender reads and reflection
// need it only with protect_reads. A missing or wrong token is
// UNAUTHENTICATED. gRPC runs auth processors only on TLS ports, and a token
// sent in clear text is handed to anyone on the path, so a token requires
// TLS: MakeServerCredentials refuses one without it.
//
// The token is compared in constant time, consumed from the metadata (so no
// handler can see it), and never logged or echoed in an error.
#ifndef RECSYS_SERVER_SECURITY_H_
#define RECSYS_SERVER_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/server_credentials.h"

namespace recsys {

class ServerMetrics;

struct SecurityOptions {
  // PEM files. cert and key together turn TLS on; client_ca (which needs
  // them) makes clients present a certificate that CA signed.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // The bearer token itself ("" = no token check).
  std::string token;
  bool protect_reads = false;

  bool tls() const { return !tls_cert.empty(); }
};

// Plaintext credentials when TLS is off; otherwise TLS with the files read
// now (a changed certificate needs a restart), and the token processor when
// a token is set. INVALID_ARGUMENT for contradictory options, NOT_FOUND or
// INVALID_ARGUMENT naming a file that cannot be read or holds no PEM block.
// `metrics` (may be null) counts refused calls.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const SecurityOptions& options, ServerMetrics* metrics);

// The token from `token_file` when set, else from `env_value` (may be null:
// no token, ""). Surrounding whitespace (a trailing newline) is dropped; an
// empty token, or one with characters an HTTP/2 header cannot carry, is
// INVALID_ARGUMENT. Messages never include the token.
absl::StatusOr<std::string> LoadToken(const std::string& token_file,
                                      const char* env_value);

// What a method needs.
enum class MethodAccess { kOpen, kRead, kWrite };
MethodAccess ClassifyMethod(absl::string_view path);

// a == b, taking time that depends only on the lengths, so that timing a
// guess tells an attacker nothing about how much of it was right.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// The processor behind MakeServerCredentials; public for tests.
class BearerTokenProcessor final : public grpc::AuthMetadataProcessor {
 public:
  BearerTokenProcessor(std::string token, bool protect_reads,
                       ServerMetrics* metrics);
  // Cheap and non-blocking: run inline on gRPC's thread.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const std::string token_;
  const bool protect_reads_;
  ServerMetrics* const metrics_;
};

}  // namespace recsys

#endif  // RECSYS_SERVER_SECURITY_H_
