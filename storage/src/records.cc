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

#include "stockd/fields.h"
#include "stockd/wire.h"

namespace stockd::rec {
namespace {

using proto::F;

constexpr size_t kHeadBytes = 2;  // version + tag
constexpr size_t kSumBytes = 4;   // fnv1a32
constexpr size_t kMinBytes = kHeadBytes + kSumBytes;
static_assert(kMinBytes == 6);

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

[[noreturn]] void refuse(char tag, const std::string& field, const char* what) {
  std::fprintf(stderr, "stockd: refusing to encode a '%c' row: %s %s\n", tag, field.c_str(), what);
  std::abort();
}

// A field's name in messages: "sku", or "line.sku" inside a list of lines.
std::string label(const char* item, const char* f) {
  return item != nullptr ? std::string(item) + "." + f : std::string(f);
}

// Writes one value through the field lists (stockd/fields.h and below): version, tag, the fields,
// then the checksum (seal()). Lists take a u32 count.
class Out {
 public:
  static constexpr bool kWrites = true;
  // Writes into `buf` (cleared first; its capacity is reused).
  Out(char tag, std::string& buf) : tag_(tag), buf_(buf), w_(buf_) {
    buf_.clear();
    w_.u8(kRecordVersion);
    w_.u8(static_cast<uint8_t>(tag));
  }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;

  bool strict() const { return false; }
  void num(const char*, uint8_t v) { w_.u8(v); }
  void num(const char*, uint16_t v) { w_.u16(v); }
  void num(const char*, uint32_t v) { w_.u32(v); }
  void num(const char*, uint64_t v) { w_.u64(v); }
  void num(const char*, int64_t v) { w_.i64(v); }
  void flag(const char*, bool v) { w_.u8(v ? 1 : 0); }
  void text(const char* f, std::string_view s, size_t max, bool) {
    if (s.size() > max) refuse(tag_, label(item_, f), "is over its byte limit");
    w_.str(s);
  }
  template <class E>
  void enum8(const char* f, E v, E lo, E hi) {
    if (v < lo || v > hi) refuse(tag_, label(item_, f), "is out of its range");
    w_.u8(static_cast<uint8_t>(v));
  }
  void range(const char*, uint64_t, uint64_t, uint64_t) {}
  void known_bits(const char*, uint8_t, uint8_t) {}
  template <class T>
  void list(const char*, const char* item, size_t, uint64_t, uint64_t, size_t,
            const std::vector<T>& v) {
    if (v.size() > std::numeric_limits<uint32_t>::max()) refuse(tag_, item, "list is too long");
    w_.u32(static_cast<uint32_t>(v.size()));
    item_ = item;
    for (const T& x : v) fields(*this, x);
    item_ = nullptr;
  }
  // Trailing fields written only when `present` (MetaRow's hold id key).
  bool optional(size_t, bool present) { return present; }

  // Appends the checksum: the value is finished.
  void seal() { w_.u32(wire::fnv1a32(buf_)); }

 private:
  char tag_;
  std::string& buf_;
  wire::Writer w_;
  const char* item_ = nullptr;  // the list item being written
};

// ---- Decoding ----

// Reads the fields of one value (between header and checksum) through the same field lists.
// The first failure sticks: `why` names the field and the byte offset in the whole value, and
// every later read yields zero.
class In {
 public:
  static constexpr bool kWrites = false;
  In(std::string_view fields, std::string& why) : size_(fields.size()), r_(fields), why_(why) {}

  bool strict() const { return false; }  // rows are checked for shape; the book checks meaning
  void num(const char* f, uint8_t& v) {
    v = get(f, [this] { return r_.u8(); });
  }
  void num(const char* f, uint16_t& v) {
    v = get(f, [this] { return r_.u16(); });
  }
  void num(const char* f, uint32_t& v) {
    v = get(f, [this] { return r_.u32(); });
  }
  void num(const char* f, uint64_t& v) {
    v = get(f, [this] { return r_.u64(); });
  }
  void num(const char* f, int64_t& v) {
    v = get(f, [this] { return r_.i64(); });
  }

  void flag(const char* f, bool& v) {
    const size_t at = pos();
    uint8_t raw = 0;
    num(f, raw);
    if (raw > 1) fail(at, label(item_, f) + " is " + std::to_string(raw) + ", not 0 or 1");
    v = raw == 1;
  }
  template <class E>
  void enum8(const char* f, E& v, E lo, E hi) {
    const size_t at = pos();
    uint8_t raw = 0;
    num(f, raw);
    const auto l = static_cast<uint8_t>(lo), h = static_cast<uint8_t>(hi);
    if (ok_ && (raw < l || raw > h)) {
      fail(at, label(item_, f) + " is " + std::to_string(raw) + ", not in " + std::to_string(l) +
                   ".." + std::to_string(h));
    }
    v = static_cast<E>(raw);
  }
  void text(const char* f, std::string& v, size_t max, bool) {
    const size_t at = pos();
    // Reader::view with the u16 maximum fails only past the end; the field limit is ours.
    v.assign(get(f, [this] { return r_.view(std::numeric_limits<uint16_t>::max()); }));
    if (ok_ && v.size() > max) {
      fail(at, label(item_, f) + " length " + std::to_string(v.size()) + " exceeds " +
                   std::to_string(max));
    }
  }
  void range(const char*, uint64_t, uint64_t, uint64_t) {}
  void known_bits(const char*, uint8_t, uint8_t) {}
  // A u32 count, then the items; fails unless the count's items of at least `item_min` bytes
  // each fit what is left.
  template <class T>
  void list(const char*, const char* item, size_t, uint64_t, uint64_t, size_t item_min,
            std::vector<T>& out) {
    const std::string count_name = std::string(item) + "s count";
    const size_t at = pos();
    uint32_t n = 0;
    num(count_name.c_str(), n);
    if (ok_ && static_cast<uint64_t>(n) * item_min > r_.remaining()) {
      fail(at, count_name + " " + std::to_string(n) + " does not fit the " +
                   std::to_string(r_.remaining()) + " bytes left");
    }
    out.resize(ok_ ? n : 0);
    item_ = item;
    for (T& x : out) fields(*this, x);
    item_ = nullptr;
  }
  // Trailing fields that rows written before them lack: present when exactly `bytes` are left.
  bool optional(size_t bytes, bool) { return ok_ && r_.remaining() == bytes; }

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
  template <class Fn>
  auto get(const char* f, Fn read) -> decltype(read()) {
    if (!ok_) return {};
    const size_t at = pos();
    auto v = read();
    if (!r_.ok()) {
      ok_ = false;
      why_ = "truncated at byte " + std::to_string(at) + " reading " + label(item_, f);
      return {};
    }
    return v;
  }

  size_t size_;
  wire::Reader r_;
  std::string& why_;
  bool ok_ = true;
  const char* item_ = nullptr;  // the list item being read
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

// ---- Values: one field list per row (stockd/fields.h says how they read) ----

namespace {

template <class V>
void fields(V& v, F<V, SkuRow>& m) {
  proto::sku_fields(v, m);  // as the SKU's answer (SkuView) has them
  v.flag("closed", m.closed);
  v.flag("code_pool", m.code_pool);
}

// The hold's answer fields (HoldView's, in its order) with the stored-only ones between them.
template <class V>
void fields(V& v, F<V, HoldRow>& m) {
  auto& h = m.hold;
  v.num("id", h.hold_id);
  proto::hold_state(v, h.state);
  v.text("user", h.user, proto::kUserBytesMax, false);
  v.text("key", h.key, proto::kKeyBytesMax, false);
  v.num("fingerprint", m.fingerprint);
  v.num("first_available", m.first_available);
  v.num("created_at_ms", h.created_at_ms);
  v.num("expires_at_ms", h.expires_at_ms);
  v.num("finished_at_ms", m.finished_at_ms);
  proto::lines(v, h.lines, 0, proto::field_limits::kU16Max);
  proto::codes(v, h.codes);
}

template <class V>
void fields(V& v, F<V, UserRow>& m) {
  v.text("sku", m.sku, proto::kSkuBytesMax, true);
  v.text("user", m.user, proto::kUserBytesMax, true);
  v.num("units", m.units);
}

template <class V>
void fields(V& v, F<V, CodeRow>& m) {
  v.text("sku", m.sku, proto::kSkuBytesMax, true);
  v.num("index", m.index);
  v.text("code", m.code, proto::kCodeBytesMax, true);
  v.num("owner", m.owner);
}

template <class V>
void fields(V& v, F<V, MetaRow>& m) {
  v.num("lsn", m.lsn);
  v.num("next_hold_id", m.next_hold_id);
  v.num("next_outbox_seq", m.next_outbox_seq);
  v.num("outbox_acked", m.outbox_acked);
  v.num("outbox_first", m.outbox_first);
  // The hold id key, absent when zero (sequential ids) and in rows made before keys existed.
  if (v.optional(16, m.hold_id_key0 != 0 || m.hold_id_key1 != 0)) {
    v.num("hold_id_key0", m.hold_id_key0);
    v.num("hold_id_key1", m.hold_id_key1);
  }
}

// The envelope: version, tag, the row's fields, checksum.
template <class Row>
void encode_row(char tag, const Row& r, std::string& out) {
  Out o(tag, out);
  fields(o, r);
  o.seal();
}

// Every failure is Corruption: these bytes were written by us and checked when written.
template <class Row>
Status decode_row(std::string_view in, char tag, Row& out) {
  std::string why;
  std::string_view body;
  if (!open(in, tag, body, why)) return Status::Corruption(std::move(why));
  In i(body, why);
  Row r;
  fields(i, r);
  if (!i.finish()) return Status::Corruption(std::move(why));
  out = std::move(r);
  return Status::Ok();
}

}  // namespace

void encode(const SkuRow& r, std::string& out) { encode_row(kTagSku, r, out); }
Status decode(std::string_view in, SkuRow& out) { return decode_row(in, kTagSku, out); }
void encode(const HoldRow& r, std::string& out) { encode_row(kTagHold, r, out); }
Status decode(std::string_view in, HoldRow& out) { return decode_row(in, kTagHold, out); }
void encode(const UserRow& r, std::string& out) { encode_row(kTagUser, r, out); }
Status decode(std::string_view in, UserRow& out) { return decode_row(in, kTagUser, out); }
void encode(const CodeRow& r, std::string& out) { encode_row(kTagCode, r, out); }
Status decode(std::string_view in, CodeRow& out) { return decode_row(in, kTagCode, out); }
void encode(const MetaRow& r, std::string& out) { encode_row(kTagMeta, r, out); }
Status decode(std::string_view in, MetaRow& out) { return decode_row(in, kTagMeta, out); }
// An outbox record of the earlier layout: the wire's field list (OUTBOX_READ), u32 counts.
void encode(const proto::OutboxRecord& r, std::string& out) { encode_row(kTagOutbox, r, out); }
Status decode(std::string_view in, proto::OutboxRecord& out) {
  return decode_row(in, kTagOutbox, out);
}

}  // namespace stockd::rec
