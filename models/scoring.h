// Scoring a whole catalogue against one user vector, fast: the item factors
// copied once (per model, or per serving generation) into panels laid out
// for the product, so one pass streams them without horizontal reductions.
//
//   ItemPanels panels(model.item_factors, model.item_bias);  // once
//   std::vector<float> scores(panels.rows());
//   panels.Score(user_vector, model.mu + user_bias, scores.data());
//
//   // Or only the 10 best, skipping `rated`: the same answer, and on a
//   // large catalogue much faster (int8 bounds, see ScoreTopK).
//   std::vector<ScoredItem> best;
//   panels.ScoreTopK(user_vector, model.mu + user_bias, {}, 10, rated, &best);
//
// Layout: items in panels of kWidth; within a panel, factor-major (factor f
// of the panel's kWidth items is contiguous), so the product is kWidth-wide
// multiply-adds of a panel row by one broadcast user factor, accumulated in
// registers. A row-major matrix-vector product instead needs one horizontal
// sum per item, and measured 3.5x slower at 62k items x 128 factors. The
// last panel is padded with zero factors and bias (their scores are never
// written out).
#ifndef RECSYS_MODELS_SCORING_H_
#define RECSYS_MODELS_SCORING_H_

#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "absl/types/span.h"
#include "models/model.h"
#include "models/topk.h"

namespace recsys {

namespace internal {
struct UserCodes;  // ScoreTopK's helpers, defined in scoring.cc
class BoundHeap;
}  // namespace internal

class ItemPanels {
 public:
  // Items per panel: four vector registers' worth for the instruction set
  // the library is built for (AVX-512: 64, AVX: 32, SSE: 16).
#if defined(__AVX512F__)
  static constexpr int kWidth = 64;
#elif defined(__AVX__)
  static constexpr int kWidth = 32;
#else
  static constexpr int kWidth = 16;
#endif

  // When to make the int8 copy ScoreTopK uses (see below). Below about
  // 2^15 floats of factors (1024 x 32, say) the float pass is as fast
  // (kernels bench: score_topk_exclude against whatif_score_topk_int8,
  // which makes the copy whatever the size; they break even at ~700 x 32
  // and 700 x 64), so kIfLarge leaves smaller catalogues without one;
  // kAlways is for tests.
  enum class Int8 { kIfLarge, kAlways };
  static constexpr int64_t kInt8MinFloats = int64_t{1} << 15;

  ItemPanels() = default;
  // Row i of `factors` (a matrix, or a block of its leading columns) and
  // bias[i] (an empty `bias` means zeros) describe item i. Copies them: the
  // panels do not refer back to the arguments.
  ItemPanels(RowMatrixRef factors, const Eigen::VectorXf& bias,
             Int8 int8 = Int8::kIfLarge);

  int32_t rows() const { return rows_; }
  int32_t factors() const { return factors_; }
  bool empty() const { return rows_ == 0; }

  // out[i] = offset + bias[i] + q_i . p for i in [0, rows()); `p` points to
  // factors() floats, `out` to rows() floats.
  void Score(const float* p, float offset, float* out) const;

  // The k best of the rows() items scored as Score() scores them, followed
  // by `tail` (scores of items rows(), rows() + 1, ... worked out
  // elsewhere), skipping `exclude`: always exactly what Score() and then
  // TopKInPlace() over [scores, tail] give, bit for bit.
  //
  // With the int8 copy (see below) it gets there reading about a quarter
  // of the bytes. Every item's score is first bounded: an int8 product gives an
  // approximate score, and the quantization errors of the item (kept per
  // item) and of this user, with a float rounding allowance, give an
  // interval the exact score lies in. Only items whose upper bound reaches
  // the k-th best lower bound can be among the k best; they are then
  // scored exactly (as ScoreItems does) and the k best taken from those. On
  // real factor models a dozen or so items survive for k = 10; where the bounds
  // cannot separate the scores (more than 1/16 of the items survive), it scores
  // every item in float instead.
  void ScoreTopK(const float* p, float offset, absl::Span<const float> tail,
                 int k, absl::Span<const int32_t> exclude,
                 std::vector<ScoredItem>* out) const {
    ScoreTopK(p, offset, tail, k, exclude, {}, out);
  }
  // As above, but of the rows() items only those whose bit is set in
  // `allowed` (bit i % 64 of word i / 64; bits past its end count as clear)
  // are eligible; the tail is not filtered. An empty `allowed` allows them
  // all.
  // For a filter that keeps a large part of the catalogue (a genre, say): a
  // bit set made once costs nothing per call, where listing the rest in
  // `exclude` costs a pass over the catalogue.
  void ScoreTopK(const float* p, float offset, absl::Span<const float> tail,
                 int k, absl::Span<const int32_t> exclude,
                 absl::Span<const uint64_t> allowed,
                 std::vector<ScoredItem>* out) const;

  // out[j] = the score Score() gives item items[j] (in [0, rows())), bit
  // for bit, at the cost of one dot product each. For ranking a short list
  // of the catalogue.
  void ScoreItems(const float* p, float offset, absl::Span<const int32_t> items,
                  float* out) const;

  // Whether the int8 copy exists: it is made (as the constructor's `int8`
  // asks) for 1 to kMaxQuantizedFactors factors when every factor and bias
  // is finite.
  bool quantized() const { return !codes_.empty(); }
  static constexpr int32_t kMaxQuantizedFactors = 1024;
  // Items per panel of the int8 copy.
  static constexpr int kCodeWidth = 64;

  // The count of items ScoreTopK's last call on this thread scored exactly
  // (-1 when it scored every item), for tests and benchmarks.
  static int64_t LastExactCount();

 private:
  void Quantize(RowMatrixRef factors);
  // Scores of every item, then TopKInPlace: the plain path.
  void ExactTopK(const float* p, float offset, absl::Span<const float> tail,
                 int k, absl::Span<const int32_t> exclude,
                 absl::Span<const uint64_t> allowed,
                 std::vector<ScoredItem>* out) const;
  // ScoreTopK's steps: the int8 bounds of every eligible item, offered to
  // `bounds` (false when too many items are noted: the bounds do not
  // separate the scores); then the noted items that reach the final
  // threshold, scored exactly, the k best into `out`.
  bool BoundPanels(const internal::UserCodes& u, const uint32_t* user,
                   float offset, absl::Span<const uint64_t> allowed,
                   const std::vector<uint64_t>& excluded_bits,
                   internal::BoundHeap* bounds) const;
  void ScoreNoted(const float* p, float offset, absl::Span<const float> tail,
                  int k, float threshold, const std::vector<ScoredItem>& noted,
                  std::vector<ScoredItem>* out) const;

  int32_t rows_ = 0;
  int32_t factors_ = 0;
  // panels x factors x kWidth floats, then panels x kWidth biases.
  std::vector<float> data_;
  std::vector<float> bias_;

  // The int8 copy. Item i's factors are a_i * c_i + e_i with c_i integers
  // in [-127, 127], a_i = max |factor| / 127 and e_i the rounding error.
  // Codes are stored plus 128, as the unsigned side of AVX-512 VNNI's
  // four-way byte dot product (the user's codes are the signed side), in
  // panels of kCodeWidth items; within a panel, groups of four factors,
  // each group holding every item's four codes side by side. Factor counts
  // are padded to a multiple of four with zero codes.
  int32_t groups_ = 0;             // padded factors / 4
  std::vector<uint8_t> codes_;     // panels x groups x kCodeWidth x 4
  std::vector<float> scale_;       // a_i
  std::vector<float> norm_;        // |factors of i|, rounded up
  std::vector<float> error_norm_;  // |e_i|, rounded up
  std::vector<float> code_bias_;   // bias_, padded to whole code panels
  float max_norm_ = 0;             // the largest norm_
  float max_abs_bias_ = 0;         // the largest |bias|
};

// Each row of `m` divided by its length (Eigen's norm()); rows of length
// zero stay zero. Panels of these score cosine similarities.
RowMatrix UnitRows(RowMatrixRef m);

namespace internal {
// out[j] = sum over f of codes[f of item j] * user[f] for the kCodeWidth
// items of one code panel of `groups` groups, with unsigned codes and the
// user's signed codes four per uint32 (byte t of user[g] is factor
// 4g + t): the portable loop, and the one ScoreTopK uses (VNNI when built
// for it).
void CodePanelDotPortable(const uint8_t* codes, const uint32_t* user,
                          int32_t groups, int32_t* out);
void CodePanelDot(const uint8_t* codes, const uint32_t* user, int32_t groups,
                  int32_t* out);
}  // namespace internal

}  // namespace recsys

#endif  // RECSYS_MODELS_SCORING_H_
