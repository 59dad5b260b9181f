// The repair of a damaged checkpoint, cut short by a power loss. After a fallback on a snapshot,
// rewrite_state() drops the state's table files and writes the recovered state anew; RocksDB
// drops them in several steps (levels 1 and up at once, then level 0 one file at a time), so a
// crash in between leaves part of the old state, meta row included. The next start must not
// take that part for the state: it falls back on the snapshot again.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <stdlib.h>

#include <filesystem>

#include "fault_fs.h"
#include "stockd/persist.h"
#include "stockd/store.h"
#include "support/book_loop.h"

namespace stockd::crash {
namespace {

namespace fs = std::filesystem;

void reopen(const fs::path& dir, std::unique_ptr<storage::Store>& store) {
  store.reset();
  auto opened = storage::Store::open(dir.string(), {});
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  store = std::move(*opened);
}

TEST(Repair, APowerLossWhileTheStateIsDroppedFallsBackOnTheSnapshotAgain) {
  std::string tmpl = (fs::temp_directory_path() / "stockd-repair-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = fs::path(tmpl) / "data";
  auto faulty = std::make_shared<FaultFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(faulty);
  auto opened = storage::Store::open(dir.string(), {.env = env.get()});
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  std::unique_ptr<storage::Store> store = std::move(*opened);

  // 20 checkpoints of 50 decisions: their table files end up on several levels, the newest
  // (with the newest meta row) on level 0. One snapshot, at the first checkpoint.
  CheckpointOptions o;
  o.every_entries = 50;
  o.every_ms = 3'600'000;
  o.snapshot_every = 1'000'000;
  auto cp = std::make_unique<Checkpointer>(*store, o);
  test::Loop loop(*store, *cp);
  ASSERT_NO_FATAL_FAILURE(loop.start());
  // SKUs set once, at the start: their rows are only in the first checkpoint's files.
  const auto sku = [](int i) { return "early-" + std::to_string(i); };
  for (int i = 0; i < 20; ++i) {
    proto::SkuView v;
    ASSERT_EQ(
        loop.book.sku_set({sku(i), proto::kSetTotal, 10u + i, 0, 0, 0}, test::kT0, v, loop.ch),
        proto::Status::kOk);
  }
  loop.seal();
  for (int g = 0; g < 100; ++g) {
    for (int i = 0; i < 10; ++i) loop.buy(g * 10 + i, test::kT0 + g);
    loop.seal();
  }
  cp->stop(true);
  ASSERT_EQ(cp->take_error().message(), "");
  cp.reset();
  const std::vector<uint64_t> snaps = store->snapshots();
  ASSERT_EQ(snaps.size(), 1u);

  // The repair (as after a fallback), with the power cut at the first table file it deletes.
  Book whole;
  Recovered r0;
  ASSERT_EQ(recover(*store, whole, r0).message(), "");
  faulty->power_off_at_delete([&](const std::string& f) {
    return f.ends_with(".sst") && f.find("snapshots") == std::string::npos &&
           f.find("checkpoint.tmp") == std::string::npos;
  });
  EXPECT_FALSE(rewrite_state(*store, whole, r0).ok()) << "the power went off under it";
  store.reset();
  std::string error;
  const std::vector<FaultFs::Dropped> dropped = faulty->drop_unsynced(error);
  ASSERT_EQ(error, "");

  ASSERT_NO_FATAL_FAILURE(reopen(dir, store));
  Book book;
  Recovered r;
  ASSERT_EQ(recover(*store, book, r).message(), "");
  EXPECT_EQ(r.snapshot_lsn, snaps[0]) << "the partial state was taken for the checkpoint";
  EXPECT_NE(r.damaged.find("repair"), std::string::npos) << r.damaged;
  ASSERT_NO_FATAL_FAILURE(test::expect_same_book(loop.book, book));
  for (int i = 0; i < 20; ++i) {
    proto::SkuView a, b;
    EXPECT_EQ(loop.book.sku_get(sku(i), a), proto::Status::kOk);
    EXPECT_EQ(book.sku_get(sku(i), b), proto::Status::kOk) << sku(i) << " was lost";
    EXPECT_EQ(a, b);
  }

  // The repair done: the next recovery needs no fallback.
  ASSERT_EQ(rewrite_state(*store, book, r).message(), "");
  ASSERT_NO_FATAL_FAILURE(reopen(dir, store));
  Book again;
  Recovered r2;
  ASSERT_EQ(recover(*store, again, r2).message(), "");
  EXPECT_EQ(r2.snapshot_lsn, 0u) << r2.damaged;
  ASSERT_NO_FATAL_FAILURE(test::expect_same_book(loop.book, again));
  store.reset();
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace stockd::crash
