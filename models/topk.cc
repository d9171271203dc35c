#include "models/topk.h"

#include <algorithm>

namespace recsys {

void ScoreAllItems(const Model& model, float user_bias,
                   const float* user_vector, Eigen::VectorXf* scores) {
  if (model.kind == ModelKind::kPopularity) {
    scores->resize(model.num_items());
    for (int32_t i = 0; i < model.num_items(); ++i) {
      (*scores)[i] = static_cast<float>(model.item_counts[i]);
    }
    return;
  }
  if (!model.ranks_by_rating()) {
    // A ranking model: the ranking factors alone order the catalogue.
    const int32_t k = model.rank_cols();
    Eigen::Map<const Eigen::VectorXf> p(user_vector, k);
    scores->noalias() = model.item_factors.leftCols(k) * p;
    return;
  }
  *scores = model.item_bias.array() + (model.mu + user_bias);
  if (model.factors() > 0) {
    Eigen::Map<const Eigen::VectorXf> p(user_vector, model.factors());
    scores->noalias() += model.item_factors * p;
  }
}

namespace {
// "a ranks before b": higher score, then lower index.
inline bool Better(const ScoredItem& a, const ScoredItem& b) {
  return a.score > b.score || (a.score == b.score && a.item < b.item);
}
}  // namespace

std::vector<ScoredItem> TopK(const Eigen::VectorXf& scores, int k,
                             absl::Span<const int32_t> exclude) {
  const int32_t n = static_cast<int32_t>(scores.size());
  std::vector<ScoredItem> heap;
  if (k <= 0 || n == 0) return heap;
  std::vector<bool> skip;
  if (!exclude.empty()) {
    skip.assign(n, false);
    for (int32_t i : exclude) {
      if (i >= 0 && i < n) skip[i] = true;
    }
  }
  heap.reserve(std::min(k, n) + 1);
  // A min-heap (worst of the kept items on top) of at most k items: one pass,
  // O(n log k), and most items are rejected by a single comparison.
  auto worse_on_top = [](const ScoredItem& a, const ScoredItem& b) {
    return Better(a, b);
  };
  for (int32_t i = 0; i < n; ++i) {
    if (!skip.empty() && skip[i]) continue;
    const ScoredItem c{i, scores[i]};
    if (static_cast<int>(heap.size()) < k) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), worse_on_top);
    } else if (Better(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), worse_on_top);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), worse_on_top);
    }
  }
  std::sort(heap.begin(), heap.end(), Better);
  return heap;
}

std::vector<ScoredItem> RecommendForUser(const Model& model, int32_t u, int k,
                                         bool exclude_rated,
                                         Eigen::VectorXf* scores) {
  if (u < 0) {
    const Eigen::VectorXf zero = Eigen::VectorXf::Zero(model.factors());
    ScoreAllItems(model, 0.0f, zero.data(), scores);
    return TopK(*scores, k, {});
  }
  ScoreAllItems(model, model.user_bias[u], model.user_factors.row(u).data(),
                scores);
  absl::Span<const int32_t> rated;
  if (exclude_rated && u < model.user_ratings.rows()) {
    const SparseRows& r = model.user_ratings;
    rated = absl::MakeConstSpan(r.cols.data() + r.offsets[u],
                                static_cast<size_t>(r.size(u)));
  }
  return TopK(*scores, k, rated);
}

}  // namespace recsys
