// Scoring a trained model on held-out ratings under protocols R and T of
// ../shared/PROTOCOLS.md, optionally writing the TSV files the reference
// scorers (../shared/tools/score_*.py) read.
//
//   RECSYS_ASSIGN_OR_RETURN(RatingMetrics r, EvaluateRatings(model, test,
//   &out)); RECSYS_ASSIGN_OR_RETURN(RankingMetrics t,
//                           EvaluateTopN(model, test, {}, &recs));
//
// The test set is matched to the model by external ids, so it may be loaded
// on its own. Unknown users or items fall back to the biases the model has.
#ifndef RECSYS_MODELS_EVALUATION_H_
#define RECSYS_MODELS_EVALUATION_H_

#include <ostream>

#include "absl/status/statusor.h"
#include "models/metrics.h"
#include "models/model.h"
#include "models/ratings.h"

namespace recsys {

// Protocol R: every test pair predicted (clipped to the model's scale).
// With `predictions_tsv`, writes "user<TAB>item<TAB>prediction" per pair.
absl::StatusOr<RatingMetrics> EvaluateRatings(const Model& model,
                                              const RatingData& test,
                                              std::ostream* predictions_tsv);

struct TopNOptions {
  int k = 10;
  // A test rating >= this is relevant (protocol T: 4 on the 1..5 scale; see
  // DefaultRelevanceThreshold for other scales).
  float relevant_min = 4.0f;
};

// Rating at or above which an item counts as relevant: 4 on 1..5 (protocol
// T), and the same relative point (75% of the way up) on other scales.
float DefaultRelevanceThreshold(const RatingScale& scale);
// The threshold for data or a model of `feedback`: implicit feedback has
// no "disliked" interaction, so every one is relevant (-infinity); explicit
// ratings take DefaultRelevanceThreshold.
float RelevanceThreshold(const RatingScale& scale, Feedback feedback);

// Protocol T: for every test user with a relevant item, rank every catalogue
// item the user did not rate in the model's training data and keep the top k.
// With `recommendations_tsv`, writes "user<TAB>item<TAB>rank" lines for the
// evaluated users.
absl::StatusOr<RankingMetrics> EvaluateTopN(const Model& model,
                                            const RatingData& test,
                                            const TopNOptions& options,
                                            std::ostream* recommendations_tsv);

}  // namespace recsys

#endif  // RECSYS_MODELS_EVALUATION_H_
