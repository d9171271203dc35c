// Bayesian biased matrix factorisation by Gibbs sampling (Salakhutdinov &
// Mnih 2008, "Bayesian Probabilistic Matrix Factorization using MCMC", with
// biases as in Rendle's MCMC for factorization machines).
//
// Each user row x_u = [b_u, p_u] and item row y_i = [b_i, q_i] (k + 1
// numbers) has a Gaussian prior whose mean and precision carry a
// Normal-Wishart hyperprior, and ratings are Gaussian with a precision alpha
// that has a Gamma prior:
//
//   r_ui ~ N(mu + b_u + b_i + p_u . q_i, 1 / alpha)
//   x_u ~ N(mu_U, Lambda_U^-1),  (mu_U, Lambda_U) ~ NW(0, 2, I, k + 1)
//
// One sweep samples the user hyper-parameters, every user row given the
// items, the item hyper-parameters, every item row, then alpha. After
// `burn_in` sweeps, `samples` sweeps spread over the rest are kept, and the
// prediction is the mean over kept samples s of
// mu + b_u^s + b_i^s + p_u^s . q_i^s.
//
// Serving form. The mean over samples is one dot product of concatenated
// rows, so the model is an ordinary Model: user_bias and item_bias hold the
// mean biases, and each factor row is S blocks of k + 2 numbers,
//   user block s: [p_u^s, b_u^s - mean b_u, 1] / sqrt(S)
//   item block s: [q_i^s, 1, b_i^s - mean b_i] / sqrt(S)
// whose dot product over all blocks is mean_s(p.q) (the bias deviations
// average to zero). Each row therefore keeps every sample's bias, and fold-in
// can solve sample by sample.
//
// Fold-in (a new user's row with the items fixed, or the reverse) is each
// kept sample's conditional posterior mean,
//   (Lambda^s + alpha^s sum z z^T) x = Lambda^s mu^s + alpha^s sum t z,
// z = [1, q^s], t = r - mu - b_i^s, written back in the serving form. The
// per-sample hyper-parameters live in Model::posterior.
#ifndef RECSYS_MODELS_BAYES_H_
#define RECSYS_MODELS_BAYES_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "Eigen/Core"
#include "absl/types/span.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/train.h"

namespace recsys {
namespace internal {

// Trains a kBayes model whose id maps and mu are set (InitModelFrom). Calls
// `report(sweep, train_rmse_of_this_sample, validation_rmse_of_the_mean)`
// after every sweep (validation < 0 without options.validation).
void TrainBayes(const RatingData& data, const SparseRows& by_user,
                const SparseRows& by_item, int threads,
                const TrainOptions& options,
                const std::function<void(int, double, double)>& report,
                Model* m);

// The S per-sample systems of a Bayesian fold-in (see the top of this file),
// kept so that ratings can be added or removed one at a time. They are
// stored side by side with the sample index innermost, so every step is one
// vector operation across samples: a[(r (r + 1) / 2 + c) * S + s] is entry
// (r, c), c <= r, of sample s's matrix (the lower triangle, packed) and
// v[r * S + s] entry r of its right-hand side. In float: fold-in is on the
// serving path, and a (k + 1)-square system in float is well within precision.
class BayesEquations {
 public:
  // The prior's part alone (no ratings) for the side `user_side` of `m`,
  // whose Bayesian part has `cols` serving-form columns. `m` must outlive
  // the equations.
  void Reset(const Model& m, bool user_side, int64_t cols);
  // Adds sign (+1 or -1) times the rating `value` against the counterpart
  // whose serving-form row is `row` (`cols` floats) and whose offset (mu
  // plus its mean bias) is `offset`.
  void Add(const float* row, float offset, float value, float sign);
  // Each sample's posterior mean, written in the serving form: the mean bias
  // to *bias and the row (`cols` floats) to `out`.
  void Solve(float* bias, float* out) const;
  size_t bytes() const;

 private:
  bool user_side_ = true;
  int64_t samples_ = 0, block_ = 0, k_ = 0, d_ = 0;
  float root_ = 1;  // sqrt(samples)
  const float* alpha_ = nullptr;
  std::vector<float> a_, v_;
};

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_MODELS_BAYES_H_
