// Where the ratings are and how they are read: a path (a dataset directory
// or one file) resolved to a ratings file and its format, then the readers
// of loaders_ratings.cc and loaders_catalogue.cc, then duplicate resolution.
#include "models/loaders.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "models/loaders_internal.h"
#include "models/ratings.h"

namespace recsys {
namespace {

namespace fs = std::filesystem;

using internal::FileText;
using internal::LayoutFor;
using internal::LoadMetadata;
using internal::ParseRatings;

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
  data.feedback = options.feedback;
  if (!IsStrictlySorted(data.ratings)) {
    if (data.feedback == Feedback::kImplicit) {
      data.stats.duplicates_summed = SumDuplicates(data.ratings);
    } else {
      data.stats.duplicates_replaced = ResolveDuplicates(data.ratings);
    }
  }
  return data;
}

std::string ImplicitFeedbackHint(const RatingData& data) {
  if (data.feedback == Feedback::kImplicit || data.ratings.empty()) return "";
  float lo = data.ratings[0].value, hi = lo;
  for (const Rating& r : data.ratings) {
    if (r.value < 0 || r.value != std::floor(r.value)) return "";
    lo = std::min(lo, r.value);
    hi = std::max(hi, r.value);
  }
  // Star scales end at 5 or 10, or at 100 for percentages.
  if (hi <= 100) return "";
  return absl::StrFormat(
      "warning: the values look like counts (whole numbers from %g to %g), "
      "not ratings on a scale; if they are plays, clicks or purchases, pass "
      "--feedback=implicit (loaded as explicit ratings, as told)",
      lo, hi);
}

}  // namespace recsys
