#include "models/ials.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "Eigen/Cholesky"
#include "base/parallel.h"

namespace recsys {
namespace internal {

float ImplicitPenalty(const Hyperparameters& p, int64_t n_row,
                      int64_t n_other) {
  const double seen = static_cast<double>(n_row) +
                      p.implicit_weight * static_cast<double>(n_other);
  return static_cast<float>(
      p.reg *
      std::pow(std::max(seen, 1.0), static_cast<double>(p.reg_exponent)));
}

float ImplicitTarget(const Hyperparameters& p, const Model& m, float value) {
  // A count has no "disliked": every interaction is one.
  if (m.feedback == Feedback::kImplicit) return 1.0f;
  const RatingScale& scale = m.scale;
  if (p.target_min > 0 && value < p.target_min) return 0.0f;
  if (p.value_weight == 0 || !(scale.max > scale.min)) return 1.0f;
  const float below = (scale.max - value) / (scale.max - scale.min);
  return 1.0f - p.value_weight * std::clamp(below, 0.0f, 1.0f);
}

float ImplicitConfidence(const Hyperparameters& p, float value) {
  if (!(p.confidence_alpha > 0)) return 1.0f;
  return 1.0f + p.confidence_alpha *
                    std::log1p(std::max(value, 0.0f) / p.confidence_eps);
}

namespace {

// A few conjugate-gradient steps on the row's system, from its current
// value: cheaper than a k^3 factorisation, and warm starts make a handful
// of steps per iteration enough.
struct CgScratch {
  Eigen::VectorXf r, d, ad, yd;
};

// `weights` is empty (every observed pair weighs 1) or parallel to `cols`.
void CgImplicitRow(const RowMatrix& other, const Eigen::MatrixXf& gram,
                   absl::Span<const int32_t> cols,
                   absl::Span<const float> targets,
                   absl::Span<const float> weights, float penalty, float a0,
                   int steps, CgScratch* s, Eigen::Ref<Eigen::VectorXf> x) {
  const int64_t n = static_cast<int64_t>(cols.size());
  if (n == 0) {
    x.setZero();
    return;
  }
  const bool weighted = !weights.empty();
  // A v = sum_j c_j q_j (q_j . v) + a0 G v + penalty v.
  auto apply = [&](const Eigen::VectorXf& v, Eigen::VectorXf* out) {
    out->noalias() = a0 * (gram * v);
    *out += penalty * v;
    for (int64_t j = 0; j < n; ++j) {
      const auto q = other.row(cols[j]).transpose();
      const float c = weighted ? weights[j] : 1.0f;
      *out += (c * q.dot(v)) * q;
    }
  };
  // r = b - A x, b = sum_j c_j t_j q_j.
  apply(x, &s->ad);
  s->r = -s->ad;
  for (int64_t j = 0; j < n; ++j) {
    const float c = weighted ? weights[j] : 1.0f;
    s->r += (c * targets[j]) * other.row(cols[j]).transpose();
  }
  s->d = s->r;
  float rs = s->r.squaredNorm();
  for (int step = 0; step < steps && rs > 1e-12f; ++step) {
    apply(s->d, &s->ad);
    const float denom = s->d.dot(s->ad);
    if (!(denom > 0)) break;
    const float alpha = rs / denom;
    x += alpha * s->d;
    s->r -= alpha * s->ad;
    const float next = s->r.squaredNorm();
    s->d = s->r + (next / rs) * s->d;
    rs = next;
  }
}

// `targets` runs parallel to rows.cols, and so does `weights` unless it is
// empty (no confidence weighting).
void HalfStep(const SparseRows& rows, const std::vector<float>& targets,
              const std::vector<float>& weights, const RowMatrix& other,
              const Hyperparameters& p, int threads, RowMatrix* solve) {
  const Eigen::MatrixXf gram = other.transpose() * other;
  const int64_t n_other = other.rows();
  ParallelChunks(rows.rows(), threads, [&](int64_t begin, int64_t end, int) {
    CgScratch scratch;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = rows.offsets[r];
      const size_t n = static_cast<size_t>(rows.offsets[r + 1] - b);
      CgImplicitRow(
          other, gram, absl::MakeConstSpan(rows.cols.data() + b, n),
          absl::MakeConstSpan(targets.data() + b, n),
          weights.empty() ? absl::Span<const float>()
                          : absl::MakeConstSpan(weights.data() + b, n),
          ImplicitPenalty(p, static_cast<int64_t>(n), n_other),
          p.implicit_weight, p.cg_steps, &scratch, solve->row(r).transpose());
    }
  });
}

// RMSE of p_u . q_i against the targets over the observed pairs: how well
// the factors fit the interactions (the unobserved part is not counted).
double ObservedFit(const SparseRows& by_user, const std::vector<float>& targets,
                   const Model& m) {
  double se = 0;
  for (int32_t u = 0; u < by_user.rows(); ++u) {
    for (int64_t k = by_user.offsets[u]; k < by_user.offsets[u + 1]; ++k) {
      const double e = targets[k] - m.user_factors.row(u).dot(
                                        m.item_factors.row(by_user.cols[k]));
      se += e * e;
    }
  }
  return std::sqrt(se / std::max<size_t>(1, by_user.cols.size()));
}

}  // namespace

void TrainImplicit(const SparseRows& by_user, const SparseRows& by_item,
                   int threads, const TrainOptions& options,
                   const std::function<void(int, double)>& report, Model* m) {
  const Hyperparameters& p = m->params;
  std::mt19937_64 rng(p.seed);
  std::normal_distribution<float> gauss(0.0f, p.init_std);
  for (int64_t i = 0; i < m->user_factors.size(); ++i) {
    m->user_factors.data()[i] = gauss(rng);
  }
  for (int64_t i = 0; i < m->item_factors.size(); ++i) {
    m->item_factors.data()[i] = gauss(rng);
  }
  auto targets_of = [&](const SparseRows& rows) {
    std::vector<float> t(rows.values.size());
    for (size_t j = 0; j < t.size(); ++j) {
      t[j] = ImplicitTarget(p, *m, rows.values[j]);
    }
    return t;
  };
  auto weights_of = [&](const SparseRows& rows) {
    std::vector<float> w;
    if (p.confidence_alpha > 0) {
      w.resize(rows.values.size());
      for (size_t j = 0; j < w.size(); ++j) {
        w[j] = ImplicitConfidence(p, rows.values[j]);
      }
    }
    return w;
  };
  const std::vector<float> user_targets = targets_of(by_user);
  const std::vector<float> item_targets = targets_of(by_item);
  const std::vector<float> user_weights = weights_of(by_user);
  const std::vector<float> item_weights = weights_of(by_item);
  for (int epoch = 1; epoch <= p.epochs; ++epoch) {
    HalfStep(by_item, item_targets, item_weights, m->user_factors, p, threads,
             &m->item_factors);
    HalfStep(by_user, user_targets, user_weights, m->item_factors, p, threads,
             &m->user_factors);
    if (report) report(epoch, ObservedFit(by_user, user_targets, *m));
    if (StopRequested(options)) break;
  }
}

}  // namespace internal
}  // namespace recsys
