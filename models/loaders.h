// Readers for rating files: the MovieLens families and generic delimited
// files, into a RatingData (see ratings.h).
//
//   LoadOptions opt;                       // format detected from the path
//   RECSYS_ASSIGN_OR_RETURN(RatingData d, LoadRatings("data/ml-100k", opt));
//
// A path may be a dataset directory (u.data, ratings.dat or ratings.csv with
// their movie files beside them) or a single ratings file; item titles and
// genres are read from the companion file next to it when present (u.item,
// movies.dat, movies.csv). Errors name the file, the 1-based line number and
// what is wrong: "u.data:17: rating 'x' is not a number".
#ifndef RECSYS_MODELS_LOADERS_H_
#define RECSYS_MODELS_LOADERS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "models/ratings.h"

namespace recsys {

enum class DataFormat {
  kAuto,       // decide from the path and the first line
  kMl100k,     // user \t item \t rating \t timestamp; u.item metadata
  kMlDat,      // ML-1M/10M: user::item::rating::timestamp; movies.dat
  kMlCsv,      // ML latest/25M/32M: ratings.csv with header; movies.csv
  kDelimited,  // user<d>item<d>rating[<d>timestamp], delimiter given/sniffed
};

absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name);

struct LoadOptions {
  DataFormat format = DataFormat::kAuto;
  // For kDelimited: ",", "\t", " ", "::" or any other string; empty = sniff
  // from the first line.
  std::string delimiter;
  // Skip (and count) malformed lines instead of failing on the first one.
  bool skip_bad_lines = false;
  // When set, ratings outside it are bad lines; when not, the scale is the
  // [min, max] of the ratings read.
  std::optional<RatingScale> scale;
  // Read titles/genres from the companion file when it exists.
  bool load_metadata = true;
  // Implicit: values are counts or weights >= 0 and repeated pairs add up
  // (RatingData::feedback says which).
  Feedback feedback = Feedback::kExplicit;
};

// Loads ratings (and metadata). Items named in the metadata file are part of
// the catalogue even when nobody rated them: they are inserted first, in file
// order, so item indices follow the catalogue file. Duplicate (user, item)
// pairs keep the later rating (by timestamp, then file order) and are counted
// in stats.duplicates_replaced; with implicit feedback they add up, counted
// in stats.duplicates_summed.
absl::StatusOr<RatingData> LoadRatings(const std::string& path,
                                       const LoadOptions& options);

// For explicit data whose values look like counts (whole numbers >= 0 over
// a range far wider than a rating scale: plays, clicks), a warning that
// names --feedback=implicit; empty otherwise. Never a silent switch: the
// caller prints it and loads as told.
std::string ImplicitFeedbackHint(const RatingData& data);

// Reads a catalogue file alone, its format named by the file name: u.item
// (with u.genre beside it when present), *.dat (movies.dat: id::title::A|B)
// or *.csv (movies.csv: movieId,title,genres). The result holds the items,
// in file order, and their entries; no ratings. Errors name the file and
// line.
absl::StatusOr<RatingData> LoadCatalogue(const std::string& path);

// Converts text that is either valid UTF-8 (returned unchanged) or latin-1
// (each byte mapped to its code point) to UTF-8.
std::string ToUtf8(absl::string_view text);

}  // namespace recsys

#endif  // RECSYS_MODELS_LOADERS_H_
