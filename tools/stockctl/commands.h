// stockctl commands: each takes the parsed arguments, talks to stockd through the client
// library, prints the outcome (text, or one JSON object with --json) and returns the exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stockd/client.h"

namespace stockd::ctl {

// Exit codes of every command.
inline constexpr int kExitOk = 0;         // the server answered OK
inline constexpr int kExitRefused = 1;    // the server answered with another status
inline constexpr int kExitUsage = 2;      // bad arguments or a bad input file; nothing was sent
inline constexpr int kExitTransport = 3;  // no answer: cannot connect, timeout, connection lost

// Every argument any command takes, filled by the command line parser (main.cc). Numbers that
// users type are kept as text and checked by the commands, so every message reads the same.
struct Args {
  ClientOptions client;
  bool json = false;

  std::string sku;
  std::string file;
  std::string user;
  std::string key;
  std::string hold;                // hold id
  std::string delta;               // restock
  std::vector<std::string> items;  // reserve: SKU[:QTY]...
  uint32_t ttl_ms = 0;
  std::string after;   // sku list
  uint32_t limit = 0;  // sku list; 0 = all
  // sku set: a field is sent (and named in the mask) only when given.
  bool has_total = false, has_per_user_limit = false, has_opens_at = false, has_closes_at = false;
  std::string total, per_user_limit, opens_at, closes_at;
  std::string data_dir;  // inspect, verify (offline)
  // top: refresh period; blocks to print (0 = until Ctrl-C); table rows (0 = fit the terminal);
  // stockd's --metrics-listen HOST:PORT for the latency histogram ("" = no p99).
  uint32_t interval_ms = 1000;
  uint32_t iterations = 0;
  uint32_t rows = 0;
  std::string metrics;
};

// Now, in ms since the Unix epoch (for relative times like now+30s).
int64_t wall_clock_ms();

// " (admin commands need --token ...)" after an UNAUTHORIZED answer to a non-admin, else "".
std::string admin_hint(const ClientOptions& o, proto::Status s);

int cmd_ping(const Args& a);
int cmd_sku_set(const Args& a);
int cmd_sku_get(const Args& a);
int cmd_sku_list(const Args& a);
int cmd_sku_close(const Args& a);
int cmd_seed(const Args& a);
int cmd_restock(const Args& a);
int cmd_codes_load(const Args& a);
int cmd_reserve(const Args& a);
int cmd_commit(const Args& a);
int cmd_release(const Args& a);
int cmd_hold_get(const Args& a);
int cmd_claim(const Args& a);
int cmd_stats(const Args& a);
int cmd_outbox_status(const Args& a);
// A live view of a running server until Ctrl-C or --iterations (top.cc).
int cmd_top(const Args& a);
// Offline: read a stopped server's data dir (offline.cc).
int cmd_inspect(const Args& a);
int cmd_verify(const Args& a);
int cmd_migrate(const Args& a);
int cmd_mark_rewrite(const Args& a);

}  // namespace stockd::ctl
