// Damaged store files on a stopped server.
//
// stockd's data dir holds RocksDB's write-ahead log (wal/NNNNNN.log), one record per group
// commit, and the acknowledged mark (ACKED: the last lsn whose answers were released). The store
// opens the log with kTolerateCorruptedTailRecords and paranoid checks: a torn last record (a
// write that was never acknowledged) is dropped; anything else damaged, and a log that ends
// before the mark (deleted, emptied, cut short, an older copy), must stop the start (exit code 1,
// a message saying what is wrong), never a start on a shorter history.
//
// A small history is written once with the real server and left in the log (kill -9, so nothing
// is flushed to a table file), its last record a restock whose answer the test does not count as
// acknowledged. Every case works on a fresh copy of that data dir.
#include <gtest/gtest.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "integration/harness.h"
#include "ledger_util.h"
#include "stockd/ack_mark.h"
#include "stockd/decisions.h"
#include "support/process.h"
#include "wal_format.h"

namespace stockd::crash {
namespace {

namespace fs = std::filesystem;
using test::StockdProcess;

constexpr const char* kTailSku = "tee";  // the unacknowledged last record restocks it
constexpr int64_t kTailDelta = 7;

// The history as the server showed it once every acknowledged answer was in.
struct Expected {
  std::vector<proto::SkuView> skus;  // before the tail restock
  std::vector<proto::HoldView> holds;
  std::vector<std::pair<proto::ReserveReq, uint64_t>> reserves;  // keyed, and their hold
  std::pair<proto::ClaimReq, proto::ClaimResp> claim;
  uint64_t next_hold_id = 0;
};

struct History {
  fs::path base;       // scratch space; the copies go here
  fs::path pristine;   // the data dir as kill -9 left it
  std::string wal;     // path of the log in it (wal/NNNNNN.log)
  uint64_t acked = 0;  // the ACKED mark kill -9 left: the lsn of the tail restock
  std::string wal_bytes;
  std::vector<WalRecord> records;
  Expected expected;
  std::string error;  // why the history could not be made
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string view_text(const proto::SkuView& v) {
  return v.sku + "{total " + std::to_string(v.total) + ", available " +
         std::to_string(v.available) + ", held " + std::to_string(v.held) + ", sold " +
         std::to_string(v.sold) + "}";
}

// Writes the acknowledged history through `p` and records how the server showed it.
std::string write_history(StockdProcess& p, Expected& e) {
  Client admin = p.admin();
  Client buyer = p.buyer();
  const std::vector<proto::SkuSetReq> skus = {
      {"tee", proto::kSetTotal, 50, 0, 0, 0},
      {"lim", proto::kSetTotal | proto::kSetPerUserLimit, 20, 2, 0, 0},
      {"code", proto::kSetPerUserLimit, 0, 0, 0, 0},
  };
  for (const auto& s : skus) {
    if (auto r = admin.sku_set(s); !r.ok()) return "SKU_SET: " + reply_text(r);
  }
  if (auto r = admin.codes_load({"code", {"A1", "A2", "A3", "A4", "A5"}}); !r.ok()) {
    return "CODES_LOAD: " + reply_text(r);
  }
  const std::vector<proto::ReserveReq> reserves = {
      {"ann", "k1", 0, {{"tee", 2}}},         {"bob", "k2", 3'600'000, {{"tee", 1}}},
      {"cat", "k3", 3'600'000, {{"lim", 1}}}, {"dan", "k4", 3'600'000, {{"tee", 1}, {"lim", 1}}},
      {"fay", "k6", 0, {{"lim", 2}}},
  };
  for (const auto& req : reserves) {
    auto r = buyer.reserve(req);
    if (!r.ok()) return "RESERVE " + req.key + ": " + reply_text(r);
    e.reserves.push_back({req, r.body.hold_id});
  }
  if (auto r = buyer.commit(e.reserves[2].second, e.reserves[2].first.user); !r.ok())
    return "COMMIT: " + reply_text(r);
  if (auto r = buyer.release(e.reserves[3].second, e.reserves[3].first.user); !r.ok())
    return "RELEASE: " + reply_text(r);
  e.claim.first = {"code", "eve", "k5"};
  auto claimed = buyer.claim(e.claim.first);
  if (!claimed.ok()) return "CLAIM: " + reply_text(claimed);
  e.claim.second = claimed.body;
  for (const auto& s : skus) e.skus.push_back(admin.sku_get(s.sku).body);
  auto stats = admin.stats();
  for (const auto& s : stats.body.stats) {
    if (s.name == "next_hold_id") e.next_hold_id = s.value;
  }
  for (uint64_t id = 1; id < e.next_hold_id; ++id) e.holds.push_back(admin.hold_get(id).body);
  // The tail: durable, but the test does not count its answer. Nothing else writes after it
  // (no hold falls due within the hour, nothing reaches its retention).
  (void)admin.restock(kTailSku, kTailDelta);
  return "";
}

// Finds the log and checks that its last record is the tail restock.
std::string read_wal(History& h) {
  for (const auto& f : fs::directory_iterator(h.pristine / "wal")) {
    if (f.path().extension() == ".log" && f.file_size() > 0) {
      if (!h.wal.empty()) return "two logs with data: " + h.wal + ", " + f.path().string();
      h.wal = "wal/" + f.path().filename().string();
    }
  }
  if (Status s = storage::decode_ack_mark(slurp(h.pristine / storage::kAckMarkFile), h.acked);
      !s.ok()) {
    return "ACKED " + s.message();
  }
  if (h.wal.empty()) return "no log with data in " + h.pristine.string();
  h.wal_bytes = slurp(h.pristine / h.wal);
  std::string why;
  h.records = wal_records(h.wal_bytes, why);
  if (!why.empty()) return "cannot parse " + h.wal + ": " + why;
  if (h.records.size() < 8)
    return h.wal + " has only " + std::to_string(h.records.size()) + " records";
  // The last record is one log group (key l/ + lsn) holding the restock entry: 'T', its time,
  // then the SKU as a varint length and its bytes.
  const std::string& last = h.records.back().payload;
  const std::string entry = std::string(1, static_cast<char>(rec::Op::kRestock));
  if (last.find(std::string("l/")) == std::string::npos ||
      last.find(std::string(1, char(std::strlen(kTailSku))) + kTailSku) == std::string::npos ||
      last.find(entry) == std::string::npos || last.find("h/") != std::string::npos) {
    return "the last record of " + h.wal + " is not the tail restock";
  }
  return "";
}

History* g_history = nullptr;  // once made, for the clean-up

const History& history() {
  static History h = [] {
    History h;
    h.base = test::make_temp_dir("corruption");
    h.pristine = h.base / "pristine";
    StockdProcess p({"--sequential-hold-ids"}, h.pristine.string());
    p.set_log_file((h.base / "history.log").string());
    if (!p.start()) {
      h.error = "stockd did not start: " + slurp(h.base / "history.log");
      return h;
    }
    h.error = write_history(p, h.expected);
    p.kill9();  // keeps the history in the log
    if (h.error.empty()) h.error = read_wal(h);
    return h;
  }();
  g_history = &h;
  return h;
}

// Removes the scratch space after a run without failures (else it is kept to look at).
class CleanUp : public ::testing::Environment {
 public:
  void TearDown() override {
    if (g_history != nullptr && ::testing::UnitTest::GetInstance()->Passed()) {
      fs::remove_all(g_history->base);
    }
  }
};
[[maybe_unused]] ::testing::Environment* const kCleanUp =
    ::testing::AddGlobalTestEnvironment(new CleanUp);

// "" if the server on `port` shows exactly the acknowledged history (and the tail restock
// when `with_tail`), else every difference.
std::string differences(const StockdProcess& p, bool with_tail) {
  const Expected& e = history().expected;
  Client admin = p.admin();
  Client buyer = p.buyer();
  std::string out;
  for (proto::SkuView want : e.skus) {
    if (with_tail && want.sku == kTailSku) {
      want.total += kTailDelta;
      want.available += kTailDelta;
    }
    auto got = admin.sku_get(want.sku);
    if (!got.ok())
      out += "sku " + want.sku + ": " + reply_text(got) + "; ";
    else if (got.body != want)
      out += "sku " + view_text(got.body) + ", want " + view_text(want) + "; ";
  }
  for (const proto::HoldView& want : e.holds) {
    auto got = admin.hold_get(want.hold_id);
    if (!got.ok())
      out += hold_name(want.hold_id) + ": " + reply_text(got) + "; ";
    else if (got.body != want) {
      out += hold_name(want.hold_id) + " is " + state_name(got.body.state) + ", want " +
             state_name(want.state) + " (or another field differs); ";
    }
  }
  for (const auto& [req, hold] : e.reserves) {
    auto got = buyer.reserve(req);
    if (!got.ok() || got.body.hold_id != hold) {
      out += "key " + req.key + " sent again: " + reply_text(got) + " " +
             hold_name(got.body.hold_id) + ", want " + hold_name(hold) + "; ";
    }
  }
  auto claimed = buyer.claim(e.claim.first);
  if (!claimed.ok() || claimed.body.order_id != e.claim.second.order_id ||
      claimed.body.code != e.claim.second.code) {
    out += "claim key k5 sent again: " + reply_text(claimed) + "; ";
  }
  return out;
}

struct Outcome {
  bool started = false;
  int exit_code = -1;       // after SIGTERM if it started, else of the refusal
  std::string differences;  // if it started
  std::string log;          // its stderr
};

// Copies the pristine dir, lets `damage` loose on the copy, starts stockd on it.
template <class Damage>
Outcome run_case(const std::string& name, bool with_tail, Damage damage) {
  const History& h = history();
  const fs::path dir = h.base / name;
  const std::string log = dir.string() + ".log";
  fs::remove_all(dir);
  fs::remove(log);
  fs::copy(h.pristine, dir, fs::copy_options::recursive);
  damage(dir);
  Outcome o;
  {
    StockdProcess p({"--sequential-hold-ids"}, dir.string());
    p.set_log_file(log);
    o.started = p.start();
    if (o.started) o.differences = differences(p, with_tail);
    int status = o.started ? p.stop() : p.wait_exit();
    o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  o.log = slurp(log);
  fs::remove_all(dir);
  fs::remove(log);
  fs::remove(dir.string() + ".ready");
  return o;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A refusal must say that, and what is wrong, and where.
// stockd's exit codes (README, "Exit codes"): 4, the data needs an operator (a restart would
// refuse again); 2, a bad setting.
constexpr int kExitDataNeedsOperator = 4;
constexpr int kExitConfig = 2;

void expect_clear_refusal(const Outcome& o, const std::string& what, const std::string& word,
                          int exit_code = kExitDataNeedsOperator) {
  EXPECT_FALSE(o.started) << what << ": stockd started; differences: " << o.differences;
  EXPECT_EQ(o.exit_code, exit_code) << what << "\n" << o.log;
  EXPECT_NE(o.log.find("cannot open store in"), std::string::npos) << what << "\n" << o.log;
  EXPECT_NE(o.log.find(word), std::string::npos) << what << ": no '" << word << "' in\n" << o.log;
}

class Corruption : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(history().error, ""); }
};

// A crash while the tail was being written: its answer never left, so the mark is the lsn before.
void unacknowledge_tail(const fs::path& d) {
  write_bytes(d / storage::kAckMarkFile, storage::encode_ack_mark(history().acked - 1));
}

// (a) The unacknowledged last record cut at every byte: a torn tail, dropped without a word.
TEST_F(Corruption, TornLastRecordAtEveryByteStartsWithEveryAcknowledgedAnswer) {
  const History& h = history();
  const WalRecord& last = h.records.back();
  for (size_t cut = last.begin; cut <= last.end && !HasFailure(); ++cut) {
    const bool whole = cut == last.end;  // the control: nothing cut, the restock is there
    Outcome o = run_case("torn", whole, [&](const fs::path& d) {
      fs::resize_file(d / h.wal, cut);
      unacknowledge_tail(d);
    });
    const std::string what = h.wal + " cut at byte " + std::to_string(cut) + " (last record " +
                             std::to_string(last.begin) + ".." + std::to_string(last.end) + ")";
    EXPECT_TRUE(o.started) << what << ": refused\n" << o.log;
    EXPECT_EQ(o.differences, "") << what;
    EXPECT_EQ(o.exit_code, 0) << what << "\n" << o.log;
  }
  std::printf("corruption: %zu cuts of the last record, all started with every answer\n",
              last.end - last.begin + 1);
}

// (b) One bit flipped inside an acknowledged record in the middle of the log: its checksum
// (or type) no longer matches, and later acknowledged records follow it. Must refuse.
TEST_F(Corruption, BitFlipInsideAnAcknowledgedRecordRefusesToStart) {
  const History& h = history();
  const size_t index = h.records.size() / 2;
  const WalRecord& r = h.records[index];
  std::vector<std::pair<size_t, int>> flips;  // (byte offset in the file, bit)
  for (size_t i : {0, 1, 2, 3, 6}) {          // checksum and type
    for (int bit : {0, 3, 7}) flips.push_back({r.begin + i, bit});
  }
  for (size_t at = r.begin + kWalHeaderBytes; at < r.end; at += 7) {
    flips.push_back({at, static_cast<int>(at % 8)});
  }
  for (const auto& flip : flips) {
    const size_t at = flip.first;
    const int bit = flip.second;
    Outcome o = run_case("flip", false, [&](const fs::path& d) {
      std::string bytes = h.wal_bytes;
      bytes[at] = static_cast<char>(bytes[at] ^ (1 << bit));
      write_bytes(d / h.wal, bytes);
    });
    expect_clear_refusal(o,
                         "bit " + std::to_string(bit) + " of byte " + std::to_string(at) +
                             " flipped (record " + std::to_string(index) + " of " +
                             std::to_string(h.records.size()) + ")",
                         "Corruption");
    if (HasFailure()) break;
  }
  std::printf("corruption: %zu bit flips in acknowledged record %zu, all refused\n", flips.size(),
              index);
}

// (b, the length field) A flipped bit in the length of an acknowledged record. If the length
// now points past the end of the file, the record looks like a torn tail to
// kTolerateCorruptedTailRecords, and everything from it on would be dropped silently.
TEST_F(Corruption, BitFlipInTheLengthOfAnAcknowledgedRecordRefusesToStart) {
  const History& h = history();
  const size_t index = h.records.size() / 2;
  const WalRecord& r = h.records[index];
  std::vector<std::string> started;
  for (size_t at : {r.begin + 4, r.begin + 5}) {
    for (int bit = 0; bit < 8; ++bit) {
      Outcome o = run_case("length", false, [&](const fs::path& d) {
        std::string bytes = h.wal_bytes;
        bytes[at] = static_cast<char>(bytes[at] ^ (1 << bit));
        write_bytes(d / h.wal, bytes);
      });
      if (o.started) {
        started.push_back(
            "bit " + std::to_string(bit) + " of byte " + std::to_string(at) + ": started, " +
            (o.differences.empty() ? "with everything" : "on a shorter history: " + o.differences));
      } else {
        expect_clear_refusal(o,
                             "length bit " + std::to_string(bit) + " of byte " + std::to_string(at),
                             "Corruption");
      }
    }
  }
  std::string all;
  for (const auto& s : started) all += "  " + s + "\n";
  EXPECT_TRUE(started.empty()) << started.size()
                               << " of 16 flips in the length of acknowledged record " << index
                               << " of " << h.records.size() << " (bytes " << r.begin << ".."
                               << r.end << " of " << h.wal << ", " << h.wal_bytes.size()
                               << " bytes) did not stop the start:\n"
                               << all;
}

// (c) Garbage after the last record. What a crash can leave there (zeros of a preallocated
// block, half a header, a header whose record never made it) must be ignored; a whole fragment
// with a wrong checksum may be refused as corruption, but a start must show everything.
TEST_F(Corruption, GarbageAfterTheLastRecordStartsWithEverything) {
  const History& h = history();
  std::mt19937_64 rng(42);
  std::string random(40000, '\0');
  for (char& c : random) c = static_cast<char>(rng());
  const std::string torn = std::string("\x12\x34\x56\x78\x2c\x01\x01", 7) + random.substr(0, 100);
  const std::string whole_bad = std::string("\x12\x34\x56\x78\x0a\x00\x01", 7) + "0123456789";
  struct Case {
    const char* name;
    std::string tail;
    bool may_refuse;
  };
  const std::vector<Case> cases = {
      {"4 KiB of zeros", std::string(4096, '\0'), false},
      {"3 bytes of a header", "\x11\x22\x33", false},
      {"a header for 300 bytes, 100 there", torn, false},
      {"a whole fragment with a wrong checksum", whole_bad, true},
      {"40000 random bytes", random, true},
  };
  for (const Case& c : cases) {
    Outcome o = run_case("garbage", true,
                         [&](const fs::path& d) { write_bytes(d / h.wal, h.wal_bytes + c.tail); });
    if (o.started || !c.may_refuse) {
      EXPECT_TRUE(o.started) << c.name << ": refused\n" << o.log;
      EXPECT_EQ(o.differences, "") << c.name;
      EXPECT_EQ(o.exit_code, 0) << c.name << "\n" << o.log;
    } else {
      expect_clear_refusal(o, c.name, "Corruption");
    }
    std::printf("corruption: %s appended: %s\n", c.name,
                o.started ? "started with everything" : "refused (corruption)");
  }
}

// A log that lost acknowledged records -- deleted ("clean up the logs"), emptied, cut short
// anywhere (an older copy of it is the same bytes as a prefix), or the mark itself deleted --
// refuses to start and says that acknowledged groups are missing; nothing is dropped silently.
TEST_F(Corruption, ALostOrShortenedLogRefusesToStart) {
  const History& h = history();
  auto expect_loss = [](const Outcome& o, const std::string& what, const std::string& word) {
    EXPECT_FALSE(o.started) << what << ": started; differences: " << o.differences;
    EXPECT_EQ(o.exit_code, kExitDataNeedsOperator) << what << "\n" << o.log;
    EXPECT_NE(o.log.find(word), std::string::npos) << what << ": no '" << word << "' in\n" << o.log;
  };
  const std::string missing = "acknowledged groups are missing";
  expect_loss(run_case("deleted", false, [](const fs::path& d) { fs::remove_all(d / "wal"); }),
              "wal/ deleted", "write-ahead log is missing");
  expect_loss(run_case("logs", false,
                       [](const fs::path& d) {
                         for (const auto& f : fs::directory_iterator(d / "wal")) {
                           fs::remove(f.path());
                         }
                       }),
              "every wal/*.log deleted", missing);
  expect_loss(run_case("empty", false, [&](const fs::path& d) { fs::resize_file(d / h.wal, 0); }),
              "the log emptied", missing);
  // Cut at record boundaries (an older copy of the log) and inside records, from the first
  // acknowledged record to the tail itself (acknowledged: its mark is in ACKED).
  const std::vector<size_t> cuts = {h.records[1].begin, h.records[h.records.size() / 2].begin + 9,
                                    h.records[h.records.size() / 2].end, h.records.back().begin,
                                    h.records.back().end - 1};
  for (size_t cut : cuts) {
    expect_loss(run_case("cut", false, [&](const fs::path& d) { fs::resize_file(d / h.wal, cut); }),
                h.wal + " cut at byte " + std::to_string(cut), missing);
  }
  expect_loss(
      run_case("mark", false, [](const fs::path& d) { fs::remove(d / storage::kAckMarkFile); }),
      "ACKED deleted", "ACKED");
  // Both, taken for disposable logs: without wal/ the store looked like an earlier layout,
  // whose mark is made anew, and started without its log (acknowledged groups included).
  expect_loss(run_case("both", false,
                       [](const fs::path& d) {
                         fs::remove_all(d / "wal");
                         fs::remove(d / storage::kAckMarkFile);
                       }),
              "wal/ and ACKED deleted", "write-ahead log is missing");
  // The control: the same copy untouched starts with everything.
  Outcome o = run_case("whole", true, [](const fs::path&) {});
  EXPECT_TRUE(o.started) << o.log;
  EXPECT_EQ(o.differences, "");
}

// The log deleted while the server runs (RocksDB goes on writing to the unlinked file). Killed
// before a checkpoint covers what was decided since: the acknowledged groups are gone, and the
// next start refuses. Stopped cleanly: the last checkpoint, written from the checkpointer's own
// book (which replayed every durable group), holds every acknowledged decision, and the next
// start has them all.
void lose_the_log_while_running(const fs::path& base, bool clean_stop) {
  const fs::path dir = base / "data";
  StockdProcess p({"--sequential-hold-ids"}, dir.string());
  p.set_log_file((base / "first.log").string());
  ASSERT_TRUE(p.start());
  Client admin = p.admin();
  proto::SkuSetReq set;
  set.sku = "tee";
  set.mask = proto::kSetTotal;
  set.total = 10;
  ASSERT_TRUE(admin.sku_set(set).ok());
  for (const auto& f : fs::directory_iterator(dir / "wal")) fs::remove(f.path());
  ASSERT_TRUE(admin.restock("tee", 5).ok());
  if (clean_stop) {
    EXPECT_EQ(p.stop(), 0);
  } else {
    p.kill9();
  }
}

TEST(LostLog, DeletedWhileRunningThenKilledIsRefusedAtTheNextStart) {
  const fs::path base = test::make_temp_dir("lostlog");
  ASSERT_NO_FATAL_FAILURE(lose_the_log_while_running(base, false));
  StockdProcess again({"--sequential-hold-ids"}, (base / "data").string());
  again.set_log_file((base / "second.log").string());
  EXPECT_FALSE(again.start(5000)) << "started on a store that lost its acknowledged log";
  const std::string log = slurp(base / "second.log");
  EXPECT_NE(log.find("acknowledged groups are missing"), std::string::npos) << log;
  fs::remove_all(base);
}

TEST(LostLog, DeletedWhileRunningThenStoppedCleanlyKeepsEverything) {
  const fs::path base = test::make_temp_dir("lostlog");
  ASSERT_NO_FATAL_FAILURE(lose_the_log_while_running(base, true));
  StockdProcess again({"--sequential-hold-ids"}, (base / "data").string());
  again.set_log_file((base / "second.log").string());
  ASSERT_TRUE(again.start(5000)) << slurp(base / "second.log");
  auto sku = again.admin().sku_get("tee");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.total, 15u) << "the restock after the deletion was acknowledged";
  fs::remove_all(base);
}

// A bit flipped in a file, by default a third of the way in: the block there no longer matches
// its checksum. In a small table file that is its properties block, which the store's open
// reads; its first block (`at` 16) holds rows, read when the rows are.
void flip_a_bit(const fs::path& file, std::streamoff at = -1) {
  std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
  if (at < 0) at = static_cast<std::streamoff>(fs::file_size(file) / 3);
  io.seekg(at);
  char c = 0;
  io.get(c);
  io.seekp(at);
  io.put(static_cast<char>(c ^ 0x10));
}

// The table files in `dir` of the state (the checkpoint's rows: every family but the log's), or
// with `log`, of the log.
std::vector<fs::path> table_files(const fs::path& dir, bool log = false) {
  std::vector<fs::path> out;
  for (const auto& f : fs::directory_iterator(dir)) {
    if (f.path().extension() != ".sst") continue;
    rocksdb::SstFileReader reader{rocksdb::Options()};
    EXPECT_TRUE(reader.Open(f.path().string()).ok()) << f.path();
    std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(rocksdb::ReadOptions()));
    it->SeekToFirst();
    if (it->Valid() && it->key().starts_with("l/") == log) out.push_back(f.path());
  }
  return out;
}
std::vector<fs::path> state_table_files(const fs::path& dir) { return table_files(dir); }

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& f : fs::directory_iterator(dir)) out.push_back(f.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

struct Bought {
  std::vector<std::pair<proto::ReserveReq, uint64_t>> keyed;  // each buy and its hold
};

// `n` keyed buy-nows of one "tee" each, from `from` on.
void buy(StockdProcess& p, int from, int n, Bought& b) {
  Client buyer = p.buyer();
  for (int i = from; i < from + n; ++i) {
    const std::string k = std::to_string(i);
    proto::ReserveReq req{"u" + k, "k" + k, 0, {{"tee", 1}}};
    auto r = buyer.reserve(req);
    ASSERT_TRUE(r.ok()) << reply_text(r);
    b.keyed.emplace_back(req, r.body.hold_id);
  }
}

// A data dir whose checkpoint (200 buys, then 100 more: two clean stops) is newer than its
// snapshot (written at the first checkpoint, after 50 decisions), the log kept back to it.
struct Damaged {
  fs::path base = test::make_temp_dir("ckpt");
  fs::path dir = base / "data";
  Bought bought;
  std::vector<std::string> flags = {"--sequential-hold-ids", "--checkpoint-every", "50"};
  std::string make() {
    for (int run = 0; run < 2; ++run) {
      StockdProcess p(flags, dir.string());
      p.set_log_file((base / "make.log").string());
      if (!p.start()) return "stockd did not start";
      if (run == 0 && !p.admin().sku_set({"tee", proto::kSetTotal, 1000, 0, 0, 0}).ok()) {
        return "SKU_SET failed";
      }
      buy(p, run * 200, run == 0 ? 200 : 100, bought);
      if (p.stop() != 0) return "a clean stop failed";  // it writes a checkpoint
    }
    return "";
  }
  ~Damaged() { fs::remove_all(base); }
};

// A checkpoint's table files damaged on disk (a bit flip in a block the open reads, or in one
// of rows): the start falls back on the snapshot, replays the log after it, and writes the state
// anew, so that every acknowledged buy is there, a keyed retry gets its hold back, and the next
// start needs no fallback.
class CheckpointDamageAt : public ::testing::TestWithParam<std::streamoff> {};
constexpr std::streamoff kDeleteTheFile = -2;  // the parameter that deletes each file instead

TEST_P(CheckpointDamageAt, FallsBackOnTheSnapshot) {
  Damaged d;
  ASSERT_EQ(d.make(), "");
  ASSERT_TRUE(fs::exists(d.dir / "snapshots")) << "no snapshot was written";
  const std::vector<fs::path> state = state_table_files(d.dir);
  ASSERT_FALSE(state.empty()) << "the clean stops wrote no checkpoint file";
  for (const fs::path& f : state) {
    if (GetParam() == kDeleteTheFile) {
      fs::remove(f);
    } else {
      flip_a_bit(f, GetParam());
    }
  }
  // stockctl verify: a start would recover (exit 0), and the damage is said.
  const test::ToolResult verify = test::run_tool(STOCKCTL_BIN, {"verify", "--data-dir", d.dir});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_NE(verify.err.find("WARNING: the checkpoint in the store is damaged"), std::string::npos)
      << verify.err;
  EXPECT_NE(verify.out.find("OK: a snapshot at lsn"), std::string::npos) << verify.out;
  const test::ToolResult inspect =
      test::run_tool(STOCKCTL_BIN, {"inspect", "--data-dir", d.dir, "--json"});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("\"checkpoint_damaged\":\"the checkpoint in the store is damaged"),
            std::string::npos)
      << inspect.out;
  EXPECT_NE(inspect.out.find("\"sold\":300"), std::string::npos) << inspect.out;
  {
    StockdProcess again(d.flags, d.dir.string());
    again.set_log_file((d.base / "second.log").string());
    ASSERT_TRUE(again.start(20000)) << slurp(d.base / "second.log");
    const std::string log = slurp(d.base / "second.log");
    EXPECT_NE(log.find(GetParam() == kDeleteTheFile ? "No such file" : "checksum mismatch"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("fell back on the snapshot at lsn"), std::string::npos) << log;
    auto sku = again.admin().sku_get("tee");
    ASSERT_TRUE(sku.ok()) << reply_text(sku);
    EXPECT_EQ(sku.body.sold, 300u);
    EXPECT_EQ(sku.body.available, 700u);
    Client buyer = again.buyer();
    for (const auto& [req, hold] : d.bought.keyed) {
      auto r = buyer.reserve(req);
      ASSERT_TRUE(r.ok()) << reply_text(r);
      EXPECT_EQ(r.body.hold_id, hold) << "a retry of " << req.key;
    }
    EXPECT_EQ(again.stop(), 0);
  }
  StockdProcess third(d.flags, d.dir.string());
  third.set_log_file((d.base / "third.log").string());
  ASSERT_TRUE(third.start()) << slurp(d.base / "third.log");
  const std::string log = slurp(d.base / "third.log");
  EXPECT_EQ(log.find("fell back"), std::string::npos) << "the repair did not hold:\n" << log;
  auto sku = third.admin().sku_get("tee");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.sold, 300u);
}

// A table file of the log missing (the groups a start flushed from the WAL): no snapshot
// replaces decisions, so the start is refused, cleanly (RocksDB 7.8 aborts on an assertion when
// a family with a missing file is read without paranoid checks) and without a change to the dir.
TEST(CheckpointDamage, AMissingTableFileOfTheLogRefusesToStart) {
  Damaged d;
  ASSERT_EQ(d.make(), "");
  const std::vector<fs::path> log = table_files(d.dir, /*log=*/true);
  ASSERT_FALSE(log.empty()) << "the second start flushed the log recovered from the WAL";
  fs::remove(log.front());
  const std::vector<std::string> before = names_in(d.dir);
  StockdProcess again(d.flags, d.dir.string());
  again.set_log_file((d.base / "second.log").string());
  EXPECT_FALSE(again.start(5000)) << "started without part of its log";
  const int status = again.wait_exit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kExitDataNeedsOperator)
      << "status " << status;
  const std::string text = slurp(d.base / "second.log");
  EXPECT_NE(text.find("a table file of the log"), std::string::npos) << text;
  EXPECT_EQ(text.find("Assertion"), std::string::npos) << text;
  EXPECT_EQ(names_in(d.dir), before) << "a refused start changed the data dir";
}

// A damaged block of rows in a table file of the log: refused, and the message names the
// checksum mismatch and the file (RocksDB 7.8's scan can step over such a block without an
// error; stockd's own check of consecutive lsns then finds the gap, and the tables' checksums
// say why).
TEST(CheckpointDamage, ADamagedBlockOfTheLogRefusesToStartNamingIt) {
  Damaged d;
  ASSERT_EQ(d.make(), "");
  const std::vector<fs::path> log = table_files(d.dir, /*log=*/true);
  ASSERT_FALSE(log.empty()) << "the second start flushed the log recovered from the WAL";
  for (const fs::path& f : log) flip_a_bit(f, 16);
  StockdProcess again(d.flags, d.dir.string());
  again.set_log_file((d.base / "second.log").string());
  EXPECT_FALSE(again.start(5000)) << "started on a damaged log";
  const std::string text = slurp(d.base / "second.log");
  EXPECT_NE(text.find("checksum mismatch"), std::string::npos) << text;
  EXPECT_NE(text.find(log.front().filename().string()), std::string::npos) << text;
  EXPECT_EQ(text.find("fell back"), std::string::npos) << text;
}

INSTANTIATE_TEST_SUITE_P(CheckpointDamage, CheckpointDamageAt,
                         ::testing::Values(std::streamoff{-1}, std::streamoff{16}, kDeleteTheFile),
                         [](const auto& info) {
                           return info.param == kDeleteTheFile ? std::string("FilesDeleted")
                                  : info.param < 0             ? std::string("InABlockTheOpenReads")
                                                               : std::string("InABlockOfRows");
                         });

// With the snapshot damaged too (a flipped bit, or a file cut short), the start is refused,
// naming both; with only the snapshot damaged, the checkpoint is used and it is not needed.
TEST(CheckpointDamage, ADamagedSnapshotToFallBackOnRefusesToStart) {
  for (const bool torn : {false, true}) {
    Damaged d;
    ASSERT_EQ(d.make(), "");
    std::vector<fs::path> snapshot_files;
    for (const auto& f : fs::recursive_directory_iterator(d.dir / "snapshots")) {
      if (f.path().extension() == ".sst") snapshot_files.push_back(f.path());
    }
    ASSERT_FALSE(snapshot_files.empty());
    for (const fs::path& f : snapshot_files) {
      if (torn) {
        fs::resize_file(f, fs::file_size(f) / 2);
      } else {
        flip_a_bit(f);
      }
    }
    {
      StockdProcess fine(d.flags, d.dir.string());
      fine.set_log_file((d.base / "fine.log").string());
      ASSERT_TRUE(fine.start()) << "a damaged snapshot that is not needed stopped the start:\n"
                                << slurp(d.base / "fine.log");
      auto sku = fine.admin().sku_get("tee");
      ASSERT_TRUE(sku.ok());
      EXPECT_EQ(sku.body.sold, 300u);
      // The checkpointer reads the snapshot whole at start, and says so (within a tick).
      for (int i = 0;
           i < 50 && slurp(d.base / "fine.log").find("snapshot is damaged") == std::string::npos;
           ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      EXPECT_NE(slurp(d.base / "fine.log").find("the newest snapshot is damaged"),
                std::string::npos)
          << slurp(d.base / "fine.log");
      fine.kill9();  // no clean stop: it would write a new snapshot over the damaged one
    }
    for (const fs::path& f : state_table_files(d.dir)) flip_a_bit(f);
    StockdProcess again(d.flags, d.dir.string());
    again.set_log_file((d.base / "second.log").string());
    const test::ToolResult verify =
        test::run_tool(STOCKCTL_BIN, {"verify", "--data-dir", d.dir.string()});
    EXPECT_EQ(verify.exit_code, 1) << verify.out;
    EXPECT_NE(verify.err.find("DAMAGED: "), std::string::npos) << verify.err;
    EXPECT_FALSE(again.start(5000)) << "started with no valid state";
    const std::string log = slurp(d.base / "second.log");
    EXPECT_NE(log.find("the checkpoint in the store is damaged"), std::string::npos) << log;
    EXPECT_NE(log.find("cannot be used"), std::string::npos) << log;
    EXPECT_NE(log.find(torn ? "default.sst" : "checksum mismatch"), std::string::npos) << log;
  }
}

// Damaged or wrong data dirs refuse with a message naming the problem.
TEST_F(Corruption, DamagedStoreFilesRefuseWithAClearMessage) {
  expect_clear_refusal(run_case("current", false,
                                [](const fs::path& d) {
                                  write_bytes(d / "CURRENT", "garbage\x01\x02 not a name\n");
                                }),
                       "CURRENT holds garbage", "CURRENT");
  expect_clear_refusal(
      run_case("nonl", false, [](const fs::path& d) { write_bytes(d / "CURRENT", "MANIFEST-0"); }),
      "CURRENT without its newline", "CURRENT");
  expect_clear_refusal(run_case("manifest", false,
                                [](const fs::path& d) {
                                  for (const auto& f : fs::directory_iterator(d)) {
                                    if (f.path().filename().string().rfind("MANIFEST-", 0) == 0) {
                                      write_bytes(f.path(), std::string(40, '\x5a'));
                                    }
                                  }
                                }),
                       "MANIFEST holds garbage", "MANIFEST");
  expect_clear_refusal(run_case("file", false,
                                [](const fs::path& d) {
                                  fs::remove_all(d);
                                  write_bytes(d, "this is not a data dir\n");
                                }),
                       "the data dir is a regular file", "not a directory", kExitConfig);
}

}  // namespace
}  // namespace stockd::crash
