// The commands: requests from options, responses as tables or JSON, and
// failures turned into messages and exit codes. `rate --file` lives in
// rate_file.cc, health in health.cc, JSON writing in json.cc.
#include "client/client.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "models/loaders.h"

namespace recsys {
namespace {

// DescribeFailure needs to know where a status came from; a payload carries
// that without inventing a status type of our own.
constexpr char kOriginUrl[] = "recsys.client/origin";
constexpr char kOriginRpc[] = "rpc";
// What a server says when it has not applied a min_log_sequence yet
// (Engine::CheckApplied): "... has applied the log up to seq A, not yet S:
// ...".
constexpr char kAppliedUpTo[] = "has applied the log up to seq ";
constexpr char kNotYet[] = ", not yet ";
constexpr char kOriginOutcome[] = "outcome";

std::string Origin(const absl::Status& status) {
  auto payload = status.GetPayload(kOriginUrl);
  return payload ? std::string(*payload) : "";
}

// Terminal columns taken by UTF-8 text, counting one per code point: titles
// such as "Misérables, Les" would otherwise push later columns right.
size_t DisplayWidth(absl::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

// Columns padded to their widest cell; the last column is left unpadded so
// that long genre lists do not produce trailing blanks.
class Table {
 public:
  Table(std::vector<std::string> header, std::vector<bool> right_aligned)
      : right_(std::move(right_aligned)) {
    rows_.push_back(std::move(header));
  }
  void AddRow(std::vector<std::string> cells) {
    rows_.push_back(std::move(cells));
  }
  void Print(std::ostream& out) const {
    std::vector<size_t> width(right_.size(), 0);
    for (const auto& row : rows_) {
      for (size_t c = 0; c < row.size(); ++c) {
        width[c] = std::max(width[c], DisplayWidth(row[c]));
      }
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t c = 0; c < row.size(); ++c) {
        const std::string pad(width[c] - DisplayWidth(row[c]), ' ');
        if (c > 0) line += "  ";
        if (right_[c]) {
          absl::StrAppend(&line, pad, row[c]);
        } else {
          absl::StrAppend(&line, row[c], c + 1 < row.size() ? pad : "");
        }
      }
      out << absl::StripTrailingAsciiWhitespace(line) << "\n";
    }
  }

 private:
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

std::string Genres(const v1::Item& item) {
  return absl::StrJoin(item.genres(), "|");
}

std::string StrategyName(v1::Strategy strategy) {
  switch (strategy) {
    case v1::STRATEGY_PERSONALIZED:
      return "personalized";
    case v1::STRATEGY_POPULARITY:
      return "popularity";
    default:
      return "unspecified strategy";
  }
}

absl::Status RequireFlag(const std::string& value, absl::string_view flag,
                         absl::string_view command) {
  if (!value.empty()) return absl::OkStatus();
  return UsageError(absl::StrCat(command, " needs --", flag));
}

void PrintRecommendations(const RecommendOptions& command,
                          const v1::RecommendResponse& response,
                          std::ostream& out) {
  const bool visitor = !command.session.empty();
  out << absl::StrFormat(
      "top %d for %s: %s", response.items_size(),
      visitor
          ? absl::StrCat("this session (", command.session.size(), " ratings)")
          : absl::StrCat("user ", command.user),
      StrategyName(response.strategy()));
  if (response.strategy() == v1::STRATEGY_POPULARITY) {
    out << (visitor ? " (no item of the session is known)"
                    : " (the user has no ratings yet)");
  }
  out << absl::StrFormat(", model version %d\n", response.model_version());
  if (response.unknown_item_ids_size() > 0) {
    out << "unknown items: " << absl::StrJoin(response.unknown_item_ids(), ", ")
        << "\n";
  }
  // Fewer items than asked for, from a genre or candidates, with the
  // user's rated items left out (the default): they may be why, so say so.
  // Candidates that number fewer than k are not a reason.
  size_t asked = static_cast<size_t>(std::max(command.k, 0));
  if (!command.candidates.empty()) {
    const std::set<std::string> listed(command.candidates.begin(),
                                       command.candidates.end());
    const size_t known =
        listed.size() -
        std::min(listed.size(),
                 static_cast<size_t>(response.unknown_item_ids_size()));
    asked = std::min(asked, known);
  }
  const bool rated_left_out =
      !command.include_rated &&
      (!command.candidates.empty() || !command.genre.empty()) &&
      response.strategy() == v1::STRATEGY_PERSONALIZED &&
      static_cast<size_t>(response.items_size()) < asked;
  if (response.items_size() == 0) out << "(no items)\n";
  if (rated_left_out) {
    out << "(items the user has rated are left out; --include-rated keeps "
           "them)\n";
  }
  if (response.items_size() == 0) return;
  Table table({"rank", "item", "rating", "title", "genres"},
              {true, false, true, false, false});
  int rank = 0;
  for (const v1::ScoredItem& s : response.items()) {
    table.AddRow({absl::StrCat(++rank), s.item().id(),
                  absl::StrFormat("%.2f", s.predicted_rating()),
                  s.item().title(), Genres(s.item())});
  }
  table.Print(out);
}

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

std::string FormatTimestamp(int64_t seconds) {
  if (seconds == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

}  // namespace

namespace internal {

absl::Status RpcError(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // gRPC and Abseil share the canonical code numbering.
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  out.SetPayload(kOriginUrl, absl::Cord(kOriginRpc));
  return out;
}

absl::Status OutcomeError(absl::StatusCode code, absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kOriginUrl, absl::Cord(kOriginOutcome));
  return status;
}

void SetDeadline(const ClientOptions& options, grpc::ClientContext* context) {
  if (options.timeout <= absl::ZeroDuration()) return;
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options.timeout));
}

}  // namespace internal

namespace {

// A count of 0 (-k, --recent) would reach the server as "unset" and mean
// its default of 10, so the flag's value is checked here; the server checks
// the upper bound.
absl::Status CheckCount(int n, absl::string_view command,
                        absl::string_view flag) {
  if (n >= 1) return absl::OkStatus();
  return UsageError(
      absl::StrCat(command, ": ", flag, " must be at least 1, got ", n));
}

}  // namespace

absl::Status RunRecommend(const ClientOptions& options,
                          const RecommendOptions& command,
                          RecommenderStub& stub, const Streams& io) {
  v1::RecommendRequest request;
  if (command.session.empty()) {
    RECSYS_RETURN_IF_ERROR(RequireFlag(command.user, "user", "recommend"));
  } else if (!command.user.empty()) {
    return UsageError("recommend takes --user or --session, not both");
  }
  for (const std::string& entry : command.session) {
    // The last '=' splits, so an item id may hold one.
    const size_t eq = entry.rfind('=');
    float rating = 0;
    if (eq == std::string::npos || eq == 0 ||
        !absl::SimpleAtof(absl::string_view(entry).substr(eq + 1), &rating)) {
      return UsageError(absl::StrCat("--session: '", entry,
                                     "' is not ITEM=RATING (e.g. 50=5)"));
    }
    v1::SessionItem* it = request.add_session_items();
    it->set_item_id(entry.substr(0, eq));
    it->set_rating(rating);
  }
  RECSYS_RETURN_IF_ERROR(CheckCount(command.k, "recommend", "-k"));
  request.set_user_id(command.user);
  request.set_k(command.k);
  request.set_genre(command.genre);
  request.set_include_rated(command.include_rated);
  for (const auto& id : command.exclude) request.add_exclude_item_ids(id);
  for (const auto& id : command.candidates) request.add_candidate_item_ids(id);
  request.set_min_log_sequence(command.min_log_sequence);
  RECSYS_ASSIGN_OR_RETURN(
      v1::RecommendResponse response,
      internal::Call(options, &RecommenderStub::Recommend, stub, request));
  if (options.json) {
    *io.out << internal::ToJson(response) << "\n";
  } else {
    PrintRecommendations(command, response, *io.out);
  }
  return absl::OkStatus();
}

absl::Status RunRate(const ClientOptions& options, const RateOptions& command,
                     RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.user, "user", "rate"));
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.item, "item", "rate"));
  if (!command.rating) {
    return UsageError("rate needs --rating (or --file to stream a file)");
  }
  v1::RateRequest request;
  request.set_user_id(command.user);
  request.set_item_id(command.item);
  request.set_rating(*command.rating);
  request.set_timestamp(command.timestamp);
  RECSYS_ASSIGN_OR_RETURN(
      v1::RateResponse response,
      internal::Call(options, &RecommenderStub::Rate, stub, request));
  if (options.json) {
    *io.out << internal::ToJson(response) << "\n";
  } else {
    *io.out << absl::StrFormat(
        "accepted: user %s rated item %s %g at log sequence %d (new user: "
        "%s, new item: %s)\n",
        command.user, command.item, *command.rating, response.sequence(),
        response.new_user() ? "yes" : "no", response.new_item() ? "yes" : "no");
  }
  return absl::OkStatus();
}

absl::Status RunSimilar(const ClientOptions& options,
                        const SimilarOptions& command, RecommenderStub& stub,
                        const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.item, "item", "similar"));
  RECSYS_RETURN_IF_ERROR(CheckCount(command.k, "similar", "-k"));
  v1::SimilarItemsRequest request;
  request.set_item_id(command.item);
  request.set_k(command.k);
  RECSYS_ASSIGN_OR_RETURN(
      v1::SimilarItemsResponse response,
      internal::Call(options, &RecommenderStub::SimilarItems, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  std::ostream& out = *io.out;
  out << "items most similar to " << response.item().id();
  if (!response.item().title().empty()) out << " " << response.item().title();
  out << absl::StrFormat(", model version %d\n", response.model_version());
  if (response.items_size() == 0) {
    out << "(no items)\n";
    return absl::OkStatus();
  }
  Table table({"rank", "item", "similarity", "title", "genres"},
              {true, false, true, false, false});
  int rank = 0;
  for (const v1::SimilarItem& s : response.items()) {
    table.AddRow({absl::StrCat(++rank), s.item().id(),
                  absl::StrFormat("%.3f", s.similarity()), s.item().title(),
                  Genres(s.item())});
  }
  table.Print(out);
  return absl::OkStatus();
}

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

absl::Status RunUser(const ClientOptions& options, const UserOptions& command,
                     RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.user, "user", "user"));
  RECSYS_RETURN_IF_ERROR(CheckCount(command.recent, "user", "--recent"));
  v1::GetUserRequest request;
  request.set_user_id(command.user);
  request.set_recent(command.recent);
  request.set_min_log_sequence(command.min_log_sequence);
  RECSYS_ASSIGN_OR_RETURN(
      v1::GetUserResponse response,
      internal::Call(options, &RecommenderStub::GetUser, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  std::ostream& out = *io.out;
  out << absl::StrFormat(
      "user %s: %d ratings, %s\n", response.user_id(), response.rating_count(),
      response.personalized() ? "personalized" : "no vector of their own");
  if (response.recent_size() == 0) return absl::OkStatus();
  out << absl::StrFormat("%d most recent:\n", response.recent_size());
  Table table({"item", "rating", "time (UTC)", "title"},
              {false, true, false, false});
  for (const v1::UserRating& r : response.recent()) {
    table.AddRow({r.item().id(), absl::StrFormat("%g", r.rating()),
                  FormatTimestamp(r.timestamp()), r.item().title()});
  }
  table.Print(out);
  return absl::OkStatus();
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

absl::Status RunItem(const ClientOptions& options, const ItemOptions& command,
                     RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.item, "item", "item"));
  v1::GetItemRequest request;
  request.set_item_id(command.item);
  RECSYS_ASSIGN_OR_RETURN(
      v1::GetItemResponse response,
      internal::Call(options, &RecommenderStub::GetItem, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  const v1::Item& item = response.item();
  *io.out << "item: " << item.id() << "\n"
          << "title: " << (item.title().empty() ? "(none)" : item.title())
          << "\n"
          << "genres: " << (item.genres_size() == 0 ? "(none)" : Genres(item))
          << "\n"
          << "retired: " << (item.retired() ? "yes (never recommended)" : "no")
          << "\n";
  return absl::OkStatus();
}

namespace {

// The counts of an UpsertItems answer, as a phrase.
std::string UpsertCounts(int64_t added, int64_t changed, int64_t unchanged) {
  return absl::StrFormat("%d added, %d changed, %d unchanged", added, changed,
                         unchanged);
}

}  // namespace

absl::Status RunSetItem(const ClientOptions& options,
                        const ItemOptions& command, RecommenderStub& stub,
                        const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.item, "item", "set-item"));
  if (!command.title && !command.genres && !command.retired) {
    return UsageError(
        "set-item needs at least one of --title, --genres, --retired");
  }
  v1::UpsertItemsRequest request;
  v1::ItemUpdate* update = request.add_items();
  update->set_item_id(command.item);
  // As from a catalogue file: text that is not UTF-8 is read as latin-1
  // (protobuf would refuse it).
  if (command.title) update->set_title(ToUtf8(*command.title));
  if (command.genres) {
    v1::GenreList* genres = update->mutable_genres();
    for (absl::string_view g : absl::StrSplit(*command.genres, '|')) {
      genres->add_genres(ToUtf8(g));
    }
  }
  if (command.retired) update->set_retired(*command.retired);
  RECSYS_ASSIGN_OR_RETURN(
      v1::UpsertItemsResponse response,
      internal::Call(options, &RecommenderStub::UpsertItems, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  *io.out << "item " << command.item << ": "
          << (response.added() > 0     ? "added to the catalogue"
              : response.changed() > 0 ? "changed"
                                       : "unchanged (already so)");
  if (response.log_sequence() > 0) {
    *io.out << " (log sequence " << response.log_sequence() << ")";
  }
  *io.out << "\n";
  return absl::OkStatus();
}

absl::Status RunSetItems(const ClientOptions& options,
                         const CatalogueFileOptions& command,
                         RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(RequireFlag(command.path, "file", "set-items"));
  if (command.batch < 1 || command.batch > 10000) {
    return UsageError(absl::StrCat(
        "set-items: --batch must be in 1..10000, not ", command.batch));
  }
  absl::StatusOr<RatingData> catalogue = LoadCatalogue(command.path);
  if (!catalogue.ok()) {
    return UsageError(catalogue.status().message());
  }
  const int32_t n = catalogue->items.size();
  int64_t added = 0, changed = 0, unchanged = 0, calls = 0;
  for (int32_t first = 0; first < n; first += command.batch) {
    const int32_t end = std::min(n, first + command.batch);
    v1::UpsertItemsRequest request;
    for (int32_t i = first; i < end; ++i) {
      const ItemInfo& info = catalogue->item_info[static_cast<size_t>(i)];
      v1::ItemUpdate* update = request.add_items();
      update->set_item_id(catalogue->items.External(i));
      update->set_title(info.title);
      // (A genre listed twice is refused by the server: it goes once.)
      std::set<absl::string_view> seen;
      v1::GenreList* genres = update->mutable_genres();
      for (const std::string& g : info.genres) {
        if (seen.insert(g).second) genres->add_genres(g);
      }
      if (command.retired) update->set_retired(*command.retired);
    }
    absl::StatusOr<v1::UpsertItemsResponse> response =
        internal::Call(options, &RecommenderStub::UpsertItems, stub, request);
    if (!response.ok()) {
      // "items[k]: ..." names the k-th update of this call.
      std::string message(response.status().message());
      absl::string_view rest = message;
      int k = -1;
      if (absl::ConsumePrefix(&rest, "items[")) {
        const size_t close = rest.find("]: ");
        if (close != absl::string_view::npos &&
            absl::SimpleAtoi(rest.substr(0, close), &k) && k >= 0 &&
            k < end - first) {
          message = absl::StrCat("item ", catalogue->items.External(first + k),
                                 ": ", rest.substr(close + 3));
        }
      }
      *io.err << absl::StrFormat(
          "set-items: %d of %d items sent before this call (%s)\n", first, n,
          UpsertCounts(added, changed, unchanged));
      return internal::RpcError(grpc::Status(
          static_cast<grpc::StatusCode>(response.status().code()), message));
    }
    added += response->added();
    changed += response->changed();
    unchanged += response->unchanged();
    ++calls;
  }
  if (options.json) {
    Json j;
    j["items"] = n;
    j["added"] = added;
    j["changed"] = changed;
    j["unchanged"] = unchanged;
    j["calls"] = calls;
    *io.out << DumpJson(j) << "\n";
    return absl::OkStatus();
  }
  *io.out << absl::StrFormat("%s: %d items in %d calls: %s\n", command.path, n,
                             calls, UpsertCounts(added, changed, unchanged));
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

absl::Status RunInteractive(const ClientOptions& options,
                            const RecommendOptions& base, RecommenderStub& stub,
                            const Streams& io) {
  RECSYS_RETURN_IF_ERROR(CheckCount(base.k, "recommend", "-k"));
  // Asking first what is served both greets the user and finds an
  // unreachable server before they type anything.
  {
    const v1::GetModelInfoRequest request;
    RECSYS_ASSIGN_OR_RETURN(
        v1::ModelInfo info,
        internal::Call(options, &RecommenderStub::GetModelInfo, stub, request));
    if (!options.json) {
      *io.out << absl::StrFormat(
          "connected to %s: %s model version %d, %d users, %d items\n",
          options.target, info.kind(), info.version(), info.users(),
          info.items());
    }
  }
  RecommendOptions command = base;
  std::string line;
  while (true) {
    *io.out << "Enter user id (blank to quit): " << std::flush;
    if (!std::getline(*io.in, line)) {
      *io.out << "\n";
      break;
    }
    command.user = std::string(absl::StripAsciiWhitespace(line));
    if (command.user.empty()) break;
    const absl::Status status = RunRecommend(options, command, stub, io);
    if (status.ok()) continue;
    if (status.code() == absl::StatusCode::kUnavailable) return status;
    *io.err << DescribeFailure("recommend", status, options).message << "\n";
  }
  return absl::OkStatus();
}

Failure DescribeFailure(absl::string_view command, const absl::Status& status,
                        const ClientOptions& options, bool channel_ready) {
  const std::string origin = Origin(status);
  const std::string code = absl::StatusCodeToString(status.code());
  if (IsUsageError(status)) {
    return {absl::StrCat("recsys-client: ", status.message()), 2};
  }
  if (origin == kOriginOutcome) {
    return {absl::StrCat("recsys-client: ", command, ": ", status.message()),
            1};
  }
  if (origin == kOriginRpc && status.code() == absl::StatusCode::kUnavailable &&
      absl::StrContains(status.message(), kAppliedUpTo) &&
      absl::StrContains(status.message(), kNotYet)) {
    // The server answered: it has not applied the caller's write yet.
    const size_t at = status.message().find(kNotYet);
    const absl::string_view rest =
        status.message().substr(at + std::strlen(kNotYet));
    return {absl::StrCat("recsys-client: ", command,
                         ": the server has not applied log sequence ",
                         rest.substr(0, rest.find(':')), " yet (", code, ": ",
                         status.message(), ")"),
            1};
  }
  if (origin == kOriginRpc &&
      (status.code() == absl::StatusCode::kUnavailable ||
       (status.code() == absl::StatusCode::kDeadlineExceeded &&
        !channel_ready))) {
    // A TLS mismatch (plaintext against TLS, an unknown CA, a missing client
    // certificate) shows only as a closed socket or a failed handshake.
    const bool tls_like =
        absl::StrContains(status.message(), "Socket closed") ||
        absl::StrContains(status.message(), "andshake");
    return {
        absl::StrCat("recsys-client: cannot reach recsys server at ",
                     options.target, " (", code, ": ", status.message(),
                     "): is recsys-server running?",
                     tls_like ? " Does TLS match: --tls-ca (or --tls), "
                                "--tls-server-name, and --tls-cert/--tls-key "
                                "when it requires client certificates?"
                              : ""),
        1};
  }
  return {absl::StrCat("recsys-client: ", command, " failed: ", code, ": ",
                       status.message()),
          1};
}

}  // namespace recsys
