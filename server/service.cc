#include "server/service.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/status_macros.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/rate_batcher.h"
#include "server/wire.h"

namespace recsys {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl's canonical codes have the same numbers as gRPC's.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

namespace {

void TrialToProto(const SelectionTrial& t, v1::SelectionTrial* out) {
  out->set_candidate(t.candidate);
  out->set_kind(std::string(ModelKindName(t.kind)));
  out->set_part(t.part == SelectionTrial::kRating ? "rating" : "ranking");
  out->set_rung(t.rung);
  out->set_work(t.work);
  out->set_ndcg(t.ndcg);
  out->set_rmse(t.rmse);
  out->set_seconds(t.seconds);
  out->set_chosen(t.chosen);
}

}  // namespace

namespace {

void FillItem(const ItemView& v, v1::Item* out) {
  out->set_id(v.id);
  out->set_title(v.title);
  for (const std::string& g : v.genres) out->add_genres(g);
  out->set_retired(v.retired);
}

int KOrDefault(int32_t k) { return k == 0 ? 10 : k; }

v1::Feedback FeedbackProto(Feedback f) {
  return f == Feedback::kImplicit ? v1::FEEDBACK_IMPLICIT
                                  : v1::FEEDBACK_EXPLICIT;
}

RatingInput RatingInputOf(const v1::RateRequest& r) {
  RatingInput in;
  in.user = r.user_id();
  in.item = r.item_id();
  in.value = r.rating();
  in.timestamp = r.timestamp();
  in.event_type = r.event_type();
  in.count = r.count();
  in.event_id = r.event_id();
  return in;
}

// Runs `body` with the engine, converting errors; the one shape every unary
// handler has.
template <typename Fn>
grpc::Status WithEngine(const absl::StatusOr<Engine*>& engine, Fn&& body) {
  if (!engine.ok()) return ToGrpcStatus(engine.status());
  return ToGrpcStatus(body(**engine));
}

// WithEngine, answering the call on the gRPC thread that received it.
template <typename Fn>
grpc::ServerUnaryReactor* AnswerWithEngine(
    grpc::CallbackServerContext* ctx, const absl::StatusOr<Engine*>& engine,
    Fn&& body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(WithEngine(engine, std::forward<Fn>(body)));
  return reactor;
}

}  // namespace

RecommenderService::RecommenderService(
    std::chrono::microseconds rate_lead_budget)
    : rate_batcher_(std::make_unique<RateBatcher>(
          [this](absl::Span<const absl::StatusOr<RateResult>> results) {
            Observe(results);
          },
          rate_lead_budget)) {}

RecommenderService::~RecommenderService() = default;

absl::StatusOr<Engine*> RecommenderService::engine() const {
  Engine* e = engine_.load();
  if (e == nullptr) {
    return absl::UnavailableError(
        "no model is loaded yet (the server is loading its model or "
        "replaying its log): retry shortly");
  }
  return e;
}

absl::StatusOr<Engine*> RecommenderService::writable_engine() const {
  if (!read_only_.empty()) return absl::FailedPreconditionError(read_only_);
  return engine();
}

void RecommenderService::Observe(
    absl::Span<const absl::StatusOr<RateResult>> results) const {
  if (observer_ == nullptr) return;
  int64_t accepted = 0, new_users = 0, new_items = 0;
  for (const absl::StatusOr<RateResult>& r : results) {
    if (r.ok()) {
      ++accepted;
      new_users += r->new_user;
      new_items += r->new_item;
    } else {
      observer_->OnRejected(r.status().code());
    }
  }
  if (accepted > 0) observer_->OnAccepted(accepted, new_users, new_items);
}

grpc::ServerUnaryReactor* RecommenderService::Recommend(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // Kept by the thread from call to call, so parsing and writing reuse
  // their strings' capacity; both are done with before Finish.
  thread_local v1::RecommendRequest req;
  thread_local std::string body;
  req.Clear();
  body.clear();
  // (The reader only reads; ByteBuffer's reading API is not const.)
  grpc::ProtoBufferReader reader(const_cast<grpc::ByteBuffer*>(request));
  if (!req.ParseFromZeroCopyStream(&reader)) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "the request is not a RecommendRequest"));
    return reactor;
  }
  const grpc::Status status =
      WithEngine(engine(), [&](Engine& e) -> absl::Status {
        RecommendQuery q;
        q.user = req.user_id();
        q.k = KOrDefault(req.k());
        q.include_rated = req.include_rated();
        q.exclude.assign(req.exclude_item_ids().begin(),
                         req.exclude_item_ids().end());
        q.genre = req.genre();
        q.candidates.assign(req.candidate_item_ids().begin(),
                            req.candidate_item_ids().end());
        q.session.reserve(static_cast<size_t>(req.session_items_size()));
        for (const v1::SessionItem& it : req.session_items()) {
          q.session.push_back({it.item_id(), it.rating()});
        }
        q.min_log_sequence = req.min_log_sequence();
        // The strings go from the serving state straight into the bytes.
        RECSYS_ASSIGN_OR_RETURN(
            RecommendResult r, e.Recommend(q, [](const RecommendedItemRef& it) {
              internal::AppendScoredItem(
                  it.id, it.info.title, it.info.genres,
                  it.has_predicted_rating
                      ? std::optional<float>(it.predicted_rating)
                      : std::nullopt,
                  it.score, &body);
            }));
        internal::AppendRecommendTail(r.personalized ? v1::STRATEGY_PERSONALIZED
                                                     : v1::STRATEGY_POPULARITY,
                                      r.model_version, r.unknown_items,
                                      FeedbackProto(r.feedback), &body);
        return absl::OkStatus();
      });
  if (status.ok()) {
    grpc::Slice slice(body.data(), body.size());
    *response = grpc::ByteBuffer(&slice, 1);
  }
  // A call with a long candidate list should not leave its memory with the
  // thread for good.
  constexpr size_t kKeepBytes = 1 << 20;
  if (body.capacity() > kKeepBytes) std::string().swap(body);
  if (request->Length() > kKeepBytes) req = v1::RecommendRequest();
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* RecommenderService::Rate(
    grpc::CallbackServerContext* ctx, const v1::RateRequest* req,
    v1::RateResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Engine*> e = writable_engine();
  if (!e.ok()) {
    reactor->Finish(ToGrpcStatus(e.status()));
    return reactor;
  }
  rate_batcher_->Add({*e, RatingInputOf(*req), resp, reactor});
  return reactor;
}

grpc::Status RecommenderService::RateStream(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::RateStreamResponse, v1::RateRequest>* stream) {
  absl::StatusOr<Engine*> engine_or = writable_engine();
  if (!engine_or.ok()) return ToGrpcStatus(engine_or.status());
  Engine& e = **engine_or;
  // A reader thread queues requests while this thread makes them durable in
  // batches: whatever arrived during one log append goes into the next, so
  // a fast stream costs one fsync per batch, not per rating. Big batches
  // matter most for fold-in: a batch folds each of its users in once, so a
  // client that keeps many ratings in flight (a bulk load) gets few solves
  // per rating (ML-100K, 1 stream: 26k ratings/s with 1024 in flight,
  // 114k/s with 32768). The queue bound keeps a stream's memory to a few MB.
  constexpr size_t kMaxQueued = 32768;
  constexpr size_t kMaxBatch = 16384;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<v1::RateRequest> queue;
  bool eof = false;
  std::thread reader([&] {
    v1::RateRequest req;
    while (stream->Read(&req)) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return queue.size() < kMaxQueued; });
      queue.push_back(std::move(req));
      cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    eof = true;
    cv.notify_all();
  });
  uint64_t index = 0;
  bool write_failed = false;
  std::vector<RatingInput> batch;
  while (true) {
    batch.clear();
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !queue.empty() || eof; });
      if (queue.empty()) break;
      while (!queue.empty() && batch.size() < kMaxBatch) {
        const v1::RateRequest& r = queue.front();
        batch.push_back(RatingInputOf(r));
        queue.pop_front();
      }
      cv.notify_all();
    }
    if (write_failed) continue;  // drain so the reader can finish
    const std::vector<absl::StatusOr<RateResult>> results = e.RateBatch(batch);
    Observe(results);
    v1::RateStreamResponse resp;
    for (const absl::StatusOr<RateResult>& r : results) {
      v1::RatingAck* ack = resp.add_acks();
      ack->set_index(index++);
      ack->set_accepted(r.ok());
      if (r.ok()) {
        ack->set_sequence(r->sequence);
        ack->set_duplicate(r->duplicate);
      } else {
        ack->set_code(static_cast<int32_t>(r.status().code()));
        ack->set_error(std::string(r.status().message()));
      }
    }
    if (!stream->Write(resp)) write_failed = true;
  }
  reader.join();
  if (ctx->IsCancelled())
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* RecommenderService::Train(
    grpc::CallbackServerContext* ctx, const v1::TrainRequest* req,
    v1::TrainResponse* resp) {
  return AnswerWithEngine(
      ctx, writable_engine(), [&](Engine& e) -> absl::Status {
        TrainSpec spec;
        spec.model = e.default_training();
        spec.model.params = ParamOverrides();
        if (!req->model_kind().empty()) {
          RECSYS_ASSIGN_OR_RETURN(spec.model.kind,
                                  ParseKindOrAuto(req->model_kind()));
        }
        if (req->has_select()) spec.model.select = req->select();
        if (req->has_budget()) {
          if (req->budget() < 0) {
            return absl::InvalidArgumentError("budget must be >= 0");
          }
          spec.model.selection.budget = req->budget();
        }
        ParamOverrides& p = spec.model.params;
        if (req->has_factors()) p.factors = req->factors();
        if (req->has_epochs()) p.epochs = req->epochs();
        if (req->has_learning_rate()) p.learning_rate = req->learning_rate();
        if (req->has_reg()) p.reg = req->reg();
        if (req->has_reg_bias()) p.reg_bias = req->reg_bias();
        if (req->has_seed()) p.seed = req->seed();
        if (req->has_rank_factors()) p.rank_factors = req->rank_factors();
        if (req->has_rank_epochs()) p.rank_epochs = req->rank_epochs();
        if (req->has_rank_reg()) p.rank_reg = req->rank_reg();
        if (req->has_implicit_weight()) {
          p.implicit_weight = req->implicit_weight();
        }
        if (req->has_reg_exponent()) p.reg_exponent = req->reg_exponent();
        if (req->has_value_weight()) p.value_weight = req->value_weight();
        if (req->has_target_min()) p.target_min = req->target_min();
        if (req->has_popularity_weight()) {
          p.popularity_weight = req->popularity_weight();
        }
        if (req->has_validation_fraction()) {
          spec.validation_fraction = req->validation_fraction();
        }
        RECSYS_ASSIGN_OR_RETURN(std::string id, e.StartTraining(spec));
        if (observer_ != nullptr) observer_->OnTrainingStarted(id);
        resp->set_job_id(id);
        return absl::OkStatus();
      });
}

grpc::Status RecommenderService::WatchTraining(
    grpc::ServerContext* ctx, const v1::WatchTrainingRequest* req,
    grpc::ServerWriter<v1::TrainingEvent>* writer) {
  absl::StatusOr<Engine*> engine_or = engine();
  if (!engine_or.ok()) return ToGrpcStatus(engine_or.status());
  size_t from = 0;
  bool done = false;
  while (!done) {
    if (ctx->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    // Wake up at least once a second to notice a cancelled call.
    absl::StatusOr<std::vector<TrainingUpdate>> updates =
        (*engine_or)
            ->WatchTraining(req->job_id(), from, absl::Now() + absl::Seconds(1),
                            &done);
    if (!updates.ok()) return ToGrpcStatus(updates.status());
    for (const TrainingUpdate& u : *updates) {
      v1::TrainingEvent ev;
      ev.set_job_id(req->job_id());
      switch (u.state) {
        case TrainingUpdate::kRunning:
          ev.set_state(v1::TrainingEvent::STATE_RUNNING);
          break;
        case TrainingUpdate::kSucceeded:
          ev.set_state(v1::TrainingEvent::STATE_SUCCEEDED);
          break;
        case TrainingUpdate::kFailed:
          ev.set_state(v1::TrainingEvent::STATE_FAILED);
          break;
        case TrainingUpdate::kCancelled:
          ev.set_state(v1::TrainingEvent::STATE_CANCELLED);
          break;
      }
      ev.set_epoch(u.epoch);
      ev.set_epochs(u.epochs);
      ev.set_train_rmse(u.train_rmse);
      ev.set_validation_rmse(u.validation_rmse);
      ev.set_elapsed_seconds(u.elapsed_seconds);
      ev.set_model_version(u.model_version);
      ev.set_error(u.error);
      ev.set_ratings_folded_after(u.ratings_folded_after);
      if (u.trial) TrialToProto(*u.trial, ev.mutable_trial());
      if (!writer->Write(ev)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away");
      }
    }
    from += updates->size();
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* RecommenderService::SimilarItems(
    grpc::CallbackServerContext* ctx, const v1::SimilarItemsRequest* req,
    v1::SimilarItemsResponse* resp) {
  return AnswerWithEngine(ctx, engine(), [&](Engine& e) -> absl::Status {
    RECSYS_ASSIGN_OR_RETURN(
        SimilarResult r, e.SimilarItems(req->item_id(), KOrDefault(req->k())));
    FillItem(r.item, resp->mutable_item());
    for (const auto& [item, sim] : r.similar) {
      v1::SimilarItem* out = resp->add_items();
      FillItem(item, out->mutable_item());
      out->set_similarity(sim);
    }
    resp->set_model_version(r.model_version);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RecommenderService::GetUser(
    grpc::CallbackServerContext* ctx, const v1::GetUserRequest* req,
    v1::GetUserResponse* resp) {
  return AnswerWithEngine(ctx, engine(), [&](Engine& e) -> absl::Status {
    RECSYS_ASSIGN_OR_RETURN(UserResult r,
                            e.GetUser(req->user_id(), KOrDefault(req->recent()),
                                      req->min_log_sequence()));
    resp->set_user_id(req->user_id());
    resp->set_rating_count(r.rating_count);
    resp->set_personalized(r.personalized);
    for (const UserRatingView& v : r.recent) {
      v1::UserRating* out = resp->add_recent();
      FillItem(v.item, out->mutable_item());
      out->set_rating(v.value);
      out->set_timestamp(v.timestamp);
    }
    return absl::OkStatus();
  });
}

grpc::Status RecommenderService::DeleteUser(grpc::ServerContext*,
                                            const v1::DeleteUserRequest* req,
                                            v1::DeleteUserResponse* resp) {
  return WithEngine(writable_engine(), [&](Engine& e) -> absl::Status {
    RECSYS_ASSIGN_OR_RETURN(DeleteUserResult r, e.DeleteUser(req->user_id()));
    resp->set_ratings_deleted(r.ratings_deleted);
    resp->set_log_sequence(r.sequence);
    if (observer_ != nullptr) {
      observer_->OnUsersDeleted(1, r.ratings_deleted, r.sequence);
    }
    return absl::OkStatus();
  });
}

grpc::Status RecommenderService::DeleteUsers(grpc::ServerContext*,
                                             const v1::DeleteUsersRequest* req,
                                             v1::DeleteUsersResponse* resp) {
  return WithEngine(writable_engine(), [&](Engine& e) -> absl::Status {
    const std::vector<std::string> users(req->user_ids().begin(),
                                         req->user_ids().end());
    RECSYS_ASSIGN_OR_RETURN(std::vector<DeleteUserResult> r,
                            e.DeleteUsers(users));
    int64_t erased = 0, ratings = 0;
    uint64_t last = 0;
    for (size_t k = 0; k < r.size(); ++k) {
      v1::DeletedUser* out = resp->add_users();
      out->set_user_id(users[k]);
      out->set_found(r[k].sequence > 0);
      out->set_ratings_deleted(r[k].ratings_deleted);
      out->set_log_sequence(r[k].sequence);
      if (r[k].sequence > 0) {
        ++erased;
        ratings += r[k].ratings_deleted;
        last = std::max(last, r[k].sequence);
      }
    }
    if (observer_ != nullptr && erased > 0) {
      observer_->OnUsersDeleted(erased, ratings, last);
    }
    return absl::OkStatus();
  });
}

grpc::Status RecommenderService::UpsertItems(grpc::ServerContext*,
                                             const v1::UpsertItemsRequest* req,
                                             v1::UpsertItemsResponse* resp) {
  return WithEngine(writable_engine(), [&](Engine& e) -> absl::Status {
    std::vector<ItemUpdate> updates(static_cast<size_t>(req->items_size()));
    for (int k = 0; k < req->items_size(); ++k) {
      const v1::ItemUpdate& in = req->items(k);
      ItemUpdate& u = updates[static_cast<size_t>(k)];
      u.id = in.item_id();
      if (in.has_title()) u.title = in.title();
      if (in.has_genres()) {
        u.genres.emplace(in.genres().genres().begin(),
                         in.genres().genres().end());
      }
      if (in.has_retired()) u.retired = in.retired();
    }
    RECSYS_ASSIGN_OR_RETURN(UpsertItemsResult r, e.UpsertItems(updates));
    resp->set_added(r.added);
    resp->set_changed(r.changed);
    resp->set_unchanged(r.unchanged);
    resp->set_log_sequence(r.sequence);
    if (observer_ != nullptr && r.sequence > 0) {
      observer_->OnCatalogueUpdated(r.added, r.changed, r.sequence);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RecommenderService::GetItem(
    grpc::CallbackServerContext* ctx, const v1::GetItemRequest* req,
    v1::GetItemResponse* resp) {
  return AnswerWithEngine(ctx, engine(), [&](Engine& e) -> absl::Status {
    RECSYS_ASSIGN_OR_RETURN(ItemView item, e.GetItem(req->item_id()));
    FillItem(item, resp->mutable_item());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* RecommenderService::CancelTraining(
    grpc::CallbackServerContext* ctx, const v1::CancelTrainingRequest* req,
    v1::CancelTrainingResponse*) {
  return AnswerWithEngine(ctx, writable_engine(),
                          [&](Engine& e) -> absl::Status {
                            return e.CancelTraining(req->job_id());
                          });
}

grpc::ServerUnaryReactor* RecommenderService::GetModelInfo(
    grpc::CallbackServerContext* ctx, const v1::GetModelInfoRequest*,
    v1::ModelInfo* resp) {
  return AnswerWithEngine(ctx, engine(), [&](Engine& e) -> absl::Status {
    const EngineInfo info = e.Info();
    resp->set_kind(std::string(ModelKindName(info.kind)));
    resp->set_version(info.version);
    resp->set_factors(info.factors);
    resp->set_users(info.users);
    resp->set_items(info.items);
    resp->set_ratings(info.ratings);
    resp->set_train_seconds(info.train_seconds);
    resp->mutable_scale()->set_min(info.scale.min);
    resp->mutable_scale()->set_max(info.scale.max);
    resp->set_last_validation_rmse(info.last_validation_rmse);
    resp->set_ratings_since_training(info.ratings_since_training);
    resp->set_log_sequence(info.log_sequence);
    resp->set_training_job_id(info.training_job);
    resp->set_retired_items(info.retired_items);
    resp->set_ranking_kind(info.ranking_kind);
    resp->set_rating_kind(info.rating_kind);
    resp->set_feedback(FeedbackProto(info.feedback));
    for (const auto& [type, weight] : info.event_weights) {
      (*resp->mutable_event_weights())[type] = weight;
    }
    if (!info.selection.empty() || !info.selection.summary.empty()) {
      const SelectionReport& r = info.selection;
      v1::ModelSelection* sel = resp->mutable_selection();
      for (const SelectionTrial& t : r.trials) {
        TrialToProto(t, sel->add_trials());
      }
      sel->set_budget(r.budget);
      sel->set_work(r.work);
      sel->set_seconds(r.seconds);
      sel->set_validation_users(r.validation_users);
      sel->set_validation_ratings(r.validation_ratings);
      sel->set_summary(r.summary);
    }
    if (replica_info_) replica_info_(resp->mutable_replica());
    return absl::OkStatus();
  });
}

}  // namespace recsys
