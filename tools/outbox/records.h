// What the sidecar checks about outbox records before it writes them, and how record fields
// become SQL values. Pure functions, shared by both sinks and unit-tested directly.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/protocol.h"

namespace stockd::outbox {

// Why `r` cannot be stored, or "": seq >= 1; a known kind; order_id >= 1; a non-empty user;
// 1..kReserveLinesMax lines with non-empty, distinct SKUs and qty >= 1; each code non-empty,
// of a SKU among the lines, and not repeated.
std::string check_record(const proto::OutboxRecord& r);

// Why `records` are not exactly cursor+1, cursor+2, ... (each also passing check_record), or "".
std::string check_batch(uint64_t cursor, std::span<const proto::OutboxRecord> records);

// hold_events.kind of a RELEASED or EXPIRED record: "released" / "expired" ("order" for ORDER).
const char* event_kind_name(proto::OutboxKind kind);

// A field as SQL text. The protocol does not require UTF-8, but PostgreSQL TEXT does, and
// neither database should hold a NUL: a string that is valid UTF-8 without NUL is returned as
// is; otherwise every offending byte is written as the four characters \xHH. Returns a view of
// `s` or of `scratch`.
std::string_view sql_text(std::string_view s, std::string& scratch);

// `s` as a JSON string literal, quotes included (s must be valid UTF-8: pass it through
// sql_text first).
std::string json_quote(std::string_view s);

// hold_events.lines: [{"sku":"A","qty":2},...] in the record's order, SKUs through sql_text.
std::string lines_json(const std::vector<proto::Line>& lines);

}  // namespace stockd::outbox
