// Helpers the recsys-trainer commands share across trainer.cc (train,
// recommend), evaluate.cc and tune.cc.
#ifndef RECSYS_TRAINER_TRAINER_INTERNAL_H_
#define RECSYS_TRAINER_TRAINER_INTERNAL_H_

#include <ostream>
#include <string>

#include "models/ratings.h"
#include "models/selection.h"
#include "models/train.h"
#include "trainer/trainer.h"

namespace recsys::internal {

// One line on what was loaded: ratings, users, items, scale, and the
// duplicates and bad lines the loader dealt with.
void PrintLoadSummary(const std::string& what, const RatingData& d,
                      std::ostream& out);

// The TrainingSpec a model choice and parameter overrides ask for.
TrainingSpec SpecOf(const ModelChoice& choice, const ParamOverrides& params);

}  // namespace recsys::internal

#endif  // RECSYS_TRAINER_TRAINER_INTERNAL_H_
