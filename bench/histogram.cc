#include "bench/histogram.h"

#include <algorithm>
#include <cmath>

namespace recsys::bench {
namespace {

// Values below 2^kBits have a bucket each; above, a value keeps its top
// kBits bits. Bucket index = shift * 2^(kBits-1) + (value >> shift), which
// is contiguous across powers of two.
constexpr int kBits = 8;
constexpr int kHalf = 1 << (kBits - 1);
constexpr int kBuckets = (64 - kBits + 2) * kHalf;

int BitWidth(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

int LatencyHistogram::BucketOf(int64_t value) {
  const uint64_t v = value < 0 ? 0 : static_cast<uint64_t>(value);
  const int shift = std::max(0, BitWidth(v) - kBits);
  return shift * kHalf + static_cast<int>(v >> shift);
}

int64_t LatencyHistogram::BucketLow(int bucket) {
  if (bucket < 2 * kHalf) return bucket;
  const int shift = bucket / kHalf - 1;
  return static_cast<int64_t>(bucket - shift * kHalf) << shift;
}

void LatencyHistogram::Record(int64_t value) {
  if (value < 0) value = 0;
  ++counts_[BucketOf(value)];
  if (count_ == 0 || value < min_) min_ = value;
  max_ = std::max(max_, value);
  ++count_;
  sum_ += static_cast<double>(value);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (int b = 0; b < kBuckets; ++b) counts_[b] += other.counts_[b];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

double LatencyHistogram::mean() const {
  return count_ == 0 ? 0 : sum_ / static_cast<double>(count_);
}

double LatencyHistogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  const auto rank = std::max<int64_t>(
      1, static_cast<int64_t>(
             std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * count_)));
  if (rank >= count_) return static_cast<double>(max_);
  int64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[b];
    if (seen >= rank) {
      // The middle of the integers the bucket holds (exact below 256).
      const double low = static_cast<double>(BucketLow(b));
      const double last = static_cast<double>(BucketLow(b + 1) - 1);
      return std::clamp((low + last) / 2, static_cast<double>(min_),
                        static_cast<double>(max_));
    }
  }
  return static_cast<double>(max_);
}

}  // namespace recsys::bench
