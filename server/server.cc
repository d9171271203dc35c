#include "server/server.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "models/datasets.h"
#include "models/loaders.h"
#include "models/model_io.h"
#include "models/train.h"
#include "server/log.h"

namespace recsys {

namespace {

constexpr char kServiceName[] = "recsys.v1.Recommender";

// The model a fresh data directory starts from: the given file, or one
// trained on the given dataset as --model_kind and --select ask (by default
// model selection).
absl::StatusOr<Model> FirstModel(const ServerOptions& o) {
  if (!o.model_file.empty()) {
    Log(LogLevel::kInfo, "loading first model", {{"file", o.model_file}});
    return LoadModel(o.model_file);
  }
  DataSource source;
  source.data = o.train_data;
  source.load.feedback = o.feedback;
  RECSYS_ASSIGN_OR_RETURN(RatingData data, LoadSource(source));
  if (const std::string hint = ImplicitFeedbackHint(data); !hint.empty()) {
    Log(LogLevel::kWarning, "the training data look like counts",
        {{"data", o.train_data}, {"hint", hint}});
  }
  const TrainingSpec& spec = o.engine.training;
  Log(LogLevel::kInfo, "training first model",
      {{"kind", KindOrAutoName(spec.kind)},
       {"select", spec.select},
       {"data", o.train_data},
       {"feedback", std::string(FeedbackName(data.feedback))},
       {"ratings", data.ratings.size()}});
  TrainOptions topt;
  topt.threads = o.engine.train_threads;
  RECSYS_ASSIGN_OR_RETURN(Model m, TrainWithSpec(data, spec, topt));
  if (!m.selection.summary.empty()) {
    Log(LogLevel::kInfo, "model selection",
        {{"chosen", m.selection.summary},
         {"trials", m.selection.trials.size()},
         {"work", m.selection.work},
         {"seconds", m.selection.seconds}});
  }
  return m;
}

// gRPC sets SO_REUSEPORT on its listening sockets by default, so a second
// server started on a port already in use would share it, silently, and
// take half of the calls (and of the ratings, into its own data directory).
// Without it, the second server fails to start.
void NoSharedPort(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
}

// Logs the model now served and what opening its rating log found.
void LogServing(const Engine& engine, const EngineInfo& info) {
  Log(LogLevel::kInfo, "serving",
      {{"kind", ModelKindName(info.kind)},
       {"version", info.version},
       {"users", info.users},
       {"items", info.items},
       {"factors", info.factors},
       {"log_sequence", info.log_sequence},
       {"replayed", engine.log().recovery().replayed}});
  const RatingLogRecovery& recovery = engine.log().recovery();
  if (recovery.truncated_bytes > 0) {
    Log(LogLevel::kWarning, "torn log tail cut off",
        {{"file", recovery.truncated_file},
         {"bytes", recovery.truncated_bytes}});
  }
  if (recovery.upgraded_from_version > 0) {
    Log(LogLevel::kInfo,
        "log written by an older version: appending to a new segment",
        {{"old_version", recovery.upgraded_from_version}});
  }
}

}  // namespace

Server::Server(const ServerOptions& options)
    : options_(options),
      service_(absl::ToChronoMicroseconds(options.rate_lead_budget)) {
  service_.SetObserver(this);
}

Server::~Server() { Shutdown().IgnoreError(); }

void Server::SetServing(bool serving) {
  for (grpc::Server* s : {grpc_.get(), health_grpc_.get()}) {
    if (s == nullptr) continue;
    grpc::HealthCheckServiceInterface* health = s->GetHealthCheckService();
    if (health == nullptr) continue;
    health->SetServingStatus(serving);
    health->SetServingStatus(kServiceName, serving);
  }
}

absl::Status Server::StartHealthPort() {
  // Its own grpc::Server, so the plaintext port can reach nothing but the
  // health service.
  grpc::ServerBuilder builder;
  NoSharedPort(&builder);
  builder.AddListeningPort(options_.health_listen,
                           grpc::InsecureServerCredentials(), &health_port_);
  health_grpc_ = builder.BuildAndStart();
  if (health_grpc_ == nullptr || health_port_ == 0) {
    health_grpc_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on health address ", options_.health_listen,
                     ": the address is in use or not valid here (gRPC's "
                     "message above says which)"));
  }
  return absl::OkStatus();
}

absl::Status Server::MakeReplicator() {
  if (options_.retrain_after_ratings > 0 ||
      options_.retrain_interval > absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "a read replica does not retrain: its primary does (drop "
        "--retrain_after_ratings and --retrain_interval_hours)");
  }
  // gRPC backs off up to two minutes between attempts to reach a server
  // that is down; a replica should be back soon after its primary is.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // A snapshot comes in chunks, but a batch of records may be larger than
  // gRPC's default limit of 4 MB.
  args.SetMaxReceiveMessageSize(-1);
  RECSYS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                          MakeChannel(options_.replica, args));
  replicator_ = std::make_unique<Replicator>(
      options_.replica.target, std::move(channel), options_.replica_retry);
  Log(LogLevel::kInfo, "read replica",
      {{"primary", options_.replica.target},
       {"tls", options_.replica.UsesTls()}});
  return absl::OkStatus();
}

absl::Status Server::StartMetricsPort() {
  // Up before the model loads, so a slow first training shows as
  // recsys_ready 0 rather than as a dead target.
  RECSYS_ASSIGN_OR_RETURN(
      http_, MetricsHttpServer::Start(options_.metrics_listen, [this] {
        const Engine* engine = serving_engine_.load();
        std::string text = metrics_.Render(engine, absl::Now());
        if (replicator_ && engine != nullptr) {
          text += RenderReplicaMetrics(replicator_->status(), absl::Now());
        }
        return text;
      }));
  Log(LogLevel::kInfo, "metrics listening",
      {{"address", options_.metrics_listen}, {"port", http_->port()}});
  return absl::OkStatus();
}

absl::Status Server::Listen(
    const std::shared_ptr<grpc::ServerCredentials>& creds) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  NoSharedPort(&builder);
  builder.AddListeningPort(options_.listen, creds, &port_);
  builder.RegisterService(&service_);
  builder.RegisterService(&replication_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.experimental().SetInterceptorCreators(MetricsInterceptors(&metrics_));
  grpc_ = builder.BuildAndStart();
  if (grpc_ == nullptr || port_ == 0) {
    grpc_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen,
                     ": the address is in use or not valid here (gRPC's "
                     "message above says which)"));
  }
  if (!options_.health_listen.empty()) {
    RECSYS_RETURN_IF_ERROR(StartHealthPort());
    Log(LogLevel::kInfo, "health port listening",
        {{"address", options_.health_listen}, {"port", health_port_}});
  }
  SetServing(false);
  Log(LogLevel::kInfo, "listening",
      {{"port", port_}, {"tls", options_.security.tls()}});
  if (!options_.port_file.empty()) {
    RECSYS_RETURN_IF_ERROR(WritePortFile(options_.port_file, port_));
  }
  return absl::OkStatus();
}

absl::Status Server::OpenEngine() {
  const ServerOptions& o = options_;
  const bool replica = !o.replica.target.empty();
  if (replica) {
    std::error_code ec;
    std::filesystem::create_directories(o.engine.data_dir, ec);
    RECSYS_RETURN_IF_ERROR(replicator_->PrepareDataDir(
        o.engine.data_dir, o.replica_start_timeout));
  }
  RECSYS_ASSIGN_OR_RETURN(
      engine_, Engine::Open(options_.engine, [&o]() -> absl::StatusOr<Model> {
        if (!o.replica.target.empty()) {
          return absl::InternalError(
              "a replica's data directory lost its "
              "snapshot while starting");
        }
        return FirstModel(o);
      }));
  if (replica) {
    service_.SetReplicaInfo([this](v1::ReplicaInfo* out) {
      const ReplicaStatus st = replicator_->status();
      out->set_primary(st.primary);
      out->set_connected(st.connected);
      out->set_lag_records(static_cast<int64_t>(st.lag_records()));
      out->set_last_contact_age_seconds(
          st.last_contact_age_seconds(absl::Now()));
    });
    service_.SetReadOnly(absl::StrCat("this server is a read replica of ",
                                      o.replica.target, ": send writes there"));
  }
  service_.SetEngine(engine_.get());
  replication_.SetEngine(engine_.get(), replica);
  const EngineInfo info = engine_->Info();
  metrics_.ModelServedSince(info.version, absl::Now());
  serving_engine_.store(engine_.get());
  LogServing(*engine_, info);
  return absl::OkStatus();
}

absl::Status Server::Start() {
  RECSYS_ASSIGN_OR_RETURN(options_.engine.log.sync,
                          ParseSyncPolicy(options_.fsync));
  const SecurityOptions& sec = options_.security;
  RECSYS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                          MakeServerCredentials(sec, &metrics_));
  Log(LogLevel::kInfo, "starting",
      {{"listen", options_.listen},
       {"data_dir", options_.engine.data_dir},
       {"fsync", options_.fsync},
       {"tls", sec.tls()},
       {"mtls", !sec.tls_client_ca.empty()},
       {"token", !sec.token.empty()},
       {"protect_reads", sec.protect_reads}});
  if (!options_.replica.target.empty()) {
    RECSYS_RETURN_IF_ERROR(MakeReplicator());
  }
  if (!sec.token.empty() && sec.token.size() < 16) {
    Log(LogLevel::kWarning, "the token is shorter than 16 characters",
        {{"hint", "openssl rand -hex 32"}});
  }
  if (!options_.metrics_listen.empty()) {
    RECSYS_RETURN_IF_ERROR(StartMetricsPort());
  }
  RECSYS_RETURN_IF_ERROR(Listen(creds));
  RECSYS_RETURN_IF_ERROR(OpenEngine());
  SetServing(true);
  if (replicator_) {
    replicator_->Start(engine_.get(), [this](uint64_t version) {
      metrics_.ModelServedSince(version, absl::Now());
    });
  }
  if (options_.retrain_after_ratings > 0 ||
      options_.retrain_interval > absl::ZeroDuration()) {
    retrainer_ = std::thread([this] { RetrainLoop(); });
  }
  return absl::OkStatus();
}

void Server::RetrainLoop() {
  const ServerOptions& o = options_;
  uint64_t version = engine_->Info().version;
  absl::Time serving_since = absl::Now();
  absl::Time next_start = absl::InfinitePast();
  std::unique_lock<std::mutex> lock(retrain_mu_);
  while (!retrain_wake_.wait_for(lock, std::chrono::seconds(1),
                                 [this] { return stopping_; })) {
    const EngineInfo info = engine_->Info();
    const absl::Time now = absl::Now();
    if (info.version != version) {  // a new model: the clock starts again
      version = info.version;
      serving_since = now;
    }
    if (now < next_start || info.ratings_since_training == 0) continue;
    const bool by_count =
        o.retrain_after_ratings > 0 &&
        info.ratings_since_training >= o.retrain_after_ratings;
    const bool by_age = o.retrain_interval > absl::ZeroDuration() &&
                        now - serving_since >= o.retrain_interval;
    if (!by_count && !by_age) continue;
    TrainSpec spec;
    spec.keep_params = true;
    spec.validation_fraction = 0;  // every rating trains the served model
    absl::StatusOr<std::string> job = engine_->StartTraining(spec);
    next_start = now + o.retrain_min_gap;
    if (!job.ok()) {  // e.g. a job from Train runs: try again after the gap
      Log(LogLevel::kWarning, "automatic retraining not started",
          {{"error", job.status().message()}});
      continue;
    }
    Log(LogLevel::kInfo, "automatic retraining",
        {{"job", *job},
         {"reason", by_count ? "ratings" : "interval"},
         {"ratings_since_training", info.ratings_since_training}});
    OnTrainingStarted(*job);
  }
}

absl::Status Server::Shutdown() {
  if (!grpc_ && !health_grpc_ && !http_) return absl::OkStatus();
  Log(LogLevel::kInfo, "shutting down",
      {{"grace_seconds", absl::ToDoubleSeconds(options_.grace)}});
  SetServing(false);
  replication_.Stop();
  if (replicator_) replicator_->Stop();
  if (grpc_) {
    grpc_->Shutdown(absl::ToChronoTime(absl::Now() + options_.grace));
    grpc_.reset();
  }
  if (health_grpc_) {
    health_grpc_->Shutdown(absl::ToChronoTime(absl::Now()));
    health_grpc_.reset();
  }
  {
    std::lock_guard<std::mutex> lock(retrain_mu_);
    stopping_ = true;
  }
  retrain_wake_.notify_all();
  if (retrainer_.joinable()) retrainer_.join();
  absl::Status synced = absl::OkStatus();
  if (engine_) {
    engine_->CancelRunningTraining();
    engine_->WaitForTraining();
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      if (watcher_.joinable()) watcher_.join();
    }
    synced = engine_->Sync();
  }
  http_.reset();
  if (synced.ok()) {
    Log(LogLevel::kInfo, "stopped");
  } else {
    Log(LogLevel::kError, "log flush failed at shutdown",
        {{"error", synced.message()}});
  }
  return synced;
}

void Server::OnAccepted(int64_t accepted, int64_t new_users,
                        int64_t new_items) {
  metrics_.RecordAccepted(accepted, new_users, new_items);
}

void Server::OnRejected(absl::StatusCode code) {
  metrics_.RecordRejected(static_cast<int>(code));
}

void Server::OnTrainingStarted(const std::string& job_id) {
  metrics_.TrainingStarted();
  Log(LogLevel::kInfo, "training started", {{"job", job_id}});
  std::lock_guard<std::mutex> lock(watch_mu_);
  // The engine runs one job at a time, so the previous watcher has seen its
  // job end and is about to return.
  if (watcher_.joinable()) watcher_.join();
  watcher_ = std::thread([this, job_id] { WatchJob(job_id); });
}

void Server::OnUsersDeleted(int64_t users, int64_t ratings,
                            uint64_t log_sequence) {
  // (Ids stay out of the server's own log: the point was to forget them.)
  Log(LogLevel::kInfo, users == 1 ? "user deleted" : "users deleted",
      {{"users", absl::StrCat(users)},
       {"ratings", absl::StrCat(ratings)},
       {"log_sequence", absl::StrCat(log_sequence)}});
}

void Server::OnCatalogueUpdated(int64_t added, int64_t changed,
                                uint64_t log_sequence) {
  Log(LogLevel::kInfo, "catalogue updated",
      {{"added", absl::StrCat(added)},
       {"changed", absl::StrCat(changed)},
       {"log_sequence", absl::StrCat(log_sequence)}});
}

void Server::WatchJob(const std::string& job_id) {
  size_t from = 0;
  bool done = false;
  TrainingUpdate last;
  while (!done) {
    absl::StatusOr<std::vector<TrainingUpdate>> updates =
        engine_->WatchTraining(job_id, from, absl::Now() + absl::Seconds(1),
                               &done);
    if (!updates.ok()) {
      Log(LogLevel::kWarning, "cannot follow training job",
          {{"job", job_id}, {"error", updates.status().message()}});
      return;
    }
    for (const TrainingUpdate& u : *updates) {
      if (u.state == TrainingUpdate::kRunning) {
        Log(LogLevel::kDebug, "training epoch",
            {{"job", job_id},
             {"epoch", u.epoch},
             {"epochs", u.epochs},
             {"train_rmse", u.train_rmse},
             {"validation_rmse", u.validation_rmse}});
      }
      last = u;
    }
    from += updates->size();
  }
  const bool ok = last.state == TrainingUpdate::kSucceeded;
  using JobResult = ServerMetrics::JobResult;
  metrics_.TrainingEnded(ok ? JobResult::kSucceeded
                         : last.state == TrainingUpdate::kCancelled
                             ? JobResult::kCancelled
                             : JobResult::kFailed,
                         last.elapsed_seconds, last.epoch);
  if (ok) {
    metrics_.ModelServedSince(last.model_version, absl::Now());
    Log(LogLevel::kInfo, "training succeeded",
        {{"job", job_id},
         {"version", last.model_version},
         {"seconds", last.elapsed_seconds},
         {"epochs", last.epoch},
         {"validation_rmse", last.validation_rmse},
         {"ratings_folded_after", last.ratings_folded_after}});
  } else if (last.state == TrainingUpdate::kCancelled) {
    Log(LogLevel::kInfo, "training cancelled",
        {{"job", job_id},
         {"seconds", last.elapsed_seconds},
         {"epochs", last.epoch}});
  } else {
    Log(LogLevel::kError, "training failed",
        {{"job", job_id},
         {"seconds", last.elapsed_seconds},
         {"error", last.error}});
  }
}

}  // namespace recsys
