// The log of decisions: what the book decided, one compact entry per decision, one value per
// group commit (docs/storage.md, "The log").
//
// Pure: standard library and the protocol types only. The book appends entries as it decides
// (Book::* with Changes::log set) and replays them (Book::replay); the store keeps one group
// value per loop turn under `l/` + lsn; the outbox feed reads its records from the same entries.
//
// An entry holds the inputs and the outcome a replay needs to make the same decision again
// through the live code (the request, its time, the hold id it got, the codes it took), and,
// for entries that make an outbox record (an order, a release, an expiry), that record's
// content, so that the outbox is read from the log alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/status.h"

namespace stockd::rec {

inline constexpr uint8_t kLogVersion = 1;
inline constexpr char kTagLog = 'l';
// Header: version u8, tag u8, lsn u64, base_ms i64, first_outbox_seq u64, records u32, count u32.
inline constexpr size_t kGroupHeaderBytes = 34;
inline constexpr size_t kGroupChecksumBytes = 4;

enum class Op : uint8_t {
  kReserve = 'R',    // a reservation (ttl 0: an order at once)
  kClaim = 'C',      // a code claim (an order at once)
  kCommit = 'K',     // a held hold bought
  kRelease = 'L',    // a held hold released by its buyer
  kExpire = 'E',     // a held hold past its deadline
  kForget = 'F',     // a finished hold (and its key) forgotten after its retention
  kSkuSet = 'S',     // SKU_SET
  kRestock = 'T',    // RESTOCK
  kCodesLoad = 'P',  // CODES_LOAD
  kSaleClose = 'X',  // SALE_CLOSE
  kHoldIdKey = 'H',  // the key of hold ids, taken before the first hold
  kOutboxAck = 'A',  // the sidecar acknowledged records up to a sequence number
};

struct LineRef {
  std::string_view sku;
  uint32_t qty = 0;
};
struct CodeRef {
  uint32_t line = 0;  // index into lines: the code's SKU
  std::string_view code;
};

// One decoded entry. Views point into the group value it was read from; vectors keep their
// capacity from one entry to the next.
struct Decision {
  Op op = Op::kReserve;
  int64_t at_ms = 0;  // the decision's time (an expiry: the hold's deadline)
  uint64_t hold_id = 0;
  std::string_view user, key, sku;  // sku: claim, SKU admin ops
  uint32_t ttl_ms = 0;              // reserve
  int64_t created_at_ms = 0;        // commit, release, expire: the hold's creation
  std::vector<LineRef> lines;       // reserve, and the order of commit, release, expire
  std::vector<CodeRef> codes;       // codes the hold took (claim: one, line 0)
  // SKU_SET
  uint8_t mask = 0;
  uint64_t total = 0;
  uint32_t per_user_limit = 0;
  int64_t opens_at_ms = 0, closes_at_ms = 0;
  int64_t delta = 0;                   // RESTOCK
  std::vector<std::string_view> pool;  // CODES_LOAD
  uint64_t key0 = 0, key1 = 0;         // HOLD_ID_KEY
  uint64_t upto = 0;                   // OUTBOX_ACK
  // Whether this entry makes an outbox record (and takes the next sequence number).
  bool makes_record() const {
    return op == Op::kClaim || op == Op::kCommit || op == Op::kRelease || op == Op::kExpire ||
           (op == Op::kReserve && ttl_ms == 0);
  }
};

// ---- Each entry's layout, declared once: after its op byte and its time (a zigzag varint delta
// from the group's base_ms), the fields below, in order. The writer (LogWriter::append) and the
// reader (GroupReader::next) both walk this list, with a visitor that writes or reads:
//   var: LEB128 varint; zig: zigzag varint; u64: 8 bytes little-endian; str: varint length +
//   bytes (read: at most `max`); lines: varint count, then (str sku, var qty) each; codes:
//   varint count, then (var line, str code) each, `line` indexing the entry's lines; claimed: a
//   claim's one line and code, as str sku, str code; before_at: a time before the entry's, as a
//   zig of the difference; pool: varint count, then str each. ----
template <class V, class D>  // D: Decision (reading) or const Decision (writing)
void entry_fields(V& v, D& d) {
  switch (d.op) {
    case Op::kReserve:
      v.str(d.user, "user", proto::kUserBytesMax);
      v.str(d.key, "key", proto::kKeyBytesMax);
      v.var(d.ttl_ms, "ttl_ms");
      v.u64(d.hold_id, "hold_id");
      v.lines(d);
      v.codes(d);
      return;
    case Op::kClaim:
      v.str(d.user, "user", proto::kUserBytesMax);
      v.str(d.key, "key", proto::kKeyBytesMax);
      v.u64(d.hold_id, "hold_id");
      v.claimed(d);
      return;
    case Op::kCommit:
    case Op::kRelease:
    case Op::kExpire:
      v.u64(d.hold_id, "hold_id");
      v.str(d.user, "user", proto::kUserBytesMax);
      v.str(d.key, "key", proto::kKeyBytesMax);
      v.before_at(d.created_at_ms, d.at_ms, "created_at");
      v.lines(d);
      v.codes(d);
      return;
    case Op::kForget:
      v.u64(d.hold_id, "hold_id");
      return;
    case Op::kSkuSet:
      v.str(d.sku, "sku", proto::kSkuBytesMax);
      v.var(d.mask, "mask");
      v.var(d.total, "total");
      v.var(d.per_user_limit, "per_user_limit");
      v.zig(d.opens_at_ms, "opens_at");
      v.zig(d.closes_at_ms, "closes_at");
      return;
    case Op::kRestock:
      v.str(d.sku, "sku", proto::kSkuBytesMax);
      v.zig(d.delta, "delta");
      return;
    case Op::kCodesLoad:
      v.str(d.sku, "sku", proto::kSkuBytesMax);
      v.pool(d.pool);
      return;
    case Op::kSaleClose:
      v.str(d.sku, "sku", proto::kSkuBytesMax);
      return;
    case Op::kHoldIdKey:
      v.u64(d.key0, "key0");
      v.u64(d.key1, "key1");
      return;
    case Op::kOutboxAck:
      v.var(d.upto, "upto");
      return;
  }
  v.unknown(d.op);
}

// ---- Writing entries into a group's buffer (no allocation once `out` has grown). begin() starts
// an entry: the first entry of a group sets `base_ms`, and every entry stores its time as a
// delta from it. Strings must be within their protocol limits (the book checked them). ----
struct LogWriter {
  std::string& out;
  int64_t& base_ms;
  uint32_t& count;
  // One whole entry: begin(d.op, d.at_ms), then d's fields as entry_fields() lists them.
  void append(const Decision& d);
  void begin(Op op, int64_t at_ms);
  void var(uint64_t v);
  void zig(int64_t v) { var((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void u64(uint64_t v);
  void str(std::string_view s);
};

// The group value: header, the entries as LogWriter wrote them (with its base_ms and count),
// checksum (FNV-1a 32 of every byte before it).
// `records`: how many of the entries make an outbox record (numbered from first_outbox_seq), so
// that the outbox can be indexed from headers alone.
void encode_group(uint64_t lsn, int64_t base_ms, uint64_t first_outbox_seq, uint32_t records,
                  uint32_t count, std::string_view entries, std::string& out);
std::string log_key(uint64_t lsn);
// The lsn of a log key, or 0 if `key` is not one.
uint64_t log_key_lsn(std::string_view key);

// Reads a group value entry by entry. open() checks the envelope (length, version, tag,
// checksum); next() decodes one entry, false at the end or on damage (then status() is
// Corruption, saying what and where; ok at the end).
class GroupReader {
 public:
  bool open(std::string_view value);  // the entries' views point into `value`: keep it alive
  bool open(const std::string&& value) = delete;  // a temporary would die before the reads
  bool next(Decision& d);
  uint64_t lsn() const { return lsn_; }
  uint64_t first_outbox_seq() const { return first_seq_; }
  uint32_t records() const { return records_; }
  int64_t base_ms() const { return base_ms_; }
  uint32_t count() const { return count_; }
  uint32_t read() const { return read_; }  // entries decoded so far
  const Status& status() const { return status_; }

 private:
  bool fail(std::string why);
  std::string_view body_;
  size_t pos_ = 0;
  uint64_t lsn_ = 0, first_seq_ = 0;
  int64_t base_ms_ = 0;
  uint32_t records_ = 0, count_ = 0, read_ = 0;
  Status status_;
};

// The outbox record an entry makes (makes_record()), numbered `seq`, into `out` (its strings and
// vectors reused).
void outbox_record(const Decision& d, uint64_t seq, proto::OutboxRecord& out);

}  // namespace stockd::rec
