// The SQL schema the sidecar writes, the same in SQLite and PostgreSQL (docs/outbox.md) except
// for the name of the bytes type (BLOB / BYTEA). Every statement is idempotent, so open() runs
// them all on every start.
//
// Strings (user id, idempotency key, SKU, code) are bytes in the protocol. Each is stored in two
// columns: X_bytes holds the exact bytes (primary keys use these), X holds the same value as
// text when it is valid UTF-8 without NUL, else NULL (records.h: is_sql_text).
#pragma once

#include <array>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/status.h"

namespace stockd::outbox {

// The tables, and the columns the sidecar writes, in the order it writes them. Every INSERT and
// COPY names these columns, so columns added to a table (with a default, or nullable) are left
// to their default; open() checks that these columns exist.
struct TableColumns {
  const char* table;
  const char* columns;  // comma-separated
};
inline constexpr TableColumns kOrdersColumns = {
    "orders",
    "order_id, seq, user_id, user_id_bytes, idem_key, idem_key_bytes, created_at_ms, "
    "committed_at_ms"};
inline constexpr TableColumns kLinesColumns = {"order_lines", "order_id, sku, sku_bytes, qty"};
inline constexpr TableColumns kCodesColumns = {"order_codes",
                                               "code, code_bytes, sku, sku_bytes, order_id"};
inline constexpr TableColumns kEventsColumns = {
    "hold_events", "seq, kind, hold_id, user_id, user_id_bytes, at_ms, lines"};
inline constexpr TableColumns kCursorColumns = {"stockd_outbox_cursor", "id, seq, updated_at_ms"};
inline constexpr std::array<TableColumns, 5> kTables = {
    kOrdersColumns, kLinesColumns, kCodesColumns, kEventsColumns, kCursorColumns};

// The CREATE TABLE statements, in kTables' order. "BYTES" stands for the bytes type.
inline constexpr std::array<const char*, 5> kSchemaDdl = {
    "CREATE TABLE IF NOT EXISTS orders ("
    " order_id BIGINT PRIMARY KEY,"
    " seq BIGINT NOT NULL UNIQUE,"
    " user_id TEXT,"
    " user_id_bytes BYTES NOT NULL,"
    " idem_key TEXT,"
    " idem_key_bytes BYTES,"
    " created_at_ms BIGINT,"
    " committed_at_ms BIGINT)",

    "CREATE TABLE IF NOT EXISTS order_lines ("
    " order_id BIGINT NOT NULL,"
    " sku TEXT,"
    " sku_bytes BYTES NOT NULL,"
    " qty BIGINT NOT NULL,"
    " PRIMARY KEY (order_id, sku_bytes))",

    "CREATE TABLE IF NOT EXISTS order_codes ("
    " code TEXT,"
    " code_bytes BYTES NOT NULL,"
    " sku TEXT,"
    " sku_bytes BYTES NOT NULL,"
    " order_id BIGINT NOT NULL,"
    " PRIMARY KEY (sku_bytes, code_bytes))",

    "CREATE TABLE IF NOT EXISTS hold_events ("
    " seq BIGINT PRIMARY KEY,"
    " kind TEXT NOT NULL,"
    " hold_id BIGINT NOT NULL,"
    " user_id TEXT,"
    " user_id_bytes BYTES NOT NULL,"
    " at_ms BIGINT,"
    " lines TEXT NOT NULL)",

    "CREATE TABLE IF NOT EXISTS stockd_outbox_cursor ("
    " id INT PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL,"
    " updated_at_ms BIGINT)",
};

// A kSchemaDdl statement with the database's bytes type ("BLOB" or "BYTEA").
inline std::string schema_ddl(const char* ddl, std::string_view bytes_type) {
  std::string s = ddl;
  for (size_t at = s.find("BYTES"); at != std::string::npos; at = s.find("BYTES", at)) {
    s.replace(at, 5, bytes_type);
  }
  return s;
}

// Whether open() creates the schema: `missing` lists the kTables that do not exist, `cursor`
// is the cursor's seq (0 without its table or row). All there: nothing is created (a role
// without CREATE works). Some missing while the cursor is past 0: Refused, naming the first
// (a table the copied records are in was dropped or renamed: made anew it would lack them,
// silently). Else `create` (a new database, or one that never copied a record).
inline Status schema_plan(const std::vector<std::string>& missing, uint64_t cursor, bool& create) {
  create = false;
  if (missing.empty()) return Status::Ok();
  if (cursor > 0) {
    return Status::Refused("table " + missing.front() +
                           " does not exist, while this database's cursor is at " +
                           std::to_string(cursor) +
                           " (dropped or renamed?): the records copied into it would be "
                           "missing; restore it, or point --sql at a new database");
  }
  create = true;
  return Status::Ok();
}

// Ok if a table with the columns `have` (empty: no such table) has every column of `t`, else
// Refused in one line naming the table and the first missing column, and what to do.
inline Status missing_columns(const TableColumns& t,
                              const std::set<std::string, std::less<>>& have) {
  const std::string table = t.table;
  if (have.empty()) return Status::Refused("table " + table + " does not exist");
  for (std::string_view rest = t.columns; !rest.empty();) {
    const size_t comma = rest.find(',');
    std::string_view col = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
    while (col.starts_with(' ')) col.remove_prefix(1);
    if (have.contains(col)) continue;
    // Older sidecars stored strings as text only (odd bytes as "\xHH" escapes).
    if (table == "orders" && col == "user_id_bytes") {
      return Status::Refused(
          "table orders has no column user_id_bytes: this database was created by "
          "an older stockd-outbox, which stored strings as text only; upgrade it as "
          "docs/outbox.md says (\"Upgrading a text-only database\"), or point --sql at a new "
          "database");
    }
    return Status::Refused("table " + table + " has no column " + std::string(col) +
                           ", which stockd-outbox writes (" + t.columns +
                           "): add it back (docs/outbox.md, \"Schema\"), or point --sql at a new "
                           "database");
  }
  return Status::Ok();
}

// Creates the cursor row at 0 unless it exists. Parameter: updated_at_ms.
inline constexpr const char* kCursorInitSql =
    "INSERT INTO stockd_outbox_cursor (id, seq, updated_at_ms) VALUES (1, 0, $1)"
    " ON CONFLICT DO NOTHING";
inline constexpr const char* kCursorReadSql = "SELECT seq FROM stockd_outbox_cursor WHERE id = 1";
// Compare-and-set of the cursor. Parameters: new seq, updated_at_ms, expected seq.
inline constexpr const char* kCursorMoveSql =
    "UPDATE stockd_outbox_cursor SET seq = $1, updated_at_ms = $2 WHERE id = 1 AND seq = $3";
// Unconditional set. Parameters: seq, updated_at_ms.
inline constexpr const char* kCursorResetSql =
    "UPDATE stockd_outbox_cursor SET seq = $1, updated_at_ms = $2 WHERE id = 1";

// The read-back of the batch check, run in the batch's transaction before COMMIT: what the
// tables hold for the records with seq $1..$2 (through the seq indexes), as one row of
// BatchTotals' four columns (records.h). Ids and times enter modulo 1000000007, so the sums
// cannot overflow a 64-bit integer.
inline constexpr const char* kBatchCheckSql =
    "SELECT"
    " (SELECT count(*) FROM orders WHERE seq BETWEEN $1 AND $2),"
    " (SELECT coalesce(sum(order_id % 1000000007 + committed_at_ms % 1000000007), 0) FROM orders"
    "   WHERE seq BETWEEN $1 AND $2),"
    " (SELECT count(*) FROM hold_events WHERE seq BETWEEN $1 AND $2),"
    " (SELECT coalesce(sum(hold_id % 1000000007 + at_ms % 1000000007), 0) FROM hold_events"
    "   WHERE seq BETWEEN $1 AND $2)";

}  // namespace stockd::outbox
