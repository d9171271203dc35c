#include "trainer/trainer.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "models/evaluation.h"
#include "models/metrics.h"
#include "models/model_io.h"
#include "models/topk.h"
#include "models/train.h"

namespace recsys {

namespace {

void PrintLoadSummary(const std::string& what, const RatingData& d,
                      std::ostream& out) {
  out << absl::StrFormat("%s: %d ratings, %d users, %d items, scale [%g, %g]",
                         what, d.ratings.size(), d.num_users(), d.num_items(),
                         d.scale.min, d.scale.max);
  if (d.stats.duplicates_replaced > 0) {
    out << absl::StrFormat(", %d duplicates replaced by the later rating",
                           d.stats.duplicates_replaced);
  }
  if (d.stats.bad_lines_skipped > 0) {
    out << absl::StrFormat(", %d bad lines skipped", d.stats.bad_lines_skipped);
  }
  out << "\n";
}

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
          "init_std=%g popularity_weight=%g seed=%d",
          p.factors, p.epochs, p.reg, p.implicit_weight, p.reg_exponent,
          p.value_weight, p.target_min, p.cg_steps, p.init_std,
          p.popularity_weight, p.seed);
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

TrainingSpec SpecOf(const ModelChoice& choice, const ParamOverrides& params) {
  TrainingSpec spec;
  spec.kind = choice.kind;
  spec.params = params;
  spec.select = choice.select;
  spec.selection.budget = choice.budget;
  spec.selection.max_seconds = choice.max_seconds;
  return spec;
}

}  // namespace

absl::Status RunTrain(const TrainCommand& cmd, std::ostream& out) {
  if (cmd.out.empty()) {
    return absl::InvalidArgumentError("--out (the model file) is required");
  }
  if (cmd.validation_fraction < 0 || cmd.validation_fraction >= 1) {
    return absl::InvalidArgumentError(
        "--validation-fraction must be in [0, 1)");
  }
  // Bad hyper-parameters and a missing output directory are reported
  // before a long load and training, not after them.
  const std::filesystem::path out_dir =
      std::filesystem::path(cmd.out).parent_path();
  if (!out_dir.empty() && !std::filesystem::is_directory(out_dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--out: the directory ", out_dir.string(), " does not exist"));
  }
  TrainingSpec spec = SpecOf(cmd.model, cmd.params);
  RECSYS_RETURN_IF_ERROR(ValidateSpec(spec));
  const auto start = std::chrono::steady_clock::now();
  RECSYS_ASSIGN_OR_RETURN(RatingData all, LoadSource(cmd.source));
  PrintLoadSummary("loaded", all, out);

  TrainOptions opt;
  opt.threads = cmd.threads;
  if (!cmd.quiet) {
    opt.on_epoch = [&out](const EpochReport& r) {
      out << absl::StrFormat("epoch %3d/%d  train RMSE %.4f", r.epoch, r.epochs,
                             r.train_rmse);
      if (r.validation_rmse >= 0) {
        out << absl::StrFormat("  validation RMSE %.4f", r.validation_rmse);
      }
      out << absl::StrFormat("  %.2fs\n", r.elapsed_seconds);
      out.flush();
    };
  }
  Model model;
  if (SpecSearches(spec)) {
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
    RECSYS_ASSIGN_OR_RETURN(model, TrainWithSpec(all, spec, opt));
    PrintSelection(model.selection, out);
    out << "trained " << ModelKindName(model.kind) << ": "
        << DescribeParams(model.kind, model.params)
        << (spec.selection.refit ? " (refit on all the data)"
                                 : " (on the carved training part)")
        << "\n";
  } else {
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
    RECSYS_ASSIGN_OR_RETURN(model, TrainModel(*fit, kind, params, opt));
    model.last_validation_rmse = last_validation;
  }
  RECSYS_RETURN_IF_ERROR(SaveModel(model, cmd.out));
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  out << absl::StrFormat("wrote %s (fit %.3fs, total %.3fs)\n", cmd.out,
                         model.train_seconds, total);
  return absl::OkStatus();
}

namespace {

struct FoldResult {
  RatingMetrics rating;
  RankingMetrics ranking;
  double fit_seconds = 0;  // including selection
  std::string chosen;      // what selection chose, if it ran
};

absl::StatusOr<FoldResult> EvaluateOne(const RatingData& train,
                                       const RatingData& test,
                                       std::optional<ModelKind> kind,
                                       const EvaluateCommand& cmd,
                                       std::ostream* predictions,
                                       std::ostream* recommendations) {
  TrainOptions opt;
  opt.threads = cmd.threads;
  ModelChoice choice;
  choice.kind = kind;
  choice.select = cmd.select;
  choice.budget = cmd.budget;
  const auto start = std::chrono::steady_clock::now();
  RECSYS_ASSIGN_OR_RETURN(
      Model model, TrainWithSpec(train, SpecOf(choice, cmd.params), opt));
  FoldResult r;
  // Selection and the final fit: what a training costs the caller.
  r.fit_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  r.chosen = model.selection.summary;
  RECSYS_ASSIGN_OR_RETURN(r.rating, EvaluateRatings(model, test, predictions));
  TopNOptions topn;
  topn.k = cmd.k;
  topn.relevant_min =
      cmd.relevant_min.value_or(DefaultRelevanceThreshold(model.scale));
  RECSYS_ASSIGN_OR_RETURN(r.ranking,
                          EvaluateTopN(model, test, topn, recommendations));
  return r;
}

absl::StatusOr<std::ofstream> OpenOutput(const std::string& path) {
  std::ofstream f(path, std::ios::trunc);
  if (!f)
    return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  return f;
}

absl::Status EvaluateFiles(const EvaluateCommand& cmd, std::ostream& out) {
  if (cmd.test_file.empty()) {
    return absl::InvalidArgumentError("--train needs --test");
  }
  if (cmd.kinds.size() != 1 &&
      (!cmd.predictions_out.empty() || !cmd.recommendations_out.empty())) {
    return absl::InvalidArgumentError(
        "--predictions-out/--recommendations-out need exactly one --models");
  }
  LoadOptions load = cmd.source.load;
  RECSYS_ASSIGN_OR_RETURN(RatingData train, LoadRatings(cmd.train_file, load));
  // The test file is matched by ids; its own metadata adds nothing.
  load.load_metadata = false;
  if (!load.scale) load.scale = train.scale;
  RECSYS_ASSIGN_OR_RETURN(RatingData test, LoadRatings(cmd.test_file, load));
  PrintLoadSummary(cmd.train_file, train, out);
  PrintLoadSummary(cmd.test_file, test, out);
  std::ofstream pred_file, rec_file;
  if (!cmd.predictions_out.empty()) {
    RECSYS_ASSIGN_OR_RETURN(pred_file, OpenOutput(cmd.predictions_out));
  }
  if (!cmd.recommendations_out.empty()) {
    RECSYS_ASSIGN_OR_RETURN(rec_file, OpenOutput(cmd.recommendations_out));
  }
  out << absl::StrFormat("%-11s %8s %8s %8s %8s %8s %8s %7s %8s\n", "model",
                         "RMSE", "MAE", "P@10", "R@10", "nDCG@10", "MAP@10",
                         "users", "fit s");
  std::vector<std::string> chosen;
  for (const std::optional<ModelKind>& kind : cmd.kinds) {
    RECSYS_ASSIGN_OR_RETURN(
        FoldResult r,
        EvaluateOne(train, test, kind, cmd,
                    cmd.predictions_out.empty() ? nullptr : &pred_file,
                    cmd.recommendations_out.empty() ? nullptr : &rec_file));
    out << absl::StrFormat(
        "%-11s %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %7d %8.3f\n",
        KindOrAutoName(kind), r.rating.rmse, r.rating.mae, r.ranking.precision,
        r.ranking.recall, r.ranking.ndcg, r.ranking.map, r.ranking.users,
        r.fit_seconds);
    out.flush();
    if (!r.chosen.empty()) {
      chosen.push_back(absl::StrCat(KindOrAutoName(kind), ": ", r.chosen));
    }
  }
  for (const std::string& c : chosen) out << "selected for " << c << "\n";
  return absl::OkStatus();
}

}  // namespace

absl::Status RunEvaluate(const EvaluateCommand& cmd, std::ostream& out) {
  for (const std::optional<ModelKind>& kind : cmd.kinds) {
    TrainingSpec spec;
    spec.kind = kind;
    spec.params = cmd.params;
    RECSYS_RETURN_IF_ERROR(ValidateSpec(spec));
  }
  if (!cmd.train_file.empty()) return EvaluateFiles(cmd, out);
  if (cmd.folds.empty()) return absl::InvalidArgumentError("no folds given");
  RECSYS_ASSIGN_OR_RETURN(std::string dir, ResolveDataPath(cmd.source));
  if (!std::filesystem::is_directory(dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, " is not a directory with the u1.base..u5.test folds"));
  }
  // Load every fold once; all models see the same data.
  std::vector<std::pair<RatingData, RatingData>> folds;
  for (int f : cmd.folds) {
    LoadOptions load = cmd.source.load;
    load.format = DataFormat::kMl100k;
    RECSYS_ASSIGN_OR_RETURN(
        RatingData train,
        LoadRatings(absl::StrCat(dir, "/u", f, ".base"), load));
    load.load_metadata = false;
    load.scale = train.scale;
    RECSYS_ASSIGN_OR_RETURN(
        RatingData test,
        LoadRatings(absl::StrCat(dir, "/u", f, ".test"), load));
    folds.emplace_back(std::move(train), std::move(test));
  }
  out << absl::StrFormat(
      "Protocols R and T (../shared/PROTOCOLS.md) on %s, folds u%s; mean ± sd "
      "over folds\n",
      dir, absl::StrJoin(cmd.folds, ",u"));
  out << absl::StrFormat("%-11s %-16s %-16s %-16s %-16s %-16s %-16s %s\n",
                         "model", "RMSE", "MAE", "P@10", "R@10", "nDCG@10",
                         "MAP@10", "fit s/fold");
  std::vector<std::string> chosen;
  for (const std::optional<ModelKind>& kind : cmd.kinds) {
    std::vector<double> rmse, mae, p, r, ndcg, map, fit;
    for (size_t f = 0; f < folds.size(); ++f) {
      const auto& [train, test] = folds[f];
      RECSYS_ASSIGN_OR_RETURN(
          FoldResult fr, EvaluateOne(train, test, kind, cmd, nullptr, nullptr));
      if (!fr.chosen.empty()) {
        chosen.push_back(absl::StrCat(KindOrAutoName(kind), " on u",
                                      cmd.folds[f], ": ", fr.chosen));
      }
      rmse.push_back(fr.rating.rmse);
      mae.push_back(fr.rating.mae);
      p.push_back(fr.ranking.precision);
      r.push_back(fr.ranking.recall);
      ndcg.push_back(fr.ranking.ndcg);
      map.push_back(fr.ranking.map);
      fit.push_back(fr.fit_seconds);
    }
    auto cell = [](const std::vector<double>& v) {
      const MeanSd s = Summarize(v);
      return absl::StrFormat("%.4f ± %.4f", s.mean, s.sd);
    };
    out << absl::StrFormat("%-11s %-16s %-16s %-16s %-16s %-16s %-16s %.3f\n",
                           KindOrAutoName(kind), cell(rmse), cell(mae), cell(p),
                           cell(r), cell(ndcg), cell(map), Summarize(fit).mean);
    out.flush();
  }
  for (const std::string& c : chosen) out << "selected for " << c << "\n";
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
  out << absl::StrFormat("%4s  %-8s  %-6s  %-55s  %s\n", "rank", "item",
                         "rating", "title", "genres");
  int rank = 0;
  for (const ScoredItem& s : best) {
    const ItemInfo& info = model.item_info[s.item];
    out << absl::StrFormat(
        "%4d  %-8s  %6.2f  %-55s  %s\n", ++rank, model.items.External(s.item),
        model.Predict(u, s.item), info.title, absl::StrJoin(info.genres, "|"));
  }
  return absl::OkStatus();
}

}  // namespace recsys

namespace recsys {
namespace {

// One searchable field: its name and how to set it.
struct TunableField {
  const char* name;
  void (*set)(Hyperparameters*, double);
};

constexpr TunableField kTunable[] = {
    {"factors", [](Hyperparameters* p,
                   double v) { p->factors = static_cast<int32_t>(v); }},
    {"epochs",
     [](Hyperparameters* p, double v) { p->epochs = static_cast<int32_t>(v); }},
    {"lr", [](Hyperparameters* p,
              double v) { p->learning_rate = static_cast<float>(v); }},
    {"lr_decay",
     [](Hyperparameters* p, double v) { p->lr_decay = static_cast<float>(v); }},
    {"reg",
     [](Hyperparameters* p, double v) { p->reg = static_cast<float>(v); }},
    {"reg_bias",
     [](Hyperparameters* p, double v) { p->reg_bias = static_cast<float>(v); }},
    {"init_std",
     [](Hyperparameters* p, double v) { p->init_std = static_cast<float>(v); }},
    {"implicit_weight",
     [](Hyperparameters* p, double v) {
       p->implicit_weight = static_cast<float>(v);
     }},
    {"reg_exponent", [](Hyperparameters* p,
                        double v) { p->reg_exponent = static_cast<float>(v); }},
    {"fold_in_reg", [](Hyperparameters* p,
                       double v) { p->fold_in_reg = static_cast<float>(v); }},
    {"fold_in_reg_bias",
     [](Hyperparameters* p, double v) {
       p->fold_in_reg_bias = static_cast<float>(v);
     }},
    {"cg_steps", [](Hyperparameters* p,
                    double v) { p->cg_steps = static_cast<int32_t>(v); }},
    {"burn_in", [](Hyperparameters* p,
                   double v) { p->burn_in = static_cast<int32_t>(v); }},
    {"samples", [](Hyperparameters* p,
                   double v) { p->samples = static_cast<int32_t>(v); }},
    {"value_weight", [](Hyperparameters* p,
                        double v) { p->value_weight = static_cast<float>(v); }},
    {"rank_factors",
     [](Hyperparameters* p, double v) {
       p->rank_factors = static_cast<int32_t>(v);
     }},
    {"rank_epochs", [](Hyperparameters* p,
                       double v) { p->rank_epochs = static_cast<int32_t>(v); }},
    {"popularity_weight",
     [](Hyperparameters* p, double v) {
       p->popularity_weight = static_cast<float>(v);
     }},
    {"target_min", [](Hyperparameters* p,
                      double v) { p->target_min = static_cast<float>(v); }},
    {"rank_reg",
     [](Hyperparameters* p, double v) { p->rank_reg = static_cast<float>(v); }},
};

struct Dimension {
  const TunableField* field;
  std::vector<double> values;
};

absl::StatusOr<std::vector<Dimension>> ParseSpace(absl::string_view space) {
  std::vector<Dimension> dims;
  for (absl::string_view part : absl::StrSplit(space, ';', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, '=');
    const TunableField* field = nullptr;
    for (const TunableField& f : kTunable) {
      if (kv.first == f.name) field = &f;
    }
    if (field == nullptr) {
      std::vector<absl::string_view> names;
      for (const TunableField& f : kTunable) names.push_back(f.name);
      return absl::InvalidArgumentError(
          absl::StrCat("--space: unknown field '", kv.first,
                       "' (fields: ", absl::StrJoin(names, ", "), ")"));
    }
    Dimension d{field, {}};
    for (absl::string_view v :
         absl::StrSplit(kv.second, ',', absl::SkipEmpty())) {
      double x = 0;
      if (!absl::SimpleAtod(v, &x)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--space: '", v, "' is not a number"));
      }
      d.values.push_back(x);
    }
    if (d.values.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--space: no values for '", kv.first, "'"));
    }
    // (A value listed twice is one setting, not twice the chance.)
    std::vector<double> distinct;
    for (double v : d.values) {
      if (std::find(distinct.begin(), distinct.end(), v) == distinct.end()) {
        distinct.push_back(v);
      }
    }
    d.values = std::move(distinct);
    dims.push_back(std::move(d));
  }
  if (dims.empty()) return absl::InvalidArgumentError("--space is empty");
  return dims;
}

}  // namespace

absl::Status RunTune(const TuneCommand& cmd, std::ostream& out) {
  RECSYS_ASSIGN_OR_RETURN(std::vector<Dimension> dims, ParseSpace(cmd.space));
  if (cmd.trials < 1)
    return absl::InvalidArgumentError("--trials must be >= 1");
  if (!(cmd.validation_fraction > 0 && cmd.validation_fraction < 1)) {
    return absl::InvalidArgumentError(
        "--validation-fraction must be in (0, 1)");
  }
  const std::string metric =
      !cmd.metric.empty()
          ? cmd.metric
          : (cmd.kind == ModelKind::kIals || cmd.kind == ModelKind::kPuresvd ||
                     cmd.kind == ModelKind::kPopularity
                 ? "ndcg"
                 : "rmse");
  if (metric != "rmse" && metric != "ndcg") {
    return absl::InvalidArgumentError("--metric must be rmse or ndcg");
  }
  RECSYS_ASSIGN_OR_RETURN(RatingData all, LoadSource(cmd.source));
  PrintLoadSummary("tuning on", all, out);
  std::vector<std::pair<RatingData, RatingData>> splits(
      std::max(1, cmd.splits));
  for (size_t s = 0; s < splits.size(); ++s) {
    RandomSplit(all, cmd.validation_fraction, cmd.seed + 7919 * s,
                &splits[s].first, &splits[s].second);
  }
  // The grid's settings are numbered in mixed radix over the dimensions.
  // Trials draw distinct ones at random; a budget that covers the grid
  // tries every setting once, in order.
  constexpr uint64_t kHuge = uint64_t{1} << 62;
  uint64_t grid = 1;
  for (const Dimension& d : dims) {
    grid = grid > kHuge / d.values.size() ? kHuge : grid * d.values.size();
  }
  std::vector<uint64_t> picks;
  if (static_cast<uint64_t>(cmd.trials) >= grid) {
    for (uint64_t g = 0; g < grid; ++g) picks.push_back(g);
  } else {
    std::mt19937_64 rng(cmd.seed);
    std::set<uint64_t> seen;
    while (picks.size() < static_cast<size_t>(cmd.trials)) {
      const uint64_t g = rng() % grid;
      if (seen.insert(g).second) picks.push_back(g);
    }
  }
  if (picks.size() < static_cast<size_t>(cmd.trials)) {
    out << absl::StrFormat(
        "the space has %d settings: each is tried once (%d trials, not %d)\n",
        grid, picks.size(), cmd.trials);
  }
  out << absl::StrFormat(
      "%d trials of %s, %d validation split(s) of %.0f%% carved from the "
      "training data; metric %s\n",
      picks.size(), ModelKindName(cmd.kind), splits.size(),
      100 * cmd.validation_fraction,
      metric == "rmse" ? "RMSE (lower is better)"
                       : "nDCG@10 (higher is better)");
  struct Trial {
    std::string setting;
    double score;
    double seconds;
    bool diverged;
  };
  auto score_text = [](const Trial& t) {
    return t.diverged ? std::string("diverged")
                      : absl::StrFormat("%-8.4f", t.score);
  };
  std::vector<Trial> trials;
  for (size_t t = 0; t < picks.size(); ++t) {
    Hyperparameters p = ResolveParams(cmd.kind, cmd.params);
    std::vector<std::string> setting;
    uint64_t rest = picks[t];
    for (const Dimension& d : dims) {
      const double v = d.values[rest % d.values.size()];
      rest /= d.values.size();
      d.field->set(&p, v);
      setting.push_back(absl::StrCat(d.field->name, "=", v));
    }
    double score = 0, seconds = 0;
    bool diverged = false;
    for (const auto& [train, validation] : splits) {
      TrainOptions opt;
      opt.threads = cmd.threads;
      absl::StatusOr<Model> fit = TrainModel(train, cmd.kind, p, opt);
      // A setting that diverges is a result of the search, not its end.
      if (TrainingDiverged(fit.status())) {
        diverged = true;
        break;
      }
      RECSYS_RETURN_IF_ERROR(fit.status());
      const Model& m = *fit;
      seconds += m.train_seconds;
      if (metric == "rmse") {
        RECSYS_ASSIGN_OR_RETURN(RatingMetrics r,
                                EvaluateRatings(m, validation, nullptr));
        score += r.rmse;
      } else {
        TopNOptions topn;
        topn.relevant_min = DefaultRelevanceThreshold(m.scale);
        RECSYS_ASSIGN_OR_RETURN(RankingMetrics r,
                                EvaluateTopN(m, validation, topn, nullptr));
        score += r.ndcg;
      }
    }
    score /= static_cast<double>(splits.size());
    trials.push_back({absl::StrJoin(setting, " "), score,
                      seconds / static_cast<double>(splits.size()), diverged});
    out << absl::StrFormat("trial %3d  %s %6.2fs  %s\n", t + 1,
                           score_text(trials.back()), trials.back().seconds,
                           trials.back().setting);
    out.flush();
  }
  // Diverged settings last, in the order tried.
  std::stable_sort(
      trials.begin(), trials.end(), [&](const Trial& a, const Trial& b) {
        if (a.diverged || b.diverged) return !a.diverged && b.diverged;
        return metric == "rmse" ? a.score < b.score : a.score > b.score;
      });
  out << "\nbest first:\n";
  for (size_t r = 0; r < trials.size() && r < 10; ++r) {
    out << absl::StrFormat("%2d  %s %6.2fs  %s\n", r + 1, score_text(trials[r]),
                           trials[r].seconds, trials[r].setting);
  }
  return absl::OkStatus();
}

}  // namespace recsys
