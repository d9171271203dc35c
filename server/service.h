// The recsys.v1.Recommender gRPC service: each handler converts the request,
// calls the Engine, converts the answer; absl::Status becomes a gRPC status
// in exactly one place (ToGrpcStatus).
//
//   RecommenderService service;
//   builder.RegisterService(&service);
//   ...                                  // later, once a model is loaded:
//   service.SetEngine(engine.get());
//
// Until SetEngine is called every RPC answers UNAVAILABLE (retryable).
// An optional ServiceObserver hears about ratings and training jobs (for
// metrics and logs), set before the server starts.
#ifndef RECSYS_SERVER_SERVICE_H_
#define RECSYS_SERVER_SERVICE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys {

grpc::Status ToGrpcStatus(const absl::Status& status);

// What the service did, beyond the RPC itself. Called on handler threads:
// implementations must be thread-safe and quick.
class ServiceObserver {
 public:
  virtual ~ServiceObserver() = default;
  // Ratings from Rate and RateStream the engine accepted (of which how many
  // brought a new user or item), and one call per refused rating.
  virtual void OnAccepted(int64_t accepted, int64_t new_users,
                          int64_t new_items) = 0;
  virtual void OnRejected(absl::StatusCode code) = 0;
  virtual void OnTrainingStarted(const std::string& job_id) = 0;
  // Users were erased (DeleteUser, DeleteUsers), with this many ratings in
  // all; log_sequence is the last erasure's.
  virtual void OnUsersDeleted(int64_t users, int64_t ratings,
                              uint64_t log_sequence) = 0;
  // UpsertItems changed the catalogue (log_sequence: of its last entry).
  virtual void OnCatalogueUpdated(int64_t added, int64_t changed,
                                  uint64_t log_sequence) = 0;
};

class RateBatcher;  // server/rate_batcher.h

// The hot unary calls, Recommend and Rate, use gRPC's callback API: Recommend
// runs on the gRPC thread that received it (no hand-off to a sync-server
// thread). Rate is group-committed: the call that finds no commit running
// makes everything queued meanwhile durable with one log append (one fsync),
// folds it in and answers each call, on its own gRPC thread, until nothing
// is queued or its budget is spent, when the batcher's own thread takes
// over (see server/rate_batcher.h). The other quick unary calls (Train
// and CancelTraining, which only start or flag a job, SimilarItems, GetUser,
// GetItem, GetModelInfo) are
// callback methods too; the long-lived streams, RateStream and
// WatchTraining, DeleteUser(s), which wait for a snapshot, and UpsertItems,
// which writes the log and rebuilds the catalogue's lookups, stay on the
// synchronous server's threads.
class RecommenderService final
    : public v1::Recommender::WithRawCallbackMethod_Recommend<
          v1::Recommender::WithCallbackMethod_Rate<
              v1::Recommender::WithCallbackMethod_Train<
                  v1::Recommender::WithCallbackMethod_SimilarItems<
                      v1::Recommender::WithCallbackMethod_GetUser<
                          v1::Recommender::WithCallbackMethod_GetItem<
                              v1::Recommender::WithCallbackMethod_GetModelInfo<
                                  v1::Recommender::
                                      WithCallbackMethod_CancelTraining<
                                          v1::Recommender::Service>>>>>>>> {
 public:
  // How long a gRPC thread may lead Rate's group commit before it hands the
  // lead to the batcher's own thread (see server/rate_batcher.h).
  static constexpr std::chrono::microseconds kRateLeadBudget{3000};

  explicit RecommenderService(
      std::chrono::microseconds rate_lead_budget = kRateLeadBudget);
  ~RecommenderService() override;

  // `engine` must outlive the service's use of it.
  void SetEngine(Engine* engine) { engine_.store(engine); }
  // Before SetEngine: a read replica's service refuses every write (Rate,
  // RateStream, Train, CancelTraining, DeleteUser(s), UpsertItems) with
  // FAILED_PRECONDITION and this message.
  void SetReadOnly(std::string why) { read_only_ = std::move(why); }
  // Before the server starts: fills GetModelInfo's `replica` (on a read
  // replica).
  void SetReplicaInfo(std::function<void(v1::ReplicaInfo*)> fill) {
    replica_info_ = std::move(fill);
  }
  // Before the server starts; `observer` must outlive the service.
  void SetObserver(ServiceObserver* observer) { observer_ = observer; }

  // Takes and answers bytes: the response is written in the wire format
  // directly from the serving state (server/wire.h).
  grpc::ServerUnaryReactor* Recommend(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Rate(grpc::CallbackServerContext* ctx,
                                 const v1::RateRequest* req,
                                 v1::RateResponse* resp) override;
  grpc::Status RateStream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::RateStreamResponse, v1::RateRequest>* stream)
      override;
  grpc::ServerUnaryReactor* Train(grpc::CallbackServerContext* ctx,
                                  const v1::TrainRequest* req,
                                  v1::TrainResponse* resp) override;
  grpc::Status WatchTraining(
      grpc::ServerContext* ctx, const v1::WatchTrainingRequest* req,
      grpc::ServerWriter<v1::TrainingEvent>* writer) override;
  grpc::ServerUnaryReactor* SimilarItems(
      grpc::CallbackServerContext* ctx, const v1::SimilarItemsRequest* req,
      v1::SimilarItemsResponse* resp) override;
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* ctx,
                                    const v1::GetUserRequest* req,
                                    v1::GetUserResponse* resp) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* req,
                                         v1::ModelInfo* resp) override;
  grpc::ServerUnaryReactor* CancelTraining(
      grpc::CallbackServerContext* ctx, const v1::CancelTrainingRequest* req,
      v1::CancelTrainingResponse* resp) override;
  // Synchronous: it waits for a snapshot, which must not hold a callback
  // thread.
  grpc::Status DeleteUser(grpc::ServerContext* ctx,
                          const v1::DeleteUserRequest* req,
                          v1::DeleteUserResponse* resp) override;
  grpc::Status DeleteUsers(grpc::ServerContext* ctx,
                           const v1::DeleteUsersRequest* req,
                           v1::DeleteUsersResponse* resp) override;
  grpc::Status UpsertItems(grpc::ServerContext* ctx,
                           const v1::UpsertItemsRequest* req,
                           v1::UpsertItemsResponse* resp) override;
  grpc::ServerUnaryReactor* GetItem(grpc::CallbackServerContext* ctx,
                                    const v1::GetItemRequest* req,
                                    v1::GetItemResponse* resp) override;

 private:
  // The engine, or UNAVAILABLE (retryable) while no model is loaded.
  absl::StatusOr<Engine*> engine() const;
  // The same, or FAILED_PRECONDITION on a read replica: for writes.
  absl::StatusOr<Engine*> writable_engine() const;
  // Reports the outcome of Rate/RateStream ratings to the observer.
  void Observe(absl::Span<const absl::StatusOr<RateResult>> results) const;
  std::atomic<Engine*> engine_{nullptr};
  ServiceObserver* observer_ = nullptr;
  std::string read_only_;
  std::function<void(v1::ReplicaInfo*)> replica_info_;
  std::unique_ptr<RateBatcher> rate_batcher_;
};

}  // namespace recsys

#endif  // RECSYS_SERVER_SERVICE_H_
