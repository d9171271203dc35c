// The commands behind recsys-trainer. main.cc turns flags into these option
// structs; everything else lives here so tests can call it directly.
//
//   TrainCommand cmd;
//   cmd.data = "ml-100k";
//   cmd.out = "/tmp/model.rsm";
//   RECSYS_RETURN_IF_ERROR(RunTrain(cmd, std::cout));
#ifndef RECSYS_TRAINER_TRAINER_H_
#define RECSYS_TRAINER_TRAINER_H_

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/datasets.h"
#include "models/loaders.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/selection.h"
#include "models/train.h"

namespace recsys {

// How a model is asked for: kind (empty = auto), the settings given, and
// whether selection searches the rest (models/selection.h).
struct ModelChoice {
  std::optional<ModelKind> kind;
  bool select = true;
  int64_t budget = SelectionOptions().budget;
  double max_seconds = SelectionOptions().max_seconds;
};

struct TrainCommand {
  DataSource source;
  ModelChoice model;
  ParamOverrides params;
  int threads = 0;
  // > 0: hold out that share at random, train on the rest and report its
  // RMSE per epoch (with selection: the winner is not refit, and the
  // held-out share is selection's own per-user split of this size).
  double validation_fraction = 0;
  std::string out;     // model file
  bool quiet = false;  // no per-epoch lines
};
absl::Status RunTrain(const TrainCommand& cmd, std::ostream& out);

// The trials of a model selection as a table, best marked, and its choice.
void PrintSelection(const SelectionReport& report, std::ostream& out);

// Protocols R and T over canonical folds (u1..u5 of ML-100K), or over one
// train/test pair when `train_file` is set.
struct EvaluateCommand {
  DataSource source;  // dataset holding u1.base ... u5.test
  std::vector<int> folds = {1, 2, 3, 4, 5};
  // Each trained on every fold; empty = auto (selection, on the fold's
  // training data only).
  std::vector<std::optional<ModelKind>> kinds = {std::nullopt};
  bool select = true;  // false: every kind trains exactly as told
  int64_t budget = SelectionOptions().budget;
  ParamOverrides params;
  int threads = 0;
  int k = 10;
  std::optional<float> relevant_min;  // default: from the scale
  // Train/test file mode.
  std::string train_file, test_file;
  std::string predictions_out, recommendations_out;
};
absl::Status RunEvaluate(const EvaluateCommand& cmd, std::ostream& out);

// Random search of hyper-parameters on a validation split carved out of the
// training data only (the test data never takes part).
struct TuneCommand {
  DataSource source;  // the training data, e.g. u1.base
  ModelKind kind = ModelKind::kIals;
  ParamOverrides params;  // fixed values for fields not searched
  // "field=v1,v2,...;field=..." over factors, epochs, lr, lr_decay, reg,
  // reg_bias, init_std, implicit_weight, reg_exponent, fold_in_reg,
  // fold_in_reg_bias, cg_steps, burn_in, samples, value_weight and the
  // hybrid's rank_factors, rank_epochs and rank_reg.
  std::string space;
  // Distinct settings of the grid, drawn at random; a budget that covers
  // the grid tries each setting once.
  int trials = 20;
  double validation_fraction = 0.1;
  int splits = 1;  // validation splits per trial (different seeds), averaged
  std::string metric;  // "rmse" or "ndcg"; default by kind
  int threads = 0;
  uint64_t seed = 1;
};
absl::Status RunTune(const TuneCommand& cmd, std::ostream& out);

struct RecommendCommand {
  std::string model_file;
  std::string user;  // external id
  int k = 10;
  bool include_rated = false;
};
absl::Status RunRecommend(const RecommendCommand& cmd, std::ostream& out);

}  // namespace recsys

#endif  // RECSYS_TRAINER_TRAINER_H_
