// Scoring one user against the whole catalogue and keeping the best k.
//
//   Eigen::VectorXf scores;
//   ScoreAllItems(model, model.user_bias[u], model.user_factors.row(u).data(),
//                 &scores);
//   std::vector<ScoredItem> best = TopK(scores, /*k=*/10, rated_items);
//
// Scores are the model's unclipped predicted ratings (for kPopularity, the
// item's training rating count), so ranking never suffers from ties created
// by clipping; clip with model.scale for display.
#ifndef RECSYS_MODELS_TOPK_H_
#define RECSYS_MODELS_TOPK_H_

#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "absl/types/span.h"
#include "models/model.h"

namespace recsys {

struct ScoredItem {
  int32_t item = 0;
  float score = 0;
};

// The order every top-k here returns: higher score first, then the lower
// item index.
inline bool RanksBefore(const ScoredItem& a, const ScoredItem& b) {
  return a.score > b.score || (a.score == b.score && a.item < b.item);
}

// Writes one score per item into `scores` (resized to num_items): one
// matrix-vector product over the item factors plus the biases.
// `user_vector` points to model.factors() floats (ignored without factors).
void ScoreAllItems(const Model& model, float user_bias,
                   const float* user_vector, Eigen::VectorXf* scores);

// The k highest scores, best first; ties go to the lower item index. Items in
// `exclude` (any order, duplicates and out-of-range values ignored) are
// skipped; fewer than k come back when the catalogue runs out.
std::vector<ScoredItem> TopK(const Eigen::VectorXf& scores, int k,
                             absl::Span<const int32_t> exclude);
// The same into `out` (cleared first), so a caller can reuse its capacity.
void TopK(absl::Span<const float> scores, int k,
          absl::Span<const int32_t> exclude, std::vector<ScoredItem>* out);
// The same for a caller that owns `scores` and is done with them: the
// excluded entries are overwritten with -inf, which spares the copy TopK
// makes when there are exclusions.
void TopKInPlace(absl::Span<float> scores, int k,
                 absl::Span<const int32_t> exclude,
                 std::vector<ScoredItem>* out);

// The k best items for user index `u` of the model, skipping what the user
// rated in training when `exclude_rated`. u = -1 is a user the model has
// never seen: items rank by their training rating counts, most-rated first,
// as the server ranks them for a user without ratings. Retired items
// (ItemInfo::retired) are never returned, as the server never returns them.
// `scores` is scratch space the caller may reuse across calls (it ends with
// the excluded items scored -inf).
std::vector<ScoredItem> RecommendForUser(const Model& model, int32_t u, int k,
                                         bool exclude_rated,
                                         Eigen::VectorXf* scores);

}  // namespace recsys

#endif  // RECSYS_MODELS_TOPK_H_
