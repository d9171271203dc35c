#include "client/security_flags.h"

#include <string>
#include <utility>

#include "absl/flags/flag.h"

ABSL_FLAG(bool, tls, false,
          "Use TLS, trusting the system's CAs (implied by the other --tls "
          "flags)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA file to verify the server with");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate for mutual TLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to expect in the server's certificate instead of the "
          "target's host");
ABSL_FLAG(std::string, token, "",
          "Bearer token for writes (visible in ps: prefer --token_file)");
ABSL_FLAG(std::string, token_file, "", "File holding the bearer token");

namespace recsys {

absl::StatusOr<ChannelOptions> SecurityFromFlags() {
  ChannelOptions o;
  o.tls = absl::GetFlag(FLAGS_tls);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  o.token = absl::GetFlag(FLAGS_token);
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!token_file.empty()) {
    if (!o.token.empty()) return UsageError("give --token or --token-file");
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    o.token = *std::move(token);
  }
  return o;
}

}  // namespace recsys
