#include "stockd/decisions.h"

#include "stockd/check.h"
#include "stockd/wire.h"

namespace stockd::rec {

void LogWriter::begin(Op op, int64_t at_ms) {
  if (count == 0) {
    out.clear();
    base_ms = at_ms;
  }
  ++count;
  out.push_back(static_cast<char>(op));
  zig(at_ms - base_ms);
}

namespace {

// entry_fields() as a writer: each field from a const Decision into the group's buffer.
struct EntryOut {
  LogWriter& w;
  template <class T>
  void var(const T& x, const char*) {
    w.var(static_cast<uint64_t>(x));
  }
  void zig(int64_t x, const char*) { w.zig(x); }
  void u64(uint64_t x, const char*) { w.u64(x); }
  void str(std::string_view s, const char*, size_t) { w.str(s); }
  void before_at(int64_t t, int64_t at, const char*) { w.zig(at - t); }
  void lines(const Decision& d) {
    w.var(d.lines.size());
    for (const LineRef& l : d.lines) {
      w.str(l.sku);
      w.var(l.qty);
    }
  }
  void codes(const Decision& d) {
    w.var(d.codes.size());
    for (const CodeRef& c : d.codes) {
      w.var(c.line);
      w.str(c.code);
    }
  }
  void claimed(const Decision& d) {
    STOCKD_CHECK(d.lines.size() == 1 && d.codes.size() == 1, "a claim takes one code");
    w.str(d.lines.front().sku);
    w.str(d.codes.front().code);
  }
  void pool(const std::vector<std::string_view>& p) {
    w.var(p.size());
    for (std::string_view c : p) w.str(c);
  }
  void unknown(Op) { STOCKD_CHECK(false, "an entry of a known type is written"); }
};

}  // namespace

void LogWriter::append(const Decision& d) {
  begin(d.op, d.at_ms);
  EntryOut o{*this};
  entry_fields(o, d);
}

void LogWriter::var(uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void LogWriter::u64(uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  out.append(b, 8);
}

void LogWriter::str(std::string_view s) {
  var(s.size());
  out.append(s.data(), s.size());
}

void encode_group(uint64_t lsn, int64_t base_ms, uint64_t first_outbox_seq, uint32_t records,
                  uint32_t count, std::string_view entries, std::string& out) {
  out.clear();
  out.reserve(kGroupHeaderBytes + entries.size() + kGroupChecksumBytes);
  wire::Writer w(out);
  w.u8(kLogVersion);
  w.u8(static_cast<uint8_t>(kTagLog));
  w.u64(lsn);
  w.i64(base_ms);
  w.u64(first_outbox_seq);
  w.u32(records);
  w.u32(count);
  w.raw(entries);
  w.u32(wire::fnv1a32(out));
}

std::string log_key(uint64_t lsn) {
  std::string k{kTagLog, '/'};
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((lsn >> (8 * i)) & 0xFF));
  return k;
}

uint64_t log_key_lsn(std::string_view key) {
  if (key.size() != 10 || key[0] != kTagLog || key[1] != '/') return 0;
  uint64_t v = 0;
  for (size_t i = 2; i < 10; ++i) v = (v << 8) | static_cast<uint8_t>(key[i]);
  return v;
}

bool GroupReader::fail(std::string why) {
  if (status_.ok()) {
    status_ = Status::Corruption("log group " + std::to_string(lsn_) + ", entry " +
                                 std::to_string(read_) + ": " + std::move(why));
  }
  return false;
}

bool GroupReader::open(std::string_view v) {
  *this = GroupReader{};
  if (v.size() < kGroupHeaderBytes + kGroupChecksumBytes) {
    return fail("too short: " + std::to_string(v.size()) + " bytes, a group has at least " +
                std::to_string(kGroupHeaderBytes + kGroupChecksumBytes));
  }
  wire::Reader r(v);
  const uint8_t version = r.u8();
  const uint8_t tag = r.u8();
  lsn_ = r.u64();
  base_ms_ = r.i64();
  first_seq_ = r.u64();
  records_ = r.u32();
  count_ = r.u32();
  if (version != kLogVersion) return fail("unknown log version " + std::to_string(version));
  if (tag != static_cast<uint8_t>(kTagLog)) {
    return fail("not a log group (tag " + std::to_string(tag) + ")");
  }
  if (records_ > count_) {
    return fail(std::to_string(records_) + " records in " + std::to_string(count_) + " entries");
  }
  const size_t body_end = v.size() - kGroupChecksumBytes;
  wire::Reader c(v.substr(body_end));
  const uint32_t stored = c.u32();
  const uint32_t computed = wire::fnv1a32(v.substr(0, body_end));
  if (stored != computed) return fail("checksum mismatch");
  body_ = v.substr(kGroupHeaderBytes, body_end - kGroupHeaderBytes);
  return true;
}

namespace {

// A cursor over one entry's bytes: varints, fixed u64 and varint-length strings, each checked
// against the bytes left; the first failure names the field.
struct Cursor {
  std::string_view in;
  size_t& pos;
  const char* bad = nullptr;
  uint64_t var(const char* field) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= in.size()) return bad = field, 0;
      const uint8_t b = static_cast<uint8_t>(in[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return bad = field, 0;
  }
  int64_t zig(const char* field) {
    const uint64_t v = var(field);
    return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
  }
  uint64_t u64(const char* field) {
    if (in.size() - pos < 8) return bad = field, 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(in[pos + i])) << (8 * i);
    pos += 8;
    return v;
  }
  std::string_view str(const char* field, size_t max) {
    const uint64_t n = var(field);
    if (bad != nullptr || n > max || n > in.size() - pos) return bad = field, std::string_view();
    std::string_view s = in.substr(pos, n);
    pos += n;
    return s;
  }
  uint64_t count(const char* field, uint64_t max) {
    const uint64_t n = var(field);
    if (n > max || n > in.size() - pos) return bad = field, 0;  // each item takes >= 1 byte
    return n;
  }
};

// entry_fields() as a reader: each field from the entry's bytes into a Decision (views into
// the group value), the first failure naming the field.
struct EntryIn {
  Cursor& c;
  bool unknown_op = false;
  template <class T>
  void var(T& x, const char* field) {
    x = static_cast<T>(c.var(field));
  }
  void zig(int64_t& x, const char* field) { x = c.zig(field); }
  void u64(uint64_t& x, const char* field) { x = c.u64(field); }
  void str(std::string_view& s, const char* field, size_t max) { s = c.str(field, max); }
  void before_at(int64_t& t, int64_t at, const char* field) { t = at - c.zig(field); }
  void lines(Decision& d) {
    const uint64_t n = c.count("lines", proto::kReserveLinesMax);
    for (uint64_t i = 0; i < n && c.bad == nullptr; ++i) {
      LineRef& l = d.lines.emplace_back();
      l.sku = c.str("sku", proto::kSkuBytesMax);
      l.qty = static_cast<uint32_t>(c.var("qty"));
    }
  }
  void codes(Decision& d) {
    const uint64_t n = c.count("codes", proto::kHoldCodesMax);
    for (uint64_t i = 0; i < n && c.bad == nullptr; ++i) {
      CodeRef& r = d.codes.emplace_back();
      r.line = static_cast<uint32_t>(c.var("code line"));
      r.code = c.str("code", proto::kCodeBytesMax);
      if (r.line >= d.lines.size()) c.bad = "code line";
    }
  }
  void claimed(Decision& d) {
    d.sku = c.str("sku", proto::kSkuBytesMax);
    d.lines.push_back({d.sku, 1});
    d.codes.push_back({0, c.str("code", proto::kCodeBytesMax)});
  }
  void pool(std::vector<std::string_view>& p) {
    const uint64_t n = c.count("codes", UINT32_MAX);
    for (uint64_t i = 0; i < n && c.bad == nullptr; ++i) {
      p.push_back(c.str("code", proto::kCodeBytesMax));
    }
  }
  void unknown(Op) { unknown_op = true; }
};

}  // namespace

bool GroupReader::next(Decision& d) {
  if (read_ == count_) {
    if (pos_ != body_.size())
      return fail(std::to_string(body_.size() - pos_) + " bytes after the last entry");
    return false;
  }
  if (pos_ >= body_.size())
    return fail("the group ends before its " + std::to_string(count_) + " entries");
  d.lines.clear();
  d.codes.clear();
  d.pool.clear();
  d.user = d.key = d.sku = {};
  d.ttl_ms = 0;
  d.hold_id = 0;
  d.op = static_cast<Op>(body_[pos_++]);
  Cursor c{body_, pos_};
  d.at_ms = base_ms_ + c.zig("at");
  EntryIn in{c};
  entry_fields(in, d);
  if (in.unknown_op) {
    return fail("unknown entry type " + std::to_string(static_cast<unsigned>(d.op)));
  }
  if (c.bad != nullptr) return fail(std::string("truncated or out of range reading ") + c.bad);
  ++read_;
  return true;
}

void outbox_record(const Decision& d, uint64_t seq, proto::OutboxRecord& out) {
  out.seq = seq;
  out.kind = d.op == Op::kRelease  ? proto::OutboxKind::kReleased
             : d.op == Op::kExpire ? proto::OutboxKind::kExpired
                                   : proto::OutboxKind::kOrder;
  out.order_id = d.hold_id;
  out.user.assign(d.user);
  out.key.assign(d.key);
  const bool created_now = d.op == Op::kReserve || d.op == Op::kClaim;
  out.created_at_ms = created_now ? d.at_ms : d.created_at_ms;
  out.at_ms = d.at_ms;
  out.lines.resize(d.lines.size());
  for (size_t i = 0; i < d.lines.size(); ++i) {
    out.lines[i].sku.assign(d.lines[i].sku);
    out.lines[i].qty = d.lines[i].qty;
  }
  out.codes.resize(d.codes.size());
  for (size_t i = 0; i < d.codes.size(); ++i) {
    out.codes[i].sku.assign(d.lines[d.codes[i].line].sku);
    out.codes[i].code.assign(d.codes[i].code);
  }
}

}  // namespace stockd::rec
