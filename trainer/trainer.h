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

namespace recsys {

// Where ratings come from: a built-in dataset name or a path.
struct DataSource {
  std::string data;  // "ml-100k", or a file/directory path
  LoadOptions load;
  DatasetOptions dataset;
};

// Resolves a name to its directory (downloading when allowed) or returns
// the path unchanged.
absl::StatusOr<std::string> ResolveDataPath(const DataSource& source);
absl::StatusOr<RatingData> LoadSource(const DataSource& source);

// Hyper-parameters for `kind`: the defaults, then every field the user set.
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
  std::optional<uint64_t> seed;
};
Hyperparameters ResolveParams(ModelKind kind, const ParamOverrides& o);

struct TrainCommand {
  DataSource source;
  ModelKind kind = ModelKind::kSgd;
  ParamOverrides params;
  int threads = 0;
  double validation_fraction = 0;  // > 0: hold out that share, report RMSE
  std::string out;                 // model file
  bool quiet = false;              // no per-epoch lines
};
absl::Status RunTrain(const TrainCommand& cmd, std::ostream& out);

// Protocols R and T over canonical folds (u1..u5 of ML-100K), or over one
// train/test pair when `train_file` is set.
struct EvaluateCommand {
  DataSource source;  // dataset holding u1.base ... u5.test
  std::vector<int> folds = {1, 2, 3, 4, 5};
  std::vector<ModelKind> kinds = {ModelKind::kSgd};
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
