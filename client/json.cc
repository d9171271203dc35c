// JSON output: messages through protobuf's printer, everything else through
// a small writer (see JsonObject in client.h for why not Struct).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/client.h"
#include "google/protobuf/util/json_util.h"

namespace recsys::internal {

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions json;
  json.always_print_primitive_fields = true;
  json.preserve_proto_field_names = true;
  std::string out;
  // Printing a message we built ourselves cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &out, json);
  return out;
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<int>(c));
        } else {
          out += c;  // UTF-8 passes through
        }
    }
  }
  out += '"';
  return out;
}

void JsonObject::Key(absl::string_view key) {
  if (!body_.empty()) body_ += ',';
  absl::StrAppend(&body_, JsonQuote(key), ":");
}

JsonObject& JsonObject::AddString(absl::string_view key,
                                  absl::string_view value) {
  Key(key);
  body_ += JsonQuote(value);
  return *this;
}

JsonObject& JsonObject::AddInt(absl::string_view key, int64_t value) {
  Key(key);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObject& JsonObject::AddDouble(absl::string_view key, double value) {
  Key(key);
  // JSON has no NaN or infinity.
  body_ += std::isfinite(value) ? absl::StrFormat("%.6g", value) : "null";
  return *this;
}

JsonObject& JsonObject::AddRaw(absl::string_view key, absl::string_view json) {
  Key(key);
  absl::StrAppend(&body_, json);
  return *this;
}

}  // namespace recsys::internal
