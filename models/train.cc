#include "models/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "models/bayes.h"
#include "models/evaluation.h"
#include "models/fold_in.h"
#include "models/ials.h"
#include "models/popularity.h"
#include "models/puresvd.h"

namespace recsys {

Hyperparameters DefaultHyperparameters(ModelKind kind) {
  Hyperparameters p;
  switch (kind) {
    case ModelKind::kBaseline:
    case ModelKind::kPopularity:
      p.factors = 0;
      p.epochs = 15;
      break;
    case ModelKind::kSgd:
      // Chosen on held-out ratings of u1.base's cold users (protocol F's
      // users, their u1.test pairs untouched).
      p.fold_in_reg = 0.15f;
      p.fold_in_reg_bias = 0.10f;
      break;
    case ModelKind::kIals:
      // Chosen by `recsys-trainer tune` on two 20% validation splits of
      // u1.base (docs/models.md gives the search).
      p.factors = 32;
      p.epochs = 16;
      p.reg = 0.01f;
      p.implicit_weight = 0.5f;
      p.reg_exponent = 1.0f;
      p.value_weight = 0.8f;
      p.init_std = 0.01f;
      break;
    case ModelKind::kBayes:
      // Chosen by `recsys-trainer tune` on two 10% validation splits of
      // u1.base (docs/models.md gives the search).
      p.factors = 8;
      p.epochs = 200;
      p.burn_in = 40;
      p.samples = 48;
      p.init_std = 0.1f;
      break;
    case ModelKind::kHybrid: {
      // Each part keeps the defaults it has as a kind of its own.
      const Hyperparameters rank = DefaultHyperparameters(ModelKind::kIals);
      p = DefaultHyperparameters(ModelKind::kBayes);
      SetRankingPart(rank, &p);
      break;
    }
    case ModelKind::kAls:
      p.factors = 32;
      p.epochs = 25;
      p.reg = 0.15f;
      p.reg_bias = 0.03f;
      p.init_std = 0.1f;
      break;
    case ModelKind::kPuresvd:
      // Cremonesi et al.'s k, the raw ratings as the prototype used them
      // (target r / 5 on 1..5), and power iterations enough for the
      // leading directions to settle.
      p.factors = 20;
      p.epochs = 3;
      p.value_weight = 0.8f;
      break;
  }
  return p;
}

Hyperparameters ResolveParams(ModelKind kind, const ParamOverrides& o) {
  Hyperparameters p = DefaultHyperparameters(kind);
  if (o.factors) p.factors = *o.factors;
  if (o.epochs) p.epochs = *o.epochs;
  if (o.learning_rate) p.learning_rate = *o.learning_rate;
  if (o.lr_decay) p.lr_decay = *o.lr_decay;
  if (o.reg) p.reg = *o.reg;
  if (o.reg_bias) p.reg_bias = *o.reg_bias;
  if (o.init_std) p.init_std = *o.init_std;
  if (o.fold_in_reg) p.fold_in_reg = *o.fold_in_reg;
  if (o.fold_in_reg_bias) p.fold_in_reg_bias = *o.fold_in_reg_bias;
  if (o.implicit_weight) p.implicit_weight = *o.implicit_weight;
  if (o.reg_exponent) p.reg_exponent = *o.reg_exponent;
  if (o.cg_steps) p.cg_steps = *o.cg_steps;
  if (o.burn_in) p.burn_in = *o.burn_in;
  if (o.samples) p.samples = *o.samples;
  if (o.value_weight) p.value_weight = *o.value_weight;
  if (o.rank_factors) p.rank_factors = *o.rank_factors;
  if (o.rank_epochs) p.rank_epochs = *o.rank_epochs;
  if (o.rank_reg) p.rank_reg = *o.rank_reg;
  if (o.popularity_weight) p.popularity_weight = *o.popularity_weight;
  if (o.target_min) p.target_min = *o.target_min;
  if (o.confidence_alpha) p.confidence_alpha = *o.confidence_alpha;
  if (o.confidence_eps) p.confidence_eps = *o.confidence_eps;
  if (o.seed) p.seed = *o.seed;
  return p;
}

bool RanksImplicit(ModelKind kind) {
  return kind == ModelKind::kIals || kind == ModelKind::kPuresvd ||
         kind == ModelKind::kPopularity;
}

float PriorMin(const Model& m) {
  // A model that predicts ratings already says how much the user will like
  // an item: its prior counts every rating (how often items are picked). A
  // preference score does not: its prior counts the liked ones.
  return m.ranks_by_rating() ? -std::numeric_limits<float>::infinity()
                             : RelevanceThreshold(m.scale, m.feedback);
}

absl::Status ValidateHyperparameters(ModelKind kind, const Hyperparameters& p) {
  if (kind == ModelKind::kHybrid) {
    if (p.rank_kind == ModelKind::kPopularity) {
      if (p.rank_factors != 1) {
        return absl::InvalidArgumentError(
            "hyper-parameter rank_factors must be 1 for a popularity ranking "
            "part");
      }
    } else if (p.rank_kind == ModelKind::kIals ||
               p.rank_kind == ModelKind::kPuresvd) {
      RECSYS_RETURN_IF_ERROR(
          ValidateHyperparameters(p.rank_kind, RankingPart(p)));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "hyper-parameter rank_kind must be ials, puresvd or popularity, "
          "got ",
          ModelKindName(p.rank_kind)));
    }
    return ValidateHyperparameters(ModelKind::kBayes, p);
  }
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("hyper-parameter ", what));
  };
  const bool factored = kind == ModelKind::kSgd || kind == ModelKind::kAls ||
                        kind == ModelKind::kIals || kind == ModelKind::kBayes ||
                        kind == ModelKind::kPuresvd;
  if (factored && (p.factors < 1 || p.factors > 4096)) {
    return bad(absl::StrCat("factors must be in 1..4096, got ", p.factors));
  }
  if (p.epochs < 1 || p.epochs > 100000) {
    return bad(absl::StrCat("epochs must be in 1..100000, got ", p.epochs));
  }
  const std::pair<absl::string_view, float> non_negative[] = {
      {"learning_rate", p.learning_rate},
      {"lr_decay", p.lr_decay},
      {"reg", p.reg},
      {"reg_bias", p.reg_bias},
      {"init_std", p.init_std},
      {"baseline_reg_item", p.baseline_reg_item},
      {"baseline_reg_user", p.baseline_reg_user},
      {"fold_in_reg", p.fold_in_reg},
      {"fold_in_reg_bias", p.fold_in_reg_bias},
      {"popularity_weight", p.popularity_weight},
      {"target_min", p.target_min},
      {"confidence_alpha", p.confidence_alpha}};
  for (const auto& [name, v] : non_negative) {
    if (!std::isfinite(v) || v < 0) {
      return bad(absl::StrCat(name, " must be finite and >= 0, got ", v));
    }
  }
  if (!(std::isfinite(p.confidence_eps) && p.confidence_eps > 0)) {
    return bad(absl::StrCat("confidence_eps must be finite and > 0, got ",
                            p.confidence_eps));
  }
  if (kind == ModelKind::kSgd && p.learning_rate <= 0) {
    return bad("learning_rate must be > 0");
  }
  if (kind == ModelKind::kAls && (p.reg <= 0 || p.reg_bias <= 0)) {
    return bad("reg and reg_bias must be > 0 for ALS");
  }
  if (kind == ModelKind::kIals &&
      (p.reg <= 0 || p.cg_steps < 1 || !std::isfinite(p.reg_exponent) ||
       !(p.value_weight >= 0 && p.value_weight <= 1))) {
    return bad(
        "iALS needs reg > 0, cg_steps >= 1, a finite reg_exponent and "
        "value_weight in [0, 1]");
  }
  if (kind == ModelKind::kPuresvd &&
      !(p.value_weight >= 0 && p.value_weight <= 1)) {
    return bad("PureSVD needs value_weight in [0, 1]");
  }
  if (kind == ModelKind::kBayes &&
      (p.samples < 1 || p.burn_in < 0 || p.epochs - p.burn_in < p.samples ||
       static_cast<int64_t>(p.samples) * (p.factors + 2) > 4096)) {
    return bad(
        "Bayesian MF needs samples >= 1, burn_in >= 0, epochs - burn_in >= "
        "samples and samples * (factors + 2) <= 4096");
  }
  return absl::OkStatus();
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double Rmse(const Model& m, const std::vector<Rating>& ratings) {
  if (ratings.empty()) return 0;
  double se = 0;
  for (const Rating& r : ratings) {
    const double e = m.scale.Clip(m.Score(r.user, r.item)) - r.value;
    se += e * e;
  }
  return std::sqrt(se / static_cast<double>(ratings.size()));
}

void Report(const TrainOptions& opt, const Model& m, int epoch, int epochs,
            double train_rmse, Clock::time_point start) {
  if (!opt.on_epoch) return;
  EpochReport r;
  r.epoch = epoch;
  r.epochs = epochs;
  r.train_rmse = train_rmse;
  if (opt.validation != nullptr)
    r.validation_rmse = Rmse(m, opt.validation->ratings);
  r.elapsed_seconds = Seconds(start);
  opt.on_epoch(r);
}

// Koren's baseline: alternating ridge estimates of item then user biases,
// `epochs` rounds.
void FitBiases(const RatingData& data, const SparseRows& by_user,
               const SparseRows& by_item, int epochs, Model* m,
               const TrainOptions& opt, Clock::time_point start) {
  const Hyperparameters& p = m->params;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    for (int32_t i = 0; i < by_item.rows(); ++i) {
      double sum = 0;
      for (int64_t k = by_item.offsets[i]; k < by_item.offsets[i + 1]; ++k) {
        sum += by_item.values[k] - m->mu - m->user_bias[by_item.cols[k]];
      }
      m->item_bias[i] =
          static_cast<float>(sum / (p.baseline_reg_item + by_item.size(i)));
    }
    for (int32_t u = 0; u < by_user.rows(); ++u) {
      double sum = 0;
      for (int64_t k = by_user.offsets[u]; k < by_user.offsets[u + 1]; ++k) {
        sum += by_user.values[k] - m->mu - m->item_bias[by_user.cols[k]];
      }
      m->user_bias[u] =
          static_cast<float>(sum / (p.baseline_reg_user + by_user.size(u)));
    }
    if (opt.on_epoch)
      Report(opt, *m, epoch, epochs, Rmse(*m, data.ratings), start);
    if (StopRequested(opt)) break;
  }
}

void GaussianInit(RowMatrix* m, float std, std::mt19937_64* rng) {
  std::normal_distribution<float> gauss(0.0f, std);
  for (int64_t i = 0; i < m->size(); ++i) m->data()[i] = gauss(*rng);
}

void TrainSgd(const RatingData& data, Model* m, int threads,
              const TrainOptions& opt, Clock::time_point start) {
  const Hyperparameters& p = m->params;
  const int k = p.factors;
  std::mt19937_64 rng(p.seed);
  GaussianInit(&m->user_factors, p.init_std, &rng);
  GaussianInit(&m->item_factors, p.init_std, &rng);

  // Shuffled ids spread heavy users and items evenly over the groups.
  const int groups = threads;
  auto group_of = [&](int32_t n) {
    std::vector<int32_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int32_t& g : perm) g %= groups;
    return perm;
  };
  const std::vector<int32_t> user_group = group_of(m->num_users());
  const std::vector<int32_t> item_group = group_of(m->num_items());
  std::vector<std::vector<Rating>> blocks(groups * groups);
  for (const Rating& r : data.ratings) {
    blocks[user_group[r.user] * groups + item_group[r.item]].push_back(r);
  }
  for (auto& b : blocks) std::shuffle(b.begin(), b.end(), rng);

  float* P = m->user_factors.data();
  float* Q = m->item_factors.data();
  float* bu = m->user_bias.data();
  float* bi = m->item_bias.data();
  const float mu = m->mu;
  std::vector<double> block_se(blocks.size());
  std::vector<int> strata(groups);
  std::iota(strata.begin(), strata.end(), 0);

  float lr = p.learning_rate;
  for (int epoch = 1; epoch <= p.epochs; ++epoch) {
    std::shuffle(strata.begin(), strata.end(), rng);
    for (int s : strata) {
      ParallelChunks(groups, groups, [&](int64_t, int64_t, int t) {
        const int b = t * groups + (t + s) % groups;
        Eigen::VectorXf old_p(k);
        double se = 0;
        for (const Rating& r : blocks[b]) {
          Eigen::Map<Eigen::VectorXf> pu(P + static_cast<int64_t>(r.user) * k,
                                         k);
          Eigen::Map<Eigen::VectorXf> qi(Q + static_cast<int64_t>(r.item) * k,
                                         k);
          const float e = r.value - (mu + bu[r.user] + bi[r.item] + pu.dot(qi));
          se += static_cast<double>(e) * e;
          bu[r.user] += lr * (e - p.reg_bias * bu[r.user]);
          bi[r.item] += lr * (e - p.reg_bias * bi[r.item]);
          // Both updates use the old p_u: keep it in the per-thread scratch.
          old_p.noalias() = pu;
          pu = (1.0f - lr * p.reg) * pu + (lr * e) * qi;
          qi = (1.0f - lr * p.reg) * qi + (lr * e) * old_p;
        }
        block_se[b] = se;
      });
    }
    lr *= p.lr_decay;
    const double se = std::accumulate(block_se.begin(), block_se.end(), 0.0);
    if (opt.on_epoch) {
      Report(opt, *m, epoch, p.epochs,
             std::sqrt(se / std::max<size_t>(1, data.ratings.size())), start);
    }
    // Diverged: further epochs only spend time (TrainModel refuses it).
    if (!std::isfinite(se) || StopRequested(opt)) break;
  }
}

constexpr absl::string_view kDiverged = "training diverged: ";

// A fit that diverged (say, a learning rate too large for the data) holds
// NaN or infinite numbers, which would rank at random and predict NaN.
absl::Status CheckFinite(const Model& m) {
  const char* bad = nullptr;
  if (!std::isfinite(m.mu)) {
    bad = "the global mean";
  } else if (!m.user_bias.allFinite()) {
    bad = "user biases";
  } else if (!m.item_bias.allFinite()) {
    bad = "item biases";
  } else if (!m.user_factors.allFinite()) {
    bad = "user factors";
  } else if (!m.item_factors.allFinite()) {
    bad = "item factors";
  }
  if (bad == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      kDiverged, bad, " of the ", ModelKindName(m.kind),
      " model are not finite numbers; ",
      m.kind == ModelKind::kSgd
          ? absl::StrCat("lower the learning rate (it was ",
                         m.params.learning_rate, ")")
          : absl::StrCat("raise the penalty (reg was ", m.params.reg, ")")));
}

// One ALS half-step: every row of `solve` from the fixed other side.
void AlsHalfStep(const SparseRows& rows, const RowMatrix& other_factors,
                 const Eigen::VectorXf& other_bias, float mu, float reg,
                 float reg_bias, int threads, RowMatrix* factors,
                 Eigen::VectorXf* bias) {
  ParallelChunks(rows.rows(), threads, [&](int64_t begin, int64_t end, int) {
    internal::SolveScratch scratch;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = rows.offsets[r];
      const size_t n = static_cast<size_t>(rows.offsets[r + 1] - b);
      internal::SolveBiasedRow(other_factors, other_bias, mu,
                               absl::MakeConstSpan(rows.cols.data() + b, n),
                               absl::MakeConstSpan(rows.values.data() + b, n),
                               reg, reg_bias, &scratch, &(*bias)[r],
                               factors->row(r).data());
    }
  });
}

void TrainAls(const RatingData& data, const SparseRows& by_user,
              const SparseRows& by_item, Model* m, int threads,
              const TrainOptions& opt, Clock::time_point start) {
  const Hyperparameters& p = m->params;
  std::mt19937_64 rng(p.seed);
  GaussianInit(&m->user_factors, p.init_std, &rng);
  for (int epoch = 1; epoch <= p.epochs; ++epoch) {
    AlsHalfStep(by_item, m->user_factors, m->user_bias, m->mu, p.reg,
                p.reg_bias, threads, &m->item_factors, &m->item_bias);
    AlsHalfStep(by_user, m->item_factors, m->item_bias, m->mu, p.reg,
                p.reg_bias, threads, &m->user_factors, &m->user_bias);
    if (opt.on_epoch)
      Report(opt, *m, epoch, p.epochs, Rmse(*m, data.ratings), start);
    if (StopRequested(opt)) break;
  }
}

}  // namespace

bool TrainingDiverged(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument &&
         absl::StartsWith(status.message(), kDiverged);
}

namespace {

// A hybrid: two models on the same data, spliced column-wise: the ranking
// part first (trained quietly), then the rating part, which reports.
absl::StatusOr<Model> TrainHybrid(const RatingData& data,
                                  const Hyperparameters& params,
                                  const TrainOptions& options,
                                  Clock::time_point start) {
  TrainOptions quiet = options;
  quiet.on_epoch = nullptr;
  Model rank;
  if (params.rank_kind == ModelKind::kPopularity) {
    InitModelFrom(data, ModelKind::kPopularity, params, 1, &rank);
    internal::FillPopularityColumn(
        internal::RelevantCounts(BuildRows(data, true),
                                 DefaultRelevanceThreshold(data.scale)),
        &rank);
  } else {
    RECSYS_ASSIGN_OR_RETURN(
        rank, TrainModel(data, params.rank_kind, RankingPart(params), quiet));
  }
  // The rating part keeps its own copy of the ratings; this one would only
  // add to the peak memory of the second fit.
  rank.user_ratings = SparseRows();
  RECSYS_ASSIGN_OR_RETURN(Model m,
                          TrainModel(data, ModelKind::kBayes, params, options));
  m.kind = ModelKind::kHybrid;
  m.params = params;
  RowMatrix users(m.num_users(), rank.factors() + m.factors());
  users << rank.user_factors, m.user_factors;
  RowMatrix items(m.num_items(), rank.factors() + m.factors());
  items << rank.item_factors, m.item_factors;
  m.user_factors = std::move(users);
  m.item_factors = std::move(items);
  m.rank_bias = std::move(rank.rank_bias);
  ComputeGrams(&m);
  m.train_seconds = Seconds(start);
  return m;
}

// The fit of one (non-hybrid) kind into `m`, set up by InitModelFrom.
void Fit(const RatingData& data, ModelKind kind, int threads,
         const TrainOptions& options, Clock::time_point start, Model* mp) {
  Model& m = *mp;
  switch (kind) {
    case ModelKind::kBaseline:
    case ModelKind::kPopularity:
      FitBiases(data, BuildRows(data, false), BuildRows(data, true),
                m.params.epochs, &m, options, start);
      break;
    case ModelKind::kSgd:
      TrainSgd(data, &m, threads, options, start);
      break;
    case ModelKind::kAls:
      TrainAls(data, BuildRows(data, false), BuildRows(data, true), &m, threads,
               options, start);
      break;
    case ModelKind::kIals: {
      // Biases for predicted ratings (quietly), then the ranking factors.
      const SparseRows by_user = BuildRows(data, false);
      const SparseRows by_item = BuildRows(data, true);
      FitBiases(data, by_user, by_item, m.params.epochs, &m, TrainOptions(),
                start);
      internal::TrainImplicit(
          by_user, by_item, threads, options,
          [&](int epoch, double fit) {
            Report(options, m, epoch, m.params.epochs, fit, start);
          },
          &m);
      break;
    }
    case ModelKind::kPuresvd: {
      // Biases for predicted ratings, then the ranking factors in one go.
      const SparseRows by_user = BuildRows(data, false);
      const SparseRows by_item = BuildRows(data, true);
      // (Its epochs are power iterations: the biases take the baseline's.)
      FitBiases(data, by_user, by_item,
                DefaultHyperparameters(ModelKind::kBaseline).epochs, &m,
                TrainOptions(), start);
      internal::TrainPureSvd(by_user, by_item, threads, &m);
      Report(options, m, 1, 1, Rmse(m, data.ratings), start);
      break;
    }
    case ModelKind::kBayes:
      internal::TrainBayes(
          data, BuildRows(data, false), BuildRows(data, true), threads, options,
          [&](int sweep, double fit, double validation) {
            if (!options.on_epoch) return;
            EpochReport r;
            r.epoch = sweep;
            r.epochs = m.params.epochs;
            r.train_rmse = fit;
            r.validation_rmse = validation;
            r.elapsed_seconds = Seconds(start);
            options.on_epoch(r);
          },
          &m);
      break;
    case ModelKind::kHybrid:  // TrainHybrid, from its two parts
      break;
  }
}

// Rows nobody rated carry only their random start; zeroed, unseen users
// and items score as the biases say.
void ZeroUnseenRows(const RatingData& data, Model* m) {
  std::vector<bool> user_seen(m->num_users(), false);
  for (const Rating& r : data.ratings) user_seen[r.user] = true;
  for (int32_t u = 0; u < m->num_users(); ++u) {
    if (!user_seen[u]) m->user_factors.row(u).setZero();
  }
  for (int32_t i = 0; i < m->num_items(); ++i) {
    if (m->item_counts[i] == 0) m->item_factors.row(i).setZero();
  }
}

}  // namespace

absl::StatusOr<Model> TrainModel(const RatingData& data, ModelKind kind,
                                 const Hyperparameters& params,
                                 const TrainOptions& options) {
  RECSYS_RETURN_IF_ERROR(ValidateHyperparameters(kind, params));
  if (data.ratings.empty()) {
    return absl::InvalidArgumentError("cannot train on an empty rating set");
  }
  if (!data.scale.valid()) {
    return absl::InvalidArgumentError("rating scale is empty");
  }
  if (data.feedback == Feedback::kImplicit && !RanksImplicit(kind)) {
    return absl::InvalidArgumentError(absl::StrCat(
        ModelKindName(kind),
        " predicts ratings, and implicit feedback (counts, plays, clicks) has "
        "none to learn from: train ials, puresvd or popularity (or auto)"));
  }
  const Clock::time_point start = Clock::now();
  if (kind == ModelKind::kHybrid) {
    return TrainHybrid(data, params, options, start);
  }
  const bool factored = kind == ModelKind::kSgd || kind == ModelKind::kAls ||
                        kind == ModelKind::kIals || kind == ModelKind::kBayes ||
                        kind == ModelKind::kPuresvd;
  Model m;
  InitModelFrom(data, kind, params, factored ? params.factors : 0, &m);
  Fit(data, kind, ResolveThreads(options.threads), options, start, &m);
  if (StopRequested(options)) {
    return absl::CancelledError(absl::StrCat("training of the ",
                                             ModelKindName(kind),
                                             " model stopped "
                                             "on request"));
  }
  if (factored) ZeroUnseenRows(data, &m);
  if (params.popularity_weight > 0 && kind != ModelKind::kPopularity) {
    m.rank_bias = internal::PopularityPrior(
        internal::RelevantCounts(BuildRows(data, true), PriorMin(m)),
        params.popularity_weight);
  }
  RECSYS_RETURN_IF_ERROR(CheckFinite(m));
  ComputeGrams(&m);
  m.train_seconds = Seconds(start);
  return m;
}

}  // namespace recsys
