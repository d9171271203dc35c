// Model selection inside every training: the settings that fit the data at
// hand, chosen on a validation split carved from the training data alone,
// within a budget of work, and recorded in the model (Model::selection).
//
// Implicit feedback (RatingData::feedback) has no rating part: every held-out
// interaction is relevant, iALS searches its confidence weighting
// (confidence_alpha) instead of the rating targets, and the winning ranking
// kind serves alone.
//
// The served model has two parts, chosen apart:
//  - ranking, by nDCG@10 on the validation split scored like protocol T
//    (every item the user did not rate in the carved training part is a
//    candidate; held-out ratings at or above DefaultRelevanceThreshold are
//    relevant): popularity; PureSVD over k and the rating target; iALS over
//    factors, reg, reg_exponent, implicit_weight and value_weight by
//    successive halving (a third of the settings go on, each round with
//    twice the iterations); then, for the best PureSVD and iALS settings, the
//    weight of a popularity prior. Popularity is a candidate, so the chosen
//    ranking never scores below it on the validation split.
//  - ratings, by RMSE on the same split (protocol R): the baseline and
//    Bayesian MF. It trains on its own thread beside the ranking search.
// The winner is refit on all the data: a kHybrid (ranking part + Bayesian
// MF), or the ranking kind alone when the baseline predicts ratings better.
//
// Work is counted in units (an iALS iteration, a PureSVD power iteration, a
// Gibbs sweep, a round of bias fitting), so the same data, options and seed
// always give the same choice; max_seconds is only a safety net.
//
//   SelectionOptions opt;
//   opt.threads = 2;
//   opt.on_trial = [](const SelectionTrial& t) { ... };
//   RECSYS_ASSIGN_OR_RETURN(Model m, TrainSelected(data, opt));
//   // m.selection lists every trial; m.kind and m.params say what won.
#ifndef RECSYS_MODELS_SELECTION_H_
#define RECSYS_MODELS_SELECTION_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/train.h"

namespace recsys {

struct SelectionOptions {
  // Fixed by the caller; the search varies the rest. In a kHybrid (and in
  // `auto`, whose winner is one) factors, epochs, burn_in, samples and
  // init_std belong to the rating part, and rank_factors, rank_epochs,
  // rank_reg, implicit_weight, reg_exponent, value_weight and cg_steps to
  // the ranking part.
  ParamOverrides pinned;
  // Search only this kind's settings (kIals, kPuresvd or kHybrid; other
  // kinds have no search and train with their defaults and the pins).
  // Empty: any kind ("auto").
  std::optional<ModelKind> kind;
  int threads = 0;    // 0 = one per hardware thread
  uint64_t seed = 1;  // of the split and the search
  // Share of each user's ratings held out, for users with at least
  // min_user_ratings (the others keep all theirs).
  double validation_fraction = 0.2;
  int32_t min_user_ratings = 5;
  // Users scored for nDCG@10 (a seeded sample of those with a relevant
  // held-out rating); bounds the cost of scoring on large sets.
  int32_t max_validation_users = 2000;
  int64_t budget = 400;      // work units for all trials
  double max_seconds = 300;  // no trial starts after this (0 = no cap)
  // Refit the winner on all the data (false: the model trained on the
  // carved training part is returned, and its held-out RMSE reported).
  bool refit = true;
  std::function<void(const SelectionTrial&)> on_trial;  // as each finishes
  std::function<bool()> stop;  // asked between trials; true cancels
};

// What selection chose: the kind and settings to train, and the report.
struct Selection {
  ModelKind kind = ModelKind::kHybrid;
  Hyperparameters params;
  SelectionReport report;
};

// Runs the search. Fails with InvalidArgument on empty data and Cancelled
// when options.stop asked. With too little data to carve a validation split
// it chooses the defaults and says so in the report.
absl::StatusOr<Selection> SelectModel(const RatingData& data,
                                      const SelectionOptions& options);

// SelectModel, then the winner trained on all of `data` (options.refit) or
// on the carved training part alone (its user_ratings then hold only that
// part); the report goes into Model::selection, and the chosen rating
// part's held-out RMSE into last_validation_rmse. `train` supplies threads,
// on_epoch and stop for the final fit.
absl::StatusOr<Model> TrainSelected(const RatingData& data,
                                    const SelectionOptions& options,
                                    const TrainOptions& train);

// What a caller asks for: a kind, or any ("auto"), with the settings it
// gives; with `select`, the search varies the rest; without, the kind trains
// exactly as told (auto: kHybrid with its defaults).
struct TrainingSpec {
  std::optional<ModelKind> kind;  // empty: auto
  ParamOverrides params;
  bool select = true;
  // Budget, split and callbacks of the search (its pinned and kind fields
  // are set from the two above, its threads and stop from TrainOptions).
  SelectionOptions selection;
};

// "auto" (any kind, chosen by selection) or a kind name.
absl::StatusOr<std::optional<ModelKind>> ParseKindOrAuto(
    absl::string_view name);
// The name ParseKindOrAuto reads back.
std::string KindOrAutoName(const std::optional<ModelKind>& kind);

// Checks what can be checked before any data is loaded: the kind's
// settings as given (with the defaults for the rest).
absl::Status ValidateSpec(const TrainingSpec& spec);

// Whether the spec runs a search: selection is on, and the kind (or auto)
// has settings left to vary.
bool SpecSearches(const TrainingSpec& spec);

// Trains as the spec asks: by TrainSelected when it searches, else by
// TrainModel (a kind with no search takes its defaults and the given
// settings; auto without selection is kHybrid's defaults).
absl::StatusOr<Model> TrainWithSpec(const RatingData& data,
                                    const TrainingSpec& spec,
                                    const TrainOptions& train);

// The kind `auto` trains without a search: kHybrid for explicit ratings,
// kIals for implicit feedback (which has no ratings to predict).
ModelKind AutoKind(Feedback feedback);

// What serves each half of a model: the ranking ("ials", "puresvd",
// "popularity", or a rating kind, with " + popularity prior" when it has
// one) and the predicted ratings ("bayes", "baseline", ...).
std::string RankingKindName(const Model& m);
std::string RatingKindName(const Model& m);

// A trial's kind and settings in words, e.g. "ials factors=64 reg=0.1 ...".
std::string DescribeCandidate(ModelKind kind, const Hyperparameters& p);

}  // namespace recsys

#endif  // RECSYS_MODELS_SELECTION_H_
