#include "server/security.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file_io.h"
#include "grpcpp/security/server_credentials.h"
#include "server/metrics.h"

namespace recsys {
namespace {

constexpr char kBearer[] = "bearer ";

// A wrong file here otherwise surfaces as gRPC failing to listen, with the
// reason only in gRPC's own log.
absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view what,
                                    absl::string_view block) {
  absl::StatusOr<std::string> pem = ReadSmallFile(path, what);
  if (!pem.ok()) return pem.status();
  if (!absl::StrContains(*pem, "-----BEGIN ") ||
      !absl::StrContains(*pem, block)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file ", path, " holds no PEM ", block, " block"));
  }
  return pem;
}

absl::Status CheckToken(absl::string_view token, absl::string_view source) {
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, " is empty"));
  }
  for (const char c : token) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the token in ", source,
          " has characters a header cannot carry (only visible ASCII)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Every byte is looked at and the differences OR-ed together, so the loop
  // never ends early; volatile keeps the compiler from adding an exit.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

MethodAccess ClassifyMethod(absl::string_view path) {
  if (absl::StartsWith(path, "/grpc.health.v1.Health/")) {
    return MethodAccess::kOpen;
  }
  static constexpr absl::string_view kReads[] = {
      "/recsys.v1.Recommender/Recommend",
      "/recsys.v1.Recommender/SimilarItems",
      "/recsys.v1.Recommender/GetUser",
      "/recsys.v1.Recommender/GetItem",
      "/recsys.v1.Recommender/GetModelInfo",
      "/recsys.v1.Recommender/WatchTraining",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  };
  for (absl::string_view r : kReads) {
    if (path == r) return MethodAccess::kRead;
  }
  return MethodAccess::kWrite;
}

absl::StatusOr<std::string> LoadToken(const std::string& token_file,
                                      const char* env_value) {
  std::string token;
  std::string source;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> contents = ReadSmallFile(token_file, "token");
    if (!contents.ok()) return contents.status();
    token = std::move(*contents);
    source = absl::StrCat("token file ", token_file);
  } else if (env_value != nullptr) {
    token = env_value;
    source = "RECSYS_TOKEN";
  } else {
    return std::string();
  }
  const std::string trimmed(absl::StripAsciiWhitespace(token));
  if (absl::Status s = CheckToken(trimmed, source); !s.ok()) return s;
  return trimmed;
}

BearerTokenProcessor::BearerTokenProcessor(std::string token,
                                           bool protect_reads,
                                           ServerMetrics* metrics)
    : token_(std::move(token)),
      protect_reads_(protect_reads),
      metrics_(metrics) {}

grpc::Status BearerTokenProcessor::Process(const InputMetadata& auth_metadata,
                                           grpc::AuthContext*,
                                           OutputMetadata* consumed,
                                           OutputMetadata*) {
  absl::string_view path;
  if (auto it = auth_metadata.find(":path"); it != auth_metadata.end()) {
    path = absl::string_view(it->second.data(), it->second.size());
  }
  absl::string_view header;
  bool has_header = false;
  if (auto it = auth_metadata.find("authorization");
      it != auth_metadata.end()) {
    header = absl::string_view(it->second.data(), it->second.size());
    has_header = true;
    // Handlers never need it, so none can leak it.
    consumed->insert({"authorization", std::string(header)});
  }
  const MethodAccess access = ClassifyMethod(path);
  if (access == MethodAccess::kOpen ||
      (access == MethodAccess::kRead && !protect_reads_)) {
    return grpc::Status::OK;
  }
  if (!has_header) {
    if (metrics_ != nullptr) metrics_->RecordAuthFailure(true);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this call needs a bearer token "
                        "(authorization: Bearer <token>)");
  }
  const bool bearer =
      header.size() >= sizeof(kBearer) - 1 &&
      absl::EqualsIgnoreCase(header.substr(0, sizeof(kBearer) - 1), kBearer);
  const absl::string_view given =
      bearer ? header.substr(sizeof(kBearer) - 1) : absl::string_view();
  if (!bearer || !ConstantTimeEquals(given, token_)) {
    if (metrics_ != nullptr) metrics_->RecordAuthFailure(false);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "invalid bearer token");
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const SecurityOptions& options, ServerMetrics* metrics) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together: give both or neither");
  }
  if (!options.tls()) {
    if (!options.tls_client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key");
    }
    if (!options.token.empty()) {
      return absl::InvalidArgumentError(
          "a token (--token-file or RECSYS_TOKEN) needs TLS (--tls-cert and "
          "--tls-key): gRPC checks tokens only on TLS ports, and a token "
          "sent in clear text can be read by anyone on the path");
    }
    if (options.protect_reads) {
      return absl::InvalidArgumentError(
          "--protect-reads needs a token (--token-file or RECSYS_TOKEN) and "
          "TLS");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.protect_reads && options.token.empty()) {
    return absl::InvalidArgumentError(
        "--protect-reads needs a token (--token-file or RECSYS_TOKEN)");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  {
    absl::StatusOr<std::string> key =
        ReadPem(options.tls_key, "TLS key", "PRIVATE KEY");
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> cert =
        ReadPem(options.tls_cert, "TLS certificate", "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    pair.private_key = std::move(*key);
    pair.cert_chain = std::move(*cert);
  }
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem(options.tls_client_ca, "TLS client CA", "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = std::move(*ca);
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::SslServerCredentials(ssl);
  if (!options.token.empty()) {
    creds->SetAuthMetadataProcessor(std::make_shared<BearerTokenProcessor>(
        options.token, options.protect_reads, metrics));
  }
  return creds;
}

}  // namespace recsys
