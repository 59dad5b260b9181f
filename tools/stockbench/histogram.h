// Latency histograms with log-linear buckets, in the manner of HdrHistogram: values below 64
// are exact; above, every power of two is split into 64 equal buckets, so a reported value is
// within 1/64 (1.6%) of the true one. Values are nanoseconds, up to 2^42 ns (~73 minutes);
// larger values land in the last bucket. The exact maximum is kept separately.
//
// Histogram is plain (one thread). AtomicHistogram may be recorded into from any thread and
// drained by another (the progress line); each count is a relaxed atomic.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace stockd::bench {

inline constexpr unsigned kSubBucketBits = 6;  // 64 buckets per power of two
inline constexpr unsigned kValueBitsMax = 42;  // values up to 2^42 - 1 ns
inline constexpr size_t kBucketCount = (kValueBitsMax - kSubBucketBits + 1) * 64;

// The bucket of value `v` (clamped to the largest value) and the largest value in bucket `i`.
size_t bucket_of(uint64_t v);
uint64_t bucket_upper(size_t i);

class Histogram {
 public:
  void record(uint64_t v);
  void add(size_t bucket, uint64_t n) { counts_[bucket] += n, count_ += n; }
  void merge(const Histogram& other);
  void note_max(uint64_t v) { max_ = v > max_ ? v : max_; }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }
  // The smallest bucket bound at or below which `pct` percent of the values lie (never above
  // max()); 0 when empty.
  uint64_t percentile(double pct) const;

 private:
  std::array<uint64_t, kBucketCount> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

class AtomicHistogram {
 public:
  void record(uint64_t v);
  // Moves every count into `out` and zeroes this one (values recorded meanwhile are kept for
  // the next drain or moved now; none is lost).
  void drain_into(Histogram& out);

 private:
  std::array<std::atomic<uint64_t>, kBucketCount> counts_{};
  std::atomic<uint64_t> max_{0};
};

}  // namespace stockd::bench
