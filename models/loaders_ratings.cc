// Reading the lines of a ratings file, in any of the formats loaders.h
// names, into RatingData: the layout of each format, the generic format's
// delimiter, the checks of every field, and the rating scale.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "models/loaders.h"
#include "models/loaders_internal.h"
#include "models/ratings.h"

namespace recsys::internal {
namespace {

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

// Sniffs the delimiter when the layout names none, and sizes
// data->ratings for the lines of `text`.
absl::Status PrepareParse(const std::string& path, absl::string_view text,
                          RatingsLayout* layout, RatingData* data) {
  if (layout->delimiter.empty()) {
    RECSYS_ASSIGN_OR_RETURN(layout->delimiter, SniffDelimiter(path, text));
  }
  // One pass over the bytes to size the vector exactly is far cheaper than
  // the reallocations of a 32M-element push_back.
  data->ratings.reserve(
      static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  return absl::OkStatus();
}

// The first problem with the fields of data line `n`, as its error (OK when
// there is none). Parses the rating into *value and the timestamp, when
// there is one, into *timestamp. Called for every line: inline.
inline absl::Status CheckFields(const std::string& path, int64_t n,
                                const RatingsLayout& layout,
                                const LoadOptions& options, const Fields& f,
                                float* value, int64_t* timestamp) {
  absl::Status bad;
  if (f.count < layout.min_fields || f.count > layout.max_fields) {
    bad = LineError(path, n, FieldCountError(layout, f.count));
  } else if (f.at[0].empty()) {
    bad = LineError(path, n, "empty user id");
  } else if (f.at[1].empty()) {
    bad = LineError(path, n, "empty item id");
  } else if (NumberError e = ParseRating(f.at[2], value);
             e != NumberError::kNone) {
    bad = LineError(path, n,
                    absl::StrCat("rating ", Quote(f.at[2]),
                                 e == NumberError::kNotANumber
                                     ? " is not a number"
                                     : " is not a finite number"));
  } else if (options.feedback == Feedback::kImplicit && *value < 0) {
    bad = LineError(path, n,
                    absl::StrCat("count ", f.at[2],
                                 " is negative (implicit feedback: counts and "
                                 "weights are >= 0)"));
  } else if (options.scale && !options.scale->Contains(*value)) {
    bad = LineError(
        path, n,
        absl::StrCat("rating ", f.at[2], " outside the scale [",
                     options.scale->min, ", ", options.scale->max, "]"));
  } else if (f.count == 4 && !ParseInt64(f.at[3], timestamp)) {
    bad = LineError(
        path, n,
        absl::StrCat("timestamp ", Quote(f.at[3]), " is not an integer"));
  }
  return bad;
}

// Sets data->scale once every line is read: the options' scale, or the
// range [lo, hi] of the ratings (`any`: whether there were some).
absl::Status FinishScale(const std::string& path, bool any, float lo, float hi,
                         const LoadOptions& options, RatingData* data) {
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

}  // namespace

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

absl::Status ParseRatings(const std::string& path, absl::string_view text,
                          RatingsLayout layout, const LoadOptions& options,
                          RatingData* data) {
  RECSYS_RETURN_IF_ERROR(PrepareParse(path, text, &layout, data));
  const Splitter splitter(layout.delimiter);

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
    int64_t timestamp = 0;
    absl::Status bad =
        CheckFields(path, n, layout, options, f, &value, &timestamp);
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
  return FinishScale(path, any, lo, hi, options, data);
}

}  // namespace recsys::internal
