// stockctl: the stockd command line. This file only defines the command line (CLI11); each
// command lives in commands.cc / load.cc and returns the exit code.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>

#include "commands.h"
#include "stockd/protocol.h"
#include "stockd/secret_file.h"
#include "stockd/tls_flags.h"

namespace {

using stockd::ctl::Args;
using Action = std::function<int(const Args&)>;

constexpr int kConnectTimeoutMsMax = 3000;

constexpr const char* kFooter =
    R"(Times (--opens-at, --closes-at, seed files): ms since the epoch (0 = not set),
ISO-8601 UTC like 2026-11-23T10:00:00Z, or relative: now, now+30s, now-5m (ms, s, m, h, d).

Exit codes: 0 OK; 1 the server answered with another status (reason on stderr); 2 bad
arguments or input file (nothing sent); 3 no answer (cannot connect, timeout, connection lost).
Global options (--server, --token, --role, --json, --timeout-ms) may also follow the command.)";

CLI::App* command(CLI::App& parent, const std::string& name, const std::string& help,
                  Action& action, int (*fn)(const Args&)) {
  CLI::App* sub = parent.add_subcommand(name, help);
  sub->callback([&action, fn] { action = fn; });
  return sub;
}

void add_sku_commands(CLI::App& app, Args& a, Action& action) {
  CLI::App* sku = app.add_subcommand("sku", "Create, update, show and list SKUs");
  sku->require_subcommand(1);

  CLI::App* set = command(*sku, "set", "Create a SKU, or update only the fields given (admin)",
                          action, stockd::ctl::cmd_sku_set);
  set->add_option("SKU", a.sku, "SKU id")->required();
  auto* total = set->add_option("--total", a.total, "Units for sale in total");
  auto* limit =
      set->add_option("--per-user-limit", a.per_user_limit, "Units one user may buy; 0 = no limit");
  auto* opens =
      set->add_option("--opens-at", a.opens_at, "Sale opens at this time; 0 = always open");
  auto* closes = set->add_option("--closes-at", a.closes_at, "Sale closes at this time; 0 = never");
  set->callback([&action, &a, total, limit, opens, closes] {
    action = stockd::ctl::cmd_sku_set;
    a.has_total = total->count() > 0;
    a.has_per_user_limit = limit->count() > 0;
    a.has_opens_at = opens->count() > 0;
    a.has_closes_at = closes->count() > 0;
  });

  command(*sku, "get", "Show one SKU", action, stockd::ctl::cmd_sku_get)
      ->add_option("SKU", a.sku, "SKU id")
      ->required();
  CLI::App* list = command(*sku, "list", "List SKUs in id order (all of them, page by page)",
                           action, stockd::ctl::cmd_sku_list);
  list->add_option("--after", a.after, "Start after this SKU id");
  list->add_option("--limit", a.limit, "Show at most this many; 0 = all")->capture_default_str();
  command(*sku, "close", "Close the sale of a SKU now (admin)", action, stockd::ctl::cmd_sku_close)
      ->add_option("SKU", a.sku, "SKU id")
      ->required();
}

void add_admin_commands(CLI::App& app, Args& a, Action& action) {
  CLI::App* seed = command(app, "seed", "Create/update SKUs from a CSV or JSON file (admin)",
                           action, stockd::ctl::cmd_seed);
  seed->add_option("FILE", a.file,
                   "CSV with header sku,total,per_user_limit,opens_at,closes_at (empty field = "
                   "unset), or a JSON array of objects with those keys")
      ->required();
  seed->footer(
      "The whole file is checked first: any bad line (reported as FILE:LINE, or FILE: item N for "
      "JSON) or a duplicate sku sends nothing. Then each row is one SKU_SET naming only the "
      "fields given, sent pipelined.");

  CLI::App* restock = command(app, "restock", "Add DELTA units to a SKU's total (admin)", action,
                              stockd::ctl::cmd_restock);
  restock->add_option("SKU", a.sku, "SKU id")->required();
  restock->add_option("DELTA", a.delta, "Units to add; negative removes (e.g. -5)")->required();

  CLI::App* codes = app.add_subcommand("codes", "Unique code pools");
  codes->require_subcommand(1);
  CLI::App* load =
      command(*codes, "load",
              "Load unique codes for a SKU from a file (admin); codes already in the SKU are "
              "skipped, so running it again finishes a load cut short",
              action, stockd::ctl::cmd_codes_load);
  load->add_option("SKU", a.sku, "SKU id")->required();
  load->add_option("FILE", a.file, "One code per line; blank lines skipped")->required();
  load->footer(
      "The whole file is checked first (empty file, code over 128 bytes, duplicate line: nothing "
      "is sent). All codes go in one request when they fit the server's frame limit (1 MiB by "
      "default); otherwise in several requests, each all-or-nothing. If a later request fails "
      "(e.g. DUPLICATE_CODE), the earlier ones stay loaded, and stockctl says how many.");
}

void add_buyer_commands(CLI::App& app, Args& a, Action& action) {
  CLI::App* reserve =
      command(app, "reserve", "Reserve (or buy) units of one or more SKUs, all or nothing", action,
              stockd::ctl::cmd_reserve);
  reserve
      ->add_option(
          "ITEMS", a.items,
          "SKU[:QTY]... (QTY defaults to 1; the last ':' starts QTY, so a SKU id with a ':' in it "
          "needs its QTY: 'drop:42:1' is 1 of 'drop:42', 'drop:42' is 42 of 'drop')")
      ->required();
  reserve->add_option("--user", a.user, "Buyer id")->required();
  reserve->add_option("--key", a.key, "Idempotency key: the same key returns the first answer");
  reserve
      ->add_option("--ttl-ms", a.ttl_ms, "Hold for this long, then commit or release; 0 = buy now")
      ->check(CLI::Range(0u, stockd::proto::kHoldTtlMsMax))
      ->capture_default_str();

  // Whose hold: a buyer must say; admin may leave it out to reach any hold.
  const char* whose = "The hold's user (required with --role buyer; admin: any hold without it)";
  CLI::App* commit =
      command(app, "commit", "Commit a hold: it becomes an order", action, stockd::ctl::cmd_commit);
  commit->add_option("HOLD", a.hold, "Hold id")->required();
  commit->add_option("--user", a.user, whose);
  CLI::App* release = command(app, "release", "Release a hold: its units go back on sale", action,
                              stockd::ctl::cmd_release);
  release->add_option("HOLD", a.hold, "Hold id")->required();
  release->add_option("--user", a.user, whose);
  CLI::App* hold = app.add_subcommand("hold", "Holds and orders");
  hold->require_subcommand(1);
  CLI::App* get = command(*hold, "get", "Show a hold or order", action, stockd::ctl::cmd_hold_get);
  get->add_option("HOLD", a.hold, "Hold id")->required();
  get->add_option("--user", a.user, whose);

  CLI::App* claim = command(app, "claim", "Claim one unit (and its unique code) of a SKU", action,
                            stockd::ctl::cmd_claim);
  claim->add_option("SKU", a.sku, "SKU id")->required();
  claim->add_option("--user", a.user, "Buyer id")->required();
  claim->add_option("--key", a.key, "Idempotency key");
}

void add_status_commands(CLI::App& app, Args& a, Action& action) {
  command(app, "stats", "Show server counters", action, stockd::ctl::cmd_stats);
  CLI::App* top = command(app, "top", "Live view: rates, latency, holds, sold-out and top SKUs",
                          action, stockd::ctl::cmd_top);
  top->add_option("--interval-ms", a.interval_ms, "Refresh every this many ms")
      ->check(CLI::Range(100u, 3'600'000u))
      ->capture_default_str();
  top->add_option("--iterations", a.iterations, "Stop after this many refreshes; 0 = until Ctrl-C")
      ->capture_default_str();
  top->add_option("--rows", a.rows, "Rows per SKU table; 0 = fit the terminal (10 otherwise)")
      ->capture_default_str();
  top->add_option("--metrics", a.metrics,
                  "stockd's --metrics-listen HOST:PORT: p99 latency from GET /metrics");
  top->footer(
      "Rates and means are deltas between refreshes (requests/s without top's own requests). "
      "On a terminal the screen is redrawn; otherwise one block per refresh, or with --json one "
      "object per line. Sold out = total > 0 and available == 0.");
  CLI::App* outbox = app.add_subcommand("outbox", "The order outbox");
  outbox->require_subcommand(1);
  command(*outbox, "status", "Show the outbox head, acknowledged and first retained sequence",
          action, stockd::ctl::cmd_outbox_status);
  command(app, "ping", "Check that the server answers; print the round trip", action,
          stockd::ctl::cmd_ping);
}

void add_offline_commands(CLI::App& app, Args& a, Action& action) {
  CLI::App* inspect = command(app, "inspect",
                              "Offline: show SKUs, holds and the last sequence number of a "
                              "stopped server's data dir",
                              action, stockd::ctl::cmd_inspect);
  inspect->add_option("--data-dir", a.data_dir, "stockd's data dir")->required();
  inspect->add_option("--limit", a.limit, "Show at most N SKUs (0 = all)");
  command(app, "verify",
          "Offline: check a data dir (record checksums, the log's groups replayed, invariants); "
          "exit 0 if stockd would start on it",
          action, stockd::ctl::cmd_verify)
      ->add_option("--data-dir", a.data_dir, "stockd's data dir")
      ->required();
  CLI::App* mark = app.add_subcommand("mark", "The acknowledged mark (ACKED) of a data dir");
  mark->require_subcommand(1);
  command(*mark, "rewrite",
          "Offline: write ACKED again at the log's last group, once the store is checked to "
          "recover; only for an ACKED deleted or damaged on its own, the log intact",
          action, stockd::ctl::cmd_mark_rewrite)
      ->add_option("--data-dir", a.data_dir, "stockd's data dir")
      ->required();
  command(app, "migrate",
          "Offline: convert a data dir written by an earlier stockd (state rows and outbox "
          "records per group) to the log of decisions; its server must be stopped",
          action, stockd::ctl::cmd_migrate)
      ->add_option("--data-dir", a.data_dir, "stockd's data dir")
      ->required();
}

// The token from a file (stockd/secret_file.h); a file open to other users is used, with a
// warning. Ok or why not.
stockd::Status read_token_file(const std::string& path, std::string& token) {
  std::string warning;
  stockd::Status s = stockd::read_secret_file(path, token, warning, stockd::proto::kTokenBytesMax);
  if (!warning.empty()) std::cerr << "stockctl: warning: --token-file: " << warning << "\n";
  return std::move(s).context("--token-file");
}

// Turns the global options into client options. Ok or why not (Invalid).
stockd::Status finish_globals(const std::string& server, const std::string& token,
                              const std::string& role, int timeout_ms, Args& a) {
  using stockd::proto::Role;
  if (stockd::Status s = stockd::parse_endpoint(server, a.client); !s.ok()) {
    return std::move(s).context("--server");
  }
  if (token.size() > stockd::proto::kTokenBytesMax) {
    return stockd::Status::Invalid("--token is too long");
  }
  a.client.token = token;
  a.client.role = token.empty() ? Role::kBuyer : Role::kAdmin;
  if (role == "buyer") a.client.role = Role::kBuyer;
  if (role == "admin") a.client.role = Role::kAdmin;
  if (role == "outbox") a.client.role = Role::kOutbox;
  a.client.client_name = "stockctl";
  a.client.timeout_ms = timeout_ms;
  a.client.connect_timeout_ms = std::min(timeout_ms, kConnectTimeoutMsMax);
  // One attempt: a server that takes the connection and never answers HELLO is given up on
  // after --timeout-ms, not after three times that (top: each refresh tries afresh).
  a.client.reconnect_attempts = 1;
  stockd::imply_tls(a.client.tls);
  return stockd::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stockctl: administer and try out a stockd server"};
  app.fallthrough();  // global options may follow the command too
  app.require_subcommand(1);
  app.footer(kFooter);

  Args a;
  std::string server = "127.0.0.1:7070";
  std::string token;
  int timeout_ms = 10000;
  app.add_option("--server", server, "Server address HOST:PORT")
      ->envname("STOCKD_SERVER")
      ->capture_default_str();
  CLI::Option* token_opt =
      app.add_option("--token", token,
                     "Admin token; given = connect as admin, else as a buyer (prefer "
                     "--token-file: a flag is visible in ps)")
          ->envname("STOCKD_TOKEN");
  std::string token_file;
  CLI::Option* token_file_opt =
      app.add_option("--token-file", token_file,
                     "Read the token from this file (a trailing newline is ignored); as --token")
          ->envname("STOCKD_TOKEN_FILE");
  std::string role;
  app.add_option("--role", role, "Connect as this role (default: admin with --token, else buyer)")
      ->check(CLI::IsMember({"buyer", "admin", "outbox"}));
  stockd::add_tls_flags(app, a.client.tls);
  app.add_flag("--json", a.json, "Print the answer as one JSON object");
  app.add_option("--timeout-ms", timeout_ms, "Give up on an answer after this long")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();

  Action action;
  add_sku_commands(app, a, action);
  add_admin_commands(app, a, action);
  add_buyer_commands(app, a, action);
  add_status_commands(app, a, action);
  add_offline_commands(app, a, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? stockd::ctl::kExitOk : stockd::ctl::kExitUsage;
  }
  if (token_opt->count() > 0 && token_file_opt->count() > 0) {
    std::cerr << "--token and --token-file (or STOCKD_TOKEN, STOCKD_TOKEN_FILE) are both given: "
                 "use one\n";
    return stockd::ctl::kExitUsage;
  }
  if (stockd::on_command_line(argc, argv, "--token")) {
    std::cerr << "stockctl: warning: --token on the command line is visible to every local user "
                 "(ps); use --token-file or STOCKD_TOKEN_FILE\n";
  }
  if (token_file_opt->count() > 0) {
    if (stockd::Status s = read_token_file(token_file, token); !s.ok()) {
      std::cerr << s.message() << '\n';
      return stockd::ctl::kExitUsage;
    }
  }
  if (stockd::Status s = finish_globals(server, token, role, timeout_ms, a); !s.ok()) {
    std::cerr << s.message() << '\n';
    return stockd::ctl::kExitUsage;
  }
  if (!action) return stockd::ctl::kExitUsage;  // unreachable: a command is required
  try {
    return action(a);
  } catch (const std::exception& e) {  // the client library does not throw; this is a last guard
    std::cerr << "stockctl: internal error: " << e.what() << '\n';
    return stockd::ctl::kExitTransport;
  }
}
