// stockd's configuration check: every limit an operator can get wrong is refused before the
// server starts, with a message naming the flag.
#include "stockd/config.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace stockd {
namespace {

TEST(ConfigTest, DefaultsAreUsable) { EXPECT_EQ(validate(Config{}), ""); }

TEST(ConfigTest, EachBadValueIsRefusedByName) {
  struct Case {
    const char* flag;
    std::function<void(Config&)> set;
  };
  const std::vector<Case> cases = {
      {"--fsync-interval-ms", [](Config& c) { c.fsync_interval_ms = 0; }},
      {"--wal-spin-us", [](Config& c) { c.wal_spin_us = 10001; }},
      {"--inflight-max", [](Config& c) { c.inflight_max = 0; }},
      {"--frame-bytes-max", [](Config& c) { c.frame_bytes_max = 100; }},
      {"--idle-timeout-ms", [](Config& c) { c.idle_timeout_ms = 5; }},
      {"--idem-retention-ms", [](Config& c) { c.idem_retention_ms = 10; }},
      {"--holds-expected", [](Config& c) { c.holds_expected = 2'000'000'000; }},
      {"--metrics-sku-max", [](Config& c) { c.metrics_sku_max = 5000; }},
      {"--read-buffer-budget", [](Config& c) { c.read_buffer_budget = c.frame_bytes_max; }},
  };
  for (const Case& k : cases) {
    Config c;
    k.set(c);
    const std::string why = validate(c);
    EXPECT_NE(why.find(k.flag), std::string::npos) << k.flag << ": '" << why << "'";
  }
  Config edge;
  edge.wal_spin_us = 10000;
  edge.holds_expected = 0;
  EXPECT_EQ(validate(edge), "");
}

}  // namespace
}  // namespace stockd
