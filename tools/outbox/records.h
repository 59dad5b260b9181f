// What the sidecar checks about outbox records before it writes them, and how record fields
// become SQL values. Pure functions, shared by both sinks and unit-tested directly.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/status.h"

namespace stockd::outbox {

// Ok, or Invalid saying why `r` cannot be stored: seq >= 1; a known kind; order_id >= 1; a
// non-empty user; 1..kReserveLinesMax lines with non-empty, distinct SKUs and qty >= 1; each code
// non-empty, of a SKU among the lines, and not repeated.
Status check_record(const proto::OutboxRecord& r);

// Ok, or Invalid saying why `records` are not exactly cursor+1, cursor+2, ... (each also passing
// check_record).
Status check_batch(uint64_t cursor, std::span<const proto::OutboxRecord> records);

// hold_events.kind of a RELEASED or EXPIRED record: "released" / "expired" ("order" for ORDER).
const char* event_kind_name(proto::OutboxKind kind);

// Whether `s` can be stored as SQL text as it is: valid UTF-8 (no overlong form, no surrogate,
// nothing above U+10FFFF) without NUL. PostgreSQL TEXT accepts exactly these strings.
bool is_sql_text(std::string_view s);

// A readable form of `s` for logs and messages (never for stored values): `s` itself when
// is_sql_text(s); otherwise every offending byte is written as the four characters \xHH.
// Returns a view of `s` or of `scratch`.
std::string_view sql_text(std::string_view s, std::string& scratch);

// `s` in lowercase hexadecimal, two digits per byte.
std::string hex(std::string_view s);

// `s` as a JSON string literal, quotes included (s must be valid UTF-8: pass it through
// sql_text first).
std::string json_quote(std::string_view s);

// hold_events.lines: [{"sku":"A","qty":2},...] in the record's order. A SKU that is not SQL text
// has "sku":null and its bytes as "sku_hex":"41ff" (the rule of the X / X_bytes columns).
std::string lines_json(const std::vector<proto::Line>& lines);

// What a batch writes into SQL: the rows per table, and what the read-back of the batch check
// (schema.h: kBatchCheckSql) measures, its four columns in order. A checksum adds up
// id % kModulus + time % kModulus per row, as SQL computes it (C++ and SQL both truncate
// toward zero), so it cannot overflow.
struct BatchTotals {
  static constexpr int64_t kModulus = 1000000007;
  static constexpr int kColumns = 4;
  int64_t orders = 0;
  int64_t orders_checksum = 0;  // order_id and committed_at_ms
  int64_t events = 0;
  int64_t events_checksum = 0;  // hold_id and at_ms
  int64_t lines = 0;            // rows of order_lines (not read back)
  int64_t codes = 0;            // rows of order_codes (not read back)
  // Column i (0 .. kColumns - 1) of the read-back.
  int64_t& operator[](int i);
  bool operator==(const BatchTotals&) const = default;
};

// The totals `records` should leave in SQL.
BatchTotals batch_totals(std::span<const proto::OutboxRecord> records);

// Ok if the read-back `found` (what SQL holds for the batch's seqs) matches `want`, else
// Corruption with one line naming what differs, e.g. "orders holds 4 rows for these seqs,
// expected 5".
Status compare_totals(const BatchTotals& want, const BatchTotals& found);

}  // namespace stockd::outbox
