#include "server/server.h"

#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "models/model_io.h"
#include "models/status_macros.h"
#include "models/train.h"
#include "trainer/trainer.h"

namespace recsys {

namespace {

constexpr char kServiceName[] = "recsys.v1.Recommender";

// The model a fresh data directory starts from: the given file, or one
// trained on the given dataset with the default hyper-parameters.
absl::StatusOr<Model> FirstModel(const ServerOptions& o) {
  if (!o.model_file.empty()) {
    std::cerr << "recsys-server: loading " << o.model_file << "\n";
    return LoadModel(o.model_file);
  }
  RECSYS_ASSIGN_OR_RETURN(ModelKind kind, ParseModelKind(o.model_kind));
  DataSource source;
  source.data = o.train_data;
  RECSYS_ASSIGN_OR_RETURN(RatingData data, LoadSource(source));
  std::cerr << "recsys-server: training the first " << ModelKindName(kind)
            << " model on " << o.train_data << " (" << data.ratings.size()
            << " ratings)\n";
  TrainOptions topt;
  topt.threads = o.engine.train_threads;
  return TrainModel(data, kind, DefaultHyperparameters(kind), topt);
}

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename to ", path));
  return absl::OkStatus();
}

}  // namespace

Server::Server(const ServerOptions& options) : options_(options) {}

Server::~Server() {
  if (grpc_) Shutdown().IgnoreError();
}

void Server::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = grpc_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

absl::Status Server::Start() {
  RECSYS_ASSIGN_OR_RETURN(options_.engine.log.sync,
                          ParseSyncPolicy(options_.fsync));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, grpc::InsecureServerCredentials(),
                           &port_);
  builder.RegisterService(&service_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  grpc_ = builder.BuildAndStart();
  if (grpc_ == nullptr || port_ == 0) {
    grpc_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen));
  }
  SetServing(false);
  std::cerr << "recsys-server: listening on port " << port_ << "\n";
  if (!options_.port_file.empty()) {
    RECSYS_RETURN_IF_ERROR(WritePortFile(options_.port_file, port_));
  }
  const ServerOptions& o = options_;
  RECSYS_ASSIGN_OR_RETURN(
      engine_, Engine::Open(options_.engine, [&o] { return FirstModel(o); }));
  service_.SetEngine(engine_.get());
  const EngineInfo info = engine_->Info();
  std::cerr << "recsys-server: serving " << ModelKindName(info.kind)
            << " model v" << info.version << " (" << info.users << " users, "
            << info.items << " items, log at " << info.log_sequence << ")\n";
  SetServing(true);
  return absl::OkStatus();
}

absl::Status Server::Shutdown() {
  if (!grpc_) return absl::OkStatus();
  SetServing(false);
  grpc_->Shutdown(absl::ToChronoTime(absl::Now() + options_.grace));
  grpc_.reset();
  absl::Status synced = absl::OkStatus();
  if (engine_) {
    engine_->WaitForTraining();
    synced = engine_->Sync();
  }
  std::cerr << "recsys-server: stopped\n";
  return synced;
}

}  // namespace recsys
