#include "models/evaluation.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "models/topk.h"

namespace recsys {

absl::StatusOr<RatingMetrics> EvaluateRatings(const Model& model,
                                              const RatingData& test,
                                              std::ostream* out) {
  RatingAccumulator acc;
  std::vector<int32_t> user_map(test.num_users()), item_map(test.num_items());
  for (int32_t u = 0; u < test.num_users(); ++u) {
    user_map[u] = model.users.Find(test.users.External(u));
  }
  for (int32_t i = 0; i < test.num_items(); ++i) {
    item_map[i] = model.items.Find(test.items.External(i));
  }
  for (const Rating& r : test.ratings) {
    const float p = model.Predict(user_map[r.user], item_map[r.item]);
    acc.Add(p, r.value);
    if (out != nullptr) {
      *out << test.users.External(r.user) << '\t' << test.items.External(r.item)
           << '\t' << absl::StrFormat("%.6f", p) << '\n';
    }
  }
  if (out != nullptr && !out->good()) {
    return absl::InternalError("writing predictions failed");
  }
  return acc.Result();
}

float DefaultRelevanceThreshold(const RatingScale& scale) {
  return scale.min + 0.75f * (scale.max - scale.min);
}

float RelevanceThreshold(const RatingScale& scale, Feedback feedback) {
  return feedback == Feedback::kImplicit
             ? -std::numeric_limits<float>::infinity()
             : DefaultRelevanceThreshold(scale);
}

absl::StatusOr<RankingMetrics> EvaluateTopN(const Model& model,
                                            const RatingData& test,
                                            const TopNOptions& options,
                                            std::ostream* out) {
  if (options.k <= 0) return absl::InvalidArgumentError("k must be positive");
  const SparseRows by_test_user = BuildRows(test, /*by_item=*/false);
  RankingAccumulator acc(options.k);
  Eigen::VectorXf scores;
  std::vector<int32_t> ranked;
  absl::flat_hash_set<int32_t> relevant;
  for (int32_t tu = 0; tu < test.num_users(); ++tu) {
    relevant.clear();
    int64_t num_relevant = 0;
    for (int64_t k = by_test_user.offsets[tu]; k < by_test_user.offsets[tu + 1];
         ++k) {
      if (by_test_user.values[k] < options.relevant_min) continue;
      ++num_relevant;
      const int32_t i =
          model.items.Find(test.items.External(by_test_user.cols[k]));
      if (i >= 0) relevant.insert(i);
    }
    if (num_relevant == 0) continue;
    const std::string& ext_user = test.users.External(tu);
    ranked.clear();
    for (const ScoredItem& s :
         RecommendForUser(model, model.users.Find(ext_user), options.k,
                          /*exclude_rated=*/true, &scores)) {
      ranked.push_back(s.item);
    }
    acc.Add(ranked, relevant, num_relevant);
    if (out != nullptr) {
      for (size_t r = 0; r < ranked.size(); ++r) {
        *out << ext_user << '\t' << model.items.External(ranked[r]) << '\t'
             << r + 1 << '\n';
      }
    }
  }
  if (out != nullptr && !out->good()) {
    return absl::InternalError("writing recommendations failed");
  }
  return acc.Result();
}

}  // namespace recsys
