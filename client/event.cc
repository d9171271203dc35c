// `event`: one event of an implicit-feedback model (a play, a click) sent
// through Rate, and the parsers of the lines `event --file` streams (the
// streaming itself is rate_file.cc's, shared with `rate --file`).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "client/client.h"

namespace recsys {
namespace internal {
namespace {

constexpr char kEventShape[] = "user,item,type[,count[,timestamp[,event_id]]]";

// A user or item id of an event's JSON: a string, or an integer written
// out in digits.
absl::StatusOr<std::string> JsonId(const Json& value, absl::string_view key) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return value.dump();
  return absl::InvalidArgumentError(
      absl::StrCat("\"", key, "\" must be a string or an integer"));
}

absl::StatusOr<int64_t> JsonTimestamp(const Json& value) {
  const bool in_range =
      value.is_number_integer() &&
      (!value.is_number_unsigned() ||
       value.get<uint64_t>() <=
           static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  if (!in_range) {
    return absl::InvalidArgumentError(
        "\"timestamp\" must be an integer (seconds since the epoch)");
  }
  return value.get<int64_t>();
}

// Sets the request field of one key of an event's JSON object.
absl::Status SetEventField(const std::string& key, const Json& value,
                           v1::RateRequest* request) {
  if (key == "user" || key == "item") {
    RECSYS_ASSIGN_OR_RETURN(std::string id, JsonId(value, key));
    if (key == "user") {
      request->set_user_id(std::move(id));
    } else {
      request->set_item_id(std::move(id));
    }
  } else if (key == "type" || key == "event_id") {
    if (!value.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", key, "\" must be a string"));
    }
    if (key == "type") {
      request->set_event_type(value.get<std::string>());
    } else {
      request->set_event_id(value.get<std::string>());
    }
  } else if (key == "count") {
    if (!value.is_number()) {
      return absl::InvalidArgumentError("\"count\" must be a number");
    }
    request->set_count(value.get<float>());
  } else if (key == "timestamp") {
    RECSYS_ASSIGN_OR_RETURN(const int64_t t, JsonTimestamp(value));
    request->set_timestamp(t);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown key \"", key,
                     "\" (expected user, item, type, count, timestamp, "
                     "event_id)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseEventLine(absl::string_view line, absl::string_view delimiter,
                            v1::RateRequest* request) {
  request->Clear();
  if (delimiter.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no ',', tab or '::' between fields; expected ",
                     kEventShape, " or a JSON object"));
  }
  std::vector<absl::string_view> fields = absl::StrSplit(line, delimiter);
  if (fields.size() < 3 || fields.size() > 6) {
    return absl::InvalidArgumentError(
        absl::StrFormat("expected %s but found %d field%s", kEventShape,
                        fields.size(), fields.size() == 1 ? "" : "s"));
  }
  for (auto& f : fields) f = absl::StripAsciiWhitespace(f);
  if (fields[0].empty()) return absl::InvalidArgumentError("empty user id");
  if (fields[1].empty()) return absl::InvalidArgumentError("empty item id");
  if (fields[2].empty()) return absl::InvalidArgumentError("empty event type");
  float count = 0;
  if (fields.size() >= 4 && !fields[3].empty() &&
      !absl::SimpleAtof(fields[3], &count)) {
    return absl::InvalidArgumentError(
        absl::StrCat("count '", fields[3], "' is not a number"));
  }
  int64_t timestamp = 0;
  if (fields.size() >= 5 && !fields[4].empty() &&
      !absl::SimpleAtoi(fields[4], &timestamp)) {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp '", fields[4], "' is not an integer"));
  }
  request->set_user_id(std::string(fields[0]));
  request->set_item_id(std::string(fields[1]));
  request->set_event_type(std::string(fields[2]));
  request->set_count(count);
  request->set_timestamp(timestamp);
  if (fields.size() == 6) request->set_event_id(std::string(fields[5]));
  return absl::OkStatus();
}

absl::Status ParseEventJson(absl::string_view line, v1::RateRequest* request) {
  request->Clear();
  const Json json = Json::parse(line.begin(), line.end(), nullptr,
                                /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        "not a JSON object such as {\"user\": \"7\", \"item\": \"51\", "
        "\"type\": \"play\"}");
  }
  for (auto it = json.begin(); it != json.end(); ++it) {
    RECSYS_RETURN_IF_ERROR(SetEventField(it.key(), it.value(), request));
  }
  for (const auto& [value, key] : {std::pair{&request->user_id(), "user"},
                                   std::pair{&request->item_id(), "item"},
                                   std::pair{&request->event_type(), "type"}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", key, "\" is missing or empty"));
    }
  }
  return absl::OkStatus();
}

bool IsJsonLine(absl::string_view line) {
  return absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "{");
}

bool IsEventHeader(absl::string_view line, absl::string_view delimiter) {
  if (delimiter.empty()) return false;
  std::vector<absl::string_view> fields = absl::StrSplit(line, delimiter);
  if (fields.size() < 3) return false;
  const absl::string_view type = absl::StripAsciiWhitespace(fields[2]);
  return absl::EqualsIgnoreCase(type, "type") ||
         absl::EqualsIgnoreCase(type, "event_type");
}

}  // namespace internal

absl::Status RunEvent(const ClientOptions& options, const EventOptions& command,
                      RecommenderStub& stub, const Streams& io) {
  RECSYS_RETURN_IF_ERROR(internal::RequireFlag(command.user, "user", "event"));
  RECSYS_RETURN_IF_ERROR(internal::RequireFlag(command.item, "item", "event"));
  if (command.type.empty()) {
    return UsageError(
        "event needs --type, one of the server's event types (e.g. "
        "--type=play), or --file to stream a file");
  }
  if (!std::isfinite(command.count) || command.count < 0) {
    return UsageError(absl::StrCat(
        "event: --count must be a finite number >= 0, got ", command.count));
  }
  v1::RateRequest request;
  request.set_user_id(command.user);
  request.set_item_id(command.item);
  request.set_event_type(command.type);
  request.set_count(command.count);
  request.set_event_id(command.event_id);
  request.set_timestamp(command.timestamp);
  RECSYS_ASSIGN_OR_RETURN(
      v1::RateResponse response,
      internal::Call(options, &RecommenderStub::Rate, stub, request));
  if (internal::PrintJson(options, response, io)) return absl::OkStatus();
  const std::string what =
      absl::StrFormat("user %s, item %s: %s x%g", command.user, command.item,
                      command.type, command.count == 0 ? 1 : command.count);
  if (response.duplicate()) {
    *io.out << absl::StrFormat(
        "accepted as a duplicate: event %s (%s) was already recorded at log "
        "sequence %d; nothing new recorded\n",
        command.event_id, what, response.sequence());
  } else {
    *io.out << absl::StrFormat(
        "accepted: %s at log sequence %d (new user: %s, new item: %s)\n", what,
        response.sequence(), response.new_user() ? "yes" : "no",
        response.new_item() ? "yes" : "no");
  }
  return absl::OkStatus();
}

}  // namespace recsys
