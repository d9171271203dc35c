// A whole recsys server: gRPC listener (TLS and token checks per
// ServerOptions::security), health and reflection, the engine behind them,
// and optionally a plaintext health-only port and a Prometheus /metrics
// port. main.cc fills ServerOptions from flags; tests may embed a Server
// directly.
//
//   ServerOptions opt;
//   opt.listen = "127.0.0.1:0";
//   Server server(opt);
//   RECSYS_RETURN_IF_ERROR(server.Start());   // listening, model loaded
//   ... server.port() ...
//   RECSYS_RETURN_IF_ERROR(server.Shutdown());
#ifndef RECSYS_SERVER_SERVER_H_
#define RECSYS_SERVER_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "net/channel.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/replication.h"
#include "server/security.h"
#include "server/service.h"

namespace recsys {

// Every server setting in one place.
struct ServerOptions {
  std::string listen = "127.0.0.1:50051";
  EngineOptions engine;
  std::string model_file;              // first start: serve this model
  std::string train_data = "ml-100k";  // first start without model_file
  // What train_data's values are (explicit ratings, or implicit counts).
  Feedback feedback = Feedback::kExplicit;
  // The first model's kind and selection: engine.training.
  std::string fsync = "always";
  absl::Duration grace = absl::Seconds(5);
  int max_message_bytes = 4 << 20;
  std::string port_file;
  SecurityOptions security;
  // A second, plaintext gRPC port serving only grpc.health.v1: for probes
  // that cannot speak TLS (kubelet's native gRPC probe). "" = none.
  std::string health_listen;
  // Prometheus text on http://<metrics_listen>/metrics. "" = none.
  std::string metrics_listen;
  // How long a gRPC thread may lead Rate's group commit before handing the
  // lead to the batcher's own thread (RecommenderService::kRateLeadBudget).
  absl::Duration rate_lead_budget =
      absl::FromChrono(RecommenderService::kRateLeadBudget);
  // Automatic retraining (0 = off): a job with the serving model's kind and
  // hyper-parameters, on every rating held, once this many ratings arrived
  // since the serving model was trained, or once it has served this long
  // with new ratings. Jobs start at least `retrain_min_gap` apart.
  int64_t retrain_after_ratings = 0;
  absl::Duration retrain_interval = absl::ZeroDuration();
  absl::Duration retrain_min_gap = absl::Minutes(1);
  // A read replica of the server at replica.target (host:port), reached
  // with these TLS and token settings; "" = a primary. See
  // server/replication.h.
  ChannelOptions replica = [] {
    ChannelOptions o;
    o.target.clear();
    return o;
  }();
  absl::Duration replica_retry = absl::Seconds(1);
  // How long a new replica waits for its primary's first snapshot.
  absl::Duration replica_start_timeout = absl::Minutes(5);
};

class Server final : private ServiceObserver {
 public:
  explicit Server(const ServerOptions& options);
  ~Server();

  // Starts listening (health NOT_SERVING), loads or trains the model,
  // replays the log, then reports SERVING. Returns when ready.
  absl::Status Start();
  // Health goes NOT_SERVING, in-flight calls get `grace` to finish, the log
  // is flushed.
  absl::Status Shutdown();

  int port() const { return port_; }
  int health_port() const { return health_port_; }
  int metrics_port() const { return http_ ? http_->port() : 0; }
  Engine* engine() { return engine_.get(); }
  // Null unless a replica.
  const Replicator* replicator() const { return replicator_.get(); }
  const ServerMetrics& metrics() const { return metrics_; }

 private:
  void SetServing(bool serving);
  absl::Status StartHealthPort();
  // Start's steps, in order. A replica's Replicator, with a channel to its
  // primary (not yet started).
  absl::Status MakeReplicator();
  // The HTTP /metrics port.
  absl::Status StartMetricsPort();
  // The gRPC port (and the health port), NOT_SERVING; writes the port file.
  absl::Status Listen(const std::shared_ptr<grpc::ServerCredentials>& creds);
  // Opens the engine on the data directory (a replica's first filled from
  // its primary, a primary's first model loaded or trained) and serves it.
  absl::Status OpenEngine();
  // ServiceObserver: feed the metrics; a training job gets a watcher thread
  // that logs its end and records it.
  void OnAccepted(int64_t accepted, int64_t new_users,
                  int64_t new_items) override;
  void OnRejected(absl::StatusCode code) override;
  void OnTrainingStarted(const std::string& job_id) override;
  void OnUsersDeleted(int64_t users, int64_t ratings,
                      uint64_t log_sequence) override;
  void OnCatalogueUpdated(int64_t added, int64_t changed,
                          uint64_t log_sequence) override;
  void WatchJob(const std::string& job_id);
  // Starts automatic retraining jobs as ServerOptions say, until Shutdown.
  void RetrainLoop();

  ServerOptions options_;
  ServerMetrics metrics_;
  RecommenderService service_;
  ReplicationService replication_;
  std::unique_ptr<Replicator> replicator_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<grpc::Server> health_grpc_;
  std::unique_ptr<Engine> engine_;
  // What /metrics reads; set once the engine is open.
  std::atomic<const Engine*> serving_engine_{nullptr};
  std::unique_ptr<MetricsHttpServer> http_;
  int port_ = 0;
  int health_port_ = 0;
  std::mutex watch_mu_;
  std::thread watcher_;  // the latest training job's
  std::mutex retrain_mu_;
  std::condition_variable retrain_wake_;
  bool stopping_ = false;  // under retrain_mu_
  std::thread retrainer_;
};

}  // namespace recsys

#endif  // RECSYS_SERVER_SERVER_H_
