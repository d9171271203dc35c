#include "server/replication.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "models/model_io.h"
#include "server/log.h"
#include "server/service.h"

namespace recsys {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr size_t kBatchRecords = 4096;
constexpr absl::Duration kHeartbeat = absl::Seconds(1);

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

// Closes a file descriptor on every path.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// The primary's newest snapshot, downloaded; `on_chunk` hears of each
// chunk.
absl::StatusOr<std::pair<Model, uint64_t>> Download(
    v1::Replication::Stub& stub, grpc::ClientContext* ctx,
    const std::string& primary,
    const std::function<void()>& on_chunk = nullptr) {
  std::unique_ptr<grpc::ClientReader<v1::SnapshotChunk>> reader =
      stub.FetchSnapshot(ctx, v1::FetchSnapshotRequest());
  std::string bytes;
  v1::SnapshotChunk chunk;
  uint64_t version = 0, total = 0;
  while (reader->Read(&chunk)) {
    version = chunk.model_version();
    total = chunk.total_bytes();
    if (bytes.empty()) bytes.reserve(total);
    bytes += chunk.data();
    if (on_chunk) on_chunk();
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpc(status);
  if (bytes.size() != total) {
    return absl::DataLossError(
        absl::StrFormat("the snapshot from %s has %d bytes, not the %d sent",
                        primary, bytes.size(), total));
  }
  RECSYS_ASSIGN_OR_RETURN(
      Model model,
      ParseModel(bytes, absl::StrCat("the snapshot from ", primary)));
  return std::make_pair(std::move(model), version);
}

}  // namespace

void ToLogEntry(const LogRecord& r, v1::LogEntry* out) {
  out->set_sequence(r.seq);
  out->set_user_id(r.user);
  out->set_item_id(r.item);
  out->set_rating(r.value);
  out->set_timestamp(r.timestamp);
  out->set_erase_user(r.erase_user);
  out->set_add(r.add);
  out->set_event_type(r.event_type);
  out->set_event_id(r.event_id);
  if (r.entry != nullptr) {
    v1::LogItemEntry* e = out->mutable_entry();
    e->set_title(r.entry->title);
    for (const std::string& g : r.entry->genres) e->add_genres(g);
    e->set_retired(r.entry->retired);
  }
}

LogRecord FromLogEntry(const v1::LogEntry& e) {
  LogRecord r;
  r.seq = e.sequence();
  r.user = e.user_id();
  r.item = e.item_id();
  r.value = e.rating();
  r.timestamp = e.timestamp();
  r.erase_user = e.erase_user();
  r.add = e.add();
  r.event_type = e.event_type();
  r.event_id = e.event_id();
  if (e.has_entry()) {
    auto info = std::make_shared<ItemInfo>();
    info->title = e.entry().title();
    info->genres.assign(e.entry().genres().begin(), e.entry().genres().end());
    info->retired = e.entry().retired();
    r.entry = std::move(info);
  }
  return r;
}

absl::StatusOr<Engine*> ReplicationService::engine() const {
  Engine* e = engine_.load();
  if (e == nullptr) {
    return absl::UnavailableError(
        "no model is loaded yet (the server is loading its model or "
        "replaying its log): retry shortly");
  }
  if (is_replica_.load()) {
    return absl::FailedPreconditionError(
        "this server is a read replica: follow its primary instead");
  }
  return e;
}

grpc::Status ReplicationService::FetchSnapshot(
    grpc::ServerContext* ctx, const v1::FetchSnapshotRequest*,
    grpc::ServerWriter<v1::SnapshotChunk>* writer) {
  absl::StatusOr<Engine*> e = engine();
  if (!e.ok()) return ToGrpcStatus(e.status());
  // A newer snapshot may replace the newest between the listing and the
  // open; an open file stays readable after it is deleted.
  absl::StatusOr<SnapshotRef> ref;
  Fd file;
  for (int attempt = 0; attempt < 3 && file.fd < 0; ++attempt) {
    ref = (*e)->NewestSnapshot();
    if (!ref.ok()) return ToGrpcStatus(ref.status());
    file.fd = ::open(ref->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (file.fd < 0 && errno != ENOENT) break;
  }
  if (file.fd < 0) {
    return ToGrpcStatus(absl::InternalError(absl::StrCat(
        "cannot open snapshot ", ref->path, ": ", std::strerror(errno))));
  }
  struct stat st;
  if (::fstat(file.fd, &st) != 0) {
    return ToGrpcStatus(absl::InternalError(absl::StrCat(
        "cannot stat snapshot ", ref->path, ": ", std::strerror(errno))));
  }
  const auto total = static_cast<uint64_t>(st.st_size);
  v1::SnapshotChunk chunk;
  chunk.set_model_version(ref->generation);
  chunk.set_log_sequence(ref->log_sequence);
  chunk.set_total_bytes(total);
  std::string buffer(kChunkBytes, '\0');
  uint64_t sent = 0;
  do {
    if (ctx->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    ssize_t n = 0;
    do {
      n = ::pread(file.fd, buffer.data(), buffer.size(),
                  static_cast<off_t>(sent));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      return ToGrpcStatus(absl::InternalError(absl::StrCat(
          "cannot read snapshot ", ref->path, ": ", std::strerror(errno))));
    }
    if (n == 0 && sent < total) {
      return ToGrpcStatus(absl::InternalError(
          absl::StrCat("snapshot ", ref->path, " shrank while being sent")));
    }
    chunk.set_data(buffer.data(), static_cast<size_t>(n));
    sent += static_cast<uint64_t>(n);
    if (!writer->Write(chunk)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the replica left");
    }
  } while (sent < total);
  return grpc::Status::OK;
}

grpc::Status ReplicationService::FollowLog(
    grpc::ServerContext* ctx, const v1::FollowLogRequest* req,
    grpc::ServerWriter<v1::LogBatch>* writer) {
  absl::StatusOr<Engine*> e = engine();
  if (!e.ok()) return ToGrpcStatus(e.status());
  const RatingLog& log = (*e)->log();
  if (req->after_sequence() > log.last_seq()) {
    return ToGrpcStatus(absl::FailedPreconditionError(absl::StrFormat(
        "the replica has records up to seq %d, but this server's log ends at "
        "seq %d: the replica follows another primary, or this one lost "
        "records; start the replica on an empty data directory",
        req->after_sequence(), log.last_seq())));
  }
  std::unique_ptr<LogReader> reader = log.NewReader(req->after_sequence());
  std::vector<LogRecord> records;
  v1::LogBatch batch;
  while (!ctx->IsCancelled() && !stopping_.load()) {
    records.clear();
    const absl::Status read =
        reader->Next(kBatchRecords, absl::Now() + kHeartbeat, &records);
    if (!read.ok()) return ToGrpcStatus(read);
    batch.Clear();
    batch.set_model_version((*e)->generation());
    batch.set_primary_sequence(log.durable_seq());
    for (const LogRecord& r : records) ToLogEntry(r, batch.add_records());
    if (!writer->Write(batch)) break;  // the replica left
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is stopping");
}

std::string RenderReplicaMetrics(const ReplicaStatus& s, absl::Time now) {
  std::string out;
  auto one = [&out](absl::string_view name, absl::string_view type,
                    absl::string_view help, double v) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n", name, " ", absl::StrFormat("%.6g", v), "\n");
  };
  one("recsys_replica_connected", "gauge",
      "1 while this read replica follows its primary's log.",
      s.connected ? 1 : 0);
  one("recsys_replica_lag_records", "gauge",
      "Records the primary held (as last heard) that this replica has not "
      "applied yet.",
      static_cast<double>(s.lag_records()));
  one("recsys_replica_applied_sequence", "gauge",
      "The primary's log sequence number of the last record this replica "
      "applied.",
      static_cast<double>(s.applied_sequence));
  one("recsys_replica_last_contact_age_seconds", "gauge",
      "Seconds since the primary last sent a batch (at least one a second "
      "while connected; -1 before the first).",
      s.last_contact_age_seconds(now));
  one("recsys_replica_snapshots_installed_total", "counter",
      "Snapshots of the primary this replica installed (at its first start, "
      "after the primary trained a model, or after falling behind its log).",
      static_cast<double>(s.snapshots_installed));
  one("recsys_replica_records_applied_total", "counter",
      "Log records of the primary this replica applied since it started.",
      static_cast<double>(s.records_applied));
  return out;
}

Replicator::Replicator(std::string primary,
                       std::shared_ptr<grpc::Channel> channel,
                       absl::Duration retry, absl::Duration silence)
    : primary_(std::move(primary)),
      stub_(v1::Replication::NewStub(std::move(channel))),
      retry_(retry),
      silence_(silence) {
  status_.primary = primary_;
}

Replicator::~Replicator() { Stop(); }

absl::Status Replicator::PrepareDataDir(const std::string& dir,
                                        absl::Duration timeout) {
  if (HasSnapshot(dir)) return absl::OkStatus();
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    absl::StatusOr<std::pair<Model, uint64_t>> got =
        Download(*stub_, &ctx, primary_);
    if (got.ok()) {
      const std::string path = absl::StrCat(
          dir, "/", SnapshotFileName(got->second, got->first.log_sequence));
      RECSYS_RETURN_IF_ERROR(SaveModel(got->first, path));
      Log(LogLevel::kInfo, "replica: installed the primary's snapshot",
          {{"primary", primary_},
           {"model_version", got->second},
           {"log_sequence", got->first.log_sequence}});
      std::lock_guard<std::mutex> lock(mu_);
      ++status_.snapshots_installed;
      return absl::OkStatus();
    }
    last = got.status();
    // The primary may still be starting, or writing a new model's snapshot.
    const bool transient = last.code() == absl::StatusCode::kUnavailable ||
                           last.code() == absl::StatusCode::kFailedPrecondition;
    if (!transient || absl::Now() + retry_ >= deadline) break;
    absl::SleepFor(retry_);
  }
  return absl::Status(last.code(),
                      absl::StrCat("cannot fetch a snapshot from the primary ",
                                   primary_, ": ", last.message()));
}

void Replicator::Start(Engine* engine,
                       std::function<void(uint64_t version)> installed) {
  installed_ = std::move(installed);
  engine_.store(engine);
  thread_ = std::thread([this] { Run(); });
  watchdog_ = std::thread([this] { Watch(); });
}

void Replicator::Watch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, std::chrono::milliseconds(200),
                         [this] { return stopping_; })) {
    if (active_ != nullptr && absl::Now() - active_heard_ > silence_) {
      Log(LogLevel::kWarning, "replica: the primary went silent; reconnecting",
          {{"primary", primary_},
           {"silent_seconds", absl::ToDoubleSeconds(silence_)}});
      active_->TryCancel();
      active_heard_ = absl::InfiniteFuture();  // once per stream
    }
  }
}

void Replicator::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

ReplicaStatus Replicator::status() const {
  ReplicaStatus s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = status_;
  }
  const Engine* engine = engine_.load();
  if (engine != nullptr) s.applied_sequence = engine->applied_sequence();
  return s;
}

bool Replicator::Sleep(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait_for(lock, absl::ToChronoNanoseconds(d),
                 [this] { return stopping_; });
  return !stopping_;
}

void Replicator::Run() {
  std::string last_error;
  bool reinstall = false;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    absl::Status status;
    const bool installed = reinstall;
    if (reinstall) {
      status = Reinstall();
      reinstall = !status.ok();
    }
    if (status.ok()) {
      absl::StatusOr<bool> followed = Follow();
      status = followed.status();
      if (followed.ok()) {
        reinstall = *followed;
        last_error.clear();
        continue;
      }
      // Out of range right after an install would repeat forever without
      // a pause: that goes the way of other failures.
      if (status.code() == absl::StatusCode::kOutOfRange && !installed) {
        Log(LogLevel::kInfo, "replica: the primary's log moved past ours",
            {{"primary", primary_}, {"detail", status.message()}});
        reinstall = true;
        continue;
      }
      reinstall = reinstall || status.code() == absl::StatusCode::kOutOfRange;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    // Said once per kind of trouble, not once a second.
    if (std::string(status.message()) != last_error) {
      last_error = std::string(status.message());
      Log(LogLevel::kWarning, "replica: cannot follow the primary",
          {{"primary", primary_},
           {"code", absl::StatusCodeToString(status.code())},
           {"error", status.message()}});
    }
    if (!Sleep(retry_)) return;
  }
}

absl::StatusOr<bool> Replicator::Follow() {
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    active_ = &ctx;
    active_heard_ = absl::Now();
  }
  // From what the serving state holds: after an install, that is the
  // snapshot's end, and the records after it that the log already has are
  // applied again (Engine::InstallSnapshot).
  Engine& engine = *engine_.load();
  v1::FollowLogRequest req;
  req.set_after_sequence(engine.applied_sequence());
  std::unique_ptr<grpc::ClientReader<v1::LogBatch>> reader =
      stub_->FollowLog(&ctx, req);
  v1::LogBatch batch;
  bool reinstall = false;
  absl::Status failure;
  std::vector<LogRecord> records;
  while (reader->Read(&batch)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      status_.connected = true;
      status_.primary_sequence = batch.primary_sequence();
      status_.last_contact = absl::Now();
      if (active_heard_ != absl::InfiniteFuture()) active_heard_ = absl::Now();
    }
    if (batch.model_version() != engine.generation()) {
      Log(LogLevel::kInfo, "replica: the primary serves another model",
          {{"primary", primary_},
           {"model_version", batch.model_version()},
           {"ours", engine.generation()}});
      reinstall = true;
      break;
    }
    if (batch.records().empty()) continue;
    records.clear();
    records.reserve(static_cast<size_t>(batch.records_size()));
    for (const v1::LogEntry& e : batch.records()) {
      records.push_back(FromLogEntry(e));
    }
    const size_t n = records.size();
    failure = engine.ApplyReplicated(std::move(records));
    if (!failure.ok()) break;
    std::lock_guard<std::mutex> lock(mu_);
    status_.records_applied += n;
  }
  // Leaving early: the stream is still open (cancelling a finished one
  // would hide its status).
  if (reinstall || !failure.ok()) ctx.TryCancel();
  grpc::Status finished = reader->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = nullptr;
    status_.connected = false;
  }
  if (!failure.ok()) return failure;
  if (reinstall) return true;
  if (!finished.ok()) return FromGrpc(finished);
  return false;
}

absl::Status Replicator::Reinstall() {
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::CancelledError("stopping");
    active_ = &ctx;
    active_heard_ = absl::Now();
  }
  // Chunks come without pause: a stall is silence too.
  absl::StatusOr<std::pair<Model, uint64_t>> got =
      Download(*stub_, &ctx, primary_, [this] {
        std::lock_guard<std::mutex> lock(mu_);
        if (active_heard_ != absl::InfiniteFuture()) {
          active_heard_ = absl::Now();
        }
      });
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = nullptr;
  }
  if (!got.ok()) return got.status();
  const uint64_t seq = got->first.log_sequence;
  RECSYS_RETURN_IF_ERROR(
      engine_.load()->InstallSnapshot(std::move(got->first), got->second));
  Log(LogLevel::kInfo, "replica: installed the primary's snapshot",
      {{"primary", primary_},
       {"model_version", got->second},
       {"log_sequence", seq}});
  if (installed_) installed_(got->second);
  std::lock_guard<std::mutex> lock(mu_);
  ++status_.snapshots_installed;
  return absl::OkStatus();
}

}  // namespace recsys
