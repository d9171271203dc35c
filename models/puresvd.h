// PureSVD (Cremonesi, Koren & Turrin, "Performance of Recommender Algorithms
// on Top-N Recommendation Tasks", RecSys 2010): the prototype's method made
// correct. The user x item matrix A holds a target for every rated pair
// (internal::ImplicitTarget of the rating: the raw value scaled, or 1 for
// every interaction with value_weight 0) and zeros elsewhere; its rank-k
// truncated SVD A ~ U S V^T gives
//
//   item factors  q_i = row i of V          (orthonormal columns)
//   user factors  p_u = row u of A V        (= U S: the projection)
//   score(u, i)   = p_u . q_i               (row u of A V V^T)
//
// so a user's vector is a plain function of their row: fold-in is the exact
// projection (V^T V)^-1 V^T t_u, and a new rating updates a user at once.
// Items fold in the same way against the users, (P^T P)^-1 P^T t_i.
//
// The SVD is randomized (Halko, Martinsson & Tropp, "Finding Structure with
// Randomness", SIAM Review 2011, Algorithms 4.4 and 5.1): a Gaussian sketch
// of k + 10 columns, `epochs` power iterations, each re-orthonormalised, then
// a small dense SVD. The sparse products run in parallel over rows.
//
//   Hyperparameters p = DefaultHyperparameters(ModelKind::kPuresvd);
//   p.factors = 20;
//   RECSYS_ASSIGN_OR_RETURN(Model m, TrainModel(data, ModelKind::kPuresvd,
//                                               p, {}));
#ifndef RECSYS_MODELS_PURESVD_H_
#define RECSYS_MODELS_PURESVD_H_

#include <cstdint>

#include "Eigen/Core"
#include "models/model.h"
#include "models/ratings.h"

namespace recsys {
namespace internal {

// The k leading singular triplets of a sparse matrix.
struct TruncatedSvd {
  Eigen::MatrixXd u;      // [rows x k], orthonormal columns
  Eigen::VectorXd sigma;  // [k], non-increasing
  Eigen::MatrixXd v;      // [cols x k], orthonormal columns
};

// The rank-k randomized SVD of the matrix whose entries are `by_row`'s
// values (`by_col` holds the same entries by column). k is capped at the
// smaller side. Deterministic for a given seed and any thread count.
TruncatedSvd RandomizedSvd(const SparseRows& by_row, const SparseRows& by_col,
                           int32_t k, int32_t power_iterations, uint64_t seed,
                           int threads);

// Fills the factors of a kPuresvd model whose biases are already fitted (its
// `factors` columns, sized by InitModelFrom) from the rating rows.
void TrainPureSvd(const SparseRows& by_user, const SparseRows& by_item,
                  int threads, Model* m);

}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_MODELS_PURESVD_H_
