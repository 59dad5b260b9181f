// check_wal_tail on real RocksDB logs written through the Store (torn tails, zeros and garbage
// after the last record pass; damage followed by intact records is refused, read-write and
// read-only alike) and on small logs built here (several logs, the recyclable format).
#include "stockd/wal_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include "stockd/store.h"

namespace stockd::storage {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr size_t kBlock = 32768;
constexpr size_t kHeader = 7;

fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "stockd-wal-check-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// The fragments of an undamaged log: [begin, end) and type. Follows the lengths only.
struct Frag {
  size_t begin = 0;
  size_t end = 0;
  int type = 0;
};
std::vector<Frag> fragments(std::string_view bytes) {
  std::vector<Frag> out;
  for (size_t pos = 0; pos + kHeader <= bytes.size();) {
    const size_t room = kBlock - pos % kBlock;
    const auto at = [&](size_t i) { return static_cast<uint8_t>(bytes[pos + i]); };
    const size_t length = at(4) | at(5) << 8;
    if (room < kHeader || (at(6) == 0 && length == 0)) {
      pos += room;
      continue;
    }
    out.push_back({pos, pos + kHeader + length, at(6)});
    pos += kHeader + length;
  }
  return out;
}

std::string le(uint32_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}

// One fragment as RocksDB writes it; recyclable when `log_number` is given.
std::string fragment(uint8_t type, std::string_view payload,
                     std::optional<uint32_t> log_number = std::nullopt) {
  std::string covered(1, static_cast<char>(type));
  if (log_number) covered += le(*log_number, 4);
  covered += payload;
  const uint32_t crc = crc32c(covered);
  const uint32_t masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
  return le(masked, 4) + le(static_cast<uint32_t>(payload.size()), 2) + covered;
}

// Writes batches lsn first..last through the Store, each synced; batch `big_lsn` holds a value
// spanning three blocks. "" or what failed.
std::string write_batches(const fs::path& dir, uint64_t first, uint64_t last, uint64_t big_lsn) {
  auto opened = Store::open(dir.string(), StoreOptions{});
  if (!opened.ok()) return opened.status().message();
  std::unique_ptr<Store> store = std::move(*opened);
  for (uint64_t lsn = first; lsn <= last; ++lsn) {
    Batch b = store->batch();
    b.lsn = lsn;
    b.put("k/" + std::to_string(lsn),
          lsn == big_lsn ? std::string(70000, 'b') : "v" + std::to_string(lsn));
    b.put("m/meta", std::to_string(lsn));
    if (Status s = store->write(b, true); !s.ok()) return s.message();
  }
  return "";
}

class WalCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = make_temp_dir();
    data_ = base_ / "data";
    ASSERT_EQ(write_batches(data_, 1, 8, 3), "");
    wal_ = data_ / "wal";  // the store keeps its log there (docs/storage.md)
    for (const auto& f : fs::directory_iterator(wal_)) {
      if (f.path().extension() == ".log" && f.file_size() > 0) {
        ASSERT_EQ(log_, "") << "two logs with data";
        log_ = f.path().filename().string();
      }
    }
    ASSERT_NE(log_, "");
    bytes_ = slurp(wal_ / log_);
    frags_ = fragments(bytes_);
    // 8 batches: 7 FULL fragments and the big one as FIRST, MIDDLE, LAST.
    ASSERT_EQ(frags_.size(), 10u);
    ASSERT_EQ(frags_.back().end, bytes_.size());
    ASSERT_EQ(frags_[2].type, 2);
    ASSERT_EQ(frags_[3].type, 3);
    ASSERT_EQ(frags_[4].type, 4);
  }
  void TearDown() override { fs::remove_all(base_); }

  // A FULL fragment with three after it, in the file's last block.
  const Frag& middle() const {
    const Frag& f = frags_[frags_.size() - 4];
    EXPECT_EQ(f.type, 1);
    EXPECT_EQ(f.begin / kBlock, (bytes_.size() - 1) / kBlock);
    return f;
  }
  void replace_log(const std::string& bytes) { spit(wal_ / log_, bytes); }
  std::string flipped(size_t at, int bit) const {
    std::string b = bytes_;
    b[at] = static_cast<char>(b[at] ^ (1 << bit));
    return b;
  }
  // What Store::open says ("" if it opened).
  std::string open_error(bool read_only = false) const {
    StoreOptions o;
    o.read_only = read_only;
    return Store::open(data_.string(), o).status().message();
  }

  fs::path base_;
  fs::path data_;
  fs::path wal_;
  std::string log_;
  std::string bytes_;
  std::vector<Frag> frags_;
};

TEST(Crc32c, MatchesTheStandardCheckValues) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);    // RFC 3720, B.4
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);  // RFC 3720, B.4
  EXPECT_EQ(crc32c_extend(crc32c("1234"), "56789"), crc32c("123456789"));
}

// The 8-bytes-a-step path and the byte table agree at every length and alignment, the tail
// bytes included.
TEST(Crc32c, TheFastPathAgreesWithTheTable) {
  std::string bytes(200, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + 7);
  for (size_t start = 0; start < 9; ++start) {
    for (size_t len = 0; start + len <= bytes.size(); ++len) {
      const std::string_view part = std::string_view(bytes).substr(start, len);
      ASSERT_EQ(crc32c_extend(0x12345678u, part), crc32c_extend_portable(0x12345678u, part))
          << "start " << start << " length " << len;
    }
  }
}

TEST_F(WalCheck, AnUntouchedLogPasses) {
  EXPECT_TRUE(check_wal_tail(wal_.string()).ok());
  EXPECT_EQ(open_error(), "");
}

TEST_F(WalCheck, ALastRecordCutAnywherePasses) {
  const Frag& last = frags_.back();
  const size_t len = last.end - last.begin;
  for (size_t cut : {last.begin, last.begin + 1, last.begin + 4, last.begin + 6, last.begin + 7,
                     last.begin + 8, last.begin + len / 2, last.end - 1}) {
    replace_log(bytes_.substr(0, cut));
    EXPECT_TRUE(check_wal_tail(wal_.string()).ok()) << "cut at " << cut;
  }
  // The big record torn after its FIRST or MIDDLE fragment, or inside one.
  for (size_t cut : {frags_[3].begin, frags_[3].begin + 100, frags_[4].begin + 3}) {
    replace_log(bytes_.substr(0, cut));
    EXPECT_TRUE(check_wal_tail(wal_.string()).ok()) << "cut at " << cut;
  }
}

// RocksDB drops the torn tail at the open and must not leave it behind to be found again.
TEST_F(WalCheck, ATornTailOnceOpenedStaysQuiet) {
  replace_log(bytes_.substr(0, frags_.back().begin + 9));
  ASSERT_EQ(write_batches(data_, 8, 12, 0), "");
  EXPECT_TRUE(check_wal_tail(wal_.string()).ok());
  auto opened = Store::open(data_.string(), StoreOptions{});
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  std::unique_ptr<Store> store = std::move(*opened);
  std::string value;
  bool found = false;
  ASSERT_TRUE(store->get("m/meta", value, found).ok());
  EXPECT_EQ(value, "12");
}

TEST_F(WalCheck, ZerosOrGarbageAfterTheLastRecordPass) {
  std::mt19937_64 rng(7);
  std::string random(40000, '\0');
  for (char& c : random) c = static_cast<char>(rng());
  const size_t to_block_end = kBlock - bytes_.size() % kBlock;
  const std::vector<std::string> tails = {
      std::string(1, '\0'),
      std::string(100, '\0'),
      std::string(to_block_end, '\0'),
      std::string(40000, '\0'),
      random,
      fragment(1, std::string(300, 'x')).substr(0, 100),  // a header for 300 bytes, 100 there
  };
  for (size_t i = 0; i < tails.size(); ++i) {
    replace_log(bytes_ + tails[i]);
    EXPECT_TRUE(check_wal_tail(wal_.string()).ok()) << "tail " << i;
  }
}

TEST_F(WalCheck, ALengthRunningPastTheEndOfTheFileRefuses) {
  const Frag& m = middle();
  for (size_t at : {m.begin + 4, m.begin + 5}) {
    for (int bit = 0; bit < 8; ++bit) {
      const std::string b = flipped(at, bit);
      replace_log(b);
      const std::string why = check_wal_tail(wal_.string()).message();
      const std::string what = "bit " + std::to_string(bit) + " of byte " + std::to_string(at);
      EXPECT_THAT(why, AllOf(StartsWith("Corruption: " + log_ + ": corrupt record at byte " +
                                        std::to_string(m.begin) + " ("),
                             HasSubstr("followed by 3 intact records (the first at byte " +
                                       std::to_string(m.end) + ")"),
                             HasSubstr("not a torn tail")))
          << what;
      const size_t length =
          static_cast<uint8_t>(b[m.begin + 4]) | static_cast<uint8_t>(b[m.begin + 5]) << 8;
      if (m.begin + kHeader + length > bytes_.size()) {
        EXPECT_THAT(
            why, HasSubstr("(length " + std::to_string(length) + " runs past the end of the file)"))
            << what;
      } else {
        EXPECT_THAT(why, HasSubstr("(checksum mismatch)")) << what;
      }
      const std::string err = open_error();
      EXPECT_EQ(err, "cannot open store in " + data_.string() + ": " + why) << what;
      EXPECT_EQ(open_error(true), err) << what << ", read-only";
    }
  }
}

TEST_F(WalCheck, AFlippedChecksumOrPayloadRefuses) {
  const Frag& m = middle();
  for (size_t at : {m.begin, m.begin + 3, m.begin + kHeader, m.end - 1}) {
    replace_log(flipped(at, 2));
    EXPECT_THAT(check_wal_tail(wal_.string()).message(),
                HasSubstr(log_ + ": corrupt record at byte " + std::to_string(m.begin) +
                          " (checksum mismatch) followed by 3 intact records"))
        << "byte " << at;
    EXPECT_THAT(open_error(), StartsWith("cannot open store in ")) << "byte " << at;
  }
  replace_log(flipped(m.begin + 6, 4));  // FULL becomes 17
  EXPECT_THAT(check_wal_tail(wal_.string()).message(),
              HasSubstr("(unknown type 17) followed by 3"));
}

TEST_F(WalCheck, DamageInAnEarlierBlockRefuses) {
  const Frag& first = frags_[2];  // FIRST of the big record, filling the rest of block 0
  ASSERT_EQ(first.end, kBlock);
  const size_t length = first.end - first.begin - kHeader;
  int bit = 0;  // one that makes the length longer
  while ((length >> (8 + bit) & 1) != 0) ++bit;
  replace_log(flipped(first.begin + 5, bit));
  EXPECT_THAT(check_wal_tail(wal_.string()).message(),
              HasSubstr("corrupt record at byte " + std::to_string(first.begin) + " (length " +
                        std::to_string(length + (256u << bit)) +
                        " runs past the end of its 32 KiB block) followed by 7 intact records"));
}

// RocksDB skips the rest of a block after a zeroed header, without a word.
TEST_F(WalCheck, ZeroedRecordsFollowedByIntactOnesRefuse) {
  const Frag& m = middle();
  std::string b = bytes_;
  std::fill(b.begin() + static_cast<ptrdiff_t>(m.begin), b.begin() + static_cast<ptrdiff_t>(m.end),
            '\0');
  replace_log(b);
  EXPECT_THAT(check_wal_tail(wal_.string()).message(),
              HasSubstr("corrupt record at byte " + std::to_string(m.begin) +
                        " (a zeroed header) followed by 3 intact records"));
}

TEST_F(WalCheck, ATornTailFollowedByALaterLogRefuses) {
  replace_log(bytes_.substr(0, frags_.back().begin + 20));
  const std::string later = "999999.log";
  spit(wal_ / later, bytes_);
  EXPECT_THAT(
      check_wal_tail(wal_.string()).message(),
      HasSubstr(log_ + ": corrupt record at byte " + std::to_string(frags_.back().begin) +
                " (length " + std::to_string(frags_.back().end - frags_.back().begin - kHeader) +
                " runs past the end of the file) followed by 10 intact records (the first "
                "at byte 0 of " +
                later + ")"));
  spit(wal_ / later, std::string(5000, '\0'));  // a new log, preallocated, never written
  EXPECT_TRUE(check_wal_tail(wal_.string()).ok());
  spit(wal_ / later, "");
  EXPECT_TRUE(check_wal_tail(wal_.string()).ok());
}

TEST(WalCheckDirs, NoStoreYetOrNotADirectoryIsForRocksDbToSay) {
  const fs::path base = make_temp_dir();
  EXPECT_TRUE(check_wal_tail((base / "missing").string()).ok());
  spit(base / "file", "not a data dir\n");
  EXPECT_TRUE(check_wal_tail((base / "file").string()).ok());
  EXPECT_TRUE(check_wal_tail(base.string()).ok());  // no logs at all
  fs::remove_all(base);
}

TEST(WalCheckRecyclable, TheFilesPreviousLifeIsATailButOwnRecordsAfterDamageAreNot) {
  const fs::path base = make_temp_dir();
  const uint32_t kNumber = 12;
  std::string now;
  for (int i = 0; i < 4; ++i) now += fragment(5, "batch " + std::to_string(i), kNumber);
  std::string before;  // the same file in its previous life, as log 7
  for (int i = 0; i < 9; ++i) before += fragment(5, "old batch " + std::to_string(i), 7);
  spit(base / "000012.log", now + before.substr(now.size()));
  EXPECT_TRUE(check_wal_tail(base.string()).ok());
  spit(base / "000012.log", now + before);  // the previous life starts on a fragment boundary
  EXPECT_TRUE(check_wal_tail(base.string()).ok());

  std::string damaged = now + fragment(5, "batch 4", kNumber);
  damaged[now.size() - 1] ^= 1;  // the payload of batch 3
  spit(base / "000012.log", damaged);
  EXPECT_THAT(check_wal_tail(base.string()).message(),
              HasSubstr("000012.log: corrupt record at byte " +
                        std::to_string(now.size() - fragment(5, "batch 3", kNumber).size()) +
                        " (checksum mismatch) followed by 1 intact record (the first at byte " +
                        std::to_string(now.size()) + ")"));
  fs::remove_all(base);
}

}  // namespace
}  // namespace stockd::storage

namespace stockd::storage {
namespace {

// A RocksDB store without stockd's column families (e.g. written before they existed) is
// refused with a message that says so, and left exactly as it was.
TEST(StoreLayout, AStoreWithoutOurFamiliesIsRefusedAndLeftAlone) {
  const fs::path dir = make_temp_dir() / "old";
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.string(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "m/meta", "old").ok());
    delete db;
  }
  const Status refused = Store::open(dir.string(), StoreOptions{}).status();
  EXPECT_EQ(refused.code(), Status::Code::kRefused);
  const std::string& err = refused.message();
  EXPECT_THAT(err, ::testing::HasSubstr("its column families are [default]"));
  EXPECT_THAT(err, ::testing::HasSubstr("not a store of this stockd version"));
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.string(), &families).ok());
  EXPECT_EQ(families, std::vector<std::string>{"default"});
  fs::remove_all(dir.parent_path());
}

// A crash in the middle of moving an earlier layout's logs into wal/ leaves them in wal.moving/
// (the directory renamed to wal/ once every log is in it). The next start finishes the move; it
// used to refuse the store as one whose wal/ was deleted, advising a restore from a backup.
TEST(StoreLayout, AMoveIntoWalCutShortIsFinishedAtTheNextStart) {
  const fs::path dir = make_temp_dir() / "moving";
  {
    auto opened = Store::open(dir.string(), StoreOptions{});
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    Batch b = (*opened)->batch();
    b.put("s/tee", "in the log only");
    ASSERT_TRUE((*opened)->write(b, true).ok());
  }
  fs::rename(dir / "wal", dir / "wal.moving");  // every log moved, the last rename not done
  StoreOptions ro;
  ro.read_only = true;
  ro.create_if_missing = false;
  const Status read_only = Store::open(dir.string(), ro).status();
  EXPECT_EQ(read_only.code(), Status::Code::kRefused);
  EXPECT_THAT(read_only.message(), ::testing::HasSubstr("was cut short"));
  auto opened = Store::open(dir.string(), StoreOptions{});
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  std::string v;
  bool found = false;
  ASSERT_TRUE((*opened)->get("s/tee", v, found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(v, "in the log only");
  opened->reset();
  EXPECT_TRUE(fs::exists(dir / "wal"));
  EXPECT_FALSE(fs::exists(dir / "wal.moving"));
  fs::remove_all(dir.parent_path());
}

// Rows land in the family of their table and read back through the same routing.
TEST(StoreLayout, EachTableReadsBackWhereItWasWritten) {
  const fs::path dir = make_temp_dir() / "new";
  auto opened = Store::open(dir.string(), StoreOptions{});
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  std::unique_ptr<Store> store = std::move(*opened);
  Batch b = store->batch();
  for (const char* key : {"h/1", "l/1", "s/tee", "m/meta"}) b.put(key, std::string("v") + key);
  ASSERT_TRUE(store->write(b, true).ok());
  for (const char* key : {"h/1", "l/1", "s/tee", "m/meta"}) {
    std::string v;
    bool found = false;
    ASSERT_TRUE(store->get(key, v, found).ok());
    EXPECT_TRUE(found) << key;
    EXPECT_EQ(v, std::string("v") + key);
    size_t n = 0;
    ASSERT_TRUE(store->scan(std::string(key, 2), [&](auto, auto) { return ++n, true; }).ok());
    EXPECT_EQ(n, 1u) << key;  // each prefix sees its own row only
  }
  store.reset();
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.string(), &families).ok());
  std::sort(families.begin(), families.end());
  EXPECT_EQ(families, (std::vector<std::string>{"default", "holds", "log"}));
  fs::remove_all(dir.parent_path());
}

// A store of the layout before the log of decisions (rows and outbox records per group) is
// refused, unchanged, with the command that converts it.
TEST(StoreLayout, AStoreOfTheEarlierLayoutIsRefusedWithHowToMigrate) {
  const fs::path dir = make_temp_dir() / "v2";
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {"default", {}}, {"holds", {}}, {"outbox", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(o), dir.string(), cfs, &handles, &db).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  const Status refused = Store::open(dir.string(), StoreOptions{}).status();
  EXPECT_EQ(refused.code(), Status::Code::kRefused);
  const std::string& err = refused.message();
  EXPECT_THAT(err, ::testing::HasSubstr("the layout of an earlier stockd"));
  EXPECT_THAT(err, ::testing::HasSubstr("stockctl migrate --data-dir " + dir.string()));
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.string(), &families).ok());
  std::sort(families.begin(), families.end());
  EXPECT_EQ(families, (std::vector<std::string>{"default", "holds", "outbox"}));
  fs::remove_all(dir.parent_path());
}

}  // namespace
}  // namespace stockd::storage
