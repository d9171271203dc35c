// A recsys-server child process for one benchmark run: a fresh temporary
// data directory, a port picked by the kernel (--listen=127.0.0.1:0 and
// --port-file), stderr kept in a log file, and SIGTERM (then SIGKILL) when
// the run ends. The child also gets SIGTERM if the benchmark dies.
//
//   ServerProcess server(bin, {"--model=/tmp/m.rsm"});
//   RECSYS_RETURN_IF_ERROR(server.Start(absl::Seconds(300)));
//   ... server.target() ...
#ifndef RECSYS_BENCH_SERVER_PROCESS_H_
#define RECSYS_BENCH_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace recsys::bench {

class ServerProcess {
 public:
  ServerProcess(std::string binary, std::vector<std::string> flags);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server and returns once it answers GetModelInfo (training a
  // first model may take a while: `timeout` bounds it).
  absl::Status Start(absl::Duration timeout);
  // SIGTERM, a few seconds' grace, then SIGKILL; removes the data directory.
  void Stop();

  std::string target() const;
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_; }
  // User plus system CPU seconds the server has used (from /proc), or -1.
  double CpuSeconds() const;
  // The last lines of the server's log, for error messages.
  std::string LogTail() const;

 private:
  // Start's waits, both bounded by `deadline` and failing early when the
  // child exits: for the port the child writes to `port_file`, then for an
  // answer to GetModelInfo.
  absl::Status WaitForPort(const std::string& port_file, absl::Time deadline);
  absl::Status WaitUntilServing(absl::Time deadline);
  // Reaps the child if it has exited (then pid_ is -1).
  bool Exited();

  std::string binary_;
  std::vector<std::string> flags_;
  std::string dir_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// recsys-server next to the running program (the install layout) or in
// ../server/ (the build tree), else "".
std::string FindServerBinary();

}  // namespace recsys::bench

#endif  // RECSYS_BENCH_SERVER_PROCESS_H_
