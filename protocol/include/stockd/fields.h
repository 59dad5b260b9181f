// One field list per message: the layout of every wire message (docs/protocol.md, "Body
// grammar") declared once, as a template over a visitor that reads or writes it. The wire codec
// (protocol.cc) and the stored-record codec (records.cc) are such visitors; each keeps only what
// is its own: the frame, or a record's envelope, checksum and count widths.
//
// A visitor V provides, for a field named f:
//   num(f, x)                          an integer of x's width, little-endian
//   text(f, s, max, non_empty)         a u16-length string of at most max bytes
//   enum8(f, e, lo, hi)                a u8 enum in lo..hi
//   list(count, item, width, lo, hi, item_min, v)   a count (width 2 or 4 bytes, in lo..hi),
//                                      then fields() of each item (at least item_min bytes each)
//   range(f, x, lo, hi), known_bits(f, x, known)    checks of a value read (writers: nothing)
//   strict()                           requests are also checked for meaning (non-empty ids,
//                                      ranges); responses and stored rows only for shape
// and kWrites: F<V, T> is T for a reader and const T for a writer.
//
// A new field is one line here (and its member in protocol.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "stockd/protocol.h"

namespace stockd::proto {

namespace field_limits {
inline constexpr uint64_t kU16Max = std::numeric_limits<uint16_t>::max();
inline constexpr uint64_t kU32Max = std::numeric_limits<uint32_t>::max();
inline constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
inline constexpr uint8_t kSetMaskKnown = kSetTotal | kSetPerUserLimit | kSetOpensAt | kSetClosesAt;
// Minimum encoded sizes of list items, used to refuse counts the body cannot hold.
inline constexpr size_t kLineBytesMin = 2 + 4;
inline constexpr size_t kSkuCodeBytesMin = 2 + 2;
inline constexpr size_t kCodeBytesMin = 2;
inline constexpr size_t kStatBytesMin = 2 + 8;
inline constexpr size_t kSkuViewBytesMin = 2 + 4 * 8 + 4 + 2 * 8 + 1;
inline constexpr size_t kOutboxRecordBytesMin = 8 + 1 + 8 + 2 + 2 + 8 + 8 + 2 + 2;
}  // namespace field_limits

template <class V, class T>
using F = std::conditional_t<V::kWrites, const T, T>;

template <class V>
void fields(V& v, F<V, Line>& m) {
  v.text("sku", m.sku, kSkuBytesMax, v.strict());
  v.num("qty", m.qty);
  if (v.strict()) v.range("qty", m.qty, 1, field_limits::kU32Max);
}
template <class V>
void fields(V& v, F<V, SkuCode>& m) {
  v.text("sku", m.sku, kSkuBytesMax, v.strict());
  v.text("code", m.code, kCodeBytesMax, v.strict());
}
// The only list of bare strings: CODES_LOAD's codes.
template <class V>
void fields(V& v, F<V, std::string>& code) {
  v.text("", code, kCodeBytesMax, v.strict());
}
template <class V, class Lines>
void lines(V& v, Lines& m, uint64_t lo, uint64_t hi) {
  v.list("line count", "line", 2, lo, hi, field_limits::kLineBytesMin, m);
}
template <class V, class Codes>
void codes(V& v, Codes& m) {
  v.list("code count", "code", 2, 0, field_limits::kU16Max, field_limits::kSkuCodeBytesMin, m);
}
template <class V, class State>
void hold_state(V& v, State& m) {
  v.enum8("state", m, HoldState::kNone, HoldState::kExpired);
}

template <class V>
void fields(V& v, F<V, HelloReq>& m) {
  v.num("version", m.version);
  v.enum8("role", m.role, Role::kBuyer, Role::kOutbox);
  v.text("token", m.token, kTokenBytesMax, false);
  v.text("client_name", m.client_name, kClientNameBytesMax, false);
}
template <class V>
void fields(V&, F<V, PingReq>&) {}
template <class V>
void fields(V& v, F<V, ReserveReq>& m) {
  v.text("user", m.user, kUserBytesMax, true);
  v.text("key", m.key, kKeyBytesMax, false);
  v.num("ttl_ms", m.ttl_ms);
  v.range("ttl_ms", m.ttl_ms, 0, kHoldTtlMsMax);
  lines(v, m.lines, 1, kReserveLinesMax);
}
template <class V>
void fields(V& v, F<V, HoldReq>& m) {
  v.num("hold_id", m.hold_id);
  v.range("hold_id", m.hold_id, 1, field_limits::kU64Max);
  v.text("user", m.user, kUserBytesMax, false);
}
template <class V>
void fields(V& v, F<V, ClaimReq>& m) {
  v.text("sku", m.sku, kSkuBytesMax, true);
  v.text("user", m.user, kUserBytesMax, true);
  v.text("key", m.key, kKeyBytesMax, false);
}
template <class V>
void fields(V& v, F<V, SkuReq>& m) {
  v.text("sku", m.sku, kSkuBytesMax, true);
}
template <class V>
void fields(V& v, F<V, SkuListReq>& m) {
  v.text("after", m.after, kSkuBytesMax, false);
  v.num("limit", m.limit);
  v.range("limit", m.limit, 1, kSkuListMax);
}
template <class V>
void fields(V&, F<V, StatsReq>&) {}
template <class V>
void fields(V& v, F<V, SkuSetReq>& m) {
  v.text("sku", m.sku, kSkuBytesMax, true);
  v.num("mask", m.mask);
  v.known_bits("mask", m.mask, field_limits::kSetMaskKnown);
  v.num("total", m.total);
  v.num("per_user_limit", m.per_user_limit);
  v.num("opens_at_ms", m.opens_at_ms);
  v.num("closes_at_ms", m.closes_at_ms);
}
template <class V>
void fields(V& v, F<V, RestockReq>& m) {
  v.text("sku", m.sku, kSkuBytesMax, true);
  v.num("delta", m.delta);
}
template <class V>
void fields(V& v, F<V, CodesLoadReq>& m) {
  v.text("sku", m.sku, kSkuBytesMax, true);
  v.list("code count", "code", 4, 1, field_limits::kU32Max, field_limits::kCodeBytesMin, m.codes);
}
template <class V>
void fields(V& v, F<V, OutboxReadReq>& m) {
  v.num("after_seq", m.after_seq);
  v.num("max_records", m.max_records);
  v.range("max_records", m.max_records, 1, kOutboxReadMax);
  v.num("wait_ms", m.wait_ms);
  v.range("wait_ms", m.wait_ms, 0, kOutboxWaitMsMax);
}
template <class V>
void fields(V& v, F<V, OutboxAckReq>& m) {
  v.num("upto_seq", m.upto_seq);
}
template <class V>
void fields(V&, F<V, OutboxStatusReq>&) {}

template <class V>
void fields(V& v, F<V, HelloResp>& m) {
  v.num("version", m.version);
  v.num("frame_bytes_max", m.frame_bytes_max);
  v.num("inflight_max", m.inflight_max);
  v.num("idle_timeout_ms", m.idle_timeout_ms);
}
template <class V>
void fields(V&, F<V, PingResp>&) {}
template <class V>
void fields(V& v, F<V, ReserveResp>& m) {
  v.num("hold_id", m.hold_id);
  hold_state(v, m.state);
  v.num("expires_at_ms", m.expires_at_ms);
  v.num("failed_line", m.failed_line);
  v.num("available", m.available);
  codes(v, m.codes);
}
template <class V>
void fields(V& v, F<V, HoldView>& m) {
  v.num("hold_id", m.hold_id);
  hold_state(v, m.state);
  v.text("user", m.user, kUserBytesMax, false);
  v.text("key", m.key, kKeyBytesMax, false);
  v.num("created_at_ms", m.created_at_ms);
  v.num("expires_at_ms", m.expires_at_ms);
  lines(v, m.lines, 0, field_limits::kU16Max);
  codes(v, m.codes);
}
template <class V>
void fields(V& v, F<V, ClaimResp>& m) {
  v.num("order_id", m.order_id);
  v.text("code", m.code, kCodeBytesMax, false);
  v.num("available", m.available);
}
// What a SKU's answer (SkuView) and its stored row (rec::SkuRow) share, in the same order; each
// then adds its own (the answer's flags byte, the row's two flags).
template <class V, class Sku>
void sku_fields(V& v, Sku& m) {
  v.text("sku", m.sku, kSkuBytesMax, v.strict());
  v.num("total", m.total);
  v.num("available", m.available);
  v.num("held", m.held);
  v.num("sold", m.sold);
  v.num("per_user_limit", m.per_user_limit);
  v.num("opens_at_ms", m.opens_at_ms);
  v.num("closes_at_ms", m.closes_at_ms);
}
template <class V>
void fields(V& v, F<V, SkuView>& m) {
  sku_fields(v, m);
  v.num("flags", m.flags);
}
template <class V>
void fields(V& v, F<V, SkuListResp>& m) {
  v.list("sku count", "sku", 4, 0, field_limits::kU32Max, field_limits::kSkuViewBytesMin, m.skus);
}
template <class V>
void fields(V& v, F<V, Stat>& m) {
  v.text("name", m.name, kStatNameBytesMax, false);
  v.num("value", m.value);
}
template <class V>
void fields(V& v, F<V, StatsResp>& m) {
  v.list("stat count", "stat", 2, 0, field_limits::kU16Max, field_limits::kStatBytesMin, m.stats);
}
template <class V>
void fields(V& v, F<V, CodesLoadResp>& m) {
  fields(v, m.sku);
  v.text("duplicate", m.duplicate, kCodeBytesMax, false);
}
template <class V>
void fields(V& v, F<V, OutboxRecord>& m) {
  v.num("seq", m.seq);
  v.enum8("kind", m.kind, OutboxKind::kOrder, OutboxKind::kExpired);
  v.num("order_id", m.order_id);
  v.text("user", m.user, kUserBytesMax, false);
  v.text("key", m.key, kKeyBytesMax, false);
  v.num("created_at_ms", m.created_at_ms);
  v.num("at_ms", m.at_ms);
  lines(v, m.lines, 0, field_limits::kU16Max);
  codes(v, m.codes);
}
// The outbox's positions, which OUTBOX_READ's answer begins with.
template <class V, class Positions>
void outbox_positions(V& v, Positions& m) {
  v.num("head_seq", m.head_seq);
  v.num("acked_seq", m.acked_seq);
  v.num("first_seq", m.first_seq);
}
template <class V>
void fields(V& v, F<V, OutboxReadResp>& m) {
  outbox_positions(v, m);
  v.list("record count", "record", 4, 0, field_limits::kU32Max, field_limits::kOutboxRecordBytesMin,
         m.records);
}
template <class V>
void fields(V& v, F<V, OutboxStatusResp>& m) {
  outbox_positions(v, m);
}
template <class V>
void fields(V& v, F<V, ErrorResp>& m) {
  v.text("message", m.message, field_limits::kU16Max, false);
}

}  // namespace stockd::proto
