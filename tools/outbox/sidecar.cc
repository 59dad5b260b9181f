// The sidecar's loop. See sidecar.h; the argument for exactly-once is in docs/outbox.md.
#include "sidecar.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "records.h"

namespace stockd::outbox {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kSleepSliceMs = 20;  // how quickly a sleeping sidecar notices a stop

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Capped exponential delays: min, 2*min, ... max, max, ...
class Backoff {
 public:
  Backoff(int min_ms, int max_ms) : min_(min_ms), max_(max_ms), next_(min_ms) {}
  int next() {
    int d = next_;
    next_ = std::min(max_, next_ * 2);
    return d;
  }

 private:
  int min_, max_, next_;
};

std::string endpoint(const ClientOptions& o) { return o.host + ":" + std::to_string(o.port); }

template <class T>
std::string why_not(const Reply<T>& r) {
  if (!r.transport_ok()) return r.error;
  std::string s = proto::status_name(r.status);
  return r.error.empty() ? s : s + ": " + r.error;
}

}  // namespace

// nullopt: go on; a value: exit with it.
using Next = std::optional<int>;

struct Sidecar::Impl {
  SidecarConfig cfg;
  std::unique_ptr<Sink> sink;
  std::shared_ptr<spdlog::logger> log;
  const std::atomic<bool>& stop;
  Client client;

  uint64_t cursor = 0;  // as committed in SQL
  uint64_t head = 0;    // stockd's durable head, as last seen
  bool stockd_up = false;
  bool sql_up = false;
  bool warned_acked_ahead = false;
  bool warned_no_row = false;  // check_same_history found no row for the cursor (said once)
  bool warned_status_file = false;
  std::string last_error;
  Backoff read_backoff;
  uint64_t copied = 0;
  uint64_t sql_failures = 0;
  uint64_t stockd_failures = 0;
  std::optional<Clock::time_point> first_batch_at;
  Clock::time_point last_progress = Clock::now();
  uint64_t copied_at_progress = 0;

  Impl(SidecarConfig c, std::unique_ptr<Sink> s, std::shared_ptr<spdlog::logger> l,
       const std::atomic<bool>& st)
      : cfg(std::move(c)),
        sink(std::move(s)),
        log(std::move(l)),
        stop(st),
        client(cfg.server),
        read_backoff(cfg.backoff_min_ms, cfg.backoff_max_ms) {}

  int run();
  bool sleep_ms(int ms);
  Next start_sql();
  Next for_good(const SinkStatus& s);
  Next connect_stockd();
  Next check_same_history(const proto::OutboxStatusResp& st, std::string& why, bool& sql_failed);
  Next step();
  Next check_positions(const proto::OutboxReadResp& resp);
  Next commit(const std::vector<proto::OutboxRecord>& records);
  Next skip_to_head();
  void ack();
  void write_status();
  void log_progress();
  void lost_stockd(const std::string& why);
};

Sidecar::Sidecar(SidecarConfig config, std::unique_ptr<Sink> sink,
                 std::shared_ptr<spdlog::logger> log, const std::atomic<bool>& stop) {
  config.server.role = proto::Role::kOutbox;
  config.server.reconnect_attempts = 1;  // the sidecar paces its own reconnects
  // Each new connection is checked (connect_stockd) before anything is read or acked on it: a
  // call that reconnected by itself could reach another stockd (restarted on an empty or old
  // data dir while SQL was slow) and ack or copy its records without the history check.
  config.server.connect_in_calls = false;
  if (config.server.client_name.empty() || config.server.client_name == "stockd-client") {
    config.server.client_name = "stockd-outbox";
  }
  impl_ = std::make_unique<Impl>(std::move(config), std::move(sink), std::move(log), stop);
}

Sidecar::~Sidecar() = default;

int Sidecar::run() { return impl_->run(); }

int Sidecar::Impl::run() {
  if (Next n = start_sql()) return *n;
  log->info("stockd-outbox: writing to {} from cursor {}; stockd at {}", sink->describe(), cursor,
            endpoint(cfg.server));
  while (!stop.load()) {
    if (!client.connected()) {
      if (Next n = connect_stockd()) return *n;
      continue;
    }
    if (Next n = step()) return *n;
  }
  log->info("stopping at cursor {} (head {})", cursor, head);
  write_status();
  return kExitOk;
}

bool Sidecar::Impl::sleep_ms(int ms) {
  auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!stop.load() && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kSleepSliceMs));
  }
  return !stop.load();
}

// The exit for a failure of SQL that retrying cannot fix (configuration, refused for good).
Next Sidecar::Impl::for_good(const SinkStatus& s) {
  if (s.code == SinkStatus::Code::kConfig) {
    log->critical("cannot use {}: {}", sink->describe(), s.message);
    return kExitConfig;
  }
  if (s.code == SinkStatus::Code::kRejected) {
    log->critical("cannot write to {}: {}", sink->describe(), s.message);
    return kExitRejected;
  }
  return std::nullopt;
}

Next Sidecar::Impl::start_sql() {
  Backoff backoff(cfg.backoff_min_ms, cfg.backoff_max_ms);
  auto deadline = Clock::now() + std::chrono::milliseconds(cfg.once_start_timeout_ms);
  for (int attempt = 1; !stop.load(); ++attempt) {
    SinkStatus s = sink->read_cursor(cursor);
    if (s.ok()) {
      sql_up = true;
      return std::nullopt;
    }
    if (Next n = for_good(s)) return n;
    last_error = s.message;
    ++sql_failures;
    write_status();
    if (cfg.once && Clock::now() >= deadline) {
      log->critical("gave up waiting for SQL after {} ms (--once): {}", cfg.once_start_timeout_ms,
                    s.message);
      return kExitConfig;
    }
    int d = backoff.next();
    log->warn("waiting for SQL ({}): {} (attempt {}, retrying in {} ms)", sink->describe(),
              s.message, attempt, d);
    sleep_ms(d);
  }
  return kExitOk;
}

Next Sidecar::Impl::connect_stockd() {
  Backoff backoff(cfg.backoff_min_ms, cfg.backoff_max_ms);
  client.close();  // the status call below connects: the new connection is checked here
  auto deadline = Clock::now() + std::chrono::milliseconds(cfg.once_start_timeout_ms);
  for (int attempt = 1; !stop.load(); ++attempt) {
    Reply<proto::OutboxStatusResp> r = client.outbox_status();
    std::string why = r.ok() ? "" : why_not(r);
    bool sql_failed = false;  // the check below could not read SQL: stockd is fine
    if (r.ok()) {
      if (Next n = check_same_history(r.body, why, sql_failed)) return *n;
    }
    if (why.empty()) {
      stockd_up = true;
      head = r.body.head_seq;
      log->info("connected to stockd at {}: outbox head {}, acked {}, first retained {}; cursor {}",
                endpoint(cfg.server), r.body.head_seq, r.body.acked_seq, r.body.first_seq, cursor);
      write_status();  // /healthz says so now, not after the first long poll (up to 2 s)
      return std::nullopt;
    }
    client.close();
    stockd_up = false;
    // A wrong token, or a stockd without an outbox (durability off), stays so: exit for the
    // operator. A stockd whose store failed (a full disk) answers STORAGE_UNAVAILABLE too,
    // until it recovers by itself: wait for it like for a stockd that is down.
    if (r.transport_ok() && (r.status == proto::Status::kUnauthorized ||
                             (r.status == proto::Status::kStorageUnavailable &&
                              r.error.find("durability is off") != std::string::npos))) {
      log->critical("stockd at {} refuses the outbox reader: {}", endpoint(cfg.server), why);
      return kExitConfig;
    }
    const std::string what =
        sql_failed ? "SQL (" + sink->describe() + ")" : "stockd at " + endpoint(cfg.server);
    last_error = (sql_failed ? "" : "stockd: ") + why;
    ++(sql_failed ? sql_failures : stockd_failures);
    write_status();
    if (cfg.once && Clock::now() >= deadline) {
      log->critical("gave up waiting for {} after {} ms (--once): {}", what,
                    cfg.once_start_timeout_ms, why);
      return kExitConfig;
    }
    int d = backoff.next();
    log->warn("waiting for {}: {} (attempt {}, retrying in {} ms)", what, why, attempt, d);
    sleep_ms(d);
  }
  return kExitOk;
}

// The record at the cursor, while stockd still has it, must be the one this database holds for
// that seq. A stockd started on an empty data dir, or restored from an old backup, that has sold
// past the cursor since passes the head check (check_positions); without this one its records
// up to the cursor would never reach SQL, and the sidecar would go on from there silently.
// `why`: set if the check could not be made (stockd or SQL failed): the connect is retried.
Next Sidecar::Impl::check_same_history(const proto::OutboxStatusResp& st, std::string& why,
                                       bool& sql_failed) {
  if (cursor == 0 || st.first_seq == 0 || st.first_seq > cursor || st.head_seq < cursor) {
    return std::nullopt;  // nothing to compare (the head check and the gap check take it)
  }
  Reply<proto::OutboxReadResp> r = client.outbox_read({cursor - 1, 1, 0});
  if (!r.ok()) {
    why = "OUTBOX_READ of record " + std::to_string(cursor) + " failed: " + why_not(r);
    return std::nullopt;
  }
  if (r.body.records.size() != 1 || r.body.records[0].seq != cursor) {
    why = "OUTBOX_READ of record " + std::to_string(cursor) + " did not bring it";
    return std::nullopt;
  }
  BatchTotals found;
  if (SinkStatus s = sink->totals(cursor, cursor, found); !s.ok()) {
    if (Next n = for_good(s)) return n;
    sql_up = false;
    sql_failed = true;
    why = "reading the rows of record " + std::to_string(cursor) + " failed: " + s.message;
    return std::nullopt;
  }
  sql_up = true;
  if (found.orders == 0 && found.events == 0) {
    if (!warned_no_row) {
      log->warn(
          "this database holds no row for record {} (its cursor was set by "
          "--reset-cursor?): cannot check that stockd at {} is the one it copied from",
          cursor, endpoint(cfg.server));
    }
    warned_no_row = true;
    return std::nullopt;
  }
  if (Status differs = compare_totals(batch_totals(r.body.records), found); !differs.ok()) {
    log->critical(
        "stockd's outbox record {} is not the one this database holds ({}): refusing to "
        "continue; stockd at {} was probably restored from an old or empty data dir and has "
        "recorded other decisions since, which would be missing from {}, and it could sell "
        "again what this database recorded. Point --server and --sql at matching instances, or "
        "see docs/outbox.md (replay) to start this database over on purpose",
        cursor, differs.message(), endpoint(cfg.server), sink->describe());
    return kExitRefused;
  }
  return std::nullopt;
}

void Sidecar::Impl::lost_stockd(const std::string& why) {
  client.close();
  stockd_up = false;
  last_error = "stockd: " + why;
  ++stockd_failures;
  write_status();
  int d = read_backoff.next();
  log->warn("stockd at {}: {}; reconnecting in {} ms", endpoint(cfg.server), why, d);
  sleep_ms(d);
}

// One OUTBOX_READ after the cursor; the records it brings are committed and acknowledged.
Next Sidecar::Impl::step() {
  const uint32_t wait = cfg.once ? 0 : cfg.wait_ms;
  Reply<proto::OutboxReadResp> r = client.outbox_read({cursor, cfg.batch, wait});
  if (!r.ok()) {
    lost_stockd("OUTBOX_READ after " + std::to_string(cursor) + " failed: " + why_not(r));
    return std::nullopt;
  }
  const proto::OutboxReadResp& resp = r.body;
  head = resp.head_seq;
  if (Next n = check_positions(resp)) return *n;
  if (resp.acked_seq < cursor) ack();
  if (resp.records.empty()) {
    if (cursor >= head) {
      write_status();
      if (!cfg.once) return std::nullopt;
      double secs = first_batch_at ? seconds_since(*first_batch_at) : 0.0;
      log->info("caught up at cursor {}: copied {} records in {:.3f} s ({:.0f} records/s)", cursor,
                copied, secs, secs > 0 ? static_cast<double>(copied) / secs : 0.0);
      return kExitOk;
    }
    if (cfg.accept_gap && resp.first_seq == 0) return skip_to_head();
    lost_stockd("head is " + std::to_string(head) + " but no record after " +
                std::to_string(cursor) + " was sent");
    return std::nullopt;
  }
  // With --accept-gap the records may start at stockd's oldest retained one; never elsewhere.
  uint64_t after = cfg.accept_gap && resp.first_seq > cursor + 1 ? resp.first_seq - 1 : cursor;
  if (Status why = check_batch(after, resp.records); !why.ok()) {
    log->error("protocol error in OUTBOX_READ after {}: {}", cursor, why.message());
    lost_stockd("protocol error: " + why.message());
    return std::nullopt;
  }
  read_backoff = Backoff(cfg.backoff_min_ms, cfg.backoff_max_ms);
  if (!first_batch_at) first_batch_at = Clock::now();
  if (Next n = commit(resp.records)) return *n;
  ack();
  write_status();
  log_progress();
  return std::nullopt;
}

Next Sidecar::Impl::check_positions(const proto::OutboxReadResp& resp) {
  if (resp.head_seq < cursor) {
    log->critical(
        "stockd's outbox head {} is behind this database's cursor {}: refusing to continue; "
        "stockd at {} was probably restored from an old or empty data dir and could sell again "
        "what {} already recorded. Point --server and --sql at matching instances, or see "
        "docs/outbox.md (replay) to start this database over on purpose",
        resp.head_seq, cursor, endpoint(cfg.server), sink->describe());
    return kExitRefused;
  }
  const bool gap = resp.first_seq > cursor + 1 || (resp.first_seq == 0 && resp.head_seq > cursor);
  if (gap) {
    const uint64_t to = resp.first_seq == 0 ? resp.head_seq : resp.first_seq - 1;
    if (!cfg.accept_gap) {
      log->critical(
          "stockd no longer has outbox records {}..{} that this database never copied (its "
          "oldest retained record is {}): refusing to continue, they would be missing from {}. "
          "Restart with --accept-gap only if you accept losing them",
          cursor + 1, to, resp.first_seq, sink->describe());
      return kExitRefused;
    }
    log->error(
        "--accept-gap: skipping outbox records {}..{}, trimmed by stockd before this "
        "database copied them; they will never be in SQL",
        cursor + 1, to);
  }
  if (resp.acked_seq > cursor && !warned_acked_ahead) {
    warned_acked_ahead = true;
    log->warn(
        "stockd says records up to {} were acknowledged but this database's cursor is {}: "
        "another sidecar, or a database restored from a backup?",
        resp.acked_seq, cursor);
  }
  return std::nullopt;
}

Next Sidecar::Impl::commit(const std::vector<proto::OutboxRecord>& records) {
  Backoff backoff(cfg.backoff_min_ms, cfg.backoff_max_ms);
  const uint64_t first = records.front().seq, last = records.back().seq;
  for (int attempt = 1;; ++attempt) {
    SinkStatus s = sink->write_batch(cursor, records, wall_ms());
    uint64_t stored = 0;
    if (s.ok()) {
      if (attempt > 1) log->info("SQL is back: committed records {}..{}", first, last);
      sql_up = true;
      copied += records.size();
      cursor = last;
      return std::nullopt;
    }
    if (s.code == SinkStatus::Code::kCursorMoved && sink->read_cursor(stored).ok()) {
      if (stored == cursor) {
        // It reads back as ours, yet would not move from it: a value that is not a whole
        // number (5.5 reads as 5), or a trigger. Trying again would loop at once, forever.
        log->critical(
            "the cursor row in {} reads {} but does not move from it ({}): not a whole number, "
            "or a trigger on it? Fix the database, then restart",
            sink->describe(), stored, s.message);
        return kExitRejected;
      }
      if (stored == last) {
        log->info("records {}..{} were already committed (a commit whose answer was lost)", first,
                  last);
      } else {
        log->error(
            "the cursor in {} moved from {} to {} under this sidecar (is another "
            "stockd-outbox writing to it?); continuing from {}",
            sink->describe(), cursor, stored, stored);
      }
      cursor = stored;
      return std::nullopt;
    }
    sql_up = false;
    ++sql_failures;
    last_error = s.message;
    write_status();
    if (s.code == SinkStatus::Code::kRejected || s.code == SinkStatus::Code::kConfig) {
      // Retrying the same rows would fail the same way: stop, and let an operator fix SQL.
      log->critical(
          "SQL refuses records {}..{} for good, stopping at cursor {} (nothing of them was "
          "written; fix the database, then restart): {}",
          first, last, cursor, s.message);
      return s.code == SinkStatus::Code::kRejected ? kExitRejected : kExitConfig;
    }
    int d = backoff.next();
    log->warn("SQL write of records {}..{} failed (attempt {}, lag {}): {}; retrying in {} ms",
              first, last, attempt, head - cursor, s.message, d);
    if (!sleep_ms(d)) return kExitOk;
  }
}

// --accept-gap when stockd retains nothing after the cursor: the operator accepted losing
// records cursor+1..head, so the cursor moves to the head (and the long poll works again).
Next Sidecar::Impl::skip_to_head() {
  SinkStatus s = sink->reset_cursor(head, wall_ms());
  if (s.code == SinkStatus::Code::kRejected || s.code == SinkStatus::Code::kConfig) {
    log->critical("cannot move the cursor of {} to {}: {}", sink->describe(), head, s.message);
    return s.code == SinkStatus::Code::kRejected ? kExitRejected : kExitConfig;
  }
  if (!s.ok()) {
    sql_up = false;
    ++sql_failures;
    last_error = s.message;
    int d = read_backoff.next();
    log->warn("cannot move the cursor to {}: {}; retrying in {} ms", head, s.message, d);
    return sleep_ms(d) ? std::nullopt : Next(kExitOk);
  }
  cursor = head;
  ack();
  write_status();
  return std::nullopt;
}

void Sidecar::Impl::ack() {
  Reply<proto::OutboxStatusResp> r = client.outbox_ack(cursor);
  if (r.ok()) return;
  // Harmless: SQL holds the cursor; stockd only trims later. The next batch acks again.
  log->warn("OUTBOX_ACK {} not delivered: {}", cursor, why_not(r));
  if (!r.transport_ok()) client.close();
}

void Sidecar::Impl::log_progress() {
  double secs = std::chrono::duration<double>(Clock::now() - last_progress).count();
  if (secs * 1000 < cfg.progress_log_ms) return;
  log->info("cursor {}, head {}, lag {}; {} records in the last {:.1f} s ({:.0f}/s)", cursor, head,
            head - cursor, copied - copied_at_progress, secs,
            secs > 0 ? static_cast<double>(copied - copied_at_progress) / secs : 0.0);
  last_progress = Clock::now();
  copied_at_progress = copied;
}

void Sidecar::Impl::write_status() {
  if (cfg.metrics != nullptr) {
    cfg.metrics->publish({cursor, head, sql_up, stockd_up, copied, sql_failures, stockd_failures});
  }
  if (cfg.status_file.empty()) return;
  std::string scratch;
  std::string json = "{\"cursor\":" + std::to_string(cursor) + ",\"head\":" + std::to_string(head) +
                     ",\"lag\":" + std::to_string(head > cursor ? head - cursor : 0) +
                     ",\"sql_up\":" + (sql_up ? "true" : "false") +
                     ",\"stockd_up\":" + (stockd_up ? "true" : "false") +
                     ",\"last_error\":" + json_quote(sql_text(last_error, scratch)) +
                     ",\"updated_at_ms\":" + std::to_string(wall_ms()) + "}\n";
  const std::string tmp = cfg.status_file + ".tmp";
  std::error_code ec;
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json;
    out.close();
    if (!out) ec = std::make_error_code(std::errc::io_error);
  }
  if (!ec) std::filesystem::rename(tmp, cfg.status_file, ec);
  if (ec && !warned_status_file) {
    warned_status_file = true;
    log->warn("cannot write --status-file {}: {}", cfg.status_file, ec.message());
  }
}

}  // namespace stockd::outbox
