// The log of decisions (stockd/decisions.h): the group format, byte for byte against the example
// in docs/storage.md, as the book writes it; damage is refused with what and where; the size of
// a keyed one-line buy-now entry.
#include "stockd/decisions.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "stockd/book.h"
#include "support/doc_example.h"

namespace stockd::rec {
namespace {

constexpr int64_t kT0 = 1767225600000;  // 2026-01-01T00:00:00Z

std::string hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
    out.push_back(' ');
  }
  return out;
}

std::string doc_example(const std::string& name) {
  return test::doc_example(STOCKD_STORAGE_MD, name);
}

// The documented group: lsn 42, one keyed buy-now of 1 "tee-black-m" by "ann" under key "k-0001",
// 123 ms after kT0, the SKU's first hold (sequential ids), its first outbox record.
std::string doc_group(Book& book) {
  Changes setup;
  proto::SkuView v;
  EXPECT_EQ(book.sku_set({"tee-black-m", proto::kSetTotal, 500, 0, 0, 0}, kT0, v, setup),
            proto::Status::kOk);
  Changes ch;
  proto::ReserveResp r;
  EXPECT_EQ(book.reserve({"ann", "k-0001", 0, {{"tee-black-m", 1}}}, kT0 + 123, r, ch),
            proto::Status::kOk);
  EXPECT_EQ(r.hold_id, 1u);
  EXPECT_EQ(ch.entry_count, 1u);
  std::string group;
  encode_group(42, ch.entry_base_ms, 1, 1, ch.entry_count, ch.entries, group);
  return group;
}

TEST(DecisionsDocTest, GroupExampleMatchesWhatTheBookWrites) {
  Book book;
  const std::string group = doc_group(book);
  EXPECT_EQ(hex(doc_example("LogGroup")), hex(group));
  EXPECT_EQ(log_key(42), std::string("l/\0\0\0\0\0\0\0\x2a", 10));
  EXPECT_EQ(log_key_lsn(log_key(42)), 42u);
  GroupReader r;
  const std::string example = doc_example("LogGroup");  // the reader's views point into it
  ASSERT_TRUE(r.open(example)) << r.status().message();
  EXPECT_EQ(r.lsn(), 42u);
  EXPECT_EQ(r.first_outbox_seq(), 1u);
  EXPECT_EQ(r.records(), 1u);
  Decision d;
  ASSERT_TRUE(r.next(d)) << r.status().message();
  EXPECT_EQ(d.op, Op::kReserve);
  EXPECT_EQ(d.at_ms, kT0 + 123);
  EXPECT_EQ(d.user, "ann");
  EXPECT_EQ(d.key, "k-0001");
  EXPECT_EQ(d.ttl_ms, 0u);
  EXPECT_EQ(d.hold_id, 1u);
  ASSERT_EQ(d.lines.size(), 1u);
  EXPECT_EQ(d.lines[0].sku, "tee-black-m");
  EXPECT_EQ(d.lines[0].qty, 1u);
  EXPECT_TRUE(d.makes_record());
  EXPECT_FALSE(r.next(d));
  EXPECT_TRUE(r.status().ok()) << r.status().message();
  proto::OutboxRecord rec;
  outbox_record(d, 1, rec);
  EXPECT_EQ(rec, (proto::OutboxRecord{1,
                                      proto::OutboxKind::kOrder,
                                      1,
                                      "ann",
                                      "k-0001",
                                      kT0 + 123,
                                      kT0 + 123,
                                      {{"tee-black-m", 1}},
                                      {}}));
}

// The budget: a keyed one-line buy-now costs at most 64 bytes plus its key and user.
TEST(DecisionsTest, AKeyedOneLineBuyNowIsAtMost64BytesPlusKeyAndUser) {
  Book book;
  Changes setup;
  proto::SkuView v;
  ASSERT_EQ(book.sku_set({"sku-123456", proto::kSetTotal, 1'000'000, 0, 0, 0}, kT0, v, setup),
            proto::Status::kOk);
  HoldIdKey key{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  ASSERT_TRUE(book.set_hold_id_key(key, kT0, setup));  // random 62-bit ids: the worst case
  Changes ch;
  const std::string user = "user-000042", idem = "018f3a2b-7c4d-7e5f-8a9b-0c1d2e3f4a5b";
  for (int i = 0; i < 100; ++i) {
    proto::ReserveResp r;
    ASSERT_EQ(book.reserve({user, idem + std::to_string(i % 10), 0, {{"sku-123456", 1}}},
                           kT0 + 1000 * i, r, ch),
              proto::Status::kOk);
  }
  const double per_entry = static_cast<double>(ch.entries.size()) / ch.entry_count;
  std::printf("[ measured ] keyed one-line buy-now: %.1f bytes per entry (key %zu, user %zu)\n",
              per_entry, idem.size() + 1, user.size());
  EXPECT_LE(per_entry, 64.0 + static_cast<double>(idem.size() + 1 + user.size()));
}

// Damage is refused with what and where, never half-read.
TEST(DecisionsTest, DamagedGroupsAreRefused) {
  Book book;
  const std::string good = doc_group(book);
  GroupReader r;
  Decision d;
  EXPECT_FALSE(r.open(std::string_view(good).substr(0, 20)));
  EXPECT_NE(r.status().message().find("too short"), std::string::npos) << r.status().message();
  std::string flipped = good;
  flipped[kGroupHeaderBytes + 3] ^= 0x20;
  EXPECT_FALSE(r.open(flipped));
  EXPECT_NE(r.status().message().find("checksum mismatch"), std::string::npos)
      << r.status().message();
  std::string version = good;
  version[0] = 9;
  EXPECT_FALSE(r.open(version));
  EXPECT_NE(r.status().message().find("unknown log version 9"), std::string::npos)
      << r.status().message();
  // Entries that do not fit their group (a consistent checksum, so the fields are what is read).
  std::string entries = good.substr(kGroupHeaderBytes, good.size() - kGroupHeaderBytes - 4);
  std::string g;
  encode_group(42, kT0, 1, 1, 1, entries.substr(0, entries.size() - 3), g);
  ASSERT_TRUE(r.open(g));
  EXPECT_FALSE(r.next(d));
  EXPECT_NE(r.status().message().find("truncated or out of range reading"), std::string::npos)
      << r.status().message();
  encode_group(42, kT0, 1, 1, 2, entries, g);  // says two entries, holds one
  ASSERT_TRUE(r.open(g));
  EXPECT_TRUE(r.next(d));
  EXPECT_FALSE(r.next(d));
  EXPECT_NE(r.status().message().find("ends before its 2 entries"), std::string::npos)
      << r.status().message();
  encode_group(42, kT0, 1, 1, 1, entries + "xy", g);
  ASSERT_TRUE(r.open(g));
  EXPECT_TRUE(r.next(d));
  EXPECT_FALSE(r.next(d));
  EXPECT_NE(r.status().message().find("2 bytes after the last entry"), std::string::npos)
      << r.status().message();
  encode_group(42, kT0, 1, 1, 1, "Z" + entries.substr(1), g);
  ASSERT_TRUE(r.open(g));
  EXPECT_FALSE(r.next(d));
  EXPECT_NE(r.status().message().find("unknown entry type 90"), std::string::npos)
      << r.status().message();
  encode_group(42, kT0, 1, 2, 1, entries, g);  // more records than entries
  EXPECT_FALSE(r.open(g));
  EXPECT_NE(r.status().message().find("2 records in 1 entries"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace stockd::rec
