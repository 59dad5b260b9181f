// The load engine's threads and the progress line. See driver.h.
#include "driver.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <latch>
#include <thread>

#include "worker.h"

namespace stockd::bench {

namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;

// One line per second on stderr until every worker has finished.
void show_progress(Shared& shared, uint32_t threads) {
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  const int64_t start = shared.start_ns.load();
  uint64_t last_answered = 0, last_errors = 0;
  int64_t last_tick = start, next = start + kNsPerSecond;
  Histogram h;
  while (shared.finished.load() < threads) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const int64_t now = now_ns();
    if (now < next) continue;
    const uint64_t answered = shared.answered.load(), errors = shared.errors.load();
    h = Histogram();
    shared.interval.drain_into(h);
    std::fprintf(stderr, "%s[%4llds] %9.0f req/s  p99 %8.3f ms  errors %llu  total %llu%s",
                 tty ? "\r" : "", static_cast<long long>((now - start) / kNsPerSecond),
                 static_cast<double>(answered - last_answered) * kNsPerSecond /
                     static_cast<double>(now - last_tick),
                 static_cast<double>(h.percentile(99)) / 1e6,
                 static_cast<unsigned long long>(errors - last_errors),
                 static_cast<unsigned long long>(answered), tty ? "   " : "\n");
    last_answered = answered, last_errors = errors;
    last_tick = now;
    next = now + kNsPerSecond;
  }
  if (tty) std::fputc('\n', stderr);
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Result<RunResult> run_load(const Config& c, const Target& target, bool progress) {
  RunResult res{Tally(c.skus.size()), 0};
  Result<Endpoint> resolved = resolve(c.host, c.port);
  if (!resolved.ok()) return resolved.status();
  const Endpoint& ep = *resolved;
  Shared shared;
  std::vector<std::unique_ptr<Worker>> workers;
  for (uint32_t i = 0; i < c.threads; ++i) {
    const uint32_t conns = c.connections / c.threads + (i < c.connections % c.threads ? 1 : 0);
    uint64_t budget = UINT64_MAX;
    if (c.requests > 0) budget = c.requests / c.threads + (i < c.requests % c.threads ? 1 : 0);
    workers.push_back(
        std::make_unique<Worker>(c, ep, target.make_codec(), i, conns, budget, shared));
  }
  std::latch connected(c.threads), go(1);
  std::vector<Status> errors(c.threads);
  const int64_t deadline = now_ns() + static_cast<int64_t>(c.connect_timeout_s * kNsPerSecond);
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < c.threads; ++i) {
    threads.emplace_back([&, i] {
      errors[i] = workers[i]->connect_all(deadline);
      connected.count_down();
      go.wait();
      if (!shared.abort.load()) workers[i]->run();
      shared.finished.fetch_add(1);
    });
  }
  connected.wait();
  Status error;  // the first thread's failure to connect
  for (const Status& e : errors) {
    if (!e.ok() && error.ok()) error = e;
  }
  shared.abort.store(!error.ok());
  shared.start_ns.store(now_ns());
  go.count_down();
  if (progress && error.ok()) show_progress(shared, c.threads);
  for (std::thread& t : threads) t.join();
  if (!error.ok()) return error;
  int64_t last = shared.start_ns.load();
  for (const auto& w : workers) {
    res.tally.merge(w->tally());
    last = std::max(last, w->last_answer_ns());
  }
  res.elapsed_s = static_cast<double>(last - shared.start_ns.load()) / kNsPerSecond;
  return res;
}

}  // namespace stockd::bench
