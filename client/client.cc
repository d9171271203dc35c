// The commands: requests from options, responses as tables or JSON, and
// failures turned into messages and exit codes. Here: recommend, rate,
// similar, user, the interactive prompt and the shared plumbing; the
// administrative commands live in admin.cc, the catalogue's in
// catalogue.cc, `rate --file` and `event --file` in rate_file.cc, `event` in
// event.cc, health in health.cc.
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

using internal::Genres;
using internal::RequireFlag;

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
  // A model of implicit feedback predicts no ratings: its score ranks.
  const bool implicit = response.feedback() == v1::FEEDBACK_IMPLICIT;
  Table table(
      {"rank", "item", implicit ? "score" : "rating", "title", "genres"},
      {true, false, true, false, false});
  int rank = 0;
  for (const v1::ScoredItem& s : response.items()) {
    const std::string value =
        s.has_predicted_rating()
            ? absl::StrFormat("%.2f", s.predicted_rating())
            : (implicit ? absl::StrFormat("%.3f", s.score()) : "-");
    table.AddRow({absl::StrCat(++rank), s.item().id(), value, s.item().title(),
                  Genres(s.item())});
  }
  table.Print(out);
}

std::string FormatTimestamp(int64_t seconds) {
  if (seconds == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

}  // namespace

namespace internal {

std::string Genres(const v1::Item& item) {
  return absl::StrJoin(item.genres(), "|");
}

absl::Status RequireFlag(const std::string& value, absl::string_view flag,
                         absl::string_view command) {
  if (!value.empty()) return absl::OkStatus();
  return UsageError(absl::StrCat(command, " needs --", flag));
}

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
