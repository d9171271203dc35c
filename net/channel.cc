// Channel construction for recsys-client, recsys-bench and read replicas:
// plaintext, TLS, mutual TLS and the bearer token.
#include "net/channel.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file_io.h"
#include "base/usage_error.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace recsys {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> contents = ReadSmallFile(path, "token");
  if (!contents.ok()) return contents.status();
  std::string token(absl::StripAsciiWhitespace(*contents));
  if (token.empty()) {
    return UsageError(absl::StrCat("token file ", path, " is empty"));
  }
  return token;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options) {
  return MakeChannel(options, grpc::ChannelArguments());
}

const char kRetryServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [{"service": "recsys.v1.Recommender"}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.2s",
      "maxBackoff": "3s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})json";

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const ChannelOptions& options, grpc::ChannelArguments args) {
  if (options.retry_unavailable) {
    args.SetServiceConfigJSON(kRetryServiceConfig);
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return UsageError("--tls-cert and --tls-key go together");
  }
  if (!options.UsesTls()) {
    if (!options.token.empty()) {
      return UsageError(
          "a token is sent only over TLS: add --tls-ca=FILE (or --tls for "
          "the system's CAs)");
    }
    return grpc::CreateCustomChannel(options.target,
                                     grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadSmallFile(options.tls_ca, "TLS CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = std::move(*ca);
  }
  if (!options.tls_cert.empty()) {
    absl::StatusOr<std::string> cert =
        ReadSmallFile(options.tls_cert, "TLS certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadSmallFile(options.tls_key, "TLS key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = std::move(*cert);
    ssl.pem_private_key = std::move(*key);
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(ssl);
  if (!options.token.empty()) {
    // AccessTokenCredentials sends "authorization: Bearer <token>".
    creds = grpc::CompositeChannelCredentials(
        creds, grpc::AccessTokenCredentials(options.token));
  }
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.target, creds, args);
}

}  // namespace recsys
