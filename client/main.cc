// recsys-client: talk to a recsys server from the command line.
//
//   recsys-client recommend --user=1 -k 10 [--genre=Comedy] [--json]
//   recsys-client rate --user=1 --item=50 --rating=4.5
//   recsys-client rate --file=ratings.csv        # or --file=- for stdin
//   recsys-client event --user=1 --item=50 --type=play --count=3
//   recsys-client event --file=events.jsonl      # CSV or JSON lines
//   recsys-client train --model=als --wait
//   recsys-client delete-user --user=1
//   recsys-client health --target=recsys:50051 --timeout=2
//   recsys-client                                # interactive prompt
//
// Flag names accept dashes or underscores (--include-rated,
// --include_rated). Exit codes: 0 success, 1 failure, 2 usage error (see
// client/client.h).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/flag_names.h"
#include "client/client.h"
#include "client/security_flags.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

// Every command.
ABSL_FLAG(std::string, target, "localhost:50051", "Server address host:port");
ABSL_FLAG(double, timeout, 10,
          "Seconds allowed for each call (rate --file, event --file: for each "
          "acknowledgement; train --wait: not applied); 0 = no limit");
ABSL_FLAG(bool, json, false, "Print one JSON object per result");
// recommend, rate, event, user, delete-user.
ABSL_FLAG(std::string, user, "", "User id");
ABSL_FLAG(int, k, 10, "recommend, similar: how many items");
ABSL_FLAG(std::string, genre, "", "recommend: only items of this genre");
ABSL_FLAG(bool, include_rated, false,
          "recommend: also return items the user rated");
ABSL_FLAG(std::vector<std::string>, exclude, {},
          "recommend: item ids never to return (comma-separated)");
ABSL_FLAG(std::vector<std::string>, candidates, {},
          "recommend: rank only these item ids (comma-separated)");
ABSL_FLAG(std::vector<std::string>, session, {},
          "recommend without --user: a visitor's ratings, ITEM=RATING "
          "comma-separated (nothing is stored)");
// rate, event, similar.
ABSL_FLAG(std::string, item, "", "rate, event, similar: item id");
ABSL_FLAG(std::optional<float>, rating, std::nullopt, "rate: the rating");
ABSL_FLAG(int64_t, timestamp, 0,
          "rate, event: seconds since the epoch (0 = the server's clock)");
ABSL_FLAG(std::string, file, "",
          "rate: stream this file of user,item,rating[,timestamp] lines "
          "(',', tab or '::' separated; '-' = stdin); event: of "
          "user,item,type[,count[,timestamp[,event_id]]] lines or JSON "
          "objects");
ABSL_FLAG(int, max_in_flight, 1024,
          "rate --file, event --file: ratings or events sent but not yet "
          "acknowledged, at most");
ABSL_FLAG(std::string, type, "",
          "event: the event type, one the server weighs in --event_weights "
          "(e.g. play)");
ABSL_FLAG(float, count, 1,
          "event: how many times it happened (the weight is the type's "
          "times this)");
ABSL_FLAG(std::string, event_id, "",
          "event: an id for the event; the server counts an id once, so a "
          "retry is safe (empty: none)");
// train.
ABSL_FLAG(std::string, model, "",
          "train: auto (model selection), hybrid, puresvd, bayes, ials, sgd, "
          "als, baseline or popularity (empty = the server's --model_kind)");
ABSL_FLAG(std::optional<int32_t>, factors, std::nullopt, "train: factors");
ABSL_FLAG(std::optional<int32_t>, epochs, std::nullopt,
          "train: epochs / ALS iterations");
ABSL_FLAG(std::optional<float>, learning_rate, std::nullopt,
          "train: SGD learning rate");
ABSL_FLAG(std::optional<float>, reg, std::nullopt, "train: factor penalty");
ABSL_FLAG(std::optional<float>, reg_bias, std::nullopt, "train: bias penalty");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "train: random seed");
ABSL_FLAG(std::optional<bool>, select, std::nullopt,
          "train: search the settings not given (false: train exactly as "
          "told; default: the server's --select)");
ABSL_FLAG(std::optional<int64_t>, budget, std::nullopt,
          "train: work units the selection may spend");
ABSL_FLAG(std::optional<double>, validation_fraction, std::nullopt,
          "train: share held out for validation RMSE");
ABSL_FLAG(bool, wait, false, "train: follow the job until it ends");
ABSL_FLAG(std::string, job, "", "cancel-training: the training job's id");
// user.
ABSL_FLAG(int, recent, 10, "user: how many recent ratings");
ABSL_FLAG(uint64_t, min_log_sequence, 0,
          "recommend, user: answer only from a state holding the log up to "
          "this sequence (what rate printed; read your writes on a replica)");
ABSL_FLAG(std::optional<std::string>, title, std::nullopt,
          "set-item: the new title (unset or empty: unchanged)");
ABSL_FLAG(std::optional<std::string>, genres, std::nullopt,
          "set-item: the new genres, separated by '|' (unset or empty: "
          "unchanged)");
ABSL_FLAG(std::optional<bool>, retired, std::nullopt,
          "set-item, set-items: true withdraws the items from "
          "recommendations, false restores them");
ABSL_FLAG(int, batch, 1000,
          "set-items, delete-users: items or ids per call (at most 10000)");
// health.
ABSL_FLAG(std::string, service, "",
          "health: service name (\"\" = the whole server)");

namespace recsys {
namespace {

constexpr char kUsage[] =
    "recsys-client [command] [flags]\n"
    "commands:\n"
    "  recommend --user=U [-k 10] [--genre=G] [--include-rated]\n"
    "            [--exclude=ID,ID] [--candidates=ID,ID]\n"
    "            [--min-log-sequence=S]   (read your writes on a replica)\n"
    "  recommend --session=ITEM=RATING,ITEM=RATING [-k 10] ...   for a "
    "visitor\n"
    "  rate      --user=U --item=I --rating=R [--timestamp=T]\n"
    "  rate      --file=ratings.csv|-   stream user,item,rating[,timestamp]\n"
    "  event     --user=U --item=I --type=play [--count=1] [--event_id=ID]\n"
    "            [--timestamp=T]   an event (implicit-feedback models)\n"
    "  event     --file=events.csv|-   stream events: lines of\n"
    "            user,item,type[,count[,timestamp[,event_id]]] or JSON\n"
    "            {\"user\":..,\"item\":..,\"type\":..}\n"
    "  similar   --item=I [-k 10]\n"
    "  train     [--model=als] [--factors=N] [--epochs=N] [--wait]\n"
    "            [--learning_rate=R] [--reg=R] [--reg_bias=R] [--seed=N]\n"
    "            [--validation_fraction=F]\n"
    "  cancel-training --job=J   stop a training job; the model stays\n"
    "  user      --user=U [--recent=10] [--min-log-sequence=S]\n"
    "  delete-user --user=U   erase the user's ratings, vector and id\n"
    "  delete-users --file=ids.txt|- [--batch=1000]   delete-user for each id\n"
    "            (one per line)\n"
    "  item      --item=I   the item's catalogue entry\n"
    "  set-item  --item=I [--title=T] [--genres='A|B'] [--retired=true|false]\n"
    "  set-items --file=movies.csv|movies.dat|u.item [--batch=1000]\n"
    "            [--retired=true|false]   titles and genres from the file\n"
    "  info      what the server is serving\n"
    "  health    grpc.health.v1 check (exit 0 only when SERVING)\n"
    "  (none)    interactive: recommendations for each user id typed\n"
    "global: --target=localhost:50051 --timeout=10 --json\n"
    "        --tls --tls-ca=F --tls-cert=F --tls-key=F --tls-server-name=N\n"
    "        --token=T | --token-file=F\n"
    "Run with --helpfull for every flag.";

// "--file -" would make Abseil ask whether "-" was meant as a value; it was
// (stdin), so say so with "--file=-".
std::vector<std::string> JoinStdinFile(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 < argc && std::string(argv[i + 1]) == "-" &&
        (arg == "--file" || arg == "-file")) {
      arg += "=-";
      ++i;
    }
    args.push_back(std::move(arg));
  }
  return args;
}

RecommendOptions RecommendFromFlags() {
  RecommendOptions o;
  o.user = absl::GetFlag(FLAGS_user);
  o.k = absl::GetFlag(FLAGS_k);
  o.genre = absl::GetFlag(FLAGS_genre);
  o.include_rated = absl::GetFlag(FLAGS_include_rated);
  o.exclude = absl::GetFlag(FLAGS_exclude);
  o.candidates = absl::GetFlag(FLAGS_candidates);
  o.session = absl::GetFlag(FLAGS_session);
  o.min_log_sequence = absl::GetFlag(FLAGS_min_log_sequence);
  return o;
}

RateOptions RateFromFlags() {
  RateOptions o;
  o.user = absl::GetFlag(FLAGS_user);
  o.item = absl::GetFlag(FLAGS_item);
  o.rating = absl::GetFlag(FLAGS_rating);
  o.timestamp = absl::GetFlag(FLAGS_timestamp);
  return o;
}

RateFileOptions RateFileFromFlags(bool events) {
  RateFileOptions o;
  o.path = absl::GetFlag(FLAGS_file);
  o.events = events;
  o.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  return o;
}

EventOptions EventFromFlags() {
  EventOptions o;
  o.user = absl::GetFlag(FLAGS_user);
  o.item = absl::GetFlag(FLAGS_item);
  o.type = absl::GetFlag(FLAGS_type);
  o.count = absl::GetFlag(FLAGS_count);
  o.event_id = absl::GetFlag(FLAGS_event_id);
  o.timestamp = absl::GetFlag(FLAGS_timestamp);
  return o;
}

SimilarOptions SimilarFromFlags() {
  SimilarOptions o;
  o.item = absl::GetFlag(FLAGS_item);
  o.k = absl::GetFlag(FLAGS_k);
  return o;
}

TrainRpcOptions TrainFromFlags() {
  TrainRpcOptions o;
  o.model = absl::GetFlag(FLAGS_model);
  o.factors = absl::GetFlag(FLAGS_factors);
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  o.reg = absl::GetFlag(FLAGS_reg);
  o.reg_bias = absl::GetFlag(FLAGS_reg_bias);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.select = absl::GetFlag(FLAGS_select);
  o.budget = absl::GetFlag(FLAGS_budget);
  o.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  o.wait = absl::GetFlag(FLAGS_wait);
  return o;
}

UserOptions UserFromFlags() {
  UserOptions o;
  o.user = absl::GetFlag(FLAGS_user);
  o.recent = absl::GetFlag(FLAGS_recent);
  o.min_log_sequence = absl::GetFlag(FLAGS_min_log_sequence);
  return o;
}

UserFileOptions UserFileFromFlags() {
  UserFileOptions o;
  o.path = absl::GetFlag(FLAGS_file);
  o.batch = absl::GetFlag(FLAGS_batch);
  return o;
}

CatalogueFileOptions CatalogueFileFromFlags() {
  CatalogueFileOptions o;
  o.path = absl::GetFlag(FLAGS_file);
  o.batch = absl::GetFlag(FLAGS_batch);
  o.retired = absl::GetFlag(FLAGS_retired);
  return o;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelFromFlags(
    const std::string& target) {
  absl::StatusOr<ChannelOptions> o = SecurityFromFlags();
  if (!o.ok()) return o.status();
  o->target = target;
  // A server that is starting answers UNAVAILABLE: ride through it.
  o->retry_unavailable = true;
  return MakeChannel(*o);
}

// `rate` and `event`: one through Rate, or a file through RateStream.
absl::Status RunRateOrEvent(const std::string& command,
                            const ClientOptions& options, RecommenderStub& stub,
                            const Streams& io) {
  const bool events = command == "event";
  if (events && absl::GetFlag(FLAGS_rating)) {
    return UsageError("event takes --type and --count, not --rating");
  }
  if (!absl::GetFlag(FLAGS_file).empty()) {
    return RunRateFile(options, RateFileFromFlags(events), stub, io);
  }
  if (events) return RunEvent(options, EventFromFlags(), stub, io);
  return RunRate(options, RateFromFlags(), stub, io);
}

absl::Status Run(const std::string& command, const ClientOptions& options,
                 const std::shared_ptr<grpc::Channel>& channel,
                 const Streams& io) {
  std::unique_ptr<v1::Recommender::Stub> stub =
      v1::Recommender::NewStub(channel);
  if (command.empty()) {
    return RunInteractive(options, RecommendFromFlags(), *stub, io);
  }
  if (command == "recommend") {
    return RunRecommend(options, RecommendFromFlags(), *stub, io);
  }
  if (command == "rate" || command == "event") {
    return RunRateOrEvent(command, options, *stub, io);
  }
  if (command == "similar") {
    return RunSimilar(options, SimilarFromFlags(), *stub, io);
  }
  if (command == "train") {
    return RunTrain(options, TrainFromFlags(), *stub, io);
  }
  if (command == "user") {
    return RunUser(options, UserFromFlags(), *stub, io);
  }
  if (command == "delete-user") {
    UserOptions o;
    o.user = absl::GetFlag(FLAGS_user);
    return RunDeleteUser(options, o, *stub, io);
  }
  if (command == "delete-users") {
    return RunDeleteUsers(options, UserFileFromFlags(), *stub, io);
  }
  if (command == "item" || command == "set-item") {
    ItemOptions o;
    o.item = absl::GetFlag(FLAGS_item);
    if (command == "item") return RunItem(options, o, *stub, io);
    o.title = absl::GetFlag(FLAGS_title);
    o.genres = absl::GetFlag(FLAGS_genres);
    o.retired = absl::GetFlag(FLAGS_retired);
    return RunSetItem(options, o, *stub, io);
  }
  if (command == "set-items") {
    return RunSetItems(options, CatalogueFileFromFlags(), *stub, io);
  }
  if (command == "cancel-training") {
    return RunCancelTraining(options, absl::GetFlag(FLAGS_job), *stub, io);
  }
  if (command == "info") return RunInfo(options, *stub, io);
  if (command == "health") {
    HealthOptions o;
    o.service = absl::GetFlag(FLAGS_service);
    return RunHealth(options, o, channel, io);
  }
  return UsageError(absl::StrCat("unknown command '", command, "'"));
}

}  // namespace
}  // namespace recsys

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(recsys::kUsage);
  std::vector<std::string> storage = recsys::JoinStdinFile(argc, argv);
  std::vector<char*> args = recsys::NormalizeFlagNames(&storage);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (positional.size() > 2) {
    std::cerr << recsys::kUsage << "\n";
    return 2;
  }
  const std::string command = positional.size() == 2 ? positional[1] : "";

  recsys::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (!(timeout >= 0)) {
    std::cerr << "recsys-client: --timeout must be >= 0 seconds (0 = no "
                 "limit), not "
              << timeout << "\n";
    return 2;
  }
  options.timeout = absl::Seconds(timeout);
  options.json = absl::GetFlag(FLAGS_json);
  recsys::Streams io;
  io.err_is_tty = isatty(STDERR_FILENO) != 0;

  absl::StatusOr<std::shared_ptr<grpc::Channel>> made =
      recsys::ChannelFromFlags(options.target);
  if (!made.ok()) {
    const recsys::Failure failure = recsys::DescribeFailure(
        command.empty() ? "recommend" : command, made.status(), options);
    std::cerr << failure.message << "\n";
    return failure.exit_code;
  }
  const std::shared_ptr<grpc::Channel> channel = *std::move(made);
  const absl::Status status = recsys::Run(command, options, channel, io);
  if (status.ok()) return 0;
  const bool ready = channel->GetState(false) == GRPC_CHANNEL_READY;
  const recsys::Failure failure = recsys::DescribeFailure(
      command.empty() ? "recommend" : command, status, options, ready);
  std::cerr << failure.message << "\n";
  if (failure.exit_code == 2) std::cerr << recsys::kUsage << "\n";
  return failure.exit_code;
}
