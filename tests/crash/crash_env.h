// Knobs of the crash tier, read from the environment so a failure can be replayed:
//   STOCKD_CRASH_SEED        seed of every random choice (printed by each test)
//   STOCKD_CRASH_CYCLES      kill -9 cycles (kill9_test)
//   STOCKD_POWERLOSS_CYCLES  power-loss cycles (powerloss_test)
//   STOCKD_POWERLOSS_LONG_HOLDS=1  no hold falls due during a power-loss cycle (steers the
//                            soak clear of the expiry-timer hang while that is unfixed)
//   STOCKD_CRASH_VERBOSE=1   powerloss_test prints what each cycle dropped and the server log
// Thread timing still differs between runs; the seed fixes the choices, not the interleaving.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace stockd::crash {

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

inline uint64_t env_seed() {
  const char* v = std::getenv("STOCKD_CRASH_SEED");
  if (v != nullptr && *v != '\0') return std::strtoull(v, nullptr, 10);
  return std::random_device{}() * 0x100000001ULL ^ std::random_device{}();
}

}  // namespace stockd::crash
