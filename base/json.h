// Our own JSON (structured logs, --json outputs, recsys-bench's report) is
// written with nlohmann's library (Debian's nlohmann-json3-dev); protobuf
// messages keep protobuf's JSON mapping. This adds what every writer wants
// the same way: keys in the order they were added, numbers printed short,
// no NaN or infinity, and text that is not valid UTF-8 replaced rather than
// thrown on.
//
//   Json j;
//   j["file"] = path;
//   j["ratings_per_second"] = JsonNumber(rate);
//   out << DumpJson(j) << "\n";
#ifndef RECSYS_BASE_JSON_H_
#define RECSYS_BASE_JSON_H_

#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace recsys {

using Json = nlohmann::ordered_json;

// `v` rounded to six significant digits, so that it prints short; null when
// it is not finite (JSON has no NaN or infinity).
inline Json JsonNumber(double v) {
  if (!std::isfinite(v)) return nullptr;
  return std::strtod(absl::StrFormat("%.6g", v).c_str(), nullptr);
}

// One line; bytes that are not UTF-8 become U+FFFD.
inline std::string DumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace recsys

#endif  // RECSYS_BASE_JSON_H_
