// The seam between the book and the store (docs/storage.md).
//
// The store holds a checkpoint (the book's rows as of one lsn, with the meta row) and the log of
// decisions after it (one group value per loop turn, stockd/decisions.h). Recovery loads the
// checkpoint's rows and replays the log after it through the book's live code; the checkpointer
// (a thread of its own, with its own book fed the same durable groups) writes the next
// checkpoint and trims the log behind it, so the loop never pauses for one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "stockd/book.h"
#include "stockd/ring.h"
#include "stockd/store.h"

namespace stockd {

// Coalesces `changes` (each row written once, in its current state; deleted if gone) into a
// batch as of `lsn`, with the meta row: the rows a checkpoint writes, as one batch (tests).
void build_batch(storage::Batch& b, const Book& book, const Changes& changes, uint64_t lsn,
                 uint64_t outbox_acked, uint64_t outbox_first);

// A retained log group that holds outbox records: what the outbox feed reads and what the trim
// waits for.
struct LogGroupRef {
  uint64_t lsn = 0;
  uint64_t first_seq = 0;  // its records are first_seq .. end_seq - 1
  uint64_t end_seq = 0;
  int64_t at_ms = 0;  // its time (base_ms: its first entry's; a group spans one loop turn)
  uint32_t entries = 0;
};

struct Recovered {
  rec::MetaRow meta;  // after replay: the book's, lsn = the last lsn, outbox_first as retained
  uint64_t checkpoint_lsn = 0;
  size_t skus = 0, holds = 0, users = 0, codes = 0;
  size_t idem = 0;                         // holds with an idempotency key, in the checkpoint
  size_t log_groups = 0;                   // groups retained in the log
  size_t replayed = 0;                     // entries replayed (groups after the checkpoint)
  size_t outbox = 0;                       // outbox records retained
  std::vector<LogGroupRef> outbox_groups;  // in lsn order
  // When the checkpoint in the store was damaged: why, and the snapshot recovery fell back on
  // (the state then comes from it and the longer log after it; the store's state must be
  // written anew, rewrite_state(), before a checkpointer reads it).
  std::string damaged;
  uint64_t snapshot_lsn = 0;
  size_t logged_since = 0;  // entries in the log after the newest snapshot (or the one used)
};

// Loads the checkpoint into an empty `book`, replays every log group after it, checks each
// record and entry, the log for gaps, the acknowledged mark and the book's invariants.
// Ok, else what is wrong, naming the key or the group: Corruption (a damaged row, group or
// entry), Refused (a lost part of the log), Io. A damaged checkpoint (Corruption while loading
// it) falls back to the newest snapshot that loads and replays the log after it (out.damaged
// says so); Corruption naming each if none does. With `changes`, the rows the replayed decisions
// touched are named there (the checkpointer's next checkpoint must write them: its meta row will
// cover those groups). Log groups after `upto` are left out (a failed write's group, still in
// the store until it is reopened and the group deleted: server/src/group_commit.h).
Status recover(storage::Store& store, Book& book, Recovered& out, Changes* changes = nullptr,
               uint64_t upto = UINT64_MAX);

// The repair after a recovery that fell back on a snapshot: the store's state tables are dropped
// (unread: they hold the damage) and `book`'s whole state is written as the checkpoint at
// r.meta.lsn. Before the WAL thread and the checkpointer start.
Status rewrite_state(storage::Store& store, const Book& book, const Recovered& r);

// Converts a data dir of the layout before the log of decisions, with its server stopped
// (docs/storage.md, "Moving an earlier data dir"). Ok and a one-line `report`, or why not
// (nothing changed then, or a rerun finishes it).
Status migrate_earlier_layout(const std::string& dir, std::string& report);

struct CheckpointOptions {
  uint64_t every_entries = 2'000'000;  // a checkpoint after this many replayed decisions,
  int64_t every_ms = 30'000;           // or this long after the last one (if anything changed)
  int64_t outbox_retention_ms = 0;     // acknowledged records are kept this long
  // A snapshot (the whole state, in files of its own) at the first checkpoint after this many
  // decisions since the last one; the log is kept back to it. 0: none (and no fallback).
  uint64_t snapshot_every = 10'000'000;
  BookLimits limits;
};

// The checkpointer: a thread with a book of its own. It recovers that book from the store, then
// replays each group the loop hands it once durable, and writes a checkpoint every
// every_entries decisions or every_ms: the rows its decisions changed since the last one and
// the meta row, as table files added to the store at once (storage::CheckpointWriter: nothing
// of it passes the write path the log's groups take); then it trims the log groups the
// checkpoint covers whose outbox records were all acknowledged and are past their retention.
// Failures are reported through error() and retried at the next checkpoint; the log is then simply
// kept longer.
class Checkpointer {
 public:
  Checkpointer(storage::Store& store, CheckpointOptions options);
  ~Checkpointer();  // stop(false) if still running
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // A durable group (the loop thread). Groups come in lsn order. Past kQueueBytesMax queued,
  // the group is not kept and is read back from the log instead. A kept group's bytes are
  // swapped with a used string, which `group` holds after the call (contents unspecified, its
  // capacity kept for the caller's next group).
  void submit(uint64_t lsn, std::string& group);
  // Replays what was submitted, writes a last checkpoint when `final` (a clean stop: the next
  // start replays nothing), and joins.
  void stop(bool final);

  // Published for the loop, any thread.
  uint64_t checkpoint_lsn() const { return checkpoint_lsn_.load(); }
  uint64_t trimmed_below() const { return trimmed_below_.load(); }  // log groups < this are gone
  uint64_t outbox_first() const { return outbox_first_.load(); }    // lowest record retained
  uint64_t checkpoints() const { return checkpoints_.load(); }
  int64_t last_checkpoint_us() const { return last_us_.load(); }
  uint64_t last_checkpoint_bytes() const { return last_bytes_.load(); }
  uint64_t snapshots() const { return snapshots_.load(); }             // written by this process
  uint64_t snapshot_lsn() const { return last_snapshot_lsn_.load(); }  // the newest's, or 0
  int64_t last_snapshot_us() const { return last_snapshot_us_.load(); }
  size_t queued() const;
  Status take_error();  // ok if nothing went wrong since the last call

 private:
  static constexpr size_t kQueueBytesMax = 64 << 20;
  static constexpr int kNice = 10;  // the thread's nice value

  void run();
  bool apply(uint64_t lsn, std::string_view group);
  bool catch_up(uint64_t upto);
  void checkpoint(int64_t now_ms);
  void snapshot(uint64_t outbox_acked, uint64_t outbox_first);
  bool trimmable(int64_t now_ms) const;
  void fail(Status why);  // keeps the first until take_error()

  storage::Store& store_;
  const CheckpointOptions options_;
  Book book_;
  Changes changes_;   // rows changed since the last checkpoint
  uint64_t lsn_ = 0;  // the last group replayed
  uint64_t entries_since_ = 0;
  uint64_t snapshot_lsn_ = 0;  // the newest snapshot's (0: none)
  uint64_t entries_since_snapshot_ = 0;
  // Holds of this sequence number or later were made after the last checkpoint: none has a row
  // on disk, so one made and forgotten since then needs no delete (most of a buy-now sale's).
  // Until this process's first checkpoint, unknown: every gone hold is deleted.
  uint64_t unwritten_seq_ = UINT64_MAX;
  std::deque<LogGroupRef> groups_;  // retained groups with outbox records
  bool broken_ = false;             // a replay failed: no more checkpoints from this book
  int64_t retry_at_ = 0;            // after a failed checkpoint, no other before this time

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Ring<std::pair<uint64_t, std::string>> queue_;
  size_t queued_bytes_ = 0;
  uint64_t durable_ = 0;  // the last durable group submitted (kept or not)
  bool stop_ = false, final_ = false;
  Status error_;
  std::atomic<uint64_t> checkpoint_lsn_{0}, trimmed_below_{0}, outbox_first_{1}, checkpoints_{0};
  std::atomic<int64_t> last_us_{0};
  std::atomic<uint64_t> last_bytes_{0};
  std::atomic<uint64_t> snapshots_{0}, last_snapshot_lsn_{0};
  std::atomic<int64_t> last_snapshot_us_{0};
  std::thread thread_;
};

}  // namespace stockd
