// Throw-away TLS material for tests, made with the openssl command in a
// temporary directory the first time it is asked for: a CA, a server
// certificate for kTestServerName only, a client certificate from that CA,
// and a CA and client certificate that have nothing to do with it.
//
//   const TestCerts& c = GetTestCerts();
//   if (!c.error.empty()) GTEST_SKIP() << c.error;
//   options.tls_cert = c.server_cert;
#ifndef RECSYS_TESTS_TEST_CERTS_H_
#define RECSYS_TESTS_TEST_CERTS_H_

#include <string>

namespace recsys::testing {

// The one name in the server certificate: clients reach 127.0.0.1 and must
// say which name to verify, which exercises that override too.
inline constexpr char kTestServerName[] = "recsys.test";

struct TestCerts {
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string rogue_ca, rogue_cert, rogue_key;
  std::string error;  // set when openssl is missing or failed
};

const TestCerts& GetTestCerts();

}  // namespace recsys::testing

#endif  // RECSYS_TESTS_TEST_CERTS_H_
