// A whole recsys server: gRPC listener, health and reflection, and the
// engine behind them. main.cc fills ServerOptions from flags; tests may
// embed a Server directly.
//
//   ServerOptions opt;
//   opt.listen = "127.0.0.1:0";
//   Server server(opt);
//   RECSYS_RETURN_IF_ERROR(server.Start());   // listening, model loaded
//   ... server.port() ...
//   RECSYS_RETURN_IF_ERROR(server.Shutdown());
#ifndef RECSYS_SERVER_SERVER_H_
#define RECSYS_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/engine.h"
#include "server/service.h"

namespace recsys {

// Every server setting in one place.
struct ServerOptions {
  std::string listen = "127.0.0.1:50051";
  EngineOptions engine;
  std::string model_file;              // first start: serve this model
  std::string train_data = "ml-100k";  // first start without model_file
  std::string model_kind = "sgd";
  std::string fsync = "always";
  absl::Duration grace = absl::Seconds(5);
  int max_message_bytes = 4 << 20;
  std::string port_file;
};

class Server {
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
  Engine* engine() { return engine_.get(); }

 private:
  void SetServing(bool serving);

  ServerOptions options_;
  RecommenderService service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<Engine> engine_;
  int port_ = 0;
};

}  // namespace recsys

#endif  // RECSYS_SERVER_SERVER_H_
