// Stored-record codec: keys and values of the RocksDB tables (docs/storage.md).
//
// value = u8 version, u8 tag, fields in struct order, u32 fnv1a32(all bytes before it).
// Encoding a row that could not be decoded again (a string over its limit, an enum out of
// range) is a programmer error and stops the process: such a row would make recovery fail.
#include "stockd/records.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "stockd/wire.h"

namespace stockd::rec {
namespace {

using proto::HoldState;
using proto::Line;
using proto::OutboxKind;
using proto::SkuCode;

constexpr size_t kHeadBytes = 2;  // version + tag
constexpr size_t kSumBytes = 4;   // fnv1a32
constexpr size_t kMinBytes = kHeadBytes + kSumBytes;
static_assert(kMinBytes == 6);
constexpr size_t kLineBytesMin = 2 + 4;  // empty sku + qty
constexpr size_t kCodeBytesMin = 2 + 2;  // empty sku + empty code
constexpr uint8_t kHoldStateMax = static_cast<uint8_t>(HoldState::kExpired);
constexpr uint8_t kOutboxKindMin = static_cast<uint8_t>(OutboxKind::kOrder);
constexpr uint8_t kOutboxKindMax = static_cast<uint8_t>(OutboxKind::kExpired);

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

std::string tag_name(uint8_t t) {
  char b[16];
  if (t >= 0x21 && t <= 0x7e) {
    std::snprintf(b, sizeof b, "'%c' (0x%02x)", t, t);
  } else {
    std::snprintf(b, sizeof b, "0x%02x", t);
  }
  return b;
}

// ---- Encoding ----

[[noreturn]] void refuse(char tag, const char* field, const char* what) {
  std::fprintf(stderr, "stockd: refusing to encode a '%c' row: %s %s\n", tag, field, what);
  std::abort();
}

class Out {
 public:
  // Writes into `buf` (cleared first; its capacity is reused).
  Out(char tag, std::string& buf) : tag_(tag), buf_(buf), w_(buf_) {
    buf_.clear();
    w_.u8(kRecordVersion);
    w_.u8(static_cast<uint8_t>(tag));
  }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;

  void u8(uint8_t v) { w_.u8(v); }
  void u16(uint16_t v) { w_.u16(v); }
  void u32(uint32_t v) { w_.u32(v); }
  void u64(uint64_t v) { w_.u64(v); }
  void i64(int64_t v) { w_.i64(v); }
  void flag(bool v) { w_.u8(v ? 1 : 0); }
  void str(const char* field, std::string_view s, size_t max) {
    if (s.size() > max) refuse(tag_, field, "is over its byte limit");
    w_.str(s);
  }
  void count(const char* field, size_t n) {
    if (n > std::numeric_limits<uint32_t>::max()) refuse(tag_, field, "has too many items");
    w_.u32(static_cast<uint32_t>(n));
  }
  void hold_state(HoldState s) {
    const auto v = static_cast<uint8_t>(s);
    if (v > kHoldStateMax) refuse(tag_, "state", "is not a HoldState");
    w_.u8(v);
  }
  void lines(const std::vector<Line>& lines) {
    count("lines", lines.size());
    for (const Line& l : lines) {
      str("line.sku", l.sku, proto::kSkuBytesMax);
      u32(l.qty);
    }
  }
  void codes(const std::vector<SkuCode>& codes) {
    count("codes", codes.size());
    for (const SkuCode& c : codes) {
      str("code.sku", c.sku, proto::kSkuBytesMax);
      str("code.code", c.code, proto::kCodeBytesMax);
    }
  }
  // Appends the checksum: the value is finished.
  void seal() { w_.u32(wire::fnv1a32(buf_)); }

 private:
  char tag_;
  std::string& buf_;
  wire::Writer w_;
};

// ---- Decoding ----

// Walks the fields of one value (between header and checksum). The first failure sticks:
// `why` names it and the byte offset in the whole value, and every later read yields zero.
class In {
 public:
  In(std::string_view fields, std::string& why) : size_(fields.size()), r_(fields), why_(why) {}

  uint8_t u8(const char* f) {
    return get(f, [this] { return r_.u8(); });
  }
  uint16_t u16(const char* f) {
    return get(f, [this] { return r_.u16(); });
  }
  uint32_t u32(const char* f) {
    return get(f, [this] { return r_.u32(); });
  }
  uint64_t u64(const char* f) {
    return get(f, [this] { return r_.u64(); });
  }
  int64_t i64(const char* f) {
    return get(f, [this] { return r_.i64(); });
  }

  size_t left() const { return ok_ ? r_.remaining() : 0; }  // for optional trailing fields

  bool flag(const char* f) {
    const size_t at = pos();
    const uint8_t v = u8(f);
    if (v > 1) fail(at, std::string(f) + " is " + std::to_string(v) + ", not 0 or 1");
    return v == 1;
  }
  // A u8 enum whose valid values are lo..hi.
  uint8_t enum8(const char* f, uint8_t lo, uint8_t hi) {
    const size_t at = pos();
    const uint8_t v = u8(f);
    if (ok_ && (v < lo || v > hi)) {
      fail(at, std::string(f) + " is " + std::to_string(v) + ", not in " + std::to_string(lo) +
                   ".." + std::to_string(hi));
    }
    return v;
  }
  std::string str(const char* f, size_t max) {
    const size_t at = pos();
    // Reader::str with the u16 maximum fails only past the end; the field limit is ours.
    std::string s = get(f, [this] { return r_.str(std::numeric_limits<uint16_t>::max()); });
    if (ok_ && s.size() > max) {
      fail(at, std::string(f) + " length " + std::to_string(s.size()) + " exceeds " +
                   std::to_string(max));
    }
    return s;
  }
  // An item count; fails unless `n` items of at least `item_bytes` each fit what is left.
  uint32_t count(const char* f, size_t item_bytes) {
    const size_t at = pos();
    const uint32_t n = u32(f);
    if (ok_ && static_cast<uint64_t>(n) * item_bytes > r_.remaining()) {
      fail(at, std::string(f) + " count " + std::to_string(n) + " does not fit the " +
                   std::to_string(r_.remaining()) + " bytes left");
      return 0;
    }
    return n;
  }
  std::vector<Line> lines() {
    std::vector<Line> v(count("lines", kLineBytesMin));
    for (Line& l : v) {
      l.sku = str("line.sku", proto::kSkuBytesMax);
      l.qty = u32("line.qty");
    }
    return v;
  }
  std::vector<SkuCode> codes() {
    std::vector<SkuCode> v(count("codes", kCodeBytesMin));
    for (SkuCode& c : v) {
      c.sku = str("code.sku", proto::kSkuBytesMax);
      c.code = str("code.code", proto::kCodeBytesMax);
    }
    return v;
  }
  // True if every field was read and nothing is left over.
  bool finish() {
    if (ok_ && r_.remaining() != 0) {
      fail(pos(), std::to_string(r_.remaining()) + " trailing bytes after the last field");
    }
    return ok_;
  }

 private:
  size_t pos() const { return kHeadBytes + size_ - r_.remaining(); }
  void fail(size_t at, const std::string& what) {
    if (!ok_) return;
    ok_ = false;
    r_.fail();
    why_ = what + " at byte " + std::to_string(at);
  }
  template <class F>
  auto get(const char* f, F read) -> decltype(read()) {
    if (!ok_) return {};
    const size_t at = pos();
    auto v = read();
    if (!r_.ok()) {
      ok_ = false;
      why_ = "truncated at byte " + std::to_string(at) + " reading " + f;
      return {};
    }
    return v;
  }

  size_t size_;
  wire::Reader r_;
  std::string& why_;
  bool ok_ = true;
};

// Checks length, version, tag and checksum; on success `fields` is what lies between.
bool open(std::string_view in, char tag, std::string_view& fields, std::string& why) {
  if (in.size() < kMinBytes) {
    why = "too short: " + std::to_string(in.size()) + " bytes, a record has at least " +
          std::to_string(kMinBytes);
    return false;
  }
  const auto version = static_cast<uint8_t>(in[0]);
  if (version != kRecordVersion) {
    why = "unknown record version " + std::to_string(version);
    return false;
  }
  const auto got_tag = static_cast<uint8_t>(in[1]);
  if (got_tag != static_cast<uint8_t>(tag)) {
    why = "row type tag " + tag_name(got_tag) + ", expected " + tag_name(static_cast<uint8_t>(tag));
    return false;
  }
  const std::string_view covered = in.substr(0, in.size() - kSumBytes);
  wire::Reader tail(in.substr(covered.size()));
  const uint32_t stored = tail.u32();
  const uint32_t computed = wire::fnv1a32(covered);
  if (stored != computed) {
    why = "checksum mismatch: stored " + hex32(stored) + ", computed " + hex32(computed);
    return false;
  }
  fields = covered.substr(kHeadBytes);
  return true;
}

// ---- Keys ----

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::string key_prefix(char tag, size_t reserve) {
  std::string k;
  k.reserve(2 + reserve);
  k.push_back(tag);
  k.push_back('/');
  return k;
}

}  // namespace

std::string sku_key(std::string_view sku) { return key_prefix(kTagSku, sku.size()).append(sku); }

std::string hold_key(uint64_t id) {
  std::string k = key_prefix(kTagHold, 8);
  put_be(k, id, 8);
  return k;
}

std::string user_key(std::string_view sku, std::string_view user) {
  std::string k = key_prefix(kTagUser, sku.size() + 1 + user.size()).append(sku);
  k.push_back('\0');
  return k.append(user);
}

std::string code_key(std::string_view sku, uint32_t index) {
  std::string k = key_prefix(kTagCode, sku.size() + 5).append(sku);
  k.push_back('\0');
  put_be(k, index, 4);
  return k;
}

std::string outbox_key(uint64_t seq) {
  std::string k = key_prefix(kTagOutbox, 8);
  put_be(k, seq, 8);
  return k;
}

std::string meta_key() { return key_prefix(kTagMeta, 4).append("meta"); }

std::optional<uint64_t> outbox_key_seq(std::string_view key) {
  if (key.size() != 10 || key[0] != kTagOutbox || key[1] != '/') return std::nullopt;
  uint64_t seq = 0;
  for (size_t i = 2; i < key.size(); ++i) seq = (seq << 8) | static_cast<uint8_t>(key[i]);
  return seq;
}

// ---- Values ----

void encode(const SkuRow& r, std::string& out) {
  Out o(kTagSku, out);
  o.str("sku", r.sku, proto::kSkuBytesMax);
  o.u64(r.total);
  o.u64(r.available);
  o.u64(r.held);
  o.u64(r.sold);
  o.u32(r.per_user_limit);
  o.i64(r.opens_at_ms);
  o.i64(r.closes_at_ms);
  o.flag(r.closed);
  o.flag(r.code_pool);
  o.seal();
}

bool decode(std::string_view in, SkuRow& out, std::string& why) {
  std::string_view fields;
  if (!open(in, kTagSku, fields, why)) return false;
  In i(fields, why);
  SkuRow r;
  r.sku = i.str("sku", proto::kSkuBytesMax);
  r.total = i.u64("total");
  r.available = i.u64("available");
  r.held = i.u64("held");
  r.sold = i.u64("sold");
  r.per_user_limit = i.u32("per_user_limit");
  r.opens_at_ms = i.i64("opens_at_ms");
  r.closes_at_ms = i.i64("closes_at_ms");
  r.closed = i.flag("closed");
  r.code_pool = i.flag("code_pool");
  if (!i.finish()) return false;
  out = std::move(r);
  return true;
}

void encode(const HoldRow& r, std::string& out) {
  Out o(kTagHold, out);
  o.u64(r.id);
  o.hold_state(r.state);
  o.str("user", r.user, proto::kUserBytesMax);
  o.str("key", r.key, proto::kKeyBytesMax);
  o.u64(r.fingerprint);
  o.u64(r.first_available);
  o.i64(r.created_at_ms);
  o.i64(r.expires_at_ms);
  o.i64(r.finished_at_ms);
  o.lines(r.lines);
  o.codes(r.codes);
  o.seal();
}

bool decode(std::string_view in, HoldRow& out, std::string& why) {
  std::string_view fields;
  if (!open(in, kTagHold, fields, why)) return false;
  In i(fields, why);
  HoldRow r;
  r.id = i.u64("id");
  r.state = static_cast<HoldState>(i.enum8("state", 0, kHoldStateMax));
  r.user = i.str("user", proto::kUserBytesMax);
  r.key = i.str("key", proto::kKeyBytesMax);
  r.fingerprint = i.u64("fingerprint");
  r.first_available = i.u64("first_available");
  r.created_at_ms = i.i64("created_at_ms");
  r.expires_at_ms = i.i64("expires_at_ms");
  r.finished_at_ms = i.i64("finished_at_ms");
  r.lines = i.lines();
  r.codes = i.codes();
  if (!i.finish()) return false;
  out = std::move(r);
  return true;
}

void encode(const UserRow& r, std::string& out) {
  Out o(kTagUser, out);
  o.str("sku", r.sku, proto::kSkuBytesMax);
  o.str("user", r.user, proto::kUserBytesMax);
  o.u64(r.units);
  o.seal();
}

bool decode(std::string_view in, UserRow& out, std::string& why) {
  std::string_view fields;
  if (!open(in, kTagUser, fields, why)) return false;
  In i(fields, why);
  UserRow r;
  r.sku = i.str("sku", proto::kSkuBytesMax);
  r.user = i.str("user", proto::kUserBytesMax);
  r.units = i.u64("units");
  if (!i.finish()) return false;
  out = std::move(r);
  return true;
}

void encode(const CodeRow& r, std::string& out) {
  Out o(kTagCode, out);
  o.str("sku", r.sku, proto::kSkuBytesMax);
  o.u32(r.index);
  o.str("code", r.code, proto::kCodeBytesMax);
  o.u64(r.owner);
  o.seal();
}

bool decode(std::string_view in, CodeRow& out, std::string& why) {
  std::string_view fields;
  if (!open(in, kTagCode, fields, why)) return false;
  In i(fields, why);
  CodeRow r;
  r.sku = i.str("sku", proto::kSkuBytesMax);
  r.index = i.u32("index");
  r.code = i.str("code", proto::kCodeBytesMax);
  r.owner = i.u64("owner");
  if (!i.finish()) return false;
  out = std::move(r);
  return true;
}

void encode(const MetaRow& r, std::string& out) {
  Out o(kTagMeta, out);
  o.u64(r.lsn);
  o.u64(r.next_hold_id);
  o.u64(r.next_outbox_seq);
  o.u64(r.outbox_acked);
  o.u64(r.outbox_first);
  if (r.hold_id_key0 != 0 || r.hold_id_key1 != 0) {
    o.u64(r.hold_id_key0);
    o.u64(r.hold_id_key1);
  }
  o.seal();
}

bool decode(std::string_view in, MetaRow& out, std::string& why) {
  std::string_view fields;
  if (!open(in, kTagMeta, fields, why)) return false;
  In i(fields, why);
  MetaRow r;
  r.lsn = i.u64("lsn");
  r.next_hold_id = i.u64("next_hold_id");
  r.next_outbox_seq = i.u64("next_outbox_seq");
  r.outbox_acked = i.u64("outbox_acked");
  r.outbox_first = i.u64("outbox_first");
  if (i.left() == 16) {  // the hold id key (absent: zero, sequential ids)
    r.hold_id_key0 = i.u64("hold_id_key0");
    r.hold_id_key1 = i.u64("hold_id_key1");
  }
  if (!i.finish()) return false;
  out = r;
  return true;
}

void encode(const proto::OutboxRecord& r, std::string& out) {
  Out o(kTagOutbox, out);
  o.u64(r.seq);
  const auto kind = static_cast<uint8_t>(r.kind);
  if (kind < kOutboxKindMin || kind > kOutboxKindMax) refuse(kTagOutbox, "kind", "is invalid");
  o.u8(kind);
  o.u64(r.order_id);
  o.str("user", r.user, proto::kUserBytesMax);
  o.str("key", r.key, proto::kKeyBytesMax);
  o.i64(r.created_at_ms);
  o.i64(r.at_ms);
  o.lines(r.lines);
  o.codes(r.codes);
  o.seal();
}

bool decode(std::string_view in, proto::OutboxRecord& out, std::string& why) {
  std::string_view fields;
  if (!open(in, kTagOutbox, fields, why)) return false;
  In i(fields, why);
  proto::OutboxRecord r;
  r.seq = i.u64("seq");
  r.kind = static_cast<OutboxKind>(i.enum8("kind", kOutboxKindMin, kOutboxKindMax));
  r.order_id = i.u64("order_id");
  r.user = i.str("user", proto::kUserBytesMax);
  r.key = i.str("key", proto::kKeyBytesMax);
  r.created_at_ms = i.i64("created_at_ms");
  r.at_ms = i.i64("at_ms");
  r.lines = i.lines();
  r.codes = i.codes();
  if (!i.finish()) return false;
  out = std::move(r);
  return true;
}

}  // namespace stockd::rec
