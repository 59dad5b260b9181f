// SQLite sink: WAL journal, synchronous=FULL (a committed batch survives power loss), a busy
// timeout for other readers and writers, statements prepared once and reused.
#include <sqlite3.h>

#include <filesystem>
#include <system_error>

#include "records.h"
#include "schema.h"
#include "sink.h"

namespace stockd::outbox {

namespace {

constexpr int kBusyTimeoutMs = 5000;

const char* const kInsertOrder =
    "INSERT INTO orders (order_id, seq, user_id, idem_key, created_at_ms, committed_at_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING";
const char* const kInsertLine =
    "INSERT INTO order_lines (order_id, sku, qty) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
const char* const kInsertCode =
    "INSERT INTO order_codes (code, sku, order_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
const char* const kInsertEvent =
    "INSERT INTO hold_events (seq, kind, hold_id, user_id, at_ms, lines)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING";

// Failures that retrying will not fix: the file cannot be opened or written, or is no database.
bool is_config_error(int rc) {
  switch (rc & 0xFF) {
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_AUTH:
      return true;
    default:
      return false;
  }
}

class SqliteSink final : public Sink {
 public:
  explicit SqliteSink(std::string path) : path_(std::move(path)) {}
  ~SqliteSink() override { close(); }

  SinkStatus open() override;
  SinkStatus read_cursor(uint64_t& cursor) override;
  SinkStatus write_batch(uint64_t expected_cursor, std::span<const proto::OutboxRecord> records,
                         int64_t now_ms) override;
  SinkStatus reset_cursor(uint64_t cursor, int64_t now_ms) override;
  void close() override;
  std::string describe() const override { return "sqlite:" + path_; }

 private:
  enum Stmt {
    kBegin,
    kCommit,
    kRollback,
    kCursorRead,
    kCursorMove,
    kCursorReset,
    kOrder,
    kLine,
    kCode,
    kEvent,
    kStmtCount
  };

  // Builds the status for a failed call with result `rc`, then drops the connection.
  SinkStatus fail(int rc, const std::string& what);
  SinkStatus open_db();
  int exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
  // Runs a prepared statement to completion (bound parameters kept until the next bind).
  int step(Stmt s);
  int insert_rows(const proto::OutboxRecord& r);
  void bind_text(sqlite3_stmt* st, int i, std::string_view s) {
    std::string_view t = sql_text(s, scratch_);
    sqlite3_bind_text(st, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmts_[kStmtCount] = {};
  std::string scratch_;
};

void SqliteSink::close() {
  for (auto& st : stmts_) {
    sqlite3_finalize(st);
    st = nullptr;
  }
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

SinkStatus SqliteSink::fail(int rc, const std::string& what) {
  std::string msg =
      "sqlite: " + what + ": " + (db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) exec("ROLLBACK");
  close();
  return is_config_error(rc) ? SinkStatus::Config(msg) : SinkStatus::Unavailable(msg);
}

int SqliteSink::step(Stmt s) {
  sqlite3_stmt* st = stmts_[s];
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

SinkStatus SqliteSink::open_db() {
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) {
    return SinkStatus::Config("sqlite: cannot create directory " + parent.string() + ": " +
                              ec.message());
  }
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "cannot open");
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  // journal_mode=WAL answers the mode it ended in; anything else means WAL is unavailable.
  sqlite3_stmt* st = nullptr;
  rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &st, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  std::string mode =
      rc == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return fail(rc, "cannot set journal_mode=WAL");
  if (mode != "wal") return fail(SQLITE_CANTOPEN, "journal_mode is " + mode + ", not wal");
  if ((rc = exec("PRAGMA synchronous=FULL")) != SQLITE_OK) return fail(rc, "synchronous=FULL");
  return SinkStatus::Ok();
}

SinkStatus SqliteSink::open() {
  if (db_ != nullptr) return SinkStatus::Ok();
  if (SinkStatus s = open_db(); !s.ok()) return s;
  int rc = exec("BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return fail(rc, "cannot begin the schema transaction");
  for (const char* ddl : kSchemaDdl) {
    if ((rc = exec(ddl)) != SQLITE_OK) return fail(rc, "cannot create the schema");
  }
  const char* sql[kStmtCount] = {"BEGIN IMMEDIATE", "COMMIT",        "ROLLBACK",   kCursorReadSql,
                                 kCursorMoveSql,    kCursorResetSql, kInsertOrder, kInsertLine,
                                 kInsertCode,       kInsertEvent};
  sqlite3_stmt* init = nullptr;
  rc = sqlite3_prepare_v2(db_, kCursorInitSql, -1, &init, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(init, 1, 0);
    rc = sqlite3_step(init);
  }
  sqlite3_finalize(init);
  if (rc != SQLITE_DONE) return fail(rc, "cannot create the cursor row");
  if ((rc = exec("COMMIT")) != SQLITE_OK) return fail(rc, "cannot commit the schema");
  for (int i = 0; i < kStmtCount; ++i) {
    rc = sqlite3_prepare_v3(db_, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i], nullptr);
    if (rc != SQLITE_OK) return fail(rc, std::string("cannot prepare ") + sql[i]);
  }
  return SinkStatus::Ok();
}

SinkStatus SqliteSink::read_cursor(uint64_t& cursor) {
  if (SinkStatus s = open(); !s.ok()) return s;
  sqlite3_stmt* st = stmts_[kCursorRead];
  int rc = sqlite3_step(st);
  bool found = rc == SQLITE_ROW;
  if (found) cursor = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_reset(st);
  if (!found) return fail(rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "cannot read the cursor");
  return SinkStatus::Ok();
}

int SqliteSink::insert_rows(const proto::OutboxRecord& r) {
  const auto id = static_cast<int64_t>(r.order_id);
  int rc = SQLITE_DONE;
  if (r.kind != proto::OutboxKind::kOrder) {
    sqlite3_stmt* st = stmts_[kEvent];
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(r.seq));
    sqlite3_bind_text(st, 2, event_kind_name(r.kind), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, id);
    bind_text(st, 4, r.user);
    sqlite3_bind_int64(st, 5, r.at_ms);
    std::string json = lines_json(r.lines);
    sqlite3_bind_text(st, 6, json.data(), static_cast<int>(json.size()), SQLITE_TRANSIENT);
    return step(kEvent);
  }
  sqlite3_stmt* st = stmts_[kOrder];
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, static_cast<int64_t>(r.seq));
  bind_text(st, 3, r.user);
  if (r.key.empty()) {
    sqlite3_bind_null(st, 4);
  } else {
    bind_text(st, 4, r.key);
  }
  sqlite3_bind_int64(st, 5, r.created_at_ms);
  sqlite3_bind_int64(st, 6, r.at_ms);
  if ((rc = step(kOrder)) != SQLITE_DONE) return rc;
  for (const proto::Line& l : r.lines) {
    st = stmts_[kLine];
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, l.sku);
    sqlite3_bind_int64(st, 3, l.qty);
    if ((rc = step(kLine)) != SQLITE_DONE) return rc;
  }
  for (const proto::SkuCode& c : r.codes) {
    st = stmts_[kCode];
    bind_text(st, 1, c.code);
    bind_text(st, 2, c.sku);
    sqlite3_bind_int64(st, 3, id);
    if ((rc = step(kCode)) != SQLITE_DONE) return rc;
  }
  return SQLITE_DONE;
}

SinkStatus SqliteSink::write_batch(uint64_t expected_cursor,
                                   std::span<const proto::OutboxRecord> records, int64_t now_ms) {
  if (records.empty()) return SinkStatus::Ok();
  if (SinkStatus s = open(); !s.ok()) return s;
  int rc = step(kBegin);
  if (rc != SQLITE_DONE) return fail(rc, "cannot begin");
  sqlite3_stmt* move = stmts_[kCursorMove];
  sqlite3_bind_int64(move, 1, static_cast<int64_t>(records.back().seq));
  sqlite3_bind_int64(move, 2, now_ms);
  sqlite3_bind_int64(move, 3, static_cast<int64_t>(expected_cursor));
  if ((rc = step(kCursorMove)) != SQLITE_DONE) return fail(rc, "cannot move the cursor");
  if (sqlite3_changes(db_) != 1) {
    rc = step(kRollback);
    uint64_t stored = 0;
    if (SinkStatus s = read_cursor(stored); !s.ok()) return s;
    return SinkStatus::CursorMoved("the stored cursor is " + std::to_string(stored) +
                                   ", expected " + std::to_string(expected_cursor));
  }
  for (const proto::OutboxRecord& r : records) {
    if ((rc = insert_rows(r)) != SQLITE_DONE) {
      return fail(rc, "cannot insert record " + std::to_string(r.seq));
    }
  }
  if ((rc = step(kCommit)) != SQLITE_DONE) return fail(rc, "cannot commit");
  return SinkStatus::Ok();
}

SinkStatus SqliteSink::reset_cursor(uint64_t cursor, int64_t now_ms) {
  if (SinkStatus s = open(); !s.ok()) return s;
  sqlite3_stmt* st = stmts_[kCursorReset];
  sqlite3_bind_int64(st, 1, static_cast<int64_t>(cursor));
  sqlite3_bind_int64(st, 2, now_ms);
  if (int rc = step(kCursorReset); rc != SQLITE_DONE) return fail(rc, "cannot reset the cursor");
  return SinkStatus::Ok();
}

}  // namespace

std::unique_ptr<Sink> make_sqlite_sink(const std::string& path) {
  return std::make_unique<SqliteSink>(path);
}

}  // namespace stockd::outbox
