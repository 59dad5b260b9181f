// Load for the crash tests: threads that buy, hold, commit, release, claim codes and resend
// acknowledged keys until stopped, each recording every request and answer as an Op.
//
// Meant to be cut off by a crash: transport errors are expected and recorded, never fatal.
// Each thread owns one Client; the test thread calls start(), stop() and ops().
#pragma once

#include <atomic>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "ledger.h"

namespace stockd::crash {

struct LoadOptions {
  uint16_t port = 0;
  int threads = 4;
  int cycle = 0;  // names this phase's keys and users
  uint64_t seed = 1;
  int timeout_ms = 5000;    // per call; a dead server fails at once (reset or refused)
  bool short_holds = true;  // most holds live 100..400 ms (else 30..90 s: none falls due)
};

class Load {
 public:
  // Takes each thread's Work from `ledger` (which must not change until stop()).
  Load(LoadOptions options, const Ledger& ledger);
  ~Load();
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  void start();
  // Stops the threads after their current request and joins them.
  void stop();
  // Every op of every thread, each thread's in the order sent. After stop().
  std::vector<Op> ops() const;

 private:
  void run(int t);
  Op next_op(int t, std::mt19937_64& rng, uint64_t n);
  uint32_t ttl(std::mt19937_64& rng) const;
  void send(Client& c, Op& op);

  LoadOptions options_;
  std::vector<SkuSpec> skus_;
  std::vector<Work> work_;
  std::vector<std::vector<Op>> ops_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
};

}  // namespace stockd::crash
