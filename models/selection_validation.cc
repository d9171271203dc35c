// Model selection's validation: the per-user split carved from the training
// data, and nDCG@10 of ranking candidates on it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "models/evaluation.h"
#include "models/popularity.h"
#include "models/selection_internal.h"
#include "models/topk.h"

namespace recsys {
namespace internal {
namespace selection {
void MakeValidation(const RatingData& data, const SelectionOptions& o,
                    Validation* v) {
  PerUserSplit(data, o.validation_fraction, o.min_user_ratings, o.seed,
               &v->train, &v->held);
  v->train_rows = BuildRows(v->train, /*by_item=*/false);
  v->relevant_min = RelevanceThreshold(data.scale, data.feedback);
  const SparseRows by_item = BuildRows(v->train, true);
  v->relevant_counts = internal::RelevantCounts(by_item, v->relevant_min);
  v->pick_counts = internal::RelevantCounts(
      by_item, -std::numeric_limits<float>::infinity());
  std::vector<std::vector<int32_t>> relevant(data.num_users());
  for (const Rating& r : v->held.ratings) {
    if (r.value >= v->relevant_min) relevant[r.user].push_back(r.item);
  }
  std::vector<int32_t> users;
  for (int32_t u = 0; u < data.num_users(); ++u) {
    if (!relevant[u].empty()) users.push_back(u);
  }
  if (static_cast<int64_t>(users.size()) > o.max_validation_users) {
    std::mt19937_64 rng(o.seed ^ 0x7a11d);
    std::shuffle(users.begin(), users.end(), rng);
    users.resize(o.max_validation_users);
    std::sort(users.begin(), users.end());
  }
  v->users = users;
  for (int32_t u : users) v->relevant.push_back(std::move(relevant[u]));
}

std::vector<double> Ndcg(const Validation& v, int threads, const ScoreFn& score,
                         const Eigen::VectorXf& prior,
                         const std::vector<float>& weights, double* top_scale) {
  const size_t n = v.users.size(), nw = weights.size();
  std::vector<double> per_user(n * nw, 0.0), top(n, 0.0);
  std::vector<double> idcg(kTopN + 1, 0.0);
  for (int r = 1; r <= kTopN; ++r) {
    idcg[r] = idcg[r - 1] + 1 / std::log2(r + 1);
  }
  const int64_t blocks =
      (static_cast<int64_t>(n) + kScoreBlock - 1) / kScoreBlock;
  ParallelChunks(blocks, threads, [&](int64_t first, int64_t last, int) {
    RowMatrix block;
    Eigen::VectorXf t;
    std::vector<ScoredItem> best;
    for (int64_t bk = first; bk < last; ++bk) {
      const size_t j0 = static_cast<size_t>(bk * kScoreBlock);
      const size_t j1 = std::min(n, j0 + kScoreBlock);
      score(absl::MakeConstSpan(v.users.data() + j0, j1 - j0), &block);
      for (size_t j = j0; j < j1; ++j) {
        const int32_t u = v.users[j];
        const auto s = block.row(static_cast<Eigen::Index>(j - j0));
        const int64_t b = v.train_rows.offsets[u];
        const absl::Span<const int32_t> rated(
            v.train_rows.cols.data() + b,
            static_cast<size_t>(v.train_rows.offsets[u + 1] - b));
        const std::vector<int32_t>& rel = v.relevant[j];
        for (size_t w = 0; w < nw; ++w) {
          if (weights[w] != 0 && prior.size() == s.size()) {
            t = s.transpose() + weights[w] * prior;
          } else {
            t = s.transpose();
          }
          TopK(absl::MakeConstSpan(t.data(), t.size()), kTopN, rated, &best);
          if (w == 0 && top_scale != nullptr && !best.empty()) {
            top[j] = s[best[0].item];
          }
          double dcg = 0;
          for (size_t r = 0; r < best.size(); ++r) {
            if (std::binary_search(rel.begin(), rel.end(), best[r].item)) {
              dcg += 1 / std::log2(static_cast<double>(r) + 2);
            }
          }
          per_user[j * nw + w] =
              dcg / idcg[std::min<size_t>(rel.size(), kTopN)];
        }
      }
    }
  });
  std::vector<double> mean(nw, 0.0);
  for (size_t j = 0; j < n; ++j) {
    for (size_t w = 0; w < nw; ++w) mean[w] += per_user[j * nw + w];
  }
  for (double& m : mean) m /= std::max<size_t>(1, n);
  if (top_scale != nullptr) {
    *top_scale = std::accumulate(top.begin(), top.end(), 0.0) /
                 static_cast<double>(std::max<size_t>(1, n));
  }
  return mean;
}

ScoreFn ModelScores(const Model& m) {
  return [&m](absl::Span<const int32_t> users, RowMatrix* out) {
    const int32_t k = m.ranks_by_rating() ? m.factors() : m.rank_cols();
    RowMatrix p(static_cast<Eigen::Index>(users.size()), k);
    for (size_t j = 0; j < users.size(); ++j) {
      p.row(static_cast<Eigen::Index>(j)) =
          m.user_factors.row(users[j]).head(k);
    }
    out->noalias() = p * m.item_factors.leftCols(k).transpose();
    if (m.ranks_by_rating()) out->rowwise() += m.item_bias.transpose();
    if (m.rank_bias.size() > 0) out->rowwise() += m.rank_bias.transpose();
  };
}

RankPins RankingPins(const SelectionOptions& o) {
  const ParamOverrides& p = o.pinned;
  RankPins r;
  const bool alone =
      o.kind == ModelKind::kIals || o.kind == ModelKind::kPuresvd;
  r.factors = alone ? p.factors : p.rank_factors;
  r.epochs = alone ? p.epochs : p.rank_epochs;
  r.reg = alone ? p.reg : p.rank_reg;
  r.cg_steps = p.cg_steps;
  r.implicit_weight = p.implicit_weight;
  r.reg_exponent = p.reg_exponent;
  r.value_weight = p.value_weight;
  r.target_min = p.target_min;
  r.confidence_alpha = p.confidence_alpha;
  return r;
}

}  // namespace selection
}  // namespace internal
}  // namespace recsys
