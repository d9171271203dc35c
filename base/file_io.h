// Files, the POSIX way, with errors that name the file: whole-file reads,
// full writes, atomic replacement (temporary file, fsync, rename, directory
// fsync) and making a directory's entries durable. Every module that touches
// a file goes through here.
//
//   RECSYS_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path, "TLS key"));
//   RECSYS_RETURN_IF_ERROR(WriteFileAtomically(path, {header, body}));
#ifndef RECSYS_BASE_FILE_IO_H_
#define RECSYS_BASE_FILE_IO_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recsys {

// `path: what: strerror(error)` with the code absl gives the errno.
absl::Status ErrnoError(int error, absl::string_view path,
                        absl::string_view what);

// A regular file's contents in a buffer left uninitialised until read:
// zero-filling a large model first would cost as much as a copy of it.
struct FileBytes {
  std::unique_ptr<char[]> data;
  size_t size = 0;
};
absl::StatusOr<FileBytes> ReadFileBytes(const std::string& path);

// The bytes of `path` in a string (errors name the path and the call).
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The bytes of a small file named by the user (tokens, certificates, keys,
// listings): NOT_FOUND naming `what` and the path when it cannot be read.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view what);

// Writes all of `bytes` to `fd` (retrying short writes and EINTR); errors
// name `path`.
absl::Status WriteAll(int fd, absl::string_view bytes, const std::string& path);

// Makes creations, renames and deletions in directory `dir` durable. A file
// system that cannot sync directories (EINVAL) has nothing to wait for.
absl::Status SyncDirectory(const std::string& dir);

// Replaces `path` with the concatenated `pieces` so that a reader, or a
// crash, sees the old file or the new one, never a mix: a temporary file
// beside it (same file system), fsync, rename, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::vector<absl::string_view>& pieces);

// Writes `port` and a newline to `path` atomically, so that a reader polling
// for the file never sees it half written.
absl::Status WritePortFile(const std::string& path, int port);

}  // namespace recsys

#endif  // RECSYS_BASE_FILE_IO_H_
