// Reading small whole files (tokens, certificates, keys) with an error that
// says which file, for what, and why; writing a server's port file.
//
//   RECSYS_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path, "TLS key"));
//   RECSYS_RETURN_IF_ERROR(WritePortFile("/run/recsys/port", port));
#ifndef RECSYS_MODELS_FILE_UTIL_H_
#define RECSYS_MODELS_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recsys {

// The bytes of `path`; NOT_FOUND naming `what` and the path when it cannot
// be read.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view what);

// Writes `port` and a newline to `path`, through a temporary file renamed
// into place, so that a reader polling for the file never sees it half
// written.
absl::Status WritePortFile(const std::string& path, int port);

}  // namespace recsys

#endif  // RECSYS_MODELS_FILE_UTIL_H_
