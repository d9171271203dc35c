// A latency histogram in the style of HdrHistogram: log-spaced buckets with
// 128 linear sub-buckets per power of two, so any recorded value is known to
// within 0.8% while the whole range of int64 nanoseconds fits in ~60 KB and
// Record is a few instructions (no allocation, no sort at the end).
//
//   LatencyHistogram h;
//   h.Record(elapsed_ns);
//   double p99_us = h.Percentile(99.0) / 1e3;
#ifndef RECSYS_BENCH_HISTOGRAM_H_
#define RECSYS_BENCH_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace recsys::bench {

class LatencyHistogram {
 public:
  LatencyHistogram();

  // `value` is a non-negative duration in nanoseconds (negatives count as 0).
  void Record(int64_t value);
  void Merge(const LatencyHistogram& other);

  int64_t count() const { return count_; }
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double mean() const;
  // The value at percentile `p` in [0, 100]: the midpoint of the bucket
  // holding the ceil(p% * count)-th smallest value, clamped to the observed
  // min and max (so p100 is the exact max). 0 when empty.
  double Percentile(double p) const;

  // Bucket of a value and the smallest value of a bucket (exposed for the
  // tests).
  static int BucketOf(int64_t value);
  static int64_t BucketLow(int bucket);

 private:
  std::vector<int64_t> counts_;
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace recsys::bench

#endif  // RECSYS_BENCH_HISTOGRAM_H_
