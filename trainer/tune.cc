// recsys-trainer's tune command: a random search over a grid of
// hyper-parameters, scored on validation splits of the training data.
#include <algorithm>
#include <cstdint>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "models/evaluation.h"
#include "models/train.h"
#include "trainer/trainer.h"
#include "trainer/trainer_internal.h"

namespace recsys {
namespace {

using internal::PrintLoadSummary;

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

// The flags' checks that need no data, after the space's.
absl::Status CheckTuneFlags(const TuneCommand& cmd) {
  if (cmd.trials < 1)
    return absl::InvalidArgumentError("--trials must be >= 1");
  if (!(cmd.validation_fraction > 0 && cmd.validation_fraction < 1)) {
    return absl::InvalidArgumentError(
        "--validation-fraction must be in (0, 1)");
  }
  return absl::OkStatus();
}

// "rmse" or "ndcg": --metric, or by default the one the model kind is
// judged by.
absl::StatusOr<std::string> ChooseMetric(const TuneCommand& cmd) {
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
  return metric;
}

// The (train, validation) pairs every trial is scored on.
std::vector<std::pair<RatingData, RatingData>> MakeSplits(
    const RatingData& all, const TuneCommand& cmd) {
  std::vector<std::pair<RatingData, RatingData>> splits(
      std::max(1, cmd.splits));
  for (size_t s = 0; s < splits.size(); ++s) {
    RandomSplit(all, cmd.validation_fraction, cmd.seed + 7919 * s,
                &splits[s].first, &splits[s].second);
  }
  return splits;
}

// The grid's settings are numbered in mixed radix over the dimensions.
// Trials draw distinct ones at random; a budget that covers the grid
// tries every setting once, in order.
uint64_t GridSize(const std::vector<Dimension>& dims) {
  constexpr uint64_t kHuge = uint64_t{1} << 62;
  uint64_t grid = 1;
  for (const Dimension& d : dims) {
    grid = grid > kHuge / d.values.size() ? kHuge : grid * d.values.size();
  }
  return grid;
}

// The numbers of the settings to try, in the order to try them.
std::vector<uint64_t> PickSettings(uint64_t grid, const TuneCommand& cmd) {
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
  return picks;
}

struct Trial {
  std::string setting;
  double score;
  double seconds;
  bool diverged;
};

std::string ScoreText(const Trial& t) {
  return t.diverged ? std::string("diverged")
                    : absl::StrFormat("%-8.4f", t.score);
}

// Sets the values of setting number `pick` in `p`; returns them as text
// ("reg=0.1 factors=32").
std::string ApplySetting(const std::vector<Dimension>& dims, uint64_t pick,
                         Hyperparameters* p) {
  std::vector<std::string> setting;
  uint64_t rest = pick;
  for (const Dimension& d : dims) {
    const double v = d.values[rest % d.values.size()];
    rest /= d.values.size();
    d.field->set(p, v);
    setting.push_back(absl::StrCat(d.field->name, "=", v));
  }
  return absl::StrJoin(setting, " ");
}

// Trains with `p` on each split and scores it on the split's validation
// part: the mean score and fit time over the splits.
absl::StatusOr<Trial> RunTrial(
    const TuneCommand& cmd, const std::string& metric,
    const std::vector<std::pair<RatingData, RatingData>>& splits,
    const Hyperparameters& p, std::string setting) {
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
      topn.relevant_min = RelevanceThreshold(m.scale, m.feedback);
      RECSYS_ASSIGN_OR_RETURN(RankingMetrics r,
                              EvaluateTopN(m, validation, topn, nullptr));
      score += r.ndcg;
    }
  }
  score /= static_cast<double>(splits.size());
  return Trial{std::move(setting), score,
               seconds / static_cast<double>(splits.size()), diverged};
}

// The ten best trials, best first; diverged settings last, in the order
// tried.
void PrintBest(std::vector<Trial> trials, const std::string& metric,
               std::ostream& out) {
  std::stable_sort(
      trials.begin(), trials.end(), [&](const Trial& a, const Trial& b) {
        if (a.diverged || b.diverged) return !a.diverged && b.diverged;
        return metric == "rmse" ? a.score < b.score : a.score > b.score;
      });
  out << "\nbest first:\n";
  for (size_t r = 0; r < trials.size() && r < 10; ++r) {
    out << absl::StrFormat("%2d  %s %6.2fs  %s\n", r + 1, ScoreText(trials[r]),
                           trials[r].seconds, trials[r].setting);
  }
}

}  // namespace

absl::Status RunTune(const TuneCommand& cmd, std::ostream& out) {
  RECSYS_ASSIGN_OR_RETURN(std::vector<Dimension> dims, ParseSpace(cmd.space));
  RECSYS_RETURN_IF_ERROR(CheckTuneFlags(cmd));
  RECSYS_ASSIGN_OR_RETURN(const std::string metric, ChooseMetric(cmd));
  RECSYS_ASSIGN_OR_RETURN(RatingData all, LoadSource(cmd.source));
  PrintLoadSummary("tuning on", all, out);
  const std::vector<std::pair<RatingData, RatingData>> splits =
      MakeSplits(all, cmd);
  const uint64_t grid = GridSize(dims);
  const std::vector<uint64_t> picks = PickSettings(grid, cmd);
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
  std::vector<Trial> trials;
  for (size_t t = 0; t < picks.size(); ++t) {
    Hyperparameters p = ResolveParams(cmd.kind, cmd.params);
    std::string setting = ApplySetting(dims, picks[t], &p);
    RECSYS_ASSIGN_OR_RETURN(
        Trial trial, RunTrial(cmd, metric, splits, p, std::move(setting)));
    trials.push_back(std::move(trial));
    out << absl::StrFormat("trial %3d  %s %6.2fs  %s\n", t + 1,
                           ScoreText(trials.back()), trials.back().seconds,
                           trials.back().setting);
    out.flush();
  }
  PrintBest(std::move(trials), metric, out);
  return absl::OkStatus();
}

}  // namespace recsys
