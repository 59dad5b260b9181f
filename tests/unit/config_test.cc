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
      {"--frame-bytes-max", [](Config& c) { c.frame_bytes_max = 4096; }},
      {"--hello-timeout-ms", [](Config& c) { c.hello_timeout_ms = 0; }},
      {"--frame-timeout-ms", [](Config& c) { c.frame_timeout_ms = 0; }},
      {"--hello-pending-max", [](Config& c) { c.hello_pending_max = 0; }},
      {"--output-bytes-max", [](Config& c) { c.output_bytes_max = 1000; }},
      {"--output-budget", [](Config& c) { c.output_budget = c.output_bytes_max - 1; }},
      {"--write-timeout-ms", [](Config& c) { c.write_timeout_ms = 1; }},
      {"--shutdown-timeout-ms", [](Config& c) { c.shutdown_timeout_ms = 700000; }},
      {"--http-connections-max", [](Config& c) { c.http_connections_max = 0; }},
      {"--http-timeout-ms", [](Config& c) { c.http_timeout_ms = 0; }},
      {"--user-holds-max", [](Config& c) { c.user_holds_max = 0; }},
      {"--live-holds-max", [](Config& c) { c.live_holds_max = 0; }},
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
