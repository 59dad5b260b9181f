// The checkpointer and recovery on a real RocksDB store in a temp dir, without a server: groups
// written as the loop writes them, a checkpointer fed the durable ones; what it trims, and what a
// recovery rebuilds from its checkpoints and the log after them.
#include "stockd/persist.h"

#include <gtest/gtest.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "stockd/decisions.h"
#include "stockd/store.h"
#include "support/book_loop.h"

namespace stockd {
namespace {

namespace fs = std::filesystem;
using test::expect_same_book;
using test::kT0;
using test::Loop;

std::vector<uint64_t> log_lsns(storage::Store& store) {
  std::vector<uint64_t> out;
  EXPECT_TRUE(store
                  .scan(std::string{rec::kTagLog, '/'},
                        [&](std::string_view k, std::string_view) {
                          out.push_back(rec::log_key_lsn(k));
                          return true;
                        })
                  .ok());
  return out;
}

// A store in a temp dir of its own, closed and removed at the end of the test.
struct TempStore {
  fs::path dir;
  std::unique_ptr<storage::Store> store;
  explicit TempStore(const std::string& name)
      : dir(fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    auto opened = storage::Store::open(dir.string(), {});
    EXPECT_TRUE(opened.ok()) << opened.status().message();
    if (opened.ok()) store = std::move(*opened);
  }
  ~TempStore() {
    store.reset();
    fs::remove_all(dir);
  }
};

// recover() leaves out the log groups after `upto`: the reload right after a failed write, whose
// group may be in the store (its write done, the acknowledged mark's not) although it was
// answered "nothing of it was kept" (GroupCommit::recover_into).
TEST(Recover, LeavesOutTheGroupsAfterUpto) {
  TempStore temp("stockd-upto");
  ASSERT_NE(temp.store, nullptr);
  CheckpointOptions o;
  o.every_entries = 1'000'000;
  o.every_ms = 3'600'000;
  auto cp = std::make_unique<Checkpointer>(*temp.store, o);
  Loop loop(*temp.store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());  // group 1: the SKU
  for (int g = 0; g < 5; ++g) {           // groups 2..6: a buy each
    loop.buy(g, kT0 + g);
    loop.seal();
  }
  cp->stop(false);
  cp.reset();
  for (uint64_t upto : {uint64_t{4}, uint64_t{6}, UINT64_MAX}) {
    Book book;
    Recovered r;
    ASSERT_EQ(recover(*temp.store, book, r, nullptr, upto).message(), "");
    const uint64_t last = std::min<uint64_t>(upto, 6);
    EXPECT_EQ(r.meta.lsn, last) << "upto " << upto;
    proto::SkuView tee;
    ASSERT_EQ(book.sku_get("tee", tee), proto::Status::kOk);
    EXPECT_EQ(tee.sold, last - 1) << "upto " << upto;
  }
}

// Restarts with nothing written between them (a crash loop, an idle server restarted) leave no
// empty log files behind: RocksDB 7.8 kept one per start. A group written in between is kept,
// and so is the live log of a store that is open.
TEST(Store, RestartsLeaveNoEmptyLogsBehind) {
  TempStore temp("stockd-restarts");
  ASSERT_NE(temp.store, nullptr);
  const auto logs = [&] {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(temp.dir / "wal")) {
      n += e.path().extension() == ".log" ? 1 : 0;
    }
    return n;
  };
  storage::Batch b = temp.store->batch();
  b.lsn = 1;
  b.put(rec::log_key(1), "kept");
  ASSERT_TRUE(temp.store->write(b, true).ok());
  for (int start = 0; start < 12; ++start) {
    temp.store.reset();
    auto opened = storage::Store::open(temp.dir.string(), {});
    ASSERT_TRUE(opened.ok()) << "start " << start << ": " << opened.status().message();
    temp.store = std::move(*opened);
  }
  EXPECT_LE(logs(), 3u) << "empty logs pile up, one per start";
  std::string v;
  bool found = false;
  ASSERT_TRUE(temp.store->get(rec::log_key(1), v, found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(v, "kept");
}

// The first write into the log a start made is torn (a crash, or a short write on a full disk,
// mid-way through a large group). The next start drops the torn record, as a torn tail; but
// RocksDB 7.8 keeps a log with no whole record in it, and once a later log holds records the
// torn one reads as damage in the middle of the history: every later start refused. A log older
// than the live one that holds no complete record is removed at open.
TEST(Store, ATornFirstRecordOfALogDoesNotRefuseALaterStart) {
  TempStore temp("stockd-torn-first");
  ASSERT_NE(temp.store, nullptr);
  const auto write = [&](uint64_t lsn) {
    storage::Batch b = temp.store->batch();
    b.lsn = lsn;
    b.put(rec::log_key(lsn), "group " + std::to_string(lsn));
    return temp.store->write(b, true);
  };
  ASSERT_TRUE(write(1).ok());
  const auto reopen = [&] {
    temp.store.reset();
    auto opened = storage::Store::open(temp.dir.string(), {});
    if (opened.ok()) temp.store = std::move(*opened);
    return opened.status();
  };
  ASSERT_EQ(reopen().message(), "");  // a fresh, empty live log
  temp.store.reset();
  fs::path fresh;
  for (const auto& e : fs::directory_iterator(temp.dir / "wal")) {
    if (e.path().extension() == ".log" && fs::file_size(e.path()) == 0) fresh = e.path();
  }
  ASSERT_FALSE(fresh.empty()) << "no empty live log after the start";
  {
    // The start of a group's first fragment: a header whose length runs past the file, then
    // part of the payload; the rest never reached the disk.
    std::ofstream torn(fresh, std::ios::binary | std::ios::app);
    const char header[7] = {0x12, 0x34, 0x56, 0x78, static_cast<char>(0xf4), 0x01, 0x01};
    torn.write(header, sizeof header);
    torn << std::string(300, 'p');
  }
  ASSERT_EQ(reopen().message(), "") << "a torn tail";
  ASSERT_TRUE(write(2).ok());
  for (int start = 0; start < 2; ++start) {
    ASSERT_EQ(reopen().message(), "") << "start " << start << " after the torn log";
  }
  for (uint64_t lsn : {1, 2}) {
    std::string v;
    bool found = false;
    ASSERT_TRUE(temp.store->get(rec::log_key(lsn), v, found).ok());
    EXPECT_TRUE(found) << "group " << lsn;
  }
}

// A written group's batch comes back empty with its buffer, so that a steady stream of groups
// allocates none; the recycled batch writes the next group like a new one.
TEST(WalWriter, AWrittenBatchComesBackEmptyWithItsBuffer) {
  TempStore temp("stockd-walwriter");
  ASSERT_NE(temp.store, nullptr);
  std::atomic<int> written{0};
  storage::WalWriter wal(
      *temp.store, true, 0, [&] { ++written; }, 0);
  const auto wait_written = [&](int n) {
    for (int i = 0; i < 500 && written < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (const auto& d : wal.take_done()) EXPECT_TRUE(d.status.ok()) << d.status.message();
  };
  storage::Batch b = wal.recycled();
  b.lsn = 1;
  b.put(rec::log_key(1), std::string(10'000, 'a'));
  wal.submit(std::move(b));
  wait_written(1);
  storage::Batch again = wal.recycled();
  EXPECT_TRUE(again.empty());
  EXPECT_EQ(again.rep().Count(), 0u);
  EXPECT_GE(again.rep().Data().capacity(), 10'000u) << "the buffer was not kept";
  again.lsn = 2;
  again.put(rec::log_key(2), "second");
  wal.submit(std::move(again));
  wait_written(2);
  for (uint64_t lsn : {1, 2}) {
    std::string v;
    bool found = false;
    ASSERT_TRUE(temp.store->get(rec::log_key(lsn), v, found).ok());
    EXPECT_TRUE(found) << "lsn " << lsn;
  }
}

// Group commit's gathering window: an armed wake calls notify when it comes due and hands its
// token over once; a batch submitted first disarms it, and a later wake replaces an earlier one.
TEST(WalWriter, AWakeComesDueOnceUnlessABatchComesFirst) {
  TempStore temp("stockd-walwake");
  ASSERT_NE(temp.store, nullptr);
  std::atomic<int> notified{0};
  storage::WalWriter wal(
      *temp.store, true, 0, [&] { ++notified; }, 0);
  const auto wait_notified = [&](int n) {
    for (int i = 0; i < 500 && notified < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return notified.load();
  };
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  wal.wake_at(t0 + std::chrono::milliseconds(30), 7);
  EXPECT_EQ(wal.take_woken(), 0u) << "came due before its time";
  ASSERT_EQ(wait_notified(1), 1);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(30));
  EXPECT_EQ(wal.take_woken(), 7u);
  EXPECT_EQ(wal.take_woken(), 0u) << "a wake is handed over once";

  // Replaced: only the second token comes due.
  wal.wake_at(Clock::now() + std::chrono::milliseconds(5), 8);
  wal.wake_at(Clock::now() + std::chrono::milliseconds(20), 9);
  ASSERT_EQ(wait_notified(2), 2);
  EXPECT_EQ(wal.take_woken(), 9u);

  // Disarmed by a batch: its write notifies, the wake never does.
  wal.wake_at(Clock::now() + std::chrono::milliseconds(50), 10);
  storage::Batch b = wal.recycled();
  b.lsn = 1;
  b.put(rec::log_key(1), "group");
  wal.submit(std::move(b));
  ASSERT_EQ(wait_notified(3), 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  EXPECT_EQ(notified.load(), 3) << "a disarmed wake still came due";
  EXPECT_EQ(wal.take_woken(), 0u);
  for (const auto& d : wal.take_done()) EXPECT_TRUE(d.status.ok()) << d.status.message();
}

// A checkpoint every 50 decisions (and not by time), no snapshots: the trim behind the acks and
// the retention alone (a snapshot keeps the log back to it).
CheckpointOptions every_50(int64_t outbox_retention_ms) {
  CheckpointOptions o;
  o.every_entries = 50;
  o.every_ms = 3'600'000;
  o.outbox_retention_ms = outbox_retention_ms;
  o.snapshot_every = 0;
  return o;
}

// Orders 1..200: buy-nows in 20 groups of 10.
void buy_200_in_20_groups(Loop& loop) {
  for (int g = 0; g < 20; ++g) {
    for (int i = 0; i < 10; ++i) loop.buy(g * 10 + i, kT0 + g);
    loop.seal();
  }
}

// --outbox-retention-ms "forever" (INT64_MAX) keeps acknowledged records: the retention used to
// be added to a record's time, which wrapped negative and trimmed them at once.
TEST(Checkpointer, ARetentionOfForeverKeepsAcknowledgedRecords) {
  TempStore temp("stockd-persist");
  ASSERT_NE(temp.store, nullptr);
  auto cp =
      std::make_unique<Checkpointer>(*temp.store, every_50(std::numeric_limits<int64_t>::max()));
  Loop loop(*temp.store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  buy_200_in_20_groups(loop);
  loop.book.outbox_ack(200, kT0 + 100, loop.ch);  // every record acknowledged
  loop.seal();
  cp->stop(true);
  EXPECT_EQ(cp->take_error().message(), "");
  EXPECT_GE(cp->checkpoints(), 4u);
  const std::vector<uint64_t> lsns = log_lsns(*temp.store);
  ASSERT_FALSE(lsns.empty());
  EXPECT_LE(lsns.front(), 2u) << "acknowledged records were trimmed within their retention";
}

// Groups missing at the end of the log, at or before the checkpoint (its records not yet
// acknowledged, so kept for the sidecar): a log that keeps any group keeps every one up to the
// checkpoint's, so a start is refused. It used to pass, and the sidecar then met a hole.
TEST(Checkpointer, GroupsMissingBeforeTheCheckpointAreRefused) {
  TempStore temp("stockd-persist");
  ASSERT_NE(temp.store, nullptr);
  auto cp = std::make_unique<Checkpointer>(*temp.store, every_50(0));
  Loop loop(*temp.store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  buy_200_in_20_groups(loop);
  cp->stop(true);  // a checkpoint at the last group; nothing acknowledged: the log is kept
  ASSERT_EQ(cp->checkpoint_lsn(), loop.lsn);
  const std::vector<uint64_t> lsns = log_lsns(*temp.store);
  ASSERT_GE(lsns.size(), 5u);
  ASSERT_EQ(lsns.back(), loop.lsn);
  storage::Batch cut = temp.store->batch();
  for (uint64_t lsn = loop.lsn - 2; lsn <= loop.lsn; ++lsn) cut.del(rec::log_key(lsn));
  ASSERT_EQ(temp.store->write(cut, true).message(), "");

  Book again;
  Recovered r;
  const Status s = recover(*temp.store, again, r);
  EXPECT_EQ(s.code(), Status::Code::kRefused) << s.message();
  EXPECT_NE(s.message().find("groups " + std::to_string(loop.lsn - 2) + ".." +
                             std::to_string(loop.lsn) + " are missing"),
            std::string::npos)
      << s.message();
}

TEST(Checkpointer, CheckpointsTrimsBehindTheAcksAndRecoveryRebuildsTheBook) {
  TempStore temp("stockd-persist");
  ASSERT_NE(temp.store, nullptr);
  std::unique_ptr<storage::Store>& store = temp.store;
  const CheckpointOptions o = every_50(0);
  auto cp = std::make_unique<Checkpointer>(*store, o);
  Loop loop(*store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  // 200 buy-nows in groups of 10 (orders 1..200), then the sidecar acknowledges 1..100.
  buy_200_in_20_groups(loop);
  loop.book.outbox_ack(100, kT0 + 100, loop.ch);
  loop.seal();
  for (int i = 200; i < 230; ++i) loop.buy(i, kT0 + 200);  // after the last checkpoint: replayed
  loop.seal();
  cp->stop(true);
  EXPECT_EQ(cp->take_error().message(), "");
  EXPECT_EQ(cp->checkpoint_lsn(), loop.lsn) << "a clean stop checkpoints everything";
  EXPECT_GE(cp->checkpoints(), 4u);

  // Groups whose records were all acknowledged (1..100: the first 11 groups) are trimmed; the
  // others stay for the sidecar.
  const std::vector<uint64_t> lsns = log_lsns(*store);
  ASSERT_FALSE(lsns.empty());
  EXPECT_EQ(lsns.front(), 12u) << "the groups of records 1..100 (lsn 2..11), and the SKU_SET "
                                  "group before them, are gone";
  EXPECT_EQ(lsns.back(), loop.lsn);

  // Recovery: the checkpoint alone (nothing after it) gives the same book.
  Book again;
  Recovered r;
  ASSERT_EQ(recover(*store, again, r).message(), "");
  EXPECT_EQ(r.checkpoint_lsn, loop.lsn);
  EXPECT_EQ(r.replayed, 0u);
  EXPECT_EQ(r.meta.outbox_first, 101u);
  EXPECT_EQ(r.meta.outbox_acked, 100u);
  EXPECT_EQ(r.meta.next_hold_id, loop.book.meta().next_hold_id);
  proto::SkuView a, b;
  ASSERT_EQ(loop.book.sku_get("tee", a), proto::Status::kOk);
  ASSERT_EQ(again.sku_get("tee", b), proto::Status::kOk);
  EXPECT_EQ(a, b);
  for (uint64_t id = 1; id < loop.book.meta().next_hold_id; ++id) {
    proto::HoldView x, y;
    EXPECT_EQ(loop.book.hold_get(id, x), again.hold_get(id, y));
    EXPECT_EQ(x, y) << "hold " << id;
  }
  EXPECT_EQ(again.check_invariants().message(), "");

  // More decisions with no checkpointer: a recovery replays them on top of the checkpoint.
  cp = std::make_unique<Checkpointer>(*store, o);
  cp->stop(false);  // its recovery read the store; no checkpoint from it
  CheckpointOptions never = o;
  never.every_entries = 1'000'000'000;
  Checkpointer idle(*store, never);
  Loop more(*store, idle);
  more.lsn = loop.lsn;
  more.first_seq = loop.first_seq;
  Recovered r2;
  ASSERT_EQ(recover(*store, more.book, r2).message(), "");
  for (int i = 300; i < 320; ++i) more.buy(i, kT0 + 300);
  more.seal();
  idle.stop(false);
  Book third;
  Recovered r3;
  ASSERT_EQ(recover(*store, third, r3).message(), "");
  EXPECT_EQ(r3.replayed, 20u);
  ASSERT_EQ(third.sku_get("tee", b), proto::Status::kOk);
  EXPECT_EQ(b.sold, 250u);

  // A checkpointer that starts on that store replays the 20 in its own recovery: its checkpoint
  // (which covers them) must write their rows too. (It once did not: the rows its recovery
  // touched were not named, and the checkpoint covered groups whose holds it lacked.)
  Checkpointer(*store, o).stop(true);
  Book fourth;
  Recovered r4;
  ASSERT_EQ(recover(*store, fourth, r4).message(), "");
  EXPECT_EQ(r4.replayed, 0u) << "the last checkpoint covers everything";
  ASSERT_EQ(fourth.sku_get("tee", b), proto::Status::kOk);
  EXPECT_EQ(b.sold, 250u);
  for (uint64_t id = 1; id < more.book.meta().next_hold_id; ++id) {
    proto::HoldView x, y;
    EXPECT_EQ(more.book.hold_get(id, x), fourth.hold_get(id, y)) << "hold " << id;
    EXPECT_EQ(x, y) << "hold " << id;
  }
}

// Past --finished-holds-max the oldest finished holds are forgotten, many of them between the
// same two checkpoints: a hold some checkpoint wrote has its row deleted by the next one, one
// made and forgotten in between never gets a row (and needs no delete). Whatever the cadence,
// the store ends with exactly the rows of the holds the book keeps.
TEST(Checkpointer, ForgottenHoldsLeaveNoRowBehind) {
  TempStore temp("stockd-persist-forget");
  ASSERT_NE(temp.store, nullptr);
  storage::Store& store = *temp.store;
  CheckpointOptions o;
  o.every_entries = 7;  // not a multiple of a group's entries: checkpoints fall mid-pattern
  o.every_ms = 3'600'000;
  o.limits.finished_holds_max = 5;
  auto cp = std::make_unique<Checkpointer>(store, o);
  Loop loop(store, *cp, o.limits);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  for (int g = 0; g < 12; ++g) {  // 36 buy-nows in groups of 3; each past the 5th forgets one
    for (int i = 0; i < 3; ++i) loop.buy(g * 3 + i, kT0 + g);
    loop.seal();
  }
  cp->stop(true);
  EXPECT_EQ(cp->take_error().message(), "");
  EXPECT_GE(cp->checkpoints(), 5u);

  std::vector<uint64_t> kept;  // hold ids of the rows in the store
  ASSERT_TRUE(store
                  .scan(std::string{rec::kTagHold, '/'},
                        [&](std::string_view, std::string_view value) {
                          rec::HoldRow row;
                          EXPECT_TRUE(rec::decode(value, row).ok());
                          kept.push_back(row.hold.hold_id);
                          return true;
                        })
                  .ok());
  std::vector<uint64_t> held;  // what the book keeps: 5, and the newest (a sweep runs first)
  for (uint64_t id = 1; id < loop.book.meta().next_hold_id; ++id) {
    proto::HoldView x;
    if (loop.book.hold_get(id, x) == proto::Status::kOk) held.push_back(id);
  }
  EXPECT_EQ(held.size(), 6u);
  EXPECT_EQ(kept, held);

  Book again(o.limits);
  Recovered r;
  ASSERT_EQ(recover(store, again, r).message(), "");
  EXPECT_EQ(r.replayed, 0u);
  for (uint64_t id = 1; id < loop.book.meta().next_hold_id; ++id) {
    proto::HoldView x, y;
    EXPECT_EQ(loop.book.hold_get(id, x), again.hold_get(id, y)) << "hold " << id;
    EXPECT_EQ(x, y) << "hold " << id;
  }
  EXPECT_EQ(again.check_invariants().message(), "");
}

// A damaged checkpoint (here a hold row that fails its checksum) is not the end: recovery falls
// back on the snapshot, the whole state as of an older lsn in files of its own, and replays the
// longer log after it, which the checkpointer kept for that. rewrite_state() then drops the
// damaged tables and writes the recovered state as the checkpoint: the next recovery needs no
// fallback. With the snapshot damaged too, recovery refuses, naming both.
TEST(Snapshot, ADamagedCheckpointFallsBackOnTheSnapshotAndTheLogAfterIt) {
  TempStore temp("stockd-snapshot");
  ASSERT_NE(temp.store, nullptr);
  storage::Store& store = *temp.store;
  CheckpointOptions o;
  o.every_entries = 50;
  o.every_ms = 3'600'000;
  o.snapshot_every = 120;
  auto cp = std::make_unique<Checkpointer>(store, o);
  Loop loop(store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  for (int g = 0; g < 30; ++g) {  // 300 buy-nows in groups of 10
    for (int i = 0; i < 10; ++i) loop.buy(g * 10 + i, kT0 + g);
    loop.seal();
  }
  cp->stop(true);
  EXPECT_EQ(cp->take_error().message(), "");
  EXPECT_GE(cp->snapshots(), 2u) << "one at the first checkpoint, one 120 decisions on";
  const std::vector<uint64_t> snaps = store.snapshots();
  ASSERT_EQ(snaps.size(), 1u) << "a new snapshot removes the older";
  const uint64_t snap = snaps[0];
  EXPECT_EQ(cp->snapshot_lsn(), snap);
  EXPECT_LT(snap, loop.lsn) << "the last checkpoint (at the stop) is newer than the snapshot";
  const std::vector<uint64_t> lsns = log_lsns(store);
  ASSERT_FALSE(lsns.empty());
  EXPECT_LE(lsns.front(), snap + 1) << "the log is kept back to the snapshot";
  EXPECT_EQ(lsns.back(), loop.lsn);

  // The checkpoint's row of hold 3 no longer decodes.
  const auto damage = [&] {
    storage::Batch b = store.batch();
    b.put(rec::hold_key(3), "not a hold row");
    ASSERT_TRUE(store.write(b, true).ok());
  };
  ASSERT_NO_FATAL_FAILURE(damage());
  Book again;
  Recovered r;
  ASSERT_EQ(recover(store, again, r).message(), "");
  EXPECT_EQ(r.snapshot_lsn, snap);
  EXPECT_NE(r.damaged.find("record h/"), std::string::npos) << r.damaged;
  EXPECT_EQ(r.checkpoint_lsn, snap);
  EXPECT_EQ(r.meta.lsn, loop.lsn);
  EXPECT_GT(r.replayed, 0u) << "the decisions after the snapshot were replayed";
  ASSERT_NO_FATAL_FAILURE(expect_same_book(loop.book, again));

  ASSERT_EQ(rewrite_state(store, again, r).message(), "");
  Book repaired;
  Recovered r2;
  ASSERT_EQ(recover(store, repaired, r2).message(), "");
  EXPECT_EQ(r2.snapshot_lsn, 0u) << "no fallback after the repair: " << r2.damaged;
  EXPECT_EQ(r2.checkpoint_lsn, loop.lsn);
  EXPECT_EQ(r2.replayed, 0u);
  ASSERT_NO_FATAL_FAILURE(expect_same_book(loop.book, repaired));

  // A repair cut short between dropping the tables and writing the state: a store with a
  // snapshot and no checkpoint falls back again (rather than replaying a log that starts late).
  ASSERT_EQ(store.drop_state().message(), "");
  Book halfway;
  Recovered r4;
  ASSERT_EQ(recover(store, halfway, r4).message(), "");
  EXPECT_EQ(r4.snapshot_lsn, snap);
  EXPECT_NE(r4.damaged.find("meta row is missing"), std::string::npos) << r4.damaged;
  ASSERT_NO_FATAL_FAILURE(expect_same_book(loop.book, halfway));
  ASSERT_EQ(rewrite_state(store, halfway, r4).message(), "");

  // Damage both: the checkpoint again, and the snapshot's file cut short (a torn write).
  ASSERT_NO_FATAL_FAILURE(damage());
  bool cut = false;
  for (const auto& e : fs::recursive_directory_iterator(temp.dir / "snapshots")) {
    if (e.path().filename() == "default.sst") {
      fs::resize_file(e.path(), fs::file_size(e.path()) / 2);
      cut = true;
    }
  }
  ASSERT_TRUE(cut);
  Book none;
  Recovered r3;
  const Status s = recover(store, none, r3);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("the checkpoint in the store is damaged"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("the snapshot at lsn " + std::to_string(snap) + " cannot be used"),
            std::string::npos)
      << s.message();
}

// With snapshots turned off (--snapshot-every 0) after some were written, the next checkpoint
// removes them: the log is no longer kept back to them, so they could never be used.
TEST(Snapshot, TurnedOffTheOldOnesGoAtTheNextCheckpoint) {
  TempStore temp("stockd-snapshot-off");
  ASSERT_NE(temp.store, nullptr);
  storage::Store& store = *temp.store;
  CheckpointOptions o;
  o.every_entries = 20;
  o.every_ms = 3'600'000;
  o.outbox_retention_ms = 0;
  uint64_t lsn = 0, first_seq = 1;
  for (const uint64_t every : {uint64_t{1'000'000}, uint64_t{0}}) {
    o.snapshot_every = every;
    Checkpointer cp(store, o);
    Loop loop(store, cp);
    loop.lsn = lsn;
    loop.first_seq = first_seq;
    Recovered r;
    ASSERT_EQ(recover(store, loop.book, r).message(), "");
    if (every != 0) {
      ASSERT_NO_FATAL_FAILURE(loop.start());
    }
    for (int g = 0; g < 5; ++g) {
      for (int i = 0; i < 10; ++i) loop.buy(static_cast<int>(every % 7) * 100 + g * 10 + i, kT0);
      loop.seal();
    }
    loop.book.outbox_ack(loop.book.meta().next_outbox_seq - 1, kT0 + 1, loop.ch);
    loop.seal();
    cp.stop(true);
    EXPECT_EQ(cp.take_error().message(), "");
    lsn = loop.lsn;
    first_seq = loop.first_seq;
    if (every != 0) {
      EXPECT_EQ(store.snapshots().size(), 1u) << "the first checkpoint writes one";
      EXPECT_LE(log_lsns(store).front(), store.snapshots()[0] + 1) << "the log kept back to it";
    } else {
      EXPECT_TRUE(store.snapshots().empty());
      EXPECT_TRUE(log_lsns(store).empty()) << "every group acknowledged: the log is trimmed";
    }
  }
}

// A snapshot of a state with nothing but its meta row, at `lsn`.
Status write_meta_only_snapshot(storage::Store& store, uint64_t lsn) {
  std::unique_ptr<storage::CheckpointWriter> w = store.snapshot_writer(lsn);
  rec::MetaRow meta;
  meta.lsn = lsn;
  std::string value;
  rec::encode(meta, value);
  w->put(rec::meta_key(), value);
  return w->commit();
}

// A snapshot cut short by a crash (its .tmp directory) is removed when the store opens and never
// listed; a whole one stays.
TEST(Snapshot, OneCutShortIsRemovedAtOpen) {
  TempStore temp("stockd-snapshot-tmp");
  ASSERT_NE(temp.store, nullptr);
  ASSERT_EQ(write_meta_only_snapshot(*temp.store, 7).message(), "");
  const fs::path cut = temp.dir / "snapshots" / "00000000000000000009.tmp";
  fs::create_directories(cut);
  std::ofstream(cut / "default.sst") << "half a table file";
  EXPECT_EQ(temp.store->snapshots(), std::vector<uint64_t>{7});
  temp.store.reset();
  auto reopened = storage::Store::open(temp.dir.string(), {});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  temp.store = std::move(*reopened);
  EXPECT_FALSE(fs::exists(cut));
  EXPECT_EQ(temp.store->snapshots(), std::vector<uint64_t>{7});
  EXPECT_EQ(temp.store->verify_snapshot(7).message(), "");
  EXPECT_TRUE(fs::exists(temp.dir / "snapshots" / "00000000000000000007" / "holds.none"))
      << "a snapshot without hold rows says so";
}

// A snapshot written again at the lsn of one already there replaces it. The checkpointer asks
// for one when it found the newest damaged; an idle server's next checkpoint (one an outbox trim
// triggers) falls at that same lsn, and the damaged one used to be kept as "written before":
// the fallback the log was kept for would fail, and no new snapshot came for --snapshot-every.
TEST(Snapshot, OneWrittenAgainAtTheSameLsnReplacesTheOldOne) {
  TempStore temp("stockd-snapshot-again");
  ASSERT_NE(temp.store, nullptr);
  const auto write = [&] { return write_meta_only_snapshot(*temp.store, 7); };
  ASSERT_EQ(write().message(), "");
  const fs::path snap = temp.dir / "snapshots" / "00000000000000000007";
  ASSERT_TRUE(fs::exists(snap / "default.sst"));
  {
    std::fstream f(snap / "default.sst", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f << "damaged!";  // the first data block's bytes
  }
  ASSERT_NE(temp.store->verify_snapshot(7).message(), "");
  ASSERT_EQ(write().message(), "");
  EXPECT_EQ(temp.store->snapshots(), std::vector<uint64_t>{7});
  EXPECT_EQ(temp.store->verify_snapshot(7).message(), "");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(temp.dir / "snapshots", ec)) {
    EXPECT_EQ(e.path().filename(), "00000000000000000007") << "left behind: " << e.path();
  }
  // A crash after the old one was moved aside and before the new one took its place: the next
  // open puts the old one back (it may be the only fallback), where it removed it as cut short.
  temp.store.reset();
  fs::rename(snap, temp.dir / "snapshots" / "00000000000000000007.replaced.tmp");
  auto reopened = storage::Store::open(temp.dir.string(), {});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  temp.store = std::move(*reopened);
  EXPECT_EQ(temp.store->snapshots(), std::vector<uint64_t>{7});
  EXPECT_EQ(temp.store->verify_snapshot(7).message(), "");
}

// A table file missing from a snapshot is damage: read as "no rows of that family", a fallback
// would lose the holds (and their idempotency keys) of the state it stands for.
TEST(Snapshot, AMissingTableFileIsDamage) {
  TempStore temp("stockd-snapshot-missing");
  ASSERT_NE(temp.store, nullptr);
  storage::Store& store = *temp.store;
  CheckpointOptions o;
  o.every_entries = 1'000'000;
  o.every_ms = 3'600'000;
  auto cp = std::make_unique<Checkpointer>(store, o);
  Loop loop(store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  for (int i = 0; i < 10; ++i) loop.buy(i, kT0);
  loop.seal();
  cp->stop(true);  // its first checkpoint, and a snapshot with it
  ASSERT_EQ(store.snapshots().size(), 1u);
  const uint64_t snap = store.snapshots()[0];
  EXPECT_EQ(store.verify_snapshot(snap).message(), "");
  std::string name = std::to_string(snap);
  name.insert(0, 20 - name.size(), '0');  // the snapshot's directory: its lsn in 20 digits
  const fs::path dir = temp.dir / "snapshots" / name;
  ASSERT_TRUE(fs::exists(dir / "holds.sst")) << dir;
  EXPECT_FALSE(fs::exists(dir / "holds.none"));
  fs::remove(dir / "holds.sst");
  const Status s = store.verify_snapshot(snap);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("holds.sst is missing"), std::string::npos) << s.message();
  EXPECT_FALSE(store.open_snapshot(snap).ok());
}

// Recovery reads a group one entry ahead (to prefetch what the next replay touches): an entry
// that does not follow from the state before it is still named by its own index, and what comes
// before it is replayed first (a refusal is the entry's, not the one read ahead of it).
TEST(Recover, NamesTheEntryThatDoesNotFollow) {
  TempStore temp("stockd-recover");
  ASSERT_NE(temp.store, nullptr);
  std::unique_ptr<storage::Store>& store = temp.store;
  Book book;
  Changes ch;
  ch.rows = false;
  proto::SkuView v;
  ASSERT_EQ(book.sku_set({"tee", proto::kSetTotal, 10, 0, 0, 0}, kT0, v, ch), proto::Status::kOk);
  proto::ReserveResp r;
  ASSERT_EQ(book.reserve({"ann", "k1", 0, {{"tee", 1}}}, kT0, r, ch), proto::Status::kOk);
  ASSERT_EQ(book.reserve({"bob", "k2", 0, {{"tee", 1}}}, kT0, r, ch), proto::Status::kOk);
  // Entry 3: a commit of a hold that was never made; entry 4, a valid buy read ahead of it.
  rec::Decision forged;
  forged.op = rec::Op::kCommit;
  forged.at_ms = kT0 + 1;
  forged.hold_id = 424242;
  forged.user = "eve";
  forged.created_at_ms = kT0;
  forged.lines.push_back({"tee", 1});
  ch.writer().append(forged);
  ASSERT_EQ(book.reserve({"cy", "k3", 0, {{"tee", 1}}}, kT0 + 2, r, ch), proto::Status::kOk);
  std::string group;
  rec::encode_group(1, ch.entry_base_ms, 1, 4, ch.entry_count, ch.entries, group);
  storage::Batch b = store->batch();
  b.lsn = 1;
  b.put(rec::log_key(1), group);
  ASSERT_TRUE(store->write(b, true).ok());

  Book again;
  Recovered out;
  const Status s = recover(*store, again, out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("log group 1, entry 3 does not follow from the state before it"),
            std::string::npos)
      << s.message();
  ASSERT_EQ(again.sku_get("tee", v), proto::Status::kOk);
  EXPECT_EQ(v.sold, 2u) << "the entries before the bad one were replayed, the one after was not";
}

}  // namespace
}  // namespace stockd
