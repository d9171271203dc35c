// The bearer-token check and credential options (server/security.h), without
// a network: the processor is called with hand-made metadata.
#include "server/security.h"

#include <cstdlib>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"
#include "tests/test_util.h"

namespace recsys {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ConstantTimeEquals, AgreesWithOperatorEquals) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("s3cret-token", "s3cret-token"));
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token", "S3cret-token"));  // first
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token", "s3cret-tokeN"));  // last
  EXPECT_FALSE(ConstantTimeEquals("s3cret", "s3cret-token"));        // prefix
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token", "s3cret"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_FALSE(ConstantTimeEquals("x", ""));
  // A shorter guess padded with NULs must not match.
  EXPECT_FALSE(ConstantTimeEquals(std::string("ab\0", 3), "ab"));
  // Every single-bit flip of every byte is noticed.
  const std::string token = "0123456789abcdef0123456789abcdef";
  for (size_t i = 0; i < token.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string guess = token;
      guess[i] = static_cast<char>(guess[i] ^ (1 << bit));
      EXPECT_FALSE(ConstantTimeEquals(guess, token)) << i << " " << bit;
    }
  }
}

TEST(ClassifyMethod, WritesClosedReadsOpenHealthAlwaysOpen) {
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/Rate"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/RateStream"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/Train"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/DeleteUser"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/DeleteUsers"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/UpsertItems"),
            MethodAccess::kWrite);
  // A replica's feed hands out every rating: as closed as a write.
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Replication/FollowLog"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Replication/FetchSnapshot"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/CancelTraining"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/GetItem"),
            MethodAccess::kRead);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/Recommend"),
            MethodAccess::kRead);
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/GetModelInfo"),
            MethodAccess::kRead);
  EXPECT_EQ(ClassifyMethod("/grpc.health.v1.Health/Check"),
            MethodAccess::kOpen);
  EXPECT_EQ(ClassifyMethod("/grpc.health.v1.Health/Watch"),
            MethodAccess::kOpen);
  // Fail closed: what we have not named needs the token.
  EXPECT_EQ(ClassifyMethod("/recsys.v1.Recommender/DeleteEverything"),
            MethodAccess::kWrite);
  EXPECT_EQ(ClassifyMethod(""), MethodAccess::kWrite);
}

using Metadata = grpc::AuthMetadataProcessor::InputMetadata;

// The metadata a call brings; the strings must outlive the returned map.
Metadata Call(const std::string& path, const std::string* authorization) {
  Metadata md;
  md.insert({":path", path});
  if (authorization != nullptr) md.insert({"authorization", *authorization});
  return md;
}

grpc::StatusCode Check(BearerTokenProcessor& p, const std::string& path,
                       const std::string* authorization,
                       std::string* message = nullptr) {
  grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
  const grpc::Status s =
      p.Process(Call(path, authorization), nullptr, &consumed, &response);
  if (message != nullptr) *message = s.error_message();
  if (authorization != nullptr) {
    // The header never reaches a handler.
    EXPECT_EQ(consumed.count("authorization"), 1u);
  }
  return s.error_code();
}

TEST(BearerTokenProcessor, WritesNeedTheTokenReadsDoNot) {
  ServerMetrics metrics;
  BearerTokenProcessor p("the-right-token-123", false, &metrics);
  const std::string rate = "/recsys.v1.Recommender/Rate";
  const std::string good = "Bearer the-right-token-123";
  const std::string lower = "bearer the-right-token-123";
  const std::string wrong = "Bearer the-wrong-token-123";
  const std::string basic = "Basic the-right-token-123";
  const std::string bare = "the-right-token-123";
  std::string message;
  EXPECT_EQ(Check(p, rate, nullptr, &message),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(message, HasSubstr("bearer token"));
  EXPECT_EQ(Check(p, rate, &wrong, &message),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(message, Not(HasSubstr("the-wrong-token")));
  EXPECT_THAT(message, Not(HasSubstr("the-right-token")));
  EXPECT_EQ(Check(p, rate, &basic), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Check(p, rate, &bare), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Check(p, rate, &good), grpc::StatusCode::OK);
  EXPECT_EQ(Check(p, rate, &lower), grpc::StatusCode::OK);
  EXPECT_EQ(Check(p, "/recsys.v1.Recommender/Train", nullptr),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Check(p, "/recsys.v1.Recommender/RateStream", nullptr),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Check(p, "/recsys.v1.Recommender/Recommend", nullptr),
            grpc::StatusCode::OK);
  EXPECT_EQ(Check(p, "/grpc.health.v1.Health/Check", nullptr),
            grpc::StatusCode::OK);

  const std::string text = metrics.Render(nullptr, absl::Now());
  EXPECT_THAT(text, HasSubstr("recsys_auth_failures_total{reason=\"missing\"} "
                              "3\n"));
  EXPECT_THAT(text, HasSubstr("recsys_auth_failures_total{reason=\"invalid\"} "
                              "3\n"));
}

TEST(BearerTokenProcessor, ProtectReadsClosesReadsButNotHealth) {
  BearerTokenProcessor p("tok-tok-tok-tok-tok", true, nullptr);
  const std::string good = "Bearer tok-tok-tok-tok-tok";
  EXPECT_EQ(Check(p, "/recsys.v1.Recommender/Recommend", nullptr),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Check(p, "/recsys.v1.Recommender/Recommend", &good),
            grpc::StatusCode::OK);
  EXPECT_EQ(Check(p,
                  "/grpc.reflection.v1alpha.ServerReflection/"
                  "ServerReflectionInfo",
                  nullptr),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Check(p, "/grpc.health.v1.Health/Check", nullptr),
            grpc::StatusCode::OK);
}

TEST(LoadToken, FileWinsOverEnvironmentAndIsTrimmed) {
  const std::string dir = testing::MakeTempDir("token");
  testing::WriteFile(dir + "/token", "  from-the-file-0123\n");
  absl::StatusOr<std::string> t = LoadToken(dir + "/token", "from-env");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "from-the-file-0123");
  t = LoadToken("", "from-env-456\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "from-env-456");
  t = LoadToken("", nullptr);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "");
}

TEST(LoadToken, RefusesEmptyUnreadableAndUnsendableTokensWithoutEchoing) {
  const std::string dir = testing::MakeTempDir("token");
  testing::WriteFile(dir + "/empty", "\n\n");
  EXPECT_EQ(LoadToken(dir + "/empty", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadToken(dir + "/missing", nullptr).status().code(),
            absl::StatusCode::kNotFound);
  testing::WriteFile(dir + "/spaces", "two secret-words\n");
  const absl::Status s = LoadToken(dir + "/spaces", nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("secret-words")));
  EXPECT_EQ(LoadToken("", "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MakeServerCredentials, RefusesContradictoryOptions) {
  const std::string dir = testing::MakeTempDir("creds");
  SecurityOptions o;
  EXPECT_TRUE(MakeServerCredentials(o, nullptr).ok());  // plaintext
  o.token = "some-token-0123456789";
  EXPECT_THAT(std::string(MakeServerCredentials(o, nullptr).status().message()),
              HasSubstr("needs TLS"));
  o = {};
  o.protect_reads = true;
  EXPECT_FALSE(MakeServerCredentials(o, nullptr).ok());
  o = {};
  o.tls_client_ca = dir + "/ca.pem";
  EXPECT_FALSE(MakeServerCredentials(o, nullptr).ok());
  o = {};
  o.tls_cert = dir + "/cert.pem";
  EXPECT_FALSE(MakeServerCredentials(o, nullptr).ok());  // no key
  o.tls_key = dir + "/key.pem";
  EXPECT_EQ(MakeServerCredentials(o, nullptr).status().code(),
            absl::StatusCode::kNotFound);
  testing::WriteFile(o.tls_cert, "not a certificate\n");
  testing::WriteFile(o.tls_key, "-----BEGIN PRIVATE KEY-----\nAA\n");
  const absl::Status s = MakeServerCredentials(o, nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cert.pem"));
}

}  // namespace
}  // namespace recsys
