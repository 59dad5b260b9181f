// Open-loop arrival schedule. See schedule.h.
#include "schedule.h"

#include <cmath>

namespace stockd::bench {

Schedule::Schedule(const Config& c, double share) {
  std::vector<Stage> stages = c.stages;
  double previous = 0;
  if (stages.empty()) {
    stages.push_back({c.duration_s, c.rate});
    previous = c.rate;
  }
  double at = 0, before = 0;
  for (const Stage& s : stages) {
    Segment seg{at, s.seconds, previous * share, s.rate * share, before};
    segments_.push_back(seg);
    before += (seg.rate0 + seg.rate1) / 2 * seg.seconds;
    at += s.seconds;
    previous = s.rate;
  }
  seconds_ = at;
}

double Schedule::expected_requests() const {
  if (segments_.empty()) return 0;
  const Segment& last = segments_.back();
  return last.before + (last.rate0 + last.rate1) / 2 * last.seconds;
}

// Within a segment the arrivals after dt seconds are r0*dt + (r1-r0)/(2T)*dt^2; solve for the
// dt at which they reach the wanted count.
int64_t Schedule::due_ns(uint64_t n) const {
  const double want = static_cast<double>(n);
  for (const Segment& seg : segments_) {
    const double inside = (seg.rate0 + seg.rate1) / 2 * seg.seconds;
    if (want >= seg.before + inside) continue;
    const double k = want - seg.before;
    const double a = seg.seconds > 0 ? (seg.rate1 - seg.rate0) / (2 * seg.seconds) : 0;
    double dt = 0;
    if (std::fabs(a) < 1e-12) {
      dt = seg.rate0 > 0 ? k / seg.rate0 : 0;
    } else {
      const double disc = seg.rate0 * seg.rate0 + 4 * a * k;
      dt = (-seg.rate0 + std::sqrt(disc > 0 ? disc : 0)) / (2 * a);
    }
    if (dt > seg.seconds) dt = seg.seconds;
    return static_cast<int64_t>((seg.start_s + dt) * 1e9);
  }
  return -1;
}

}  // namespace stockd::bench
