// The recsys.v1.Recommender gRPC service: each handler converts the request,
// calls the Engine, converts the answer; absl::Status becomes a gRPC status
// in exactly one place (ToGrpcStatus).
//
//   RecommenderService service;
//   builder.RegisterService(&service);
//   ...                                  // later, once a model is loaded:
//   service.SetEngine(engine.get());
//
// Until SetEngine is called every RPC answers FAILED_PRECONDITION.
#ifndef RECSYS_SERVER_SERVICE_H_
#define RECSYS_SERVER_SERVICE_H_

#include <atomic>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"
#include "server/engine.h"

namespace recsys {

grpc::Status ToGrpcStatus(const absl::Status& status);

class RecommenderService final : public recsys::v1::Recommender::Service {
 public:
  // `engine` must outlive the service's use of it.
  void SetEngine(Engine* engine) { engine_.store(engine); }

  grpc::Status Recommend(grpc::ServerContext* ctx,
                         const v1::RecommendRequest* req,
                         v1::RecommendResponse* resp) override;
  grpc::Status Rate(grpc::ServerContext* ctx, const v1::RateRequest* req,
                    v1::RateResponse* resp) override;
  grpc::Status RateStream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::RateStreamResponse, v1::RateRequest>* stream)
      override;
  grpc::Status Train(grpc::ServerContext* ctx, const v1::TrainRequest* req,
                     v1::TrainResponse* resp) override;
  grpc::Status WatchTraining(
      grpc::ServerContext* ctx, const v1::WatchTrainingRequest* req,
      grpc::ServerWriter<v1::TrainingEvent>* writer) override;
  grpc::Status SimilarItems(grpc::ServerContext* ctx,
                            const v1::SimilarItemsRequest* req,
                            v1::SimilarItemsResponse* resp) override;
  grpc::Status GetUser(grpc::ServerContext* ctx, const v1::GetUserRequest* req,
                       v1::GetUserResponse* resp) override;
  grpc::Status GetModelInfo(grpc::ServerContext* ctx,
                            const v1::GetModelInfoRequest* req,
                            v1::ModelInfo* resp) override;

 private:
  // The engine, or FAILED_PRECONDITION while no model is loaded.
  absl::StatusOr<Engine*> engine() const;
  std::atomic<Engine*> engine_{nullptr};
};

}  // namespace recsys

#endif  // RECSYS_SERVER_SERVICE_H_
