// Read replicas: servers that answer reads from a copy of a primary's state
// and follow it as it changes.
//
// On the primary, ReplicationService (the recsys.v1.Replication gRPC
// service) hands out the newest snapshot file (FetchSnapshot) and the log's
// records as they become durable (FollowLog, from a RatingLog LogReader).
//
// On a replica (recsys-server --replica_of=PRIMARY), a Replicator first puts
// the primary's newest snapshot into a data directory that has none, then,
// once the engine has opened it, follows the primary's log on a thread of
// its own: each record is logged with the primary's seq number and applied
// as a restart would apply it (Engine::ApplyReplicated). The replica's data
// directory is therefore an ordinary one, with the primary's numbering: it
// restarts from its own files and asks only for what it lacks, and started
// without --replica_of it serves as a primary. When the primary serves
// another model (a training job), or its log no longer holds the next
// record (a snapshot covered it while the replica was away), the replica
// installs the primary's newest snapshot (Engine::InstallSnapshot) and
// follows on from there. A replica never writes anything of its own: the
// service refuses writes (RecommenderService::SetReadOnly).
//
//   Replicator replicator(channel, absl::Seconds(1));
//   RECSYS_RETURN_IF_ERROR(replicator.PrepareDataDir(data_dir));
//   ... Engine::Open on data_dir ...
//   replicator.Start(engine.get());
//   ...
//   replicator.Stop();  // before the engine goes
#ifndef RECSYS_SERVER_REPLICATION_H_
#define RECSYS_SERVER_REPLICATION_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"
#include "engine/engine.h"
#include "storage/rating_log.h"

namespace recsys {

// A log record and its wire form, both ways.
void ToLogEntry(const LogRecord& r, v1::LogEntry* out);
LogRecord FromLogEntry(const v1::LogEntry& e);

// The primary's side.
class ReplicationService final : public v1::Replication::Service {
 public:
  // `engine` must outlive the service's use of it. A replica's service
  // (`is_replica`) refuses both calls: replicas follow the primary itself.
  void SetEngine(Engine* engine, bool is_replica) {
    is_replica_ = is_replica;
    engine_.store(engine);
  }
  // Ends every FollowLog stream within a second (at shutdown).
  void Stop() { stopping_.store(true); }

  grpc::Status FetchSnapshot(
      grpc::ServerContext* ctx, const v1::FetchSnapshotRequest* req,
      grpc::ServerWriter<v1::SnapshotChunk>* writer) override;
  grpc::Status FollowLog(grpc::ServerContext* ctx,
                         const v1::FollowLogRequest* req,
                         grpc::ServerWriter<v1::LogBatch>* writer) override;

 private:
  absl::StatusOr<Engine*> engine() const;

  std::atomic<Engine*> engine_{nullptr};
  std::atomic<bool> is_replica_{false};
  std::atomic<bool> stopping_{false};
};

// What a replica knows of its replication, for metrics and GetModelInfo.
struct ReplicaStatus {
  std::string primary;
  bool connected = false;         // a FollowLog stream is open
  uint64_t primary_sequence = 0;  // the primary's last durable record, as
                                  // last heard
  // Every record up to here is applied: what the answers reflect
  // (Engine::applied_sequence).
  uint64_t applied_sequence = 0;
  absl::Time last_contact = absl::InfinitePast();
  uint64_t snapshots_installed = 0;
  uint64_t records_applied = 0;

  // Records the primary held, as last heard, that are not applied yet.
  uint64_t lag_records() const {
    return primary_sequence > applied_sequence
               ? primary_sequence - applied_sequence
               : 0;
  }
  // Seconds since the primary's last batch; -1 before the first.
  double last_contact_age_seconds(absl::Time now) const {
    return last_contact == absl::InfinitePast()
               ? -1.0
               : absl::ToDoubleSeconds(now - last_contact);
  }
};

// The replica's Prometheus lines: recsys_replica_connected,
// recsys_replica_lag_records (the primary's last durable record, as last
// heard, less the last one applied), recsys_replica_applied_sequence,
// recsys_replica_last_contact_age_seconds,
// recsys_replica_snapshots_installed_total and
// recsys_replica_records_applied_total.
std::string RenderReplicaMetrics(const ReplicaStatus& s, absl::Time now);

// The replica's side.
class Replicator {
 public:
  // `primary` names the primary (for logs and errors); `channel` reaches it.
  // After a failure, the replica tries again every `retry`. A stream on
  // which the primary sends nothing for `silence` (it sends a batch every
  // second) is given up and opened again: a network that drops packets
  // without a word would otherwise hold it until TCP gives up.
  Replicator(std::string primary, std::shared_ptr<grpc::Channel> channel,
             absl::Duration retry = absl::Seconds(1),
             absl::Duration silence = absl::Seconds(10));
  ~Replicator();  // Stop()
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // When `dir` holds no snapshot, writes the primary's newest there (as
  // Engine::Open will load it), waiting up to `timeout` for the primary.
  absl::Status PrepareDataDir(const std::string& dir, absl::Duration timeout);
  // Follows the primary into `engine` until Stop; `installed` (may be
  // empty) hears of each model version installed from a snapshot.
  void Start(Engine* engine,
             std::function<void(uint64_t version)> installed = nullptr);
  void Stop();
  ReplicaStatus status() const;

 private:
  void Run();
  // Cancels a stream that has been silent for `silence_`.
  void Watch();
  // One FollowLog stream, until it ends; whether a snapshot must be
  // installed before the next.
  absl::StatusOr<bool> Follow();
  // Installs the primary's newest snapshot.
  absl::Status Reinstall();
  // Sleeps `d` unless Stop comes first; false once stopping.
  bool Sleep(absl::Duration d);

  const std::string primary_;
  const std::unique_ptr<v1::Replication::Stub> stub_;
  const absl::Duration retry_;
  const absl::Duration silence_;
  std::atomic<Engine*> engine_{nullptr};  // set by Start
  std::function<void(uint64_t)> installed_;
  std::thread thread_;
  std::thread watchdog_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                  // under mu_
  grpc::ClientContext* active_ = nullptr;  // the open stream's, under mu_
  absl::Time active_heard_;                // its last batch, under mu_
  ReplicaStatus status_;                   // under mu_
};

}  // namespace recsys

#endif  // RECSYS_SERVER_REPLICATION_H_
