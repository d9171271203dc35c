#include "models/scoring.h"

#include <algorithm>

namespace recsys {

namespace {
constexpr int kW = ItemPanels::kWidth;

// One panel: out[j] = offset + bias[j] + sum_f panel[f][j] * p[f], for the
// first `n` of its kW items. Two accumulator sets (even and odd factors)
// keep enough independent multiply-adds in flight to hide their latency.
inline void ScorePanel(const float* __restrict panel,
                       const float* __restrict bias, int32_t k,
                       const float* __restrict p, float offset, int n,
                       float* __restrict out) {
  float even[kW];
  float odd[kW];
  for (int j = 0; j < kW; ++j) {
    even[j] = 0.0f;
    odd[j] = 0.0f;
  }
  int32_t f = 0;
  for (; f + 1 < k; f += 2) {
    const float pe = p[f];
    const float po = p[f + 1];
    const float* re = panel + static_cast<int64_t>(f) * kW;
    const float* ro = re + kW;
    for (int j = 0; j < kW; ++j) {
      even[j] += re[j] * pe;
      odd[j] += ro[j] * po;
    }
  }
  if (f < k) {
    const float pe = p[f];
    const float* re = panel + static_cast<int64_t>(f) * kW;
    for (int j = 0; j < kW; ++j) even[j] += re[j] * pe;
  }
  if (n == kW) {
    for (int j = 0; j < kW; ++j)
      out[j] = (offset + bias[j]) + (even[j] + odd[j]);
  } else {
    for (int j = 0; j < n; ++j)
      out[j] = (offset + bias[j]) + (even[j] + odd[j]);
  }
}
}  // namespace

ItemPanels::ItemPanels(RowMatrixRef factors, const Eigen::VectorXf& bias)
    : rows_(static_cast<int32_t>(factors.rows())),
      factors_(static_cast<int32_t>(factors.cols())) {
  const int64_t panels = (static_cast<int64_t>(rows_) + kW - 1) / kW;
  data_.assign(static_cast<size_t>(panels * factors_ * kW), 0.0f);
  bias_.assign(static_cast<size_t>(panels * kW), 0.0f);
  for (int32_t i = 0; i < rows_; ++i) {
    const int64_t panel = i / kW;
    const int j = i % kW;
    float* dst = data_.data() + panel * factors_ * kW + j;
    const float* src = factors.row(i).data();
    for (int32_t f = 0; f < factors_; ++f)
      dst[static_cast<int64_t>(f) * kW] = src[f];
    if (bias.size() > 0) bias_[static_cast<size_t>(i)] = bias[i];
  }
}

void ItemPanels::Score(const float* p, float offset, float* out) const {
  const int64_t panels = (static_cast<int64_t>(rows_) + kW - 1) / kW;
  const int64_t stride = static_cast<int64_t>(factors_) * kW;
  for (int64_t b = 0; b < panels; ++b) {
    const int n = static_cast<int>(
        std::min<int64_t>(kW, static_cast<int64_t>(rows_) - b * kW));
    ScorePanel(data_.data() + b * stride, bias_.data() + b * kW, factors_, p,
               offset, n, out + b * kW);
  }
}

}  // namespace recsys
