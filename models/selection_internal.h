// Model selection's internals, shared by its files (selection.cc: the
// choice; selection_validation.cc: the carved split and its scoring;
// selection_ranking.cc: the ranking search; selection_ratings.cc: the
// rating part). Not for use outside models/selection*.
#ifndef RECSYS_MODELS_SELECTION_INTERNAL_H_
#define RECSYS_MODELS_SELECTION_INTERNAL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "Eigen/Core"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "models/model.h"
#include "models/ratings.h"
#include "models/selection.h"
#include "models/train.h"

namespace recsys {
namespace internal {
namespace selection {

using Clock = std::chrono::steady_clock;

inline double Since(Clock::time_point start) {
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
                    Validation* v);

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
                         const std::vector<float>& weights, double* top_scale);

// The model's ranking scores, as the server ranks (up to a constant per
// user): its ranking columns, or its predicted ratings, plus its prior.
ScoreFn ModelScores(const Model& m);

// The ranking fields of a candidate of kind `kind` as the caller pinned
// them: under their own names for a kind searched alone, under the
// rank_* names when the winner will be a kHybrid's ranking part.
struct RankPins {
  std::optional<int32_t> factors, epochs, cg_steps;
  std::optional<float> reg, implicit_weight, reg_exponent, value_weight,
      target_min, confidence_alpha;
};

RankPins RankingPins(const SelectionOptions& o);

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

inline std::string Num(double v) { return absl::StrFormat("%g", v); }

// --- The ranking search (selection_ranking.cc).

void TryPopularity(Search& s, RankCandidate* best);

// PureSVD: one SVD per rating target at the largest k, whose leading
// columns are the smaller k's own (the projection of the first k columns
// is the first k columns of the projection).
void SearchPureSvd(Search& s, const RankPins& pins, RankCandidate* best,
                   Model* best_model);

// iALS by successive halving: a seeded sample of the grid (and the shipped
// defaults) at 4 iterations, the best third again at 8, and so on to 16.
void SearchIals(Search& s, const RankPins& pins, RankCandidate* best,
                Model* best_model);

// The popularity prior's weight for a trained candidate, chosen from a few
// multiples of its typical top score (0 keeps it without).
void SearchBlend(Search& s, const RankCandidate& cand, const Model& m,
                 RankCandidate* best);

// --- The rating part (selection_ratings.cc).

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
Hyperparameters BayesFor(const RatingData& d, const SelectionOptions& o);

// Biased ALS for ranking by predicted rating: few factors, light
// regularisation and few sweeps, the pinned settings kept. (On generated
// data whose picks follow popularity, this model plus the popularity prior
// ranks best, and predicts better than Bayesian MF there.)
Hyperparameters AlsFor(const SelectionOptions& o);

RatingChoice SearchRatings(Search& s, int threads, bool with_baseline,
                           const Hyperparameters& bayes,
                           const Hyperparameters* als);

}  // namespace selection
}  // namespace internal
}  // namespace recsys

#endif  // RECSYS_MODELS_SELECTION_INTERNAL_H_
