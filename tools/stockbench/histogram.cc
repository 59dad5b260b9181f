// Log-linear latency histogram. See histogram.h.
#include "histogram.h"

#include <bit>
#include <cmath>

namespace stockd::bench {

namespace {
constexpr uint64_t kSub = uint64_t{1} << kSubBucketBits;  // 64
constexpr uint64_t kValueMax = (uint64_t{1} << kValueBitsMax) - 1;
}  // namespace

// v < 64: bucket v. Otherwise, with m the index of the top bit and s = m - 6, bucket
// s * 64 + (v >> s): the top 7 bits of v pick one of 64 buckets within [2^m, 2^(m+1)).
size_t bucket_of(uint64_t v) {
  if (v > kValueMax) v = kValueMax;
  if (v < kSub) return static_cast<size_t>(v);
  const unsigned shift = static_cast<unsigned>(std::bit_width(v)) - 1 - kSubBucketBits;
  return static_cast<size_t>(shift * kSub + (v >> shift));
}

uint64_t bucket_upper(size_t i) {
  if (i < 2 * kSub) return i;
  const uint64_t shift = i / kSub - 1;
  const uint64_t sub = i - shift * kSub;  // in [64, 128)
  return ((sub + 1) << shift) - 1;
}

void Histogram::record(uint64_t v) {
  ++counts_[bucket_of(v)];
  ++count_;
  sum_ += v;
  note_max(v);
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  note_max(other.max_);
}

uint64_t Histogram::percentile(double pct) const {
  if (count_ == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(pct / 100.0 * static_cast<double>(count_)));
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t upper = bucket_upper(i);
      return upper < max_ ? upper : max_;
    }
  }
  return max_;
}

void AtomicHistogram::record(uint64_t v) {
  counts_[bucket_of(v)].fetch_add(1, std::memory_order_relaxed);
  uint64_t seen = max_.load(std::memory_order_relaxed);
  while (v > seen && !max_.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
  }
}

void AtomicHistogram::drain_into(Histogram& out) {
  for (size_t i = 0; i < kBucketCount; ++i) {
    uint64_t n = counts_[i].exchange(0, std::memory_order_relaxed);
    if (n != 0) out.add(i, n);
  }
  out.note_max(max_.exchange(0, std::memory_order_relaxed));
}

}  // namespace stockd::bench
