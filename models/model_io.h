// Saving and loading trained models: one versioned binary file per model.
//
// SaveModel never leaves a partial file at `path` (it writes a temporary file
// beside it, fsyncs it and renames it into place); LoadModel checks the magic,
// version, lengths and checksum before trusting a byte, and validates every
// count against the bytes left before allocating for it.
//
//   RECSYS_RETURN_IF_ERROR(SaveModel(model, "/srv/recsys/als.model"));
//   RECSYS_ASSIGN_OR_RETURN(Model loaded, LoadModel("/srv/recsys/als.model"));
//
// File format, version 5 (version 1 lacks the fields marked v2 to v5,
// version 2 those marked v3 to v5, version 3 those marked v4 and v5,
// version 4 those marked v5; they load with those at their defaults). All
// integers and floats little-endian, floats IEEE-754; offsets in bytes.
//
//   Header (kModelHeaderBytes = 32)
//   0   char[8]  magic "RECSYSMF"
//   8   u32      format version (kModelFormatVersion)
//   12  u32      flags, must be 0 (reserved for future use)
//   16  u64      payload length P
//   24  u64      CRC-32C (Castagnoli) of the P payload bytes, upper 32 bits 0
//   Payload (P bytes, then end of file)
//       u32      kind (ModelKind)
//       i32 i32  params.factors, params.epochs
//       f32 x9   params.learning_rate, lr_decay, reg, reg_bias, init_std,
//                baseline_reg_item, baseline_reg_user, fold_in_reg,
//                fold_in_reg_bias
//       f32 f32 i32 params.implicit_weight, reg_exponent, cg_steps
//       u64      params.seed
//       i32 i32  params.burn_in, params.samples                        (v2)
//       f32      params.value_weight                                   (v2)
//       i32 i32 f32  params.rank_factors, rank_epochs, rank_reg        (v2)
//       u32      params.rank_kind (ModelKind; kIals before v4)         (v4)
//       f32 f32  params.popularity_weight, target_min                  (v4)
//       u32      feedback (Feedback; explicit before v5)               (v5)
//       f32 f32  params.confidence_alpha, confidence_eps               (v5)
//       f32 f32  scale.min, scale.max
//       f32      mu
//       f64      train_seconds
//       i64 u64  watermark.num_ratings, watermark.hash
//       u64      log_sequence (last server log record the model contains)
//       f64      last_validation_rmse (-1 when not measured)
//       u32 x3   U = num_users, I = num_items, F = factor columns
//       f32[U]   user_bias
//       f32[I]   item_bias
//       f32[U*F] user_factors, row-major
//       f32[I*F] item_factors, row-major
//       i32[I]   item_counts
//       u64      N = training ratings kept in user_ratings
//       i64[U+1] user_ratings.offsets (0 first, N last, non-decreasing)
//       i32[N]   user_ratings.cols (item indices < I)
//       f32[N]   user_ratings.values
//       i64[N]   user_ratings.times (0 where unknown)
//       str[U]   user external ids, by index
//       str[I]   item external ids, by index
//       I times  str title, u32 genre count G, str[G] genres
//       u32 u32  S, D: Bayesian posterior samples and row size (0 0 unless
//                kind is bayes, then F = S * (D + 1), or hybrid, then
//                F - rank_factors = S * (D + 1))                       (v2)
//       f32[S]   posterior alpha                                       (v2)
//       f32[S*D] f32[S*D*D]  user prior means, precisions              (v2)
//       f32[S*D] f32[S*D*D]  item prior means, precisions              (v2)
//       u32      R: retired items (ItemInfo::retired)                  (v3)
//       u32[R]   their indices, increasing                             (v3)
//       u32      B: entries of rank_bias, 0 or I                       (v4)
//       f32[B]   rank_bias                                             (v4)
//       u32      T: model-selection trials (SelectionReport)           (v4)
//       T times  str candidate, u32 kind, i32 part, i32 rung, i64 work,
//                f64 ndcg, f64 rmse, f64 seconds, u32 chosen (0 or 1)   (v4)
//       i64 i64 f64  selection budget, work, seconds                   (v4)
//       i64 i64  selection validation users, ratings                   (v4)
//       str      selection summary                                     (v4)
//   where str = u32 byte length + that many bytes (no terminator).
//
// Every array's length follows from the shape (U, I, F), so a loaded model is
// consistent by construction; SaveModel refuses a Model whose arrays disagree.
#ifndef RECSYS_MODELS_MODEL_IO_H_
#define RECSYS_MODELS_MODEL_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/model.h"

namespace recsys {

// The only format version this build writes and reads.
inline constexpr uint32_t kModelFormatVersion = 5;
// Files of this version onwards load (fields they lack take defaults).
inline constexpr uint32_t kOldestModelFormatVersion = 1;
inline constexpr char kModelMagic[8] = {'R', 'E', 'C', 'S', 'Y', 'S', 'M', 'F'};
inline constexpr size_t kModelHeaderBytes = 32;

// Writes `model` to `path` atomically: readers see the old file or the new
// one, never a mix. Errors name the path and the OS reason; InvalidArgument
// when the model's arrays disagree with its id maps.
absl::Status SaveModel(const Model& model, const std::string& path);

// Reads a model written by SaveModel. Errors start with the path: NotFound
// (no file), DataLoss (truncated, trailing bytes, checksum mismatch, corrupt
// payload), InvalidArgument (not a model file), FailedPrecondition (another
// format version).
absl::StatusOr<Model> LoadModel(const std::string& path);

// The whole file as SaveModel would write it, and the reverse (with the same
// checks and error codes as LoadModel; `source` opens error messages). For
// tests and for callers that move models through something other than a
// local file.
absl::StatusOr<std::string> SerializeModel(const Model& model);
absl::StatusOr<Model> ParseModel(absl::string_view bytes,
                                 absl::string_view source);

}  // namespace recsys

#endif  // RECSYS_MODELS_MODEL_IO_H_
