// PostgreSQL sink (libpq). One transaction per batch: move the cursor (compare-and-set), COPY
// the rows, COMMIT. COPY keeps a 5000-record batch to a handful of round trips.
//
// Rows normally never exist yet (the cursor guarantees it), so the fast path COPYs straight
// into the tables. When a row does exist (a replay into a database that has it: unique
// violation), the transaction is rolled back and redone through the merge path: COPY into
// session-local staging tables, then INSERT ... SELECT ... ON CONFLICT DO NOTHING. The merge
// path is about half as fast, so it stays in use for a while once a conflict was seen.
#include <libpq-fe.h>

#include <charconv>
#include <cstring>

#include "records.h"
#include "schema.h"
#include "sink.h"

namespace stockd::outbox {

namespace {

const char* const kStageDdl =
    "CREATE TEMP TABLE IF NOT EXISTS stage_orders (LIKE orders) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_lines (LIKE order_lines) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_codes (LIKE order_codes) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_events (LIKE hold_events) ON COMMIT DELETE ROWS";

const char* const kMerge =
    "INSERT INTO orders SELECT * FROM stage_orders ON CONFLICT DO NOTHING;"
    "INSERT INTO order_lines SELECT * FROM stage_lines ON CONFLICT DO NOTHING;"
    "INSERT INTO order_codes SELECT * FROM stage_codes ON CONFLICT DO NOTHING;"
    "INSERT INTO hold_events SELECT * FROM stage_events ON CONFLICT DO NOTHING";

constexpr int kMergeBatchesAfterConflict = 16;
const char* const kUniqueViolation = "23505";

// Failures at connect time that retrying will not fix.
bool is_config_failure(PGconn* c) {
  if (PQconnectionNeedsPassword(c) || PQconnectionUsedPassword(c)) return true;
  const char* m = PQerrorMessage(c);
  for (const char* needle : {"authentication failed", "does not exist", "no pg_hba.conf entry",
                             "password", "permission denied"}) {
    if (std::strstr(m, needle) != nullptr) return true;
  }
  return false;
}

// SQLSTATEs that retrying will not fix: authorization (28), unknown database (3D), privilege
// and schema problems (42: e.g. no CREATE on schema public, a table of another shape).
bool is_config_state(const char* state) {
  return std::strncmp(state, "28", 2) == 0 || std::strncmp(state, "3D", 2) == 0 ||
         std::strncmp(state, "42", 2) == 0;
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
  CopyRows& text(std::string_view s) {
    sep();
    for (char c : sql_text(s, scratch_)) {
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
  std::string scratch_;
  bool first_ = true;
};

class PgSink final : public Sink {
 public:
  explicit PgSink(std::string conninfo) : conninfo_(std::move(conninfo)) {}
  ~PgSink() override { close(); }

  SinkStatus open() override;
  SinkStatus read_cursor(uint64_t& cursor) override;
  SinkStatus write_batch(uint64_t expected_cursor, std::span<const proto::OutboxRecord> records,
                         int64_t now_ms) override;
  SinkStatus reset_cursor(uint64_t cursor, int64_t now_ms) override;
  void close() override {
    PQclear(last_);
    last_ = nullptr;
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }
  std::string describe() const override;

 private:
  // Status of a failed step; rolls back what it can and drops the connection.
  SinkStatus fail(const std::string& what);
  // Runs `sql` (one or more statements); true if the last one succeeded. The result is kept in
  // last_ for the caller, which must not hold an older one.
  bool run(const char* sql);
  bool run_params(const char* sql, std::initializer_list<int64_t> params);
  bool copy(const char* table, const CopyRows& rows);
  void stage(const proto::OutboxRecord& r);
  // One attempt at the batch staged in the CopyRows, as a transaction. On a unique violation
  // in the fast path (merge false) it rolls back and sets `conflict`.
  SinkStatus transact(int64_t expected, int64_t last, int64_t now_ms, bool merge, bool& conflict);

  std::string conninfo_;
  PGconn* conn_ = nullptr;
  PGresult* last_ = nullptr;
  CopyRows orders_, lines_, codes_, events_;
  int merge_left_ = 0;  // batches still to write through the merge path
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

SinkStatus PgSink::fail(const std::string& what) {
  // The failed statement's message if it has one, else the connection's (COPY, lost link).
  const char* m = last_ != nullptr ? PQresultErrorMessage(last_) : "";
  std::string why = one_line(m[0] != '\0' ? m : PQerrorMessage(conn_));
  const char* state = last_ != nullptr ? PQresultErrorField(last_, PG_DIAG_SQLSTATE) : nullptr;
  close();  // an open transaction is rolled back by the server when the session ends
  std::string msg = "postgresql: " + what + ": " + why;
  return state != nullptr && is_config_state(state) ? SinkStatus::Config(msg)
                                                    : SinkStatus::Unavailable(msg);
}

SinkStatus PgSink::open() {
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) return SinkStatus::Ok();
  close();
  conn_ = PQconnectdb(conninfo_.c_str());
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
  // Two sidecars creating the schema at once may collide; the loser retries and finds it.
  std::string ddl = "BEGIN;";
  for (const char* s : kSchemaDdl) ddl += std::string(s) + ";";
  if (!run(ddl.c_str()) || !run_params(kCursorInitSql, {0}) || !run("COMMIT")) {
    return fail("cannot create the schema");
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

void PgSink::stage(const proto::OutboxRecord& r) {
  const auto id = static_cast<int64_t>(r.order_id);
  if (r.kind != proto::OutboxKind::kOrder) {
    events_.num(static_cast<int64_t>(r.seq)).text(event_kind_name(r.kind)).num(id).text(r.user);
    events_.num(r.at_ms).text(lines_json(r.lines)).end_row();
    return;
  }
  orders_.num(id).num(static_cast<int64_t>(r.seq)).text(r.user);
  (r.key.empty() ? orders_.null() : orders_.text(r.key)).num(r.created_at_ms).num(r.at_ms);
  orders_.end_row();
  for (const proto::Line& l : r.lines) lines_.num(id).text(l.sku).num(l.qty).end_row();
  for (const proto::SkuCode& c : r.codes) codes_.text(c.code).text(c.sku).num(id).end_row();
}

bool PgSink::copy(const char* table, const CopyRows& rows) {
  if (rows.empty()) return true;
  std::string sql = std::string("COPY ") + table + " FROM STDIN";
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
  for (CopyRows* t : {&orders_, &lines_, &codes_, &events_}) t->clear();
  for (const proto::OutboxRecord& r : records) stage(r);
  const auto last = static_cast<int64_t>(records.back().seq);
  bool conflict = false;
  if (merge_left_ == 0) {
    SinkStatus s = transact(static_cast<int64_t>(expected_cursor), last, now_ms, false, conflict);
    if (!conflict) return s;
    merge_left_ = kMergeBatchesAfterConflict;
  } else {
    --merge_left_;
  }
  return transact(static_cast<int64_t>(expected_cursor), last, now_ms, true, conflict);
}

SinkStatus PgSink::transact(int64_t expected, int64_t last, int64_t now_ms, bool merge,
                            bool& conflict) {
  const std::string range = std::to_string(expected + 1) + ".." + std::to_string(last);
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
  if (!copy(merge ? "stage_orders" : "orders", orders_) ||
      !copy(merge ? "stage_lines" : "order_lines", lines_) ||
      !copy(merge ? "stage_codes" : "order_codes", codes_) ||
      !copy(merge ? "stage_events" : "hold_events", events_)) {
    const char* state = PQresultErrorField(last_, PG_DIAG_SQLSTATE);
    if (!merge && state != nullptr && std::strcmp(state, kUniqueViolation) == 0 &&
        run("ROLLBACK")) {
      conflict = true;
      return SinkStatus::Ok();
    }
    return fail(std::string("cannot copy records ") + range + (merge ? " (merge)" : ""));
  }
  if (merge && !run(kMerge)) return fail("cannot insert records " + range);
  if (!run("COMMIT") || std::strcmp(PQcmdStatus(last_), "COMMIT") != 0) {
    return fail("cannot commit records " + range);
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

std::unique_ptr<Sink> make_pg_sink(const std::string& conninfo) {
  return std::make_unique<PgSink>(conninfo);
}

}  // namespace stockd::outbox
