// The flash-sale workload: which operation comes next (Generator) and what each answer means
// for the integrity verdict (Tally, account()). Pure: no I/O, no clock; one Generator and one
// Tally per thread, merged at the end.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "histogram.h"
#include "ops.h"

namespace stockd::bench {

// Small, fast, good-enough PRNG (SplitMix64) for choosing SKUs, users and retries.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return n <= 1 ? 0 : next() % n; }

 private:
  uint64_t state_;
};

// Per connection: the last keyed op (what a retry resends) and the answer seen for the key
// being answered now. Requests with one key are contiguous on a connection (a retry only
// resends the newest key), and answers come back in order, so one slot is enough.
struct ConnKeys {
  Op last;
  bool has_last = false;
  uint64_t answer_key = 0;
  uint64_t answer_order = 0;  // order / hold id of the first OK answer for answer_key
};

class Generator {
 public:
  Generator(const Config& c, uint32_t thread, uint64_t seed);
  // The next top-level operation for a connection (maybe a retry of its last keyed op).
  Op next(ConnKeys& k);

 private:
  uint32_t pick_sku();
  Workload pick_workload();

  const Config& c_;
  Rng rng_;
  std::vector<double> sku_cdf_;  // zipf only
  std::vector<double> mix_cdf_;  // mixed only
  uint64_t key_base_;
  uint64_t key_seq_ = 0;
  bool keyed_;
};

// What one thread saw. Units are counted once per order, whatever the retries.
struct Tally {
  Histogram latency;  // ns, from scheduled send to answer; HELLO excluded
  uint64_t sent = 0, answered = 0, lost = 0, dropped = 0, disconnects = 0;
  std::array<uint64_t, 128> by_status{};  // answers per status (127 = any higher)
  std::vector<uint64_t> sold;             // per SKU: units in OK buy-now / commit / claim
  std::vector<int64_t> held;              // per SKU: units reserved, not committed / released
  std::vector<uint64_t> lost_units;       // per SKU: units of state-changing requests unanswered
  uint64_t lost_reserves = 0;
  std::unordered_map<uint64_t, uint64_t> user_units;  // sku * users + user -> units bought
  std::vector<std::string> codes;                     // claimed codes
  uint64_t replays = 0;                               // retries answered with the first answer
  uint64_t replay_mismatches = 0;                     // retries answered OK with a different order
  std::string first_error;  // first error answer or transport failure, for the report

  explicit Tally(size_t skus = 0) : sold(skus), held(skus), lost_units(skus) {}
  uint64_t status(uint16_t s) const { return by_status[s < 127 ? s : 127]; }
  uint64_t errors() const;  // answers with status >= 64
  void merge(const Tally& other);
  // A sent request that will never be answered (connection lost, drain timed out).
  void note_lost(const Op& op);
};

// Accounts one answer into `t`. Returns the follow-up (COMMIT / RELEASE of a fresh hold).
std::optional<Op> account(const Config& c, const Op& op, const Reply& r, ConnKeys& k, Tally& t);

}  // namespace stockd::bench
