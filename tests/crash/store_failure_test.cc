// The store failing under a running server: the power goes off under FaultFs and stays off.
// stockd's answer to a failed write (server.cc fail_store) is STORAGE_UNAVAILABLE for what was
// not durable, writes refused, reads served, a retry every second, a clean stop when asked.
// Each case runs in a child process (a death test), so a server that aborts, crashes or hangs
// fails that case only; the child says on stderr what went wrong.
#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fault_fs.h"
#include "in_process.h"
#include "stockd/ack_mark.h"
#include "stockd/decisions.h"
#include "stockd/records.h"
#include "stockd/store.h"

namespace stockd::crash {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct Scenario {
  Durability durability = Durability::kSync;
  int fsync_interval_ms = 100;
  bool due_hold = false;                      // a HELD hold falls due while the store is failed
  std::chrono::milliseconds failed_for{300};  // the store stays failed this long before the stop
};

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "%s\nserver log:\n%s", why.c_str(), log_tail(12).c_str());
  std::_Exit(1);
}

// Runs in the child: exits 0 if the server behaved, else explains and exits 1.
[[noreturn]] void run_scenario(const Scenario& sc) {
  capture_server_log();
  std::string tmpl = (fs::temp_directory_path() / "stockd-storefail-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
  const std::string dir = tmpl + "/data";
  auto faulty = std::make_shared<FaultFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  InProcess s(config_for(dir, sc.durability, sc.fsync_interval_ms),
              storage::StoreOptions{.env = env.get()});
  const uint16_t port = s.wait_ready();
  if (port == 0) fail("the server did not start");
  Client admin = connect(port, proto::Role::kAdmin);
  if (!admin.sku_set({"mug", proto::kSetTotal, 10, 0, 0, 0}).ok()) fail("SKU_SET failed");
  Client buyer = connect(port, proto::Role::kBuyer);
  if (sc.due_hold && !buyer.reserve({"u", "held", 200, {{"mug", 1}}}).ok()) fail("RESERVE failed");
  faulty->power_off();
  auto r = buyer.reserve({"u", "after", 0, {{"mug", 1}}});
  if (r.status != proto::Status::kStorageUnavailable) {
    fail("a write after the power went off answered " +
         std::string(r.transport ? proto::status_name(r.status) : "nothing: " + r.error));
  }
  std::this_thread::sleep_for(sc.failed_for);
  ClientOptions o;
  o.port = port;
  o.timeout_ms = 3000;
  o.reconnect_attempts = 1;
  Client probe(o);
  auto ping = probe.ping();
  if (!ping.ok()) fail("no answer to PING while the store is failed: " + ping.error);
  auto read = probe.sku_get("mug");
  if (!read.ok()) fail("no answer to SKU_GET while the store is failed: " + read.error);
  if (!s.stop(5s)) fail("request_stop() did not stop the server within 5 s");
  fs::remove_all(tmpl);
  std::_Exit(0);
}

void expect_survives(const Scenario& sc) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_scenario(sc), ::testing::ExitedWithCode(0), "");
}

// The baseline: a failed write, the store failed for 300 ms, a stop.
TEST(StoreFailure, RefusesWritesAnswersReadsAndStops) { expect_survives({}); }

// A HELD hold falls due while the store is failed. The expiry timer's callback skips the
// expiry while the store is failed, and arm_expiry() re-arms it with delay 0 for the same
// overdue deadline: libuv 1.44 runs such a timer again within the same uv__run_timers pass, so
// the loop never reaches I/O again (no answers, no stop, no SIGTERM, 100% CPU).
TEST(StoreFailure, StaysResponsiveWhenAHoldFallsDueWhileTheStoreIsFailed) {
  expect_survives({.due_hold = true, .failed_for = 500ms});
}

// The store stays failed past two ticks: each tick closes the store and tries to reopen it,
// which fails while nothing can be written, leaving no store open between ticks. (Once a null
// store was dereferenced on the next tick: SIGSEGV.)
TEST(StoreFailure, SurvivesAStoreThatStaysFailed) { expect_survives({.failed_for = 2500ms}); }

// Interval mode. After a failed write the WAL thread still fsyncs every fsync_interval_ms (and
// once more when it stops): DB::SyncWAL() on a log writer that already saw an error, which the
// RocksDB linked here (built with assertions) answers with an assertion failure and abort().
TEST(StoreFailure, IntervalModeSurvivesAFailedWrite) {
  expect_survives({.durability = Durability::kInterval, .fsync_interval_ms = 200});
}

// The store alone. A write of the log fails once (an I/O error; then the disk answers again):
// the log's file writer in RocksDB now carries the error, and any later sync of it is an
// assertion failure and abort() in the RocksDB linked here. The checkpointer's thread syncs the
// log before each checkpoint, and the interval mode's WAL thread syncs it every interval: after
// a failed write both must get an error, not touch the log. (Seen once as an abort of
// PowerLoss.SyncModeKeepsEveryAcknowledgedAnswer: the power went off between a checkpoint's
// table files and its log sync.)
[[noreturn]] void run_after_a_failed_write() {
  std::string tmpl = (fs::temp_directory_path() / "stockd-storefail-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
  auto faulty = std::make_shared<FaultFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  auto opened = storage::Store::open(tmpl + "/data", {.env = env.get()});
  if (!opened.ok()) fail("open: " + opened.status().message());
  std::unique_ptr<storage::Store> store = std::move(*opened);
  const auto write = [&](uint64_t lsn) {
    storage::Batch b = store->batch();
    b.lsn = lsn;
    b.put(rec::log_key(lsn), "group " + std::to_string(lsn));
    return store->write(b, true);
  };
  if (Status s = write(1); !s.ok()) fail("the first write failed: " + s.message());
  faulty->power_off();
  if (write(2).ok()) fail("a write with the power off succeeded");
  faulty->power_on();
  auto cp = store->checkpoint_writer(1);
  cp->put(rec::sku_key("mug"), "row");
  if (cp->commit().ok()) fail("a checkpoint after a failed write of the log succeeded");
  if (store->sync_wal().ok()) fail("a sync of the log after a failed write succeeded");
  if (write(3).ok()) fail("a write after a failed write succeeded (reopen first)");
  store.reset();
  fs::remove_all(tmpl);
  std::_Exit(0);
}

TEST(StoreFailure, AfterAFailedWriteTheLogIsNotSyncedAgain) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_after_a_failed_write(), ::testing::ExitedWithCode(0), "");
}

// An fsync of the log fails while the group's record is in the log file all the same (the
// disk answers again, as after a transient EIO). The buy in that group was answered
// STORAGE_UNAVAILABLE, "nothing of it was kept", so once the store recovers it must not be
// there: the reopen replayed it from the file and sold the unit the buyer was told was not.
[[noreturn]] void run_failed_sync_is_not_replayed() {
  capture_server_log();
  std::string tmpl = (fs::temp_directory_path() / "stockd-storefail-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
  auto faulty = std::make_shared<FaultFs>(rocksdb::FileSystem::Default(), 200ms);
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  InProcess s(config_for(tmpl + "/data"), storage::StoreOptions{.env = env.get()});
  const uint16_t port = s.wait_ready();
  if (port == 0) fail("the server did not start");
  Client admin = connect(port, proto::Role::kAdmin);
  if (!admin.sku_set({"mug", proto::kSetTotal, 10, 0, 0, 0}).ok()) fail("SKU_SET failed");
  Client buyer = connect(port, proto::Role::kBuyer);
  if (!buyer.reserve({"u", "kept", 0, {{"mug", 1}}}).ok()) fail("the first buy failed");
  Reply<proto::ReserveResp> lost;
  std::thread t([&] { lost = buyer.reserve({"u", "lost", 0, {{"mug", 1}}}); });
  std::this_thread::sleep_for(80ms);  // the group is in its 200 ms fsync
  faulty->power_off();
  t.join();
  if (lost.status != proto::Status::kStorageUnavailable) {
    fail("the buy whose fsync failed answered " +
         std::string(lost.transport ? proto::status_name(lost.status) : "nothing: " + lost.error));
  }
  faulty->power_on();
  bool resumed = false;
  for (int i = 0; i < 100 && !resumed; ++i) {
    resumed = buyer.reserve({"u", "after-" + std::to_string(i), 0, {{"mug", 1}}}).ok();
    if (!resumed) std::this_thread::sleep_for(100ms);
  }
  if (!resumed) fail("the store did not recover within 10 s");
  auto mug = admin.sku_get("mug");
  if (!mug.ok()) fail("SKU_GET failed: " + mug.error);
  if (mug.body.sold != 2) {
    fail("sold " + std::to_string(mug.body.sold) +
         " units after the recovery, expected 2: the buy answered STORAGE_UNAVAILABLE was kept");
  }
  // Every sync takes 200 ms here: the stop's last checkpoint and snapshot take seconds.
  if (!s.stop(30s)) fail("request_stop() did not stop the server within 30 s");
  fs::remove_all(tmpl);
  std::_Exit(0);
}

TEST(StoreFailure, ABuyWhoseFsyncFailedIsNotReplayedWhenTheStoreRecovers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_failed_sync_is_not_replayed(), ::testing::ExitedWithCode(0), "");
}

// A brand-new store whose very first write of the log fails. The first group carries the key
// that makes hold ids unguessable (a store without holds takes one at start): rebuilding the
// book after the failure took a key again, whose entry was sealed into the failed writer, which
// failed it, which rebuilt the book again: the loop spun on its own failure and never came
// round to reopening the store, so it refused writes for good.
[[noreturn]] void run_first_write_fails() {
  capture_server_log();
  std::string tmpl = (fs::temp_directory_path() / "stockd-storefail-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
  auto faulty = std::make_shared<FaultFs>(rocksdb::FileSystem::Default());
  // The first sync of the log only (the disk then answers again: a transient EIO).
  std::atomic<bool> crashed{false};
  faulty->power_off_at_sync(
      [&](const std::string& f) { return f.ends_with(".log") && !crashed.exchange(true); });
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  Config c = config_for(tmpl + "/data");
  c.sequential_hold_ids = false;  // the key is what the first group writes
  InProcess s(c, storage::StoreOptions{.env = env.get()});
  const uint16_t port = s.wait_ready();
  if (port == 0) fail("the server did not start");
  for (int i = 0; i < 100 && !crashed; ++i) std::this_thread::sleep_for(10ms);
  if (!crashed) fail("the first group was not written within 1 s");
  std::this_thread::sleep_for(300ms);
  faulty->power_on();
  Client admin = connect(port, proto::Role::kAdmin);
  bool resumed = false;
  for (int i = 0; i < 100 && !resumed; ++i) {
    resumed = admin.sku_set({"mug", proto::kSetTotal, 10, 0, 0, 0}).ok();
    if (!resumed) std::this_thread::sleep_for(100ms);
  }
  if (!resumed) fail("the store did not recover within 10 s of the disk answering again");
  Client buyer = connect(port, proto::Role::kBuyer);
  auto first = buyer.reserve({"u", "first", 0, {{"mug", 1}}});
  if (!first.ok()) fail("a buy after the recovery failed: " + first.error);
  if (first.body.hold_id == 1) fail("the first hold id is 1: no key was taken after the recovery");
  if (!s.stop(5s)) fail("request_stop() did not stop the server within 5 s");
  fs::remove_all(tmpl);
  std::_Exit(0);
}

TEST(StoreFailure, ANewStoreWhoseFirstWriteFailsRecovers) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_first_write_fails(), ::testing::ExitedWithCode(0), "");
}

// A server whose store failed, its first reopen failing too (the power stays off), with its
// buy-now group in flight at the failure. `then` runs while the store is closed between two
// reopens (RocksDB's LOCK free); the power comes back after it.
struct FailedServer {
  std::string tmpl, dir;
  std::shared_ptr<FaultFs> faulty =
      std::make_shared<FaultFs>(rocksdb::FileSystem::Default(), 200ms);
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  std::unique_ptr<InProcess> server;

  FailedServer() {
    tmpl = (fs::temp_directory_path() / "stockd-storefail-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
    dir = tmpl + "/data";
    server = std::make_unique<InProcess>(config_for(dir), storage::StoreOptions{.env = env.get()});
    const uint16_t port = server->wait_ready();
    if (port == 0) fail("the server did not start");
    Client admin = connect(port, proto::Role::kAdmin);
    if (!admin.sku_set({"mug", proto::kSetTotal, 10, 0, 0, 0}).ok()) fail("SKU_SET failed");
    Client buyer = connect(port, proto::Role::kBuyer);
    Reply<proto::ReserveResp> lost;
    std::thread t([&] { lost = buyer.reserve({"u", "lost", 0, {{"mug", 1}}}); });
    std::this_thread::sleep_for(80ms);  // the group is in its 200 ms fsync
    faulty->power_off();
    t.join();
    if (lost.status != proto::Status::kStorageUnavailable) fail("the failed buy was not refused");
    std::this_thread::sleep_for(1500ms);  // a reopen was tried (and failed) meanwhile
  }
};

// While its store is failed, a server closes it (RocksDB's LOCK is free) and tries to open it
// again every second. A second server started on the data dir in that window took the store,
// acknowledged groups from the failed one's lsn on, and the first one's reopen deleted them as
// its own failed group (the next start refused the store: a lost part of the log). The data
// dir's own lock, held for the server's life, refuses the second server.
[[noreturn]] void run_second_server_while_failed() {
  capture_server_log();
  FailedServer first;
  {
    InProcess second(config_for(first.dir), storage::StoreOptions{});
    if (second.wait_ready() != 0) fail("a second server started on the data dir of a live one");
    if (second.rc() != 1) fail("the second server's start returned " + std::to_string(second.rc()));
    if (log_tail(5).find("is in use") == std::string::npos) {
      fail("the second server's refusal does not say the data dir is in use");
    }
  }
  first.faulty->power_on();
  bool resumed = false;
  for (int i = 0; i < 50 && !resumed; ++i) {
    std::this_thread::sleep_for(100ms);
    resumed = log_tail(30).find("accepting writes again") != std::string::npos;
  }
  if (!resumed) fail("the first server did not take its store back");
  if (!first.server->stop(10s)) fail("the first server did not stop");
  fs::remove_all(first.tmpl);
  std::_Exit(0);
}

TEST(StoreFailure, NoSecondServerTakesTheDataDirWhileTheStoreIsFailed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_second_server_while_failed(), ::testing::ExitedWithCode(0), "");
}

// While the store is failed, its data dir's path comes to name another directory (moved away
// and replaced by an empty one, or a symlink repointed, as a restore from a backup does). The
// reopen used to open (and create) a store there and go on with an empty book: every sale gone
// from view, and sold again. It now stops the server (exit 1) and creates nothing there.
[[noreturn]] void run_data_dir_replaced_while_failed() {
  capture_server_log();
  FailedServer first;
  fs::rename(first.dir, first.dir + ".moved");
  fs::create_directories(first.dir);
  first.faulty->power_on();
  for (int i = 0; i < 50 && first.server->rc() < 0; ++i) std::this_thread::sleep_for(100ms);
  const int rc = first.server->rc();
  if (!first.server->stop(10s)) fail("the server did not stop");
  if (fs::exists(fs::path(first.dir) / "CURRENT")) {
    fail("the reopen made a new store in the directory that replaced the data dir");
  }
  if (rc != 1) fail("the server went on (run() returned " + std::to_string(rc) + ")");
  fs::remove_all(first.tmpl);
  std::_Exit(0);
}

TEST(StoreFailure, AReopenDoesNotOpenADirectoryThatReplacedTheDataDir) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_data_dir_replaced_while_failed(), ::testing::ExitedWithCode(0), "");
}

// The same window, taken by a writer that does not hold the data dir's lock (a stockd of an
// earlier version, say): it acknowledged the groups there, so its mark is at or past the failed
// group. The reopen used to delete them all the same (and the reload then refused the store).
// Now it stops the server (exit 1) and leaves the log as it is: the next start recovers it.
[[noreturn]] void run_mark_past_the_failed_group() {
  capture_server_log();
  FailedServer first;
  {
    // The other writer's mark: the last group in the log (the failed one's record reached the
    // file before its fsync failed) is acknowledged.
    storage::StoreOptions ro;
    ro.read_only = true;
    ro.create_if_missing = false;
    auto store = storage::Store::open(first.dir, ro);
    if (!store.ok()) fail("cannot read the store: " + store.status().message());
    uint64_t last = 0;
    (void)(*store)->scan(std::string{rec::kTagLog, '/'}, [&](std::string_view k, std::string_view) {
      last = rec::log_key_lsn(k);
      return true;
    });
    store->reset();
    std::ofstream(fs::path(first.dir) / storage::kAckMarkFile, std::ios::binary | std::ios::trunc)
        << storage::encode_ack_mark(last);
  }
  first.faulty->power_on();
  for (int i = 0; i < 50 && first.server->rc() < 0; ++i) std::this_thread::sleep_for(100ms);
  const int first_rc = first.server->rc();  // -1: still running (it took the store back)
  if (!first.server->stop(10s)) fail("the first server did not stop");
  InProcess next(config_for(first.dir), storage::StoreOptions{});
  if (next.wait_ready() == 0) fail("the data dir does not start after the reopen");
  if (!next.stop(10s)) fail("the next server did not stop");
  if (first_rc != 1) {
    fail(
        "the server did not stop with exit 1 when the mark was past its failed group (run() "
        "returned " +
        std::to_string(first_rc) + ")");
  }
  fs::remove_all(first.tmpl);
  std::_Exit(0);
}

TEST(StoreFailure, AReopenLeavesGroupsAcknowledgedByAnotherWriter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(run_mark_past_the_failed_group(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace stockd::crash
