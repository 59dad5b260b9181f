// Server metrics kept on the loop thread and rendered in the Prometheus text format (0.0.4).
// Counters are plain integers: only the loop thread touches them.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "stockd/protocol.h"

namespace stockd {

// A cumulative histogram with fixed upper bounds (seconds), as Prometheus expects.
template <size_t N>
struct Histogram {
  std::array<double, N> bounds;
  std::array<uint64_t, N + 1> counts{};  // last = +Inf
  double sum = 0;
  uint64_t count = 0;
  void observe(double v) {
    size_t i = 0;
    while (i < N && v > bounds[i]) ++i;
    ++counts[i];
    sum += v;
    ++count;
  }
};

inline constexpr size_t kOpSlots = proto::kOpcodeMax + 1;  // from the opcode registry
inline constexpr size_t kStatusSlots = 80;                 // statuses are < 80

struct Metrics {
  // requests[opcode][status], counted when the answer is made.
  std::array<std::array<uint64_t, kStatusSlots>, kOpSlots> answers{};
  // From reading a request to writing its answer (durability wait included).
  Histogram<14> request_seconds{{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025, 0.05, 0.1, 0.25, 0.5, 1.0}};
  // Write (+fsync) time of one group on the WAL thread.
  Histogram<12> fsync_seconds{
      {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0}};
  // Store operations per group.
  Histogram<12> batch_ops{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}};
  uint64_t store_errors = 0;
  uint64_t gathers_full = 0;       // gatherings ended by every answered client sending again
  uint64_t gathers_timed_out = 0;  // ... by --group-gather-us
  uint64_t bad_frames = 0;
  uint64_t read_budget_closes = 0;  // connections closed over --read-buffer-budget
  // Connections closed by a deadline or a cap (docs/protocol.md, "Limits").
  uint64_t hello_timeouts = 0;   // no HELLO within --hello-timeout-ms
  uint64_t frame_timeouts = 0;   // a frame not completed within --frame-timeout-ms
  uint64_t write_timeouts = 0;   // answers made no progress for --write-timeout-ms
  uint64_t idle_timeouts = 0;    // nothing outstanding for --idle-timeout-ms
  uint64_t hello_evictions = 0;  // oldest unauthenticated, over --hello-pending-max
  uint64_t tls_errors = 0;       // failed TLS handshakes and bad records
  uint64_t output_stalls = 0;    // reading paused: answers over --output-bytes-max / budget
  uint64_t accept_errors = 0;    // accept() failed (EMFILE: out of descriptors, ...)
  uint64_t http_rejected = 0;    // metrics connections over --http-connections-max

  void count_answer(uint16_t opcode, uint16_t status) {
    if (opcode < kOpSlots && status < kStatusSlots) ++answers[opcode][status];
  }
};

// Appends a histogram in text format: NAME_bucket{le=..}, NAME_sum, NAME_count.
template <size_t N>
void render_histogram(std::string& out, const char* name, const char* help, const Histogram<N>& h) {
  out += "# HELP ";
  out += name;
  out += " ";
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " histogram\n";
  uint64_t cum = 0;
  char buf[160];
  for (size_t i = 0; i <= N; ++i) {
    cum += h.counts[i];
    if (i < N) {
      std::snprintf(buf, sizeof buf, "%s_bucket{le=\"%g\"} %llu\n", name, h.bounds[i],
                    static_cast<unsigned long long>(cum));
    } else {
      std::snprintf(buf, sizeof buf, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                    static_cast<unsigned long long>(cum));
    }
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "%s_sum %.9g\n%s_count %llu\n", name, h.sum, name,
                static_cast<unsigned long long>(h.count));
  out += buf;
}

}  // namespace stockd
