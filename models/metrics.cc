#include "models/metrics.h"

#include <algorithm>
#include <cmath>

namespace recsys {

RatingMetrics RatingAccumulator::Result() const {
  RatingMetrics m;
  m.n = n_;
  if (n_ > 0) {
    m.rmse = std::sqrt(se_ / static_cast<double>(n_));
    m.mae = ae_ / static_cast<double>(n_);
  }
  return m;
}

RankingAccumulator::RankingAccumulator(int k) : k_(k), idcg_(k + 1, 0.0) {
  for (int i = 1; i <= k; ++i)
    idcg_[i] = idcg_[i - 1] + 1.0 / std::log2(i + 1.0);
}

void RankingAccumulator::Add(absl::Span<const int32_t> ranked,
                             const absl::flat_hash_set<int32_t>& relevant,
                             int64_t num_relevant) {
  if (num_relevant <= 0) return;
  int hits = 0;
  double dcg = 0, ap = 0;
  const int shown = std::min<int>(k_, static_cast<int>(ranked.size()));
  for (int r = 1; r <= shown; ++r) {
    if (!relevant.contains(ranked[r - 1])) continue;
    ++hits;
    dcg += 1.0 / std::log2(r + 1.0);
    ap += static_cast<double>(hits) / r;
  }
  const int64_t m = std::min<int64_t>(num_relevant, k_);
  ++users_;
  precision_ += static_cast<double>(hits) / k_;
  recall_ += static_cast<double>(hits) / static_cast<double>(num_relevant);
  ndcg_ += dcg / idcg_[m];
  map_ += ap / static_cast<double>(m);
}

RankingMetrics RankingAccumulator::Result() const {
  RankingMetrics m;
  m.users = users_;
  if (users_ > 0) {
    const double n = static_cast<double>(users_);
    m.precision = precision_ / n;
    m.recall = recall_ / n;
    m.ndcg = ndcg_ / n;
    m.map = map_ / n;
  }
  return m;
}

MeanSd Summarize(absl::Span<const double> values) {
  MeanSd s;
  if (values.empty()) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  if (values.size() < 2) return s;
  double ss = 0;
  for (double v : values) ss += (v - s.mean) * (v - s.mean);
  s.sd = std::sqrt(ss / static_cast<double>(values.size() - 1));
  return s;
}

}  // namespace recsys
