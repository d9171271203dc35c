// Reading catalogue files (titles and genres): u.item with u.genre,
// movies.dat and movies.csv, beside a ratings file (LoadMetadata) or alone
// (LoadCatalogue).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "models/loaders.h"
#include "models/loaders_internal.h"
#include "models/ratings.h"

namespace recsys {
namespace {

namespace fs = std::filesystem;

}  // namespace

namespace internal {
namespace {

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

}  // namespace

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

}  // namespace internal

namespace {

using internal::LoadMl100kGenres;
using internal::LoadMl100kItems;
using internal::LoadMlCsvItems;
using internal::LoadMlDatItems;

}  // namespace

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
