// PostgreSQL sink (libpq). One transaction per batch: move the cursor (compare-and-set), COPY
// the rows, check them (schema.h: kBatchCheckSql), COMMIT. COPY keeps a 5000-record batch to a
// handful of round trips. COPY and INSERT name their columns (schema.h), so columns an operator
// adds to the tables keep their defaults.
//
// Rows normally never exist yet (the cursor guarantees it), so the fast path COPYs straight
// into the tables. When a row does exist (a replay into a database that has it: unique
// violation), the transaction is rolled back and redone through the merge path: COPY into
// session-local staging tables, then INSERT ... SELECT ... ON CONFLICT DO NOTHING. The merge
// path is about half as fast, so it stays in use for a while once a conflict was seen.
#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "records.h"
#include "schema.h"
#include "sink.h"

namespace stockd::outbox {

namespace {

// Staging tables of the merge path: the sidecar's columns only (a table's own added columns,
// defaults and constraints stay with the table), in the order of schema.h's column lists.
const char* const kStageDdl =
    "CREATE TEMP TABLE IF NOT EXISTS stage_orders (order_id BIGINT, seq BIGINT, user_id TEXT,"
    " user_id_bytes BYTEA, idem_key TEXT, idem_key_bytes BYTEA, created_at_ms BIGINT,"
    " committed_at_ms BIGINT) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_lines (order_id BIGINT, sku TEXT, sku_bytes BYTEA,"
    " qty BIGINT) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_codes (code TEXT, code_bytes BYTEA, sku TEXT,"
    " sku_bytes BYTEA, order_id BIGINT) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_events (seq BIGINT, kind TEXT, hold_id BIGINT,"
    " user_id TEXT, user_id_bytes BYTEA, at_ms BIGINT, lines TEXT) ON COMMIT DELETE ROWS";

// The staging table of each table the rows go to, in the order CopyRows are kept.
struct Target {
  const TableColumns& table;
  const char* stage;
};
const Target kTargets[] = {{kOrdersColumns, "stage_orders"},
                           {kLinesColumns, "stage_lines"},
                           {kCodesColumns, "stage_codes"},
                           {kEventsColumns, "stage_events"}};

// The merge path's part of the batch check: per table, how many staged rows the table does not
// hold with the same key and values (0 when every row was inserted or was already there). Each
// row is looked up through the table's primary key (a correlated subquery per row: never a
// scan of the whole table).
const char* const kMissingAfterMerge =
    "SELECT"
    " (SELECT count(*) FROM stage_orders s WHERE (SELECT count(*) FROM orders t"
    "   WHERE t.order_id = s.order_id AND t.seq = s.seq AND t.user_id_bytes = s.user_id_bytes"
    "   AND t.idem_key_bytes IS NOT DISTINCT FROM s.idem_key_bytes"
    "   AND t.created_at_ms = s.created_at_ms AND t.committed_at_ms = s.committed_at_ms) = 0),"
    " (SELECT count(*) FROM stage_lines s WHERE (SELECT count(*) FROM order_lines t"
    "   WHERE t.order_id = s.order_id AND t.sku_bytes = s.sku_bytes AND t.qty = s.qty) = 0),"
    " (SELECT count(*) FROM stage_codes s WHERE (SELECT count(*) FROM order_codes t"
    "   WHERE t.sku_bytes = s.sku_bytes AND t.code_bytes = s.code_bytes"
    "   AND t.order_id = s.order_id) = 0),"
    " (SELECT count(*) FROM stage_events s WHERE (SELECT count(*) FROM hold_events t"
    "   WHERE t.seq = s.seq AND t.kind = s.kind AND t.hold_id = s.hold_id"
    "   AND t.user_id_bytes = s.user_id_bytes AND t.at_ms = s.at_ms AND t.lines = s.lines) = 0)";

std::string merge_sql() {
  std::string sql;
  for (const Target& t : kTargets) {
    sql += std::string(sql.empty() ? "" : ";") + "INSERT INTO " + t.table.table + " (" +
           t.table.columns + ") SELECT " + t.table.columns + " FROM " + t.stage +
           " ON CONFLICT DO NOTHING";
  }
  return sql;
}

constexpr int kMergeBatchesAfterConflict = 16;
const char* const kUniqueViolation = "23505";

// Failures at connect time that retrying will not fix. After a password was sent, a refusal
// is taken for wrong credentials (in whatever language the server speaks: libpq gives no
// SQLSTATE for a failed connect), unless it says that the server accepted the password and
// cannot take the session now, which passes: full (53300), starting, stopping or in recovery
// (57P03), the database closed to connections (55000: ALLOW_CONNECTIONS false, as in a
// maintenance or a failover), the session ended by an administrator or a crash (57P01, 57P02),
// the server out of memory or processes (53200, 58000), or the link lost (libpq's own words).
// libpq's message holds every attempt (each host of a failover list, each address, SSL then
// plain), each starting "connection to server": only the last, which ended the connect, counts.
bool is_config_failure(PGconn* c) {
  const std::string_view all = PQerrorMessage(c);
  const size_t last = all.rfind("connection to server");
  const std::string text(last == std::string_view::npos ? all : all.substr(last));
  const char* m = text.c_str();
  if (PQconnectionNeedsPassword(c)) return true;
  if (PQconnectionUsedPassword(c)) {
    for (const char* passing :
         {"too many connections", "too many clients", "connection slots", "starting up",
          "shutting down", "recovery mode", "accepting connections", "terminating connection",
          "out of memory", "could not fork", "closed the connection unexpectedly",
          "could not receive data", "could not send data", "SSL SYSCALL error",
          "SSL connection has been closed", "timeout expired"}) {
      if (std::strstr(m, passing) != nullptr) return false;
    }
    return true;
  }
  for (const char* needle : {"authentication failed", "does not exist", "no pg_hba.conf entry",
                             "password", "permission denied"}) {
    if (std::strstr(m, needle) != nullptr) return true;
  }
  return false;
}

// SQLSTATEs of configuration problems: authorization (28), unknown database (3D), no privilege
// (42501: e.g. no CREATE on schema public, no INSERT on a table).
bool is_config_state(const char* state) {
  return std::strncmp(state, "28", 2) == 0 || std::strncmp(state, "3D", 2) == 0 ||
         std::strcmp(state, "42501") == 0;
}

// SQLSTATEs of a database that refuses the rows for good: the tables' shape (42: undefined
// column or table, datatype mismatch), a value (22: data exception) or a constraint (23: not
// null, check, foreign key; unique violations are merged) it does not accept. Connection loss
// (08), serialization failures and deadlocks (40), insufficient resources such as a full disk
// (53), shutdowns (57) and the like are retried.
bool is_rejected_state(const char* state) {
  return std::strncmp(state, "42", 2) == 0 || std::strncmp(state, "22", 2) == 0 ||
         std::strncmp(state, "23", 2) == 0;
}

std::string one_line(const char* m) {
  std::string s = m != nullptr ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return s;
}

// Rows of one table in COPY text format.
class CopyRows {
 public:
  bool empty() const { return buf_.empty(); }
  const std::string& data() const { return buf_; }
  void clear() { buf_.clear(); }
  CopyRows& num(int64_t v) {
    sep();
    char tmp[24];
    auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
    buf_.append(tmp, r.ptr);
    return *this;
  }
  CopyRows& null() {
    sep();
    buf_ += "\\N";
    return *this;
  }
  // A string field as its two columns: the text (NULL unless is_sql_text) and the bytes.
  CopyRows& str(std::string_view s) {
    if (is_sql_text(s)) {
      text(s);
    } else {
      null();
    }
    sep();
    buf_ += "\\\\x";  // bytea hex input; COPY text format doubles the backslash
    buf_ += hex(s);
    return *this;
  }
  // `s` must be valid UTF-8 without NUL (is_sql_text).
  CopyRows& text(std::string_view s) {
    sep();
    for (char c : s) {
      switch (c) {
        case '\\':
          buf_ += "\\\\";
          break;
        case '\t':
          buf_ += "\\t";
          break;
        case '\n':
          buf_ += "\\n";
          break;
        case '\r':
          buf_ += "\\r";
          break;
        default:
          buf_ += c;
      }
    }
    return *this;
  }
  void end_row() {
    buf_ += '\n';
    first_ = true;
  }

 private:
  void sep() {
    if (!first_) buf_ += '\t';
    first_ = false;
  }
  std::string buf_;
  bool first_ = true;
};

class PgSink final : public Sink {
 public:
  PgSink(std::string conninfo, int timeout_ms)
      : conninfo_(std::move(conninfo)), timeout_ms_(timeout_ms) {}
  ~PgSink() override { close(); }

  SinkStatus open() override;
  SinkStatus read_cursor(uint64_t& cursor) override;
  SinkStatus write_batch(uint64_t expected_cursor, std::span<const proto::OutboxRecord> records,
                         int64_t now_ms) override;
  SinkStatus totals(uint64_t first, uint64_t last, BatchTotals& found) override;
  SinkStatus reset_cursor(uint64_t cursor, int64_t now_ms) override;
  void close() override {
    PQclear(last_);
    last_ = nullptr;
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }
  std::string describe() const override;

 private:
  // Status of a failed step; rolls back what it can and drops the connection. A SQLSTATE of
  // is_rejected_state gives kRejected unless `retry` (then kUnavailable).
  SinkStatus fail(const std::string& what, bool retry = false);
  // Runs `sql` (one or more statements); true if the last one succeeded. The result is kept in
  // last_ for the caller, which must not hold an older one.
  bool run(const char* sql);
  bool run_params(const char* sql, std::initializer_list<int64_t> params);
  bool copy(const TableColumns& table, const char* into, const CopyRows& rows);
  // Rejected naming the first column the sidecar writes that a table lacks, else Ok.
  SinkStatus check_columns();
  // The batch check's read-back of seqs first..last (in last_ after a failure).
  bool read_totals(int64_t first, int64_t last, BatchTotals& found);
  void stage(const proto::OutboxRecord& r);
  // One attempt at the batch staged in the CopyRows, as a transaction. On a unique violation
  // in the fast path (merge false) it rolls back and sets `conflict`.
  SinkStatus transact(int64_t expected, int64_t first, int64_t last, int64_t now_ms, bool merge,
                      bool& conflict);

  // Connects with the deadlines below unless conninfo_ sets them; nullptr if out of memory.
  PGconn* connect() const;

  std::string conninfo_;
  const int timeout_ms_;
  PGconn* conn_ = nullptr;
  PGresult* last_ = nullptr;
  CopyRows rows_[4];           // orders, order_lines, order_codes, hold_events (kTargets' order)
  int64_t row_count_[4] = {};  // rows in each
  BatchTotals want_;           // what the staged batch should leave in the tables
  int merge_left_ = 0;         // batches still to write through the merge path
};

void ignore_notice(void*, const char*) {}

std::string PgSink::describe() const {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo_.c_str(), &err);
  PQfreemem(err);
  if (opts == nullptr) return "postgresql (unparseable connection string)";
  std::string out = "postgresql";
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view k = o->keyword;
    if (k == "host" || k == "hostaddr" || k == "port" || k == "dbname" || k == "user") {
      out += std::string(" ") + o->keyword + "=" + o->val;
    }
  }
  PQconninfoFree(opts);
  return out;
}

bool PgSink::run(const char* sql) {
  PQclear(last_);
  last_ = PQexec(conn_, sql);
  ExecStatusType st = PQresultStatus(last_);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

bool PgSink::run_params(const char* sql, std::initializer_list<int64_t> params) {
  std::string text[3];
  const char* values[3] = {};
  int n = 0;
  for (int64_t p : params) {
    text[n] = std::to_string(p);
    values[n] = text[n].c_str();
    ++n;
  }
  PQclear(last_);
  last_ = PQexecParams(conn_, sql, n, nullptr, values, nullptr, nullptr, 0);
  ExecStatusType st = PQresultStatus(last_);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

SinkStatus PgSink::fail(const std::string& what, bool retry) {
  // The failed statement's message if it has one, else the connection's (COPY, lost link).
  const char* m = last_ != nullptr ? PQresultErrorMessage(last_) : "";
  std::string why = one_line(m[0] != '\0' ? m : PQerrorMessage(conn_));
  const char* state = last_ != nullptr ? PQresultErrorField(last_, PG_DIAG_SQLSTATE) : nullptr;
  std::string code = state != nullptr ? state : "";
  close();  // an open transaction is rolled back by the server when the session ends
  std::string msg = "postgresql: " + what + ": " + why;
  if (!code.empty() && is_config_state(code.c_str())) return SinkStatus::Config(msg);
  if (!retry && !code.empty() && is_rejected_state(code.c_str())) {
    return SinkStatus::Rejected(msg + " (SQLSTATE " + code + ")");
  }
  return SinkStatus::Unavailable(msg);
}

// No wait on the database is unbounded: a connect, a dead peer that never answers (TCP
// keepalives, and tcp_user_timeout for data it never acknowledges), a statement or a lock wait
// (statement_timeout, lock_timeout), and a transaction left open by a sidecar that stopped
// (idle_in_transaction_session_timeout, which frees the cursor row for another sidecar). Each
// is a default: the connection string's own keywords, and settings made for the role or the
// database, win.
PGconn* PgSink::connect() const {
  // PGCONNECT_TIMEOUT, when set, is the operator's: the keyword would override it.
  const char* env_timeout = std::getenv("PGCONNECT_TIMEOUT");
  const std::string connect_s = env_timeout != nullptr && env_timeout[0] != '\0'
                                    ? env_timeout
                                    : std::to_string(std::max(2, (timeout_ms_ + 999) / 1000));
  const std::string timeout = std::to_string(timeout_ms_);
  // Later keywords override earlier ones; conninfo_, expanded as dbname, comes last.
  const char* keys[] = {
      "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
      "keepalives_count", "tcp_user_timeout", "dbname",          nullptr};
  const char* values[] = {connect_s.c_str(), "1",    "10", "5", "3", timeout.c_str(),
                          conninfo_.c_str(), nullptr};
  return PQconnectdbParams(keys, values, /*expand_dbname=*/1);
}

SinkStatus PgSink::open() {
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) return SinkStatus::Ok();
  close();
  conn_ = connect();
  if (conn_ == nullptr) return SinkStatus::Unavailable("postgresql: out of memory");
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = "postgresql: cannot connect: " + one_line(PQerrorMessage(conn_));
    bool config = is_config_failure(conn_);
    close();
    return config ? SinkStatus::Config(msg) : SinkStatus::Unavailable(msg);
  }
  PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
  if (PQsetClientEncoding(conn_, "UTF8") != 0) return fail("cannot set client_encoding UTF8");
  if (!run("SET client_min_messages = warning")) return fail("cannot configure the session");
  const std::string timeouts =
      "SELECT set_config(name, '" + std::to_string(timeout_ms_) +
      "', false) FROM (VALUES ('statement_timeout'), ('lock_timeout'),"
      " ('idle_in_transaction_session_timeout')) AS t(name) WHERE current_setting(name) = '0'";
  if (!run(timeouts.c_str())) return fail("cannot configure the session");
  // Two sidecars creating the schema at once may collide (a unique violation in the catalog,
  // "relation already exists"): the loser retries and finds it. A schema it cannot use is
  // check_columns()'s to say.
  if (!run("BEGIN")) return fail("cannot begin the schema transaction", true);
  std::vector<std::string> missing;
  for (const TableColumns& t : kTables) {
    const std::string q = std::string("SELECT to_regclass('") + t.table + "') IS NULL";
    if (!run(q.c_str())) return fail("cannot list the tables", true);
    if (PQgetvalue(last_, 0, 0)[0] == 't') missing.emplace_back(t.table);
  }
  uint64_t cursor = 0;
  if (std::find(missing.begin(), missing.end(), kCursorColumns.table) == missing.end()) {
    if (!run(kCursorReadSql)) return fail("cannot read the cursor", true);
    if (PQntuples(last_) > 0) cursor = std::strtoull(PQgetvalue(last_, 0, 0), nullptr, 10);
  }
  bool create = false;
  if (Status plan = schema_plan(missing, cursor, create); !plan.ok()) {
    run("ROLLBACK");
    close();
    return SinkStatus::Rejected("postgresql: " + plan.message());
  }
  // A schema that is all there is not created again: CREATE ... IF NOT EXISTS still needs the
  // CREATE privilege, which a role given only the tables' rights lacks.
  std::string ddl;
  for (size_t i = 0; create && i < kSchemaDdl.size(); ++i) {
    ddl += schema_ddl(kSchemaDdl[i], "BYTEA") + ";";
  }
  if (!ddl.empty() && !run(ddl.c_str())) return fail("cannot create the schema", true);
  if (SinkStatus s = check_columns(); !s.ok()) return s;
  if (!run_params(kCursorInitSql, {0}) || !run("COMMIT")) {
    return fail("cannot create the schema", true);
  }
  if (!run(kStageDdl)) return fail("cannot create the staging tables");
  PQclear(last_);
  last_ = nullptr;
  return SinkStatus::Ok();
}

SinkStatus PgSink::read_cursor(uint64_t& cursor) {
  if (SinkStatus s = open(); !s.ok()) return s;
  if (!run(kCursorReadSql)) return fail("cannot read the cursor");
  if (PQntuples(last_) != 1) return fail("the cursor row is missing");
  cursor = std::strtoull(PQgetvalue(last_, 0, 0), nullptr, 10);
  return SinkStatus::Ok();
}

SinkStatus PgSink::check_columns() {
  for (const TableColumns& t : kTables) {
    // The table the unqualified name resolves to, as in the COPY and INSERT statements.
    const char* sql =
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0"
        " AND NOT attisdropped";
    PQclear(last_);
    last_ = PQexecParams(conn_, sql, 1, nullptr, &t.table, nullptr, nullptr, 0);
    if (PQresultStatus(last_) != PGRES_TUPLES_OK) return fail("cannot list the tables' columns");
    std::set<std::string, std::less<>> have;
    for (int i = 0; i < PQntuples(last_); ++i) have.emplace(PQgetvalue(last_, i, 0));
    if (Status m = missing_columns(t, have); !m.ok()) {
      close();
      return SinkStatus::Rejected("postgresql: " + m.message());
    }
  }
  return SinkStatus::Ok();
}

void PgSink::stage(const proto::OutboxRecord& r) {
  const auto id = static_cast<int64_t>(r.order_id);
  if (r.kind != proto::OutboxKind::kOrder) {
    CopyRows& events = rows_[3];
    events.num(static_cast<int64_t>(r.seq)).text(event_kind_name(r.kind)).num(id).str(r.user);
    events.num(r.at_ms).text(lines_json(r.lines)).end_row();
    return;
  }
  CopyRows& orders = rows_[0];
  orders.num(id).num(static_cast<int64_t>(r.seq)).str(r.user);
  (r.key.empty() ? orders.null().null() : orders.str(r.key)).num(r.created_at_ms);
  orders.num(r.at_ms).end_row();
  for (const proto::Line& l : r.lines) rows_[1].num(id).str(l.sku).num(l.qty).end_row();
  for (const proto::SkuCode& c : r.codes) {
    rows_[2].str(c.code).str(c.sku).num(id).end_row();
  }
}

bool PgSink::copy(const TableColumns& table, const char* into, const CopyRows& rows) {
  if (rows.empty()) return true;
  std::string sql = std::string("COPY ") + into + " (" + table.columns + ") FROM STDIN";
  PQclear(last_);
  last_ = PQexec(conn_, sql.c_str());
  if (PQresultStatus(last_) != PGRES_COPY_IN) return false;
  const std::string& d = rows.data();
  if (PQputCopyData(conn_, d.data(), static_cast<int>(d.size())) != 1) return false;
  if (PQputCopyEnd(conn_, nullptr) != 1) return false;
  PQclear(last_);
  last_ = PQgetResult(conn_);
  bool ok = PQresultStatus(last_) == PGRES_COMMAND_OK;
  while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  return ok;
}

SinkStatus PgSink::write_batch(uint64_t expected_cursor,
                               std::span<const proto::OutboxRecord> records, int64_t now_ms) {
  if (records.empty()) return SinkStatus::Ok();
  if (SinkStatus s = open(); !s.ok()) return s;
  for (CopyRows& t : rows_) t.clear();
  for (const proto::OutboxRecord& r : records) stage(r);
  want_ = batch_totals(records);
  const int64_t counts[] = {want_.orders, want_.lines, want_.codes, want_.events};
  std::copy(std::begin(counts), std::end(counts), row_count_);
  const auto expected = static_cast<int64_t>(expected_cursor);
  const auto first = static_cast<int64_t>(records.front().seq);
  const auto last = static_cast<int64_t>(records.back().seq);
  bool conflict = false;
  if (merge_left_ == 0) {
    SinkStatus s = transact(expected, first, last, now_ms, false, conflict);
    if (!conflict) return s;
    merge_left_ = kMergeBatchesAfterConflict;
  } else {
    --merge_left_;
  }
  return transact(expected, first, last, now_ms, true, conflict);
}

SinkStatus PgSink::transact(int64_t expected, int64_t first, int64_t last, int64_t now_ms,
                            bool merge, bool& conflict) {
  const std::string range = std::to_string(first) + ".." + std::to_string(last);
  if (!run("BEGIN")) return fail("cannot begin");
  // The cursor row first: its row lock also orders concurrent writers of one database.
  if (!run_params(kCursorMoveSql, {last, now_ms, expected})) return fail("cannot move the cursor");
  if (std::strcmp(PQcmdTuples(last_), "1") != 0) {
    run("ROLLBACK");
    uint64_t stored = 0;
    if (SinkStatus s = read_cursor(stored); !s.ok()) return s;
    return SinkStatus::CursorMoved("the stored cursor is " + std::to_string(stored) +
                                   ", expected " + std::to_string(expected));
  }
  // The batch check, part 1: every row was inserted (COPY's count) or, on the merge path, is
  // in the table with the same values.
  const std::string failed = "postgresql: batch check of records " + range + " failed: ";
  for (size_t i = 0; i < std::size(kTargets); ++i) {
    const Target& t = kTargets[i];
    if (copy(t.table, merge ? t.stage : t.table.table, rows_[i])) {
      const int64_t n = rows_[i].empty() ? 0 : std::strtoll(PQcmdTuples(last_), nullptr, 10);
      if (merge || n == row_count_[i]) continue;
      run("ROLLBACK");
      return SinkStatus::Rejected(failed + "COPY stored " + std::to_string(n) + " of the " +
                                  std::to_string(row_count_[i]) + " rows for " + t.table.table +
                                  " (a trigger or rule on the table?)");
    }
    const char* state = PQresultErrorField(last_, PG_DIAG_SQLSTATE);
    if (!merge && state != nullptr && std::strcmp(state, kUniqueViolation) == 0 &&
        run("ROLLBACK")) {
      conflict = true;
      return SinkStatus::Ok();
    }
    return fail(std::string("cannot copy records ") + range + (merge ? " (merge)" : ""));
  }
  if (merge) {
    if (!run(merge_sql().c_str())) return fail("cannot insert records " + range);
    if (!run(kMissingAfterMerge) || PQntuples(last_) != 1) {
      return fail("cannot check records " + range);
    }
    for (size_t i = 0; i < std::size(kTargets); ++i) {
      const int64_t missing = std::strtoll(PQgetvalue(last_, 0, static_cast<int>(i)), nullptr, 10);
      if (missing == 0) continue;
      const std::string table = kTargets[i].table.table;
      run("ROLLBACK");
      return SinkStatus::Rejected(failed + std::to_string(missing) + " of its " +
                                  std::to_string(row_count_[i]) + " rows for " + table +
                                  " were not stored (other rows have their keys?)");
    }
  }
  // Part 2, the read-back: the tables hold the batch's orders and hold events by seq.
  BatchTotals found;
  if (!read_totals(first, last, found)) return fail("cannot check records " + range);
  if (Status why = compare_totals(want_, found); !why.ok()) {
    run("ROLLBACK");
    return SinkStatus::Rejected(failed + why.message());
  }
  if (!run("COMMIT") || std::strcmp(PQcmdStatus(last_), "COMMIT") != 0) {
    return fail("cannot commit records " + range);
  }
  PQclear(last_);
  last_ = nullptr;
  return SinkStatus::Ok();
}

bool PgSink::read_totals(int64_t first, int64_t last, BatchTotals& found) {
  if (!run_params(kBatchCheckSql, {first, last}) || PQntuples(last_) != 1 ||
      PQnfields(last_) != BatchTotals::kColumns) {
    return false;
  }
  for (int i = 0; i < BatchTotals::kColumns; ++i) {
    found[i] = std::strtoll(PQgetvalue(last_, 0, i), nullptr, 10);
  }
  return true;
}

SinkStatus PgSink::totals(uint64_t first, uint64_t last, BatchTotals& found) {
  if (SinkStatus s = open(); !s.ok()) return s;
  if (!read_totals(static_cast<int64_t>(first), static_cast<int64_t>(last), found)) {
    return fail(
        "cannot read the rows of records " + std::to_string(first) + ".." + std::to_string(last),
        true);
  }
  PQclear(last_);
  last_ = nullptr;
  return SinkStatus::Ok();
}

SinkStatus PgSink::reset_cursor(uint64_t cursor, int64_t now_ms) {
  if (SinkStatus s = open(); !s.ok()) return s;
  if (!run_params(kCursorResetSql, {static_cast<int64_t>(cursor), now_ms})) {
    return fail("cannot reset the cursor");
  }
  return SinkStatus::Ok();
}

}  // namespace

std::unique_ptr<Sink> make_pg_sink(const std::string& conninfo, int timeout_ms) {
  return std::make_unique<PgSink>(conninfo, timeout_ms);
}

}  // namespace stockd::outbox
