#include "bench/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys::bench {

namespace fs = std::filesystem;

ServerProcess::ServerProcess(std::string binary, std::vector<std::string> flags)
    : binary_(std::move(binary)), flags_(std::move(flags)) {}

ServerProcess::~ServerProcess() { Stop(); }

std::string ServerProcess::target() const {
  return absl::StrCat("127.0.0.1:", port_);
}

namespace {

// In the forked child: dies with the parent, sends stdout and stderr to
// `log` and runs `args` (binary first); exits 127 when it cannot.
[[noreturn]] void RunChild(pid_t parent, const std::string& log,
                           std::vector<std::string> args) {
  // Never outlive the benchmark, even if it is killed.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

}  // namespace

absl::Status ServerProcess::Start(absl::Duration timeout) {
  std::string tmpl = (fs::temp_directory_path() / "recsys-bench-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError("cannot create a temporary directory");
  }
  dir_ = tmpl;
  log_ = dir_ + "/server.log";
  const std::string port_file = dir_ + "/port";
  std::vector<std::string> args = {
      binary_, "--listen=127.0.0.1:0", "--data-dir=" + dir_ + "/data",
      "--port-file=" + port_file, "--grace-seconds=1"};
  args.insert(args.end(), flags_.begin(), flags_.end());
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) RunChild(parent, log_, std::move(args));

  const absl::Time deadline = absl::Now() + timeout;
  RECSYS_RETURN_IF_ERROR(WaitForPort(port_file, deadline));
  return WaitUntilServing(deadline);
}

bool ServerProcess::Exited() {
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

absl::Status ServerProcess::WaitForPort(const std::string& port_file,
                                        absl::Time deadline) {
  while (port_ == 0) {
    std::ifstream in(port_file);
    if (!(in >> port_)) port_ = 0;
    if (port_ != 0) break;
    if (Exited()) {
      return absl::UnavailableError(absl::StrCat(
          binary_, " exited during start-up; its log:\n", LogTail()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("the server never wrote its port");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::OkStatus();
}

absl::Status ServerProcess::WaitUntilServing(absl::Time deadline) {
  // The port is bound before the model is loaded or trained; it is ready
  // when the service answers.
  auto channel =
      grpc::CreateChannel(target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Recommender::NewStub(channel);
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(2));
    v1::ModelInfo info;
    if (stub->GetModelInfo(&ctx, {}, &info).ok()) return absl::OkStatus();
    if (Exited()) {
      return absl::UnavailableError(absl::StrCat(
          binary_, " exited during start-up; its log:\n", LogTail()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the server did not load a model in time; see ", log_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void ServerProcess::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 300 && !gone; ++i) {
      gone = waitpid(pid_, &status, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }
}

double ServerProcess::CpuSeconds() const {
  if (pid_ <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid_, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return -1;
  // Fields after the parenthesised command name; utime and stime are the
  // 14th and 15th of the whole line.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> f =
      absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
  if (f.size() < 13) return -1;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::stod(f[11]) + std::stod(f[12])) / ticks;
}

std::string ServerProcess::LogTail() const {
  std::ifstream in(log_);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  const size_t from = lines.size() > 20 ? lines.size() - 20 : 0;
  std::ostringstream out;
  for (size_t i = from; i < lines.size(); ++i) out << "  " << lines[i] << "\n";
  return out.str();
}

std::string FindServerBinary() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (const fs::path& p :
       {self.parent_path() / "recsys-server",
        self.parent_path().parent_path() / "server" / "recsys-server"}) {
    if (fs::exists(p, ec)) return p.string();
  }
  return "";
}

}  // namespace recsys::bench
