#include "base/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace recsys {
namespace {

// Reads `fd` to its end into `out`, whose size on entry is the first guess
// of the length. Returns 0 or the errno.
int ReadUntilEof(int fd, std::string* out) {
  size_t size = 0;
  for (;;) {
    if (size == out->size()) out->resize(std::max<size_t>(4096, 2 * size));
    const ssize_t n = ::read(fd, out->data() + size, out->size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  out->resize(size);
  return 0;
}

// The directory part of `path` ("." when it has none).
std::string DirName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Reads all of `path` into `out`: 0 or the errno, with `opened` telling
// whether the open succeeded. The file's size is a first guess of the
// length only (pipes and /proc files report 0).
int ReadWhole(const std::string& path, std::string* out, bool* opened) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  *opened = fd >= 0;
  if (fd < 0) return errno;
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out->resize(st.st_size + 1);
  const int error = ReadUntilEof(fd, out);
  ::close(fd);
  return error;
}

}  // namespace

absl::Status ErrnoError(int error, absl::string_view path,
                        absl::string_view what) {
  return absl::ErrnoToStatus(error, absl::StrCat(path, ": ", what));
}

absl::StatusOr<FileBytes> ReadFileBytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, path, "cannot open");
  absl::Status status;
  FileBytes file;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    status = ErrnoError(errno, path, "cannot stat");
  } else if (!S_ISREG(st.st_mode)) {
    status = absl::FailedPreconditionError(
        absl::StrCat(path, ": not a regular file"));
  } else {
    file.data.reset(new char[st.st_size]);
    while (file.size < static_cast<size_t>(st.st_size)) {
      const ssize_t n =
          ::read(fd, file.data.get() + file.size, st.st_size - file.size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = ErrnoError(errno, path, "cannot read");
        break;
      }
      if (n == 0) break;  // shrank since fstat; the caller's checks will tell
      file.size += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return file;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::string bytes;
  bool opened = false;
  const int error = ReadWhole(path, &bytes, &opened);
  if (error != 0) {
    return ErrnoError(error, path, opened ? "cannot read" : "cannot open");
  }
  return bytes;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          absl::string_view what) {
  std::string bytes;
  bool opened = false;
  const int error = ReadWhole(path, &bytes, &opened);
  if (error != 0) {
    return absl::NotFoundError(absl::StrCat("cannot read ", what, " file ",
                                            path, ": ", std::strerror(error)));
  }
  return bytes;
}

absl::Status WriteAll(int fd, absl::string_view bytes,
                      const std::string& path) {
  while (!bytes.empty()) {
    // Linux writes at most ~2 GB per call.
    const size_t chunk = std::min<size_t>(bytes.size(), size_t{1} << 30);
    const ssize_t n = ::write(fd, bytes.data(), chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, path, "cannot write");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, dir, "cannot open directory");
  absl::Status status;
  if (::fsync(fd) != 0 && errno != EINVAL) {
    status = ErrnoError(errno, dir, "cannot fsync directory");
  }
  ::close(fd);
  return status;
}

// The sequence number keeps concurrent saves of one path from one process
// out of each other's way.
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::vector<absl::string_view>& pieces) {
  static std::atomic<uint64_t> sequence{0};
  const std::string tmp =
      absl::StrCat(path, ".tmp.", ::getpid(), ".", sequence.fetch_add(1));
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, tmp, "cannot create");
  absl::Status status;
  for (absl::string_view piece : pieces) {
    status = WriteAll(fd, piece, tmp);
    if (!status.ok()) break;
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = ErrnoError(errno, tmp, "cannot fsync");
  }
  // close() can report a failed delayed write; it must not go unnoticed.
  if (::close(fd) != 0 && status.ok()) {
    status = ErrnoError(errno, tmp, "cannot close");
  }
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, path, absl::StrCat("cannot rename ", tmp));
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return SyncDirectory(DirName(path));
}

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string line = absl::StrCat(port, "\n");
  return WriteFileAtomically(path, {line});
}

}  // namespace recsys
