// Stored-record codec: round trips, every truncation, every bit flip, field checks, key order,
// and the hex examples of docs/storage.md byte for byte.
#include "stockd/records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "stockd/wire.h"
#include "support/doc_example.h"

namespace stockd::rec {
namespace {

using proto::HoldState;
using proto::Line;
using proto::OutboxKind;
using proto::SkuCode;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

std::string bytes_of(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i % 23));
  return s;
}

std::string hex(std::string_view s) {
  std::string out;
  char b[4];
  for (unsigned char c : s) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

// ---- Sample rows with non-trivial values ----

SkuRow sample_sku() {
  return SkuRow{.sku = bytes_of(proto::kSkuBytesMax, 'A'),
                .total = 1'000'000'000'000ull,
                .available = 999'999'999'000ull,
                .held = 600,
                .sold = 400,
                .per_user_limit = 0xFFFFFFFFu,
                .opens_at_ms = kI64Min,
                .closes_at_ms = kI64Max,
                .closed = true,
                .code_pool = true};
}

HoldRow sample_hold() {
  HoldRow r{.hold = {.hold_id = 0x0102030405060708ull,
                     .state = HoldState::kCommitted,
                     .user = bytes_of(proto::kUserBytesMax, 'a'),
                     .key = bytes_of(proto::kKeyBytesMax, '0'),
                     .created_at_ms = 1767225600000,
                     .expires_at_ms = 1767225900000,
                     .lines = {},
                     .codes = {}},
            .fingerprint = 0xFEDCBA9876543210ull,
            .first_available = kU64Max,
            .finished_at_ms = -1};
  for (uint32_t i = 0; i < proto::kReserveLinesMax; ++i) {
    r.hold.lines.push_back(Line{.sku = "sku-" + std::to_string(i), .qty = i * 1000 + 1});
  }
  r.hold.lines.push_back(Line{.sku = "", .qty = 0});
  for (int i = 0; i < 300; ++i) {
    r.hold.codes.push_back(SkuCode{
        .sku = "sku-" + std::to_string(i % 7),
        .code = i == 0 ? bytes_of(proto::kCodeBytesMax, 'c') : "CODE-" + std::to_string(i)});
  }
  r.hold.codes.push_back(SkuCode{.sku = "", .code = ""});
  return r;
}

UserRow sample_user() {
  return UserRow{.sku = bytes_of(proto::kSkuBytesMax, 's'),
                 .user = bytes_of(proto::kUserBytesMax, 'u'),
                 .units = 3};
}

CodeRow sample_code() {
  return CodeRow{.sku = "gift-card-50",
                 .index = 0xDEADBEEFu,
                 .code = bytes_of(proto::kCodeBytesMax, 'Q'),
                 .owner = 123456789};
}

MetaRow sample_meta() {
  return MetaRow{.lsn = kU64Max,
                 .next_hold_id = 1ull << 40,
                 .next_outbox_seq = 1ull << 33,
                 .outbox_acked = (1ull << 33) - 10,
                 .outbox_first = 5};
}

proto::OutboxRecord sample_outbox() {
  proto::OutboxRecord r{.seq = 0x1122334455667788ull,
                        .kind = OutboxKind::kExpired,
                        .order_id = 42,
                        .user = "buyer-7",
                        .key = "",
                        .created_at_ms = 1767225600000,
                        .at_ms = 1767225600500,
                        .lines = {},
                        .codes = {}};
  for (int i = 0; i < 10; ++i) r.lines.push_back(Line{.sku = "tee-" + std::to_string(i), .qty = 2});
  for (int i = 0; i < 20; ++i) {
    r.codes.push_back(
        SkuCode{.sku = "tee-" + std::to_string(i / 2), .code = "C" + std::to_string(i)});
  }
  return r;
}

// One encoded row and a decoder for its type. decode() checks that a failed decode leaves the
// output untouched and explains itself.
struct Sample {
  std::string name;
  std::string bytes;
  std::function<bool(std::string_view, std::string&)> decode;
};

template <class T>
Sample sample(std::string name, const T& row) {
  return Sample{std::move(name), encode(row), [](std::string_view in, std::string& why) {
                  T out{};
                  const Status st = rec::decode(in, out);
                  why = st.message();
                  if (!st.ok()) {
                    EXPECT_EQ(out, T{}) << "a failed decode wrote its output";
                    EXPECT_EQ(st.code(), Status::Code::kCorruption) << why;
                  }
                  return st.ok();
                }};
}

std::vector<Sample> all_samples() {
  return {sample("sku", sample_sku()),       sample("sku_default", SkuRow{}),
          sample("hold", sample_hold()),     sample("hold_default", HoldRow{}),
          sample("user", sample_user()),     sample("code", sample_code()),
          sample("meta", sample_meta()),     sample("meta_default", MetaRow{}),
          sample("outbox", sample_outbox()), sample("outbox_default", proto::OutboxRecord{})};
}

// decode() as the checks below read it: true, or false with `why` set to its message (and a
// failure is always Corruption: these are bytes we wrote).
template <class T>
bool decodes(std::string_view in, T& out, std::string& why) {
  const Status st = decode(in, out);
  why = st.message();
  if (!st.ok()) {
    EXPECT_EQ(st.code(), Status::Code::kCorruption) << why;
  }
  return st.ok();
}

template <class T>
void expect_round_trip(const T& row) {
  const std::string bytes = encode(row);
  T out{};
  std::string why;
  ASSERT_TRUE(decodes(bytes, out, why)) << why;
  EXPECT_EQ(out, row);
  EXPECT_EQ(encode(out), bytes);
}

// Replaces the checksum of a value (or appends one to `covered`, which lacks it).
std::string seal(std::string covered) {
  const uint32_t sum = wire::fnv1a32(covered);
  wire::Writer(covered).u32(sum);
  return covered;
}
std::string without_sum(const std::string& value) { return value.substr(0, value.size() - 4); }

// ---- Round trips ----

TEST(RecordsTest, RoundTripSku) {
  expect_round_trip(sample_sku());
  expect_round_trip(SkuRow{});
  expect_round_trip(SkuRow{.sku = "x", .total = 5, .available = 5});
}

TEST(RecordsTest, RoundTripHold) {
  expect_round_trip(sample_hold());
  expect_round_trip(HoldRow{});
  for (uint8_t s = 0; s <= 4; ++s) {
    HoldRow r;
    r.hold.hold_id = s;
    r.hold.state = static_cast<HoldState>(s);
    r.hold.user = "u";
    expect_round_trip(r);
  }
}

TEST(RecordsTest, RoundTripUserCodeMeta) {
  expect_round_trip(sample_user());
  expect_round_trip(UserRow{});
  expect_round_trip(sample_code());
  expect_round_trip(CodeRow{});
  expect_round_trip(sample_meta());
  expect_round_trip(MetaRow{});
}

TEST(RecordsTest, RoundTripOutbox) {
  expect_round_trip(sample_outbox());
  expect_round_trip(proto::OutboxRecord{});
  for (auto k : {OutboxKind::kOrder, OutboxKind::kReleased, OutboxKind::kExpired}) {
    proto::OutboxRecord r;
    r.seq = 1;
    r.kind = k;
    r.user = "u";
    r.key = "k";
    expect_round_trip(r);
  }
}

TEST(RecordsTest, ValueStartsWithVersionAndTag) {
  const std::pair<std::string, char> cases[] = {
      {encode(SkuRow{}), kTagSku},   {encode(HoldRow{}), kTagHold},
      {encode(UserRow{}), kTagUser}, {encode(CodeRow{}), kTagCode},
      {encode(MetaRow{}), kTagMeta}, {encode(proto::OutboxRecord{}), kTagOutbox}};
  for (const auto& [bytes, tag] : cases) {
    ASSERT_GE(bytes.size(), 6u);
    EXPECT_EQ(static_cast<uint8_t>(bytes[0]), kRecordVersion);
    EXPECT_EQ(bytes[1], tag);
    EXPECT_EQ(seal(without_sum(bytes)), bytes);
  }
}

// ---- Corruption ----

TEST(RecordsTest, EveryTruncationFails) {
  for (const Sample& s : all_samples()) {
    std::string why;
    ASSERT_TRUE(s.decode(s.bytes, why)) << s.name << ": " << why;
    for (size_t n = 0; n < s.bytes.size(); ++n) {
      EXPECT_FALSE(s.decode(std::string_view(s.bytes).substr(0, n), why)) << s.name << " " << n;
    }
  }
}

TEST(RecordsTest, EveryTruncationOfTheFieldsFailsEvenWithAValidChecksum) {
  for (const Sample& s : all_samples()) {
    const std::string covered = without_sum(s.bytes);
    std::string why;
    for (size_t n = 2; n < covered.size(); ++n) {
      ASSERT_FALSE(s.decode(seal(covered.substr(0, n)), why)) << s.name << " " << n;
      // A count whose items no longer fit is caught before the items are read.
      EXPECT_THAT(why, AnyOf(StartsWith("truncated at byte "), HasSubstr("does not fit")))
          << s.name << " " << n;
    }
  }
}

TEST(RecordsTest, EverySingleBitFlipFails) {
  for (const Sample& s : all_samples()) {
    std::string why;
    for (size_t i = 0; i < s.bytes.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string v = s.bytes;
        v[i] = static_cast<char>(v[i] ^ (1 << bit));
        EXPECT_FALSE(s.decode(v, why)) << s.name << " byte " << i << " bit " << bit;
        if (i >= 2) {
          EXPECT_THAT(why, StartsWith("checksum mismatch")) << s.name << " " << i;
        }
      }
    }
  }
}

TEST(RecordsTest, ChecksumMismatchSaysBothSums) {
  std::string v = encode(sample_meta());
  v[5] = static_cast<char>(v[5] ^ 0x10);
  char expect[96];
  std::snprintf(expect, sizeof expect, "checksum mismatch: stored 0x%08x, computed 0x%08x",
                wire::fnv1a32(without_sum(encode(sample_meta()))), wire::fnv1a32(without_sum(v)));
  MetaRow out;
  std::string why;
  EXPECT_FALSE(decodes(v, out, why));
  EXPECT_EQ(why, expect);
}

TEST(RecordsTest, WrongVersionFails) {
  for (const Sample& s : all_samples()) {
    std::string covered = without_sum(s.bytes);
    for (uint8_t version : {0, 1, 3, 255}) {  // 1: the format before keys moved into holds
      covered[0] = static_cast<char>(version);
      std::string why;
      EXPECT_FALSE(s.decode(seal(covered), why));
      EXPECT_EQ(why, "unknown record version " + std::to_string(version)) << s.name;
    }
  }
}

TEST(RecordsTest, WrongTagFails) {
  for (const Sample& s : all_samples()) {
    std::string covered = without_sum(s.bytes);
    covered[1] = 'x';
    std::string why;
    EXPECT_FALSE(s.decode(seal(covered), why)) << s.name;
    EXPECT_THAT(why, HasSubstr("row type tag 'x'")) << s.name;
  }
  // A row of one table decoded as another fails on the tag, not on a field.
  HoldRow hold;
  std::string why;
  EXPECT_FALSE(decodes(encode(sample_sku()), hold, why));
  EXPECT_EQ(why, "row type tag 's' (0x73), expected 'h' (0x68)");
}

TEST(RecordsTest, TrailingGarbageFails) {
  for (const Sample& s : all_samples()) {
    std::string why;
    EXPECT_FALSE(s.decode(s.bytes + '\0', why)) << s.name;
    EXPECT_FALSE(s.decode(s.bytes + s.bytes, why)) << s.name;
    // Extra bytes inside a correctly summed value are caught after the last field.
    EXPECT_FALSE(s.decode(seal(without_sum(s.bytes) + "zz"), why)) << s.name;
    EXPECT_THAT(why, StartsWith("2 trailing bytes after the last field at byte ")) << s.name;
  }
}

TEST(RecordsTest, TooShortFails) {
  MetaRow out;
  std::string why;
  EXPECT_FALSE(decodes("", out, why));
  EXPECT_EQ(why, "too short: 0 bytes, a record has at least 6");
  EXPECT_FALSE(decodes(std::string_view("\x01m\0\0\0", 5), out, why));
  EXPECT_EQ(why, "too short: 5 bytes, a record has at least 6");
}

TEST(RecordsTest, TruncatedFieldNamesItsByte) {
  const std::string covered = without_sum(encode(sample_meta()));
  MetaRow out;
  std::string why;
  EXPECT_FALSE(decodes(seal(covered.substr(0, 13)), out, why));
  EXPECT_EQ(why, "truncated at byte 10 reading next_hold_id");
}

// Builds a value by hand: version, tag, then `fields`, then a correct checksum.
std::string hand_made(char tag, const std::function<void(wire::Writer&)>& fields) {
  std::string v;
  wire::Writer w(v);
  w.u8(kRecordVersion);
  w.u8(static_cast<uint8_t>(tag));
  fields(w);
  return seal(v);
}

void write_sku_tail(wire::Writer& w, uint8_t closed, uint8_t code_pool) {
  for (int i = 0; i < 4; ++i) w.u64(1);
  w.u32(0);
  w.i64(0);
  w.i64(0);
  w.u8(closed);
  w.u8(code_pool);
}

TEST(RecordsTest, StringOverItsLimitFails) {
  SkuRow sku;
  std::string why;
  const std::string long_sku = hand_made(kTagSku, [](wire::Writer& w) {
    w.str(bytes_of(proto::kSkuBytesMax + 1, 'A'));
    write_sku_tail(w, 0, 0);
  });
  EXPECT_FALSE(decodes(long_sku, sku, why));
  EXPECT_EQ(why, "sku length 65 exceeds 64 at byte 2");

  CodeRow code;
  const std::string long_code = hand_made(kTagCode, [](wire::Writer& w) {
    w.str("s");
    w.u32(0);
    w.str(bytes_of(proto::kCodeBytesMax + 1, 'c'));
    w.u64(0);
  });
  EXPECT_FALSE(decodes(long_code, code, why));
  EXPECT_EQ(why, "code length 129 exceeds 128 at byte 9");

  // A string length past the end of the value is a truncation.
  const std::string past_end = hand_made(kTagUser, [](wire::Writer& w) { w.u16(40); });
  UserRow user;
  EXPECT_FALSE(decodes(past_end, user, why));
  EXPECT_EQ(why, "truncated at byte 2 reading sku");
}

TEST(RecordsTest, BadBoolFails) {
  SkuRow sku;
  std::string why;
  EXPECT_FALSE(decodes(hand_made(kTagSku,
                                 [](wire::Writer& w) {
                                   w.str("s");
                                   write_sku_tail(w, 2, 0);
                                 }),
                       sku, why));
  EXPECT_EQ(why, "closed is 2, not 0 or 1 at byte 57");
  EXPECT_FALSE(decodes(hand_made(kTagSku,
                                 [](wire::Writer& w) {
                                   w.str("s");
                                   write_sku_tail(w, 1, 0x80);
                                 }),
                       sku, why));
  EXPECT_EQ(why, "code_pool is 128, not 0 or 1 at byte 58");
}

TEST(RecordsTest, EnumOutOfRangeFails) {
  std::string covered = without_sum(encode(HoldRow{}));
  covered[10] = 5;  // state, after version, tag and the u64 id
  HoldRow hold;
  std::string why;
  EXPECT_FALSE(decodes(seal(covered), hold, why));
  EXPECT_EQ(why, "state is 5, not in 0..4 at byte 10");

  proto::OutboxRecord rec;
  for (uint8_t kind : {0, 4}) {
    covered = without_sum(encode(proto::OutboxRecord{}));
    covered[10] = static_cast<char>(kind);
    EXPECT_FALSE(decodes(seal(covered), rec, why));
    EXPECT_EQ(why, "kind is " + std::to_string(kind) + ", not in 1..3 at byte 10");
  }
}

TEST(RecordsTest, CountPastTheEndFails) {
  // A HoldRow with no lines and no codes ends in two u32 zero counts.
  const std::string covered = without_sum(encode(HoldRow{}));
  const size_t lines_at = covered.size() - 8;
  HoldRow hold;
  std::string why;

  std::string v = covered;
  v[lines_at] = 1;  // one line claimed, 4 bytes (the codes count) left, a line needs 6
  EXPECT_FALSE(decodes(seal(v), hold, why));
  EXPECT_EQ(why, "lines count 1 does not fit the 4 bytes left at byte " + std::to_string(lines_at));

  v = covered;
  for (size_t i = 0; i < 4; ++i) v[lines_at + 4 + i] = static_cast<char>(0xFF);
  EXPECT_FALSE(decodes(seal(v), hold, why));
  EXPECT_EQ(why, "codes count 4294967295 does not fit the 0 bytes left at byte " +
                     std::to_string(lines_at + 4));
}

TEST(RecordsTest, FailedDecodeKeepsOutput) {
  SkuRow out = sample_sku();
  std::string why;
  EXPECT_FALSE(decodes(without_sum(encode(SkuRow{})), out, why));
  EXPECT_EQ(out, sample_sku());
}

TEST(RecordsDeathTest, EncodeRefusesRowsItCouldNotDecode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(encode(SkuRow{.sku = bytes_of(proto::kSkuBytesMax + 1, 'A')}), "refusing to encode");
  HoldRow bad_state;
  bad_state.hold.state = static_cast<HoldState>(9);
  EXPECT_DEATH(encode(bad_state), "refusing to encode");
  proto::OutboxRecord bad_kind;
  bad_kind.kind = static_cast<OutboxKind>(0);
  EXPECT_DEATH(encode(bad_kind), "refusing to encode");
  HoldRow long_code;
  long_code.hold.codes.push_back(SkuCode{.sku = "s", .code = bytes_of(200, 'c')});
  EXPECT_DEATH(encode(long_code), "refusing to encode");
}

// ---- Keys ----

bool bytewise_less(std::string_view a, std::string_view b) {  // RocksDB's default comparator
  const int c = std::memcmp(a.data(), b.data(), std::min(a.size(), b.size()));
  return c < 0 || (c == 0 && a.size() < b.size());
}

TEST(RecordsKeyTest, KeyBytes) {
  using namespace std::string_literals;
  EXPECT_EQ(sku_key("tee"), "s/tee");
  EXPECT_EQ(sku_key(""), "s/");
  EXPECT_EQ(hold_key(0x0102), "h/\0\0\0\0\0\0\x01\x02"s);
  EXPECT_EQ(user_key("tee", "bob"), "u/tee\0bob"s);
  EXPECT_EQ(code_key("tee", 0x01020304), "c/tee\0\x01\x02\x03\x04"s);
  EXPECT_EQ(outbox_key(kU64Max), "o/\xff\xff\xff\xff\xff\xff\xff\xff"s);
  EXPECT_EQ(meta_key(), "m/meta");
}

TEST(RecordsKeyTest, IntegerKeysSortNumerically) {
  const uint64_t ids[] = {0,     1,          255,        256,         65535,
                          65536, 1ull << 32, 1ull << 40, kU64Max - 1, kU64Max};
  for (size_t i = 0; i + 1 < std::size(ids); ++i) {
    EXPECT_TRUE(bytewise_less(hold_key(ids[i]), hold_key(ids[i + 1]))) << ids[i];
    EXPECT_TRUE(bytewise_less(outbox_key(ids[i]), outbox_key(ids[i + 1]))) << ids[i];
  }
  EXPECT_TRUE(bytewise_less(hold_key(1), hold_key(256)));
  EXPECT_TRUE(bytewise_less(hold_key(256), hold_key(1ull << 40)));
  EXPECT_TRUE(bytewise_less(outbox_key(1), outbox_key(256)));
  EXPECT_TRUE(bytewise_less(outbox_key(256), outbox_key(1ull << 40)));
  EXPECT_TRUE(bytewise_less(code_key("x", 1), code_key("x", 256)));
  EXPECT_TRUE(bytewise_less(code_key("x", 256), code_key("x", 0xFFFFFFFFu)));
}

TEST(RecordsKeyTest, SkuPrefixesDoNotInterleave) {
  // Every row of SKU "ab" sorts before every row of SKU "abc" and "ab-".
  EXPECT_TRUE(bytewise_less(user_key("ab", "zzz"), user_key("ab-", "")));
  EXPECT_TRUE(bytewise_less(user_key("ab", "\xff"), user_key("abc", "a")));
  EXPECT_TRUE(bytewise_less(code_key("ab", 0xFFFFFFFFu), code_key("ab-", 0)));
  EXPECT_TRUE(bytewise_less(code_key("ab", 0xFFFFFFFFu), code_key("abc", 0)));
}

TEST(RecordsKeyTest, TablesDoNotOverlap) {
  const std::string keys[] = {sku_key("h"),     hold_key(0),   user_key("s", ""),
                              code_key("o", 0), outbox_key(0), meta_key()};
  for (const std::string& a : keys) {
    for (const std::string& b : keys) {
      if (&a != &b) {
        EXPECT_NE(a.substr(0, 2), b.substr(0, 2));
      }
    }
  }
}

TEST(RecordsKeyTest, OutboxKeySeqRoundTrip) {
  const uint64_t seqs[] = {0, 1, 255, 256, 1ull << 40, 0x0102030405060708ull, kU64Max};
  for (uint64_t seq : seqs) {
    EXPECT_EQ(outbox_key_seq(outbox_key(seq)), seq);
  }
}

TEST(RecordsKeyTest, OutboxKeySeqRejectsOtherKeys) {
  using namespace std::string_literals;
  const std::string ok = outbox_key(7);
  EXPECT_EQ(outbox_key_seq(hold_key(7)), std::nullopt);
  EXPECT_EQ(outbox_key_seq(ok + "x"), std::nullopt);
  EXPECT_EQ(outbox_key_seq(ok.substr(0, 9)), std::nullopt);
  EXPECT_EQ(outbox_key_seq("o|\0\0\0\0\0\0\0\x07"s), std::nullopt);
  EXPECT_EQ(outbox_key_seq("O/\0\0\0\0\0\0\0\x07"s), std::nullopt);
  EXPECT_EQ(outbox_key_seq(""), std::nullopt);
  EXPECT_EQ(outbox_key_seq("o/"), std::nullopt);
  EXPECT_EQ(outbox_key_seq(meta_key()), std::nullopt);
  EXPECT_EQ(outbox_key_seq(sku_key("12345678")), std::nullopt);
}

// ---- docs/storage.md ----

std::string doc_example(const std::string& name) {
  return test::doc_example(STOCKD_STORAGE_MD, name);
}

SkuRow doc_sku() {
  return SkuRow{.sku = "tee-black-m",
                .total = 500,
                .available = 480,
                .held = 15,
                .sold = 5,
                .per_user_limit = 2,
                .opens_at_ms = 1767225600000,  // 2026-01-01T00:00:00Z
                .closes_at_ms = 0,
                .closed = false,
                .code_pool = false};
}

MetaRow doc_meta() {
  return MetaRow{.lsn = 42,
                 .next_hold_id = 1001,
                 .next_outbox_seq = 318,
                 .outbox_acked = 300,
                 .outbox_first = 1};
}

TEST(RecordsDocTest, SkuRowExampleMatches) {
  const std::string bytes = encode(doc_sku());
  EXPECT_EQ(bytes.size(), 73u);
  EXPECT_EQ(sku_key("tee-black-m"), "s/tee-black-m");
  EXPECT_EQ(hex(doc_example("SkuRow")), hex(bytes));
  SkuRow out;
  std::string why;
  ASSERT_TRUE(decodes(doc_example("SkuRow"), out, why)) << why;
  EXPECT_EQ(out, doc_sku());
}

TEST(RecordsDocTest, MetaRowExampleMatches) {
  const std::string bytes = encode(doc_meta());
  EXPECT_EQ(bytes.size(), 46u);
  EXPECT_EQ(hex(doc_example("MetaRow")), hex(bytes));
  MetaRow out;
  std::string why;
  ASSERT_TRUE(decodes(doc_example("MetaRow"), out, why)) << why;
  EXPECT_EQ(out, doc_meta());
}

}  // namespace
}  // namespace stockd::rec
