#include "trainer/export.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "models/model_io.h"

namespace recsys {
namespace {

// Whether ratings.csv can carry `id` as it is: the loader splits at every
// comma and trims blanks, with no quoting.
absl::Status CheckCsvId(absl::string_view what, absl::string_view id) {
  const bool breaks = id.find_first_of(",\r\n") != absl::string_view::npos;
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  if (breaks || id.empty() || blank(id.front()) || blank(id.back())) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " id '", absl::CHexEscape(id),
                     "' holds a comma, a line break or blanks at an end, which "
                     "ratings.csv cannot carry"));
  }
  return absl::OkStatus();
}

std::string QuoteCsv(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out.push_back('"');
    out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

absl::Status RunExport(const ExportCommand& cmd, std::ostream& log) {
  if (cmd.model_file.empty()) {
    return absl::InvalidArgumentError("export needs --model-file=FILE");
  }
  if (cmd.out_dir.empty()) {
    return absl::InvalidArgumentError("export needs --out=DIR");
  }
  RECSYS_ASSIGN_OR_RETURN(const Model m, LoadModel(cmd.model_file));
  int32_t first = 0, last = m.num_users();
  if (!cmd.user.empty()) {
    first = m.users.Find(cmd.user);
    if (first < 0) {
      return absl::NotFoundError(
          absl::StrCat("user '", cmd.user, "' is not in ", cmd.model_file));
    }
    last = first + 1;
  }
  const SparseRows& r = m.user_ratings;
  std::vector<bool> listed(static_cast<size_t>(m.num_items()),
                           cmd.user.empty());
  std::string ratings = "userId,movieId,rating,timestamp\n";
  int64_t count = 0;
  for (int32_t u = first; u < last && u < r.rows(); ++u) {
    const std::string& user = m.users.External(u);
    if (r.offsets[u] < r.offsets[u + 1]) {
      RECSYS_RETURN_IF_ERROR(CheckCsvId("user", user));
    }
    for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
      const int32_t i = r.cols[k];
      const std::string& item = m.items.External(i);
      RECSYS_RETURN_IF_ERROR(CheckCsvId("item", item));
      listed[static_cast<size_t>(i)] = true;
      // %.9g: every float comes back as the same float.
      absl::StrAppendFormat(&ratings, "%s,%s,%.9g,%d\n", user, item,
                            r.values[k], r.times.empty() ? 0 : r.times[k]);
      ++count;
    }
  }
  std::string movies = "movieId,title,genres\n";
  int64_t items = 0;
  for (int32_t i = 0; i < m.num_items(); ++i) {
    if (!listed[static_cast<size_t>(i)]) continue;
    const std::string& id = m.items.External(i);
    RECSYS_RETURN_IF_ERROR(CheckCsvId("item", id));
    const ItemInfo& info = m.item_info[static_cast<size_t>(i)];
    absl::StrAppend(
        &movies, id, ",", QuoteCsv(info.title), ",",
        QuoteCsv(info.genres.empty() ? "(no genres listed)"
                                     : absl::StrJoin(info.genres, "|")),
        "\n");
    ++items;
  }
  std::error_code ec;
  std::filesystem::create_directories(cmd.out_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create directory ", cmd.out_dir, ": ", ec.message()));
  }
  RECSYS_RETURN_IF_ERROR(
      WriteFileAtomically(cmd.out_dir + "/ratings.csv", {ratings}));
  RECSYS_RETURN_IF_ERROR(
      WriteFileAtomically(cmd.out_dir + "/movies.csv", {movies}));
  log << absl::StrFormat(
      "exported %d ratings by %d %s and %d items (scale %g..%g) to %s\n", count,
      last - first, last - first == 1 ? "user" : "users", items, m.scale.min,
      m.scale.max, cmd.out_dir);
  return absl::OkStatus();
}

}  // namespace recsys
