// Model selection's ranking search: popularity, PureSVD, iALS by successive
// halving, and the popularity prior's weight.
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
namespace {

// Trains one ranking candidate on the carved part and scores it; the model
// is kept in *fit for a later blend.
double TryRanking(Search& s, ModelKind kind, const Hyperparameters& p,
                  int32_t rung, Model* fit) {
  const Clock::time_point t0 = Clock::now();
  TrainOptions opt;
  opt.threads = s.rank_threads;
  opt.stop = s.options->stop;
  absl::StatusOr<Model> m = TrainModel(s.v.train, kind, p, opt);
  const int64_t cost = kind == ModelKind::kPuresvd ? p.epochs + 2 : p.epochs;
  s.work += cost;
  SelectionTrial t;
  t.candidate = DescribeCandidate(kind, p);
  t.kind = kind;
  t.rung = rung;
  t.work = cost;
  double ndcg = -1;
  if (m.ok()) {
    ndcg = Ndcg(s.v, s.rank_threads, ModelScores(*m), Eigen::VectorXf(), {0.0f},
                nullptr)[0];
    if (fit != nullptr) *fit = *std::move(m);
  } else {
    t.candidate += absl::StrCat(" (failed: ", m.status().message(), ")");
  }
  t.ndcg = ndcg;
  t.seconds = Since(t0);
  s.Record(t, &s.rank_trials);
  return ndcg;
}

}  // namespace

void TryPopularity(Search& s, RankCandidate* best) {
  const Clock::time_point t0 = Clock::now();
  Eigen::VectorXf counts(static_cast<Eigen::Index>(s.v.relevant_counts.size()));
  for (size_t i = 0; i < s.v.relevant_counts.size(); ++i) {
    counts[static_cast<Eigen::Index>(i)] =
        static_cast<float>(s.v.relevant_counts[i]);
  }
  const double ndcg = Ndcg(
      s.v, s.rank_threads,
      [&counts](absl::Span<const int32_t> users, RowMatrix* out) {
        *out = counts.transpose().replicate(
            static_cast<Eigen::Index>(users.size()), 1);
      },
      Eigen::VectorXf(), {0.0f}, nullptr)[0];
  SelectionTrial t;
  t.candidate = "popularity (relevant ratings)";
  t.kind = ModelKind::kPopularity;
  t.ndcg = ndcg;
  t.seconds = Since(t0);
  s.Record(t, &s.rank_trials);
  if (ndcg > best->ndcg) {
    best->kind = ModelKind::kPopularity;
    best->params = Hyperparameters();
    best->ndcg = ndcg;
  }
}

void SearchPureSvd(Search& s, const RankPins& pins, RankCandidate* best,
                   Model* best_model) {
  const RatingData& d = s.v.train;
  const int64_t side = std::min(d.num_users(), d.num_items());
  std::vector<int32_t> ks;
  if (pins.factors) {
    ks = {*pins.factors};
  } else {
    for (int32_t k : {10, 20, 50, 100}) {
      if (k <= std::max<int64_t>(2, side / 4) &&
          (k <= 50 || d.num_items() <= 50000)) {
        ks.push_back(k);
      }
    }
    if (ks.empty()) ks = {static_cast<int32_t>(std::max<int64_t>(1, side / 4))};
  }
  std::vector<float> targets;
  if (pins.value_weight) {
    targets = {*pins.value_weight};
  } else if (d.feedback == Feedback::kImplicit) {
    targets = {0.0f};  // (every interaction's target is 1)
  } else {
    // Every interaction alike; the raw rating (r / max); the rating's place
    // on the scale.
    const float raw = d.scale.max > 0 ? 1 - d.scale.min / d.scale.max : 1;
    targets = {0.0f, raw, 1.0f};
    if (raw <= 0 || raw >= 1) targets = {0.0f, 1.0f};
  }
  Hyperparameters p = DefaultHyperparameters(ModelKind::kPuresvd);
  if (s.options->pinned.seed) p.seed = *s.options->pinned.seed;
  p.epochs = pins.epochs.value_or(2);
  for (float target : targets) {
    p.value_weight = target;
    p.factors = ks.back();
    const int64_t cost = p.epochs + 2;
    if (!s.MayRun(cost) || s.Stopped()) return;
    const Clock::time_point t0 = Clock::now();
    TrainOptions opt;
    opt.threads = s.rank_threads;
    opt.stop = s.options->stop;
    absl::StatusOr<Model> full = TrainModel(d, ModelKind::kPuresvd, p, opt);
    s.work += cost;
    if (!full.ok()) continue;
    const double fit_seconds = Since(t0);
    for (size_t j = 0; j < ks.size(); ++j) {
      const Clock::time_point t1 = Clock::now();
      Model m = *full;
      const int32_t k = std::min<int32_t>(ks[j], full->factors());
      m.user_factors = full->user_factors.leftCols(k);
      m.item_factors = full->item_factors.leftCols(k);
      m.params.factors = k;
      const double ndcg = Ndcg(s.v, s.rank_threads, ModelScores(m),
                               Eigen::VectorXf(), {0.0f}, nullptr)[0];
      SelectionTrial t;
      t.candidate = DescribeCandidate(ModelKind::kPuresvd, m.params);
      t.kind = ModelKind::kPuresvd;
      t.work = j + 1 == ks.size() ? cost : 0;  // one SVD serves them all
      t.ndcg = ndcg;
      t.seconds = Since(t1) + (j + 1 == ks.size() ? fit_seconds : 0);
      s.Record(t, &s.rank_trials);
      if (ndcg > best->ndcg) {
        best->kind = ModelKind::kPuresvd;
        best->params = m.params;
        best->ndcg = ndcg;
        *best_model = std::move(m);
      }
    }
  }
}

namespace {

// One iALS setting of the search.
struct IalsSetting {
  int32_t factors;
  float reg, reg_exponent, implicit_weight, value_weight, target_min;
  float confidence_alpha;
  bool operator==(const IalsSetting& b) const {
    return factors == b.factors && reg == b.reg &&
           reg_exponent == b.reg_exponent &&
           implicit_weight == b.implicit_weight &&
           value_weight == b.value_weight && target_min == b.target_min &&
           confidence_alpha == b.confidence_alpha;
  }
};

// What the target varies over: for ratings, graded by the rating (value
// weight) or "liked" at or above the relevance threshold against "seen,
// not liked"; for implicit feedback, the confidence of a count.
struct IalsTarget {
  float value_weight, target_min, confidence_alpha;
};

std::vector<IalsTarget> IalsTargets(const RatingData& d) {
  if (d.feedback == Feedback::kImplicit) {
    return {{0, 0, 0.0f}, {0, 0, 0.3f}, {0, 0, 1.0f}, {0, 0, 3.0f}};
  }
  const float liked = DefaultRelevanceThreshold(d.scale);
  return {{0.5f, 0, 0}, {1.0f, 0, 0}, {0.0f, liked, 0}};
}

// The grid: factors (by the data's size), reg with reg_exponent, implicit
// weight, and the target (IalsTargets).
std::vector<IalsSetting> IalsGrid(const RatingData& d) {
  const int64_t side = std::min(d.num_users(), d.num_items());
  std::vector<int32_t> factors;
  for (int32_t f : {16, 32, 64, 128}) {
    if (f <= std::max<int64_t>(16, side / 4) &&
        (f <= 64 || d.num_items() <= 50000)) {
      factors.push_back(f);
    }
  }
  const std::vector<IalsTarget> targets = IalsTargets(d);
  std::vector<IalsSetting> grid;
  for (int32_t f : factors) {
    for (float e : {0.5f, 1.0f}) {
      // The penalty is reg * (seen)^e: the same strength needs a larger reg
      // at the smaller exponent.
      const std::vector<float> regs =
          e < 1 ? std::vector<float>{0.1f, 0.3f, 1.0f}
                : std::vector<float>{0.003f, 0.01f, 0.03f};
      for (float r : regs) {
        for (float a0 : {0.1f, 0.3f, 1.0f}) {
          for (const IalsTarget& t : targets) {
            grid.push_back({f, r, e, a0, t.value_weight, t.target_min,
                            t.confidence_alpha});
          }
        }
      }
    }
  }
  return grid;
}

IalsSetting Pinned(const RankPins& pins, IalsSetting g) {
  if (pins.factors) g.factors = *pins.factors;
  if (pins.reg) g.reg = *pins.reg;
  if (pins.reg_exponent) g.reg_exponent = *pins.reg_exponent;
  if (pins.implicit_weight) g.implicit_weight = *pins.implicit_weight;
  if (pins.value_weight) g.value_weight = *pins.value_weight;
  if (pins.target_min) g.target_min = *pins.target_min;
  if (pins.confidence_alpha) g.confidence_alpha = *pins.confidence_alpha;
  return g;
}

// The shipped defaults and 12 distinct settings drawn (seeded) from the
// grid, the pins applied; as many as the budget's three rounds allow.
std::vector<IalsSetting> PickIalsSettings(const Search& s, const RankPins& pins,
                                          const std::vector<int32_t>& rungs) {
  const Hyperparameters defaults = DefaultHyperparameters(ModelKind::kIals);
  // (Implicit feedback: the shipped defaults, rating targets aside, with
  // the middle confidence.)
  const bool implicit = s.v.train.feedback == Feedback::kImplicit;
  std::vector<IalsSetting> picks = {Pinned(
      pins, {defaults.factors, defaults.reg, defaults.reg_exponent,
             defaults.implicit_weight, implicit ? 0 : defaults.value_weight,
             implicit ? 0 : defaults.target_min, implicit ? 1.0f : 0.0f})};
  std::vector<IalsSetting> grid = IalsGrid(s.v.train);
  std::mt19937_64 rng(s.options->seed ^ 0x1a15);
  std::shuffle(grid.begin(), grid.end(), rng);
  for (const IalsSetting& g : grid) {
    if (picks.size() >= 13) break;
    const IalsSetting p = Pinned(pins, g);
    if (std::find(picks.begin(), picks.end(), p) == picks.end()) {
      picks.push_back(p);
    }
  }
  auto plan_cost = [&](size_t n) {
    int64_t cost = 0;
    for (int32_t e : rungs) {
      cost += static_cast<int64_t>(n) * pins.epochs.value_or(e);
      n = std::max<size_t>(1, (n + 2) / 3);
    }
    return cost;
  };
  while (picks.size() > 1 && s.work + plan_cost(picks.size()) > s.budget) {
    picks.pop_back();
  }
  return picks;
}

Hyperparameters IalsParams(const Search& s, const RankPins& pins,
                           const IalsSetting& g, int32_t epochs) {
  Hyperparameters p = DefaultHyperparameters(ModelKind::kIals);
  p.factors = g.factors;
  p.reg = g.reg;
  p.reg_exponent = g.reg_exponent;
  p.implicit_weight = g.implicit_weight;
  p.value_weight = g.value_weight;
  p.target_min = g.target_min;
  p.confidence_alpha = g.confidence_alpha;
  p.epochs = pins.epochs.value_or(epochs);
  if (pins.cg_steps) p.cg_steps = *pins.cg_steps;
  if (s.options->pinned.seed) p.seed = *s.options->pinned.seed;
  return p;
}

}  // namespace

void SearchIals(Search& s, const RankPins& pins, RankCandidate* best,
                Model* best_model) {
  // Successive halving: every setting at 4 iterations, the best third
  // again at 8, the best of those at 16.
  const std::vector<int32_t> rung_epochs = {4, 8, 16};
  std::vector<IalsSetting> alive = PickIalsSettings(s, pins, rung_epochs);
  IalsSetting best_setting{};
  bool has_best = false;
  for (size_t rung = 0; rung < rung_epochs.size() && !alive.empty(); ++rung) {
    std::vector<std::pair<double, size_t>> scored;
    for (size_t j = 0; j < alive.size(); ++j) {
      const Hyperparameters p =
          IalsParams(s, pins, alive[j], rung_epochs[rung]);
      if (!s.MayRun(p.epochs) || s.Stopped()) break;
      Model m;
      const double ndcg =
          TryRanking(s, ModelKind::kIals, p, static_cast<int32_t>(rung), &m);
      scored.push_back({ndcg, j});
      // The leader trained longer takes over unless clearly worse: a
      // converged fit carries over to the refit on more data, and
      // differences this small are noise.
      const bool longer = has_best && alive[j] == best_setting &&
                          ndcg >= (1 - kNoise) * best->ndcg;
      if (ndcg > best->ndcg || longer) {
        best->kind = ModelKind::kIals;
        best->params = p;
        best->ndcg = ndcg;
        *best_model = std::move(m);
        best_setting = alive[j];
        has_best = true;
      }
    }
    if (scored.size() <= 1) break;
    std::stable_sort(
        scored.begin(), scored.end(),
        [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<IalsSetting> next;
    for (size_t j = 0; j < std::max<size_t>(1, (scored.size() + 2) / 3); ++j) {
      next.push_back(alive[scored[j].second]);
    }
    alive = std::move(next);
  }
}

void SearchBlend(Search& s, const RankCandidate& cand, const Model& m,
                 RankCandidate* best) {
  if (s.Stopped()) return;
  const Clock::time_point t0 = Clock::now();
  // (As TrainModel makes it: see PriorMin.)
  const Eigen::VectorXf prior = internal::PopularityPrior(
      m.ranks_by_rating() ? s.v.pick_counts : s.v.relevant_counts, 1.0f);
  std::vector<float> weights;
  if (m.ranks_by_rating()) {
    // Predicted ratings: weights in stars (per 4 of the scale's width),
    // from a nudge to "popular, then best rated".
    const double star = (m.scale.max - m.scale.min) / 4;
    for (double f : {0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0}) {
      weights.push_back(static_cast<float>(f * star));
    }
  } else {
    // Preference scores: multiples of the typical best score.
    double top = 0;
    Ndcg(s.v, s.rank_threads, ModelScores(m), prior, {0.0f}, &top);
    if (!(top > 0)) return;
    for (double f : {0.03, 0.1, 0.3, 1.0, 3.0}) {
      weights.push_back(static_cast<float>(f * top));
    }
  }
  const std::vector<double> ndcg =
      Ndcg(s.v, s.rank_threads, ModelScores(m), prior, weights, nullptr);
  const double seconds = Since(t0) / static_cast<double>(weights.size());
  for (size_t w = 0; w < weights.size(); ++w) {
    Hyperparameters p = cand.params;
    p.popularity_weight = weights[w];
    SelectionTrial t;
    t.candidate = DescribeCandidate(cand.kind, p);
    t.kind = cand.kind;
    t.rung = 0;
    t.ndcg = ndcg[w];
    t.seconds = seconds;
    s.Record(t, &s.rank_trials);
    // (A prior that gains less than the noise is not worth its bias.)
    if (ndcg[w] > best->ndcg && ndcg[w] > (1 + kNoise) * cand.ndcg) {
      best->kind = cand.kind;
      best->params = p;
      best->ndcg = ndcg[w];
    }
  }
}

}  // namespace selection
}  // namespace internal
}  // namespace recsys
