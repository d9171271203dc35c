// The calls a load-generator thread issues: which RPC each is, its request
// (drawn from the ids, encoded or not) and the asynchronous call itself.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "bench/load_generator.h"
#include "bench/load_generator_internal.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys::bench::internal {
namespace {

constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kRecommendMethod[] = "/recsys.v1.Recommender/Recommend";
constexpr char kRateMethod[] = "/recsys.v1.Recommender/Rate";
constexpr char kInfoMethod[] = "/recsys.v1.Recommender/GetModelInfo";
constexpr char kSimilarMethod[] = "/recsys.v1.Recommender/SimilarItems";

grpc::ByteBuffer Encode(const google::protobuf::MessageLite& m) {
  grpc::Slice slice(m.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

// One unary call; deletes itself when its completion arrives.
template <typename Response>
class UnaryCall final : public Tag {
 public:
  UnaryCall(Worker* worker, Op op, int64_t scheduled)
      : worker_(worker), op_(op), scheduled_(scheduled) {}
  void Start(std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> r) {
    reader_ = std::move(r);
    reader_->StartCall();
    reader_->Finish(&response_, &status_, this);
  }
  void Done(bool ok) override;
  grpc::ClientContext ctx;

 private:
  Worker* worker_;
  Op op_;
  int64_t scheduled_;
  Response response_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader_;
};

template <typename Response>
void UnaryCall<Response>::Done(bool) {
  worker_->Finished(op_, scheduled_, status_);
  delete this;
}

}  // namespace

void Worker::SetDeadline(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(
                        static_cast<int64_t>(o_.timeout_seconds * 1e6)));
}

v1::RateRequest Worker::RandomRating() {
  v1::RateRequest r;
  r.set_user_id(Pick(ids_.users));
  r.set_item_id(Pick(ids_.items));
  r.set_rating(ids_.rating_values[rng_() % ids_.rating_values.size()]);
  return r;
}

v1::RateRequest Worker::RandomEvent() {
  v1::RateRequest r;
  r.set_user_id(Pick(ids_.users));
  r.set_item_id(Pick(ids_.items));
  r.set_event_type(o_.event_type);
  r.set_count(1);
  return r;
}

void Worker::Issue(int64_t scheduled) {
  const size_t c = next_channel_++ % stubs_.size();
  Op op = kOpRecommend;
  switch (o_.workload) {
    case Workload::kEmpty:
      op = kOpEmpty;
      break;
    case Workload::kRate:
      op = kOpRate;
      break;
    case Workload::kInfo:
      op = kOpInfo;
      break;
    case Workload::kSimilar:
      op = kOpSimilar;
      break;
    case Workload::kMix:
      op = static_cast<int>(rng_() % 100) < o_.mix_rate_percent ? kOpRate
                                                                : kOpRecommend;
      break;
    default:
      break;
  }
  ++outstanding_;
  if (op == kOpEmpty) {
    auto* call = new UnaryCall<grpc::ByteBuffer>(this, op, scheduled);
    SetDeadline(&call->ctx);
    call->Start(generic_[c]->PrepareUnaryCall(&call->ctx, kHealthCheck,
                                              empty_request_, &cq_));
  } else if (!o_.decode_responses) {
    // The same requests as below, encoded here; responses stay bytes.
    const char* method = kRateMethod;
    grpc::ByteBuffer request;
    if (op == kOpRecommend) {
      method = kRecommendMethod;
      request = RecommendRequestBytes(Pick(ids_.users));
    } else if (op == kOpInfo) {
      method = kInfoMethod;
      request = Encode(v1::GetModelInfoRequest());
    } else if (op == kOpSimilar) {
      method = kSimilarMethod;
      request = Encode(SimilarRequest());
    } else {
      request = Encode(RandomRating());
    }
    auto* call = new UnaryCall<grpc::ByteBuffer>(this, op, scheduled);
    SetDeadline(&call->ctx);
    call->Start(
        generic_[c]->PrepareUnaryCall(&call->ctx, method, request, &cq_));
  } else if (op == kOpRecommend) {
    const v1::RecommendRequest req = RecommendRequestFor(Pick(ids_.users));
    auto* call = new UnaryCall<v1::RecommendResponse>(this, op, scheduled);
    SetDeadline(&call->ctx);
    call->Start(stubs_[c]->PrepareAsyncRecommend(&call->ctx, req, &cq_));
  } else if (op == kOpInfo) {
    auto* call = new UnaryCall<v1::ModelInfo>(this, op, scheduled);
    SetDeadline(&call->ctx);
    call->Start(stubs_[c]->PrepareAsyncGetModelInfo(
        &call->ctx, v1::GetModelInfoRequest(), &cq_));
  } else if (op == kOpSimilar) {
    auto* call = new UnaryCall<v1::SimilarItemsResponse>(this, op, scheduled);
    SetDeadline(&call->ctx);
    call->Start(stubs_[c]->PrepareAsyncSimilarItems(&call->ctx,
                                                    SimilarRequest(), &cq_));
  } else {
    const v1::RateRequest req = RandomRating();
    auto* call = new UnaryCall<v1::RateResponse>(this, op, scheduled);
    SetDeadline(&call->ctx);
    call->Start(stubs_[c]->PrepareAsyncRate(&call->ctx, req, &cq_));
  }
}

v1::SimilarItemsRequest Worker::SimilarRequest() {
  v1::SimilarItemsRequest req;
  req.set_item_id(Pick(ids_.items));
  req.set_k(o_.k);
  return req;
}

v1::RecommendRequest Worker::RecommendRequestFor(const std::string& user) {
  v1::RecommendRequest req;
  req.set_user_id(user);
  req.set_k(o_.k);
  if (!o_.recommend_genre.empty()) req.set_genre(o_.recommend_genre);
  for (int j = 0; j < o_.recommend_candidates; ++j) {
    req.add_candidate_item_ids(Pick(ids_.items));
  }
  return req;
}

grpc::ByteBuffer Worker::RecommendRequestBytes(const std::string& user) {
  auto it = recommend_bytes_.find(user);
  if (it == recommend_bytes_.end()) {
    it =
        recommend_bytes_.emplace(user, Encode(RecommendRequestFor(user))).first;
  }
  return it->second;
}

}  // namespace recsys::bench::internal
