// Fold-in: the bias and factor vector of one user (or item) from their
// ratings, with everything else in the model held fixed.
//
// For a user with ratings {(i, r)}, x = [b_u, p_u] solves the regularised
// least-squares problem ALS solves for that row:
//   min  sum_i (r - mu - b_i - x . [1, q_i])^2
//        + n * (reg_bias * b_u^2 + reg * |p_u|^2)
// (with the model's fold_in_reg / fold_in_reg_bias when set)
// i.e. (Y^T Y + n * diag(reg_bias, reg, ..., reg)) x = Y^T t with rows
// y_i = [1, q_i] and targets t_i = r - mu - b_i. Items are symmetric. Models
// without factors fit the bias alone with the baseline's ridge penalty.
//
//   std::vector<IndexedRating> mine = {{item, 4.0f}, ...};
//   RECSYS_ASSIGN_OR_RETURN(FoldInResult row, FoldInUser(model, mine));
//   float r = model.mu + row.bias + model.item_bias[i] +
//             row.factors.dot(model.item_factors.row(i));
#ifndef RECSYS_MODELS_FOLD_IN_H_
#define RECSYS_MODELS_FOLD_IN_H_

#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "models/bayes.h"
#include "models/model.h"

namespace recsys {

// A rating against a row of the other side: (item, value) for a user,
// (user, value) for an item.
struct IndexedRating {
  int32_t index = 0;
  float value = 0;
};

struct FoldInResult {
  float bias = 0;
  Eigen::VectorXf factors;  // [model.factors()]
};

// Fails with INVALID_ARGUMENT on an index outside the model or a non-finite
// value. An empty list gives a zero bias and zero vector.
absl::StatusOr<FoldInResult> FoldInUser(
    const Model& model, absl::Span<const IndexedRating> ratings);
absl::StatusOr<FoldInResult> FoldInItem(
    const Model& model, absl::Span<const IndexedRating> ratings);

// Fold-in against rows the caller gathered: row j of `factors` and entry j
// of `bias` belong to the item (or user, when !user_side) rated values[j].
// For a server whose catalogue has grown past the trained model. Uses the
// model's penalties (and, for models without factors, the baseline's).
FoldInResult FoldInGathered(const Model& model, bool user_side,
                            const RowMatrix& factors,
                            const Eigen::VectorXf& bias,
                            absl::Span<const float> values);

// The normal equations behind one row's fold-in, kept so that ratings can
// be added, replaced or removed one at a time (O(k^2) each, against
// rebuilding from all of the row's ratings) and the row solved again: the
// server keeps them for recently active users, so a Rate costs one update
// and one factorisation (O(k^3 / 6); for kHybrid, 32 ranking columns and
// 48 nine-number systems). Solve() gives what FoldInGathered gives for the
// same ratings, up to float rounding.
//
//   FoldInEquations eq(model, /*user_side=*/true);
//   for (auto [i, r] : ratings)
//     eq.Add(model.item_factors.row(i).data(), model.item_bias[i], r);
//   eq.Add(q_old, b_old, old_value, -1.0f);  // a re-rating: out with the old
//   eq.Add(q_new, b_new, new_value);
//   FoldInResult row = eq.Solve();
class FoldInEquations {
 public:
  // No ratings yet, for `model`'s users (user_side) or items. `model` must
  // outlive the equations.
  FoldInEquations(const Model& model, bool user_side);

  // Adds (sign = +1) the rating `value` of the counterpart whose row is
  // `factors` (model.factors() floats) and bias `bias`, or removes (-1) one
  // added before.
  void Add(const float* factors, float bias, float value, float sign = 1.0f);
  // Adds many ratings at once, as fast as a solve from scratch: rating j is
  // values[j] against row cols[j] of `rows` and entry cols[j] of `bias`.
  void AddRows(RowMatrixRef rows, const Eigen::VectorXf& bias,
               absl::Span<const int32_t> cols, absl::Span<const float> values);

  FoldInResult Solve() const;

  int64_t count() const { return n_; }
  // Add calls so far: rounding error grows with them, so a long-lived
  // holder rebuilds the equations from the ratings now and then.
  int64_t updates() const { return updates_; }
  // Heap bytes held, for a cache's memory bound.
  size_t bytes() const;

 private:
  const Model* model_;
  bool user_side_;
  int64_t n_ = 0;        // ratings
  int64_t updates_ = 0;  // Add calls
  double residual_ = 0;  // sum of value - mu - bias, for the baseline bias
  // Rating-predicting kinds with factors: sum of y y^T (lower triangle) and
  // of t y, y = [1, q], t = value - mu - bias. Ranking kinds: sum of q q^T
  // and of target * q over the ranking columns.
  Eigen::MatrixXf gram_;
  Eigen::VectorXf rhs_;
  internal::BayesEquations bayes_;  // kBayes, and kHybrid's rating part
};

namespace internal {

// The shared solve behind fold-in and each ALS half-step. `other_factors`
// and `other_bias` are the fixed side; `offset` is mu. Writes the bias to
// *bias and the vector to `out` (length other_factors.cols()). `scratch`
// avoids reallocation across calls. Indices must be valid.
struct SolveScratch {
  Eigen::MatrixXf y;
  Eigen::MatrixXf a;
  Eigen::VectorXf b;
  Eigen::VectorXf x;
};
void SolveBiasedRow(const RowMatrix& other_factors,
                    const Eigen::VectorXf& other_bias, float offset,
                    absl::Span<const int32_t> cols,
                    absl::Span<const float> values, float reg, float reg_bias,
                    SolveScratch* scratch, float* bias, float* out);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_MODELS_FOLD_IN_H_
