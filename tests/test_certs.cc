#include "tests/test_certs.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace recsys::testing {

namespace {

// The keys are throw-away, but they need not outlive the test process.
std::string* cert_dir = nullptr;
void RemoveCertDir() {
  std::error_code ec;
  if (cert_dir != nullptr) std::filesystem::remove_all(*cert_dir, ec);
}

}  // namespace

const TestCerts& GetTestCerts() {
  static const TestCerts* certs = [] {
    auto* c = new TestCerts;
    const std::string dir = (std::filesystem::temp_directory_path() /
                             absl::StrCat("recsys_test_certs_", getpid()))
                                .string();
    cert_dir = new std::string(dir);
    std::atexit(RemoveCertDir);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string log = dir + "/openssl.log";
    auto run = [&](const std::string& args) {
      const std::string cmd =
          absl::StrCat("cd ", dir, " && openssl ", args, " >>", log, " 2>&1");
      return std::system(cmd.c_str()) == 0;
    };
    // P-256 keys: made in milliseconds, where RSA takes a noticeable time.
    const std::string key =
        "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    WriteFile(dir + "/server.ext",
              absl::StrCat("subjectAltName=DNS:", kTestServerName,
                           "\nextendedKeyUsage=serverAuth\n"));
    WriteFile(dir + "/client.ext", "extendedKeyUsage=clientAuth\n");
    auto sign = [&](const std::string& name, const std::string& ca,
                    const std::string& ext) {
      return run(absl::StrCat("req ", key, " -keyout ", name, ".key -out ",
                              name, ".csr -subj /CN=recsys-test-", name)) &&
             run(absl::StrCat("x509 -req -in ", name, ".csr -CA ", ca,
                              ".pem -CAkey ", ca, ".key -CAcreateserial -out ",
                              name, ".pem -days 2 -extfile ", ext));
    };
    auto make_ca = [&](const std::string& name) {
      return run(absl::StrCat("req -x509 ", key, " -keyout ", name,
                              ".key -out ", name,
                              ".pem -days 2 -subj /CN=", name));
    };
    const bool ok = run("version") && make_ca("ca") &&
                    sign("server", "ca", "server.ext") &&
                    sign("client", "ca", "client.ext") && make_ca("rogue-ca") &&
                    sign("rogue", "rogue-ca", "client.ext");
    if (!ok) {
      c->error = absl::StrCat(
          "could not make test certificates with openssl (install the "
          "openssl package); see ",
          log);
      return c;
    }
    c->ca = dir + "/ca.pem";
    c->server_cert = dir + "/server.pem";
    c->server_key = dir + "/server.key";
    c->client_cert = dir + "/client.pem";
    c->client_key = dir + "/client.key";
    c->rogue_ca = dir + "/rogue-ca.pem";
    c->rogue_cert = dir + "/rogue.pem";
    c->rogue_key = dir + "/rogue.key";
    return c;
  }();
  return *certs;
}

}  // namespace recsys::testing
