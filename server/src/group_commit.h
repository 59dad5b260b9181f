// Group commit: the store, its WAL writer, the checkpointer and the sequence of groups. The
// decisions of one loop turn fill a group (`changes`: their log entries); sealing it makes one
// log group value (stockd/decisions.h) for the WAL thread; answers tagged with a group are
// released once it is durable, and the durable group goes on to the checkpointer. One group is
// in flight at a time, and groups become durable in rising sequence.
//
// Gathering (sync durability, --group-gather-us): when clients send one request at a time, the
// ones answered by a durable group send their next requests while the loop already sealed the
// group behind it from the others' requests; left alone, each half then waits for two writes
// per request (two groups alternate, each half the clients). So when a group becomes durable
// and some connections have nothing left waiting (their newest answer was in it: they are
// likely to send again), the next group is sealed once that many more connections wait on it,
// or when the window ends, whichever comes first. A client pipelining requests always has some
// waiting, so nothing is gathered for it; a lone client is sealed for at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "metrics.h"
#include "outbox_feed.h"
#include "stockd/book.h"
#include "stockd/config.h"
#include "stockd/persist.h"
#include "stockd/store.h"

namespace stockd {

class GroupCommit {
 public:
  explicit GroupCommit(const Config& config) : config_(config) { changes_.rows = false; }

  // ---- The store. ----
  // Opens the data dir's store. Ok or why not (storage::Store::open).
  Status open(const storage::StoreOptions& options);
  storage::Store* store() const { return store_.get(); }
  // Rebuilds `book` from the store (persist.h) and takes the store's lsn. Ok or what is wrong.
  // Only while neither the WAL thread nor the checkpointer runs (at start, and after fail()).
  Status recover_into(Book& book, Recovered& r);
  // Starts the WAL thread; `notify` runs on it when a write finished (uv_async_send).
  void start_wal(std::function<void()> notify);
  // Starts the checkpointer (after recovery: it rebuilds its own book from the store).
  void start_checkpointer(const BookLimits& limits);
  Checkpointer* checkpointer() const { return checkpointer_.get(); }
  // Joins the WAL thread after it wrote what was submitted: before the loop closes, as its
  // notify signals the loop.
  void stop_wal() { wal_.reset(); }
  void close();  // the WAL thread, a last checkpoint, then the store

  // ---- The sequence of groups. ----
  Changes& changes() { return changes_; }            // the filling group
  uint64_t filling() const { return fill_seq_; }     // answers made now wait for this group
  uint64_t durable() const { return durable_seq_; }  // every group up to this one is durable
  bool in_flight() const { return inflight_seq_ != 0; }
  bool pending() const { return in_flight() || changes_.entry_count > 0; }
  uint64_t lsn() const { return lsn_; }
  // Every group up to this lsn is synced (WalWriter::synced_lsn; 0 while the store is reopened).
  uint64_t synced_lsn() const { return wal_ ? wal_->synced_lsn() : 0; }

  // Seals the filling group: durable at once when it decided nothing (or durability is off),
  // else one log group for the WAL thread (and its records for `feed`). Only while nothing is in
  // flight.
  void seal(const Book& book, OutboxFeed& feed, Metrics& metrics);
  // Takes the writes the WAL thread finished. True when the group in flight became durable;
  // `failure` is set (and the group dropped) when a write or sync failed.
  bool collect(Metrics& metrics, Status& failure);
  // A connection's newest answer now waits on group `tag` instead of `newest` (0: none waiting).
  void waits_on(uint64_t newest, uint64_t tag);
  // Whether the filling group may be sealed now: false while it gathers (see above).
  bool ready_to_seal() const { return gather_expected_ == 0 || gathered() >= gather_expected_; }

  // ---- Failure. ----
  // A write failed: nothing in flight or filling may be acknowledged; writes are refused. The
  // WAL thread and the checkpointer are stopped (joined), so that the book can be read back
  // from the store with nothing writing to it; resume() starts them again. Returns what the
  // checkpointer reported and nobody took yet (ok if nothing).
  Status fail(const Status& why);
  // After the book was rebuilt from the store: the failed groups are passed over.
  void skip_failed() { durable_seq_ = fill_seq_++; }
  bool failed() const { return failed_; }
  const Status& error() const { return error_; }
  // While failed, in two steps around rebuilding the book from the store: close and open the
  // store again, as a restart would (RocksDB 7.8's Resume() does not clear a failed WAL
  // append); then start a fresh WAL thread and prove a synced write. Ok or why not.
  // Reopening also deletes from the log the group whose write failed, if it reached the log
  // file after all (a failed fsync, the record in the file): its answers said nothing was
  // kept, so the store must not replay it. Its lsns are in voided() once done. Refused (the
  // store closed again) when the acknowledged mark is at or past that group: another server
  // wrote to the data dir while the store was closed, and the groups there are its answers.
  Status reopen(const storage::StoreOptions& options);
  std::pair<uint64_t, uint64_t> take_voided() { return std::exchange(voided_, {}); }
  Status resume(std::function<void()> notify, const BookLimits& limits);

 private:
  // Answered connections that sent again since the gathering began.
  uint32_t gathered() const {
    return conns_filling_ > gather_base_ ? conns_filling_ - gather_base_ : 0;
  }
  storage::Batch group_batch(uint64_t lsn, int64_t base_ms, uint32_t records, uint32_t count,
                             std::string_view entries);

  const Config& config_;
  std::unique_ptr<storage::Store> store_;
  storage::StoreOptions options_;  // as opened, to open it again after a repair
  std::unique_ptr<storage::WalWriter> wal_;
  std::unique_ptr<Checkpointer> checkpointer_;
  Changes changes_;
  std::string inflight_group_;     // the group being written, for the checkpointer once durable
  uint64_t group_first_seq_ = 1;   // the first outbox sequence number of the filling group
  uint32_t inflight_entries_ = 0;  // decisions in the group being written
  uint64_t fill_seq_ = 1;          // id of the filling group; answers are tagged with it
  uint64_t durable_seq_ = 0;       // every group <= this is durable (or was empty)
  uint64_t inflight_seq_ = 0;      // group being written by the WAL thread, 0 if none
  uint64_t lsn_ = 0;               // our log sequence number: +1 per written batch
  uint32_t conns_filling_ = 0;     // connections whose newest answer waits on the filling group
  uint32_t conns_inflight_ = 0;    // ... on the group in flight
  uint32_t gather_base_ = 0;       // connections waiting on the filling group when it began
  uint64_t gather_token_ = 0;      // lsn of the group whose durability began the gathering
  uint32_t gather_skip_ = 0;       // groups not to gather for (after a window ran out)
  uint32_t gather_expected_ = 0;   // answered connections it waits for; 0: not gathering
  bool failed_ = false;
  bool reopen_due_ = false;  // failed, and not reopened since: no repair is written into it
  Status error_;
  uint64_t void_from_ = 0;                // the failed group's lsn, to delete at reopen (0: none)
  std::pair<uint64_t, uint64_t> voided_;  // lsns deleted at the last reopen ({0, 0}: none)
};

}  // namespace stockd
