// A trained factor model and what it needs to serve: biases, factors, id maps
// and the item catalogue.
//
// Every kind predicts r(u, i) = mu + b_u + b_i + p_u . q_i, clipped to the
// rating scale. Baselines simply have zero factor columns. Factors are
// row-major float matrices: user u's vector is user_factors.row(u), one
// contiguous run of `factors` floats (the layout the whole library assumes).
//
//   RECSYS_ASSIGN_OR_RETURN(Model m, TrainModel(data, params));
//   float r = m.Predict(u, i);
#ifndef RECSYS_MODELS_MODEL_H_
#define RECSYS_MODELS_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/ratings.h"

namespace recsys {

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A RowMatrix or a block of whole rows and adjacent columns of one, without
// a copy (e.g. the ranking columns of a kHybrid model).
using RowMatrixRef = Eigen::Ref<const RowMatrix, 0, Eigen::OuterStride<>>;

// Numbers are stable: they are written into model files.
enum class ModelKind : uint32_t {
  kBaseline = 1,    // mu + b_u + b_i, biases fitted by regularised ALS
  kPopularity = 2,  // ranks by rating count; predicts like the baseline
  kSgd = 3,         // biased matrix factorisation trained by SGD
  kAls = 4,         // biased MF trained by ALS, weighted-lambda regularisation
  kIals = 5,        // implicit ALS (ranking): p_u . q_i scores "will interact";
                    // predicted ratings come from its baseline biases
  kBayes = 6,       // Bayesian biased MF by Gibbs sampling (models/bayes.h):
                    // factor rows hold every kept sample, concatenated
  kHybrid = 7,      // ranks by its ranking part (iALS unless
                    // params.rank_kind says PureSVD or popularity),
                    // predicts ratings by Bayesian MF: each factor row is
                    // [ranking part | Bayesian part]
  kPuresvd = 8,     // PureSVD (models/puresvd.h): ranks by the rank-k
                    // reconstruction of the zero-filled matrix; predicted
                    // ratings come from its baseline biases
};

absl::string_view ModelKindName(ModelKind kind);
absl::StatusOr<ModelKind> ParseModelKind(absl::string_view name);

// Training settings for every kind (fields a kind does not use are ignored).
// The defaults are the shipped defaults; docs/models.md gives the evidence.
struct Hyperparameters {
  int32_t factors = 128;         // length of p_u and q_i (sgd, als)
  int32_t epochs = 30;           // SGD epochs or ALS iterations
  float learning_rate = 0.015f;  // SGD step size at epoch 1
  float lr_decay = 0.97f;        // SGD step size multiplier per epoch
  float reg = 0.04f;             // L2 on factors: SGD per update; ALS and
                                 // fold-in as lambda * (ratings of the row)
  float reg_bias = 0.03f;        // L2 on biases, same convention as `reg`
  float init_std = 0.01f;        // std of the Gaussian factor initialisation
  // Baseline biases: ridge penalties (not scaled by counts), as in Koren's
  // baseline predictor; also used by kBaseline and kPopularity.
  float baseline_reg_item = 10.0f;
  float baseline_reg_user = 15.0f;
  // Fold-in penalties (same count-scaled convention as `reg`); 0 means "use
  // reg / reg_bias", which ALS needs so that fold-in reproduces its rows. SGD
  // fits its factors with early stopping rather than the exact penalty, so
  // an exact solve for one new row wants a stronger one.
  float fold_in_reg = 0.0f;
  float fold_in_reg_bias = 0.0f;
  // iALS (Rendle et al. 2021): weight of every unobserved (user, item) pair
  // pulled towards 0, the exponent of the frequency scaling of `reg`
  // (penalty reg * (n_row + implicit_weight * n_other)^reg_exponent), and
  // conjugate-gradient steps per row and iteration when training (fold-in
  // solves exactly).
  float implicit_weight = 0.0f;
  float reg_exponent = 1.0f;
  int32_t cg_steps = 3;
  // iALS: how much a low rating lowers an observed pair's target, from 1
  // (0 = every interaction counts alike) to 1 - value_weight at the bottom
  // of the scale: t = 1 - value_weight * (max - r) / (max - min).
  float value_weight = 0.0f;
  uint64_t seed = 42;  // all randomness derives from it
  // Bayesian MF: Gibbs sweeps discarded before the first kept sample
  // (`epochs` counts all sweeps), and samples kept (spread evenly over the
  // rest); each kept sample adds factors + 2 columns to the served rows.
  int32_t burn_in = 0;
  int32_t samples = 0;
  // kHybrid: the iALS ranking part's factors, iterations and penalty (its
  // other settings are implicit_weight, reg_exponent, value_weight and
  // cg_steps above); the Bayesian part uses factors, epochs, burn_in,
  // samples and init_std.
  int32_t rank_factors = 0;
  int32_t rank_epochs = 0;
  float rank_reg = 0.0f;
  // kHybrid: the kind of its ranking part, kIals, kPuresvd or kPopularity
  // (then one column: 1 for a user with ratings, the item's count of
  // relevant ratings for an item; see DefaultRelevanceThreshold).
  ModelKind rank_kind = ModelKind::kIals;
  // The weight w of a popularity prior added to every item's ranking score
  // (Model::rank_bias), w * log(1 + r_i) / log(1 + max_j r_j) for r_i the
  // item's relevant training ratings, or all of them for kinds that rank by
  // predicted rating (PriorMin); 0 = none. For those it turns "best rated"
  // into "most likely to be liked among what people pick" (kPopularity
  // ignores it).
  float popularity_weight = 0.0f;
  // iALS and PureSVD: a rating below this has target 0, an interaction
  // seen and not liked (0 = off: every rating's target follows
  // value_weight). Implicit feedback ignores both: every target is 1.
  float target_min = 0.0f;
  // iALS on implicit feedback (Hu, Koren & Volinsky 2008): an observed
  // pair of count or weight v weighs c = 1 + confidence_alpha *
  // log(1 + v / confidence_eps) where a plain observed pair weighs 1, so
  // twenty plays say more than one. 0 = every pair alike (as for ratings).
  float confidence_alpha = 0.0f;
  float confidence_eps = 1.0f;
};

// The settings of kHybrid's ranking part, as a model of kind
// hybrid.rank_kind would take them.
Hyperparameters RankingPart(const Hyperparameters& hybrid);
// The reverse: makes `rank`'s settings the ranking part of `hybrid` (its
// rank_* fields and the settings only a ranking part has).
void SetRankingPart(const Hyperparameters& rank, Hyperparameters* hybrid);

// kBayes (and kHybrid's Bayesian part): what fold-in needs from each kept
// Gibbs sample s, for rows x = [bias, factors] of d = factors + 1 numbers:
// the prior of user and item rows (mean and precision) and the rating noise
// precision alpha.
struct Posterior {
  int32_t samples = 0;
  Eigen::VectorXf alpha;     // [S]
  RowMatrix user_mean;       // [S x d]
  RowMatrix user_precision;  // [S*d x d], sample s in rows s*d .. s*d+d-1
  RowMatrix item_mean;       // [S x d]
  RowMatrix item_precision;  // [S*d x d]
};

// One candidate that model selection (models/selection.h) trained and
// scored on its validation split.
struct SelectionTrial {
  std::string candidate;  // kind and settings, e.g. "ials factors=64 ..."
  ModelKind kind = ModelKind::kBaseline;
  enum Part : int32_t { kRanking = 0, kRating = 1 };
  Part part = kRanking;  // which half of the served model it competed for
  int32_t rung = 0;      // successive-halving round, 0 first
  int64_t work = 0;      // budget units it spent (see SelectionOptions)
  double ndcg = -1;      // validation nDCG@10 (ranking part), -1 if unscored
  double rmse = -1;      // validation RMSE (rating part), -1 if unscored
  double seconds = 0;    // wall time of its fit and scoring
  bool chosen = false;   // this setting serves
};

// What selection tried and chose. Empty for a model trained exactly as
// told.
struct SelectionReport {
  std::vector<SelectionTrial> trials;  // in the order they finished
  int64_t budget = 0;                  // work units allowed
  int64_t work = 0;                    // work units spent
  double seconds = 0;                  // wall time of the whole selection
  int64_t validation_users = 0;        // users scored for nDCG@10
  int64_t validation_ratings = 0;      // held-out ratings
  std::string summary;                 // one line: what serves, and why
  bool empty() const { return trials.empty(); }
};

struct Model {
  ModelKind kind = ModelKind::kBaseline;
  Hyperparameters params;
  RatingScale scale;
  // Implicit: trained on counts or events; it ranks and predicts no
  // ratings (the server shows none). Only kinds that do not rank by rating
  // (and kPopularity) train on implicit feedback.
  Feedback feedback = Feedback::kExplicit;
  float mu = 0;                      // global mean of the training ratings
  Eigen::VectorXf user_bias;         // [num_users]
  Eigen::VectorXf item_bias;         // [num_items]
  RowMatrix user_factors;            // [num_users x factors]
  RowMatrix item_factors;            // [num_items x factors]
  std::vector<int32_t> item_counts;  // training ratings per item
  // The training ratings by user (item indices sorted, with values and
  // timestamps): what a user has already rated, so serving can exclude it,
  // fold-in can start from it and GetUser can list it.
  SparseRows user_ratings;
  IdMap users;
  IdMap items;
  std::vector<ItemInfo> item_info;  // [num_items]
  DataWatermark watermark;          // of the training data
  double train_seconds = 0;         // wall time of the fit
  // Serving: the last rating-log record this model already contains (its
  // ratings are in user_ratings); a server replays only later records.
  uint64_t log_sequence = 0;
  // RMSE on the held-out share of the last training run, -1 if none.
  double last_validation_rmse = -1;
  // How kind and params were chosen, when they were (models/selection.h).
  SelectionReport selection;

  int32_t num_users() const { return users.size(); }
  int32_t num_items() const { return items.size(); }
  int32_t factors() const { return static_cast<int32_t>(item_factors.cols()); }
  // Whether the ranking score is the predicted rating (explicit kinds), or a
  // preference score of its own (kIals, kPuresvd, kHybrid; kPopularity
  // ranks by counts and predicts like the baseline).
  bool ranks_by_rating() const {
    return kind != ModelKind::kIals && kind != ModelKind::kHybrid &&
           kind != ModelKind::kPuresvd;
  }
  // What produces the ranking columns: the kind itself, or a kHybrid's
  // ranking part.
  ModelKind ranking_kind() const {
    return kind == ModelKind::kHybrid ? params.rank_kind : kind;
  }
  // Factor columns [0, rank_cols()) give the ranking score p_u . q_i of the
  // kinds that do not rank by rating; columns [rating_col(), factors()) are
  // the factor term of the predicted rating (none for kIals, kPuresvd).
  int32_t rank_cols() const {
    return kind == ModelKind::kHybrid ? params.rank_factors : factors();
  }
  int32_t rating_col() const {
    if (kind == ModelKind::kHybrid) return params.rank_factors;
    return kind == ModelKind::kIals || kind == ModelKind::kPuresvd ? factors()
                                                                   : 0;
  }
  // The predicted rating (unclipped) of a user row against an item row,
  // each factors() floats.
  float RatingScore(float user_bias, const float* user_row, float item_bias,
                    const float* item_row) const {
    const int32_t c = rating_col(), n = factors() - c;
    float s = mu + user_bias + item_bias;
    if (n > 0) {
      // Eigen's dot sums in vector lanes; a plain loop must add in order.
      s += Eigen::Map<const Eigen::VectorXf>(user_row + c, n)
               .dot(Eigen::Map<const Eigen::VectorXf>(item_row + c, n));
    }
    return s;
  }
  // Added to item i's ranking score: the popularity prior of
  // params.popularity_weight, [num_items] or empty (zeros). Items added
  // after training have none. A kind that ranks by rating then ranks by
  // predicted rating + prior.
  Eigen::VectorXf rank_bias;
  // Q^T Q (and P^T P) over the ranking columns, for iALS fold-in, filled by
  // TrainModel and LoadModel via ComputeGrams; empty for other kinds.
  Eigen::MatrixXf item_gram;
  Eigen::MatrixXf user_gram;
  Posterior posterior;  // kBayes and kHybrid (of the Bayesian part)

  // Unclipped predicted rating for known indices.
  float Score(int32_t u, int32_t i) const {
    return RatingScore(user_bias[u], user_factors.row(u).data(), item_bias[i],
                       item_factors.row(i).data());
  }
  // Predicted rating; u or i may be -1 (unknown), in which case the missing
  // terms are dropped (cold start falls back to the biases).
  float Predict(int32_t u, int32_t i) const;
};

// Copies id maps, catalogue and scale from `data` and sizes the parameter
// arrays (zeros) for `factors` columns.
void InitModelFrom(const RatingData& data, ModelKind kind,
                   const Hyperparameters& params, int32_t factors, Model* m);
// Fills item_gram and user_gram for the kinds that rank by a score of their
// own (clears them otherwise).
void ComputeGrams(Model* m);

}  // namespace recsys

#endif  // RECSYS_MODELS_MODEL_H_
