// Rating data in memory: dense indices for users and items, the maps back to
// the external ids callers use, and the item catalogue's titles and genres.
//
// Every loader (see loaders.h) produces a RatingData; every trainer consumes
// one. Users and items are numbered 0..n-1 in order of first appearance, so an
// index is a row of the factor matrices.
//
//   RatingData data = ...;
//   int32_t u = data.users.Find("196");      // -1 when unknown
//   for (const Rating& r : data.ratings) ...
#ifndef RECSYS_MODELS_RATINGS_H_
#define RECSYS_MODELS_RATINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recsys {

// Bidirectional map between external ids (any non-empty string) and dense
// indices 0..size()-1.
class IdMap {
 public:
  // Returns the index of `id`, giving it the next free index when it is new.
  int32_t Insert(absl::string_view id);
  // Returns the index of `id`, or -1 when it is unknown.
  int32_t Find(absl::string_view id) const;
  // The external id of `index`; requires 0 <= index < size().
  const std::string& External(int32_t index) const { return ids_[index]; }
  int32_t size() const { return static_cast<int32_t>(ids_.size()); }
  const std::vector<std::string>& ids() const { return ids_; }

 private:
  std::vector<std::string> ids_;
  absl::flat_hash_map<std::string, int32_t> index_;
};

// One rating. `timestamp` is seconds since the epoch, or 0 when the source
// has none.
struct Rating {
  int32_t user = 0;
  int32_t item = 0;
  float value = 0;
  int64_t timestamp = 0;
};

// What the values of a rating set mean. Explicit: ratings on a scale, where
// a re-rating replaces the earlier one and a model predicts ratings.
// Implicit: interactions (plays, clicks, purchases) whose value is a count
// or weight >= 0; repeated pairs add up, and a model only ranks (it has no
// ratings to predict). Numbers are stable: model files store them.
enum class Feedback : uint32_t { kExplicit = 0, kImplicit = 1 };

// "explicit" or "implicit".
absl::string_view FeedbackName(Feedback feedback);
absl::StatusOr<Feedback> ParseFeedback(absl::string_view name);

// The closed interval ratings live in; predictions are clipped to it.
struct RatingScale {
  float min = 1.0f;
  float max = 5.0f;

  float Clip(float x) const { return x < min ? min : (x > max ? max : x); }
  bool Contains(float x) const { return x >= min && x <= max; }
  bool valid() const { return min < max; }
};

// Catalogue metadata for one item. Titles are valid UTF-8.
struct ItemInfo {
  std::string title;
  std::vector<std::string> genres;
  // Withdrawn from the catalogue (the server's UpsertItems): never
  // recommended, but its ratings stay training data and user history.
  bool retired = false;
};

// What a load did, for reports.
struct LoadStats {
  int64_t lines = 0;                // data lines read (headers excluded)
  int64_t duplicates_replaced = 0;  // (user,item) pairs rated more than once
  int64_t duplicates_summed = 0;    // implicit: repeated pairs added up
  int64_t bad_lines_skipped = 0;    // only with skip_bad_lines
};

struct RatingData {
  IdMap users;
  IdMap items;
  // One rating per (user, item) pair once loaded (duplicates resolved).
  std::vector<Rating> ratings;
  RatingScale scale;
  Feedback feedback = Feedback::kExplicit;
  // Indexed by item index; item_info.size() == items.size() (items without
  // metadata have an empty title and no genres).
  std::vector<ItemInfo> item_info;
  LoadStats stats;

  int32_t num_users() const { return users.size(); }
  int32_t num_items() const { return items.size(); }
  // Makes item_info as long as the item map (call after adding items).
  void SyncItemInfo() { item_info.resize(items.size()); }
};

// Fingerprint of a rating set, stored in model files so a server can tell
// which ratings a model has seen. Independent of rating order.
struct DataWatermark {
  int64_t num_ratings = 0;
  uint64_t hash = 0;
};
DataWatermark ComputeWatermark(const RatingData& data);

// Compressed rows of a rating set: for each row (user, or item when
// `by_item`), the column indices and values of its ratings, sorted by column.
struct SparseRows {
  std::vector<int64_t> offsets = {0};  // size rows+1
  std::vector<int32_t> cols;
  std::vector<float> values;
  // One timestamp per entry when built with them (empty otherwise).
  std::vector<int64_t> times;

  int32_t rows() const { return static_cast<int32_t>(offsets.size()) - 1; }
  int64_t size(int32_t row) const { return offsets[row + 1] - offsets[row]; }
};
SparseRows BuildRows(const RatingData& data, bool by_item,
                     bool with_times = false);

// Keeps one rating per (user, item): the one with the latest timestamp, and
// among equal timestamps the one that came later in `ratings`. Returns how
// many were dropped. The result is sorted by (user, item).
int64_t ResolveDuplicates(std::vector<Rating>& ratings);

// Implicit feedback: one entry per (user, item) whose value is the sum of
// the pair's values and whose timestamp is the latest. Returns how many
// entries were merged away. The result is sorted by (user, item).
int64_t SumDuplicates(std::vector<Rating>& ratings);

// Splits `data` at random into two sets sharing the id maps, metadata and
// scale: about `fraction` of the ratings go to `second`.
void RandomSplit(const RatingData& data, double fraction, uint64_t seed,
                 RatingData* first, RatingData* second);

// Holds out `fraction` of each user's ratings (at least one) for users with
// at least `min_user_ratings`; both sets share `data`'s id maps, scale and
// catalogue.
void PerUserSplit(const RatingData& data, double fraction,
                  int32_t min_user_ratings, uint64_t seed, RatingData* train,
                  RatingData* held_out);

}  // namespace recsys

#endif  // RECSYS_MODELS_RATINGS_H_
