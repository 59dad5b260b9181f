// stockd-outbox: copies stockd's committed orders, releases and expiries into SQL exactly once.
// Parses the configuration, sets up logging and signals, runs the Sidecar. See docs/outbox.md.
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string_view>
#include <vector>

#include "sidecar.h"
#include "sink.h"
#include "stockd/secret_file.h"
#include "stockd/tls_flags.h"

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
  std::string token_file;  // --token-file: the token, read once at start
  std::string sql = "sqlite:./data/orders.db";
  std::string sql_file;  // --sql-file: the URL, read once at start
  CLI::Option* token_opt = nullptr;
  CLI::Option* token_file_opt = nullptr;
  CLI::Option* sql_opt = nullptr;
  CLI::Option* sql_file_opt = nullptr;
  std::string log_level = "info";
  std::optional<uint64_t> reset_cursor;
  std::string metrics_listen;  // HOST:PORT for /metrics and /healthz; empty = none
  int sql_timeout_ms = stockd::outbox::kSqlTimeoutMsDefault;
  stockd::outbox::SidecarConfig cfg;
};

void add_options(CLI::App& app, Args& a) {
  app.add_option("--server", a.server, "stockd address, HOST:PORT")
      ->envname("STOCKD_OUTBOX_SERVER")
      ->capture_default_str();
  stockd::add_tls_flags(app, a.cfg.server.tls);
  a.token_opt = app.add_option("--token", a.token,
                               "stockd's outbox token (its --outbox-token); prefer --token-file: "
                               "a flag is visible in ps")
                    ->envname("STOCKD_OUTBOX_TOKEN");
  a.token_file_opt = app.add_option("--token-file", a.token_file,
                                    "read the token from this file (once, at start; a trailing "
                                    "newline is ignored)")
                         ->envname("STOCKD_OUTBOX_TOKEN_FILE");
  a.sql_opt = app.add_option("--sql", a.sql,
                             "where to write: sqlite:PATH, or postgresql://USER@HOST:PORT/DB (any "
                             "libpq URL; give the password by PGPASSWORD, PGPASSFILE or "
                             "~/.pgpass, not in the URL)")
                  ->envname("STOCKD_OUTBOX_SQL")
                  ->capture_default_str();
  a.sql_file_opt =
      app.add_option("--sql-file", a.sql_file, "read the --sql URL from this file (once, at start)")
          ->envname("STOCKD_OUTBOX_SQL_FILE");
  app.add_option("--batch", a.cfg.batch, "records per read and per SQL transaction")
      ->envname("STOCKD_OUTBOX_BATCH")
      ->check(CLI::Range(1u, stockd::proto::kOutboxReadMax))
      ->capture_default_str();
  app.add_option("--sql-timeout-ms", a.sql_timeout_ms,
                 "PostgreSQL: the longest a connect, a statement or a lock wait may take, and how "
                 "soon a silent connection is dropped, before the batch is retried (unless the "
                 "URL, the role or the database sets statement_timeout and the like)")
      ->envname("STOCKD_OUTBOX_SQL_TIMEOUT_MS")
      ->check(CLI::Range(100, 3'600'000))
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
                 "still retains; forward, which skips records, only with --accept-gap)");
  app.add_option("--log-level", a.log_level, "trace, debug, info, warn, error, critical, off")
      ->envname("STOCKD_OUTBOX_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
}

// True if a libpq URL or keyword string carries a password.
bool has_password(const std::string& conninfo) {
  if (conninfo.rfind("sqlite:", 0) == 0) return false;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  if (opts == nullptr) return false;
  bool found = false;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr && *o->val != '\0')
      found = true;
  }
  PQconninfoFree(opts);
  return found;
}

// An orders database (and its -wal, -shm) left readable by others by an older sidecar: made
// owner-only, as new ones are (umask 077). Returns what was changed or failed, for a warning.
// The database file of a sqlite: URL, or "" for another URL.
std::string sqlite_file(const std::string& url) {
  if (url.rfind("sqlite:", 0) != 0) return "";
  std::string path = url.substr(7);
  if (path.rfind("//", 0) == 0) path = path.substr(2);
  return path;
}

std::string tighten_sqlite_files(const std::string& url) {
  const std::string path = sqlite_file(url);
  if (path.empty()) return "";
  std::string note;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string p = path + suffix;
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0) continue;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    note += note.empty() ? "" : "; ";
    if (::chmod(p.c_str(), st.st_mode & 0700) == 0) {
      note += p + " was readable by other users (mode " + mode + "): made owner-only";
    } else {
      note += p + " is readable by other users (mode " + mode +
              ") and cannot be changed: " + std::strerror(errno) + " (chmod 600 it)";
    }
  }
  return note;
}

// Why --status-file may not be used with this --sql, or "": it (or the temporary file renamed
// over it) must not be the SQLite database or one of SQLite's files beside it, by any name (a
// relative path, a symlink, a hard link). The status's rename replaced the database with JSON.
std::string status_file_clash(const std::string& url, const std::string& status_file) {
  const std::string db = sqlite_file(url);
  if (db.empty() || status_file.empty()) return "";
  namespace fs = std::filesystem;
  const auto same = [](const std::string& a, const std::string& b) {
    struct stat sa {
    }, sb{};
    if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0) {
      return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    }
    std::error_code ea, eb;
    const fs::path pa = fs::weakly_canonical(a, ea), pb = fs::weakly_canonical(b, eb);
    return !ea && !eb && pa == pb;
  };
  for (const std::string& ours : {status_file, status_file + ".tmp"}) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      if (same(ours, db + suffix)) {
        return "--status-file " + status_file + " is the SQLite database's file " + db + suffix +
               " (its status, renamed over it, would replace the orders): give another path";
      }
    }
  }
  return "";
}

// --token-file / --sql-file into the arguments; warnings for secrets typed on the command line.
// Ok or why not.
stockd::Status read_secrets(Args& a, int argc, char** argv, std::vector<std::string>& warnings) {
  if (a.token_opt->count() > 0 && a.token_file_opt->count() > 0) {
    return stockd::Status::Invalid(
        "--token and --token-file (or STOCKD_OUTBOX_TOKEN, STOCKD_OUTBOX_TOKEN_FILE) are both "
        "given: use one");
  }
  if (a.sql_opt->count() > 0 && a.sql_file_opt->count() > 0) {
    return stockd::Status::Invalid(
        "--sql and --sql-file (or STOCKD_OUTBOX_SQL, STOCKD_OUTBOX_SQL_FILE) are both given: "
        "use one");
  }
  if (stockd::on_command_line(argc, argv, "--token")) {
    warnings.push_back(
        "--token on the command line is visible to every local user (ps, /proc/PID/cmdline): "
        "use --token-file or STOCKD_OUTBOX_TOKEN_FILE instead");
  }
  if (stockd::on_command_line(argc, argv, "--sql") && has_password(a.sql)) {
    warnings.push_back(
        "--sql on the command line carries a password, visible to every local user (ps): leave "
        "it out of the URL and set PGPASSWORD, PGPASSFILE or ~/.pgpass (libpq reads them), or "
        "give the URL with --sql-file or STOCKD_OUTBOX_SQL");
  }
  std::string warning;
  if (a.token_file_opt->count() > 0) {
    stockd::Status s =
        stockd::read_secret_file(a.token_file, a.token, warning, stockd::proto::kTokenBytesMax);
    if (!s.ok()) return std::move(s).context("--token-file");
    if (!warning.empty()) warnings.push_back("--token-file: " + warning);
  }
  if (a.sql_file_opt->count() > 0) {
    stockd::Status s = stockd::read_secret_file(a.sql_file, a.sql, warning, 64 * 1024);
    if (!s.ok()) return std::move(s).context("--sql-file");
    if (!warning.empty()) warnings.push_back("--sql-file: " + warning);
  }
  return stockd::Status::Ok();
}

int run(Args& a, const std::vector<std::string>& warnings) {
  using namespace stockd::outbox;
  if (stockd::Status s = stockd::parse_endpoint(a.server, a.cfg.server); !s.ok()) {
    std::fprintf(stderr, "stockd-outbox: --server: %s\n", s.message().c_str());
    return kExitConfig;
  }
  a.cfg.server.token = a.token;
  stockd::imply_tls(a.cfg.server.tls);
  if (std::string clash = status_file_clash(a.sql, a.cfg.status_file); !clash.empty()) {
    std::fprintf(stderr, "stockd-outbox: %s\n", clash.c_str());
    return kExitConfig;
  }
  stockd::Result<std::unique_ptr<Sink>> made = make_sink(a.sql, a.sql_timeout_ms);
  if (!made.ok()) {
    std::fprintf(stderr, "stockd-outbox: %s\n", made.status().message().c_str());
    return kExitConfig;
  }
  std::unique_ptr<Sink> sink = std::move(made).value();
  auto log = spdlog::stderr_color_mt("outbox");
  log->set_level(spdlog::level::from_str(a.log_level));
  spdlog::flush_on(spdlog::level::info);
  for (const std::string& w : warnings) log->warn("{}", w);
  if (std::string note = tighten_sqlite_files(a.sql); !note.empty()) log->warn("{}", note);
  if (a.reset_cursor) {
    // Back (a replay: the rows already there are skipped) is always safe. Forward skips every
    // record in between, never copied: like every other skip, only with --accept-gap.
    uint64_t now_at = 0;
    SinkStatus s = *a.reset_cursor > static_cast<uint64_t>(INT64_MAX)
                       ? SinkStatus::Config("SEQ is past the largest seq SQL can store")
                       : sink->read_cursor(now_at);
    if (s.ok() && *a.reset_cursor > now_at && !a.cfg.accept_gap) {
      s = SinkStatus::Config("moving the cursor forward from " + std::to_string(now_at) + " to " +
                             std::to_string(*a.reset_cursor) + " skips records " +
                             std::to_string(now_at + 1) + ".." + std::to_string(*a.reset_cursor) +
                             ", which then never reach SQL; to skip them on purpose, add "
                             "--accept-gap");
    }
    if (s.ok()) s = sink->reset_cursor(*a.reset_cursor, wall_ms());
    if (!s.ok()) {
      log->critical("cannot reset the cursor of {}: {}", sink->describe(), s.message);
      if (s.code == SinkStatus::Code::kConfig) return kExitConfig;
      return s.code == SinkStatus::Code::kRejected ? kExitRejected : kExitFailure;
    }
    log->info("cursor of {} set to {}", sink->describe(), *a.reset_cursor);
    return kExitOk;
  }
  install_signals();
  stockd::outbox::MetricsServer metrics;
  if (!a.metrics_listen.empty()) {
    stockd::ClientOptions ep;
    stockd::Status s = stockd::parse_endpoint(a.metrics_listen, ep);
    if (s.ok()) s = metrics.start(ep.host, ep.port);
    if (!s.ok()) {
      log->critical("--metrics-listen: {}", s.message());
      return kExitConfig;
    }
    a.cfg.metrics = &metrics;
  }
  Sidecar sidecar(a.cfg, std::move(sink), log, g_stop);
  return sidecar.run();
}

}  // namespace

int main(int argc, char** argv) {
  // The orders database (and its -wal, -shm), the status file: for this user only. They hold
  // every buyer id and each sold unique code.
  ::umask(077);
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
  std::vector<std::string> warnings;
  if (stockd::Status s = read_secrets(a, argc, argv, warnings); !s.ok()) {
    std::fprintf(stderr, "stockd-outbox: %s\n", s.message().c_str());
    return stockd::outbox::kExitConfig;
  }
  try {
    return run(a, warnings);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stockd-outbox: internal error: %s\n", e.what());
    return stockd::outbox::kExitFailure;
  }
}
