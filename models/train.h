// Training every model kind from a RatingData.
//
//   Hyperparameters p = DefaultHyperparameters(ModelKind::kSgd);
//   TrainOptions opt;
//   opt.threads = 2;
//   opt.on_epoch = [](const EpochReport& r) { ... };
//   RECSYS_ASSIGN_OR_RETURN(Model m, TrainModel(data, ModelKind::kSgd, p,
//   opt));
//
// Kinds:
//  - kBaseline: mu + b_u + b_i, biases by alternating ridge regression.
//  - kPopularity: baseline predictions; ranks items by rating count.
//  - kSgd: biased MF by SGD. Lock-free in parallel by stratification: users
//    and items are shuffled into T groups each, making a T x T grid of blocks;
//    an epoch runs T strata, stratum s giving thread t the block
//    (t, (t + s) mod T). Blocks of one stratum share no user and no item, so
//    threads never touch the same factor row, and because each block is run
//    in a fixed order by one thread the result depends only on the seed and
//    the thread count, never on timing.
//  - kAls: biased MF by alternating least squares with weighted-lambda
//    regularisation (the penalty of a row scales with its rating count);
//    each half-step solves every row independently, in parallel. The last
//    half-step solves users, so user rows are exactly what fold-in computes.
#ifndef RECSYS_MODELS_TRAIN_H_
#define RECSYS_MODELS_TRAIN_H_

#include <cstdint>
#include <functional>
#include <optional>

#include "absl/status/statusor.h"
#include "models/model.h"
#include "models/ratings.h"

namespace recsys {

// The shipped defaults for `kind` (docs/models.md says how they were chosen).
Hyperparameters DefaultHyperparameters(ModelKind kind);

// Hyper-parameters a caller set; the rest take defaults (or, in model
// selection, are searched).
struct ParamOverrides {
  std::optional<int32_t> factors, epochs;
  std::optional<float> learning_rate, lr_decay, reg, reg_bias, init_std;
  std::optional<float> fold_in_reg, fold_in_reg_bias;
  std::optional<float> implicit_weight, reg_exponent;
  std::optional<int32_t> cg_steps;
  std::optional<int32_t> burn_in;
  std::optional<int32_t> samples;
  std::optional<float> value_weight;
  std::optional<int32_t> rank_factors;
  std::optional<int32_t> rank_epochs;
  std::optional<float> rank_reg;
  std::optional<float> popularity_weight, target_min;
  std::optional<float> confidence_alpha, confidence_eps;
  std::optional<uint64_t> seed;
};
// The defaults for `kind`, then every field `o` sets.
Hyperparameters ResolveParams(ModelKind kind, const ParamOverrides& o);

struct EpochReport {
  int epoch = 0;  // 1-based
  int epochs = 0;
  double train_rmse = 0;        // on the training ratings
  double validation_rmse = -1;  // < 0 when no validation set
  double elapsed_seconds = 0;   // since training started
};

struct TrainOptions {
  int threads = 0;  // 0 = one per hardware thread
  // Optional ratings scored after every epoch; they must use the same id
  // maps as the training data (RandomSplit guarantees it).
  const RatingData* validation = nullptr;
  std::function<void(const EpochReport&)> on_epoch;
  // Asked after every epoch (or sweep): once it returns true, training
  // stops and TrainModel fails with Cancelled.
  std::function<bool()> stop;
};

inline bool StopRequested(const TrainOptions& options) {
  return options.stop && options.stop();
}

// Fails with InvalidArgument when the fit diverged (NaN or infinite
// numbers in the result; TrainingDiverged tells that case apart), and with
// Cancelled when options.stop asked it to stop.
absl::StatusOr<Model> TrainModel(const RatingData& data, ModelKind kind,
                                 const Hyperparameters& params,
                                 const TrainOptions& options);
bool TrainingDiverged(const absl::Status& status);

// Whether `kind` trains on implicit feedback: the kinds that rank by a
// score of their own (ials, puresvd) and popularity; the others predict
// ratings. TrainModel refuses the rest on implicit data.
bool RanksImplicit(ModelKind kind);

// The rating at and above which training ratings count in `m`'s popularity
// prior (Hyperparameters::popularity_weight): every rating for kinds that
// rank by predicted rating, the relevant ones for the others.
float PriorMin(const Model& m);

// Checks that hyper-parameters are usable (positive sizes, finite rates).
absl::Status ValidateHyperparameters(ModelKind kind,
                                     const Hyperparameters& params);

}  // namespace recsys

#endif  // RECSYS_MODELS_TRAIN_H_
