// Scoring a whole catalogue against one user vector, fast: the item factors
// copied once (per model, or per serving generation) into panels laid out
// for the product, so one pass streams them without horizontal reductions.
//
//   ItemPanels panels(model.item_factors, model.item_bias);  // once
//   std::vector<float> scores(panels.rows());
//   panels.Score(user_vector, model.mu + user_bias, scores.data());
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
#include "models/model.h"

namespace recsys {

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

  ItemPanels() = default;
  // Row i of `factors` (a matrix, or a block of its leading columns) and
  // bias[i] (an empty `bias` means zeros) describe item i. Copies them: the
  // panels do not refer back to the arguments.
  ItemPanels(RowMatrixRef factors, const Eigen::VectorXf& bias);

  int32_t rows() const { return rows_; }
  int32_t factors() const { return factors_; }
  bool empty() const { return rows_ == 0; }

  // out[i] = offset + bias[i] + q_i . p for i in [0, rows()); `p` points to
  // factors() floats, `out` to rows() floats.
  void Score(const float* p, float offset, float* out) const;

 private:
  int32_t rows_ = 0;
  int32_t factors_ = 0;
  // panels x factors x kWidth floats, then panels x kWidth biases.
  std::vector<float> data_;
  std::vector<float> bias_;
};

}  // namespace recsys

#endif  // RECSYS_MODELS_SCORING_H_
