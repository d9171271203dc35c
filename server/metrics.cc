#include "server/metrics.h"

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/engine.h"

namespace recsys {
namespace {

struct MethodName {
  const char* path;  // as gRPC reports it
  const char* service;
  const char* method;
};

// Bounded on purpose: labels come from this table, never from the wire.
constexpr MethodName kMethods[] = {
    {"/recsys.v1.Recommender/Recommend", "recsys.v1.Recommender", "Recommend"},
    {"/recsys.v1.Recommender/Rate", "recsys.v1.Recommender", "Rate"},
    {"/recsys.v1.Recommender/RateStream", "recsys.v1.Recommender",
     "RateStream"},
    {"/recsys.v1.Recommender/Train", "recsys.v1.Recommender", "Train"},
    {"/recsys.v1.Recommender/WatchTraining", "recsys.v1.Recommender",
     "WatchTraining"},
    {"/recsys.v1.Recommender/CancelTraining", "recsys.v1.Recommender",
     "CancelTraining"},
    {"/recsys.v1.Recommender/SimilarItems", "recsys.v1.Recommender",
     "SimilarItems"},
    {"/recsys.v1.Recommender/GetUser", "recsys.v1.Recommender", "GetUser"},
    {"/recsys.v1.Recommender/GetModelInfo", "recsys.v1.Recommender",
     "GetModelInfo"},
    {"/recsys.v1.Recommender/DeleteUser", "recsys.v1.Recommender",
     "DeleteUser"},
    {"/recsys.v1.Recommender/DeleteUsers", "recsys.v1.Recommender",
     "DeleteUsers"},
    {"/recsys.v1.Recommender/UpsertItems", "recsys.v1.Recommender",
     "UpsertItems"},
    {"/recsys.v1.Recommender/GetItem", "recsys.v1.Recommender", "GetItem"},
    {"/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"},
    {"/grpc.health.v1.Health/Watch", "grpc.health.v1.Health", "Watch"},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     "grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo"},
    {"", "other", "other"},
};
constexpr int kNumMethods = sizeof(kMethods) / sizeof(kMethods[0]);

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Prometheus floats: integers print exactly, others with enough digits.
std::string Num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%.15g", v);
}

// Label values here come from our own tables and model kinds; escaping still
// keeps the exposition valid if that ever changes.
std::string LabelValue(absl::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string MethodLabels(int m) {
  return absl::StrCat("service=\"", kMethods[m].service, "\",method=\"",
                      kMethods[m].method, "\"");
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(ServerMetrics* metrics, int method)
      : metrics_(metrics), method_(method), start_(absl::Now()) {}

  // A call that ends without sending a status (the client went away) is
  // still counted, as CANCELLED.
  ~MetricsInterceptor() override {
    if (!recorded_) {
      metrics_->RecordRpc(method_,
                          static_cast<int>(absl::StatusCode::kCancelled),
                          absl::Now() - start_);
    }
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!recorded_ &&
        methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      recorded_ = true;
      metrics_->RecordRpc(
          method_, static_cast<int>(methods->GetSendStatus().error_code()),
          absl::Now() - start_);
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* const metrics_;
  const int method_;
  const absl::Time start_;
  bool recorded_ = false;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ServerMetrics* metrics)
      : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_,
                                  ServerMetrics::MethodIndex(info->method()));
  }

 private:
  ServerMetrics* const metrics_;
};

}  // namespace

// Builds the exposition text, one family header and sample at a time.
class ServerMetrics::Writer {
 public:
  void Header(absl::string_view name, absl::string_view type,
              absl::string_view help) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n");
  }
  void Sample(absl::string_view name, absl::string_view labels, double v) {
    absl::StrAppend(&out_, name, labels.empty() ? "" : "{", labels,
                    labels.empty() ? "" : "}", " ", Num(v), "\n");
  }
  void One(absl::string_view name, absl::string_view type,
           absl::string_view help, double v) {
    Header(name, type, help);
    Sample(name, "", v);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

ServerMetrics::ServerMetrics()
    : methods_(new MethodStats[kNumMethods]), start_(absl::Now()) {}

int ServerMetrics::MethodIndex(absl::string_view path) {
  for (int i = 0; i + 1 < kNumMethods; ++i) {
    if (path == kMethods[i].path) return i;
  }
  return kNumMethods - 1;
}

int ServerMetrics::NumMethods() { return kNumMethods; }

absl::string_view ServerMetrics::MethodLabel(int index) {
  return kMethods[index].method;
}

void ServerMetrics::RecordRpc(int method, int code, absl::Duration latency) {
  if (method < 0 || method >= kNumMethods) method = kNumMethods - 1;
  if (code < 0 || code >= kCodes)
    code = static_cast<int>(absl::StatusCode::kUnknown);
  MethodStats& s = methods_[method];
  s.codes[code].fetch_add(1, std::memory_order_relaxed);
  const double seconds = absl::ToDoubleSeconds(latency);
  size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  s.buckets[b].fetch_add(1, std::memory_order_relaxed);
  s.sum_nanos.fetch_add(static_cast<uint64_t>(std::max<int64_t>(
                            0, absl::ToInt64Nanoseconds(latency))),
                        std::memory_order_relaxed);
}

void ServerMetrics::RecordAccepted(int64_t accepted, int64_t new_users,
                                   int64_t new_items) {
  accepted_.fetch_add(accepted, std::memory_order_relaxed);
  new_users_.fetch_add(new_users, std::memory_order_relaxed);
  new_items_.fetch_add(new_items, std::memory_order_relaxed);
}

void ServerMetrics::RecordRejected(int code, int64_t n) {
  if (code < 0 || code >= kCodes)
    code = static_cast<int>(absl::StatusCode::kUnknown);
  rejected_[code].fetch_add(n, std::memory_order_relaxed);
}

void ServerMetrics::RecordAuthFailure(bool token_missing) {
  (token_missing ? auth_missing_ : auth_invalid_)
      .fetch_add(1, std::memory_order_relaxed);
}

void ServerMetrics::TrainingStarted() {
  std::lock_guard<std::mutex> lock(mu_);
  training_running_ = true;
  last_job_started_ = absl::Now();
}

void ServerMetrics::TrainingEnded(JobResult result, double seconds,
                                  int epochs) {
  std::lock_guard<std::mutex> lock(mu_);
  training_running_ = false;
  ++(result == JobResult::kSucceeded ? jobs_succeeded_
     : result == JobResult::kFailed  ? jobs_failed_
                                     : jobs_cancelled_);
  last_job_seconds_ = seconds;
  last_job_epochs_ = epochs;
}

void ServerMetrics::ModelServedSince(uint64_t version, absl::Time when) {
  std::lock_guard<std::mutex> lock(mu_);
  served_version_ = version;
  served_since_ = when;
}

void ServerMetrics::RenderRequests(Writer& w) const {
  w.Header("recsys_grpc_requests_total", "counter",
           "RPCs completed, by method and status code.");
  for (int m = 0; m < kNumMethods; ++m) {
    for (int c = 0; c < kCodes; ++c) {
      const uint64_t n = methods_[m].codes[c].load(std::memory_order_relaxed);
      // OK is always shown so a rate() has a series from the first scrape.
      if (n == 0 && c != 0) continue;
      w.Sample("recsys_grpc_requests_total",
               absl::StrCat(MethodLabels(m), ",code=\"", CodeName(c), "\""), n);
    }
  }
}

void ServerMetrics::RenderRequestDurations(Writer& w) const {
  w.Header("recsys_grpc_request_duration_seconds", "histogram",
           "Time from a call's start to its status; for streams, the whole "
           "stream.");
  for (int m = 0; m < kNumMethods; ++m) {
    const MethodStats& s = methods_[m];
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= kBuckets.size(); ++b) {
      cumulative += s.buckets[b].load(std::memory_order_relaxed);
      const std::string le =
          b < kBuckets.size() ? absl::StrFormat("%g", kBuckets[b]) : "+Inf";
      w.Sample("recsys_grpc_request_duration_seconds_bucket",
               absl::StrCat(MethodLabels(m), ",le=\"", le, "\""), cumulative);
    }
    w.Sample(
        "recsys_grpc_request_duration_seconds_sum", MethodLabels(m),
        static_cast<double>(s.sum_nanos.load(std::memory_order_relaxed)) / 1e9);
    w.Sample("recsys_grpc_request_duration_seconds_count", MethodLabels(m),
             cumulative);
  }
}

void ServerMetrics::RenderRatings(Writer& w) const {
  w.One("recsys_ratings_accepted_total", "counter",
        "Ratings made durable and folded in (Rate and RateStream).",
        accepted_.load(std::memory_order_relaxed));
  w.Header("recsys_ratings_rejected_total", "counter",
           "Ratings refused, by status code.");
  for (int c = 0; c < kCodes; ++c) {
    const uint64_t n = rejected_[c].load(std::memory_order_relaxed);
    if (n == 0 && c != static_cast<int>(absl::StatusCode::kInvalidArgument)) {
      continue;
    }
    w.Sample("recsys_ratings_rejected_total",
             absl::StrCat("code=\"", CodeName(c), "\""), n);
  }
  w.One("recsys_user_fold_ins_total", "counter",
        "User vectors re-solved from their ratings (one per accepted rating).",
        accepted_.load(std::memory_order_relaxed));
  w.One("recsys_new_users_total", "counter",
        "Accepted ratings from users the model did not know.",
        new_users_.load(std::memory_order_relaxed));
  w.One("recsys_new_items_total", "counter",
        "Accepted ratings of items the catalogue did not hold (each folds "
        "the item in).",
        new_items_.load(std::memory_order_relaxed));
}

void ServerMetrics::RenderAuthFailures(Writer& w) const {
  w.Header("recsys_auth_failures_total", "counter",
           "Calls refused UNAUTHENTICATED, by reason.");
  w.Sample("recsys_auth_failures_total", "reason=\"missing\"",
           auth_missing_.load(std::memory_order_relaxed));
  w.Sample("recsys_auth_failures_total", "reason=\"invalid\"",
           auth_invalid_.load(std::memory_order_relaxed));
}

void ServerMetrics::RenderTraining(const Engine* engine, absl::Time now,
                                   Writer& w) const {
  bool running;
  uint64_t succeeded, failed, cancelled, served_version;
  double last_seconds;
  int last_epochs;
  absl::Time started, served_since;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running = training_running_;
    succeeded = jobs_succeeded_;
    failed = jobs_failed_;
    cancelled = jobs_cancelled_;
    last_seconds = last_job_seconds_;
    last_epochs = last_job_epochs_;
    started = last_job_started_;
    served_version = served_version_;
    served_since = served_since_;
  }
  {
    w.One("recsys_training_running", "gauge", "1 while a training job runs.",
          running ? 1 : 0);
    w.Header("recsys_training_jobs_total", "counter",
             "Training jobs ended, by result.");
    w.Sample("recsys_training_jobs_total", "result=\"succeeded\"", succeeded);
    w.Sample("recsys_training_jobs_total", "result=\"failed\"", failed);
    w.Sample("recsys_training_jobs_total", "result=\"cancelled\"", cancelled);
    w.One("recsys_training_last_duration_seconds", "gauge",
          "Wall time of the last job that ended.", last_seconds);
    w.One("recsys_training_last_epochs", "gauge",
          "Epochs the last job that ended completed.", last_epochs);
    if (running) {
      w.One("recsys_training_running_seconds", "gauge",
            "How long the running job has run.",
            absl::ToDoubleSeconds(now - started));
    }
    if (engine != nullptr) {
      const EngineInfo info = engine->Info();
      RenderModel(info, served_version, served_since, now, w);
      RenderFoldInCache(info, w);
      RenderEvents(info, w);
      RenderLog(*engine, w);
    }
  }
}

void ServerMetrics::RenderModel(const EngineInfo& info, uint64_t served_version,
                                absl::Time served_since, absl::Time now,
                                Writer& w) {
  w.Header("recsys_model_info", "gauge",
           "The serving model's kind (value always 1).");
  w.Sample("recsys_model_info",
           absl::StrCat("kind=\"", LabelValue(ModelKindName(info.kind)), "\""),
           1);
  w.One("recsys_model_version", "gauge",
        "Version of the serving model (increases with every training).",
        static_cast<double>(info.version));
  w.One("recsys_model_users", "gauge", "Known users, folded-in ones included.",
        info.users);
  w.One("recsys_model_items", "gauge", "Catalogue size, new items included.",
        info.items);
  w.One("recsys_model_factors", "gauge", "Latent factors per row.",
        info.factors);
  w.One("recsys_model_ratings", "gauge",
        "Ratings held: training data plus accepted since.", info.ratings);
  w.One("recsys_model_ratings_since_training", "gauge",
        "Ratings accepted since the serving model was trained.",
        info.ratings_since_training);
  w.One("recsys_model_train_seconds", "gauge", "Fit time of the serving model.",
        info.train_seconds);
  if (info.last_validation_rmse >= 0) {
    w.One("recsys_model_validation_rmse", "gauge",
          "Validation RMSE of the last training run.",
          info.last_validation_rmse);
  }
  if (info.version == served_version) {
    w.One("recsys_model_age_seconds", "gauge",
          "Seconds since this process began serving the model version "
          "(loaded at start or trained here).",
          absl::ToDoubleSeconds(now - served_since));
  }
  w.One("recsys_log_sequence", "gauge",
        "Last rating-log sequence number applied.",
        static_cast<double>(info.log_sequence));
}

void ServerMetrics::RenderEvents(const EngineInfo& info, Writer& w) {
  w.Header("recsys_events_accepted_total", "counter",
           "Events (implicit feedback) made durable and folded in, by type "
           "(--event_weights); also counted in recsys_ratings_accepted_total.");
  for (const auto& [type, n] : info.events_accepted) {
    w.Sample("recsys_events_accepted_total",
             absl::StrCat("type=\"", LabelValue(type), "\""),
             static_cast<double>(n));
  }
}

void ServerMetrics::RenderFoldInCache(const EngineInfo& info, Writer& w) {
  w.One("recsys_fold_in_cache_bytes", "gauge",
        "Memory held by kept fold-in equations (--fold_in_cache_mb).",
        static_cast<double>(info.fold_in_cache_bytes));
  w.One("recsys_fold_in_cache_users", "gauge",
        "Users whose fold-in equations are kept.",
        static_cast<double>(info.fold_in_cache_users));
  w.Header("recsys_fold_in_cache_lookups_total", "counter",
           "User fold-ins that found the user's equations kept (hit) or "
           "rebuilt them from all of the user's ratings (miss).");
  w.Sample("recsys_fold_in_cache_lookups_total", "result=\"hit\"",
           static_cast<double>(info.fold_in_cache_hits));
  w.Sample("recsys_fold_in_cache_lookups_total", "result=\"miss\"",
           static_cast<double>(info.fold_in_cache_misses));
}

void ServerMetrics::RenderLog(const Engine& engine, Writer& w) {
  const RatingLogStats log = engine.log().stats();
  w.One("recsys_log_records_total", "counter",
        "Records appended to the rating log.",
        static_cast<double>(log.records));
  w.One("recsys_log_writes_total", "counter",
        "write() batches (group commits) to the rating log.",
        static_cast<double>(log.writes));
  w.One("recsys_log_bytes_total", "counter",
        "Record bytes written to the rating log.",
        static_cast<double>(log.bytes_written));
  w.Header("recsys_log_fsync_seconds", "summary",
           "fdatasync calls on log segments and the time they took.");
  w.Sample("recsys_log_fsync_seconds_sum", "",
           absl::ToDoubleSeconds(log.sync_time));
  w.Sample("recsys_log_fsync_seconds_count", "",
           static_cast<double>(log.syncs));
  w.One("recsys_log_replayed_records", "gauge",
        "Log records replayed at start.",
        static_cast<double>(engine.log().recovery().replayed));
}

std::string ServerMetrics::Render(const Engine* engine, absl::Time now) const {
  Writer w;
  w.One("recsys_start_time_seconds", "gauge",
        "Unix time the server process started.",
        absl::ToDoubleSeconds(start_ - absl::UnixEpoch()));
  w.One("recsys_ready", "gauge", "1 when a model is loaded and served.",
        engine != nullptr ? 1 : 0);
  RenderRequests(w);
  RenderRequestDurations(w);
  RenderRatings(w);
  RenderAuthFailures(w);
  RenderTraining(engine, now, w);
  return w.Take();
}

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MetricsInterceptors(ServerMetrics* metrics) {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      out;
  out.push_back(std::make_unique<MetricsInterceptorFactory>(metrics));
  return out;
}

}  // namespace recsys
