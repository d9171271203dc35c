#include "models/popularity.h"

#include <algorithm>
#include <cmath>

namespace recsys {
namespace internal {

std::vector<int64_t> RelevantCounts(const SparseRows& by_item,
                                    float relevant_min) {
  std::vector<int64_t> counts(static_cast<size_t>(by_item.rows()), 0);
  for (int32_t i = 0; i < by_item.rows(); ++i) {
    for (int64_t k = by_item.offsets[i]; k < by_item.offsets[i + 1]; ++k) {
      if (by_item.values[k] >= relevant_min) ++counts[i];
    }
  }
  return counts;
}

void FillPopularityColumn(const std::vector<int64_t>& relevant, Model* m) {
  for (size_t i = 0; i < relevant.size(); ++i) {
    m->item_factors(static_cast<int64_t>(i), 0) =
        static_cast<float>(relevant[i]);
  }
  for (int32_t u = 0; u < m->num_users(); ++u) {
    m->user_factors(u, 0) = m->user_ratings.size(u) > 0 ? 1.0f : 0.0f;
  }
}

Eigen::VectorXf PopularityPrior(const std::vector<int64_t>& relevant,
                                float weight) {
  Eigen::VectorXf prior =
      Eigen::VectorXf::Zero(static_cast<Eigen::Index>(relevant.size()));
  const int64_t most =
      relevant.empty() ? 0
                       : *std::max_element(relevant.begin(), relevant.end());
  if (most == 0) return prior;
  const double norm = std::log1p(static_cast<double>(most));
  for (size_t i = 0; i < relevant.size(); ++i) {
    prior[static_cast<Eigen::Index>(i)] = static_cast<float>(
        weight * std::log1p(static_cast<double>(relevant[i])) / norm);
  }
  return prior;
}

}  // namespace internal
}  // namespace recsys
