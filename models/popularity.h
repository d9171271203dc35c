// Popularity as a ranking signal: the ranking column of a kHybrid whose
// ranking part is popularity, and the popularity prior that the other
// ranking kinds may add to their scores (Hyperparameters::
// popularity_weight). Both count an item's relevant training ratings (at or
// above DefaultRelevanceThreshold), as protocol T's reference popularity
// does.
#ifndef RECSYS_MODELS_POPULARITY_H_
#define RECSYS_MODELS_POPULARITY_H_

#include <vector>

#include "Eigen/Core"
#include "models/model.h"
#include "models/ratings.h"

namespace recsys {
namespace internal {

// Each item's ratings at or above `relevant_min` ([by_item.rows()]).
std::vector<int64_t> RelevantCounts(const SparseRows& by_item,
                                    float relevant_min);

// The one ranking column of a popularity ranking part: 1 for every user
// with ratings (m->user_ratings), each item's relevant count for items.
void FillPopularityColumn(const std::vector<int64_t>& relevant, Model* m);

// w * log(1 + r_i) / log(1 + max_j r_j) per item (zeros when no item has a
// relevant rating).
Eigen::VectorXf PopularityPrior(const std::vector<int64_t>& relevant,
                                float weight);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_MODELS_POPULARITY_H_
