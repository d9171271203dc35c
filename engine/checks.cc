#include "engine/checks.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace recsys {
namespace internal {

absl::Status CheckId(absl::string_view what, absl::string_view id) {
  if (id.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %d bytes, more than the limit of %d", what,
                        id.size(), kMaxIdBytes));
  }
  return absl::OkStatus();
}

bool SameEntry(const ItemInfo& a, const ItemInfo& b) {
  return a.title == b.title && a.genres == b.genres && a.retired == b.retired;
}

// The sizes a catalogue entry in the log may have (either may be null).
absl::Status CheckEntrySizes(const std::string* title,
                             const std::vector<std::string>* genres) {
  if (title != nullptr && title->size() > RatingLog::kMaxTitleBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("title is %d bytes, more than the limit of %d",
                        title->size(), RatingLog::kMaxTitleBytes));
  }
  if (genres == nullptr) return absl::OkStatus();
  if (genres->size() > RatingLog::kMaxGenres) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d genres, more than the limit of %d", genres->size(),
                        RatingLog::kMaxGenres));
  }
  for (const std::string& genre : *genres) {
    if (genre.size() > RatingLog::kMaxGenreBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("a genre is %d bytes, more than the limit of %d",
                          genre.size(), RatingLog::kMaxGenreBytes));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckItemUpdate(const ItemUpdate& u) {
  RECSYS_RETURN_IF_ERROR(CheckId("item id", u.id));
  RECSYS_RETURN_IF_ERROR(CheckEntrySizes(u.title ? &*u.title : nullptr,
                                         u.genres ? &*u.genres : nullptr));
  if (!u.genres) return absl::OkStatus();
  const std::vector<std::string>& genres = *u.genres;
  for (size_t k = 0; k < genres.size(); ++k) {
    const std::string& genre = genres[k];
    if (genre.empty()) return absl::InvalidArgumentError("a genre is empty");
    if (genre.find('|') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("genre '", absl::CHexEscape(genre),
                       "' contains '|', the separator of genre lists"));
    }
    if (std::find(genres.begin(),
                  genres.begin() + static_cast<std::ptrdiff_t>(k),
                  genre) != genres.begin() + static_cast<std::ptrdiff_t>(k)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "genre '", absl::CHexEscape(genre), "' is listed twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckK(int k) {
  if (k <= 0 || k > kMaxK) {
    return absl::InvalidArgumentError(
        absl::StrFormat("k must be in 1..%d, got %d", kMaxK, k));
  }
  return absl::OkStatus();
}

// A genre filter must name a genre of the catalogue: a misspelt one would
// otherwise return nothing, silently. The error lists the genres there are.
absl::Status CheckGenre(const NewItems& ni, const std::string& genre) {
  const auto& by_genre = ni.catalogue->index().by_genre;
  if (genre.empty() || by_genre.contains(genre)) return absl::OkStatus();
  for (const ItemInfo& info : *ni.info) {
    if (std::find(info.genres.begin(), info.genres.end(), genre) !=
        info.genres.end()) {
      return absl::OkStatus();
    }
  }
  std::vector<absl::string_view> known;
  for (const auto& [name, items] : by_genre) known.push_back(name);
  std::sort(known.begin(), known.end());
  constexpr size_t kEcho = 64, kListed = 40;
  std::string message =
      absl::StrCat("unknown genre '", absl::CHexEscape(genre.substr(0, kEcho)),
                   genre.size() > kEcho ? "...'" : "'");
  if (known.empty()) {
    absl::StrAppend(&message, ": no item of this catalogue has a genre");
  } else {
    const auto end = known.begin() + static_cast<std::ptrdiff_t>(
                                         std::min(known.size(), kListed));
    absl::StrAppend(&message,
                    " (genres are case-sensitive; this catalogue has ",
                    known.size(), ": ", absl::StrJoin(known.begin(), end, ", "),
                    known.size() > kListed ? ", ..." : "", ")");
  }
  return absl::InvalidArgumentError(message);
}

}  // namespace internal
}  // namespace recsys
