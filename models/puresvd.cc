#include "models/puresvd.h"

#include <algorithm>
#include <random>

#include "Eigen/Householder"
#include "Eigen/QR"
#include "Eigen/SVD"
#include "base/parallel.h"
#include "models/ials.h"

namespace recsys {
namespace internal {
namespace {

using RowMatrixD =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// out = A x, A given by rows (out has A's rows, x has A's columns).
void SparseTimes(const SparseRows& a, const RowMatrixD& x, int threads,
                 RowMatrixD* out) {
  out->setZero(a.rows(), x.cols());
  ParallelChunks(a.rows(), threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      auto row = out->row(r);
      for (int64_t k = a.offsets[r]; k < a.offsets[r + 1]; ++k) {
        row += static_cast<double>(a.values[k]) * x.row(a.cols[k]);
      }
    }
  });
}

// The orthonormal basis of x's columns (thin Householder QR), in place.
void Orthonormalize(RowMatrixD* x) {
  const Eigen::Index n = x->rows(), l = x->cols();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(*x);
  *x = qr.householderQ() * Eigen::MatrixXd::Identity(n, l);
}

}  // namespace

TruncatedSvd RandomizedSvd(const SparseRows& by_row, const SparseRows& by_col,
                           int32_t k, int32_t power_iterations, uint64_t seed,
                           int threads) {
  const int64_t rows = by_row.rows(), cols = by_col.rows();
  k = static_cast<int32_t>(std::min<int64_t>({k, rows, cols}));
  // Ten extra columns catch most of what the k-th direction leaks into its
  // neighbours (Halko et al., section 4.2).
  const int64_t l = std::min<int64_t>({int64_t{k} + 10, rows, cols});
  threads = ResolveThreads(threads);
  RowMatrixD omega(cols, l);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  for (int64_t i = 0; i < omega.size(); ++i) omega.data()[i] = gauss(rng);
  RowMatrixD y, z;
  SparseTimes(by_row, omega, threads, &y);  // A omega
  Orthonormalize(&y);
  for (int32_t q = 0; q < power_iterations; ++q) {
    SparseTimes(by_col, y, threads, &z);  // A^T y
    Orthonormalize(&z);
    SparseTimes(by_row, z, threads, &y);  // A z
    Orthonormalize(&y);
  }
  // B = Q^T A, kept as its transpose A^T Q (cols x l); B^T = Q2 R2, and the
  // SVD of the small R2^T = Ur S W^T gives A ~ (Q Ur) S (Q2 W)^T.
  SparseTimes(by_col, y, threads, &z);
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(z);
  const Eigen::MatrixXd r2 =
      qr.matrixQR().topRows(l).triangularView<Eigen::Upper>();
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(
      r2.transpose(), Eigen::ComputeFullU | Eigen::ComputeFullV);
  TruncatedSvd out;
  out.sigma = svd.singularValues().head(k);
  out.u = y * svd.matrixU().leftCols(k);
  const Eigen::MatrixXd q2 =
      qr.householderQ() * Eigen::MatrixXd::Identity(cols, l);
  out.v = q2 * svd.matrixV().leftCols(k);
  return out;
}

void TrainPureSvd(const SparseRows& by_user, const SparseRows& by_item,
                  int threads, Model* m) {
  const Hyperparameters& p = m->params;
  // The matrix of targets, both ways round.
  SparseRows a = by_user, at = by_item;
  for (float& v : a.values) v = ImplicitTarget(p, *m, v);
  for (float& v : at.values) v = ImplicitTarget(p, *m, v);
  const TruncatedSvd svd =
      RandomizedSvd(a, at, p.factors, p.epochs, p.seed, threads);
  const int64_t k = svd.v.cols();
  m->item_factors.setZero();
  m->item_factors.leftCols(k) = svd.v.cast<float>();
  // Users by the projection itself, in float as fold-in computes it, so a
  // trained row and a folded-in one agree to rounding.
  ParallelChunks(a.rows(), ResolveThreads(threads),
                 [&](int64_t begin, int64_t end, int) {
                   for (int64_t u = begin; u < end; ++u) {
                     auto row = m->user_factors.row(u);
                     row.setZero();
                     for (int64_t j = a.offsets[u]; j < a.offsets[u + 1]; ++j) {
                       row += a.values[j] * m->item_factors.row(a.cols[j]);
                     }
                   }
                 });
}

}  // namespace internal
}  // namespace recsys
