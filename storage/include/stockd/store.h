// The durable store: an ordered key-value map with atomic batches, on RocksDB.
//
// Knows RocksDB and threads, nothing of sockets or of the book. The rows it holds are the byte
// strings of stockd/records.h. Open it once; one thread writes (the WAL thread, through
// WalWriter), recovery scans before that thread starts.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "stockd/status.h"

namespace rocksdb {
class ColumnFamilyHandle;
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace stockd::storage {

// Puts and deletes applied atomically, in order. Built straight into a RocksDB WriteBatch (one
// buffer; put/del copy the bytes in), which the WAL thread writes as it is: no allocation per
// row on the loop thread and no second copy on the WAL thread. Get one from Store::batch(): it
// files each key under the store's column family for its table (store.cc).
class Batch {
 public:
  using Families = std::array<rocksdb::ColumnFamilyHandle*, 3>;
  explicit Batch(const Families& families);
  ~Batch();
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;

  uint64_t lsn = 0;  // our sequence number of this batch (also inside its meta row)
  void put(std::string_view key, std::string_view value);
  void del(std::string_view key);
  // Deletes every key in [from, to) (one table: both keys' tags must be the same).
  void del_range(std::string_view from, std::string_view to);
  size_t size() const { return ops_; }  // puts and deletes
  bool empty() const { return ops_ == 0; }
  void clear();  // empty again, its buffer kept for the next batch

  // For the store: the batch, and what went wrong building it (ok if nothing).
  rocksdb::WriteBatch& rep() { return *rep_; }
  const Status& status() const { return status_; }

 private:
  std::unique_ptr<rocksdb::WriteBatch> rep_;
  Families families_;
  size_t ops_ = 0;
  Status status_;
};

// A checkpoint written as table files and added to the store whole (RocksDB's external file
// ingestion, all families at once): its rows never pass through the write path, so no write of
// the log waits behind a checkpoint, and nothing of it is in the WAL. Keys must come in
// strictly increasing order within each family (the default family: c/ < m/ < s/ < u/; holds
// h/). Get one from Store::checkpoint_writer(); commit() or drop it.
class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  virtual void put(std::string_view key, std::string_view value) = 0;
  virtual void del(std::string_view key) = 0;
  // Finishes the files (synced) and adds them to the store atomically.
  virtual Status commit() = 0;
  virtual uint64_t bytes() const = 0;  // file bytes written (after commit)
};

struct StoreOptions {
  bool create_if_missing = true;
  bool read_only = false;  // offline inspection of a stopped server's data
  // With read_only: a missing or damaged ACKED is not refused and acked_lsn() is 0 (stockctl
  // mark rewrite, which then writes it again at the log's end).
  bool without_mark = false;
  rocksdb::Env* env = nullptr;  // tests only: a fault-injecting file system; not owned
};

// Rows to load a state from: the store's tables, or a snapshot's files.
class RowSource {
 public:
  virtual ~RowSource() = default;
  // Calls `fn(key, value)` for every key starting with `prefix` and not below `from`, in key
  // order, until it returns false. Values are verified by RocksDB's block checksums. A `bulk`
  // scan (recovery's passes over whole tables) reads ahead and leaves the block cache as it was.
  virtual Status scan(std::string_view prefix,
                      const std::function<bool(std::string_view, std::string_view)>& fn,
                      std::string_view from = {}, bool bulk = false) = 0;
  virtual Status get(std::string_view key, std::string& value, bool& found) = 0;
};

class Store : public RowSource {
 public:
  // Opens (or creates) a RocksDB store in `dir` with options chosen for safety:
  // kTolerateCorruptedTailRecords WAL recovery, paranoid checks, checksums verified on read.
  // On failure says why, naming the file and the problem: Corruption (a damaged log, table or
  // manifest), Refused (a lost log or mark, an earlier layout: the message says what to do),
  // Invalid or Io.
  static Result<std::unique_ptr<Store>> open(const std::string& dir, const StoreOptions& options);

  // Writes `batch` atomically; with sync, returns only after it is on stable storage and the
  // acknowledged mark (ack_mark.h) names its lsn.
  // After a failed write, close and reopen the store before writing again.
  // An empty batch for this store (valid while the store is open).
  virtual Batch batch() = 0;
  virtual Status write(Batch& batch, bool sync) = 0;
  // A checkpoint's writer (any thread but the WAL thread's; one at a time).
  virtual std::unique_ptr<CheckpointWriter> checkpoint_writer(uint64_t lsn) = 0;
  // Deletes the log groups below `lsn` (not synced: a trim lost in a crash is done again).
  virtual Status trim_log(uint64_t lsn) = 0;
  // Makes every earlier write durable (for the interval mode), then advances the mark to it.
  virtual Status sync_wal() = 0;
  // The acknowledged mark as found at open: every lsn up to it was answered, so a store whose
  // last lsn is below it lost part of its log (recover() refuses it). 0 for a new store, or
  // an older one that had no mark yet (logged when open() creates it).
  virtual uint64_t acked_lsn() const = 0;
  // ACKED deleted or replaced while the store is open (ack_mark.h): written anew. `restored`
  // says whether it had to be; a read-only store does nothing.
  virtual Status restore_mark(bool& restored) = 0;
  // ---- Snapshots (docs/storage.md, "Snapshots"): a whole state as of one lsn, in files of
  // their own under <dir>/snapshots/, which recovery falls back on when the checkpoint in the
  // store is damaged (the log is kept back to the oldest snapshot for that). ----
  // The lsns of the snapshots present, newest first (complete ones: a cut-short one is removed
  // when the store opens).
  virtual std::vector<uint64_t> snapshots() const = 0;
  // A snapshot's writer (any thread but the WAL thread's; one at a time): every row of a state,
  // in key order within each family, as for a checkpoint. commit() makes it durable under
  // `lsn`, then removes every older snapshot.
  virtual std::unique_ptr<CheckpointWriter> snapshot_writer(uint64_t lsn) = 0;
  // A snapshot's rows. Its files are opened (a torn one fails here); their blocks are verified
  // as they are read.
  virtual Result<std::unique_ptr<RowSource>> open_snapshot(uint64_t lsn) = 0;
  // A damaged table file found when the store was opened ("" if none). Such a store opens all
  // the same when it has snapshots: recovery then falls back on one (the file may be the
  // checkpoint's) and the store must be reopened once the state is written anew.
  virtual const std::string& damage_found_at_open() const = 0;
  // Reads every block of every table file of the store: ok, or Corruption naming the file.
  virtual Status verify_tables() = 0;
  // Removes the snapshots older than `lsn` (all of them: UINT64_MAX).
  virtual void remove_snapshots(uint64_t below) = 0;
  // Reads every block of a snapshot's files: ok, or Corruption saying which is damaged.
  virtual Status verify_snapshot(uint64_t lsn) = 0;
  // Removes every table file of the state's families (all but the log), without reading them:
  // the repair of a damaged checkpoint, before the whole state is written anew. With the WAL
  // thread not started. First marks the store as under repair (durably): until
  // state_repaired() clears the mark, an open reports the state as damaged
  // (damage_found_at_open()), since a crash in between leaves part of it.
  virtual Status drop_state() = 0;
  virtual Status state_repaired() = 0;
};

// The WAL thread: writes submitted batches one at a time, in order, and calls `notify` (from
// its own thread) after each; the owner then collects results with take_done(). submit() and
// take_done() are for the owning (loop) thread. After one failed write or sync the writer is
// spent: later batches fail at once without touching the store; make a new one to go on.
class WalWriter {
 public:
  struct Done {
    uint64_t lsn = 0;
    size_t ops = 0;
    int64_t write_us = 0;  // time spent in write(+sync)
    Status status = Status::Ok();
  };
  // interval_ms > 0 and !sync: batches are written without sync and the WAL is synced every
  // interval_ms (a crash loses at most that window).
  // spin_us > 0: after a write, yield-wait that long for the next batch before sleeping (a
  // sleeping thread's wake-up is slow on a busy machine; RocksDB's writers do the same).
  WalWriter(Store& store, bool sync, int interval_ms, std::function<void()> notify,
            int spin_us = 0);
  ~WalWriter();  // finishes what was submitted, then joins
  void submit(Batch batch);
  std::vector<Done> take_done();
  // An empty batch for the next submit: one written before (its buffer kept, so a steady stream
  // of groups allocates nothing), or a new one.
  Batch recycled();
  size_t in_flight() const;
  // Group commit's gathering window (server/src/group_commit.h): unless a batch is submitted
  // first, the thread calls `notify` at `at` (sync mode only) and take_woken() then returns
  // `token` once. A later wake_at() replaces an armed one; submit() disarms it.
  void wake_at(std::chrono::steady_clock::time_point at, uint64_t token);
  uint64_t take_woken();  // the token of the wake that came due since last asked, or 0
  // Every batch up to this lsn is synced: each written one in sync mode; in interval mode those
  // written before the last periodic sync, which, when it succeeds, also calls `notify` (a
  // Done of lsn 0 and status ok).
  uint64_t synced_lsn() const;

 private:
  void run();
  void wait_for_batch(std::unique_lock<std::mutex>& lock);
  Store& store_;
  const bool sync_;
  const int interval_ms_;
  const int spin_us_;
  std::function<void()> notify_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Batch> queue_;  // one group in flight at a time: a vector keeps its room
  std::vector<Batch> spare_;  // written batches, emptied, for recycled()
  std::vector<Done> done_;
  size_t in_flight_ = 0;
  std::chrono::steady_clock::time_point wake_at_{};
  uint64_t wake_token_ = 0;  // armed wake, 0 if none
  uint64_t woken_ = 0;       // token of the wake that came due, until take_woken()
  bool stop_ = false;
  uint64_t written_lsn_ = 0;  // the last batch written
  uint64_t synced_lsn_ = 0;   // see synced_lsn()
  std::string failed_;        // the first failure; after it nothing more is written or synced
  std::thread thread_;
};

// The write-ahead log's files (NNNNNN.log) in `dir`: wal/ of a data dir, the data dir itself in
// an earlier layout, or wal.moving/ after a move into wal/ cut short. Empty if there is none.
std::vector<std::filesystem::path> log_files_in(const std::string& dir);

}  // namespace stockd::storage
