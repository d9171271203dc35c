// JSON output of messages, through protobuf's printer (everything else is
// written with base/json.h).
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

}  // namespace recsys::internal
