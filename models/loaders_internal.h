// Internals of the rating-file readers (loaders.h), shared by loaders.cc,
// loaders_ratings.cc, loaders_catalogue.cc and loaders_text.cc: a file's
// bytes, the line and field primitives every reader parses with, and the
// readers one file calls in another. The primitives are inline because the
// ratings parser calls them for each of millions of lines.
#ifndef RECSYS_MODELS_LOADERS_INTERNAL_H_
#define RECSYS_MODELS_LOADERS_INTERNAL_H_

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/loaders.h"
#include "models/ratings.h"

namespace recsys::internal {

// The bytes of a whole file. Regular files are mapped rather than read, so a
// 700 MB ratings file costs no heap and no copy; anything else (a pipe) is
// read into a string.
class FileText {
 public:
  FileText() = default;
  FileText(FileText&& other) noexcept { *this = std::move(other); }
  FileText& operator=(FileText&& other) noexcept {
    std::swap(map_, other.map_);
    std::swap(size_, other.size_);
    std::swap(buffer_, other.buffer_);
    return *this;
  }
  ~FileText() {
    if (map_ != nullptr) munmap(map_, size_);
  }

  static absl::StatusOr<FileText> Read(const std::string& path);

  absl::string_view text() const {
    if (map_ != nullptr) {
      return absl::string_view(static_cast<const char*>(map_), size_);
    }
    return buffer_;
  }

 private:
  absl::Status Fill(int fd, const std::string& path);

  void* map_ = nullptr;
  size_t size_ = 0;
  std::string buffer_;
};

// Walks the lines of a text, numbering them from 1 (physical lines, so
// numbers match what an editor shows) and dropping the '\r' of CRLF ends.
class Lines {
 public:
  explicit Lines(absl::string_view text) : text_(text) {}

  bool Next(absl::string_view* line) {
    if (pos_ >= text_.size()) return false;
    const char* begin = text_.data() + pos_;
    const size_t left = text_.size() - pos_;
    const void* nl = std::memchr(begin, '\n', left);
    size_t len =
        nl ? static_cast<size_t>(static_cast<const char*>(nl) - begin) : left;
    pos_ += len + 1;
    ++number_;
    if (len > 0 && begin[len - 1] == '\r') --len;
    *line = absl::string_view(begin, len);
    return true;
  }
  int64_t number() const { return number_; }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
  int64_t number_ = 0;
};

inline bool IsBlankChar(char c) { return c == ' ' || c == '\t'; }

inline bool IsBlank(absl::string_view line) {
  return std::all_of(line.begin(), line.end(), IsBlankChar);
}

inline absl::string_view TrimBlanks(absl::string_view s) {
  while (!s.empty() && IsBlankChar(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlankChar(s.back())) s.remove_suffix(1);
  return s;
}

// The fields of one line, trimmed of surrounding blanks. `count` is the real
// number of fields even when the line has more than fit.
struct Fields {
  static constexpr int kCapacity = 32;
  std::array<absl::string_view, kCapacity> at;
  int count = 0;

  void Add(absl::string_view field) {
    if (count < kCapacity) at[count] = TrimBlanks(field);
    ++count;
  }
};

// Splits lines at a fixed delimiter; " " stands for any run of blanks, since
// space-aligned files pad columns with varying widths.
class Splitter {
 public:
  explicit Splitter(std::string delimiter)
      : delimiter_(std::move(delimiter)),
        blank_runs_(
            !delimiter_.empty() &&
            std::all_of(delimiter_.begin(), delimiter_.end(), IsBlankChar) &&
            delimiter_ != "\t") {}

  void Split(absl::string_view line, Fields* out) const {
    out->count = 0;
    if (blank_runs_) {
      size_t i = 0;
      while (i < line.size()) {
        while (i < line.size() && IsBlankChar(line[i])) ++i;
        if (i == line.size()) break;
        const size_t start = i;
        while (i < line.size() && !IsBlankChar(line[i])) ++i;
        out->Add(line.substr(start, i - start));
      }
      return;
    }
    if (delimiter_.size() == 1) {
      const char d = delimiter_[0];
      const char* p = line.data();
      const char* end = p + line.size();
      for (;;) {
        const void* hit = std::memchr(p, d, static_cast<size_t>(end - p));
        const char* stop = hit ? static_cast<const char*>(hit) : end;
        out->Add(absl::string_view(p, static_cast<size_t>(stop - p)));
        if (stop == end) return;
        p = stop + 1;
      }
    }
    for (;;) {
      const size_t hit = line.find(delimiter_);
      out->Add(line.substr(0, hit));
      if (hit == absl::string_view::npos) return;
      line.remove_prefix(hit + delimiter_.size());
    }
  }

 private:
  std::string delimiter_;
  bool blank_runs_;
};

enum class NumberError { kNone, kNotANumber, kNotFinite };

inline NumberError ParseRating(absl::string_view s, float* value) {
  const char* begin = s.data();
  const char* end = begin + s.size();
  // from_chars refuses a leading '+', which some exporters write.
  if (begin != end && *begin == '+') ++begin;
  if (begin == end) return NumberError::kNotANumber;
  const auto [stop, ec] = std::from_chars(begin, end, *value);
  if (ec == std::errc::result_out_of_range) return NumberError::kNotFinite;
  if (ec != std::errc() || stop != end) return NumberError::kNotANumber;
  return std::isfinite(*value) ? NumberError::kNone : NumberError::kNotFinite;
}

inline bool ParseInt64(absl::string_view s, int64_t* value) {
  const char* begin = s.data();
  const char* end = begin + s.size();
  if (begin != end && *begin == '+') ++begin;
  if (begin == end) return false;
  const auto [stop, ec] = std::from_chars(begin, end, *value);
  return ec == std::errc() && stop == end;
}

// --- loaders_text.cc (with FileText::Read)

// A field as shown in an error message: quoted, and cut short so a binary
// file does not produce a megabyte of message.
std::string Quote(absl::string_view field);

absl::Status LineError(const std::string& path, int64_t line,
                       absl::string_view what);

// Applies skip_bad_lines to one malformed line: OK (and counted) when
// skipping, the error otherwise.
absl::Status BadLine(const LoadOptions& options, RatingData* data,
                     absl::Status error);

// --- loaders_ratings.cc

// How the lines of a ratings file look.
struct RatingsLayout {
  std::string delimiter;  // empty: sniff from the first non-blank line
  int min_fields = 4;
  int max_fields = 4;
  bool header_allowed = false;
};

// The layout a format's ratings file has; `delimiter` is the generic one's.
RatingsLayout LayoutFor(DataFormat format, const std::string& delimiter);

// Reads the ratings of `text` into data->ratings. Users get indices in order
// of first appearance; items keep the indices the metadata gave them.
absl::Status ParseRatings(const std::string& path, absl::string_view text,
                          RatingsLayout layout, const LoadOptions& options,
                          RatingData* data);

// --- loaders_catalogue.cc

// Reads the catalogue file that sits in `dir` beside a ratings file of
// `format` (u.item with u.genre, movies.dat, movies.csv) when it exists.
absl::Status LoadMetadata(const std::filesystem::path& dir, DataFormat format,
                          const LoadOptions& options, RatingData* data);

}  // namespace recsys::internal

#endif  // RECSYS_MODELS_LOADERS_INTERNAL_H_
