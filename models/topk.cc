#include "models/topk.h"

#include <algorithm>
#include <limits>

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

// A min-heap (the worst kept item on top) of at most k items, filled from
// index ranges in increasing index order. Once it holds k items, an item
// can only enter with a score >= the worst kept one (a tie enters only with
// a lower index, which never happens in increasing order), so most items
// are rejected by one comparison with a threshold, checked a block at a
// time, and the heap is touched only by the few that beat it.
class TopKHeap {
 public:
  TopKHeap(const float* scores, int k, std::vector<ScoredItem>* heap)
      : s_(scores), k_(static_cast<size_t>(k)), heap_(heap) {}

  void Scan(int32_t begin, int32_t end) {
    int32_t i = begin;
    for (; i < end && heap_->size() < k_; ++i) {
      heap_->push_back({i, s_[i]});
      std::push_heap(heap_->begin(), heap_->end(), WorseOnTop);
    }
    if (i == end) return;
    float threshold = heap_->front().score;
    constexpr int32_t kBlock = 16;
    for (; i + kBlock <= end; i += kBlock) {
      // A branch-free maximum over the block: one vector compare per block.
      // (NaN scores never win a comparison, so they are never selected.)
      float top = -std::numeric_limits<float>::infinity();
      for (int32_t j = 0; j < kBlock; ++j) {
        top = s_[i + j] > top ? s_[i + j] : top;
      }
      if (!(top > threshold)) continue;
      for (int32_t j = i; j < i + kBlock; ++j) {
        if (s_[j] > threshold) threshold = Replace(j);
      }
    }
    for (; i < end; ++i) {
      if (s_[i] > threshold) threshold = Replace(i);
    }
  }

 private:
  // A function object (not a function pointer) so the heap code inlines it.
  struct WorseOnTopOrder {
    bool operator()(const ScoredItem& a, const ScoredItem& b) const {
      return Better(a, b);
    }
  };
  static constexpr WorseOnTopOrder WorseOnTop{};
  // Item i beats the worst kept one: swap them; returns the new threshold.
  float Replace(int32_t i) {
    std::pop_heap(heap_->begin(), heap_->end(), WorseOnTop);
    heap_->back() = {i, s_[i]};
    std::push_heap(heap_->begin(), heap_->end(), WorseOnTop);
    return heap_->front().score;
  }

  const float* s_;
  size_t k_;
  std::vector<ScoredItem>* heap_;
};
}  // namespace

void TopK(absl::Span<const float> scores, int k,
          absl::Span<const int32_t> exclude, std::vector<ScoredItem>* out) {
  out->clear();
  const auto n = static_cast<int32_t>(scores.size());
  if (k <= 0 || n == 0) return;
  out->reserve(static_cast<size_t>(std::min(k, n)));
  TopKHeap heap(scores.data(), k, out);
  if (exclude.empty()) {
    heap.Scan(0, n);
  } else {
    // The excluded indices, sorted, cut the catalogue into ranges to scan.
    thread_local std::vector<int32_t> cuts;
    cuts.assign(exclude.begin(), exclude.end());
    std::sort(cuts.begin(), cuts.end());
    int32_t begin = 0;
    for (int32_t c : cuts) {
      if (c < begin) continue;  // duplicates and negative values
      if (c >= n) break;
      heap.Scan(begin, c);
      begin = c + 1;
    }
    heap.Scan(begin, n);
  }
  std::sort(out->begin(), out->end(), Better);
}

std::vector<ScoredItem> TopK(const Eigen::VectorXf& scores, int k,
                             absl::Span<const int32_t> exclude) {
  std::vector<ScoredItem> out;
  TopK(absl::MakeConstSpan(scores.data(), static_cast<size_t>(scores.size())),
       k, exclude, &out);
  return out;
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
