// Stored rows of stockd and their byte format (docs/storage.md).
//
// Pure: standard library and the protocol codec only, no RocksDB, no threads. The book produces
// and restores these rows; the store writes them; stockctl inspect reads them back.
//
// Every value starts with a 1-byte record version (kRecordVersion) and ends with a 4-byte
// checksum (FNV-1a 32 of the bytes before it), so a value is checked after it is read.
// Keys are a 1-byte table tag, '/', then the row's id; integers in keys are big-endian so that
// byte order is numeric order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/status.h"

namespace stockd::rec {

inline constexpr uint8_t kRecordVersion = 2;  // 2: idempotency keys live in hold rows

struct SkuRow {
  std::string sku;
  uint64_t total = 0;
  uint64_t available = 0;
  uint64_t held = 0;
  uint64_t sold = 0;
  uint32_t per_user_limit = 0;
  int64_t opens_at_ms = 0;
  int64_t closes_at_ms = 0;
  bool closed = false;
  bool code_pool = false;
  bool operator==(const SkuRow&) const = default;
};

// A hold as stored: what HOLD_GET answers of it (its id, state, buyer, idempotency key, times,
// lines and codes), plus what only the book needs back after a restart. The bytes interleave
// the two (docs/storage.md, "HoldRow").
struct HoldRow {
  proto::HoldView hold;          // expires_at_ms: the deadline while held; 0 for buy-now
  uint64_t fingerprint = 0;      // with a key: hash of the request, a different one conflicts
  uint64_t first_available = 0;  // with a key: `available` of the first answer
  int64_t finished_at_ms = 0;    // committed, released or expired at; 0 while held
  bool operator==(const HoldRow&) const = default;
};

struct UserRow {  // units a user holds or bought of one SKU (for the per-user limit)
  std::string sku;
  std::string user;
  uint64_t units = 0;
  bool operator==(const UserRow&) const = default;
};

struct CodeRow {  // one unique code of a code-pool SKU
  std::string sku;
  uint32_t index = 0;  // position in the SKU's pool, dense from 0
  std::string code;
  uint64_t owner = 0;  // hold id holding or having bought it; 0 = free
  bool operator==(const CodeRow&) const = default;
};

struct MetaRow {
  uint64_t lsn = 0;              // our log sequence number: +1 per written batch
  uint64_t next_hold_id = 1;     // the next hold's sequence number (its id: stockd/hold_ids.h)
  uint64_t next_outbox_seq = 1;  // outbox record sequence numbers start at 1
  uint64_t outbox_acked = 0;     // highest seq the sidecar acknowledged
  uint64_t outbox_first = 1;     // lowest seq still retained
  // The key that turns hold sequence numbers into ids; both 0 = ids are the sequence numbers
  // (then not stored: a meta row of an older data dir simply ends before them).
  uint64_t hold_id_key0 = 0, hold_id_key1 = 0;
  bool operator==(const MetaRow&) const = default;
};

// Table tags (first key byte).
inline constexpr char kTagSku = 's';
inline constexpr char kTagHold = 'h';
inline constexpr char kTagUser = 'u';
inline constexpr char kTagCode = 'c';
inline constexpr char kTagOutbox = 'o';
inline constexpr char kTagMeta = 'm';

std::string sku_key(std::string_view sku);
std::string hold_key(uint64_t id);
std::string user_key(std::string_view sku, std::string_view user);
std::string code_key(std::string_view sku, uint32_t index);
std::string outbox_key(uint64_t seq);
std::string meta_key();
// The sequence number of an outbox key, or nullopt if `key` is not one.
std::optional<uint64_t> outbox_key_seq(std::string_view key);

// encode(row, out) writes the value into `out` (cleared first, capacity reused: no allocation
// once it is big enough); encode(row) returns a new string.
void encode(const SkuRow& r, std::string& out);
void encode(const HoldRow& r, std::string& out);
void encode(const UserRow& r, std::string& out);
void encode(const CodeRow& r, std::string& out);
void encode(const MetaRow& r, std::string& out);
void encode(const proto::OutboxRecord& r, std::string& out);
template <class Row>
std::string encode(const Row& r) {
  std::string out;
  encode(r, out);
  return out;
}

// Decoders return Corruption, saying what is wrong, on a bad version, checksum, length or field.
Status decode(std::string_view in, SkuRow& out);
Status decode(std::string_view in, HoldRow& out);
Status decode(std::string_view in, UserRow& out);
Status decode(std::string_view in, CodeRow& out);
Status decode(std::string_view in, MetaRow& out);
Status decode(std::string_view in, proto::OutboxRecord& out);

}  // namespace stockd::rec
