// recsys-client's commands that change or inspect the server: train (and
// its progress), cancel-training, info, delete-user and delete-users.
#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "client/client.h"
#include "models/loaders.h"

namespace recsys {

using internal::Genres;
using internal::RequireFlag;

namespace {

void PrintEvent(const v1::TrainingEvent& e, std::ostream& out) {
  if (e.has_trial()) {
    const v1::SelectionTrial& t = e.trial();
    out << absl::StrFormat("trial %-7s %s %6.2fs  %s\n", t.part(),
                           t.part() == "rating"
                               ? absl::StrFormat("RMSE %.4f", t.rmse())
                               : absl::StrFormat("nDCG@10 %.4f", t.ndcg()),
                           t.seconds(), t.candidate());
    return;
  }
  if (e.state() == v1::TrainingEvent::STATE_RUNNING) {
    if (e.epoch() == 0) {
      out << absl::StrFormat("job %s running, %d epochs\n", e.job_id(),
                             e.epochs());
      return;
    }
    out << absl::StrFormat("epoch %3d/%d  train RMSE %.4f", e.epoch(),
                           e.epochs(), e.train_rmse());
    if (e.validation_rmse() >= 0) {
      out << absl::StrFormat("  validation RMSE %.4f", e.validation_rmse());
    }
    out << absl::StrFormat("  %.2fs\n", e.elapsed_seconds());
  } else if (e.state() == v1::TrainingEvent::STATE_SUCCEEDED) {
    out << absl::StrFormat(
        "job %s SUCCEEDED in %.2fs: serving model version %d", e.job_id(),
        e.elapsed_seconds(), e.model_version());
    if (e.validation_rmse() >= 0) {
      out << absl::StrFormat(", validation RMSE %.4f", e.validation_rmse());
    }
    out << absl::StrFormat(" (%d ratings accepted during training folded in)\n",
                           e.ratings_folded_after());
  } else {
    out << absl::StrFormat("job %s %s after %.2fs: %s\n", e.job_id(),
                           v1::TrainingEvent::State_Name(e.state()),
                           e.elapsed_seconds(), e.error());
  }
}

absl::Status WatchTraining(const ClientOptions& options,
                           const std::string& job_id, RecommenderStub& stub,
                           const Streams& io) {
  grpc::ClientContext context;  // no deadline: see client.h
  v1::WatchTrainingRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientReaderInterface<v1::TrainingEvent>> reader =
      stub.WatchTraining(&context, request);
  v1::TrainingEvent event;
  std::optional<v1::TrainingEvent> last;
  while (reader->Read(&event)) {
    if (options.json) {
      *io.out << internal::ToJson(event) << "\n";
    } else {
      PrintEvent(event, *io.out);
    }
    io.out->flush();
    last = event;
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return internal::RpcError(status);
  if (!last || last->state() == v1::TrainingEvent::STATE_RUNNING) {
    return absl::DataLossError(
        absl::StrCat("the server ended the watch of job ", job_id,
                     " before the job finished"));
  }
  if (last->state() != v1::TrainingEvent::STATE_SUCCEEDED) {
    return internal::OutcomeError(
        absl::StatusCode::kAborted,
        absl::StrCat("training job ", job_id, " ",
                     v1::TrainingEvent::State_Name(last->state()), ": ",
                     last->error()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunTrain(const ClientOptions& options,
                      const TrainRpcOptions& command, RecommenderStub& stub,
                      const Streams& io) {
  v1::TrainRequest request;
  request.set_model_kind(command.model);
  if (command.factors) request.set_factors(*command.factors);
  if (command.epochs) request.set_epochs(*command.epochs);
  if (command.learning_rate) request.set_learning_rate(*command.learning_rate);
  if (command.reg) request.set_reg(*command.reg);
  if (command.reg_bias) request.set_reg_bias(*command.reg_bias);
  if (command.seed) request.set_seed(*command.seed);
  if (command.select) request.set_select(*command.select);
  if (command.budget) request.set_budget(*command.budget);
  if (command.validation_fraction) {
    request.set_validation_fraction(*command.validation_fraction);
  }
  RECSYS_ASSIGN_OR_RETURN(
      v1::TrainResponse response,
      internal::Call(options, &RecommenderStub::Train, stub, request));
  if (options.json) {
    *io.out << internal::ToJson(response) << "\n";
  } else {
    *io.out << "started training job " << response.job_id() << "\n";
  }
  io.out->flush();
  if (!command.wait) return absl::OkStatus();
  return WatchTraining(options, response.job_id(), stub, io);
}

absl::Status RunDeleteUser(const ClientOptions& options,
                           const UserOptions& command, RecommenderStub& stub,
                           const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.user, "delete-user", "user"));
  v1::DeleteUserRequest request;
  request.set_user_id(command.user);
  RECSYS_ASSIGN_OR_RETURN(
      v1::DeleteUserResponse response,
      internal::Call(options, &RecommenderStub::DeleteUser, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  *io.out << absl::StrFormat(
      "deleted user %s: %d ratings, gone from the server's files (log "
      "sequence %d)\n",
      command.user, response.ratings_deleted(), response.log_sequence());
  return absl::OkStatus();
}

absl::Status RunDeleteUsers(const ClientOptions& options,
                            const UserFileOptions& command,
                            RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.path, "file", "delete-users"));
  if (command.batch < 1 || command.batch > 10000) {
    return UsageError(absl::StrCat(
        "delete-users: --batch must be in 1..10000, not ", command.batch));
  }
  std::ifstream file;
  std::istream* in = io.in;
  if (command.path != "-") {
    file.open(command.path, std::ios::binary);
    if (!file) {
      return UsageError(absl::StrCat("cannot open ", command.path, ": ",
                                     std::strerror(errno)));
    }
    in = &file;
  }
  std::vector<std::string> ids;
  for (std::string line; std::getline(*in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) ids.push_back(std::move(line));
  }
  int64_t erased = 0, ratings = 0, calls = 0;
  std::vector<std::string> missing;
  for (size_t first = 0; first < ids.size();
       first += static_cast<size_t>(command.batch)) {
    const size_t end =
        std::min(ids.size(), first + static_cast<size_t>(command.batch));
    v1::DeleteUsersRequest request;
    for (size_t k = first; k < end; ++k) request.add_user_ids(ids[k]);
    absl::StatusOr<v1::DeleteUsersResponse> response =
        internal::Call(options, &RecommenderStub::DeleteUsers, stub, request);
    if (!response.ok()) {
      *io.err << absl::StrFormat(
          "delete-users: %d of %d ids sent before this call (%d users "
          "deleted)\n",
          first, ids.size(), erased);
      return response.status();
    }
    ++calls;
    for (const v1::DeletedUser& u : response->users()) {
      if (u.found()) {
        ++erased;
        ratings += u.ratings_deleted();
      } else {
        missing.push_back(u.user_id());
      }
    }
  }
  if (options.json) {
    Json j;
    j["ids"] = ids.size();
    j["deleted"] = erased;
    j["ratings_deleted"] = ratings;
    j["not_found"] = missing.size();
    j["calls"] = calls;
    *io.out << DumpJson(j) << "\n";
    return absl::OkStatus();
  }
  *io.out << absl::StrFormat(
      "deleted %d users (%d ratings) in %d calls, gone from the server's "
      "files; %d ids not found",
      erased, ratings, calls, missing.size());
  constexpr size_t kListed = 20;
  if (!missing.empty()) {
    const auto shown = std::min(missing.size(), kListed);
    *io.out << ": "
            << absl::StrJoin(
                   missing.begin(),
                   missing.begin() + static_cast<std::ptrdiff_t>(shown), ", ")
            << (missing.size() > kListed ? ", ..." : "");
  }
  *io.out << "\n";
  return absl::OkStatus();
}

absl::Status RunCancelTraining(const ClientOptions& options,
                               const std::string& job, RecommenderStub& stub,
                               const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(job, "job", "cancel-training"));
  v1::CancelTrainingRequest request;
  request.set_job_id(job);
  RECSYS_ASSIGN_OR_RETURN(
      v1::CancelTrainingResponse response,
      internal::Call(options, &RecommenderStub::CancelTraining, stub, request));
  if (options.json) {
    *io.out << internal::ToJson(response) << "\n";
  } else {
    *io.out << "training job " << job
            << " stops at the end of its current epoch; the serving model "
               "stays\n";
  }
  return absl::OkStatus();
}

namespace {

// The model's kind of feedback and, for implicit feedback, the event types
// the server weighs (what `event --type` takes), by name.
void PrintFeedback(const v1::ModelInfo& info, std::ostream& out) {
  if (info.feedback() == v1::FEEDBACK_UNSPECIFIED) return;
  out << "feedback: "
      << (info.feedback() == v1::FEEDBACK_IMPLICIT ? "implicit" : "explicit")
      << "\n";
  if (info.event_weights().empty()) return;
  const std::map<std::string, float> weights(info.event_weights().begin(),
                                             info.event_weights().end());
  out << "event_weights: "
      << absl::StrJoin(weights, ", ",
                       [](std::string* to, const auto& type_weight) {
                         absl::StrAppendFormat(to, "%s=%g", type_weight.first,
                                               type_weight.second);
                       })
      << "\n";
}

}  // namespace

absl::Status RunInfo(const ClientOptions& options, RecommenderStub& stub,
                     const Streams& io) {
  const v1::GetModelInfoRequest request;
  RECSYS_ASSIGN_OR_RETURN(
      v1::ModelInfo info,
      internal::Call(options, &RecommenderStub::GetModelInfo, stub, request));
  if (internal::PrintJson(options, info, io)) return absl::OkStatus();
  std::ostream& out = *io.out;
  out << "kind: " << info.kind() << "\n"
      << "ranking: " << info.ranking_kind() << "\n"
      << "ratings_by: " << info.rating_kind() << "\n"
      << "version: " << info.version() << "\n"
      << "factors: " << info.factors() << "\n"
      << "users: " << info.users() << "\n"
      << "items: " << info.items() << "\n"
      << "retired_items: " << info.retired_items() << "\n"
      << "ratings: " << info.ratings() << "\n"
      << absl::StrFormat("train_seconds: %.3f\n", info.train_seconds())
      << absl::StrFormat("scale: %g..%g\n", info.scale().min(),
                         info.scale().max())
      << "last_validation_rmse: "
      << (info.last_validation_rmse() < 0
              ? std::string("none")
              : absl::StrFormat("%.4f", info.last_validation_rmse()))
      << "\n"
      << "ratings_since_training: " << info.ratings_since_training() << "\n"
      << "log_sequence: " << info.log_sequence() << "\n"
      << "training_job_id: "
      << (info.training_job_id().empty() ? "none" : info.training_job_id())
      << "\n";
  PrintFeedback(info, out);
  const v1::ModelSelection& sel = info.selection();
  if (!sel.summary().empty()) {
    out << "selection: " << sel.summary() << "\n";
    if (sel.trials_size() > 0) {
      out << absl::StrFormat(
          "selection_trials: %d (work %d of %d units, %.1fs; %d validation "
          "users)\n",
          sel.trials_size(), sel.work(), sel.budget(), sel.seconds(),
          sel.validation_users());
    }
  }
  if (info.has_replica()) {
    const v1::ReplicaInfo& r = info.replica();
    out << "replica_of: " << r.primary() << " ("
        << (r.connected() ? "connected" : "not connected") << ", "
        << r.lag_records() << " records behind"
        << (r.last_contact_age_seconds() < 0
                ? std::string(", never heard from")
                : absl::StrFormat(", heard from %.1f s ago",
                                  r.last_contact_age_seconds()))
        << ")\n";
  }
  return absl::OkStatus();
}

}  // namespace recsys
