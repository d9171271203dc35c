// Implicit ALS (Hu, Koren & Volinsky 2008, in the form of Rendle et al.
// 2021, "Revisiting the Performance of iALS"): every observed (user, item)
// pair is pulled towards 1, every pair at all towards 0 with weight
// `implicit_weight`, and each row's L2 penalty scales with how much it sees.
// For a user with items I_u, with item factors Q fixed:
//
//   (sum_{i in I_u} q_i q_i^T + a0 * Q^T Q + reg_u * I) p_u =
//       sum_{i in I_u} t_ui q_i
//   reg_u = reg * (|I_u| + a0 * n_items)^reg_exponent
//
// where the target t_ui is 1, or less for low ratings when value_weight > 0.
// With confidence_alpha > 0 (implicit feedback: counts), each observed term
// q_i q_i^T and t_ui q_i is weighted by c_ui = 1 + alpha log(1 + r_ui / eps)
// (ImplicitConfidence), Hu, Koren & Volinsky's confidence.
//
// Q^T Q is computed once per half-step, so a row costs O(|I_u| k + k^2) per
// conjugate-gradient step in training; fold-in solves the same system
// exactly (Cholesky).
//
//   Model m;  // kind kIals, with item_gram filled (ComputeGrams)
//   FoldInResult row = *FoldInUser(m, ratings);  // the exact solve
#ifndef RECSYS_MODELS_IALS_H_
#define RECSYS_MODELS_IALS_H_

#include <cstdint>

#include "Eigen/Core"
#include "absl/types/span.h"
#include "models/fold_in.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/train.h"

namespace recsys {
namespace internal {

// reg * (n_row + implicit_weight * n_other)^reg_exponent.
float ImplicitPenalty(const Hyperparameters& p, int64_t n_row, int64_t n_other);

// The target of an observed pair rated `value` in `m` (see value_weight):
// 1 for every pair of implicit feedback.
float ImplicitTarget(const Hyperparameters& p, const Model& m, float value);

// The weight of an observed pair of count or weight `value`: 1, or with
// confidence_alpha > 0, 1 + alpha * log(1 + value / eps).
float ImplicitConfidence(const Hyperparameters& p, float value);

// Trains the factors of a kIals model whose biases (for predicted ratings)
// are already fitted. `by_user` / `by_item` are the rating rows.
void TrainImplicit(const SparseRows& by_user, const SparseRows& by_item,
                   int threads, const TrainOptions& options,
                   const std::function<void(int epoch, double loss)>& report,
                   Model* m);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_MODELS_IALS_H_
