// Reading small whole files (tokens, certificates, keys) with an error that
// says which file, for what, and why.
//
//   RECSYS_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path, "TLS key"));
#ifndef RECSYS_MODELS_FILE_UTIL_H_
#define RECSYS_MODELS_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recsys {

// The bytes of `path`; NOT_FOUND naming `what` and the path when it cannot
// be read.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view what);

}  // namespace recsys

#endif  // RECSYS_MODELS_FILE_UTIL_H_
