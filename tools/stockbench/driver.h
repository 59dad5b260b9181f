// The load engine: a few threads, each with its own epoll loop, drive many non-blocking
// connections. Each connection writes its requests into one buffer (flushed once per loop
// turn) and matches answers to requests in order.
//
// Closed loop (default): each connection keeps --pipeline operations in flight, a new one
// leaving as soon as one finishes; latency counts from the actual send.
// Open loop (--rate / --stages): operations are due on a schedule (schedule.h) and go out on
// a connection with a free slot (at most --pipeline in flight each); when none is free they
// wait in a backlog. Latency counts from the scheduled time, so time spent waiting for a slot
// is part of it. Operations still in the backlog at the end are counted as dropped.
//
// An operation of the reserve-* workloads is a chain: the COMMIT / RELEASE follows on the
// same connection as soon as the RESERVE is answered, and the chain holds its slot until then.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "config.h"
#include "histogram.h"
#include "stockd/status.h"
#include "target.h"
#include "workload.h"

namespace stockd::bench {

// What the threads share with the main thread while running (for the progress line).
struct Shared {
  std::atomic<uint64_t> answered{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint32_t> finished{0};
  std::atomic<bool> abort{false};
  std::atomic<int64_t> start_ns{0};
  AtomicHistogram interval;
};

struct RunResult {
  Tally tally;
  double elapsed_s = 0;  // start to the last answer
};

// Opens every connection, then runs the load. `progress`: one line per second on stderr. Io when
// the run could not start: a connection did not open (or its HELLO was refused).
Result<RunResult> run_load(const Config& c, const Target& target, bool progress);

// Monotonic clock in ns.
int64_t now_ns();

}  // namespace stockd::bench
