#include "models/selection.h"

#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "models/selection_internal.h"

namespace recsys {

using internal::selection::AlsFor;
using internal::selection::BayesFor;
using internal::selection::Clock;
using internal::selection::MakeValidation;
using internal::selection::ModelScores;
using internal::selection::Ndcg;
using internal::selection::Num;
using internal::selection::RankCandidate;
using internal::selection::RankingPins;
using internal::selection::RankPins;
using internal::selection::RatingChoice;
using internal::selection::Search;
using internal::selection::SearchBlend;
using internal::selection::SearchIals;
using internal::selection::SearchPureSvd;
using internal::selection::SearchRatings;
using internal::selection::Since;
using internal::selection::TryPopularity;

std::string DescribeCandidate(ModelKind kind, const Hyperparameters& p) {
  std::vector<std::string> f = {std::string(ModelKindName(kind))};
  auto add = [&f](absl::string_view name, double v) {
    f.push_back(absl::StrCat(name, "=", Num(v)));
  };
  switch (kind) {
    case ModelKind::kIals:
      add("factors", p.factors);
      add("epochs", p.epochs);
      add("reg", p.reg);
      add("reg_exponent", p.reg_exponent);
      add("implicit_weight", p.implicit_weight);
      add("value_weight", p.value_weight);
      if (p.target_min > 0) add("target_min", p.target_min);
      if (p.confidence_alpha > 0) {
        add("confidence_alpha", p.confidence_alpha);
        add("confidence_eps", p.confidence_eps);
      }
      break;
    case ModelKind::kPuresvd:
      add("factors", p.factors);
      add("power_iterations", p.epochs);
      add("value_weight", p.value_weight);
      break;
    case ModelKind::kBayes:
      add("factors", p.factors);
      add("sweeps", p.epochs);
      add("burn_in", p.burn_in);
      add("samples", p.samples);
      break;
    case ModelKind::kHybrid: {
      const std::string rank =
          p.rank_kind == ModelKind::kPopularity
              ? std::string("popularity")
              : DescribeCandidate(p.rank_kind, RankingPart(p));
      Hyperparameters ratings = p;  // (the prior is the ranking part's)
      ratings.popularity_weight = 0;
      return absl::StrCat("hybrid: ranking ", rank, "; ratings ",
                          DescribeCandidate(ModelKind::kBayes, ratings));
    }
    case ModelKind::kBaseline:
    case ModelKind::kPopularity:
      break;
    case ModelKind::kSgd:
    case ModelKind::kAls:
      add("factors", p.factors);
      add("epochs", p.epochs);
      add("reg", p.reg);
      add("reg_bias", p.reg_bias);
      break;
  }
  if (kind != ModelKind::kPopularity && p.popularity_weight > 0) {
    add("popularity_weight", p.popularity_weight);
  }
  return absl::StrJoin(f, " ");
}

namespace {

// Whether the caller pinned every field the search of `kind` varies.
bool FullyPinned(ModelKind kind, const SelectionOptions& o) {
  const RankPins r = RankingPins(o);
  if (kind == ModelKind::kIals) {
    // (confidence_alpha, searched on implicit feedback only, is left out:
    // pinning the rest trains as told, with the default confidence.)
    return r.factors && r.reg && r.reg_exponent && r.implicit_weight &&
           r.value_weight && r.target_min && r.epochs;
  }
  if (kind == ModelKind::kPuresvd) return r.factors && r.value_weight;
  return false;
}

absl::Status CheckSelectionInput(const RatingData& data,
                                 const SelectionOptions& o) {
  if (data.ratings.empty()) {
    return absl::InvalidArgumentError("cannot select a model for no ratings");
  }
  if (!(o.validation_fraction > 0 && o.validation_fraction < 1)) {
    return absl::InvalidArgumentError(
        "the validation fraction of model selection must be in (0, 1)");
  }
  if (o.budget < 0) {
    return absl::InvalidArgumentError("the selection budget must be >= 0");
  }
  return absl::OkStatus();
}

// What the rating part tries, and the work reserved for it first, so that
// the ranking search plans with what is left.
struct RatingPlan {
  bool wanted = false;         // the model predicts ratings with it
  bool with_baseline = false;  // auto: the baseline and ALS are candidates
  Hyperparameters bayes, als;
  int64_t work = 0;
  bool fits = false;
  const Hyperparameters* als_candidate() const {
    return with_baseline ? &als : nullptr;
  }
};

RatingPlan PlanRatings(const RatingData& data, const SelectionOptions& o,
                       ModelKind requested) {
  RatingPlan plan;
  // (Implicit feedback has no ratings to predict.)
  plan.wanted =
      requested == ModelKind::kHybrid && data.feedback == Feedback::kExplicit;
  plan.with_baseline = !o.kind;
  plan.bayes = BayesFor(data, o);
  plan.als = AlsFor(o);
  if (plan.wanted) {
    plan.work = plan.bayes.epochs;
    if (plan.with_baseline) {
      plan.work +=
          DefaultHyperparameters(ModelKind::kBaseline).epochs + plan.als.epochs;
    }
  }
  plan.fits = plan.work <= o.budget;
  return plan;
}

// The best of popularity, PureSVD and iALS, each with the popularity prior
// tried on top.
RankCandidate SearchRankings(Search& s, const SelectionOptions& o,
                             ModelKind requested) {
  const RankPins pins = RankingPins(o);
  RankCandidate best;
  Model best_svd, best_ials;
  RankCandidate svd, ials;
  if (!o.kind) TryPopularity(s, &best);
  if (requested != ModelKind::kIals) SearchPureSvd(s, pins, &svd, &best_svd);
  if (requested != ModelKind::kPuresvd) SearchIals(s, pins, &ials, &best_ials);
  for (auto [cand, model] :
       {std::pair(&svd, &best_svd), std::pair(&ials, &best_ials)}) {
    if (cand->ndcg < 0) continue;
    if (cand->ndcg > best.ndcg) best = *cand;
    SearchBlend(s, *cand, *model, &best);
  }
  return best;
}

// Ranking by a rating model itself, with the popularity prior: on data
// where what people pick is mostly what is popular, the best of the
// popular items for this user. Bayesian MF, and biased ALS when it also
// predicts at least as well as the rating part (it would replace it).
void TryRankingByRating(Search& s, const RatingPlan& plan,
                        const RatingChoice& ratings, RankCandidate* best) {
  auto try_one = [&](ModelKind kind, const Hyperparameters& p, const Model& m) {
    if (s.Stopped()) return;
    RankCandidate by_rating;
    by_rating.kind = kind;
    by_rating.params = p;
    by_rating.ndcg = Ndcg(s.v, s.rank_threads, ModelScores(m),
                          Eigen::VectorXf(), {0.0f}, nullptr)[0];
    SelectionTrial t;
    t.candidate = DescribeCandidate(kind, p);
    t.kind = kind;
    t.ndcg = by_rating.ndcg;
    s.Record(t, &s.rank_trials);
    if (by_rating.ndcg > best->ndcg) *best = by_rating;
    SearchBlend(s, by_rating, m, best);
  };
  if (ratings.bayes_model.num_users() > 0) {
    try_one(ModelKind::kBayes, plan.bayes, ratings.bayes_model);
  }
  if (ratings.als_model.num_users() > 0 &&
      (ratings.rmse < 0 || ratings.als_rmse <= ratings.rmse)) {
    try_one(ModelKind::kAls, plan.als, ratings.als_model);
  }
}

// Every trial in the report, the winners marked: the best ranking, and the
// rating part (`rating_kind` with RMSE `rmse`).
void RecordTrials(const Search& s, const RankCandidate& best,
                  ModelKind rating_kind, double rmse, SelectionReport* report) {
  std::vector<SelectionTrial>& trials = report->trials;
  trials = s.rank_trials;
  const std::string chosen_rank =
      best.kind == ModelKind::kPopularity
          ? std::string("popularity (relevant ratings)")
          : DescribeCandidate(best.kind, best.params);
  for (SelectionTrial& t : trials) {
    if (t.candidate == chosen_rank && t.ndcg == best.ndcg) {
      t.chosen = true;
      break;
    }
  }
  const size_t first_rating = trials.size();
  trials.insert(trials.end(), s.rating_trials.begin(), s.rating_trials.end());
  for (size_t j = first_rating; j < trials.size(); ++j) {
    trials[j].chosen = trials[j].rmse == rmse && trials[j].kind == rating_kind;
  }
  report->work = 0;
  for (const SelectionTrial& t : trials) report->work += t.work;
  report->seconds = Since(s.start);
}

// The served model: one that ranks by its ratings alone; a hybrid of the
// ranking winner and Bayesian MF; or the ranking kind alone when the
// baseline predicts better than Bayesian MF.
void Assemble(const RankCandidate& best, const RatingPlan& plan,
              bool bayes_rates, Selection* out) {
  const Hyperparameters& rank = best.params;
  if (best.kind == ModelKind::kBayes || best.kind == ModelKind::kAls) {
    out->kind = best.kind;
    out->params = rank;
  } else if (plan.wanted && bayes_rates) {
    out->kind = ModelKind::kHybrid;
    Hyperparameters& p = out->params;
    p = plan.bayes;
    p.rank_kind = best.kind;
    if (best.kind == ModelKind::kPopularity) {
      p.rank_factors = 1;
      p.rank_epochs = 1;
    } else {
      SetRankingPart(rank, &p);
    }
  } else if (best.kind == ModelKind::kPopularity) {
    out->kind = ModelKind::kPopularity;
    out->params = DefaultHyperparameters(ModelKind::kPopularity);
  } else {
    out->kind = best.kind;
    out->params = rank;
  }
}

// The search itself, once the data is known to allow one: the rating part
// (on its own thread when there are two or more), the ranking search, the
// rating models as rankers, and the choice.
absl::Status RunSearch(const RatingData& data, const SelectionOptions& o,
                       ModelKind requested, Search& s, Selection* out) {
  const int threads = ResolveThreads(o.threads);
  const RatingPlan plan = PlanRatings(data, o, requested);
  s.budget = o.budget - (plan.fits ? plan.work : 0);
  RatingChoice ratings;
  std::thread rating_thread;
  const bool beside = plan.wanted && plan.fits && threads > 1;
  s.rank_threads = beside ? threads - 1 : threads;
  if (beside) {
    rating_thread = std::thread([&] {
      ratings = SearchRatings(s, 1, plan.with_baseline, plan.bayes,
                              plan.als_candidate());
    });
  }
  RankCandidate best = SearchRankings(s, o, requested);
  if (beside) {
    rating_thread.join();
  } else if (plan.wanted && plan.fits) {
    ratings = SearchRatings(s, threads, plan.with_baseline, plan.bayes,
                            plan.als_candidate());
  }
  s.rank_threads = threads;
  if (!o.kind) TryRankingByRating(s, plan, ratings, &best);
  if (s.Stopped()) {
    return absl::CancelledError("model selection stopped on request");
  }
  if (best.ndcg < 0) {
    out->report.summary = absl::StrCat(
        "no ranking candidate fitted the budget of ", o.budget,
        " units: ", ModelKindName(out->kind), " with its defaults");
    return absl::OkStatus();
  }
  // The rating part: a model that ranks by its predicted ratings is it.
  ModelKind rating_kind =
      ratings.bayes ? ModelKind::kBayes : ModelKind::kBaseline;
  if (best.kind == ModelKind::kBayes || best.kind == ModelKind::kAls) {
    rating_kind = best.kind;
    for (const SelectionTrial& t : s.rating_trials) {
      if (t.kind == best.kind) ratings.rmse = t.rmse;
    }
  }
  RecordTrials(s, best, rating_kind, ratings.rmse, &out->report);
  Assemble(best, plan, ratings.bayes, out);
  if (o.pinned.seed) out->params.seed = *o.pinned.seed;
  const std::vector<SelectionTrial>& trials = out->report.trials;
  out->report.summary = absl::StrFormat(
      "%s; validation nDCG@10 %.4f%s (popularity %s)%s",
      DescribeCandidate(out->kind, out->params), best.ndcg,
      ratings.rmse >= 0 ? absl::StrFormat(", RMSE %.4f", ratings.rmse) : "",
      trials.empty() || trials[0].kind != ModelKind::kPopularity
          ? std::string("not tried")
          : absl::StrFormat("%.4f", trials[0].ndcg),
      s.timed_out ? "; stopped early by the time cap" : "");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Selection> SelectModel(const RatingData& data,
                                      const SelectionOptions& o) {
  RECSYS_RETURN_IF_ERROR(CheckSelectionInput(data, o));
  const ModelKind requested = o.kind.value_or(ModelKind::kHybrid);
  // What trains when no search can run: auto's kind for the data.
  const ModelKind fallback = o.kind ? requested : AutoKind(data.feedback);
  const bool searchable = !o.kind || requested == ModelKind::kIals ||
                          requested == ModelKind::kPuresvd ||
                          requested == ModelKind::kHybrid;
  Selection out;
  out.kind = fallback;
  out.params = ResolveParams(fallback, o.pinned);
  out.report.budget = o.budget;
  if (!searchable || FullyPinned(requested, o)) {
    out.report.summary = absl::StrCat(
        ModelKindName(requested),
        searchable ? ": every searched setting was given; trained as told"
                   : " has no search space: its defaults and the given "
                     "settings");
    return out;
  }
  Search s;
  s.options = &o;
  s.start = Clock::now();
  MakeValidation(data, o, &s.v);
  out.report.validation_users = static_cast<int64_t>(s.v.users.size());
  out.report.validation_ratings = static_cast<int64_t>(s.v.held.ratings.size());
  if (s.v.users.empty()) {
    out.report.summary = absl::StrFormat(
        "too little data to select on (no user with %d or more ratings has a "
        "relevant one held out): %s with its defaults",
        o.min_user_ratings, ModelKindName(fallback));
    return out;
  }
  RECSYS_RETURN_IF_ERROR(RunSearch(data, o, requested, s, &out));
  return out;
}

absl::StatusOr<Model> TrainSelected(const RatingData& data,
                                    const SelectionOptions& options,
                                    const TrainOptions& train) {
  RECSYS_ASSIGN_OR_RETURN(Selection sel, SelectModel(data, options));
  RatingData carved, held;
  const RatingData* fit = &data;
  if (!options.refit && !sel.report.empty()) {
    PerUserSplit(data, options.validation_fraction, options.min_user_ratings,
                 options.seed, &carved, &held);
    fit = &carved;
  } else if (sel.params.popularity_weight > 0 &&
             (sel.kind == ModelKind::kPuresvd ||
              (sel.kind == ModelKind::kHybrid &&
               sel.params.rank_kind == ModelKind::kPuresvd))) {
    // PureSVD scores grow with a user's ratings: the prior keeps its share
    // of them on the whole data.
    const int64_t carved_ratings = static_cast<int64_t>(data.ratings.size()) -
                                   sel.report.validation_ratings;
    if (carved_ratings > 0) {
      sel.params.popularity_weight *= static_cast<float>(
          static_cast<double>(data.ratings.size()) / carved_ratings);
    }
  }
  RECSYS_ASSIGN_OR_RETURN(Model m,
                          TrainModel(*fit, sel.kind, sel.params, train));
  double rmse = -1;
  for (const SelectionTrial& t : sel.report.trials) {
    if (t.chosen && t.part == SelectionTrial::kRating) rmse = t.rmse;
  }
  if (rmse >= 0) m.last_validation_rmse = rmse;
  m.selection = std::move(sel.report);
  return m;
}

absl::StatusOr<std::optional<ModelKind>> ParseKindOrAuto(
    absl::string_view name) {
  if (name == "auto") return std::optional<ModelKind>();
  absl::StatusOr<ModelKind> kind = ParseModelKind(name);
  if (!kind.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind.status().message(), ", or auto"));
  }
  return std::optional<ModelKind>(*kind);
}

std::string KindOrAutoName(const std::optional<ModelKind>& kind) {
  return kind ? std::string(ModelKindName(*kind)) : std::string("auto");
}

absl::Status ValidateSpec(const TrainingSpec& spec) {
  const ModelKind kind = spec.kind.value_or(ModelKind::kHybrid);
  return ValidateHyperparameters(kind, ResolveParams(kind, spec.params));
}

bool SpecSearches(const TrainingSpec& spec) {
  if (!spec.select) return false;
  if (!spec.kind) return true;
  const ModelKind k = *spec.kind;
  if (k != ModelKind::kIals && k != ModelKind::kPuresvd &&
      k != ModelKind::kHybrid) {
    return false;
  }
  SelectionOptions o;
  o.kind = spec.kind;
  o.pinned = spec.params;
  return !FullyPinned(k, o);
}

absl::StatusOr<Model> TrainWithSpec(const RatingData& data,
                                    const TrainingSpec& spec,
                                    const TrainOptions& train) {
  RECSYS_RETURN_IF_ERROR(ValidateSpec(spec));
  if (!SpecSearches(spec)) {
    const ModelKind kind = spec.kind.value_or(AutoKind(data.feedback));
    return TrainModel(data, kind, ResolveParams(kind, spec.params), train);
  }
  SelectionOptions o = spec.selection;
  o.pinned = spec.params;
  o.kind = spec.kind;
  o.threads = train.threads;
  if (!o.stop) o.stop = train.stop;
  if (spec.params.seed) o.seed = *spec.params.seed;
  return TrainSelected(data, o, train);
}

ModelKind AutoKind(Feedback feedback) {
  return feedback == Feedback::kImplicit ? ModelKind::kIals
                                         : ModelKind::kHybrid;
}

std::string RankingKindName(const Model& m) {
  const bool prior = m.rank_bias.size() > 0;
  return absl::StrCat(ModelKindName(m.ranking_kind()),
                      prior ? " + popularity prior" : "");
}

std::string RatingKindName(const Model& m) {
  if (m.feedback == Feedback::kImplicit) return "none (implicit feedback)";
  switch (m.kind) {
    case ModelKind::kHybrid:
      return "bayes";
    case ModelKind::kIals:
    case ModelKind::kPuresvd:
    case ModelKind::kPopularity:
      return "baseline";
    default:
      return std::string(ModelKindName(m.kind));
  }
}

}  // namespace recsys
