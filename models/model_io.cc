// The rules a model file's contents obey, which SaveModel checks before
// writing and LoadModel after reading: known kinds, the hybrid's ranking
// part, the posterior's shape; and how errors name the file.
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "models/model.h"
#include "models/model_io_internal.h"

namespace recsys::internal {

bool IsKnownKind(uint32_t value) {
  const ModelKind kind = static_cast<ModelKind>(value);
  const absl::StatusOr<ModelKind> parsed = ParseModelKind(ModelKindName(kind));
  return parsed.ok() && *parsed == kind;
}

absl::Status CheckRankKind(const Model& m) {
  if (m.kind != ModelKind::kHybrid) return absl::OkStatus();
  const ModelKind r = m.params.rank_kind;
  const bool ok = r == ModelKind::kIals || r == ModelKind::kPuresvd ||
                  (r == ModelKind::kPopularity && m.params.rank_factors == 1);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("hybrid model: ranking part of kind %d with %d columns",
                      static_cast<uint32_t>(r), m.params.rank_factors));
}

int64_t BayesColumns(ModelKind kind, int64_t factors, int32_t rank_factors) {
  if (kind == ModelKind::kBayes) return factors;
  if (kind != ModelKind::kHybrid) return 0;
  return rank_factors > 0 && rank_factors < factors ? factors - rank_factors
                                                    : -1;
}

absl::Status CheckPosterior(ModelKind kind, int64_t factors,
                            int32_t rank_factors, const Posterior& p) {
  const int64_t s = p.samples;
  if (kind != ModelKind::kBayes && kind != ModelKind::kHybrid) {
    if (s != 0 || p.alpha.size() != 0 || p.user_mean.size() != 0 ||
        p.item_mean.size() != 0 || p.user_precision.size() != 0 ||
        p.item_precision.size() != 0) {
      return absl::InvalidArgumentError(
          "only bayes and hybrid models carry a posterior");
    }
    return absl::OkStatus();
  }
  const int64_t cols = BayesColumns(kind, factors, rank_factors);
  if (s < 1 || cols < 0 || cols % s != 0 || cols / s < 3) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s model: %d factor columns (%d ranking) do not hold %d samples",
        ModelKindName(kind), factors, rank_factors, s));
  }
  const int64_t d = cols / s - 1;
  const bool ok = p.alpha.size() == s && p.user_mean.rows() == s &&
                  p.user_mean.cols() == d && p.item_mean.rows() == s &&
                  p.item_mean.cols() == d && p.user_precision.rows() == s * d &&
                  p.user_precision.cols() == d &&
                  p.item_precision.rows() == s * d &&
                  p.item_precision.cols() == d;
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bayes model: posterior arrays are not sized for %d samples of %d", s,
        d));
  }
  return absl::OkStatus();
}

absl::Status WithPath(absl::string_view path, absl::string_view what,
                      const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", what, status.message()));
}

}  // namespace recsys::internal
