#include "models/fold_in.h"

#include <algorithm>
#include <cmath>

#include "Eigen/Cholesky"
#include "absl/strings/str_cat.h"
#include "models/bayes.h"
#include "models/evaluation.h"
#include "models/ials.h"

namespace recsys {
namespace internal {
namespace {

// The dense kernels of the solve, for the sizes fold-in meets (d = factors
// + 1, tens to a few hundred). Matrices are column-major with a leading
// dimension `ld` that is a multiple of kTileRows, and rows d..ld-1 of every
// column that is read are zero, so a tile never needs a remainder loop.
// Eigen's LLT and its symmetric product spend most of their time in block
// bookkeeping at these sizes; these measured 3x (factorisation) and up to
// 1.4x (product) faster with AVX2/AVX-512, and as fast without.
constexpr int64_t kTileRows = 16;
constexpr int64_t kTileCols = 4;

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The 16 x 4 block c[r + j * ldc] (r < 16, j < 4) becomes
// sign * sum_k x[r + k * ldx] * z[j + k * ldz], or has it added when
// kAccumulate. The 64 sums are four named 16-float accumulators, so the
// compiler keeps them in registers while k runs.
template <bool kAccumulate>
inline void Tile(const float* __restrict x, int64_t ldx,
                 const float* __restrict z, int64_t ldz, int64_t kk,
                 float* __restrict c, int64_t ldc, float sign) {
  float a0[kTileRows], a1[kTileRows], a2[kTileRows], a3[kTileRows];
  for (int64_t r = 0; r < kTileRows; ++r) {
    a0[r] = 0.0f;
    a1[r] = 0.0f;
    a2[r] = 0.0f;
    a3[r] = 0.0f;
  }
  for (int64_t k = 0; k < kk; ++k) {
    const float* xk = x + k * ldx;
    const float* zk = z + k * ldz;
    const float z0 = zk[0], z1 = zk[1], z2 = zk[2], z3 = zk[3];
    for (int64_t r = 0; r < kTileRows; ++r) {
      const float v = xk[r];
      a0[r] += v * z0;
      a1[r] += v * z1;
      a2[r] += v * z2;
      a3[r] += v * z3;
    }
  }
  float* c0 = c;
  float* c1 = c + ldc;
  float* c2 = c + 2 * ldc;
  float* c3 = c + 3 * ldc;
  for (int64_t r = 0; r < kTileRows; ++r) {
    if (kAccumulate) {
      c0[r] += sign * a0[r];
      c1[r] += sign * a1[r];
      c2[r] += sign * a2[r];
      c3[r] += sign * a3[r];
    } else {
      c0[r] = sign * a0[r];
      c1[r] = sign * a1[r];
      c2[r] = sign * a2[r];
      c3[r] = sign * a3[r];
    }
  }
}

#if defined(__AVX2__) || defined(__AVX512F__)
// The lower triangle (by whole tiles: some entries above the diagonal are
// written too) of a = y y^T, for y with d rows (ld_y apart, zero-padded)
// and n columns. `a` has ld rows and at least RoundUp(d, kTileCols)
// columns.
void LowerGram(const float* y, int64_t ld_y, int64_t n, int64_t d, float* a,
               int64_t ld) {
  for (int64_t c0 = 0; c0 < d; c0 += kTileCols) {
    for (int64_t i0 = c0 / kTileRows * kTileRows; i0 < d; i0 += kTileRows) {
      Tile</*kAccumulate=*/false>(y + i0, ld_y, y + c0, ld_y, n,
                                  a + i0 + c0 * ld, ld, 1.0f);
    }
  }
}
#endif

// The lower triangle of y y^T (y: d rows used of its ld, n columns) into the
// padded `a` (whose top-left d x d block is `top`), with zeros in a's rows
// and columns past d where CholeskyInPlace's tiles read. The tiles win with
// AVX's fused multiply-adds; with SSE alone Eigen's product measured
// faster, so that build keeps it.
template <typename Top>
void Gram(const Eigen::MatrixXf& y, int64_t n, int64_t d, Eigen::MatrixXf* a,
          Top* top) {
#if defined(__AVX2__) || defined(__AVX512F__)
  (void)top;
  LowerGram(y.data(), y.rows(), n, d, a->data(), a->rows());
#else
  a->setZero();
  top->template selfadjointView<Eigen::Lower>().rankUpdate(
      y.topLeftCorner(d, n));
#endif
}

// Cholesky factorisation a = L L^T in place of a's lower triangle (d x d,
// leading dimension ld), left-looking by kTileCols columns: each group of
// columns takes the update from all finished columns as tiles, then is
// factored on its own. False when a pivot is not positive (the matrix is
// not positive definite). Writes garbage above the diagonal.
bool CholeskyInPlace(float* a, int64_t ld, int64_t d) {
  for (int64_t j = 0; j < d; j += kTileCols) {
    if (j > 0) {
      for (int64_t i0 = j / kTileRows * kTileRows; i0 < d; i0 += kTileRows) {
        Tile</*kAccumulate=*/true>(a + i0, ld, a + j, ld, j, a + i0 + j * ld,
                                   ld, -1.0f);
      }
    }
    const int64_t w = std::min(kTileCols, d - j);
    for (int64_t c = 0; c < w; ++c) {
      const int64_t jc = j + c;
      float* cc = a + jc * ld;
      for (int64_t p = 0; p < c; ++p) {
        const float* cp = a + (j + p) * ld;
        const float l = cp[jc];
        for (int64_t i = jc; i < d; ++i) cc[i] -= cp[i] * l;
      }
      const float pivot = cc[jc];
      if (!(pivot > 0)) return false;
      const float root = std::sqrt(pivot);
      cc[jc] = root;
      const float inv = 1.0f / root;
      for (int64_t i = jc + 1; i < d; ++i) cc[i] *= inv;
    }
  }
  return true;
}

// The part of a biased row's system that its ratings make: y_j = [1, q_j]
// as the columns of s->y (ld rows: the d used, then zeros, for the tiles),
// t_j = values[j] - offset - bias_j in s->b, and the lower triangle of
// Y Y^T in s->a (ld x ld or wider; Gram's layout). Returns ld.
int64_t BiasedGram(RowMatrixRef other_factors,
                   const Eigen::VectorXf& other_bias, float offset,
                   absl::Span<const int32_t> cols,
                   absl::Span<const float> values, SolveScratch* s) {
  const int64_t n = static_cast<int64_t>(cols.size());
  const int64_t k = other_factors.cols();
  const int64_t d = k + 1;
  const int64_t ld = RoundUp(d, kTileRows);
  s->y.resize(ld, n);
  s->b.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    float* yj = s->y.col(j).data();
    yj[0] = 1.0f;
    const float* q = other_factors.row(cols[j]).data();
    std::copy(q, q + k, yj + 1);
    std::fill(yj + d, yj + ld, 0.0f);
    s->b[j] = values[j] - offset - other_bias[cols[j]];
  }
  s->a.resize(ld, std::max(ld, RoundUp(d, kTileCols)));
  using Padded = Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
  Padded top(s->a.data(), d, d, Eigen::OuterStride<>(ld));
  Gram(s->y, n, d, &s->a, &top);
  return ld;
}

// Solves a x = x in place for the symmetric positive definite `a` (its
// lower triangle is read) by the tiled Cholesky above, or by Eigen's LLT when
// a pivot is not positive (a zero penalty).
void SolveSymmetric(const Eigen::MatrixXf& a, Eigen::VectorXf* x) {
  const int64_t d = a.rows();
  const int64_t ld = RoundUp(d, kTileRows);
  thread_local Eigen::MatrixXf padded;
  padded.setZero(ld, std::max(ld, RoundUp(d, kTileCols)));
  padded.topLeftCorner(d, d).triangularView<Eigen::Lower>() = a;
  using Padded = Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
  Padded l(padded.data(), d, d, Eigen::OuterStride<>(ld));
  if (CholeskyInPlace(padded.data(), ld, d)) {
    l.triangularView<Eigen::Lower>().solveInPlace(*x);
    l.triangularView<Eigen::Lower>().transpose().solveInPlace(*x);
    return;
  }
  Eigen::LLT<Eigen::MatrixXf, Eigen::Lower> llt(a);
  llt.solveInPlace(*x);
}

}  // namespace

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
  const int64_t d = k + 1;
  const int64_t ld =
      BiasedGram(other_factors, other_bias, offset, cols, values, s);
  using Padded = Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
  Padded a(s->a.data(), d, d, Eigen::OuterStride<>(ld));
  const float nf = static_cast<float>(n);
  s->a(0, 0) += nf * reg_bias;
  for (int64_t f = 1; f <= k; ++f) s->a(f, f) += nf * reg;
  s->x.noalias() = s->y.topRows(d) * s->b;
  // With reg, reg_bias > 0 the matrix is positive definite; Cholesky on the
  // lower triangle is the cheapest exact solve.
  if (CholeskyInPlace(s->a.data(), ld, d)) {
    a.triangularView<Eigen::Lower>().solveInPlace(s->x);
    a.triangularView<Eigen::Lower>().transpose().solveInPlace(s->x);
  } else {
    // Not positive definite (a zero penalty): what Eigen's LLT makes of it,
    // as before.
    Gram(s->y, n, d, &s->a, &a);
    s->a(0, 0) += nf * reg_bias;
    for (int64_t f = 1; f <= k; ++f) s->a(f, f) += nf * reg;
    s->x.noalias() = s->y.topRows(d) * s->b;
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXf, 0, Eigen::OuterStride<>>,
               Eigen::Lower>
        llt(a);
    llt.solveInPlace(s->x);
  }
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
  FoldInEquations eq(model, user_side);
  eq.AddRows(other_factors, other_bias, cols, values);
  return eq.Solve();
}

absl::StatusOr<FoldInResult> FoldIn(const Model& model,
                                    absl::Span<const IndexedRating> ratings,
                                    bool user_side) {
  const RowMatrix& other_factors =
      user_side ? model.item_factors : model.user_factors;
  const Eigen::VectorXf& other_bias =
      user_side ? model.item_bias : model.user_bias;
  const int64_t limit = other_bias.size();
  thread_local std::vector<int32_t> cols;
  thread_local std::vector<float> values;
  cols.clear();
  values.clear();
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

// The settings of the ranking columns (kinds that do not rank by rating).
Hyperparameters RankParams(const Model& m) {
  return m.kind == ModelKind::kHybrid ? RankingPart(m.params) : m.params;
}

// The target of one rating in the ranking part's right-hand side: iALS and
// PureSVD weigh it by its value; a popularity part counts relevant ones.
float RankTarget(const Model& m, const Hyperparameters& rp, float value) {
  if (m.ranking_kind() == ModelKind::kPopularity) {
    return value >= RelevanceThreshold(m.scale, m.feedback) ? 1.0f : 0.0f;
  }
  return internal::ImplicitTarget(rp, m, value);
}

}  // namespace

FoldInEquations::FoldInEquations(const Model& model, bool user_side)
    : model_(&model), user_side_(user_side) {
  if (model.factors() == 0) return;
  if (!model.ranks_by_rating()) {
    const int32_t r = model.rank_cols();
    gram_.setZero(r, r);
    rhs_.setZero(r);
    if (model.kind == ModelKind::kHybrid) {
      bayes_.Reset(model, user_side, model.factors() - r);
    }
  } else if (model.kind == ModelKind::kBayes) {
    bayes_.Reset(model, user_side, model.factors());
  } else {
    gram_.setZero(model.factors() + 1, model.factors() + 1);
    rhs_.setZero(model.factors() + 1);
  }
}

void FoldInEquations::Add(const float* factors, float bias, float value,
                          float sign) {
  const Model& m = *model_;
  n_ += sign > 0 ? 1 : -1;
  ++updates_;
  residual_ += sign * (static_cast<double>(value) - m.mu - bias);
  if (m.factors() == 0) return;
  if (!m.ranks_by_rating()) {
    const int32_t r = m.rank_cols();
    Eigen::Map<const Eigen::VectorXf> q(factors, r);
    const Hyperparameters rp = RankParams(m);
    // (Only iALS weighs the observed pairs apart from the rest, each by its
    // confidence.)
    float c = 1.0f;
    if (m.ranking_kind() == ModelKind::kIals) {
      c = internal::ImplicitConfidence(rp, value);
      gram_.selfadjointView<Eigen::Lower>().rankUpdate(q, sign * c);
    }
    rhs_ += (sign * c * RankTarget(m, rp, value)) * q;
    if (m.kind == ModelKind::kHybrid) {
      bayes_.Add(factors + r, m.mu + bias, value, sign);
    }
  } else if (m.kind == ModelKind::kBayes) {
    bayes_.Add(factors, m.mu + bias, value, sign);
  } else {
    // y = [1, q], kept in a per-thread buffer.
    thread_local Eigen::VectorXf y;
    y.resize(m.factors() + 1);
    y[0] = 1.0f;
    y.tail(m.factors()) =
        Eigen::Map<const Eigen::VectorXf>(factors, m.factors());
    gram_.selfadjointView<Eigen::Lower>().rankUpdate(y, sign);
    rhs_ += (sign * (value - m.mu - bias)) * y;
  }
}

void FoldInEquations::AddRows(RowMatrixRef rows, const Eigen::VectorXf& bias,
                              absl::Span<const int32_t> cols,
                              absl::Span<const float> values) {
  const Model& m = *model_;
  const int64_t n = static_cast<int64_t>(cols.size());
  n_ += n;
  updates_ += n;
  for (int64_t j = 0; j < n; ++j) {
    residual_ += static_cast<double>(values[j]) - m.mu - bias[cols[j]];
  }
  if (m.factors() == 0 || n == 0) return;
  thread_local internal::SolveScratch s;
  if (!m.ranks_by_rating()) {
    const int32_t r = m.rank_cols();
    const Hyperparameters p = RankParams(m);
    s.y.resize(r, n);
    s.b.resize(n);
    const bool ials = m.ranking_kind() == ModelKind::kIals;
    for (int64_t j = 0; j < n; ++j) {
      // With confidence c: sqrt(c) q in the Gram, so that Y Y^T sums
      // c q q^T and Y b sums c t q.
      const float root =
          ials ? std::sqrt(internal::ImplicitConfidence(p, values[j])) : 1.0f;
      s.y.col(j) = root * rows.row(cols[j]).head(r).transpose();
      s.b[j] = root * RankTarget(m, p, values[j]);
    }
    if (ials) gram_.selfadjointView<Eigen::Lower>().rankUpdate(s.y);
    rhs_.noalias() += s.y * s.b;
    if (m.kind == ModelKind::kHybrid) {
      for (int64_t j = 0; j < n; ++j) {
        bayes_.Add(rows.row(cols[j]).data() + r, m.mu + bias[cols[j]],
                   values[j], 1.0f);
      }
    }
  } else if (m.kind == ModelKind::kBayes) {
    for (int64_t j = 0; j < n; ++j) {
      bayes_.Add(rows.row(cols[j]).data(), m.mu + bias[cols[j]], values[j],
                 1.0f);
    }
  } else {
    // The tiled Gram product, as a batch: n rank-one updates measured 3x
    // slower (46 against 14 us for 100 ratings at 64 factors).
    const int64_t d = m.factors() + 1;
    const int64_t ld = internal::BiasedGram(rows, bias, m.mu, cols, values, &s);
    Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>> top(
        s.a.data(), d, d, Eigen::OuterStride<>(ld));
    gram_.triangularView<Eigen::Lower>() += top;
    rhs_.noalias() += s.y.topRows(d) * s.b;
  }
}

FoldInResult FoldInEquations::Solve() const {
  const Model& m = *model_;
  const Hyperparameters& p = m.params;
  FoldInResult result;
  result.factors = Eigen::VectorXf::Zero(m.factors());
  const float reg_bias = user_side_ ? p.baseline_reg_user : p.baseline_reg_item;
  const float baseline_bias =
      static_cast<float>(residual_ / (reg_bias + static_cast<double>(n_)));
  if (m.factors() == 0) {
    result.bias = baseline_bias;
    return result;
  }
  const int64_t n_other = user_side_ ? m.num_items() : m.num_users();
  thread_local Eigen::MatrixXf a;
  thread_local Eigen::VectorXf x;
  if (!m.ranks_by_rating()) {
    const Hyperparameters rp = RankParams(m);
    const Eigen::MatrixXf& gram = user_side_ ? m.item_gram : m.user_gram;
    if (n_ > 0) {  // else zero, as training has it
      switch (m.ranking_kind()) {
        case ModelKind::kPuresvd:
          // The least-squares projection of the row (zeros where unrated)
          // onto the other side's factors: (Q^T Q)^-1 Q^T t.
          a = gram;
          x = rhs_;
          internal::SolveSymmetric(a, &x);
          break;
        case ModelKind::kPopularity:
          // A user takes every item's count as it is; an item's count is
          // its relevant ratings.
          x = user_side_ ? Eigen::VectorXf::Ones(1) : rhs_;
          break;
        default:
          a = gram_;
          a.noalias() += rp.implicit_weight * gram;
          a.diagonal().array() += internal::ImplicitPenalty(rp, n_, n_other);
          x = rhs_;
          internal::SolveSymmetric(a, &x);
          break;
      }
      result.factors.head(m.rank_cols()) = x;
    }
    if (m.kind != ModelKind::kHybrid) {
      result.bias = baseline_bias;
    } else {
      bayes_.Solve(&result.bias, result.factors.data() + m.rank_cols());
    }
    return result;
  }
  if (m.kind == ModelKind::kBayes) {
    bayes_.Solve(&result.bias, result.factors.data());
    return result;
  }
  if (n_ <= 0) return result;  // zero, as SolveBiasedRow has it
  const float nf = static_cast<float>(n_);
  a = gram_;
  a(0, 0) += nf * (p.fold_in_reg_bias > 0 ? p.fold_in_reg_bias : p.reg_bias);
  a.diagonal().tail(m.factors()).array() +=
      nf * (p.fold_in_reg > 0 ? p.fold_in_reg : p.reg);
  x = rhs_;
  internal::SolveSymmetric(a, &x);
  result.bias = x[0];
  result.factors = x.tail(m.factors());
  return result;
}

size_t FoldInEquations::bytes() const {
  return sizeof(*this) +
         static_cast<size_t>(gram_.size() + rhs_.size()) * sizeof(float) +
         bayes_.bytes();
}

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
  thread_local std::vector<int32_t> cols;
  cols.resize(values.size());
  for (size_t j = 0; j < cols.size(); ++j) cols[j] = static_cast<int32_t>(j);
  return FoldInRows(model, user_side, factors, bias, cols, values);
}

}  // namespace recsys
