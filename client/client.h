// The recsys-client commands as a library: each one talks to a recsys server
// through a Recommender stub, writes its result to the given streams (a table
// for people, or one JSON object per result with `json`) and returns a status.
// Flags live in client/main.cc; nothing here parses a command line.
//
//   auto channel = grpc::CreateChannel("localhost:50051",
//                                      grpc::InsecureChannelCredentials());
//   auto stub = recsys::v1::Recommender::NewStub(channel);
//   recsys::ClientOptions options;
//   recsys::RecommendOptions rec;
//   rec.user = "1";
//   absl::Status s = recsys::RunRecommend(options, rec, *stub, {});
//   if (!s.ok()) {
//     recsys::Failure f = recsys::DescribeFailure("recommend", s, options);
//     std::cerr << f.message << "\n";
//     return f.exit_code;
//   }
//
// Deadlines: every unary call gets `timeout`. `rate --file` and `event
// --file` stream for as long as the file lasts, so `timeout` there bounds how
// long the client waits for the next acknowledgement while ratings are in
// flight. `train --wait` has no deadline, since one epoch on a large data set
// can outlast any sensible default; interrupt the client to stop watching
// (the job goes on).
//
// Channels: MakeChannel builds one from ChannelOptions: plaintext, TLS
// (server verified against --tls-ca or the system roots), mutual TLS (a
// client certificate), and a bearer token on every call (TLS only: gRPC
// will not send call credentials in clear text, and neither should we).
//
// Exit codes (DescribeFailure): 0 success; 1 an RPC failed, the server is
// unreachable, a rating was rejected or a line unparsable, training FAILED or
// the health check is not SERVING; 2 a usage error.
#ifndef RECSYS_CLIENT_CLIENT_H_
#define RECSYS_CLIENT_CLIENT_H_

#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/usage_error.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "net/channel.h"
#include "proto/recsys.grpc.pb.h"

namespace recsys {

using RecommenderStub = v1::Recommender::StubInterface;

// Settings every command shares.
struct ClientOptions {
  std::string target = "localhost:50051";      // named in error messages
  absl::Duration timeout = absl::Seconds(10);  // <= 0: no deadline
  bool json = false;
};

// Where commands read and write. `err` takes diagnostics and, when
// `err_is_tty`, the live progress line of `rate --file` and `event --file`.
struct Streams {
  std::istream* in = &std::cin;
  std::ostream* out = &std::cout;
  std::ostream* err = &std::cerr;
  bool err_is_tty = false;
};

struct RecommendOptions {
  std::string user;
  int k = 10;
  std::string genre;
  bool include_rated = false;
  std::vector<std::string> exclude;
  std::vector<std::string> candidates;
  // Instead of `user`: a visitor's ratings, each "ITEM=RATING".
  std::vector<std::string> session;
  // Only from a state holding the log up to here (read your writes on a
  // replica); 0 = any.
  uint64_t min_log_sequence = 0;
};

struct RateOptions {
  std::string user;
  std::string item;
  std::optional<float> rating;
  int64_t timestamp = 0;  // 0 = the server's clock
};

// One event of an implicit-feedback model (a play, a click): a Rate with
// event_type set and no rating.
struct EventOptions {
  std::string user;
  std::string item;
  std::string type;       // one of the server's --event_weights
  float count = 1;        // how many times it happened; 0 also means 1
  std::string event_id;   // optional: the server counts an id only once
  int64_t timestamp = 0;  // 0 = the server's clock
};

struct RateFileOptions {
  std::string path;  // "-" reads Streams::in
  // The lines are events (`event --file`: ParseEventLine, ParseEventJson),
  // not ratings.
  bool events = false;
  // Ratings sent but not yet acknowledged; bounds the client's memory and
  // the server's backlog however large the file is.
  int max_in_flight = 1024;
  int max_reported = 5;  // rejections and bad lines listed in the summary
};

// One reported line of a ratings file.
struct LineProblem {
  int64_t line = 0;  // 1-based line in the file
  std::string code;  // e.g. "INVALID_ARGUMENT"; empty for unparsable lines
  std::string message;
};

struct RateFileSummary {
  std::string file;
  bool events = false;  // as in RateFileOptions
  int64_t lines = 0;    // lines read, header and blank ones included
  int64_t sent = 0;
  int64_t accepted = 0;
  // Of those accepted: events whose event_id the server had already
  // accepted, so they were not counted again.
  int64_t duplicates = 0;
  int64_t rejected = 0;
  int64_t unparsable = 0;  // not sent
  // Protocol breaches: acknowledgements for no rating in flight (unknown or
  // repeated index), and ratings the server never acknowledged.
  int64_t unexpected_acks = 0;
  int64_t unacknowledged = 0;
  double elapsed_seconds = 0;
  std::vector<LineProblem> rejections;  // the earliest lines, in line order
  std::vector<LineProblem> bad_lines;   // the earliest lines, in line order
};

struct SimilarOptions {
  std::string item;
  int k = 10;
};

struct TrainRpcOptions {
  std::string model;  // "auto" or a kind; empty = the server's --model_kind
  std::optional<bool> select;     // empty = the server's --select
  std::optional<int64_t> budget;  // selection's work units
  std::optional<int32_t> factors;
  std::optional<int32_t> epochs;
  std::optional<float> learning_rate;
  std::optional<float> reg;
  std::optional<float> reg_bias;
  std::optional<uint64_t> seed;
  std::optional<double> validation_fraction;
  bool wait = false;
};

struct UserOptions {
  std::string user;
  int recent = 10;
  uint64_t min_log_sequence = 0;  // as in RecommendOptions
};

struct ItemOptions {
  std::string item;
  // set-item: what to change (unset: unchanged). Genres as "A|B".
  std::optional<std::string> title;
  std::optional<std::string> genres;
  std::optional<bool> retired;
};

struct CatalogueFileOptions {
  std::string path;  // u.item, movies.dat (*.dat) or movies.csv (*.csv)
  int batch = 1000;  // items per UpsertItems call
  std::optional<bool> retired;  // set on every item too, when given
};

struct UserFileOptions {
  std::string path;  // one user id per line; "-" = stdin
  int batch = 1000;  // ids per DeleteUsers call
};

struct HealthOptions {
  std::string service;  // "" = the whole server
};

absl::Status RunRecommend(const ClientOptions& options,
                          const RecommendOptions& command,
                          RecommenderStub& stub, const Streams& io);
absl::Status RunRate(const ClientOptions& options, const RateOptions& command,
                     RecommenderStub& stub, const Streams& io);
// Streams a ratings file through RateStream. Lines are
// `user,item,rating[,timestamp]` with ",", tab or "::" between fields (the
// first non-blank line decides); that line is skipped as a header when its
// rating is not a number. Prints a summary; `summary`, when given, receives
// it too. Fails when any rating was rejected or any line unparsable.
//
// With `events`, lines are events instead (`event --file`): either
// `user,item,type[,count[,timestamp[,event_id]]]` (same delimiters; a first
// line whose third field is `type` or `event_type` is a header), or a JSON
// object per line (a line starting with '{'), {"user": "7", "item": "51",
// "type": "play", "count": 3, "timestamp": 0, "event_id": "e1"}. The
// summary counts the acknowledgements marked duplicate.
absl::Status RunRateFile(const ClientOptions& options,
                         const RateFileOptions& command, RecommenderStub& stub,
                         const Streams& io, RateFileSummary* summary = nullptr);
// One event through Rate (event_type, count, event_id; rating 0). Prints the
// acknowledgement, and says so when the server had seen its event_id.
absl::Status RunEvent(const ClientOptions& options, const EventOptions& command,
                      RecommenderStub& stub, const Streams& io);
absl::Status RunSimilar(const ClientOptions& options,
                        const SimilarOptions& command, RecommenderStub& stub,
                        const Streams& io);
// Starts a job and, with `wait`, prints its progress until it ends; fails
// when the job FAILED.
absl::Status RunTrain(const ClientOptions& options,
                      const TrainRpcOptions& command, RecommenderStub& stub,
                      const Streams& io);
absl::Status RunUser(const ClientOptions& options, const UserOptions& command,
                     RecommenderStub& stub, const Streams& io);
// DeleteUser: erases the user's ratings, vector and id (see the proto).
absl::Status RunDeleteUser(const ClientOptions& options,
                           const UserOptions& command, RecommenderStub& stub,
                           const Streams& io);
// DeleteUsers for the ids of a file (one per line, blank lines skipped),
// `batch` per call. Ids the server does not know are listed, not an error;
// a failed call stops it (the calls before stay made).
absl::Status RunDeleteUsers(const ClientOptions& options,
                            const UserFileOptions& command,
                            RecommenderStub& stub, const Streams& io);
// GetItem: the item's catalogue entry.
absl::Status RunItem(const ClientOptions& options, const ItemOptions& command,
                     RecommenderStub& stub, const Streams& io);
// UpsertItems for one item: changes what the options set.
absl::Status RunSetItem(const ClientOptions& options,
                        const ItemOptions& command, RecommenderStub& stub,
                        const Streams& io);
// UpsertItems from a catalogue file (models/loaders.h LoadCatalogue): sets
// each item's title and genres (and retirement, when `retired` is given;
// otherwise it is left as it is), `batch` items per call, in file order. A
// refused call names the item; the calls before it stay made.
absl::Status RunSetItems(const ClientOptions& options,
                         const CatalogueFileOptions& command,
                         RecommenderStub& stub, const Streams& io);
// Stops training job `job` (CancelTraining).
absl::Status RunCancelTraining(const ClientOptions& options,
                               const std::string& job, RecommenderStub& stub,
                               const Streams& io);
absl::Status RunInfo(const ClientOptions& options, RecommenderStub& stub,
                     const Streams& io);
// grpc.health.v1.Health/Check. Prints SERVING, NOT_SERVING, UNKNOWN or
// SERVICE_UNKNOWN and succeeds only on SERVING. Needs the channel itself:
// Debian ships no generated health stub, so the call is made generically.
absl::Status RunHealth(const ClientOptions& options,
                       const HealthOptions& command,
                       const std::shared_ptr<grpc::ChannelInterface>& channel,
                       const Streams& io);
// The prototype's loop: prompts for a user id on `io.in` and prints their
// recommendations (with `base`'s other settings) until a blank line or EOF.
absl::Status RunInteractive(const ClientOptions& options,
                            const RecommendOptions& base, RecommenderStub& stub,
                            const Streams& io);

// The stderr text and exit code for a command that failed. `channel_ready`
// is whether the channel was connected when the command ended: a deadline
// that passed before any connection means the server was never reached.
struct Failure {
  std::string message;
  int exit_code = 1;
};
Failure DescribeFailure(absl::string_view command, const absl::Status& status,
                        const ClientOptions& options,
                        bool channel_ready = true);

namespace internal {

// An item's genres joined by '|'.
std::string Genres(const v1::Item& item);
// A usage error naming the flag when `value` is empty.
absl::Status RequireFlag(const std::string& value, absl::string_view flag,
                         absl::string_view command);

// Statuses of failed calls: the gRPC code and message, marked as coming from
// the call so DescribeFailure can tell them from local errors.
absl::Status RpcError(const grpc::Status& status);
// A failure the command has already reported on its output (a rejected
// rating, a failed job, NOT_SERVING): the status only sets the exit code.
absl::Status OutcomeError(absl::StatusCode code, absl::string_view message);
// Sets `options.timeout` as the call's deadline.
void SetDeadline(const ClientOptions& options, grpc::ClientContext* context);
// One unary call of `method` with the options' deadline: its response, or
// its status marked as the server's answer (RpcError).
//
//   RECSYS_ASSIGN_OR_RETURN(
//       v1::RateResponse r,
//       internal::Call(options, &RecommenderStub::Rate, stub, request));
template <typename Request, typename Response>
absl::StatusOr<Response> Call(
    const ClientOptions& options,
    grpc::Status (RecommenderStub::*method)(grpc::ClientContext*,
                                            const Request&, Response*),
    RecommenderStub& stub, const Request& request) {
  grpc::ClientContext context;
  SetDeadline(options, &context);
  Response response;
  const grpc::Status status = (stub.*method)(&context, request, &response);
  if (!status.ok()) return RpcError(status);
  return response;
}
// One line of JSON with the proto field names, zero values included.
std::string ToJson(const google::protobuf::Message& message);
// With --json: prints `message` as one line of JSON and returns true.
inline bool PrintJson(const ClientOptions& options,
                      const google::protobuf::Message& message,
                      const Streams& io) {
  if (!options.json) return false;
  *io.out << ToJson(message) << "\n";
  return true;
}

// "::", tab or "," (tried in that order), or "" when the line has none.
std::string DetectDelimiter(absl::string_view line);
// Parses `user<d>item<d>rating[<d>timestamp]`, fields trimmed. Each parser
// here clears `request` first.
absl::Status ParseRatingLine(absl::string_view line,
                             absl::string_view delimiter,
                             v1::RateRequest* request);
// Parses `user<d>item<d>type[<d>count[<d>timestamp[<d>event_id]]]`, fields
// trimmed; empty optional fields keep their defaults (count 0 means 1).
absl::Status ParseEventLine(absl::string_view line, absl::string_view delimiter,
                            v1::RateRequest* request);
// Parses one JSON object with the keys "user", "item" (strings or integers),
// "type" (a string), and optionally "count" (a number), "timestamp" (an
// integer) and "event_id" (a string). Other keys are refused, so that a
// misspelt one does not go unnoticed.
absl::Status ParseEventJson(absl::string_view line, v1::RateRequest* request);
// Whether the event-file line is JSON: its first non-blank character is '{'.
bool IsJsonLine(absl::string_view line);
// Whether a first line of an event file names its columns (its third field
// is `type` or `event_type`, in any case).
bool IsEventHeader(absl::string_view line, absl::string_view delimiter);

// grpc.health.v1 messages, hand-serialised: the request has one string field
// (service, 1) and the response one enum field (status, 1).
std::string EncodeHealthCheckRequest(absl::string_view service);
// The status value, or -1 when the bytes are not a HealthCheckResponse.
int DecodeHealthCheckResponse(absl::string_view bytes);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_CLIENT_CLIENT_H_
