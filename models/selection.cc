#include "models/selection.h"

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
#include "models/topk.h"

namespace recsys {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

constexpr int kTopN = 10;

// Relative differences of validation nDCG@10 below this are taken as noise
// where a simpler or longer-trained candidate is at stake.
constexpr double kNoise = 0.01;

// The carved split and what scoring it needs.
struct Validation {
  RatingData train, held;
  SparseRows train_rows;                       // by user
  std::vector<int32_t> users;                  // scored for nDCG@10
  std::vector<std::vector<int32_t>> relevant;  // per scored user
  std::vector<int64_t> relevant_counts;        // per item, in `train`
  std::vector<int64_t> pick_counts;            // every rating, per item
  float relevant_min = 0;
};

void MakeValidation(const RatingData& data, const SelectionOptions& o,
                    Validation* v) {
  PerUserSplit(data, o.validation_fraction, o.min_user_ratings, o.seed,
               &v->train, &v->held);
  v->train_rows = BuildRows(v->train, /*by_item=*/false);
  v->relevant_min = DefaultRelevanceThreshold(data.scale);
  const SparseRows by_item = BuildRows(v->train, true);
  v->relevant_counts = internal::RelevantCounts(by_item, v->relevant_min);
  v->pick_counts = internal::RelevantCounts(
      by_item, -std::numeric_limits<float>::infinity());
  std::vector<std::vector<int32_t>> relevant(data.num_users());
  for (const Rating& r : v->held.ratings) {
    if (r.value >= v->relevant_min) relevant[r.user].push_back(r.item);
  }
  std::vector<int32_t> users;
  for (int32_t u = 0; u < data.num_users(); ++u) {
    if (!relevant[u].empty()) users.push_back(u);
  }
  if (static_cast<int64_t>(users.size()) > o.max_validation_users) {
    std::mt19937_64 rng(o.seed ^ 0x7a11d);
    std::shuffle(users.begin(), users.end(), rng);
    users.resize(o.max_validation_users);
    std::sort(users.begin(), users.end());
  }
  v->users = users;
  for (int32_t u : users) v->relevant.push_back(std::move(relevant[u]));
}

// Fills row j of `scores` (users.size() x items) with every item's ranking
// score for users[j]. Scoring a block of users is one matrix product, several
// times faster than a product per user.
using ScoreFn =
    std::function<void(absl::Span<const int32_t> users, RowMatrix* scores)>;

// Users scored together: 64 rows of a 100k-item catalogue are 25 MB.
constexpr int64_t kScoreBlock = 64;

// nDCG@10 over the validation users of score(u) + w * prior, for each w in
// `weights` (the prior is ignored when empty). *top_scale, when not null,
// gets the mean over users of their best candidate's score(u).
std::vector<double> Ndcg(const Validation& v, int threads, const ScoreFn& score,
                         const Eigen::VectorXf& prior,
                         const std::vector<float>& weights, double* top_scale) {
  const size_t n = v.users.size(), nw = weights.size();
  std::vector<double> per_user(n * nw, 0.0), top(n, 0.0);
  std::vector<double> idcg(kTopN + 1, 0.0);
  for (int r = 1; r <= kTopN; ++r) {
    idcg[r] = idcg[r - 1] + 1 / std::log2(r + 1);
  }
  const int64_t blocks =
      (static_cast<int64_t>(n) + kScoreBlock - 1) / kScoreBlock;
  ParallelChunks(blocks, threads, [&](int64_t first, int64_t last, int) {
    RowMatrix block;
    Eigen::VectorXf t;
    std::vector<ScoredItem> best;
    for (int64_t bk = first; bk < last; ++bk) {
      const size_t j0 = static_cast<size_t>(bk * kScoreBlock);
      const size_t j1 = std::min(n, j0 + kScoreBlock);
      score(absl::MakeConstSpan(v.users.data() + j0, j1 - j0), &block);
      for (size_t j = j0; j < j1; ++j) {
        const int32_t u = v.users[j];
        const auto s = block.row(static_cast<Eigen::Index>(j - j0));
        const int64_t b = v.train_rows.offsets[u];
        const absl::Span<const int32_t> rated(
            v.train_rows.cols.data() + b,
            static_cast<size_t>(v.train_rows.offsets[u + 1] - b));
        const std::vector<int32_t>& rel = v.relevant[j];
        for (size_t w = 0; w < nw; ++w) {
          if (weights[w] != 0 && prior.size() == s.size()) {
            t = s.transpose() + weights[w] * prior;
          } else {
            t = s.transpose();
          }
          TopK(absl::MakeConstSpan(t.data(), t.size()), kTopN, rated, &best);
          if (w == 0 && top_scale != nullptr && !best.empty()) {
            top[j] = s[best[0].item];
          }
          double dcg = 0;
          for (size_t r = 0; r < best.size(); ++r) {
            if (std::binary_search(rel.begin(), rel.end(), best[r].item)) {
              dcg += 1 / std::log2(static_cast<double>(r) + 2);
            }
          }
          per_user[j * nw + w] =
              dcg / idcg[std::min<size_t>(rel.size(), kTopN)];
        }
      }
    }
  });
  std::vector<double> mean(nw, 0.0);
  for (size_t j = 0; j < n; ++j) {
    for (size_t w = 0; w < nw; ++w) mean[w] += per_user[j * nw + w];
  }
  for (double& m : mean) m /= std::max<size_t>(1, n);
  if (top_scale != nullptr) {
    *top_scale = std::accumulate(top.begin(), top.end(), 0.0) /
                 static_cast<double>(std::max<size_t>(1, n));
  }
  return mean;
}

// The model's ranking scores, as the server ranks (up to a constant per
// user): its ranking columns, or its predicted ratings, plus its prior.
ScoreFn ModelScores(const Model& m) {
  return [&m](absl::Span<const int32_t> users, RowMatrix* out) {
    const int32_t k = m.ranks_by_rating() ? m.factors() : m.rank_cols();
    RowMatrix p(static_cast<Eigen::Index>(users.size()), k);
    for (size_t j = 0; j < users.size(); ++j) {
      p.row(static_cast<Eigen::Index>(j)) =
          m.user_factors.row(users[j]).head(k);
    }
    out->noalias() = p * m.item_factors.leftCols(k).transpose();
    if (m.ranks_by_rating()) out->rowwise() += m.item_bias.transpose();
    if (m.rank_bias.size() > 0) out->rowwise() += m.rank_bias.transpose();
  };
}

// The ranking fields of a candidate of kind `kind` as the caller pinned
// them: under their own names for a kind searched alone, under the
// rank_* names when the winner will be a kHybrid's ranking part.
struct RankPins {
  std::optional<int32_t> factors, epochs, cg_steps;
  std::optional<float> reg, implicit_weight, reg_exponent, value_weight,
      target_min;
};

RankPins RankingPins(const SelectionOptions& o) {
  const ParamOverrides& p = o.pinned;
  RankPins r;
  const bool alone =
      o.kind == ModelKind::kIals || o.kind == ModelKind::kPuresvd;
  r.factors = alone ? p.factors : p.rank_factors;
  r.epochs = alone ? p.epochs : p.rank_epochs;
  r.reg = alone ? p.reg : p.rank_reg;
  r.cg_steps = p.cg_steps;
  r.implicit_weight = p.implicit_weight;
  r.reg_exponent = p.reg_exponent;
  r.value_weight = p.value_weight;
  r.target_min = p.target_min;
  return r;
}

// One trained and scored ranking candidate.
struct RankCandidate {
  ModelKind kind = ModelKind::kPopularity;
  Hyperparameters params;
  double ndcg = -1;
};

struct Search {
  const SelectionOptions* options = nullptr;
  Validation v;
  Clock::time_point start;
  int rank_threads = 1;
  int64_t work = 0;  // ranking work; the rating part's is reserved apart
  int64_t budget = 0;
  bool timed_out = false;
  std::mutex mu;  // trials and on_trial, shared with the rating thread
  std::vector<SelectionTrial> rank_trials, rating_trials;

  void Record(SelectionTrial t, std::vector<SelectionTrial>* list) {
    std::lock_guard<std::mutex> lock(mu);
    list->push_back(t);
    if (options->on_trial) options->on_trial(t);
  }
  bool Stopped() const { return options->stop && options->stop(); }
  // Whether a trial of `cost` units may start.
  bool MayRun(int64_t cost) {
    if (work + cost > budget) return false;
    if (options->max_seconds > 0 && Since(start) > options->max_seconds) {
      timed_out = true;
      return false;
    }
    return true;
  }
};

std::string Num(double v) { return absl::StrFormat("%g", v); }

}  // namespace

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

// --- The ranking search.

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

// PureSVD: one SVD per rating target at the largest k, whose leading
// columns are the smaller k's own (the projection of the first k columns
// is the first k columns of the projection).
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

// iALS by successive halving: a seeded sample of the grid (and the shipped
// defaults) at 4 iterations, the best third again at 8, and so on to 16.
void SearchIals(Search& s, const RankPins& pins, RankCandidate* best,
                Model* best_model) {
  const RatingData& d = s.v.train;
  const int64_t side = std::min(d.num_users(), d.num_items());
  std::vector<int32_t> factors;
  for (int32_t f : {16, 32, 64, 128}) {
    if (f <= std::max<int64_t>(16, side / 4) &&
        (f <= 64 || d.num_items() <= 50000)) {
      factors.push_back(f);
    }
  }
  struct Setting {
    int32_t factors;
    float reg, reg_exponent, implicit_weight, value_weight, target_min;
  };
  // Targets: graded by the rating, or "liked" (at or above the relevance
  // threshold) against "seen, not liked".
  const float liked = DefaultRelevanceThreshold(d.scale);
  const std::pair<float, float> targets[] = {
      {0.5f, 0.0f}, {1.0f, 0.0f}, {0.0f, liked}};
  std::vector<Setting> grid;
  for (int32_t f : factors) {
    for (float e : {0.5f, 1.0f}) {
      // The penalty is reg * (seen)^e: the same strength needs a larger reg
      // at the smaller exponent.
      const std::vector<float> regs =
          e < 1 ? std::vector<float>{0.1f, 0.3f, 1.0f}
                : std::vector<float>{0.003f, 0.01f, 0.03f};
      for (float r : regs) {
        for (float a0 : {0.1f, 0.3f, 1.0f}) {
          for (const auto& [vw, tm] : targets) {
            grid.push_back({f, r, e, a0, vw, tm});
          }
        }
      }
    }
  }
  auto pinned = [&pins](Setting g) {
    if (pins.factors) g.factors = *pins.factors;
    if (pins.reg) g.reg = *pins.reg;
    if (pins.reg_exponent) g.reg_exponent = *pins.reg_exponent;
    if (pins.implicit_weight) g.implicit_weight = *pins.implicit_weight;
    if (pins.value_weight) g.value_weight = *pins.value_weight;
    if (pins.target_min) g.target_min = *pins.target_min;
    return g;
  };
  auto same = [](const Setting& a, const Setting& b) {
    return a.factors == b.factors && a.reg == b.reg &&
           a.reg_exponent == b.reg_exponent &&
           a.implicit_weight == b.implicit_weight &&
           a.value_weight == b.value_weight && a.target_min == b.target_min;
  };
  const Hyperparameters defaults = DefaultHyperparameters(ModelKind::kIals);
  std::vector<Setting> picks = {pinned(
      {defaults.factors, defaults.reg, defaults.reg_exponent,
       defaults.implicit_weight, defaults.value_weight, defaults.target_min})};
  std::mt19937_64 rng(s.options->seed ^ 0x1a15);
  std::shuffle(grid.begin(), grid.end(), rng);
  for (const Setting& g : grid) {
    if (picks.size() >= 13) break;
    const Setting p = pinned(g);
    bool seen = false;
    for (const Setting& q : picks) seen = seen || same(p, q);
    if (!seen) picks.push_back(p);
  }
  auto params_of = [&](const Setting& g, int32_t epochs) {
    Hyperparameters p = defaults;
    p.factors = g.factors;
    p.reg = g.reg;
    p.reg_exponent = g.reg_exponent;
    p.implicit_weight = g.implicit_weight;
    p.value_weight = g.value_weight;
    p.target_min = g.target_min;
    p.epochs = pins.epochs.value_or(epochs);
    if (pins.cg_steps) p.cg_steps = *pins.cg_steps;
    if (s.options->pinned.seed) p.seed = *s.options->pinned.seed;
    return p;
  };
  // The rounds must fit the budget: fewer settings start when it is short.
  const std::vector<int32_t> rung_epochs = {4, 8, 16};
  auto plan_cost = [&](size_t n) {
    int64_t cost = 0;
    for (int32_t e : rung_epochs) {
      cost += static_cast<int64_t>(n) * pins.epochs.value_or(e);
      n = std::max<size_t>(1, (n + 2) / 3);
    }
    return cost;
  };
  while (picks.size() > 1 && s.work + plan_cost(picks.size()) > s.budget) {
    picks.pop_back();
  }
  std::vector<Setting> alive = picks;
  Setting best_setting{};
  bool has_best = false;
  for (size_t rung = 0; rung < rung_epochs.size() && !alive.empty(); ++rung) {
    std::vector<std::pair<double, size_t>> scored;
    for (size_t j = 0; j < alive.size(); ++j) {
      const Hyperparameters p = params_of(alive[j], rung_epochs[rung]);
      if (!s.MayRun(p.epochs) || s.Stopped()) break;
      Model m;
      const double ndcg =
          TryRanking(s, ModelKind::kIals, p, static_cast<int32_t>(rung), &m);
      scored.push_back({ndcg, j});
      // The leader trained longer takes over unless clearly worse: a
      // converged fit carries over to the refit on more data, and
      // differences this small are noise.
      const bool longer = has_best && same(alive[j], best_setting) &&
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
    std::vector<Setting> next;
    for (size_t j = 0; j < std::max<size_t>(1, (scored.size() + 2) / 3); ++j) {
      next.push_back(alive[scored[j].second]);
    }
    alive = std::move(next);
  }
}

// The popularity prior's weight for a trained candidate, chosen from a few
// multiples of its typical top score (0 keeps it without).
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

// --- The rating part.

struct RatingChoice {
  bool bayes = false;
  double rmse = -1;
  Model bayes_model;  // fitted on the carved part, if it fitted
  // Biased ALS, a candidate only for ranking by predicted rating (a hybrid
  // pairs with Bayesian MF): fitted on the carved part, and its RMSE.
  Model als_model;
  double als_rmse = -1;
};

// Bayesian MF settings for the data's size: the shipped ones, with fewer
// sweeps on large sets (each sweep touches every rating).
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

// Biased ALS for ranking by predicted rating: few factors, light
// regularisation and few sweeps, the pinned settings kept. (On generated
// data whose picks follow popularity, this model plus the popularity prior
// ranks best, and predicts better than Bayesian MF there.)
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

// Whether the caller pinned every field the search of `kind` varies.
bool FullyPinned(ModelKind kind, const SelectionOptions& o) {
  const RankPins r = RankingPins(o);
  if (kind == ModelKind::kIals) {
    return r.factors && r.reg && r.reg_exponent && r.implicit_weight &&
           r.value_weight && r.target_min && r.epochs;
  }
  if (kind == ModelKind::kPuresvd) return r.factors && r.value_weight;
  return false;
}

}  // namespace

absl::StatusOr<Selection> SelectModel(const RatingData& data,
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
  const ModelKind requested = o.kind.value_or(ModelKind::kHybrid);
  const bool searchable = !o.kind || requested == ModelKind::kIals ||
                          requested == ModelKind::kPuresvd ||
                          requested == ModelKind::kHybrid;
  Selection out;
  out.kind = requested;
  out.params = ResolveParams(requested, o.pinned);
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
        o.min_user_ratings, ModelKindName(requested));
    return out;
  }
  const int threads = ResolveThreads(o.threads);
  const bool rating_part = requested == ModelKind::kHybrid;
  const Hyperparameters bayes = BayesFor(data, o);
  const Hyperparameters als = AlsFor(o);
  // The rating part's work is reserved first, so the ranking search plans
  // with what is left.
  const bool with_baseline = !o.kind;
  const Hyperparameters* als_candidate = o.kind ? nullptr : &als;
  const int64_t rating_work =
      rating_part
          ? bayes.epochs +
                (with_baseline
                     ? DefaultHyperparameters(ModelKind::kBaseline).epochs
                     : 0) +
                (als_candidate ? als.epochs : 0)
          : 0;
  const bool rating_fits = rating_work <= o.budget;
  s.budget = o.budget - (rating_fits ? rating_work : 0);
  // With two or more threads the rating part trains on one beside the
  // ranking search.
  RatingChoice ratings;
  std::thread rating_thread;
  const bool beside = rating_part && rating_fits && threads > 1;
  s.rank_threads = beside ? threads - 1 : threads;
  if (beside) {
    rating_thread = std::thread([&] {
      ratings = SearchRatings(s, 1, with_baseline, bayes, als_candidate);
    });
  }

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
  if (beside) {
    rating_thread.join();
  } else if (rating_part && rating_fits) {
    ratings = SearchRatings(s, threads, with_baseline, bayes, als_candidate);
  }
  // Ranking by a rating model itself, with the popularity prior: on data
  // where what people pick is mostly what is popular, the best of the
  // popular items for this user. Bayesian MF, and biased ALS when it also
  // predicts at least as well as the rating part (it would replace it).
  s.rank_threads = threads;
  auto try_by_rating = [&](ModelKind kind, const Hyperparameters& p,
                           const Model& m) {
    if (s.Stopped()) return;
    RankCandidate by_rating;
    by_rating.kind = kind;
    by_rating.params = p;
    by_rating.ndcg = Ndcg(s.v, threads, ModelScores(m), Eigen::VectorXf(),
                          {0.0f}, nullptr)[0];
    SelectionTrial t;
    t.candidate = DescribeCandidate(kind, p);
    t.kind = kind;
    t.ndcg = by_rating.ndcg;
    s.Record(t, &s.rank_trials);
    if (by_rating.ndcg > best.ndcg) best = by_rating;
    SearchBlend(s, by_rating, m, &best);
  };
  if (!o.kind && ratings.bayes_model.num_users() > 0) {
    try_by_rating(ModelKind::kBayes, bayes, ratings.bayes_model);
  }
  if (!o.kind && ratings.als_model.num_users() > 0 &&
      (ratings.rmse < 0 || ratings.als_rmse <= ratings.rmse)) {
    try_by_rating(ModelKind::kAls, als, ratings.als_model);
  }
  if (s.Stopped()) {
    return absl::CancelledError("model selection stopped on request");
  }
  if (best.ndcg < 0) {
    out.report.summary = absl::StrCat(
        "no ranking candidate fitted the budget of ", o.budget,
        " units: ", ModelKindName(requested), " with its defaults");
    return out;
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
  // Mark the winners and put the pieces together.
  std::vector<SelectionTrial>& trials = out.report.trials;
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
    trials[j].chosen =
        trials[j].rmse == ratings.rmse && trials[j].kind == rating_kind;
  }
  int64_t work = 0;
  for (const SelectionTrial& t : trials) work += t.work;
  out.report.work = work;
  out.report.seconds = Since(s.start);

  Hyperparameters rank = best.params;
  if (best.kind == ModelKind::kBayes || best.kind == ModelKind::kAls) {
    // One model ranks and predicts.
    out.kind = best.kind;
    out.params = rank;
  } else if (rating_part && ratings.bayes) {
    out.kind = ModelKind::kHybrid;
    out.params = bayes;
    out.params.rank_kind = best.kind;
    if (best.kind == ModelKind::kPopularity) {
      out.params.rank_factors = 1;
      out.params.rank_epochs = 1;
    } else {
      out.params.rank_factors = rank.factors;
      out.params.rank_epochs = rank.epochs;
      out.params.rank_reg = rank.reg;
      out.params.implicit_weight = rank.implicit_weight;
      out.params.reg_exponent = rank.reg_exponent;
      out.params.value_weight = rank.value_weight;
      out.params.target_min = rank.target_min;
      out.params.cg_steps = rank.cg_steps;
      out.params.popularity_weight = rank.popularity_weight;
    }
  } else if (best.kind == ModelKind::kPopularity) {
    out.kind = ModelKind::kPopularity;
    out.params = DefaultHyperparameters(ModelKind::kPopularity);
  } else {
    out.kind = best.kind;
    out.params = rank;
  }
  if (o.pinned.seed) out.params.seed = *o.pinned.seed;
  out.report.summary = absl::StrFormat(
      "%s; validation nDCG@10 %.4f%s (popularity %s)%s",
      DescribeCandidate(out.kind, out.params), best.ndcg,
      ratings.rmse >= 0 ? absl::StrFormat(", RMSE %.4f", ratings.rmse) : "",
      trials.empty() || trials[0].kind != ModelKind::kPopularity
          ? std::string("not tried")
          : absl::StrFormat("%.4f", trials[0].ndcg),
      s.timed_out ? "; stopped early by the time cap" : "");
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
    const ModelKind kind = spec.kind.value_or(ModelKind::kHybrid);
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

std::string RankingKindName(const Model& m) {
  const bool prior = m.rank_bias.size() > 0;
  return absl::StrCat(ModelKindName(m.ranking_kind()),
                      prior ? " + popularity prior" : "");
}

std::string RatingKindName(const Model& m) {
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
