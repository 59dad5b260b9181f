// SQLite sink: WAL journal, synchronous=FULL (a committed batch survives power loss), a busy
// timeout for other readers and writers, statements prepared once and reused.
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

#include "records.h"
#include "schema.h"
#include "sink.h"

namespace stockd::outbox {

namespace {

constexpr int kBusyTimeoutMs = 5000;

std::string insert_sql(const TableColumns& t) {
  std::string sql = std::string("INSERT INTO ") + t.table + " (" + t.columns + ") VALUES (";
  const int n =
      1 + static_cast<int>(std::count(t.columns, t.columns + std::strlen(t.columns), ','));
  for (int i = 1; i <= n; ++i) sql += (i > 1 ? ", ?" : "?") + std::to_string(i);
  return sql + ") ON CONFLICT DO NOTHING";
}

// The same-row lookups of the batch check: with the parameters of the table's INSERT
// (insert_sql: ?1.. in the order of its columns), whether the table holds a row with that key
// and those values. An INSERT that inserted nothing (its key exists) is fine only if it does.
const char* const kSameOrder =
    "SELECT count(*) FROM orders WHERE order_id = ?1 AND seq = ?2 AND user_id_bytes = ?4"
    " AND idem_key_bytes IS ?6 AND created_at_ms = ?7 AND committed_at_ms = ?8";
const char* const kSameLine =
    "SELECT count(*) FROM order_lines WHERE order_id = ?1 AND sku_bytes = ?3 AND qty = ?4";
const char* const kSameCode =
    "SELECT count(*) FROM order_codes WHERE code_bytes = ?2 AND sku_bytes = ?4 AND order_id = ?5";
const char* const kSameEvent =
    "SELECT count(*) FROM hold_events WHERE seq = ?1 AND kind = ?2 AND hold_id = ?3"
    " AND user_id_bytes = ?5 AND at_ms = ?6 AND lines = ?7";

// insert_rows(): a row was not inserted and the table holds another row with its key.
constexpr int kSkipped = -1;

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

// Failures of a statement that retrying will not fix: "no such table", "table orders has no
// column named x" (SQLITE_ERROR), a NOT NULL or CHECK constraint (SQLITE_CONSTRAINT; primary
// keys are ON CONFLICT DO NOTHING), a datatype mismatch, a value too big. Busy, locked, full
// disk and I/O errors are retried.
bool is_rejected_error(int rc) {
  switch (rc & 0xFF) {
    case SQLITE_ERROR:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
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
  SinkStatus totals(uint64_t first, uint64_t last, BatchTotals& found) override;
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
    kSameOrderRow,
    kSameLineRow,
    kSameCodeRow,
    kSameEventRow,
    kCheck,
    kStmtCount
  };

  // Builds the status for a failed call with result `rc`, then drops the connection.
  SinkStatus fail(int rc, const std::string& what);
  SinkStatus open_db();
  // Rejected naming the first column the sidecar writes that a table lacks, else Ok.
  SinkStatus check_columns();
  SinkStatus survey(std::vector<std::string>& missing, uint64_t& cursor);
  // Rejected if the file at path_ is not the one open (deleted, or replaced by another).
  SinkStatus same_file();
  int exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
  // Runs a prepared statement to completion (bound parameters kept until the next bind).
  int step(Stmt s);
  // Inserts the rows of `r`: SQLITE_DONE, an error code, or kSkipped with skipped_ saying which
  // row could not be stored.
  int insert_rows(const proto::OutboxRecord& r);
  // The batch check's read-back of seqs first..last: SQLITE_ROW, or an error code.
  int read_totals(uint64_t first, uint64_t last, BatchTotals& found);
  // Binds `bind` to the INSERT `ins` and runs it; if its key existed (nothing inserted), binds
  // it to the lookup `same` too: SQLITE_DONE if the existing row is the same, else kSkipped.
  template <class Bind>
  int put(Stmt ins, Stmt same, const Bind& bind);
  // A string field as its two columns: text at `i` (NULL unless is_sql_text), bytes at i + 1.
  static void bind_string(sqlite3_stmt* st, int i, std::string_view s) {
    if (is_sql_text(s)) {
      sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(st, i);
    }
    sqlite3_bind_blob(st, i + 1, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  dev_t dev_ = 0;  // the open file's, to notice it deleted or replaced under us
  ino_t ino_ = 0;
  sqlite3_stmt* stmts_[kStmtCount] = {};
  std::string skipped_;  // insert_rows(): the row that was kSkipped
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
  if (is_config_error(rc)) return SinkStatus::Config(msg);
  return is_rejected_error(rc) ? SinkStatus::Rejected(msg) : SinkStatus::Unavailable(msg);
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
  struct stat st_file {};
  if (::stat(path_.c_str(), &st_file) != 0) return fail(SQLITE_CANTOPEN, "cannot stat the file");
  dev_ = st_file.st_dev;
  ino_ = st_file.st_ino;
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

SinkStatus SqliteSink::check_columns() {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT name FROM pragma_table_info(?1)", -1, &st, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "cannot list the tables' columns");
  Status missing;
  for (const TableColumns& t : kTables) {
    std::set<std::string, std::less<>> have;
    sqlite3_bind_text(st, 1, t.table, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      have.emplace(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) break;
    missing = missing_columns(t, have);
    if (!missing.ok()) break;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return fail(rc, "cannot list the tables' columns");
  if (missing.ok()) return SinkStatus::Ok();
  exec("ROLLBACK");
  close();
  return SinkStatus::Rejected("sqlite: " + missing.message());
}

// Which of kTables do not exist, and the cursor's seq (0 without its table or row).
SinkStatus SqliteSink::survey(std::vector<std::string>& missing, uint64_t& cursor) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                              -1, &st, nullptr);
  for (size_t i = 0; rc == SQLITE_OK && i < kTables.size(); ++i) {
    sqlite3_bind_text(st, 1, kTables[i].table, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) missing.emplace_back(kTables[i].table);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? sqlite3_reset(st) : rc;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK) return fail(rc, "cannot list the tables");
  cursor = 0;
  if (std::find(missing.begin(), missing.end(), kCursorColumns.table) != missing.end()) {
    return SinkStatus::Ok();
  }
  rc = sqlite3_prepare_v2(db_, kCursorReadSql, -1, &st, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) cursor = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(rc, "cannot read the cursor");
  return SinkStatus::Ok();
}

SinkStatus SqliteSink::same_file() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    return SinkStatus::Ok();
  }
  close();
  return SinkStatus::Rejected(
      "sqlite: " + path_ +
      " was deleted or replaced while stockd-outbox had it open: what it copied since is in the "
      "old file, not at this path; stopping (restarted, it copies into the database now at the "
      "path from that database's cursor, as far as stockd still keeps its records)");
}

SinkStatus SqliteSink::open() {
  if (db_ != nullptr) return same_file();
  if (SinkStatus s = open_db(); !s.ok()) return s;
  int rc = exec("BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return fail(rc, "cannot begin the schema transaction");
  std::vector<std::string> missing;
  uint64_t cursor = 0;
  if (SinkStatus s = survey(missing, cursor); !s.ok()) return s;
  bool create = false;
  if (Status plan = schema_plan(missing, cursor, create); !plan.ok()) {
    exec("ROLLBACK");
    close();
    return SinkStatus::Rejected("sqlite: " + plan.message());
  }
  for (size_t i = 0; create && i < kSchemaDdl.size(); ++i) {
    if ((rc = exec(schema_ddl(kSchemaDdl[i], "BLOB").c_str())) != SQLITE_OK) {
      return fail(rc, "cannot create the schema");
    }
  }
  if (SinkStatus s = check_columns(); !s.ok()) return s;
  const std::string inserts[] = {insert_sql(kOrdersColumns), insert_sql(kLinesColumns),
                                 insert_sql(kCodesColumns), insert_sql(kEventsColumns)};
  const char* sql[kStmtCount] = {"BEGIN IMMEDIATE",  "COMMIT",           "ROLLBACK",
                                 kCursorReadSql,     kCursorMoveSql,     kCursorResetSql,
                                 inserts[0].c_str(), inserts[1].c_str(), inserts[2].c_str(),
                                 inserts[3].c_str(), kSameOrder,         kSameLine,
                                 kSameCode,          kSameEvent,         kBatchCheckSql};
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

template <class Bind>
int SqliteSink::put(Stmt ins, Stmt same, const Bind& bind) {
  bind(stmts_[ins]);
  int rc = step(ins);
  if (rc != SQLITE_DONE || sqlite3_changes(db_) == 1) return rc;
  sqlite3_stmt* st = stmts_[same];
  bind(st);
  rc = sqlite3_step(st);
  const bool there = rc == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return rc;
  return there ? SQLITE_DONE : kSkipped;
}

int SqliteSink::insert_rows(const proto::OutboxRecord& r) {
  const auto id = static_cast<int64_t>(r.order_id);
  const auto at = [&] { return "record " + std::to_string(r.seq) + ": "; };  // for skipped_
  std::string a, b;                                                          // scratch for sql_text
  int rc = SQLITE_DONE;
  if (r.kind != proto::OutboxKind::kOrder) {
    const std::string json = lines_json(r.lines);
    rc = put(kEvent, kSameEventRow, [&](sqlite3_stmt* st) {
      // seq, kind, hold_id, user_id, user_id_bytes, at_ms, lines
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(r.seq));
      sqlite3_bind_text(st, 2, event_kind_name(r.kind), -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, id);
      bind_string(st, 4, r.user);
      sqlite3_bind_int64(st, 6, r.at_ms);
      sqlite3_bind_text(st, 7, json.data(), static_cast<int>(json.size()), SQLITE_STATIC);
    });
    if (rc == kSkipped)
      skipped_ = at() + "its hold_events row was not stored (another row has seq " +
                 std::to_string(r.seq) + "?)";
    return rc;
  }
  rc = put(kOrder, kSameOrderRow, [&](sqlite3_stmt* st) {
    // order_id, seq, user_id, user_id_bytes, idem_key, idem_key_bytes, created_at_ms,
    // committed_at_ms
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, static_cast<int64_t>(r.seq));
    bind_string(st, 3, r.user);
    if (r.key.empty()) {
      sqlite3_bind_null(st, 5);
      sqlite3_bind_null(st, 6);
    } else {
      bind_string(st, 5, r.key);
    }
    sqlite3_bind_int64(st, 7, r.created_at_ms);
    sqlite3_bind_int64(st, 8, r.at_ms);
  });
  if (rc == kSkipped) {
    skipped_ = at() + "its orders row was not stored (another row has order_id " +
               std::to_string(id) + " or seq " + std::to_string(r.seq) + "?)";
  }
  if (rc != SQLITE_DONE) return rc;
  for (const proto::Line& l : r.lines) {
    rc = put(kLine, kSameLineRow, [&](sqlite3_stmt* st) {
      // order_id, sku, sku_bytes, qty
      sqlite3_bind_int64(st, 1, id);
      bind_string(st, 2, l.sku);
      sqlite3_bind_int64(st, 4, l.qty);
    });
    if (rc == kSkipped) {
      skipped_ = at() + "its order_lines row for sku '" + std::string(sql_text(l.sku, a)) +
                 "' was not stored (another row has order_id " + std::to_string(id) +
                 " and that sku?)";
    }
    if (rc != SQLITE_DONE) return rc;
  }
  for (const proto::SkuCode& c : r.codes) {
    rc = put(kCode, kSameCodeRow, [&](sqlite3_stmt* st) {
      // code, code_bytes, sku, sku_bytes, order_id
      bind_string(st, 1, c.code);
      bind_string(st, 3, c.sku);
      sqlite3_bind_int64(st, 5, id);
    });
    if (rc == kSkipped) {
      skipped_ = at() + "its order_codes row for sku '" + std::string(sql_text(c.sku, a)) +
                 "' and code '" + std::string(sql_text(c.code, b)) +
                 "' was not stored (another order has that code?)";
    }
    if (rc != SQLITE_DONE) return rc;
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
  // The batch check: every row was inserted or is there already (insert_rows), and the read-back
  // by seq finds the batch's orders and hold events.
  const std::string range =
      std::to_string(records.front().seq) + ".." + std::to_string(records.back().seq);
  for (const proto::OutboxRecord& r : records) {
    if ((rc = insert_rows(r)) == kSkipped) {
      step(kRollback);
      return SinkStatus::Rejected("sqlite: batch check of records " + range +
                                  " failed: " + skipped_);
    }
    if (rc != SQLITE_DONE) return fail(rc, "cannot insert record " + std::to_string(r.seq));
  }
  BatchTotals found;
  if ((rc = read_totals(records.front().seq, records.back().seq, found)) != SQLITE_ROW) {
    return fail(rc, "cannot check records " + range);
  }
  if (Status why = compare_totals(batch_totals(records), found); !why.ok()) {
    step(kRollback);
    return SinkStatus::Rejected("sqlite: batch check of records " + range +
                                " failed: " + why.message());
  }
  if ((rc = step(kCommit)) != SQLITE_DONE) return fail(rc, "cannot commit");
  return SinkStatus::Ok();
}

int SqliteSink::read_totals(uint64_t first, uint64_t last, BatchTotals& found) {
  sqlite3_stmt* check = stmts_[kCheck];
  sqlite3_bind_int64(check, 1, static_cast<int64_t>(first));
  sqlite3_bind_int64(check, 2, static_cast<int64_t>(last));
  const int rc = sqlite3_step(check);
  if (rc == SQLITE_ROW) {
    for (int i = 0; i < BatchTotals::kColumns; ++i) found[i] = sqlite3_column_int64(check, i);
  }
  sqlite3_reset(check);
  return rc;
}

SinkStatus SqliteSink::totals(uint64_t first, uint64_t last, BatchTotals& found) {
  if (SinkStatus s = open(); !s.ok()) return s;
  if (int rc = read_totals(first, last, found); rc != SQLITE_ROW) {
    return fail(rc, "cannot read the rows of records " + std::to_string(first) + ".." +
                        std::to_string(last));
  }
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
