#include "models/fold_in.h"

#include <cmath>

#include "Eigen/Cholesky"
#include "absl/strings/str_cat.h"
#include "models/bayes.h"
#include "models/ials.h"

namespace recsys {
namespace internal {

void SolveBiasedRow(const RowMatrix& other_factors,
                    const Eigen::VectorXf& other_bias, float offset,
                    absl::Span<const int32_t> cols,
                    absl::Span<const float> values, float reg, float reg_bias,
                    SolveScratch* s, float* bias, float* out) {
  const int64_t n = static_cast<int64_t>(cols.size());
  const int64_t k = other_factors.cols();
  Eigen::Map<Eigen::VectorXf> vec(out, k);
  if (n == 0) {
    *bias = 0;
    vec.setZero();
    return;
  }
  // Y holds one column per rating, [1, q]: column-major so each is contiguous.
  s->y.resize(k + 1, n);
  s->b.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    s->y(0, j) = 1.0f;
    s->y.col(j).tail(k) = other_factors.row(cols[j]).transpose();
    s->b[j] = values[j] - offset - other_bias[cols[j]];
  }
  s->a.setZero(k + 1, k + 1);
  s->a.selfadjointView<Eigen::Lower>().rankUpdate(s->y);
  const float nf = static_cast<float>(n);
  s->a(0, 0) += nf * reg_bias;
  for (int64_t f = 1; f <= k; ++f) s->a(f, f) += nf * reg;
  s->x.noalias() = s->y * s->b;
  // With reg, reg_bias > 0 the matrix is positive definite; LLT on the lower
  // triangle is the cheapest exact solve.
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>, Eigen::Lower> llt(s->a);
  llt.solveInPlace(s->x);
  *bias = s->x[0];
  vec = s->x.tail(k);
}

}  // namespace internal

namespace {

// The solve shared by both entry points: `cols` index `other_factors` and
// `other_bias`.
FoldInResult FoldInRows(const Model& model, bool user_side,
                        const RowMatrix& other_factors,
                        const Eigen::VectorXf& other_bias,
                        absl::Span<const int32_t> cols,
                        absl::Span<const float> values) {
  FoldInResult result;
  result.factors = Eigen::VectorXf::Zero(other_factors.cols());
  if (other_factors.cols() == 0) {
    // Bias-only kinds: the baseline's ridge estimate.
    double sum = 0;
    for (size_t j = 0; j < cols.size(); ++j) {
      sum += values[j] - model.mu - other_bias[cols[j]];
    }
    const float reg = user_side ? model.params.baseline_reg_user
                                : model.params.baseline_reg_item;
    result.bias = static_cast<float>(sum / (reg + cols.size()));
    return result;
  }
  internal::SolveScratch scratch;
  const Hyperparameters& p = model.params;
  if (model.kind == ModelKind::kIals) {
    // Ranking vector from the interactions (values only say "rated"); the
    // bias, for predicted ratings, as the baseline fits it.
    double sum = 0;
    for (size_t j = 0; j < cols.size(); ++j) {
      sum += values[j] - model.mu - other_bias[cols[j]];
    }
    const float breg = user_side ? p.baseline_reg_user : p.baseline_reg_item;
    result.bias = static_cast<float>(sum / (breg + cols.size()));
    const Eigen::MatrixXf& gram = user_side ? model.item_gram : model.user_gram;
    const int64_t n_other = user_side ? model.num_items() : model.num_users();
    internal::SolveImplicitRow(other_factors, gram, cols, values, p,
                               model.scale, n_other, &scratch,
                               result.factors.data());
    return result;
  }
  if (model.kind == ModelKind::kHybrid) {
    // The ranking part as iALS solves it, the rating part as Bayesian MF.
    const int32_t r = model.rank_cols();
    const Eigen::MatrixXf& gram = user_side ? model.item_gram : model.user_gram;
    const int64_t n_other = user_side ? model.num_items() : model.num_users();
    internal::SolveImplicitRow(other_factors.leftCols(r), gram, cols, values,
                               RankingPart(p), model.scale, n_other, &scratch,
                               result.factors.data());
    internal::FoldInBayes(
        model, user_side, other_factors.rightCols(model.factors() - r),
        other_bias, cols, values, &result.bias, result.factors.data() + r);
    return result;
  }
  if (model.kind == ModelKind::kBayes) {
    internal::FoldInBayes(model, user_side, other_factors, other_bias, cols,
                          values, &result.bias, result.factors.data());
    return result;
  }
  internal::SolveBiasedRow(
      other_factors, other_bias, model.mu, cols, values,
      p.fold_in_reg > 0 ? p.fold_in_reg : p.reg,
      p.fold_in_reg_bias > 0 ? p.fold_in_reg_bias : p.reg_bias, &scratch,
      &result.bias, result.factors.data());
  return result;
}

absl::StatusOr<FoldInResult> FoldIn(const Model& model,
                                    absl::Span<const IndexedRating> ratings,
                                    bool user_side) {
  const RowMatrix& other_factors =
      user_side ? model.item_factors : model.user_factors;
  const Eigen::VectorXf& other_bias =
      user_side ? model.item_bias : model.user_bias;
  const int64_t limit = other_bias.size();
  std::vector<int32_t> cols;
  std::vector<float> values;
  cols.reserve(ratings.size());
  values.reserve(ratings.size());
  for (const IndexedRating& r : ratings) {
    if (r.index < 0 || r.index >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat(user_side ? "item" : "user", " index ", r.index,
                       " outside the model (", limit, ")"));
    }
    if (!std::isfinite(r.value)) {
      return absl::InvalidArgumentError("rating value is not finite");
    }
    cols.push_back(r.index);
    values.push_back(r.value);
  }
  return FoldInRows(model, user_side, other_factors, other_bias, cols, values);
}

}  // namespace

absl::StatusOr<FoldInResult> FoldInUser(
    const Model& model, absl::Span<const IndexedRating> ratings) {
  return FoldIn(model, ratings, /*user_side=*/true);
}

absl::StatusOr<FoldInResult> FoldInItem(
    const Model& model, absl::Span<const IndexedRating> ratings) {
  return FoldIn(model, ratings, /*user_side=*/false);
}

FoldInResult FoldInGathered(const Model& model, bool user_side,
                            const RowMatrix& factors,
                            const Eigen::VectorXf& bias,
                            absl::Span<const float> values) {
  std::vector<int32_t> cols(values.size());
  for (size_t j = 0; j < cols.size(); ++j) cols[j] = static_cast<int32_t>(j);
  return FoldInRows(model, user_side, factors, bias, cols, values);
}

}  // namespace recsys
