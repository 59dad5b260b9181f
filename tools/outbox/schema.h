// The SQL schema the sidecar writes, identical in SQLite and PostgreSQL (docs/outbox.md).
// Every statement is idempotent, so open() runs them all on every start.
#pragma once

#include <array>

namespace stockd::outbox {

inline constexpr std::array<const char*, 5> kSchemaDdl = {
    "CREATE TABLE IF NOT EXISTS orders ("
    " order_id BIGINT PRIMARY KEY,"
    " seq BIGINT NOT NULL UNIQUE,"
    " user_id TEXT NOT NULL,"
    " idem_key TEXT,"
    " created_at_ms BIGINT,"
    " committed_at_ms BIGINT)",

    "CREATE TABLE IF NOT EXISTS order_lines ("
    " order_id BIGINT,"
    " sku TEXT,"
    " qty BIGINT,"
    " PRIMARY KEY (order_id, sku))",

    "CREATE TABLE IF NOT EXISTS order_codes ("
    " code TEXT,"
    " sku TEXT,"
    " order_id BIGINT,"
    " PRIMARY KEY (sku, code))",

    "CREATE TABLE IF NOT EXISTS hold_events ("
    " seq BIGINT PRIMARY KEY,"
    " kind TEXT,"
    " hold_id BIGINT,"
    " user_id TEXT,"
    " at_ms BIGINT,"
    " lines TEXT)",

    "CREATE TABLE IF NOT EXISTS stockd_outbox_cursor ("
    " id INT PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL,"
    " updated_at_ms BIGINT)",
};

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

}  // namespace stockd::outbox
