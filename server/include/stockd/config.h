// stockd's configuration: one typed struct, parsed once (flags and STOCKD_* environment
// variables, by CLI11 in main.cc) and validated before the loop starts.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "stockd/status.h"

namespace stockd {

enum class Durability {
  kSync,      // every answer waits for its group's fsync (default)
  kInterval,  // answers after the write; the WAL is fsynced every fsync_interval_ms
  kOff,       // memory only: nothing survives a restart (experiments)
};
const char* durability_name(Durability d);

struct Config {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7070;  // 0 = any free port (printed at start)
  std::string metrics_host = "127.0.0.1";
  uint16_t metrics_port = 0;
  bool metrics_enabled = false;    // serve /metrics and /healthz on metrics_host:port
  uint32_t metrics_sku_max = 100;  // SKU-level gauges for at most this many SKUs
  std::string data_dir = "./data";
  Durability durability = Durability::kSync;
  int fsync_interval_ms = 100;     // interval mode: most a crash can lose
  uint32_t wal_spin_us = 0;        // WAL thread: yield-wait for the next group before sleeping
  uint32_t group_gather_us = 500;  // sync: wait this long at most for answered clients' next
                                   // requests before sealing a group (0 = seal at once)
  std::string admin_token;         // required for admin operations; empty = admin off
  std::string outbox_token;        // for the sidecar; empty = outbox role off (admin may read)
  std::string client_token;        // buyers' token; empty = buyers need none
  bool outbox_accepts_admin_token = false;  // outbox role without --outbox-token takes the admin
                                            // token (old behaviour; off: the role is disabled)
  bool sequential_hold_ids = false;      // a new data dir hands out ids 1, 2, 3... (tests, demos)
  bool insecure_no_auth = false;         // listen beyond loopback although buyers need no token
  uint32_t hello_fail_burst = 20;        // failed HELLOs an address may make before it is locked
  uint32_t hello_fail_refill_ms = 1000;  // one more allowed per this long
  // TLS on the client port (docs/protocol.md, section 1): both files PEM; off when empty.
  std::string tls_cert;              // certificate chain
  std::string tls_key;               // its private key
  std::string tls_client_ca;         // if set, clients must present a certificate signed by this CA
  uint32_t connections_max = 10000;  // further connections get BUSY and are closed
  uint32_t inflight_max = 1024;      // unanswered requests per connection before we stop reading
  uint32_t frame_bytes_max = 1 << 20;          // largest frame accepted, header included
  uint64_t read_buffer_budget = 256ull << 20;  // incomplete frames held for all connections
  uint32_t idle_timeout_ms = 300000;  // a connection with nothing outstanding this long is closed
  // ---- What one peer may hold of the server (docs/protocol.md, section "Limits"). ----
  uint32_t hello_timeout_ms = 5000;   // HELLO must be answered this long after accept
  uint32_t frame_timeout_ms = 10000;  // a frame must be complete this long after its first byte
  uint32_t hello_pending_max = 1024;  // connections without HELLO; past it the oldest is closed
  uint64_t output_bytes_max = 4ull << 20;  // unwritten answers per connection before we stop
                                           // reading it
  uint64_t output_budget = 256ull << 20;   // unwritten answers of all connections together
  uint32_t write_timeout_ms = 30000;       // pending answers that make no progress this long: close
  uint32_t shutdown_timeout_ms = 10000;    // SIGTERM: most we wait for peers to take their answers
  uint32_t http_connections_max = 64;      // metrics port connections at once
  uint32_t http_timeout_ms = 5000;         // a metrics request must be read and answered this fast
  uint32_t user_holds_max = 100;         // live holds per user id (RESERVE past it: TOO_MANY_HOLDS)
  uint64_t live_holds_max = 10'000'000;  // live holds in all (RESERVE past it: BUSY)
  uint64_t finished_holds_max = 1'000'000;  // finished holds (and keys) kept; oldest go first
  int64_t idem_retention_ms = 24 * 3600 * 1000LL;        // finished holds and their keys kept
  uint64_t holds_expected = 1'000'000;                   // hash buckets reserved at start
  int64_t outbox_retention_ms = 7 * 24 * 3600 * 1000LL;  // acked outbox records kept this long
  uint64_t checkpoint_every = 2'000'000;   // a checkpoint after this many logged decisions,
  int64_t checkpoint_interval_ms = 30000;  // or this long after the last (if anything changed)
  uint64_t snapshot_every = 10'000'000;    // a whole-state snapshot after this many (0: none)
  std::string log_level = "info";
  std::string ready_file;  // if set, "host port\n" is written here once listening
};

// Whether HOST (an IP literal or "localhost") is a loopback address.
bool is_loopback(const std::string& host);

// Ok if the config is usable, else Invalid naming the first problem, phrased for the operator.
Status validate(const Config& c);

// Secrets from files: read_secret_file() in stockd/secret_file.h (util/).

// The data dir must be private: it holds every sale and each unsold unique code. Called after
// umask(077) so that whatever stockd creates there is 0700/0600. An existing dir (and anything
// under it) with group or other permission bits is tightened to owner-only; `note` then says what
// was changed, or what could not be, for a warning. A dir that does not exist yet is left to the
// store to create. Never fails: a dir that cannot be tightened still works.
void tighten_data_dir(const std::string& dir, std::string& note);

}  // namespace stockd
