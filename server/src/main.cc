// stockd: parse and validate the configuration, set up logging, run the server.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cstdio>
#include <map>
#include <span>
#include <string_view>
#include <vector>

#include "stockd/config.h"
#include "stockd/endpoint.h"
#include "stockd/protocol.h"
#include "stockd/secret_file.h"
#include "stockd/server.h"

namespace {

// A token given as --NAME T / STOCKD_NAME, or as a file --NAME-file F / STOCKD_NAME_FILE.
struct TokenSource {
  const char* flag;       // "--admin-token"
  CLI::Option* value;     // --admin-token
  CLI::Option* file;      // --admin-token-file
  std::string file_path;  // its value
  std::string* token;     // where the token goes
};

// Reads the token files into the config. Ok or why not; `warnings` collects what to log once
// the logger is up.
stockd::Status read_tokens(std::span<TokenSource> sources, int argc, char** argv,
                           std::vector<std::string>& warnings) {
  for (TokenSource& s : sources) {
    const std::string flag = s.flag;
    if (s.value->count() > 0 && s.file->count() > 0) {
      return stockd::Status::Invalid(
          flag + " and " + flag + "-file (or their environment variables " +
          s.value->get_envname() + ", " + s.file->get_envname() + ") are both given: use one");
    }
    if (stockd::on_command_line(argc, argv, flag)) {
      warnings.push_back(flag + " on the command line is visible to every local user (ps, " +
                         "/proc/PID/cmdline): use " + flag + "-file or " + s.file->get_envname() +
                         " instead");
    }
    if (s.file->count() == 0) continue;
    std::string warning;
    stockd::Status read =
        stockd::read_secret_file(s.file_path, *s.token, warning, stockd::proto::kTokenBytesMax);
    if (!read.ok()) return std::move(read).context(flag + "-file");
    if (!warning.empty()) warnings.push_back(flag + "-file: " + warning);
  }
  return stockd::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  // Everything stockd creates (the store's files, the ready file) is for its own user only: the
  // write-ahead log holds every sale and each unsold unique code.
  ::umask(077);
  stockd::Config c;
  CLI::App app{"stockd: flash-sale stock server (binary protocol, durable group commit)"};
  app.set_version_flag("--version", "stockd 0.1.0");
  std::string listen = "127.0.0.1:7070";
  std::string metrics;
  std::string durability = "sync";
  app.add_option("--listen", listen, "TCP address for clients, HOST:PORT (port 0 = any free)")
      ->envname("STOCKD_LISTEN")
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics,
                 "HTTP address for /metrics and /healthz (off if empty)")
      ->envname("STOCKD_METRICS_LISTEN");
  app.add_option("--metrics-sku-max", c.metrics_sku_max, "SKU-level gauges for at most N SKUs")
      ->envname("STOCKD_METRICS_SKU_MAX")
      ->capture_default_str();
  app.add_option("--data-dir", c.data_dir, "directory of the RocksDB store")
      ->envname("STOCKD_DATA_DIR")
      ->capture_default_str();
  app.add_option("--durability", durability,
                 "sync: answer after fsync (default); interval: fsync every "
                 "--fsync-interval-ms; off: memory only")
      ->envname("STOCKD_DURABILITY")
      ->check(CLI::IsMember({"sync", "interval", "off"}))
      ->capture_default_str();
  app.add_option("--fsync-interval-ms", c.fsync_interval_ms, "interval mode: ms between fsyncs")
      ->envname("STOCKD_FSYNC_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--wal-spin-us", c.wal_spin_us,
                 "after each group write the WAL thread yields up to this long for the next "
                 "group before sleeping (0 = sleep at once)")
      ->envname("STOCKD_WAL_SPIN_US")
      ->capture_default_str();
  app.add_option("--group-gather-us", c.group_gather_us,
                 "sync: after a group is durable, wait up to this long for the clients it "
                 "answered to send their next requests, so they join the next group instead "
                 "of the one after it (0 = write the next group at once)")
      ->envname("STOCKD_GROUP_GATHER_US")
      ->capture_default_str();
  std::array<TokenSource, 3> tokens = {{{"--admin-token", nullptr, nullptr, "", &c.admin_token},
                                        {"--outbox-token", nullptr, nullptr, "", &c.outbox_token},
                                        {"--client-token", nullptr, nullptr, "", &c.client_token}}};
  tokens[0].value = app.add_option("--admin-token", c.admin_token,
                                   "token for admin operations (empty = admin off); prefer "
                                   "--admin-token-file: a flag is visible in ps")
                        ->envname("STOCKD_ADMIN_TOKEN");
  tokens[0].file = app.add_option("--admin-token-file", tokens[0].file_path,
                                  "read the admin token from this file (once, at start; a "
                                  "trailing newline is ignored)")
                       ->envname("STOCKD_ADMIN_TOKEN_FILE");
  tokens[1].value =
      app.add_option("--outbox-token", c.outbox_token,
                     "token of the outbox sidecar (empty = outbox role off); prefer the file")
          ->envname("STOCKD_OUTBOX_TOKEN");
  tokens[1].file = app.add_option("--outbox-token-file", tokens[1].file_path,
                                  "read the outbox token from a file")
                       ->envname("STOCKD_OUTBOX_TOKEN_FILE");
  tokens[2].value = app.add_option("--client-token", c.client_token,
                                   "token buyers must present (empty = none); prefer the file")
                        ->envname("STOCKD_CLIENT_TOKEN");
  tokens[2].file = app.add_option("--client-token-file", tokens[2].file_path,
                                  "read the buyers' token from a file")
                       ->envname("STOCKD_CLIENT_TOKEN_FILE");
  app.add_flag("--outbox-accepts-admin-token", c.outbox_accepts_admin_token,
               "without --outbox-token, let the outbox role log in with the admin token (off: "
               "the sidecar needs its own token and never holds the admin one)")
      ->envname("STOCKD_OUTBOX_ACCEPTS_ADMIN_TOKEN");
  app.add_flag("--sequential-hold-ids", c.sequential_hold_ids,
               "a new data dir hands out hold ids 1, 2, 3... instead of unguessable ones (for "
               "tests and demos; a data dir keeps the kind it started with)")
      ->envname("STOCKD_SEQUENTIAL_HOLD_IDS");
  app.add_flag("--insecure-no-auth", c.insecure_no_auth,
               "allow --listen on a non-loopback address while buyers need no token (for "
               "experiments only; logged as a warning)")
      ->envname("STOCKD_INSECURE_NO_AUTH");
  app.add_option("--hello-fail-burst", c.hello_fail_burst,
                 "failed HELLOs one address (IPv4, IPv6 /64) may make before its HELLOs are "
                 "refused unchecked (BUSY)")
      ->envname("STOCKD_HELLO_FAIL_BURST")
      ->capture_default_str();
  app.add_option("--hello-fail-refill-ms", c.hello_fail_refill_ms,
                 "an address earns one more failed HELLO per this many ms")
      ->envname("STOCKD_HELLO_FAIL_REFILL_MS")
      ->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert,
                 "PEM certificate chain: serve TLS on the client port (with --tls-key)")
      ->envname("STOCKD_TLS_CERT");
  app.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert")
      ->envname("STOCKD_TLS_KEY");
  app.add_option("--tls-client-ca", c.tls_client_ca,
                 "PEM CA: require client certificates signed by it (TLS only)")
      ->envname("STOCKD_TLS_CLIENT_CA");
  app.add_option("--connections-max", c.connections_max, "open connections at most")
      ->envname("STOCKD_CONNECTIONS_MAX")
      ->capture_default_str();
  app.add_option("--inflight-max", c.inflight_max, "unanswered requests per connection at most")
      ->envname("STOCKD_INFLIGHT_MAX")
      ->capture_default_str();
  app.add_option("--frame-bytes-max", c.frame_bytes_max, "largest frame accepted, in bytes")
      ->envname("STOCKD_FRAME_BYTES_MAX")
      ->capture_default_str();
  app.add_option("--read-buffer-budget", c.read_buffer_budget,
                 "bytes of incomplete frames held for all connections together; a connection "
                 "that would pass it gets BUSY and is closed")
      ->envname("STOCKD_READ_BUFFER_BUDGET")
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", c.idle_timeout_ms, "close connections silent this long")
      ->envname("STOCKD_IDLE_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--hello-timeout-ms", c.hello_timeout_ms,
                 "close a connection that has not completed HELLO this long after accept")
      ->envname("STOCKD_HELLO_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--frame-timeout-ms", c.frame_timeout_ms,
                 "close a connection whose frame is not complete this long after its first byte")
      ->envname("STOCKD_FRAME_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--hello-pending-max", c.hello_pending_max,
                 "connections that have not completed HELLO; past it the oldest is closed")
      ->envname("STOCKD_HELLO_PENDING_MAX")
      ->capture_default_str();
  app.add_option("--output-bytes-max", c.output_bytes_max,
                 "unwritten answers per connection, in bytes (at most 1 GiB), before its "
                 "requests are no longer read")
      ->envname("STOCKD_OUTPUT_BYTES_MAX")
      ->capture_default_str();
  app.add_option("--output-budget", c.output_budget,
                 "unwritten answers of all connections together, in bytes, before connections "
                 "that have some are no longer read")
      ->envname("STOCKD_OUTPUT_BUDGET")
      ->capture_default_str();
  app.add_option("--write-timeout-ms", c.write_timeout_ms,
                 "close a connection whose unwritten answers make no progress this long")
      ->envname("STOCKD_WRITE_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--shutdown-timeout-ms", c.shutdown_timeout_ms,
                 "on SIGTERM, most time given to peers to take their answers")
      ->envname("STOCKD_SHUTDOWN_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--http-connections-max", c.http_connections_max,
                 "metrics port: connections at once (more are closed at accept)")
      ->envname("STOCKD_HTTP_CONNECTIONS_MAX")
      ->capture_default_str();
  app.add_option("--http-timeout-ms", c.http_timeout_ms,
                 "metrics port: a request must be read and answered this fast")
      ->envname("STOCKD_HTTP_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--user-holds-max", c.user_holds_max,
                 "live holds per user id; one more RESERVE gets TOO_MANY_HOLDS")
      ->envname("STOCKD_USER_HOLDS_MAX")
      ->capture_default_str();
  app.add_option("--live-holds-max", c.live_holds_max,
                 "live holds in all; one more RESERVE gets BUSY")
      ->envname("STOCKD_LIVE_HOLDS_MAX")
      ->capture_default_str();
  app.add_option("--finished-holds-max", c.finished_holds_max,
                 "finished holds (and their idempotency keys) kept, at least 1000; past it the "
                 "oldest released "
                 "or expired ones are forgotten first, then the oldest orders, before "
                 "--idem-retention-ms ends")
      ->envname("STOCKD_FINISHED_HOLDS_MAX")
      ->capture_default_str();
  app.add_option("--idem-retention-ms", c.idem_retention_ms,
                 "keep finished holds and their idempotency keys this long")
      ->envname("STOCKD_IDEM_RETENTION_MS")
      ->capture_default_str();
  app.add_option("--holds-expected", c.holds_expected,
                 "holds (live and retained) to reserve index space for at start, so that the "
                 "indexes do not rehash mid-sale; about 100 bytes each")
      ->envname("STOCKD_HOLDS_EXPECTED")
      ->capture_default_str();
  app.add_option("--outbox-retention-ms", c.outbox_retention_ms,
                 "keep acknowledged outbox records this long")
      ->envname("STOCKD_OUTBOX_RETENTION_MS")
      ->capture_default_str();
  app.add_option("--checkpoint-every", c.checkpoint_every,
                 "write a checkpoint (the state's changed rows) after this many logged decisions; "
                 "recovery replays at most about this many")
      ->envname("STOCKD_CHECKPOINT_EVERY")
      ->capture_default_str();
  app.add_option("--snapshot-every", c.snapshot_every,
                 "write a snapshot (the whole state, in data/snapshots/) at the first checkpoint "
                 "after this many decisions; the log is kept back to it, so that a start finding "
                 "the checkpoint damaged falls back on it (0: no snapshots, no fallback)")
      ->envname("STOCKD_SNAPSHOT_EVERY")
      ->capture_default_str();
  app.add_option("--checkpoint-interval-ms", c.checkpoint_interval_ms,
                 "or this long after the last checkpoint, if anything was decided since")
      ->envname("STOCKD_CHECKPOINT_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error, critical, off")
      ->envname("STOCKD_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_option("--ready-file", c.ready_file, "write 'HOST PORT' here once listening")
      ->envname("STOCKD_READY_FILE");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // a bad flag is a bad setting (CLI11 says 1xx)
    (void)app.exit(e);
    return stockd::Server::kExitConfig;
  }

  std::vector<std::string> warnings;
  stockd::Status err = read_tokens(tokens, argc, argv, warnings);
  if (err.ok()) err = stockd::parse_host_port(listen, c.listen_host, c.listen_port, true);
  if (err.ok() && !metrics.empty()) {
    err = stockd::parse_host_port(metrics, c.metrics_host, c.metrics_port, true);
    c.metrics_enabled = true;
  }
  static const std::map<std::string, stockd::Durability> kModes = {
      {"sync", stockd::Durability::kSync},
      {"interval", stockd::Durability::kInterval},
      {"off", stockd::Durability::kOff}};
  c.durability = kModes.at(durability);
  if (err.ok()) err = stockd::validate(c);
  if (!err.ok()) {
    std::fprintf(stderr, "stockd: %s\n", err.message().c_str());
    return stockd::Server::kExitConfig;
  }

  auto logger = spdlog::stderr_color_mt("stockd");
  logger->set_level(spdlog::level::from_str(c.log_level));
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::warn);
  for (const std::string& w : warnings) spdlog::warn("{}", w);
  if (c.durability != stockd::Durability::kOff) {
    std::string note;
    stockd::tighten_data_dir(c.data_dir, note);
    if (!note.empty()) spdlog::warn("{}", note);
  }

  stockd::Server server(std::move(c));
  return server.run();
}
