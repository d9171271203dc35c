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
    // (plus the popularity prior, when the model has one).
    const int32_t k = model.rank_cols();
    Eigen::Map<const Eigen::VectorXf> p(user_vector, k);
    scores->noalias() = model.item_factors.leftCols(k) * p;
    if (model.rank_bias.size() > 0) *scores += model.rank_bias;
    return;
  }
  *scores = model.item_bias.array() + (model.mu + user_bias);
  if (model.factors() > 0) {
    Eigen::Map<const Eigen::VectorXf> p(user_vector, model.factors());
    scores->noalias() += model.item_factors * p;
  }
  if (model.rank_bias.size() > 0) *scores += model.rank_bias;
}

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// How many of the kBlock scores at `s` are above `threshold`. Written as a
// count, which the compiler turns into a few vector compares and one
// horizontal sum; the running maximum used before does not vectorise (max
// is not associative once NaN is possible), and topk_only/62423x64 went
// from 14.6 to 5.6 us with the count (kernels bench, AVX-512). 32 beat 16
// and 64 at 1682 items. NaN is never above anything, so a NaN score never
// hides a winner in its block.
constexpr int32_t kBlock = 32;
inline int CountAbove(const float* __restrict s, float threshold) {
  int count = 0;
  for (int32_t j = 0; j < kBlock; ++j) count += s[j] > threshold;
  return count;
}

// Bit j set when s[j] > threshold: for a block that has any, so only those
// items are visited (with AVX2 or AVX-512 the same few vector instructions
// as the count; the portable build gets a scalar loop, no worse than
// visiting every item).
inline uint32_t MaskAbove(const float* __restrict s, float threshold) {
  static_assert(kBlock <= 32, "one bit per item of a block");
  uint32_t mask = 0;
  for (int32_t j = 0; j < kBlock; ++j) {
    mask |= static_cast<uint32_t>(s[j] > threshold) << j;
  }
  return mask;
}

// A min-heap (the worst kept item on top) of at most k items, filled in
// increasing index order. Once it holds k items, an item can only enter with
// a score above the worst kept one (a tie enters only with a lower index,
// which never happens in increasing order), so most items are rejected by
// one comparison with a threshold, checked a block at a time, and the heap
// is touched only by the few that beat it.
//
// Items scored -inf (excluded ones, overwritten by TopKInPlace) never beat
// the threshold and are skipped while filling, so exclusions cost nothing
// in the scan; TopK tops up with non-excluded -inf items afterwards in the
// rare case that fewer than k others exist.
class TopKHeap {
 public:
  TopKHeap(const float* scores, int k, std::vector<ScoredItem>* heap)
      : s_(scores), k_(static_cast<size_t>(k)), heap_(heap) {}

  void Scan(int32_t end) {
    int32_t i = 0;
    for (; i < end && heap_->size() < k_; ++i) {
      if (s_[i] == kNegInf) continue;
      heap_->push_back({i, s_[i]});
      std::push_heap(heap_->begin(), heap_->end(), WorseOnTop);
    }
    if (i == end) return;
    float threshold = heap_->front().score;
    for (; i + kBlock <= end; i += kBlock) {
      if (CountAbove(s_ + i, threshold) == 0) continue;
      // In index order; the threshold rises as items enter, so each one is
      // checked again.
      for (uint32_t mask = MaskAbove(s_ + i, threshold); mask != 0;
           mask &= mask - 1) {
        const int32_t j = i + __builtin_ctz(mask);
        if (s_[j] > threshold) threshold = Replace(j);
      }
    }
    for (; i < end; ++i) {
      if (s_[i] > threshold) threshold = Replace(i);
    }
  }

  // Items tie at -inf, so the lowest indices go first; all rank after the
  // kept ones. Only called with fewer than k kept.
  void TopUpWithNegInf(int32_t end, absl::Span<const int32_t> exclude) {
    // Which -inf scores were written by the exclusion rather than computed.
    thread_local std::vector<char> excluded;
    excluded.assign(static_cast<size_t>(end), 0);
    for (int32_t c : exclude) {
      if (c >= 0 && c < end) excluded[c] = 1;
    }
    for (int32_t i = 0; i < end && heap_->size() < k_; ++i) {
      if (s_[i] == kNegInf && !excluded[i]) heap_->push_back({i, kNegInf});
    }
  }

 private:
  // A function object (not a function pointer) so the heap code inlines it.
  struct WorseOnTopOrder {
    bool operator()(const ScoredItem& a, const ScoredItem& b) const {
      return RanksBefore(a, b);
    }
  };
  static constexpr WorseOnTopOrder WorseOnTop{};
  // Item i beats the worst kept one: it takes the root's place and sinks
  // below every kept item it ranks before. One pass down the heap, where
  // std::pop_heap + std::push_heap took one down to a leaf and one back up
  // (topk_only/1682x32: 0.93 -> 0.74 us). Returns the new threshold.
  float Replace(int32_t i) {
    const ScoredItem item = {i, s_[i]};
    ScoredItem* h = heap_->data();
    const size_t n = heap_->size();
    size_t hole = 0;
    while (true) {
      size_t child = 2 * hole + 1;
      if (child >= n) break;
      // The worse of the two children.
      if (child + 1 < n && RanksBefore(h[child], h[child + 1])) ++child;
      if (!RanksBefore(item, h[child])) break;
      h[hole] = h[child];
      hole = child;
    }
    h[hole] = item;
    return h[0].score;
  }

  const float* s_;
  size_t k_;
  std::vector<ScoredItem>* heap_;
};

// `scores` has its excluded entries set to -inf already.
void SelectTopK(const float* scores, int32_t n, int k,
                absl::Span<const int32_t> exclude,
                std::vector<ScoredItem>* out) {
  out->reserve(static_cast<size_t>(std::min(k, n)));
  TopKHeap heap(scores, k, out);
  heap.Scan(n);
  if (out->size() < static_cast<size_t>(k)) heap.TopUpWithNegInf(n, exclude);
  std::sort(out->begin(), out->end(),
            [](const ScoredItem& a, const ScoredItem& b) {
              return RanksBefore(a, b);  // (inlined, unlike a pointer)
            });
}
}  // namespace

void TopK(absl::Span<const float> scores, int k,
          absl::Span<const int32_t> exclude, std::vector<ScoredItem>* out) {
  out->clear();
  const auto n = static_cast<int32_t>(scores.size());
  if (k <= 0 || n == 0) return;
  if (exclude.empty()) {
    SelectTopK(scores.data(), n, k, exclude, out);
    return;
  }
  // Excluding means overwriting, so on a copy.
  thread_local std::vector<float> copy;
  copy.assign(scores.begin(), scores.end());
  TopKInPlace(absl::MakeSpan(copy), k, exclude, out);
}

void TopKInPlace(absl::Span<float> scores, int k,
                 absl::Span<const int32_t> exclude,
                 std::vector<ScoredItem>* out) {
  out->clear();
  const auto n = static_cast<int32_t>(scores.size());
  if (k <= 0 || n == 0) return;
  for (int32_t c : exclude) {
    if (c >= 0 && c < n) scores[c] = kNegInf;
  }
  SelectTopK(scores.data(), n, k, exclude, out);
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
  std::vector<int32_t> exclude;
  for (int32_t i = 0; i < static_cast<int32_t>(model.item_info.size()); ++i) {
    if (model.item_info[static_cast<size_t>(i)].retired) exclude.push_back(i);
  }
  if (u < 0) {
    // As the server answers a user without ratings: most-rated first. (A
    // ranking kind's scores have no biases: a zero vector ties every item.)
    scores->resize(model.num_items());
    for (int32_t i = 0; i < model.num_items(); ++i) {
      (*scores)[i] = static_cast<float>(model.item_counts[i]);
    }
    return TopK(*scores, k, exclude);
  }
  ScoreAllItems(model, model.user_bias[u], model.user_factors.row(u).data(),
                scores);
  if (exclude_rated && u < model.user_ratings.rows()) {
    const SparseRows& r = model.user_ratings;
    exclude.insert(exclude.end(), r.cols.begin() + r.offsets[u],
                   r.cols.begin() + r.offsets[u + 1]);
  }
  std::vector<ScoredItem> out;
  TopKInPlace(
      absl::MakeSpan(scores->data(), static_cast<size_t>(scores->size())), k,
      exclude, &out);
  return out;
}

}  // namespace recsys
