// Accuracy metrics of ../shared/PROTOCOLS.md: RMSE/MAE for predicted ratings
// (protocol R) and P@k, R@k, nDCG@k, MAP@k with binary relevance for top-k
// lists (protocol T).
//
//   RankingAccumulator acc(10);
//   acc.Add(recommended_items, relevant_set, relevant_count);
//   RankingMetrics m = acc.Result();   // means over the users added
#ifndef RECSYS_MODELS_METRICS_H_
#define RECSYS_MODELS_METRICS_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/types/span.h"

namespace recsys {

struct RatingMetrics {
  double rmse = 0;
  double mae = 0;
  int64_t n = 0;
};

class RatingAccumulator {
 public:
  void Add(double predicted, double actual) {
    const double e = predicted - actual;
    se_ += e * e;
    ae_ += e < 0 ? -e : e;
    ++n_;
  }
  RatingMetrics Result() const;

 private:
  double se_ = 0;
  double ae_ = 0;
  int64_t n_ = 0;
};

struct RankingMetrics {
  int64_t users = 0;
  double precision = 0;
  double recall = 0;
  double ndcg = 0;
  double map = 0;
};

class RankingAccumulator {
 public:
  explicit RankingAccumulator(int k);
  // `ranked`: the list shown, best first (only the first k count).
  // `relevant`: the relevant items that can be hit; `num_relevant` >= its
  // size also counts relevant items that could never be recommended (e.g.
  // unknown to the model). Users with num_relevant == 0 are not evaluated.
  void Add(absl::Span<const int32_t> ranked,
           const absl::flat_hash_set<int32_t>& relevant, int64_t num_relevant);
  RankingMetrics Result() const;

 private:
  int k_;
  std::vector<double> idcg_;  // idcg_[m] = sum_{i=1..m} 1/log2(i+1)
  int64_t users_ = 0;
  double precision_ = 0, recall_ = 0, ndcg_ = 0, map_ = 0;
};

// Mean and sample standard deviation (n - 1 in the denominator; 0 for n < 2).
struct MeanSd {
  double mean = 0;
  double sd = 0;
};
MeanSd Summarize(absl::Span<const double> values);

}  // namespace recsys

#endif  // RECSYS_MODELS_METRICS_H_
