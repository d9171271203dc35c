#include "models/scoring.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace recsys {

namespace {
constexpr int kW = ItemPanels::kWidth;
constexpr int kCW = ItemPanels::kCodeWidth;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

thread_local int64_t last_exact_count = -1;

// Word w of an `allowed` bit set (ScoreTopK), zero past its end.
inline uint64_t AllowedWord(absl::Span<const uint64_t> allowed, int64_t w) {
  return static_cast<size_t>(w) < allowed.size()
             ? allowed[static_cast<size_t>(w)]
             : 0;
}
// Whether item i is allowed: every item is when `allowed` is empty.
inline bool IsAllowed(absl::Span<const uint64_t> allowed, int64_t i) {
  return allowed.empty() || ((AllowedWord(allowed, i / 64) >> (i % 64)) & 1);
}

// Bit j set where v[j] >= t, for the 64 floats at v (NaN: clear).
inline uint64_t AtLeastMask(const float* v, float t) {
#if defined(__AVX512F__)
  const __m512 tv = _mm512_set1_ps(t);
  uint64_t mask = 0;
  for (int q = 0; q < 4; ++q) {
    const __mmask16 m =
        _mm512_cmp_ps_mask(_mm512_loadu_ps(v + 16 * q), tv, _CMP_GE_OQ);
    mask |= static_cast<uint64_t>(m) << (16 * q);
  }
  return mask;
#else
  uint64_t mask = 0;
  for (int j = 0; j < 64; ++j) {
    mask |= static_cast<uint64_t>(v[j] >= t) << j;
  }
  return mask;
#endif
}

// ScoreTopK gives up on its bounds once more than 1/kMaxNotedFraction of the
// items (and more than 4k + 1024) remain candidates.
constexpr int64_t kMaxNotedFraction = 16;

// The smallest float at least x (x >= 0, finite), a little above it so the
// double arithmetic that gave x is covered too.
float RoundUp(double x) {
  x *= 1.0 + 1e-9;
  float f = static_cast<float>(x);
  if (static_cast<double>(f) < x) {
    f = std::nextafter(f, std::numeric_limits<float>::infinity());
  }
  return f;
}

// The integer code of v at scale a (a >= 0): v / a rounded to the nearest
// integer (ties to even), within [-127, 127]; 0 for a zero scale. The bounds
// hold for any code, since each is paired with its own rounding error; this
// rounding is one instruction where std::lround is a library call (no
// change measured: ScoreTopK quantizes one user vector per call).
inline int32_t Code(float v, float a) {
  if (!(a > 0)) return 0;
  const double c =
      std::clamp(std::nearbyint(static_cast<double>(v) / a), -127.0, 127.0);
  return static_cast<int32_t>(c);
}

// a * b + c as Score() rounds it: fused (one rounding) where the target
// has a fast fma, a product and a sum otherwise; written out so that the
// panel loop and ScoreLane() below cannot differ in how the compiler
// contracts them.
inline float MulAdd(float a, float b, float c) {
#if defined(FP_FAST_FMAF)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

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
      even[j] = MulAdd(re[j], pe, even[j]);
      odd[j] = MulAdd(ro[j], po, odd[j]);
    }
  }
  if (f < k) {
    const float pe = p[f];
    const float* re = panel + static_cast<int64_t>(f) * kW;
    for (int j = 0; j < kW; ++j) even[j] = MulAdd(re[j], pe, even[j]);
  }
  if (n == kW) {
    for (int j = 0; j < kW; ++j)
      out[j] = (offset + bias[j]) + (even[j] + odd[j]);
  } else {
    for (int j = 0; j < n; ++j)
      out[j] = (offset + bias[j]) + (even[j] + odd[j]);
  }
}

// Lane j of ScorePanel alone, the same operations in the same order (the
// multiply-adds by MulAdd, the sums with no product to fuse): the same
// float, at 1/kW of the work.
float ScoreLane(const float* panel, const float* bias, int32_t k,
                const float* p, float offset, int j) {
  float even = 0.0f;
  float odd = 0.0f;
  int32_t f = 0;
  for (; f + 1 < k; f += 2) {
    even = MulAdd(panel[static_cast<int64_t>(f) * kW + j], p[f], even);
    odd = MulAdd(panel[static_cast<int64_t>(f + 1) * kW + j], p[f + 1], odd);
  }
  if (f < k) even = MulAdd(panel[static_cast<int64_t>(f) * kW + j], p[f], even);
  return (offset + bias[j]) + (even + odd);
}
}  // namespace

RowMatrix UnitRows(RowMatrixRef m) {
  RowMatrix out(m.rows(), m.cols());
  for (int64_t i = 0; i < m.rows(); ++i) {
    const float n = m.row(i).norm();
    if (n > 0) {
      out.row(i) = m.row(i) / n;
    } else {
      out.row(i).setZero();
    }
  }
  return out;
}

namespace internal {

void CodePanelDotPortable(const uint8_t* codes, const uint32_t* user,
                          int32_t groups, int32_t* out) {
  int32_t acc[kCW] = {};
  for (int32_t g = 0; g < groups; ++g) {
    const uint32_t u = user[g];
    const int32_t u0 = static_cast<int8_t>(u & 0xffu);
    const int32_t u1 = static_cast<int8_t>((u >> 8) & 0xffu);
    const int32_t u2 = static_cast<int8_t>((u >> 16) & 0xffu);
    const int32_t u3 = static_cast<int8_t>(u >> 24);
    const uint8_t* c = codes + static_cast<int64_t>(g) * kCW * 4;
    for (int j = 0; j < kCW; ++j) {
      acc[j] += u0 * c[4 * j] + u1 * c[4 * j + 1] + u2 * c[4 * j + 2] +
                u3 * c[4 * j + 3];
    }
  }
  std::copy(acc, acc + kCW, out);
}

void CodePanelDot(const uint8_t* codes, const uint32_t* user, int32_t groups,
                  int32_t* out) {
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
  static_assert(kCW == 64, "four registers of 16 items");
  __m512i a0 = _mm512_setzero_si512();
  __m512i a1 = _mm512_setzero_si512();
  __m512i a2 = _mm512_setzero_si512();
  __m512i a3 = _mm512_setzero_si512();
  for (int32_t g = 0; g < groups; ++g) {
    // Each item's four unsigned codes against the user's four signed ones.
    const __m512i u = _mm512_set1_epi32(static_cast<int>(user[g]));
    const uint8_t* c = codes + static_cast<int64_t>(g) * kCW * 4;
    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(c), u);
    a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(c + 64), u);
    a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(c + 128), u);
    a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(c + 192), u);
  }
  _mm512_storeu_si512(out, a0);
  _mm512_storeu_si512(out + 16, a1);
  _mm512_storeu_si512(out + 32, a2);
  _mm512_storeu_si512(out + 48, a3);
#else
  CodePanelDotPortable(codes, user, groups, out);
#endif
}

}  // namespace internal

ItemPanels::ItemPanels(RowMatrixRef factors, const Eigen::VectorXf& bias,
                       Int8 int8)
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
  if (int8 == Int8::kAlways ||
      static_cast<int64_t>(rows_) * factors_ >= kInt8MinFloats) {
    Quantize(factors);
  }
}

void ItemPanels::Quantize(RowMatrixRef factors) {
  if (rows_ == 0 || factors_ < 1 || factors_ > kMaxQuantizedFactors) return;
  for (int32_t i = 0; i < rows_; ++i) {
    if (!std::isfinite(bias_[static_cast<size_t>(i)]) ||
        !factors.row(i).allFinite()) {
      return;  // ScoreTopK scores such a model exactly
    }
  }
  groups_ = (factors_ + 3) / 4;
  const int64_t panels = (static_cast<int64_t>(rows_) + kCW - 1) / kCW;
  const auto padded = static_cast<size_t>(panels * kCW);
  // 128 is code 0: padding factors and items score nothing.
  codes_.assign(static_cast<size_t>(panels * groups_ * kCW * 4), 128);
  scale_.assign(padded, 0.0f);
  norm_.assign(padded, 0.0f);
  error_norm_.assign(padded, 0.0f);
  code_bias_.assign(padded, 0.0f);
  std::copy(bias_.begin(), bias_.begin() + rows_, code_bias_.begin());
  for (int32_t i = 0; i < rows_; ++i) {
    const float* row = factors.row(i).data();
    float max_abs = 0.0f;
    for (int32_t f = 0; f < factors_; ++f) {
      max_abs = std::max(max_abs, std::abs(row[f]));
    }
    const float a = max_abs / 127.0f;
    uint8_t* panel = codes_.data() + (i / kCW) * groups_ * kCW * 4;
    const int j = i % kCW;
    double error2 = 0, norm2 = 0;
    for (int32_t f = 0; f < factors_; ++f) {
      const int32_t c = Code(row[f], a);
      panel[(static_cast<int64_t>(f / 4) * kCW + j) * 4 + f % 4] =
          static_cast<uint8_t>(c + 128);
      // Exact in double: a float times a small integer.
      const double e = static_cast<double>(row[f]) - static_cast<double>(a) * c;
      error2 += e * e;
      norm2 += static_cast<double>(row[f]) * row[f];
    }
    const auto k = static_cast<size_t>(i);
    scale_[k] = a;
    norm_[k] = RoundUp(std::sqrt(norm2));
    error_norm_[k] = RoundUp(std::sqrt(error2));
    max_norm_ = std::max(max_norm_, norm_[k]);
    max_abs_bias_ = std::max(max_abs_bias_, std::abs(code_bias_[k]));
  }
}

int64_t ItemPanels::LastExactCount() { return last_exact_count; }

void ItemPanels::ScoreItems(const float* p, float offset,
                            absl::Span<const int32_t> items, float* out) const {
  const int64_t stride = static_cast<int64_t>(factors_) * kW;
  for (size_t j = 0; j < items.size(); ++j) {
    const int64_t pb = items[j] / kW;
    out[j] = ScoreLane(data_.data() + pb * stride, bias_.data() + pb * kW,
                       factors_, p, offset, static_cast<int>(items[j] % kW));
  }
}

void ItemPanels::ExactTopK(const float* p, float offset,
                           absl::Span<const float> tail, int k,
                           absl::Span<const int32_t> exclude,
                           absl::Span<const uint64_t> allowed,
                           std::vector<ScoredItem>* out) const {
  thread_local std::vector<float> all;
  all.resize(static_cast<size_t>(rows_) + tail.size());
  if (rows_ > 0) Score(p, offset, all.data());
  std::copy(tail.begin(), tail.end(), all.begin() + rows_);
  if (!allowed.empty()) {
    // The items not allowed score -inf, as excluded ones do.
    for (int64_t w = 0; w * 64 < rows_; ++w) {
      const uint64_t word = AllowedWord(allowed, w);
      const int64_t end = std::min<int64_t>(64, rows_ - w * 64);
      for (int64_t j = 0; j < end; ++j) {
        if (((word >> j) & 1) == 0)
          all[static_cast<size_t>(w * 64 + j)] = kNegInf;
      }
    }
    TopKInPlace(absl::MakeSpan(all), k, exclude, out);
    if (out->size() == static_cast<size_t>(k) && out->back().score > kNegInf) {
      last_exact_count = -1;
      return;
    }
    // Fewer than k items scored above -inf, so TopKInPlace topped up with
    // -inf items, which may include items not allowed. Again from fresh
    // scores, with those excluded, so the top-up skips them too.
    thread_local std::vector<int32_t> merged;
    merged.assign(exclude.begin(), exclude.end());
    for (int32_t i = 0; i < rows_; ++i) {
      if (!IsAllowed(allowed, i)) merged.push_back(i);
    }
    if (rows_ > 0) Score(p, offset, all.data());
    std::copy(tail.begin(), tail.end(), all.begin() + rows_);
    exclude = merged;
  }
  TopKInPlace(absl::MakeSpan(all), k, exclude, out);
  last_exact_count = -1;
}

// Why the interval holds. With c_u the user's codes at scale b (u = b c_u +
// d) and item i's as above (q = a c + e), the real dot product is
//   u . q = a b (c_u . c) + a (d . c) + u . e,
// and by Cauchy-Schwarz the last two terms are at most |d| a|c| and |u| |e|
// in size, where a|c| = |q - e| <= |q| + |e|. The integer product is exact
// (at most 127 * 127 * 1024 < 2^24, so exact as a float too). Score() sums in
// float with about k/2 + 3 roundings of at most 2^-24 relative to |offset +
// bias| + |u| |q|, and the approximate score (its product at most about 1.3 |u|
// |q|) and bounds here have a few more; gamma allows (k + 16) * 2^-21 times
// |offset + bias| + 2 |u| |q|, eight times the sum of them all.
namespace internal {

// The user's side of the int8 bounds: the codes at scale b, four to a
// uint32 (padding factors get 0); the item codes carry +128, which adds
// 128 times the sum of the user's codes to every item's product.
struct UserCodes {
  float b = 0;
  int32_t bias_of_codes = 0;
  float user_norm = 0;      // |u|, rounded up
  float residual_norm = 0;  // |d|, rounded up
};

UserCodes QuantizeUser(const float* p, int32_t factors, int32_t groups,
                       float max_abs, double user2,
                       std::vector<uint32_t>* user) {
  UserCodes u;
  u.b = max_abs / 127.0f;
  user->assign(static_cast<size_t>(groups), 0);
  double residual2 = 0;
  int32_t user_sum = 0;
  for (int32_t f = 0; f < factors; ++f) {
    const int32_t c = Code(p[f], u.b);
    const double d = static_cast<double>(p[f]) - static_cast<double>(u.b) * c;
    residual2 += d * d;
    user_sum += c;
    (*user)[static_cast<size_t>(f / 4)] |=
        static_cast<uint32_t>(static_cast<uint8_t>(static_cast<int8_t>(c)))
        << (8 * (f % 4));
  }
  u.bias_of_codes = 128 * user_sum;
  u.user_norm = RoundUp(std::sqrt(user2));
  u.residual_norm = RoundUp(std::sqrt(residual2));
  return u;
}

// The k best lower bounds so far in a min-heap, whose top is a running
// threshold that only rises; an item whose upper bound is below it cannot
// be among the k best, and the rest are noted as (item, upper bound).
class BoundHeap {
 public:
  BoundHeap(size_t k, std::vector<float>* heap, std::vector<ScoredItem>* noted)
      : k_(k), heap_(*heap), noted_(*noted) {
    heap_.clear();
    noted_.clear();
  }
  // Item i, neither excluded nor (among the rows) outside `allowed`.
  void Offer(int64_t i, float item_lo, float item_hi) {
    if (!(item_hi >= threshold_)) return;
    noted_.push_back({static_cast<int32_t>(i), item_hi});
    if (heap_.size() < k_) {
      heap_.push_back(item_lo);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
    } else if (item_lo > heap_.front()) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<float>());
      heap_.back() = item_lo;
      std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
    } else {
      return;
    }
    if (heap_.size() == k_) threshold_ = heap_.front();
  }
  size_t k() const { return k_; }
  float threshold() const { return threshold_; }
  bool full() const { return heap_.size() >= k_; }
  const std::vector<ScoredItem>& noted() const { return noted_; }

 private:
  const size_t k_;
  std::vector<float>& heap_;
  std::vector<ScoredItem>& noted_;
  float threshold_ = kNegInf;
};

}  // namespace internal

namespace {

// Exclusions as a bit set over the items and the tail (a pass over the
// list, and one word per 64 items to clear).
void ExclusionBits(absl::Span<const int32_t> exclude, int64_t n,
                   std::vector<uint64_t>* bits) {
  bits->assign(static_cast<size_t>((n + 63) / 64), 0);
  for (int32_t c : exclude) {
    if (c >= 0 && c < n) {
      (*bits)[static_cast<size_t>(c) / 64] |= uint64_t{1} << (c % 64);
    }
  }
}

}  // namespace

// Why the interval holds. With c_u the user's codes at scale b (u = b c_u +
// d) and item i's as above (q = a c + e), the real dot product is
//   u . q = a b (c_u . c) + a (d . c) + u . e,
// and by Cauchy-Schwarz the last two terms are at most |d| a|c| and |u| |e|
// in size, where a|c| = |q - e| <= |q| + |e|. The integer product is exact
// (at most 127 * 127 * 1024 < 2^24, so exact as a float too). Score() sums in
// float with about k/2 + 3 roundings of at most 2^-24 relative to |offset +
// bias| + |u| |q|, and the approximate score (its product at most about 1.3 |u|
// |q|) and bounds here have a few more; gamma allows (k + 16) * 2^-21 times
// |offset + bias| + 2 |u| |q|, eight times the sum of them all.
//
// One pass over the bounds (BoundPanels) notes the items that may be among
// the k best; those that reach the final threshold are scored exactly
// (ScoreNoted).
void ItemPanels::ScoreTopK(const float* p, float offset,
                           absl::Span<const float> tail, int k,
                           absl::Span<const int32_t> exclude,
                           absl::Span<const uint64_t> allowed,
                           std::vector<ScoredItem>* out) const {
  out->clear();
  const int64_t n =
      static_cast<int64_t>(rows_) + static_cast<int64_t>(tail.size());
  last_exact_count = -1;
  if (k <= 0 || n == 0) return;
  bool usable = quantized() && std::isfinite(offset);
  float max_abs = 0.0f;
  double user2 = 0;
  for (int32_t f = 0; f < factors_ && usable; ++f) {
    usable = std::isfinite(p[f]);
    max_abs = std::max(max_abs, std::abs(p[f]));
    user2 += static_cast<double>(p[f]) * p[f];
  }
  for (float t : tail) usable = usable && std::isfinite(t);
  thread_local std::vector<uint32_t> user;
  internal::UserCodes codes;
  if (usable) {
    codes = internal::QuantizeUser(p, factors_, groups_, max_abs, user2, &user);
    // Every bound is a few times this at most: if it overflows, so might
    // they.
    usable = std::isfinite(16.0f * (std::abs(offset) + max_abs_bias_ +
                                    codes.user_norm * max_norm_));
  }
  if (!usable) {
    ExactTopK(p, offset, tail, k, exclude, allowed, out);
    return;
  }
  thread_local std::vector<uint64_t> excluded_bits;
  ExclusionBits(exclude, n, &excluded_bits);
  thread_local std::vector<float> heap;        // lower bounds, worst on top
  thread_local std::vector<ScoredItem> noted;  // (item, upper bound)
  internal::BoundHeap bounds(static_cast<size_t>(k), &heap, &noted);
  bool separated =
      BoundPanels(codes, user.data(), offset, allowed, excluded_bits, &bounds);
  if (separated) {
    for (size_t t = 0; t < tail.size(); ++t) {
      const int64_t i = rows_ + static_cast<int64_t>(t);
      if (((excluded_bits[static_cast<size_t>(i) / 64] >> (i % 64)) & 1) == 0) {
        bounds.Offer(i, tail[t], tail[t]);
      }
    }
  }
  // Where the bounds do not separate the scores (many nearly equal at the
  // top), or fewer than k items are left (the plain path tops up with -inf
  // scores): every item in float.
  if (!separated || !bounds.full()) {
    ExactTopK(p, offset, tail, k, exclude, allowed, out);
    return;
  }
  ScoreNoted(p, offset, tail, k, bounds.threshold(), bounds.noted(), out);
}

bool ItemPanels::BoundPanels(const internal::UserCodes& u, const uint32_t* user,
                             float offset, absl::Span<const uint64_t> allowed,
                             const std::vector<uint64_t>& excluded_bits,
                             internal::BoundHeap* bounds) const {
  const float gamma = static_cast<float>(factors_ + 16) * 0x1p-21f;
  // margin_i = |d| a_i|c_i| + |u| |e_i| + gamma (|level_i| + 2 |u| |q_i|),
  // bounded with a_i|c_i| <= |q_i| + |e_i| by two per-item norms.
  const float per_norm = u.residual_norm + 2.0f * gamma * u.user_norm;
  const float per_error = u.residual_norm + u.user_norm;
  const int64_t panels = (static_cast<int64_t>(rows_) + kCW - 1) / kCW;
  const size_t max_noted = static_cast<size_t>(std::max<int64_t>(
      4 * static_cast<int64_t>(bounds->k()) + 1024, rows_ / kMaxNotedFraction));
  alignas(64) int32_t dots[kCW];
  alignas(64) float lo[kCW];
  alignas(64) float hi[kCW];
  // A panel's bounds are worked out together and compared with the
  // threshold as one 64-bit mask, which the panel's words of `allowed` and
  // of the exclusions then narrow, so only its candidates are visited one
  // by one.
  static_assert(kCW == 64, "one word of bits per code panel");
  for (int64_t pb = 0; pb < panels; ++pb) {
    const int m = static_cast<int>(std::min<int64_t>(kCW, rows_ - pb * kCW));
    uint64_t eligible =
        (allowed.empty() ? ~uint64_t{0} : AllowedWord(allowed, pb)) &
        ~excluded_bits[static_cast<size_t>(pb)];
    if (m < kCW) eligible &= (uint64_t{1} << m) - 1;
    if (eligible == 0) continue;
    internal::CodePanelDot(codes_.data() + pb * groups_ * kCW * 4, user,
                           groups_, dots);
    const size_t first = static_cast<size_t>(pb) * kCW;
    for (int j = 0; j < kCW; ++j) {
      const size_t i = first + static_cast<size_t>(j);
      const float level = offset + code_bias_[i];
      const auto dot = static_cast<float>(dots[j] - u.bias_of_codes);
      const float approx = level + (scale_[i] * u.b) * dot;
      const float margin = per_norm * norm_[i] + per_error * error_norm_[i] +
                           gamma * std::abs(level);
      lo[j] = approx - margin;
      hi[j] = approx + margin;
    }
    uint64_t reach = AtLeastMask(hi, bounds->threshold()) & eligible;
    while (reach != 0) {
      const int j = __builtin_ctzll(reach);
      reach &= reach - 1;
      bounds->Offer(static_cast<int64_t>(first) + j, lo[j], hi[j]);
    }
    if (bounds->noted().size() > max_noted) return false;
  }
  return true;
}

void ItemPanels::ScoreNoted(const float* p, float offset,
                            absl::Span<const float> tail, int k,
                            float threshold,
                            const std::vector<ScoredItem>& noted,
                            std::vector<ScoredItem>* out) const {
  // With Score()'s own arithmetic (ScoreLane).
  thread_local std::vector<ScoredItem> candidates;
  candidates.clear();
  const int64_t stride = static_cast<int64_t>(factors_) * kW;
  for (const ScoredItem& c : noted) {
    if (!(c.score >= threshold)) continue;
    const int64_t i = c.item;
    if (i < rows_) {
      const int64_t pb = i / kW;
      candidates.push_back(
          {c.item, ScoreLane(data_.data() + pb * stride, bias_.data() + pb * kW,
                             factors_, p, offset, static_cast<int>(i % kW))});
    } else {
      candidates.push_back({c.item, tail[static_cast<size_t>(i - rows_)]});
    }
  }
  last_exact_count = static_cast<int64_t>(candidates.size());
  const size_t keep = std::min(candidates.size(), static_cast<size_t>(k));
  std::partial_sort(candidates.begin(), candidates.begin() + keep,
                    candidates.end(),
                    [](const ScoredItem& a, const ScoredItem& b) {
                      return RanksBefore(a, b);  // (inlined, unlike a pointer)
                    });
  out->assign(candidates.begin(), candidates.begin() + keep);
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
