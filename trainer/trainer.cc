// recsys-trainer's train and recommend commands, and how a model selection
// is shown.
#include "trainer/trainer.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "models/loaders.h"
#include "models/model_io.h"
#include "models/topk.h"
#include "models/train.h"
#include "trainer/trainer_internal.h"

namespace recsys {
namespace internal {

void PrintLoadSummary(const std::string& what, const RatingData& d,
                      std::ostream& out) {
  out << absl::StrFormat("%s: %d ratings, %d users, %d items, scale [%g, %g]",
                         what, d.ratings.size(), d.num_users(), d.num_items(),
                         d.scale.min, d.scale.max);
  if (d.stats.duplicates_replaced > 0) {
    out << absl::StrFormat(", %d duplicates replaced by the later rating",
                           d.stats.duplicates_replaced);
  }
  if (d.stats.duplicates_summed > 0) {
    out << absl::StrFormat(", %d repeated pairs added up",
                           d.stats.duplicates_summed);
  }
  if (d.stats.bad_lines_skipped > 0) {
    out << absl::StrFormat(", %d bad lines skipped", d.stats.bad_lines_skipped);
  }
  if (d.feedback == Feedback::kImplicit) out << ", implicit feedback";
  out << "\n";
  if (const std::string hint = ImplicitFeedbackHint(d); !hint.empty()) {
    out << hint << "\n";
  }
}

TrainingSpec SpecOf(const ModelChoice& choice, const ParamOverrides& params) {
  TrainingSpec spec;
  spec.kind = choice.kind;
  spec.params = params;
  spec.select = choice.select;
  spec.selection.budget = choice.budget;
  spec.selection.max_seconds = choice.max_seconds;
  return spec;
}

}  // namespace internal

namespace {

using internal::PrintLoadSummary;
using internal::SpecOf;

std::string DescribeParams(ModelKind kind, const Hyperparameters& p) {
  switch (kind) {
    case ModelKind::kBaseline:
    case ModelKind::kPopularity:
      return absl::StrFormat(
          "epochs=%d baseline_reg_item=%g baseline_reg_user=%g", p.epochs,
          p.baseline_reg_item, p.baseline_reg_user);
    case ModelKind::kSgd:
      return absl::StrFormat(
          "factors=%d epochs=%d lr=%g lr_decay=%g reg=%g reg_bias=%g "
          "init_std=%g fold_in_reg=%g fold_in_reg_bias=%g seed=%d",
          p.factors, p.epochs, p.learning_rate, p.lr_decay, p.reg, p.reg_bias,
          p.init_std, p.fold_in_reg, p.fold_in_reg_bias, p.seed);
    case ModelKind::kIals:
      return absl::StrFormat(
          "factors=%d iterations=%d reg=%g implicit_weight=%g "
          "reg_exponent=%g value_weight=%g target_min=%g cg_steps=%d "
          "init_std=%g popularity_weight=%g confidence_alpha=%g "
          "confidence_eps=%g seed=%d",
          p.factors, p.epochs, p.reg, p.implicit_weight, p.reg_exponent,
          p.value_weight, p.target_min, p.cg_steps, p.init_std,
          p.popularity_weight, p.confidence_alpha, p.confidence_eps, p.seed);
    case ModelKind::kBayes:
      return absl::StrFormat(
          "factors=%d sweeps=%d burn_in=%d samples=%d init_std=%g seed=%d",
          p.factors, p.epochs, p.burn_in, p.samples, p.init_std, p.seed);
    case ModelKind::kHybrid:
      return absl::StrCat("ranking: ", ModelKindName(p.rank_kind), " ",
                          p.rank_kind == ModelKind::kPopularity
                              ? std::string("(relevant ratings)")
                              : DescribeParams(p.rank_kind, RankingPart(p)),
                          "; ratings: bayes ",
                          DescribeParams(ModelKind::kBayes, p));
    case ModelKind::kPuresvd:
      return absl::StrFormat(
          "factors=%d power_iterations=%d value_weight=%g "
          "popularity_weight=%g seed=%d",
          p.factors, p.epochs, p.value_weight, p.popularity_weight, p.seed);
    case ModelKind::kAls:
      return absl::StrFormat(
          "factors=%d iterations=%d reg=%g reg_bias=%g init_std=%g seed=%d",
          p.factors, p.epochs, p.reg, p.reg_bias, p.init_std, p.seed);
  }
  return "";
}

void PrintTrial(const SelectionTrial& t, std::ostream& out) {
  auto cell = [](double v) {
    return v < 0 ? std::string("-") : absl::StrFormat("%.4f", v);
  };
  out << absl::StrFormat(
      "%s%-7s %4d %8s %8s %6d %7.2f  %s\n", t.chosen ? "*" : " ",
      t.part == SelectionTrial::kRating ? "rating" : "ranking", t.rung,
      cell(t.ndcg), cell(t.rmse), t.work, t.seconds, t.candidate);
}

void PrintTrialHeader(std::ostream& out) {
  out << absl::StrFormat(" %-7s %4s %8s %8s %6s %7s  %s\n", "part", "rung",
                         "nDCG@10", "RMSE", "work", "s", "candidate");
}

}  // namespace

void PrintSelection(const SelectionReport& r, std::ostream& out) {
  if (r.empty()) {
    if (!r.summary.empty()) out << "model selection: " << r.summary << "\n";
    return;
  }
  out << absl::StrFormat(
      "model selection: %d trials, work %d of %d units, %.1fs; validation: "
      "%d users scored, %d held-out ratings (* = chosen)\n",
      r.trials.size(), r.work, r.budget, r.seconds, r.validation_users,
      r.validation_ratings);
  PrintTrialHeader(out);
  for (const SelectionTrial& t : r.trials) PrintTrial(t, out);
  out << "chosen: " << r.summary << "\n";
}

namespace {

// The checks of the flags and of the output directory.
absl::Status CheckTrainFlags(const TrainCommand& cmd) {
  if (cmd.out.empty()) {
    return absl::InvalidArgumentError("--out (the model file) is required");
  }
  if (cmd.validation_fraction < 0 || cmd.validation_fraction >= 1) {
    return absl::InvalidArgumentError(
        "--validation-fraction must be in [0, 1)");
  }
  const std::filesystem::path out_dir =
      std::filesystem::path(cmd.out).parent_path();
  if (!out_dir.empty() && !std::filesystem::is_directory(out_dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--out: the directory ", out_dir.string(), " does not exist"));
  }
  return absl::OkStatus();
}

// Prints one line per training epoch.
std::function<void(const EpochReport&)> EpochPrinter(std::ostream& out) {
  return [&out](const EpochReport& r) {
    out << absl::StrFormat("epoch %3d/%d  train RMSE %.4f", r.epoch, r.epochs,
                           r.train_rmse);
    if (r.validation_rmse >= 0) {
      out << absl::StrFormat("  validation RMSE %.4f", r.validation_rmse);
    }
    out << absl::StrFormat("  %.2fs\n", r.elapsed_seconds);
    out.flush();
  };
}

// Trains a spec that searches: the selection's trials as they finish, its
// report, and what it chose.
absl::StatusOr<Model> TrainSelecting(const RatingData& all,
                                     const TrainCommand& cmd, TrainingSpec spec,
                                     TrainOptions opt, std::ostream& out) {
  if (cmd.validation_fraction > 0) {
    spec.selection.validation_fraction = cmd.validation_fraction;
    spec.selection.refit = false;
  }
  out << absl::StrFormat(
      "selecting %s settings on a per-user %.0f%% validation split of the "
      "training data (budget %d units)\n",
      KindOrAutoName(spec.kind), 100 * spec.selection.validation_fraction,
      spec.selection.budget);
  if (!cmd.quiet) {
    PrintTrialHeader(out);
    spec.selection.on_trial = [&out](const SelectionTrial& t) {
      PrintTrial(t, out);
      out.flush();
    };
  }
  opt.on_epoch = nullptr;  // the final fit's epochs add little here
  RECSYS_ASSIGN_OR_RETURN(Model model, TrainWithSpec(all, spec, opt));
  PrintSelection(model.selection, out);
  out << "trained " << ModelKindName(model.kind) << ": "
      << DescribeParams(model.kind, model.params)
      << (spec.selection.refit ? " (refit on all the data)"
                               : " (on the carved training part)")
      << "\n";
  return model;
}

// Trains the spec's kind as told, on a random split of the data when
// --validation-fraction asks for one (its last validation RMSE is kept).
absl::StatusOr<Model> TrainFixed(const RatingData& all, const TrainCommand& cmd,
                                 const TrainingSpec& spec, TrainOptions opt,
                                 std::ostream& out) {
  const ModelKind kind = spec.kind.value_or(ModelKind::kHybrid);
  const Hyperparameters params = ResolveParams(kind, cmd.params);
  RatingData train, validation;
  const RatingData* fit = &all;
  if (cmd.validation_fraction > 0) {
    RandomSplit(all, cmd.validation_fraction, params.seed ^ 0x5eed, &train,
                &validation);
    out << absl::StrFormat("validation split: %d train / %d held out\n",
                           train.ratings.size(), validation.ratings.size());
    fit = &train;
    opt.validation = &validation;
  }
  out << "training " << ModelKindName(kind) << ": "
      << DescribeParams(kind, params) << "\n";
  double last_validation = -1;
  if (opt.validation != nullptr) {
    auto print = opt.on_epoch;
    opt.on_epoch = [print, &last_validation](const EpochReport& r) {
      last_validation = r.validation_rmse;
      if (print) print(r);
    };
  }
  RECSYS_ASSIGN_OR_RETURN(Model model, TrainModel(*fit, kind, params, opt));
  model.last_validation_rmse = last_validation;
  return model;
}

}  // namespace

absl::Status RunTrain(const TrainCommand& cmd, std::ostream& out) {
  // Bad hyper-parameters and a missing output directory are reported
  // before a long load and training, not after them.
  RECSYS_RETURN_IF_ERROR(CheckTrainFlags(cmd));
  TrainingSpec spec = SpecOf(cmd.model, cmd.params);
  RECSYS_RETURN_IF_ERROR(ValidateSpec(spec));
  const auto start = std::chrono::steady_clock::now();
  RECSYS_ASSIGN_OR_RETURN(RatingData all, LoadSource(cmd.source));
  PrintLoadSummary("loaded", all, out);

  TrainOptions opt;
  opt.threads = cmd.threads;
  if (!cmd.quiet) opt.on_epoch = EpochPrinter(out);
  Model model;
  if (SpecSearches(spec)) {
    RECSYS_ASSIGN_OR_RETURN(
        model, TrainSelecting(all, cmd, std::move(spec), std::move(opt), out));
  } else {
    RECSYS_ASSIGN_OR_RETURN(model,
                            TrainFixed(all, cmd, spec, std::move(opt), out));
  }
  RECSYS_RETURN_IF_ERROR(SaveModel(model, cmd.out));
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  out << absl::StrFormat("wrote %s (fit %.3fs, total %.3fs)\n", cmd.out,
                         model.train_seconds, total);
  return absl::OkStatus();
}

absl::Status RunRecommend(const RecommendCommand& cmd, std::ostream& out) {
  if (cmd.model_file.empty())
    return absl::InvalidArgumentError("--model is required");
  if (cmd.k <= 0 || cmd.k > 10000) {
    return absl::InvalidArgumentError("-k must be in 1..10000");
  }
  RECSYS_ASSIGN_OR_RETURN(Model model, LoadModel(cmd.model_file));
  const int32_t u = model.users.Find(cmd.user);
  Eigen::VectorXf scores;
  const std::vector<ScoredItem> best =
      RecommendForUser(model, u, cmd.k, !cmd.include_rated, &scores);
  const int64_t rated = u >= 0 ? model.user_ratings.size(u) : 0;
  if (u < 0) {
    out << "user " << cmd.user
        << " is unknown to the model: showing the most-rated items, as the "
           "server does for a user without ratings\n";
  } else {
    out << absl::StrFormat(
        "top %d for user %s (%s model; %d rated films excluded)\n", cmd.k,
        cmd.user, ModelKindName(model.kind), cmd.include_rated ? 0 : rated);
  }
  // A model of implicit feedback predicts no ratings: its score ranks.
  const bool implicit = model.feedback == Feedback::kImplicit;
  out << absl::StrFormat("%4s  %-8s  %-6s  %-55s  %s\n", "rank", "item",
                         implicit ? "score" : "rating", "title", "genres");
  int rank = 0;
  for (const ScoredItem& s : best) {
    const ItemInfo& info = model.item_info[s.item];
    out << absl::StrFormat("%4d  %-8s  %6.2f  %-55s  %s\n", ++rank,
                           model.items.External(s.item),
                           implicit ? s.score : model.Predict(u, s.item),
                           info.title, absl::StrJoin(info.genres, "|"));
  }
  return absl::OkStatus();
}

}  // namespace recsys
