// Early-return helpers for absl::Status and absl::StatusOr.
//
// Debian 12's Abseil (20220623) ships no status macros, so we carry our own:
//
//   absl::Status Load(...) {
//     RECSYS_RETURN_IF_ERROR(Open(path));
//     RECSYS_ASSIGN_OR_RETURN(std::string text, ReadAll(path));
//     ...
//   }
#ifndef RECSYS_BASE_STATUS_MACROS_H_
#define RECSYS_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RECSYS_INTERNAL_CONCAT_IMPL(a, b) a##b
#define RECSYS_INTERNAL_CONCAT(a, b) RECSYS_INTERNAL_CONCAT_IMPL(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define RECSYS_RETURN_IF_ERROR(expr)                                 \
  do {                                                               \
    ::absl::Status recsys_internal_status = (expr);                  \
    if (!recsys_internal_status.ok()) return recsys_internal_status; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration).
#define RECSYS_ASSIGN_OR_RETURN(lhs, rexpr) \
  RECSYS_INTERNAL_ASSIGN_OR_RETURN(         \
      RECSYS_INTERNAL_CONCAT(recsys_internal_statusor_, __LINE__), lhs, rexpr)

#define RECSYS_INTERNAL_ASSIGN_OR_RETURN(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();     \
  lhs = std::move(statusor).value()

#endif  // RECSYS_BASE_STATUS_MACROS_H_
