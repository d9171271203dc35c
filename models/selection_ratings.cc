// Model selection's rating part: the baseline, Bayesian MF and biased ALS
// scored by RMSE on the validation split.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "models/evaluation.h"
#include "models/popularity.h"
#include "models/selection_internal.h"
#include "models/topk.h"

namespace recsys {
namespace internal {
namespace selection {
Hyperparameters BayesFor(const RatingData& d, const SelectionOptions& o) {
  Hyperparameters p = ResolveParams(ModelKind::kBayes, o.pinned);
  if (d.ratings.size() > 400000 && !o.pinned.epochs && !o.pinned.burn_in &&
      !o.pinned.samples) {
    p.epochs = 100;
    p.burn_in = 20;
    p.samples = 24;
  }
  return p;
}

Hyperparameters AlsFor(const SelectionOptions& o) {
  Hyperparameters p = ResolveParams(ModelKind::kAls, o.pinned);
  if (!o.pinned.factors) p.factors = 16;
  if (!o.pinned.epochs) p.epochs = 10;
  if (!o.pinned.reg) p.reg = 0.06f;
  if (!o.pinned.reg_bias) p.reg_bias = 0.06f;
  return p;
}

RatingChoice SearchRatings(Search& s, int threads, bool with_baseline,
                           const Hyperparameters& bayes,
                           const Hyperparameters* als) {
  RatingChoice choice;
  TrainOptions opt;
  opt.threads = threads;
  opt.stop = s.options->stop;
  double baseline_rmse = -1;
  auto rmse_of = [&](const Model& m) {
    absl::StatusOr<RatingMetrics> r = EvaluateRatings(m, s.v.held, nullptr);
    return r.ok() ? r->rmse : -1.0;
  };
  if (with_baseline && !s.Stopped()) {
    const Clock::time_point t0 = Clock::now();
    const Hyperparameters p = DefaultHyperparameters(ModelKind::kBaseline);
    absl::StatusOr<Model> m =
        TrainModel(s.v.train, ModelKind::kBaseline, p, opt);
    if (m.ok()) {
      baseline_rmse = rmse_of(*m);
      SelectionTrial t;
      t.candidate = "baseline";
      t.kind = ModelKind::kBaseline;
      t.part = SelectionTrial::kRating;
      t.work = p.epochs;
      t.rmse = baseline_rmse;
      t.seconds = Since(t0);
      s.Record(t, &s.rating_trials);
    }
  }
  if (!s.Stopped()) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<Model> m =
        TrainModel(s.v.train, ModelKind::kBayes, bayes, opt);
    SelectionTrial t;
    t.candidate = DescribeCandidate(ModelKind::kBayes, bayes);
    t.kind = ModelKind::kBayes;
    t.part = SelectionTrial::kRating;
    t.work = bayes.epochs;
    if (m.ok()) {
      t.rmse = rmse_of(*m);
      choice.bayes_model = *std::move(m);
    } else {
      t.candidate += absl::StrCat(" (failed: ", m.status().message(), ")");
    }
    t.seconds = Since(t0);
    s.Record(t, &s.rating_trials);
    if (t.rmse >= 0 && (baseline_rmse < 0 || t.rmse <= baseline_rmse)) {
      choice.bayes = true;
      choice.rmse = t.rmse;
    }
  }
  if (!choice.bayes) choice.rmse = baseline_rmse;
  if (als != nullptr && !s.Stopped()) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<Model> m = TrainModel(s.v.train, ModelKind::kAls, *als, opt);
    SelectionTrial t;
    t.candidate = DescribeCandidate(ModelKind::kAls, *als);
    t.kind = ModelKind::kAls;
    t.part = SelectionTrial::kRating;
    t.work = als->epochs;
    if (m.ok()) {
      t.rmse = rmse_of(*m);
      choice.als_rmse = t.rmse;
      choice.als_model = *std::move(m);
    } else {
      t.candidate += absl::StrCat(" (failed: ", m.status().message(), ")");
    }
    t.seconds = Since(t0);
    s.Record(t, &s.rating_trials);
  }
  return choice;
}

}  // namespace selection
}  // namespace internal
}  // namespace recsys
