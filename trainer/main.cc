// recsys-trainer: train, evaluate and query factor models offline.
//
//   recsys-trainer train --data=ml-100k --model=sgd --out=model.rsm
//   recsys-trainer evaluate --data=ml-100k --models=sgd,als,baseline,popularity
//   recsys-trainer evaluate --train=u1.base --test=u1.test
//       --predictions-out=pred.tsv --recommendations-out=recs.tsv
//   recsys-trainer recommend --model-file=model.rsm --user=1
//   recsys-trainer export --model-file=snapshot.rsm --out=exported/
//   recsys-trainer generate --users=162000 --items=62000 --ratings=25000000
//       --rank=16 --out=ratings.csv --movies-out=movies.csv
//
// Flag names accept dashes or underscores (--skip-bad-lines, --skip_bad_lines).
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/flag_names.h"
#include "base/status_macros.h"
#include "trainer/export.h"
#include "trainer/generate.h"
#include "trainer/trainer.h"

// Data.
ABSL_FLAG(std::string, data, "",
          "Dataset name (ml-100k, ml-latest-small, ml-1m, ml-25m, ml-32m) or a "
          "path to a ratings file or dataset directory");
ABSL_FLAG(std::string, format, "auto",
          "auto, ml-100k, ml-dat, ml-csv or delimited");
ABSL_FLAG(std::string, delimiter, "",
          "Field delimiter for --format=delimited (',', 'tab', 'space', '::'); "
          "empty = detect");
ABSL_FLAG(bool, skip_bad_lines, false,
          "Skip and count malformed lines instead of failing");
ABSL_FLAG(std::string, scale, "",
          "Rating scale 'min,max' (e.g. 0.5,5); ratings outside it are bad "
          "lines. Empty = taken from the data");
ABSL_FLAG(std::string, feedback, "explicit",
          "What the values are: explicit (ratings on a scale) or implicit "
          "(counts or weights of plays, clicks, purchases: repeated pairs add "
          "up, every interaction is relevant, no predicted ratings)");
ABSL_FLAG(std::string, data_dir, "",
          "Directory for named datasets (default $RECSYS_DATA_DIR, else "
          "~/.cache/recsys)");
ABSL_FLAG(bool, download, true,
          "Download a named dataset from GroupLens when it is missing");
// Models.
ABSL_FLAG(std::string, model, "auto",
          "Model kind to train: auto (chosen by model selection on a "
          "validation split of the training data), hybrid (a ranking part + "
          "Bayesian MF ratings), puresvd, ials, bayes, sgd, als, baseline or "
          "popularity");
ABSL_FLAG(std::string, models, "auto",
          "evaluate: comma-separated model kinds (auto, hybrid, puresvd, "
          "ials, bayes, sgd, als, baseline, popularity)");
ABSL_FLAG(bool, select, true,
          "train, evaluate: search the settings not given on a validation "
          "split carved from the training data (--noselect: train exactly as "
          "told, auto meaning hybrid with its defaults)");
ABSL_FLAG(int64_t, budget, recsys::SelectionOptions().budget,
          "train, evaluate: work units model selection may spend (an iALS "
          "iteration, a PureSVD power iteration or a Gibbs sweep is one)");
ABSL_FLAG(double, select_seconds, recsys::SelectionOptions().max_seconds,
          "train: model selection starts no trial after this many seconds "
          "(a safety net; the budget decides)");
ABSL_FLAG(std::optional<int32_t>, factors, std::nullopt, "Latent factors");
ABSL_FLAG(std::optional<int32_t>, epochs, std::nullopt,
          "SGD epochs / ALS iterations");
ABSL_FLAG(std::optional<float>, lr, std::nullopt, "SGD learning rate");
ABSL_FLAG(std::optional<float>, lr_decay, std::nullopt,
          "SGD learning-rate multiplier per epoch");
ABSL_FLAG(std::optional<float>, reg, std::nullopt, "L2 penalty on factors");
ABSL_FLAG(std::optional<float>, reg_bias, std::nullopt, "L2 penalty on biases");
ABSL_FLAG(std::optional<float>, init_std, std::nullopt,
          "Std of the random factor initialisation");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "Random seed");
ABSL_FLAG(std::optional<float>, fold_in_reg, std::nullopt,
          "Fold-in penalty on factors (0 = use --reg)");
ABSL_FLAG(std::optional<float>, fold_in_reg_bias, std::nullopt,
          "Fold-in penalty on biases (0 = use --reg_bias)");
ABSL_FLAG(int, threads, 0, "Training threads (0 = one per core)");
// train.
ABSL_FLAG(std::string, out, "",
          "train: model file to write; generate: ratings file; export: "
          "directory to write");
ABSL_FLAG(double, validation_fraction, 0,
          "train: hold out this share of the ratings at random and report "
          "validation RMSE per epoch");
ABSL_FLAG(bool, quiet, false, "train: no per-epoch progress");
// evaluate.
ABSL_FLAG(std::string, folds, "1,2,3,4,5", "evaluate: which uN folds");
ABSL_FLAG(std::string, train, "", "evaluate: training ratings file");
ABSL_FLAG(std::string, test, "", "evaluate: test ratings file");
ABSL_FLAG(
    std::string, predictions_out, "",
    "evaluate --train/--test: write user\\titem\\tprediction per test pair");
ABSL_FLAG(
    std::string, recommendations_out, "",
    "evaluate --train/--test: write user\\titem\\trank (top k per test user)");
ABSL_FLAG(std::optional<float>, relevant_min, std::nullopt,
          "evaluate: test ratings >= this are relevant (default 4 on 1..5)");
// tune.
ABSL_FLAG(std::string, space, "",
          "tune: search space, 'field=v1,v2;field=...' (factors, epochs, lr, "
          "lr_decay, reg, reg_bias, init_std, implicit_weight, reg_exponent, "
          "fold_in_reg, fold_in_reg_bias, cg_steps, burn_in, samples, "
          "value_weight, rank_factors, rank_epochs, rank_reg)");
ABSL_FLAG(int, trials, 20,
          "tune: how many distinct settings to try (at random; all of them "
          "when the space has no more)");
ABSL_FLAG(int, splits, 1,
          "tune: validation splits per setting (averaged), each "
          "--validation-fraction of the training data (default 0.1)");
ABSL_FLAG(std::string, metric, "",
          "tune: rmse or ndcg (default: ndcg for ials, rmse otherwise)");
ABSL_FLAG(uint64_t, tune_seed, 1, "tune: seed of the search and the splits");
ABSL_FLAG(std::optional<float>, implicit_weight, std::nullopt,
          "iALS weight of unobserved pairs");
ABSL_FLAG(std::optional<float>, reg_exponent, std::nullopt,
          "iALS exponent of the frequency-scaled penalty");
ABSL_FLAG(std::optional<int32_t>, cg_steps, std::nullopt,
          "iALS conjugate-gradient steps per row and iteration");
ABSL_FLAG(std::optional<float>, value_weight, std::nullopt,
          "iALS: how much a low rating lowers an interaction's target (0..1)");
ABSL_FLAG(std::optional<int32_t>, rank_factors, std::nullopt,
          "hybrid: factors of the iALS ranking part");
ABSL_FLAG(std::optional<int32_t>, rank_epochs, std::nullopt,
          "hybrid: iterations of the iALS ranking part");
ABSL_FLAG(std::optional<float>, rank_reg, std::nullopt,
          "hybrid: penalty of the iALS ranking part");
ABSL_FLAG(std::optional<float>, popularity_weight, std::nullopt,
          "Weight of the popularity prior added to ranking scores "
          "(w * log(1 + relevant ratings) / log(1 + the most); 0 = none)");
ABSL_FLAG(std::optional<float>, target_min, std::nullopt,
          "iALS, PureSVD: ratings below this are interactions not liked "
          "(target 0); 0 = off");
ABSL_FLAG(std::optional<float>, confidence_alpha, std::nullopt,
          "iALS on implicit feedback: an interaction of count v weighs 1 + "
          "alpha * log(1 + v / eps); 0 = every interaction alike");
ABSL_FLAG(std::optional<float>, confidence_eps, std::nullopt,
          "iALS on implicit feedback: the count scale eps of the confidence "
          "(default 1)");
ABSL_FLAG(std::optional<int32_t>, burn_in, std::nullopt,
          "bayes: Gibbs sweeps discarded before the first kept sample");
ABSL_FLAG(std::optional<int32_t>, samples, std::nullopt,
          "bayes: Gibbs samples kept and served (spread over the sweeps "
          "after burn-in)");
// recommend.
ABSL_FLAG(std::string, model_file, "",
          "recommend, export: model file (or server snapshot) to read");
ABSL_FLAG(std::string, user, "",
          "recommend: external user id; export: only this user's ratings");
ABSL_FLAG(int, k, 10, "How many items to recommend / evaluate at");
ABSL_FLAG(bool, include_rated, false,
          "recommend: also show items the user already rated");
// generate.
ABSL_FLAG(int32_t, users, 1000, "generate: number of users");
ABSL_FLAG(int32_t, items, 500, "generate: catalogue size");
ABSL_FLAG(int64_t, ratings, 50000, "generate: number of ratings (exact)");
ABSL_FLAG(int32_t, rank, 10, "generate: rank of the planted factors");
ABSL_FLAG(float, noise, 0.5f,
          "generate: std of the rating noise (on a scale 4.5 wide)");
ABSL_FLAG(std::string, movies_out, "",
          "generate: also write the catalogue (movieId,title,genres) here");

namespace recsys {
namespace {

constexpr char kUsage[] =
    "recsys-trainer <command> [flags]\n"
    "commands:\n"
    "  train      --data=D --out=FILE [--model=auto] [--noselect]\n"
    "             (kinds: auto, hybrid, puresvd, ials, bayes, sgd, als, "
    "baseline, popularity)\n"
    "  evaluate   --data=ml-100k [--models=...]   protocols R and T on u1..u5\n"
    "  evaluate   --train=F --test=F [--predictions-out=F] "
    "[--recommendations-out=F]\n"
    "  tune       --data=D --model=K --space='reg=0.01,0.1;factors=32,64' "
    "[--trials=20]\n"
    "  recommend  --model-file=FILE --user=U [--k=10]\n"
    "  export     --model-file=FILE --out=DIR [--user=U]   ratings.csv and\n"
    "             movies.csv of a model or server snapshot\n"
    "  generate   --users=N --items=M --ratings=R --rank=K --out=ratings.csv\n"
    "             [--movies-out=movies.csv] [--scale=0.5,5] [--seed=S]\n"
    "Run with --helpfull for every flag.";

absl::StatusOr<DataSource> SourceFromFlags() {
  DataSource s;
  s.data = absl::GetFlag(FLAGS_data);
  RECSYS_ASSIGN_OR_RETURN(s.load.format,
                          ParseDataFormat(absl::GetFlag(FLAGS_format)));
  std::string delim = absl::GetFlag(FLAGS_delimiter);
  if (delim == "tab" || delim == "\\t") delim = "\t";
  if (delim == "space") delim = " ";
  s.load.delimiter = delim;
  s.load.skip_bad_lines = absl::GetFlag(FLAGS_skip_bad_lines);
  RECSYS_ASSIGN_OR_RETURN(s.load.feedback,
                          ParseFeedback(absl::GetFlag(FLAGS_feedback)));
  const std::string scale = absl::GetFlag(FLAGS_scale);
  if (!scale.empty()) {
    std::vector<std::string> parts = absl::StrSplit(scale, ',');
    RatingScale rs;
    if (parts.size() != 2 || !absl::SimpleAtof(parts[0], &rs.min) ||
        !absl::SimpleAtof(parts[1], &rs.max) || !rs.valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--scale='", scale, "': expected 'min,max' with min < max"));
    }
    s.load.scale = rs;
  }
  s.dataset.data_dir = absl::GetFlag(FLAGS_data_dir);
  s.dataset.download = absl::GetFlag(FLAGS_download);
  return s;
}

ParamOverrides ParamsFromFlags() {
  ParamOverrides o;
  o.factors = absl::GetFlag(FLAGS_factors);
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.learning_rate = absl::GetFlag(FLAGS_lr);
  o.lr_decay = absl::GetFlag(FLAGS_lr_decay);
  o.reg = absl::GetFlag(FLAGS_reg);
  o.reg_bias = absl::GetFlag(FLAGS_reg_bias);
  o.init_std = absl::GetFlag(FLAGS_init_std);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.fold_in_reg = absl::GetFlag(FLAGS_fold_in_reg);
  o.fold_in_reg_bias = absl::GetFlag(FLAGS_fold_in_reg_bias);
  o.implicit_weight = absl::GetFlag(FLAGS_implicit_weight);
  o.reg_exponent = absl::GetFlag(FLAGS_reg_exponent);
  o.cg_steps = absl::GetFlag(FLAGS_cg_steps);
  o.burn_in = absl::GetFlag(FLAGS_burn_in);
  o.samples = absl::GetFlag(FLAGS_samples);
  o.value_weight = absl::GetFlag(FLAGS_value_weight);
  o.rank_factors = absl::GetFlag(FLAGS_rank_factors);
  o.rank_epochs = absl::GetFlag(FLAGS_rank_epochs);
  o.rank_reg = absl::GetFlag(FLAGS_rank_reg);
  o.popularity_weight = absl::GetFlag(FLAGS_popularity_weight);
  o.target_min = absl::GetFlag(FLAGS_target_min);
  o.confidence_alpha = absl::GetFlag(FLAGS_confidence_alpha);
  o.confidence_eps = absl::GetFlag(FLAGS_confidence_eps);
  return o;
}

absl::StatusOr<TrainCommand> TrainFromFlags() {
  TrainCommand cmd;
  RECSYS_ASSIGN_OR_RETURN(cmd.source, SourceFromFlags());
  RECSYS_ASSIGN_OR_RETURN(cmd.model.kind,
                          ParseKindOrAuto(absl::GetFlag(FLAGS_model)));
  cmd.model.select = absl::GetFlag(FLAGS_select);
  cmd.model.budget = absl::GetFlag(FLAGS_budget);
  cmd.model.max_seconds = absl::GetFlag(FLAGS_select_seconds);
  cmd.params = ParamsFromFlags();
  cmd.threads = absl::GetFlag(FLAGS_threads);
  cmd.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  cmd.out = absl::GetFlag(FLAGS_out);
  cmd.quiet = absl::GetFlag(FLAGS_quiet);
  return cmd;
}

absl::StatusOr<EvaluateCommand> EvaluateFromFlags() {
  EvaluateCommand cmd;
  RECSYS_ASSIGN_OR_RETURN(cmd.source, SourceFromFlags());
  if (cmd.source.data.empty()) cmd.source.data = "ml-100k";
  cmd.kinds.clear();
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipEmpty())) {
    RECSYS_ASSIGN_OR_RETURN(std::optional<ModelKind> kind,
                            ParseKindOrAuto(name));
    cmd.kinds.push_back(kind);
  }
  cmd.select = absl::GetFlag(FLAGS_select);
  cmd.budget = absl::GetFlag(FLAGS_budget);
  cmd.folds.clear();
  for (absl::string_view f :
       absl::StrSplit(absl::GetFlag(FLAGS_folds), ',', absl::SkipEmpty())) {
    int fold = 0;
    if (!absl::SimpleAtoi(f, &fold) || fold < 1 || fold > 5) {
      return absl::InvalidArgumentError(
          absl::StrCat("--folds: '", f, "' is not a fold number 1..5"));
    }
    cmd.folds.push_back(fold);
  }
  cmd.params = ParamsFromFlags();
  cmd.threads = absl::GetFlag(FLAGS_threads);
  cmd.k = absl::GetFlag(FLAGS_k);
  cmd.relevant_min = absl::GetFlag(FLAGS_relevant_min);
  cmd.train_file = absl::GetFlag(FLAGS_train);
  cmd.test_file = absl::GetFlag(FLAGS_test);
  cmd.predictions_out = absl::GetFlag(FLAGS_predictions_out);
  cmd.recommendations_out = absl::GetFlag(FLAGS_recommendations_out);
  return cmd;
}

absl::StatusOr<TuneCommand> TuneFromFlags() {
  TuneCommand cmd;
  RECSYS_ASSIGN_OR_RETURN(cmd.source, SourceFromFlags());
  if (absl::GetFlag(FLAGS_model) == "auto") {
    return absl::InvalidArgumentError(
        "tune searches one kind: give it with --model (auto already "
        "searches on its own; see train)");
  }
  RECSYS_ASSIGN_OR_RETURN(cmd.kind, ParseModelKind(absl::GetFlag(FLAGS_model)));
  cmd.params = ParamsFromFlags();
  cmd.space = absl::GetFlag(FLAGS_space);
  cmd.trials = absl::GetFlag(FLAGS_trials);
  cmd.splits = absl::GetFlag(FLAGS_splits);
  cmd.metric = absl::GetFlag(FLAGS_metric);
  cmd.threads = absl::GetFlag(FLAGS_threads);
  cmd.seed = absl::GetFlag(FLAGS_tune_seed);
  const double fraction = absl::GetFlag(FLAGS_validation_fraction);
  if (fraction > 0) cmd.validation_fraction = fraction;
  return cmd;
}

ExportCommand ExportFromFlags() {
  ExportCommand cmd;
  cmd.model_file = absl::GetFlag(FLAGS_model_file);
  cmd.out_dir = absl::GetFlag(FLAGS_out);
  cmd.user = absl::GetFlag(FLAGS_user);
  return cmd;
}

RecommendCommand RecommendFromFlags() {
  RecommendCommand cmd;
  cmd.model_file = absl::GetFlag(FLAGS_model_file);
  cmd.user = absl::GetFlag(FLAGS_user);
  cmd.k = absl::GetFlag(FLAGS_k);
  cmd.include_rated = absl::GetFlag(FLAGS_include_rated);
  return cmd;
}

absl::StatusOr<GenerateCommand> GenerateFromFlags() {
  GenerateCommand cmd;
  cmd.options.users = absl::GetFlag(FLAGS_users);
  cmd.options.items = absl::GetFlag(FLAGS_items);
  cmd.options.ratings = absl::GetFlag(FLAGS_ratings);
  cmd.options.rank = absl::GetFlag(FLAGS_rank);
  cmd.options.noise = absl::GetFlag(FLAGS_noise);
  RECSYS_ASSIGN_OR_RETURN(DataSource source, SourceFromFlags());
  if (source.load.scale.has_value()) {
    cmd.options.scale = *source.load.scale;
    // Whole-number bounds mean whole stars (1..5); otherwise half stars.
    const bool whole =
        cmd.options.scale.min == static_cast<int>(cmd.options.scale.min) &&
        cmd.options.scale.max == static_cast<int>(cmd.options.scale.max);
    cmd.options.step = whole ? 1.0f : 0.5f;
  }
  if (absl::GetFlag(FLAGS_seed).has_value()) {
    cmd.options.seed = *absl::GetFlag(FLAGS_seed);
  }
  cmd.out = absl::GetFlag(FLAGS_out);
  cmd.movies_out = absl::GetFlag(FLAGS_movies_out);
  return cmd;
}

absl::Status Run(const std::string& command) {
  if (command == "train") {
    RECSYS_ASSIGN_OR_RETURN(const TrainCommand cmd, TrainFromFlags());
    return RunTrain(cmd, std::cout);
  }
  if (command == "evaluate") {
    RECSYS_ASSIGN_OR_RETURN(const EvaluateCommand cmd, EvaluateFromFlags());
    return RunEvaluate(cmd, std::cout);
  }
  if (command == "tune") {
    RECSYS_ASSIGN_OR_RETURN(const TuneCommand cmd, TuneFromFlags());
    return RunTune(cmd, std::cout);
  }
  if (command == "export") return RunExport(ExportFromFlags(), std::cout);
  if (command == "recommend") {
    return RunRecommend(RecommendFromFlags(), std::cout);
  }
  if (command == "generate") {
    RECSYS_ASSIGN_OR_RETURN(const GenerateCommand cmd, GenerateFromFlags());
    return RunGenerate(cmd, std::cout);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command '", command, "'\n", kUsage));
}

}  // namespace
}  // namespace recsys

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(recsys::kUsage);
  std::vector<std::string> storage(argv, argv + argc);
  std::vector<char*> args = recsys::NormalizeFlagNames(&storage);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (positional.size() != 2) {
    std::cerr << recsys::kUsage << "\n";
    return 2;
  }
  const absl::Status status = recsys::Run(positional[1]);
  if (!status.ok()) {
    std::cerr << "recsys-trainer: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
