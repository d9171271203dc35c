// What every reader of loaders.h shares out of line: a file's bytes (mapped
// when it is a regular file), the messages of malformed lines, and the
// latin-1 to UTF-8 repair of titles and genres.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "models/loaders.h"
#include "models/loaders_internal.h"
#include "models/ratings.h"

namespace recsys {
namespace internal {

absl::StatusOr<FileText> FileText::Read(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat(path, ": no such file or directory"));
    }
    return absl::ErrnoToStatus(err, path);
  }
  FileText out;
  absl::Status status = out.Fill(fd, path);
  close(fd);
  if (!status.ok()) return status;
  return out;
}

absl::Status FileText::Fill(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return absl::ErrnoToStatus(errno, path);
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": is a directory, expected a file"));
  }
  if (S_ISREG(st.st_mode)) {
    if (st.st_size == 0) return absl::OkStatus();
    // Populating up front faults the pages in one batch instead of one
    // fault per 4 KB as the parser walks the file.
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                   MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p != MAP_FAILED) {
      map_ = p;
      size_ = static_cast<size_t>(st.st_size);
      madvise(map_, size_, MADV_SEQUENTIAL);
      return absl::OkStatus();
    }
  }
  char block[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, block, sizeof(block));
    if (n == 0) return absl::OkStatus();
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, path);
    }
    buffer_.append(block, static_cast<size_t>(n));
  }
}

std::string Quote(absl::string_view field) {
  constexpr size_t kMax = 40;
  if (field.size() <= kMax) return absl::StrCat("'", field, "'");
  return absl::StrCat("'", field.substr(0, kMax), "...'");
}

absl::Status LineError(const std::string& path, int64_t line,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", what));
}

absl::Status BadLine(const LoadOptions& options, RatingData* data,
                     absl::Status error) {
  if (!options.skip_bad_lines) return error;
  ++data->stats.bad_lines_skipped;
  return absl::OkStatus();
}

}  // namespace internal

namespace {

bool IsValidUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are
    // not UTF-8 even though their bit patterns fit.
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

}  // namespace

std::string ToUtf8(absl::string_view text) {
  if (IsValidUtf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() * 2);
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

}  // namespace recsys
