// stockd-outbox: copies stockd's committed orders, releases and expiries into SQL exactly once.
// Parses the configuration, sets up logging and signals, runs the Sidecar. See docs/outbox.md.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>

#include "sidecar.h"
#include "sink.h"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) { g_stop.store(true); }

void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);  // a closed terminal must not stop the copy to SQL (docs/outbox.md)
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Args {
  std::string server = "127.0.0.1:7070";
  std::string token;
  std::string sql = "sqlite:./data/orders.db";
  std::string log_level = "info";
  std::optional<uint64_t> reset_cursor;
  std::string metrics_listen;  // HOST:PORT for /metrics and /healthz; empty = none
  stockd::outbox::SidecarConfig cfg;
};

void add_options(CLI::App& app, Args& a) {
  app.add_option("--server", a.server, "stockd address, HOST:PORT")
      ->envname("STOCKD_OUTBOX_SERVER")
      ->capture_default_str();
  app.add_option("--token", a.token, "stockd's outbox token (its --outbox-token)")
      ->envname("STOCKD_OUTBOX_TOKEN");
  app.add_option("--sql", a.sql,
                 "where to write: sqlite:PATH, or postgresql://USER:PASSWORD@HOST:PORT/DB "
                 "(any libpq URL)")
      ->envname("STOCKD_OUTBOX_SQL")
      ->capture_default_str();
  app.add_option("--batch", a.cfg.batch, "records per read and per SQL transaction")
      ->envname("STOCKD_OUTBOX_BATCH")
      ->check(CLI::Range(1u, stockd::proto::kOutboxReadMax))
      ->capture_default_str();
  app.add_flag("--once", a.cfg.once, "copy until caught up with stockd, then exit 0")
      ->envname("STOCKD_OUTBOX_ONCE");
  app.add_flag("--accept-gap", a.cfg.accept_gap,
               "continue even if stockd trimmed records this database never copied (they are "
               "lost to SQL)")
      ->envname("STOCKD_OUTBOX_ACCEPT_GAP");
  app.add_option("--status-file", a.cfg.status_file,
                 "write {cursor, head, lag, sql_up, stockd_up, last_error} as JSON here after "
                 "each batch (atomically)")
      ->envname("STOCKD_OUTBOX_STATUS_FILE");
  app.add_option("--metrics-listen", a.metrics_listen,
                 "serve /metrics (Prometheus text: cursor, lag, sql_up, failures) and /healthz "
                 "on HOST:PORT")
      ->envname("STOCKD_OUTBOX_METRICS_LISTEN");
  app.add_option("--reset-cursor", a.reset_cursor,
                 "set the database's cursor to SEQ and exit (0 = replay everything stockd "
                 "still retains)")
      ->envname("STOCKD_OUTBOX_RESET_CURSOR");
  app.add_option("--log-level", a.log_level, "trace, debug, info, warn, error, critical, off")
      ->envname("STOCKD_OUTBOX_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
}

int run(Args& a) {
  using namespace stockd::outbox;
  if (std::string err = stockd::parse_endpoint(a.server, a.cfg.server); !err.empty()) {
    std::fprintf(stderr, "stockd-outbox: --server: %s\n", err.c_str());
    return kExitConfig;
  }
  a.cfg.server.token = a.token;
  std::string err;
  std::unique_ptr<Sink> sink = make_sink(a.sql, err);
  if (!sink) {
    std::fprintf(stderr, "stockd-outbox: %s\n", err.c_str());
    return kExitConfig;
  }
  auto log = spdlog::stderr_color_mt("outbox");
  log->set_level(spdlog::level::from_str(a.log_level));
  spdlog::flush_on(spdlog::level::info);
  if (a.reset_cursor) {
    SinkStatus s = sink->reset_cursor(*a.reset_cursor, wall_ms());
    if (!s.ok()) {
      log->critical("cannot reset the cursor of {}: {}", sink->describe(), s.message);
      return s.code == SinkStatus::Code::kConfig ? kExitConfig : kExitFailure;
    }
    log->info("cursor of {} set to {}", sink->describe(), *a.reset_cursor);
    return kExitOk;
  }
  install_signals();
  stockd::outbox::MetricsServer metrics;
  if (!a.metrics_listen.empty()) {
    stockd::ClientOptions ep;
    std::string e = stockd::parse_endpoint(a.metrics_listen, ep);
    if (e.empty()) e = metrics.start(ep.host, ep.port);
    if (!e.empty()) {
      log->critical("--metrics-listen: {}", e);
      return kExitConfig;
    }
    a.cfg.metrics = &metrics;
  }
  Sidecar sidecar(a.cfg, std::move(sink), log, g_stop);
  return sidecar.run();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "stockd-outbox: copies stockd's outbox (orders, releases, expiries) into SQLite "
      "or PostgreSQL exactly once"};
  app.set_version_flag("--version", "stockd-outbox 0.1.0");
  Args a;
  add_options(app, a);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return stockd::outbox::kExitConfig;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stockd-outbox: internal error: %s\n", e.what());
    return stockd::outbox::kExitFailure;
  }
}
