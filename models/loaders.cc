#include "models/loaders.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace recsys {
namespace {

namespace fs = std::filesystem;

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

  static absl::StatusOr<FileText> Read(const std::string& path) {
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

  absl::string_view text() const {
    if (map_ != nullptr) {
      return absl::string_view(static_cast<const char*>(map_), size_);
    }
    return buffer_;
  }

 private:
  absl::Status Fill(int fd, const std::string& path) {
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

bool IsBlankChar(char c) { return c == ' ' || c == '\t'; }

bool IsBlank(absl::string_view line) {
  return std::all_of(line.begin(), line.end(), IsBlankChar);
}

absl::string_view TrimBlanks(absl::string_view s) {
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

NumberError ParseRating(absl::string_view s, float* value) {
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

bool ParseInt64(absl::string_view s, int64_t* value) {
  const char* begin = s.data();
  const char* end = begin + s.size();
  if (begin != end && *begin == '+') ++begin;
  if (begin == end) return false;
  const auto [stop, ec] = std::from_chars(begin, end, *value);
  return ec == std::errc() && stop == end;
}

// A field as shown in an error message: quoted, and cut short so a binary
// file does not produce a megabyte of message.
std::string Quote(absl::string_view field) {
  constexpr size_t kMax = 40;
  if (field.size() <= kMax) return absl::StrCat("'", field, "'");
  return absl::StrCat("'", field.substr(0, kMax), "...'");
}

absl::Status LineError(const std::string& path, int64_t line,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", what));
}

// Applies skip_bad_lines to one malformed line: OK (and counted) when
// skipping, the error otherwise.
absl::Status BadLine(const LoadOptions& options, RatingData* data,
                     absl::Status error) {
  if (!options.skip_bad_lines) return error;
  ++data->stats.bad_lines_skipped;
  return absl::OkStatus();
}

// How the lines of a ratings file look.
struct RatingsLayout {
  std::string delimiter;  // empty: sniff from the first non-blank line
  int min_fields = 4;
  int max_fields = 4;
  bool header_allowed = false;
};

RatingsLayout LayoutFor(DataFormat format, const std::string& delimiter) {
  switch (format) {
    case DataFormat::kMl100k:
      return {"\t", 4, 4, false};
    case DataFormat::kMlDat:
      return {"::", 4, 4, false};
    case DataFormat::kMlCsv:
      return {",", 4, 4, true};
    case DataFormat::kAuto:
    case DataFormat::kDelimited:
      break;
  }
  return {delimiter, 3, 4, true};
}

// Picks the delimiter of a generic file from its first non-blank line. "::"
// goes first because a "::" line would otherwise look like it had empty
// fields.
absl::StatusOr<std::string> SniffDelimiter(const std::string& path,
                                           absl::string_view text) {
  Lines lines(text);
  absl::string_view line;
  while (lines.Next(&line)) {
    if (IsBlank(line)) continue;
    if (absl::StrContains(line, "::")) return std::string("::");
    if (absl::StrContains(line, '\t')) return std::string("\t");
    if (absl::StrContains(line, ',')) return std::string(",");
    if (absl::StrContains(TrimBlanks(line), ' ')) return std::string(" ");
    return LineError(path, lines.number(),
                     "cannot tell the delimiter (tried '::', tab, comma and "
                     "spaces); give it explicitly");
  }
  return std::string(",");  // empty file: any delimiter finds no ratings
}

std::string FieldCountError(const RatingsLayout& layout, int found) {
  if (layout.min_fields == layout.max_fields) {
    return absl::StrCat("expected ", layout.min_fields, " fields, found ",
                        found);
  }
  return absl::StrCat("expected ", layout.min_fields, " or ", layout.max_fields,
                      " fields, found ", found);
}

// Resolves item ids to indices. MovieLens ids are small decimal numbers; a
// direct table for those spares the string hash and compare that otherwise
// dominate parsing on 25M+ lines. Other ids go through the IdMap.
class ItemLookup {
 public:
  explicit ItemLookup(IdMap* items) : items_(items) {}

  int32_t Index(absl::string_view id) {
    uint32_t value;
    if (!SmallDecimal(id, &value)) return Resolve(id);
    if (value < table_.size() && table_[value] != 0) return table_[value] - 1;
    const int32_t index = Resolve(id);
    if (value >= table_.size()) {
      table_.resize(
          std::min<size_t>(std::max<size_t>(value + 1, 2 * table_.size()),
                           kTableLimit),
          0);
    }
    table_[value] = index + 1;
    return index;
  }

 private:
  int32_t Resolve(absl::string_view id) {
    const int32_t index = items_->Find(id);
    return index >= 0 ? index : items_->Insert(id);
  }

  // Only canonical spellings (no leading zero) qualify, so that "7" and "07",
  // which are different ids, never share a slot. Six digits bound the table
  // at 4 MB.
  static bool SmallDecimal(absl::string_view s, uint32_t* value) {
    if (s.empty() || s.size() > 6 || (s[0] == '0' && s.size() > 1)) {
      return false;
    }
    uint32_t v = 0;
    for (const char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    *value = v;
    return true;
  }

  static constexpr size_t kTableLimit = 1000000;  // six decimal digits
  IdMap* items_;
  std::vector<int32_t> table_;  // index + 1, 0 = not seen yet
};

// Reads the ratings of `text` into data->ratings. Users get indices in order
// of first appearance; items keep the indices the metadata gave them.
absl::Status ParseRatings(const std::string& path, absl::string_view text,
                          RatingsLayout layout, const LoadOptions& options,
                          RatingData* data) {
  if (layout.delimiter.empty()) {
    RECSYS_ASSIGN_OR_RETURN(layout.delimiter, SniffDelimiter(path, text));
  }
  const Splitter splitter(layout.delimiter);
  // One pass over the bytes to size the vector exactly is far cheaper than
  // the reallocations of a 32M-element push_back.
  data->ratings.reserve(
      static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);

  float lo = 0, hi = 0;
  bool any = false;
  // Rating files are grouped by user, so remembering the last user spares
  // most hash lookups.
  absl::string_view last_user;
  int32_t last_user_index = -1;
  ItemLookup items(&data->items);

  Lines lines(text);
  absl::string_view line;
  Fields f;
  while (lines.Next(&line)) {
    if (IsBlank(line)) continue;
    const int64_t n = lines.number();
    splitter.Split(line, &f);
    float value = 0;
    if (f.count >= 3 && n == 1 && layout.header_allowed &&
        ParseRating(f.at[2], &value) == NumberError::kNotANumber) {
      continue;  // a header names its columns; only line 1 may be one
    }
    ++data->stats.lines;  // counts bad lines too: they are data lines
    absl::Status bad;
    int64_t timestamp = 0;
    if (f.count < layout.min_fields || f.count > layout.max_fields) {
      bad = LineError(path, n, FieldCountError(layout, f.count));
    } else if (f.at[0].empty()) {
      bad = LineError(path, n, "empty user id");
    } else if (f.at[1].empty()) {
      bad = LineError(path, n, "empty item id");
    } else if (NumberError e = ParseRating(f.at[2], &value);
               e != NumberError::kNone) {
      bad = LineError(path, n,
                      absl::StrCat("rating ", Quote(f.at[2]),
                                   e == NumberError::kNotANumber
                                       ? " is not a number"
                                       : " is not a finite number"));
    } else if (options.scale && !options.scale->Contains(value)) {
      bad = LineError(
          path, n,
          absl::StrCat("rating ", f.at[2], " outside the scale [",
                       options.scale->min, ", ", options.scale->max, "]"));
    } else if (f.count == 4 && !ParseInt64(f.at[3], &timestamp)) {
      bad = LineError(
          path, n,
          absl::StrCat("timestamp ", Quote(f.at[3]), " is not an integer"));
    }
    if (!bad.ok()) {
      RECSYS_RETURN_IF_ERROR(BadLine(options, data, std::move(bad)));
      continue;
    }

    if (last_user_index < 0 || f.at[0] != last_user) {
      last_user = f.at[0];
      last_user_index = data->users.Insert(last_user);
    }
    data->ratings.push_back(
        {last_user_index, items.Index(f.at[1]), value, timestamp});

    lo = any ? std::min(lo, value) : value;
    hi = any ? std::max(hi, value) : value;
    any = true;
  }
  if (!any) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no ratings"));
  }

  if (options.scale) {
    data->scale = *options.scale;
  } else if (lo < hi) {
    data->scale = {lo, hi};
  } else {
    // Every rating is the same value, typically implicit feedback where each
    // line is a 1. Taking that value as the top of a one-point scale keeps
    // the scale valid and clips predictions at it.
    data->scale = {lo - 1.0f, hi};
  }
  return absl::OkStatus();
}

// Gives item `id` its catalogue entry, adding it to the item map when new.
void AddItemInfo(absl::string_view id, std::string title,
                 std::vector<std::string> genres, RatingData* data) {
  const int32_t index = data->items.Insert(id);
  data->SyncItemInfo();
  data->item_info[index].title = std::move(title);
  data->item_info[index].genres = std::move(genres);
}

// Splits "A|B|C" genre lists; "(no genres listed)" is GroupLens' spelling of
// an empty list.
std::vector<std::string> SplitGenres(absl::string_view text) {
  std::vector<std::string> genres;
  for (absl::string_view g : absl::StrSplit(text, '|', absl::SkipEmpty())) {
    g = TrimBlanks(g);
    if (g.empty() || g == "(no genres listed)") continue;
    genres.push_back(ToUtf8(g));
  }
  return genres;
}

const std::vector<std::string>& BuiltinMl100kGenres() {
  static const auto* genres = new std::vector<std::string>{
      "unknown",   "Action",   "Adventure",   "Animation", "Children's",
      "Comedy",    "Crime",    "Documentary", "Drama",     "Fantasy",
      "Film-Noir", "Horror",   "Musical",     "Mystery",   "Romance",
      "Sci-Fi",    "Thriller", "War",         "Western"};
  return *genres;
}

// u.genre: "name|index" lines. Falls back to the 19 published names when the
// file is absent, as in copies that kept only u.data and u.item.
absl::StatusOr<std::vector<std::string>> LoadMl100kGenres(
    const std::string& path, const LoadOptions& options, RatingData* data) {
  if (!fs::exists(path)) return BuiltinMl100kGenres();
  RECSYS_ASSIGN_OR_RETURN(FileText file, FileText::Read(path));
  std::vector<std::string> names;
  std::vector<bool> seen;
  Lines lines(file.text());
  absl::string_view line;
  const Splitter splitter("|");
  Fields f;
  while (lines.Next(&line)) {
    if (IsBlank(line)) continue;
    splitter.Split(line, &f);
    int64_t index = -1;
    absl::Status bad;
    if (f.count != 2) {
      bad = LineError(path, lines.number(),
                      absl::StrCat("expected 2 fields, found ", f.count));
    } else if (!ParseInt64(f.at[1], &index) || index < 0 || index >= 1000) {
      bad = LineError(path, lines.number(),
                      absl::StrCat("genre index ", Quote(f.at[1]),
                                   " is not an integer in [0, 1000)"));
    }
    if (!bad.ok()) {
      RECSYS_RETURN_IF_ERROR(BadLine(options, data, std::move(bad)));
      continue;
    }
    if (static_cast<size_t>(index) >= names.size()) {
      names.resize(index + 1);
      seen.resize(index + 1);
    }
    names[index] = ToUtf8(f.at[0]);
    seen[index] = true;
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    if (!seen[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": no genre has index ", i));
    }
  }
  if (names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no genres"));
  }
  return names;
}

// u.item: id|title|release date|video release date|IMDb URL|one 0/1 flag
// per genre.
absl::Status LoadMl100kItems(const std::string& path,
                             const std::vector<std::string>& genre_names,
                             const LoadOptions& options, RatingData* data) {
  RECSYS_ASSIGN_OR_RETURN(FileText file, FileText::Read(path));
  const int expected = 5 + static_cast<int>(genre_names.size());
  if (expected > Fields::kCapacity) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", genre_names.size(), " genres; at most ",
                     Fields::kCapacity - 5, " supported"));
  }
  const Splitter splitter("|");
  Fields f;
  Lines lines(file.text());
  absl::string_view line;
  while (lines.Next(&line)) {
    if (IsBlank(line)) continue;
    splitter.Split(line, &f);
    absl::Status bad;
    if (f.count != expected) {
      bad = LineError(
          path, lines.number(),
          absl::StrCat("expected ", expected, " fields, found ", f.count));
    } else if (f.at[0].empty()) {
      bad = LineError(path, lines.number(), "empty item id");
    }
    std::vector<std::string> genres;
    for (int g = 5; bad.ok() && g < expected; ++g) {
      if (f.at[g] == "1") {
        genres.push_back(genre_names[g - 5]);
      } else if (f.at[g] != "0") {
        bad = LineError(
            path, lines.number(),
            absl::StrCat("genre flag ", Quote(f.at[g]), " is not 0 or 1"));
      }
    }
    if (!bad.ok()) {
      RECSYS_RETURN_IF_ERROR(BadLine(options, data, std::move(bad)));
      continue;
    }
    AddItemInfo(f.at[0], ToUtf8(f.at[1]), std::move(genres), data);
  }
  return absl::OkStatus();
}

// movies.dat: id::title::Genre1|Genre2. The title is everything between the
// first and the last "::", so a title holding "::" survives.
absl::Status LoadMlDatItems(const std::string& path, const LoadOptions& options,
                            RatingData* data) {
  RECSYS_ASSIGN_OR_RETURN(FileText file, FileText::Read(path));
  Lines lines(file.text());
  absl::string_view line;
  while (lines.Next(&line)) {
    if (IsBlank(line)) continue;
    const size_t first = line.find("::");
    const size_t last = line.rfind("::");
    absl::Status bad;
    if (first == absl::string_view::npos || first == last) {
      bad = LineError(path, lines.number(),
                      absl::StrCat("expected 3 fields, found ",
                                   first == absl::string_view::npos ? 1 : 2));
    } else if (TrimBlanks(line.substr(0, first)).empty()) {
      bad = LineError(path, lines.number(), "empty item id");
    }
    if (!bad.ok()) {
      RECSYS_RETURN_IF_ERROR(BadLine(options, data, std::move(bad)));
      continue;
    }
    AddItemInfo(TrimBlanks(line.substr(0, first)),
                ToUtf8(TrimBlanks(line.substr(first + 2, last - first - 2))),
                SplitGenres(line.substr(last + 2)), data);
  }
  return absl::OkStatus();
}

// Splits one CSV record: fields may be double-quoted, holding commas and
// doubled quotes. Returns an empty string or what is wrong.
std::string SplitCsv(absl::string_view line, std::vector<std::string>* out) {
  out->clear();
  size_t i = 0;
  for (;;) {
    std::string field;
    if (i < line.size() && line[i] == '"') {
      ++i;
      for (;;) {
        if (i >= line.size()) return "unterminated quoted field";
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field.push_back(line[i++]);
      }
      if (i < line.size() && line[i] != ',') {
        return "unexpected text after a closing quote";
      }
    } else {
      const size_t comma = std::min(line.find(',', i), line.size());
      field.assign(line.data() + i, comma - i);
      i = comma;
    }
    out->push_back(std::move(field));
    if (i >= line.size()) return "";
    ++i;  // the comma
  }
}

// movies.csv: movieId,title,genres with a header line.
absl::Status LoadMlCsvItems(const std::string& path, const LoadOptions& options,
                            RatingData* data) {
  RECSYS_ASSIGN_OR_RETURN(FileText file, FileText::Read(path));
  Lines lines(file.text());
  absl::string_view line;
  std::vector<std::string> fields;
  while (lines.Next(&line)) {
    if (IsBlank(line)) continue;
    std::string error = SplitCsv(line, &fields);
    if (error.empty() && fields.size() != 3) {
      error = absl::StrCat("expected 3 fields, found ", fields.size());
    }
    if (error.empty() && lines.number() == 1 &&
        absl::EqualsIgnoreCase(TrimBlanks(fields[0]), "movieId")) {
      continue;
    }
    if (error.empty() && TrimBlanks(fields[0]).empty()) error = "empty item id";
    if (!error.empty()) {
      RECSYS_RETURN_IF_ERROR(
          BadLine(options, data, LineError(path, lines.number(), error)));
      continue;
    }
    AddItemInfo(TrimBlanks(fields[0]), ToUtf8(fields[1]),
                SplitGenres(fields[2]), data);
  }
  return absl::OkStatus();
}

absl::Status LoadMetadata(const fs::path& dir, DataFormat format,
                          const LoadOptions& options, RatingData* data) {
  switch (format) {
    case DataFormat::kMl100k: {
      const std::string items = (dir / "u.item").string();
      if (!fs::exists(items)) return absl::OkStatus();
      RECSYS_ASSIGN_OR_RETURN(
          std::vector<std::string> genres,
          LoadMl100kGenres((dir / "u.genre").string(), options, data));
      return LoadMl100kItems(items, genres, options, data);
    }
    case DataFormat::kMlDat: {
      const std::string items = (dir / "movies.dat").string();
      if (!fs::exists(items)) return absl::OkStatus();
      return LoadMlDatItems(items, options, data);
    }
    case DataFormat::kMlCsv: {
      const std::string items = (dir / "movies.csv").string();
      if (!fs::exists(items)) return absl::OkStatus();
      return LoadMlCsvItems(items, options, data);
    }
    case DataFormat::kAuto:
    case DataFormat::kDelimited:
      break;
  }
  return absl::OkStatus();
}

// MovieLens-100K names its rating files u.data, u1.base..u5.test, ua.*, ub.*.
bool IsMl100kName(absl::string_view name) {
  if (name == "u.data") return true;
  if (!absl::ConsumePrefix(&name, "u")) return false;
  if (!absl::ConsumeSuffix(&name, ".base") &&
      !absl::ConsumeSuffix(&name, ".test")) {
    return false;
  }
  if (name == "a" || name == "b") return true;
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

DataFormat FormatFromFileName(absl::string_view name) {
  if (IsMl100kName(name)) return DataFormat::kMl100k;
  if (absl::EndsWith(name, ".dat")) return DataFormat::kMlDat;
  if (name == "ratings.csv") return DataFormat::kMlCsv;
  return DataFormat::kDelimited;
}

struct Source {
  std::string ratings_path;
  DataFormat format;
};

absl::StatusOr<Source> ResolveSource(const std::string& path,
                                     DataFormat format) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    return absl::NotFoundError(
        absl::StrCat(path, ": no such file or directory"));
  }
  if (!fs::is_directory(st)) {
    if (format == DataFormat::kAuto) {
      format = FormatFromFileName(fs::path(path).filename().string());
    }
    return Source{path, format};
  }
  const std::pair<const char*, DataFormat> kCandidates[] = {
      {"u.data", DataFormat::kMl100k},
      {"ratings.dat", DataFormat::kMlDat},
      {"ratings.csv", DataFormat::kMlCsv}};
  if (format == DataFormat::kDelimited) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": is a directory; the delimited format needs a file"));
  }
  for (const auto& [name, candidate] : kCandidates) {
    if (format != DataFormat::kAuto && format != candidate) continue;
    const fs::path file = fs::path(path) / name;
    if (fs::exists(file)) return Source{file.string(), candidate};
  }
  return absl::NotFoundError(absl::StrCat(
      path,
      ": no ratings file (u.data, ratings.dat or ratings.csv) in this "
      "directory"));
}

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

// True when `ratings` is already in the order ResolveDuplicates produces and
// holds no pair twice. MovieLens files list each user's ratings by movie id,
// and the catalogue numbers items in that order, so this linear check usually
// spares a sort that costs seconds on ML-25M.
bool IsStrictlySorted(const std::vector<Rating>& ratings) {
  for (size_t k = 1; k < ratings.size(); ++k) {
    const Rating& a = ratings[k - 1];
    const Rating& b = ratings[k];
    if (a.user > b.user || (a.user == b.user && a.item >= b.item)) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name) {
  if (name == "auto") return DataFormat::kAuto;
  if (name == "ml-100k") return DataFormat::kMl100k;
  if (name == "ml-dat") return DataFormat::kMlDat;
  if (name == "ml-csv") return DataFormat::kMlCsv;
  if (name == "delimited") return DataFormat::kDelimited;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown data format '", name,
                   "'; valid formats: auto, ml-100k, ml-dat, ml-csv, "
                   "delimited"));
}

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

absl::StatusOr<RatingData> LoadRatings(const std::string& path,
                                       const LoadOptions& options) {
  if (options.scale && !options.scale->valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid rating scale [", options.scale->min, ", ",
                     options.scale->max, "]: min must be below max"));
  }
  RECSYS_ASSIGN_OR_RETURN(Source source, ResolveSource(path, options.format));
  RatingData data;
  if (options.load_metadata) {
    RECSYS_RETURN_IF_ERROR(
        LoadMetadata(fs::path(source.ratings_path).parent_path(), source.format,
                     options, &data));
  }
  {
    // Scoped so the file is unmapped before duplicate resolution makes its
    // own copy of the ratings.
    RECSYS_ASSIGN_OR_RETURN(FileText file, FileText::Read(source.ratings_path));
    RECSYS_RETURN_IF_ERROR(ParseRatings(
        source.ratings_path, file.text(),
        LayoutFor(source.format, options.delimiter), options, &data));
  }
  data.SyncItemInfo();
  if (!IsStrictlySorted(data.ratings)) {
    data.stats.duplicates_replaced = ResolveDuplicates(data.ratings);
  }
  return data;
}

absl::StatusOr<RatingData> LoadCatalogue(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  RatingData data;
  LoadOptions options;
  if (!fs::exists(path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (name == "u.item") {
    RECSYS_ASSIGN_OR_RETURN(
        std::vector<std::string> genres,
        LoadMl100kGenres((fs::path(path).parent_path() / "u.genre").string(),
                         options, &data));
    RECSYS_RETURN_IF_ERROR(LoadMl100kItems(path, genres, options, &data));
  } else if (absl::EndsWith(name, ".dat")) {
    RECSYS_RETURN_IF_ERROR(LoadMlDatItems(path, options, &data));
  } else if (absl::EndsWith(name, ".csv")) {
    RECSYS_RETURN_IF_ERROR(LoadMlCsvItems(path, options, &data));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": not a catalogue file name (u.item, *.dat as movies.dat, *.csv as "
        "movies.csv)"));
  }
  data.SyncItemInfo();
  return data;
}

}  // namespace recsys
