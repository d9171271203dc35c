// A usage error: INVALID_ARGUMENT marked as the command line's fault, so a
// binary can tell it from a failure of the work and exit with code 2. The
// mark is a status payload; the message is the caller's.
//
//   if (a && b) return UsageError("give --token or --token-file");
//   ...
//   return IsUsageError(status) ? 2 : 1;
#ifndef RECSYS_BASE_USAGE_ERROR_H_
#define RECSYS_BASE_USAGE_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace recsys {

inline constexpr char kUsagePayloadUrl[] = "recsys/usage";

inline absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayloadUrl, absl::Cord("1"));
  return status;
}

inline bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayloadUrl).has_value();
}

}  // namespace recsys

#endif  // RECSYS_BASE_USAGE_ERROR_H_
