// recsys-trainer's evaluate command: protocols R and T over the canonical
// folds or one train/test pair, per model kind.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "models/evaluation.h"
#include "models/metrics.h"
#include "models/train.h"
#include "trainer/trainer.h"
#include "trainer/trainer_internal.h"

namespace recsys {
namespace {

using internal::PrintLoadSummary;
using internal::SpecOf;

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
  if (model.feedback == Feedback::kImplicit) {
    // No ratings to predict: RMSE and MAE are not defined.
    r.rating.rmse = r.rating.mae = std::numeric_limits<double>::quiet_NaN();
  } else {
    RECSYS_ASSIGN_OR_RETURN(r.rating,
                            EvaluateRatings(model, test, predictions));
  }
  TopNOptions topn;
  topn.k = cmd.k;
  topn.relevant_min = cmd.relevant_min.value_or(
      RelevanceThreshold(model.scale, model.feedback));
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
  if (load.feedback == Feedback::kImplicit && !cmd.predictions_out.empty()) {
    return absl::InvalidArgumentError(
        "--predictions-out: implicit feedback has no ratings to predict");
  }
  RECSYS_ASSIGN_OR_RETURN(RatingData train, LoadRatings(cmd.train_file, load));
  // The test file is matched by ids; its own metadata adds nothing. (Counts
  // have no scale to hold the test file to.)
  load.load_metadata = false;
  if (!load.scale && load.feedback == Feedback::kExplicit) {
    load.scale = train.scale;
  }
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

}  // namespace recsys
