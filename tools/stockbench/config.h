// stockbench configuration: one typed struct, filled from the command line (CLI11, in
// config.cc) and validated once before anything connects.
//
// Pure: parsing durations, stages and targets does no I/O, so every rule is easy to test.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/status.h"
#include "stockd/tls_client.h"

namespace stockd::bench {

// What one top-level operation is. A reserve-commit / reserve-release operation is two
// requests: RESERVE (with a hold TTL), then COMMIT or RELEASE of the hold it returned; a
// reserve operation leaves its hold live until its TTL (to fill a server with live holds).
enum class Workload : uint8_t {
  kBuyNow,
  kReserveCommit,
  kReserveRelease,
  kClaim,
  kQuery,
  kMixed,
  kReserveHold
};
const char* workload_name(Workload w);

enum class TargetKind : uint8_t { kStockd, kRedis };

// One k6-style stage: ramp linearly from the previous stage's rate (0 before the first) to
// `rate` requests per second over `seconds`.
struct Stage {
  double seconds = 0;
  double rate = 0;
};

struct MixEntry {  // --mix: one workload and its weight
  Workload workload = Workload::kBuyNow;
  double weight = 0;
};

// Stock per SKU when --stock is not given: large enough that a run never sells out.
inline constexpr uint64_t kHugeStock = 1'000'000'000'000ULL;
// Codes loaded per SKU for the claim workload when --stock is not given.
inline constexpr uint64_t kDefaultClaimCodes = 100'000;
inline constexpr uint32_t kConnectionsMax = 10'000;
inline constexpr uint32_t kPipelineMax = 1'024;
inline constexpr uint32_t kThreadsMax = 64;
inline constexpr uint64_t kSkusMax = 1'000'000;
inline constexpr uint64_t kUsersMax = 1ULL << 32;  // --users at most

struct Config {
  // Where to send load.
  TargetKind target = TargetKind::kStockd;
  std::string target_url;  // as given, for the report
  std::string host = "127.0.0.1";
  uint16_t port = 7070;
  std::string token;  // HELLO token of the load connections
  proto::Role role = proto::Role::kBuyer;
  std::string admin_token;  // seeding and the verdict (stockd); "" = use `token` if role admin
  TlsOptions tls;           // --tls: load and seeding connections speak TLS (stockd only)

  // Shape of the load.
  uint32_t connections = 50;
  uint32_t pipeline = 1;  // closed loop: requests in flight per connection; open loop: at most
  uint32_t threads = 1;   // event-loop threads driving the connections
  double duration_s = 10;
  uint64_t requests = 0;      // stop after this many operations (0 = run for duration_s)
  double rate = 0;            // open loop at a constant rate (requests per second)
  std::vector<Stage> stages;  // open loop with ramps; empty and rate 0 = closed loop
  double drain_s = 5;         // after the end, wait this long for answers still in flight
  double connect_timeout_s = 10;

  // What the operations are.
  Workload workload = Workload::kBuyNow;
  std::vector<MixEntry> mix;  // for kMixed
  std::vector<std::string> skus;
  // With --skus N, skus[i] is sku_prefix + i: the requests build the name, so that a run over
  // a million SKUs does not read a random name of 32 MB per request (a miss, and a page walk,
  // of the load generator that shares the server's cores).
  bool skus_numbered = false;
  std::string sku_prefix;
  double zipf = 0;              // 0 = uniform over skus
  uint64_t stock = 0;           // units (or codes) per SKU; 0 = not given
  uint32_t per_user_limit = 0;  // 0 = none
  uint64_t users = 100'000;     // buyer ids u<run>-0 .. u<run>-(users-1)
  uint32_t qty = 1;             // units per buy-now / reserve
  uint32_t hold_ttl_ms = 600'000;
  double retry_rate = 0;  // fraction of keyed requests resent with the same key
  bool keys = true;       // send an idempotency key with RESERVE / CLAIM
  // Redis buy-now: "decrement" (the bare Lua decrement) or "order" (what a stockd answer promises:
  // an idempotency key checked and kept, an order hash, an outbox stream entry).
  std::string redis_script = "decrement";
  bool seed = true;  // create / top up the SKUs before the run

  // Output.
  bool json = false;
  bool progress = true;
  uint64_t rng_seed = 0;  // 0 = random
  std::string run_id;     // short random tag making keys, users and codes unique per run

  bool open_loop() const { return rate > 0 || !stages.empty(); }
  bool uses(Workload w) const;  // the workload, or a mix entry with weight > 0
  uint64_t stock_per_sku() const;
};

// Parses argv into `c`. Returns -1 to go on, else the exit code (0 after --help).
int parse_args(int argc, char** argv, Config& c);

// "10s", "500ms", "2m", "1.5s", "3" (seconds) -> seconds. false if malformed.
bool parse_duration(std::string_view text, double& seconds);
// "5s:300,10s:1000" -> stages, or Invalid naming the bad stage.
Result<std::vector<Stage>> parse_stages(std::string_view text);
// "buy-now=70,query=30" -> entries, or Invalid naming the bad entry.
Result<std::vector<MixEntry>> parse_mix(std::string_view text);
// "HOST:PORT", "stockd://HOST:PORT" or "redis://HOST:PORT" into c.target/host/port; Invalid if
// it is none of these.
Status parse_target(std::string_view text, Config& c);
// Checks the whole config: ok, or Invalid naming the first problem.
Status validate(const Config& c);

}  // namespace stockd::bench
