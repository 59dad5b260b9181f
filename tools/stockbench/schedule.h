// Open-loop arrival schedule: when each request is due, from a constant rate or k6-style
// stages (linear ramps). Pure arithmetic; one instance per thread, each with its share of the
// rate, so the threads together send the whole rate.
//
// Request n (counting from 0) is due at the time t where the expected number of arrivals
// since the start, the integral of the rate over [0, t], reaches n. Latency is then measured
// from that time, not from when the request actually left: a stalled server or a backed-up
// client cannot hide the requests it delayed (coordinated omission).
#pragma once

#include <cstdint>
#include <vector>

#include "config.h"

namespace stockd::bench {

class Schedule {
 public:
  Schedule() = default;
  // `share` of every rate (1 / threads). Stages ramp from the previous stage's rate; a
  // constant rate is one stage that starts at its own rate.
  Schedule(const Config& c, double share);

  double seconds() const { return seconds_; }
  double expected_requests() const;
  // When request n is due, in ns since the start; -1 if it falls after the last stage.
  int64_t due_ns(uint64_t n) const;

 private:
  struct Segment {
    double start_s, seconds, rate0, rate1;
    double before;  // expected arrivals before this segment
  };
  std::vector<Segment> segments_;
  double seconds_ = 0;
};

}  // namespace stockd::bench
