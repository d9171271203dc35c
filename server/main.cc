// recsys-server: serves a factor model over gRPC (recsys.v1.Recommender,
// grpc.health.v1 and reflection), keeps every accepted rating in a durable
// log under --data_dir and retrains on request.
//
//   recsys-server --data_dir=/var/lib/recsys      # newest snapshot there
//   recsys-server --model=ml-100k.rsm              # first start from a file
//   recsys-server --train_data=ml-100k --listen=127.0.0.1:50051
//   recsys-server --tls_cert=tls.crt --tls_key=tls.key --token_file=token
//   recsys-server --replica_of=primary:50051 --data_dir=/var/lib/replica
//
// Flag names accept dashes or underscores on the command line (a --flagfile
// must use underscores). The token may also come from $RECSYS_TOKEN, which
// is then removed from the environment.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/flag_names.h"
#include "engine/events.h"
#include "server/log.h"
#include "server/security.h"
#include "server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on (host:port; port 0 picks a free one)");
ABSL_FLAG(std::string, data_dir, "recsys-data",
          "Directory for model snapshots and the rating log");
ABSL_FLAG(std::string, model, "",
          "Model file to serve when --data_dir has no snapshot yet");
ABSL_FLAG(std::string, train_data, "ml-100k",
          "Without a snapshot or --model: dataset name or path to train the "
          "first model on");
ABSL_FLAG(std::string, feedback, "explicit",
          "What --train_data's values are: explicit (ratings on a scale) or "
          "implicit (counts of plays, clicks, purchases; repeated pairs add "
          "up and the model predicts no ratings)");
ABSL_FLAG(std::string, event_weights, "click:1,play:1,purchase:1,view:1",
          "Event types a model of implicit feedback accepts through Rate and "
          "RateStream (event_type), each with the weight one event adds, e.g. "
          "play:1,click:0.5,purchase:4");
ABSL_FLAG(int64_t, event_id_window, 1000000,
          "How many recent event ids the server remembers, so that a retried "
          "event (same event_id) counts once");
ABSL_FLAG(std::string, model_kind, "auto",
          "Kind of that first model and of Train calls that name none: auto "
          "(chosen by model selection on a validation split of the data), "
          "hybrid (a ranking part + Bayesian MF ratings), puresvd, bayes, "
          "ials, sgd, als, baseline or popularity");
ABSL_FLAG(bool, select, true,
          "Model selection: search the settings not given (--noselect: "
          "train the kind exactly as told, auto meaning hybrid's defaults)");
ABSL_FLAG(int64_t, select_budget, recsys::SelectionOptions().budget,
          "Work units a model selection may spend (an iALS iteration, a "
          "PureSVD power iteration or a Gibbs sweep each count one)");
ABSL_FLAG(int, threads, 0, "Training threads (0 = one per core)");
ABSL_FLAG(std::string, fsync, "always",
          "When ratings reach the disk: always (acked = durable), interval, "
          "never");
ABSL_FLAG(int, fsync_interval_ms, 50, "Flush period for --fsync=interval");
ABSL_FLAG(int64_t, retrain_after_ratings, 0,
          "Retrain automatically once this many ratings arrived since the "
          "serving model was trained (0 = never)");
ABSL_FLAG(double, retrain_interval_hours, 0,
          "Retrain automatically once the serving model has served this "
          "long and new ratings arrived (0 = never)");
ABSL_FLAG(int64_t, snapshot_every, 100000,
          "Write a snapshot after this many accepted ratings and catalogue "
          "entries (0 = never)");
ABSL_FLAG(int64_t, fold_in_cache_mb, 256,
          "Memory for recently active users' fold-in equations, so a rating "
          "costs an update rather than a solve from all of the user's "
          "ratings (0 = none)");
ABSL_FLAG(double, rate_lead_budget_ms, 3,
          "How long a gRPC thread may lead Rate's group commit (append, "
          "fsync, fold-in, answers) before the batcher's own thread takes "
          "over; 0 = always the batcher's thread. Larger trades tail "
          "latency for throughput at saturation");
ABSL_FLAG(double, grace_seconds, 5,
          "On SIGTERM/SIGINT, how long in-flight calls may take to finish");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "Largest request message accepted");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port to this file once listening (for scripts)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for TLS on --listen (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA: require client certificates it signed (mutual TLS)");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token Rate, RateStream and Train need "
          "(else $RECSYS_TOKEN; needs TLS)");
ABSL_FLAG(bool, protect_reads, false,
          "Require the token for reads too (health checks stay open)");
ABSL_FLAG(std::string, health_listen, "",
          "Also serve grpc.health.v1 alone, in plaintext, here (for probes "
          "that cannot do TLS); empty = off");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://ADDRESS/metrics (e.g. "
          "127.0.0.1:9464); empty = off");
ABSL_FLAG(std::string, replica_of, "",
          "Serve as a read replica of the server at HOST:PORT: start from its "
          "newest snapshot (when --data_dir has none), follow its log, refuse "
          "writes; empty = a primary");
ABSL_FLAG(std::string, replica_tls_ca, "",
          "PEM CA that signed the primary's certificate (TLS to "
          "--replica_of)");
ABSL_FLAG(bool, replica_tls, false,
          "TLS to --replica_of, verified against the system's CAs");
ABSL_FLAG(std::string, replica_tls_cert, "",
          "PEM client certificate for the primary (mutual TLS)");
ABSL_FLAG(std::string, replica_tls_key, "", "PEM key for --replica_tls_cert");
ABSL_FLAG(std::string, replica_tls_server_name, "",
          "The name the primary's certificate carries, when not the host of "
          "--replica_of");
ABSL_FLAG(std::string, replica_token_file, "",
          "File holding the primary's bearer token (else "
          "$RECSYS_REPLICA_TOKEN; needs TLS)");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");
ABSL_FLAG(std::string, log_format, "text",
          "text (logfmt) or json, one line per event on stderr");

namespace {

// SIGTERM/SIGINT write their number here; main reads it. A handler (rather
// than blocking the signals and calling sigwait) works whichever thread the
// kernel picks, including threads libraries start before main.
int signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const char c = static_cast<char>(sig);
  const ssize_t n = write(signal_pipe[1], &c, 1);
  (void)n;
}

bool InstallSignalHandlers() {
  if (pipe2(signal_pipe, O_CLOEXEC) != 0) return false;
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  signal(SIGPIPE, SIG_IGN);
  return sigaction(SIGTERM, &sa, nullptr) == 0 &&
         sigaction(SIGINT, &sa, nullptr) == 0;
}

// The numeric flags' ranges: a value outside is refused before anything
// starts, with the flag and the range in the message.
template <typename T>
bool InRange(const char* flag, T value, T low, T high) {
  if (value >= low && value <= high) return true;  // (false for NaN)
  std::cerr << "recsys-server: --" << flag << " must be " << low << ".." << high
            << ", not " << value << "\n";
  return false;
}

int WaitForSignal() {
  char c = 0;
  while (read(signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
  return c;
}

// --log_level and --log_format; false (after saying why) when either is bad.
bool SetUpLogging() {
  absl::StatusOr<recsys::LogLevel> level =
      recsys::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  absl::StatusOr<recsys::LogFormat> format =
      recsys::ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!level.ok() || !format.ok()) {
    std::cerr << "recsys-server: "
              << (level.ok() ? format.status() : level.status()).message()
              << "\n";
    return false;
  }
  recsys::SetLogLevel(*level);
  recsys::SetLogFormat(*format);
  return true;
}

// Every numeric flag within its range (see InRange).
bool FlagsInRange() {
  const int64_t cache_mb = absl::GetFlag(FLAGS_fold_in_cache_mb);
  const double lead_ms = absl::GetFlag(FLAGS_rate_lead_budget_ms);
  return InRange("fold_in_cache_mb", cache_mb, int64_t{0}, int64_t{1} << 30) &&
         InRange("rate_lead_budget_ms", lead_ms, 0.0, 1000.0) &&
         InRange("threads", absl::GetFlag(FLAGS_threads), 0, 1024) &&
         InRange("fsync_interval_ms", absl::GetFlag(FLAGS_fsync_interval_ms), 1,
                 60000) &&
         InRange("snapshot_every", absl::GetFlag(FLAGS_snapshot_every),
                 int64_t{0}, int64_t{1} << 40) &&
         InRange("retrain_after_ratings",
                 absl::GetFlag(FLAGS_retrain_after_ratings), int64_t{0},
                 int64_t{1} << 40) &&
         InRange("retrain_interval_hours",
                 absl::GetFlag(FLAGS_retrain_interval_hours), 0.0,
                 24.0 * 365) &&
         InRange("grace_seconds", absl::GetFlag(FLAGS_grace_seconds), 0.0,
                 3600.0) &&
         InRange("max_message_bytes", absl::GetFlag(FLAGS_max_message_bytes),
                 1 << 16, 1 << 30);
}

// --model_kind, --select and --select_budget: the first model's training.
bool SetTrainingFlags(recsys::ServerOptions& opt) {
  absl::StatusOr<std::optional<recsys::ModelKind>> kind =
      recsys::ParseKindOrAuto(absl::GetFlag(FLAGS_model_kind));
  if (!kind.ok()) {
    std::cerr << "recsys-server: --model_kind: " << kind.status().message()
              << "\n";
    return false;
  }
  opt.engine.training.kind = *kind;
  opt.engine.training.select = absl::GetFlag(FLAGS_select);
  opt.engine.training.selection.budget = absl::GetFlag(FLAGS_select_budget);
  if (opt.engine.training.selection.budget < 0) {
    std::cerr << "recsys-server: --select_budget must be >= 0\n";
    return false;
  }
  return true;
}

// The bearer token (--token_file, else $RECSYS_TOKEN) and the --replica_*
// flags with the primary's token (--replica_token_file, else
// $RECSYS_REPLICA_TOKEN). Both variables leave the environment.
bool SetTokenAndReplicaFlags(recsys::ServerOptions& opt) {
  absl::StatusOr<std::string> token = recsys::LoadToken(
      absl::GetFlag(FLAGS_token_file), std::getenv("RECSYS_TOKEN"));
  // Children (the dataset downloader) need not inherit it.
  unsetenv("RECSYS_TOKEN");
  if (!token.ok()) {
    recsys::Log(recsys::LogLevel::kError, "cannot start",
                {{"error", token.status().message()}});
    return false;
  }
  opt.security.token = std::move(*token);
  opt.replica.target = absl::GetFlag(FLAGS_replica_of);
  opt.replica.tls = absl::GetFlag(FLAGS_replica_tls);
  opt.replica.tls_ca = absl::GetFlag(FLAGS_replica_tls_ca);
  opt.replica.tls_cert = absl::GetFlag(FLAGS_replica_tls_cert);
  opt.replica.tls_key = absl::GetFlag(FLAGS_replica_tls_key);
  opt.replica.tls_server_name = absl::GetFlag(FLAGS_replica_tls_server_name);
  absl::StatusOr<std::string> replica_token =
      recsys::LoadToken(absl::GetFlag(FLAGS_replica_token_file),
                        std::getenv("RECSYS_REPLICA_TOKEN"));
  unsetenv("RECSYS_REPLICA_TOKEN");
  if (!replica_token.ok()) {
    recsys::Log(recsys::LogLevel::kError, "cannot start",
                {{"error", replica_token.status().message()}});
    return false;
  }
  opt.replica.token = std::move(*replica_token);
  if (opt.replica.target.empty() &&
      (opt.replica.UsesTls() || !opt.replica.token.empty())) {
    recsys::Log(recsys::LogLevel::kError, "cannot start",
                {{"error", "the --replica_* flags need --replica_of"}});
    return false;
  }
  return true;
}

// --feedback and the event flags; false (after saying why) on a bad value.
bool SetEventFlags(recsys::ServerOptions& opt) {
  absl::StatusOr<recsys::Feedback> feedback =
      recsys::ParseFeedback(absl::GetFlag(FLAGS_feedback));
  absl::StatusOr<std::map<std::string, float>> weights =
      recsys::internal::ParseEventWeights(absl::GetFlag(FLAGS_event_weights));
  for (const absl::Status& s : {feedback.status(), weights.status()}) {
    if (!s.ok()) {
      recsys::Log(recsys::LogLevel::kError, "cannot start",
                  {{"error", s.message()}});
      return false;
    }
  }
  opt.feedback = *feedback;
  opt.engine.event_weights = *std::move(weights);
  opt.engine.event_id_window = absl::GetFlag(FLAGS_event_id_window);
  return true;
}

// ServerOptions from the flags; false (after saying why) on a bad value.
bool FlagsToOptions(recsys::ServerOptions& opt) {
  opt.listen = absl::GetFlag(FLAGS_listen);
  opt.engine.data_dir = absl::GetFlag(FLAGS_data_dir);
  opt.model_file = absl::GetFlag(FLAGS_model);
  opt.train_data = absl::GetFlag(FLAGS_train_data);
  if (!SetTrainingFlags(opt) || !SetEventFlags(opt)) return false;
  opt.engine.train_threads = absl::GetFlag(FLAGS_threads);
  opt.fsync = absl::GetFlag(FLAGS_fsync);
  opt.engine.log.interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_fsync_interval_ms));
  opt.engine.snapshot_every = absl::GetFlag(FLAGS_snapshot_every);
  opt.retrain_after_ratings = absl::GetFlag(FLAGS_retrain_after_ratings);
  opt.retrain_interval =
      absl::Hours(absl::GetFlag(FLAGS_retrain_interval_hours));
  opt.engine.fold_in_cache_bytes = absl::GetFlag(FLAGS_fold_in_cache_mb) << 20;
  opt.grace = absl::Seconds(absl::GetFlag(FLAGS_grace_seconds));
  opt.rate_lead_budget =
      absl::Milliseconds(absl::GetFlag(FLAGS_rate_lead_budget_ms));
  opt.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  opt.port_file = absl::GetFlag(FLAGS_port_file);
  opt.security.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  opt.security.tls_key = absl::GetFlag(FLAGS_tls_key);
  opt.security.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  opt.security.protect_reads = absl::GetFlag(FLAGS_protect_reads);
  opt.health_listen = absl::GetFlag(FLAGS_health_listen);
  opt.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  return SetTokenAndReplicaFlags(opt);
}

// Starts the server, serves until SIGTERM or SIGINT, then shuts it down;
// the process's exit code.
int Serve(const recsys::ServerOptions& opt) {
  recsys::Server server(opt);
  absl::Status started = server.Start();
  if (!started.ok()) {
    recsys::Log(recsys::LogLevel::kError, "cannot start",
                {{"error", started.message()}});
    return 1;
  }
  const int sig = WaitForSignal();
  recsys::Log(recsys::LogLevel::kInfo, "signal received",
              {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  absl::Status stopped = server.Shutdown();
  if (!stopped.ok()) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "recsys-server [--listen=127.0.0.1:50051] [--data_dir=DIR] "
      "[--model=FILE | --train_data=ml-100k | --replica_of=HOST:PORT]");
  std::vector<std::string> storage(argv, argv + argc);
  std::vector<char*> args = recsys::NormalizeFlagNames(&storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex (gRPC's
  // included) keeps a lock graph for deadlock detection: a few percent of
  // the server's CPU under load (measured with perf). It is a debugging aid.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  if (!SetUpLogging() || !FlagsInRange()) return 1;

  if (!InstallSignalHandlers()) {
    std::perror("recsys-server: signal handlers");
    return 1;
  }

  recsys::ServerOptions opt;
  if (!FlagsToOptions(opt)) return 1;
  return Serve(opt);
}
