// The SelectionReport a model file carries (version 4 onwards): how
// model_io.h lists it, written and read back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "models/model.h"
#include "models/model_io_internal.h"

namespace recsys::internal {
namespace {

// A trial is a length-prefixed string and 48 more bytes.
constexpr size_t kTrialMinBytes = 4 + 48;

}  // namespace

void WriteSelection(const SelectionReport& report, std::string* out) {
  Writer w(out);
  w(static_cast<uint32_t>(report.trials.size()));
  for (const SelectionTrial& t : report.trials) {
    w.String(t.candidate);
    w(static_cast<uint32_t>(t.kind));
    w(static_cast<int32_t>(t.part));
    w(t.rung);
    w(t.work);
    w(t.ndcg);
    w(t.rmse);
    w(t.seconds);
    w(static_cast<uint32_t>(t.chosen));
  }
  w(report.budget);
  w(report.work);
  w(report.seconds);
  w(report.validation_users);
  w(report.validation_ratings);
  w.String(report.summary);
}

absl::Status ParseSelection(Reader& r, SelectionReport* report) {
  uint32_t trials = 0;
  RECSYS_RETURN_IF_ERROR(r.U32(&trials, "selection trial count"));
  RECSYS_RETURN_IF_ERROR(
      r.CheckCount(trials, kTrialMinBytes, "selection trials"));
  report->trials.resize(trials);
  for (SelectionTrial& t : report->trials) {
    RECSYS_RETURN_IF_ERROR(r.String(&t.candidate, "selection candidate"));
    uint32_t kind = 0, chosen = 0;
    int32_t part = 0;
    RECSYS_RETURN_IF_ERROR(r.U32(&kind, "selection kind"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&part, "selection part"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.rung, "selection rung"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.work, "selection work"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.ndcg, "selection ndcg"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.rmse, "selection rmse"));
    RECSYS_RETURN_IF_ERROR(r.Scalar(&t.seconds, "selection seconds"));
    RECSYS_RETURN_IF_ERROR(r.U32(&chosen, "selection chosen"));
    if (!IsKnownKind(kind) || (part != 0 && part != 1) || chosen > 1) {
      return absl::DataLossError(absl::StrFormat(
          "selection trial '%s': kind %d, part %d or chosen %d is invalid",
          t.candidate, kind, part, chosen));
    }
    t.kind = static_cast<ModelKind>(kind);
    t.part = static_cast<SelectionTrial::Part>(part);
    t.chosen = chosen == 1;
  }
  RECSYS_RETURN_IF_ERROR(r.Scalar(&report->budget, "selection budget"));
  RECSYS_RETURN_IF_ERROR(r.Scalar(&report->work, "selection work"));
  RECSYS_RETURN_IF_ERROR(r.Scalar(&report->seconds, "selection seconds"));
  RECSYS_RETURN_IF_ERROR(
      r.Scalar(&report->validation_users, "selection validation users"));
  RECSYS_RETURN_IF_ERROR(
      r.Scalar(&report->validation_ratings, "selection validation ratings"));
  return r.String(&report->summary, "selection summary");
}

}  // namespace recsys::internal
