// stockbench: a flash-sale load simulator. Drives stockd (its binary protocol) or Redis (the
// same workload through a Lua script) with many connections from a few threads, reports
// throughput and latency percentiles, and checks the target's books afterwards.
//   stockbench --server 127.0.0.1:7070 --admin-token T --connections 50 --duration 10s --json
#include <cstdio>
#include <iostream>

#include "config.h"
#include "driver.h"
#include "report.h"
#include "target.h"

int main(int argc, char** argv) {
  using namespace stockd::bench;
  Config c;
  if (int rc = parse_args(argc, argv, c); rc >= 0) return rc;
  std::unique_ptr<Target> target =
      c.target == TargetKind::kRedis ? make_redis_target(c) : make_stockd_target(c);
  if (stockd::Status s = target->prepare(); !s.ok()) {
    std::fprintf(stderr, "stockbench: %s\n", s.message().c_str());
    return 2;
  }
  stockd::Result<RunResult> r = run_load(c, *target, c.progress);
  if (!r.ok()) {
    std::fprintf(stderr, "stockbench: %s\n", r.status().message().c_str());
    return 3;
  }
  Verdict v = target->verdict(r->tally);
  if (c.json) {
    std::cout << report_json(c, *r, v).dump() << std::endl;
  } else {
    print_table(c, *r, v);
  }
  return v.ok() ? 0 : 1;
}
