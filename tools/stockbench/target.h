// A system under test: how to talk to it (a Codec per thread), how to set it up before the
// run (seed the SKUs, note their state) and how to check it afterwards (the verdict).
// prepare() and verdict() run on the main thread, before and after the load.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "ops.h"
#include "stockd/status.h"
#include "workload.h"

namespace stockd::bench {

struct Check {
  std::string name;
  bool ok = true;
  std::string detail;
};

struct Verdict {
  std::vector<Check> checks;
  bool ok() const {
    for (const Check& c : checks) {
      if (!c.ok) return false;
    }
    return true;
  }
};

class Target {
 public:
  virtual ~Target() = default;
  virtual std::unique_ptr<Codec> make_codec() const = 0;
  // Seeds (unless --no-seed) and notes the starting state. Ok, or why the run cannot start.
  virtual Status prepare() = 0;
  // Reads the final state and checks it against what the clients were told.
  virtual Verdict verdict(const Tally& t) = 0;
};

std::unique_ptr<Target> make_stockd_target(const Config& c);
std::unique_ptr<Target> make_redis_target(const Config& c);

// Shared by both targets: at least one business answer came back.
Check answers_check(const Tally& t);
// Checks on what the clients were told, whatever the server says: no code handed out twice,
// no user over the per-user limit, retries answered with the first answer.
void add_client_checks(const Config& c, const Tally& t, Verdict& v);
// The status name of a Reply status (stockd names; REDIS_ERROR for kRedisError).
std::string status_text(uint16_t status);

}  // namespace stockd::bench
