// Internals of model_io.h shared by its files: the byte-level Writer and
// Reader, the one list of fixed-width fields (VisitScalars), and the checks
// and sections one file calls in another. model_io_write.cc writes a model,
// model_io_read.cc reads one, model_io_selection.cc (de)serialises its
// SelectionReport and model_io.cc holds the rules both directions enforce.
#ifndef RECSYS_MODELS_MODEL_IO_INTERNAL_H_
#define RECSYS_MODELS_MODEL_IO_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "models/model.h"

namespace recsys::internal {

// Scalars and arrays are copied in their in-memory representation, which is
// the file's only on little-endian IEEE-754 hosts (every server we target).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "model_io*.cc copy memory as little-endian file data");
static_assert(std::numeric_limits<float>::is_iec559 &&
                  std::numeric_limits<double>::is_iec559,
              "model files store IEEE-754 floats");
// A field added to these structs is silently left out of model files unless
// VisitScalars writes it, and old files cannot supply it: update
// VisitScalars, the table in model_io.h and kModelFormatVersion, then these.
static_assert(sizeof(Hyperparameters) == 112, "update the model file format");
static_assert(sizeof(RatingScale) == 8, "update the model file format");
static_assert(sizeof(DataWatermark) == 16, "update the model file format");

// --- Serialization helpers.

// Appends values in file representation to a byte string.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  template <typename T>
  void operator()(const T& value) {
    static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T>);
    Bytes(&value, sizeof(value));
  }
  void Bytes(const void* data, size_t size) {
    out_->append(static_cast<const char*>(data), size);
  }
  void String(const std::string& s) {
    (*this)(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }

 private:
  std::string* out_;
};

// Consumes a payload front to back. Every read checks the bytes left first,
// and counts are checked by division, so a corrupt count can neither overflow
// the check nor make the caller allocate more than the file could hold.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : rest_(bytes) {}

  size_t remaining() const { return rest_.size(); }

  // Unchecked, for the fixed part only: the caller checks its size once.
  template <typename T>
  void operator()(T& value) {
    static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T>);
    std::memcpy(&value, rest_.data(), sizeof(value));
    rest_.remove_prefix(sizeof(value));
  }

  // Fails unless `count` items of at least `min_bytes` each can still follow.
  absl::Status CheckCount(uint64_t count, size_t min_bytes,
                          absl::string_view what) const {
    if (count > rest_.size() / min_bytes) {
      return absl::DataLossError(absl::StrFormat(
          "%s: %d entries of %d bytes do not fit in the %d bytes left", what,
          count, min_bytes, rest_.size()));
    }
    return absl::OkStatus();
  }

  // The next `count * size` bytes.
  absl::StatusOr<const char*> Take(uint64_t count, size_t size,
                                   absl::string_view what) {
    RECSYS_RETURN_IF_ERROR(CheckCount(count, size, what));
    const char* data = rest_.data();
    rest_.remove_prefix(count * size);
    return data;
  }

  absl::Status U32(uint32_t* value, absl::string_view what) {
    RECSYS_ASSIGN_OR_RETURN(const char* data, Take(1, sizeof(*value), what));
    std::memcpy(value, data, sizeof(*value));
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Scalar(T* value, absl::string_view what) {
    static_assert(std::is_arithmetic_v<T>);
    RECSYS_ASSIGN_OR_RETURN(const char* data, Take(1, sizeof(*value), what));
    std::memcpy(value, data, sizeof(*value));
    return absl::OkStatus();
  }

  absl::Status String(std::string* s, absl::string_view what) {
    uint32_t size = 0;
    RECSYS_RETURN_IF_ERROR(U32(&size, what));
    RECSYS_ASSIGN_OR_RETURN(const char* data, Take(size, 1, what));
    s->assign(data, size);
    return absl::OkStatus();
  }

 private:
  absl::string_view rest_;
};

// The fixed-width fields after `kind`, in file order. Writer and reader share
// this one list so they cannot drift apart. `M` is Model or const Model.
// `version` is the file's: fields added later are skipped for older files
// (a reader keeps the Model's defaults for them).
template <typename M, typename Io>
void VisitScalars(M& m, Io& io, uint32_t version) {
  io(m.params.factors);
  io(m.params.epochs);
  io(m.params.learning_rate);
  io(m.params.lr_decay);
  io(m.params.reg);
  io(m.params.reg_bias);
  io(m.params.init_std);
  io(m.params.baseline_reg_item);
  io(m.params.baseline_reg_user);
  io(m.params.fold_in_reg);
  io(m.params.fold_in_reg_bias);
  io(m.params.implicit_weight);
  io(m.params.reg_exponent);
  io(m.params.cg_steps);
  io(m.params.seed);
  if (version >= 2) {
    io(m.params.burn_in);
    io(m.params.samples);
    io(m.params.value_weight);
    io(m.params.rank_factors);
    io(m.params.rank_epochs);
    io(m.params.rank_reg);
  }
  if (version >= 4) {
    io(m.params.rank_kind);
    io(m.params.popularity_weight);
    io(m.params.target_min);
  }
  if (version >= 5) {
    io(m.feedback);
    io(m.params.confidence_alpha);
    io(m.params.confidence_eps);
  }
  io(m.scale.min);
  io(m.scale.max);
  io(m.mu);
  io(m.train_seconds);
  io(m.watermark.num_ratings);
  io(m.watermark.hash);
  io(m.log_sequence);
  io(m.last_validation_rmse);
}

// --- model_io.cc

// The kind table in model.cc is the one list of kinds; a value names a kind
// exactly when its name parses back.
bool IsKnownKind(uint32_t value);

// A kHybrid's ranking part is iALS, PureSVD or popularity (one column).
absl::Status CheckRankKind(const Model& m);

// Factor columns of the Bayesian part: all of a kBayes model's, those after
// the ranking part of a kHybrid's, none otherwise; -1 when a kHybrid's
// ranking part does not leave room for one.
int64_t BayesColumns(ModelKind kind, int64_t factors, int32_t rank_factors);

// A model with a Bayesian part of F columns has S >= 1 samples of
// d = F / S - 1 numbers each and every posterior array sized for them; any
// other kind has none.
absl::Status CheckPosterior(ModelKind kind, int64_t factors,
                            int32_t rank_factors, const Posterior& p);

// Keeps the code and puts `path` first, so every error names its file.
absl::Status WithPath(absl::string_view path, absl::string_view what,
                      const absl::Status& status);

// --- model_io_selection.cc

// The SelectionReport, in the order model_io.h lists it.
void WriteSelection(const SelectionReport& report, std::string* out);
// The reverse of WriteSelection; DataLoss when a trial's fields are invalid.
absl::Status ParseSelection(Reader& r, SelectionReport* report);

}  // namespace recsys::internal

#endif  // RECSYS_MODELS_MODEL_IO_INTERNAL_H_
