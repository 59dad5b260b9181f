#include "group_commit.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "stockd/check.h"
#include "stockd/decisions.h"

namespace stockd {
namespace {
// A group's buffer is reused for the next group up to this size; a spike's largest is let go.
constexpr size_t kGroupBufferKept = 1u << 20;
constexpr size_t kGroupBufferMin = 16u << 10;
// Groups not gathered for after a gathering's window ran out.
constexpr uint32_t kGatherSkipAfterTimeout = 8;
}  // namespace

Status GroupCommit::open(const storage::StoreOptions& options) {
  options_ = options;
  Result<std::unique_ptr<storage::Store>> store = storage::Store::open(config_.data_dir, options);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  return Status::Ok();
}

Status GroupCommit::recover_into(Book& book, Recovered& r) {
  // The store is read with nothing else writing to it: a checkpoint landing between the state's
  // read and the log's would trim groups the replay needs, and a repair below reopens the store
  // under the threads that hold it.
  STOCKD_CHECK(!wal_ && !checkpointer_, "the store is read back with no writer running");
  // Right after a failed write the store is still open and may hold the failed group (its write
  // done, the acknowledged mark's not): it was answered "nothing of it was kept", so it is left
  // out here, and deleted when the store is reopened.
  Status s = recover(*store_, book, r, nullptr, void_from_ != 0 ? void_from_ - 1 : UINT64_MAX);
  // Fell back on a snapshot: the damaged tables go, the recovered state is the checkpoint, and
  // the store is opened again (as a store with no damage: a damaged file left is refused). Not
  // into a store that failed and was not reopened yet: the reload after its reopen repairs it.
  if (s.ok() && r.snapshot_lsn != 0 && !reopen_due_) {
    s = rewrite_state(*store_, book, r);
    store_.reset();
    if (s.ok()) s = open(options_);
    if (s.ok() && !store_->damage_found_at_open().empty()) {
      s = Status::Corruption("a damaged table file is left after the repair: " +
                             store_->damage_found_at_open());
    }
  }
  if (s.ok()) {
    lsn_ = r.meta.lsn;
    group_first_seq_ = book.meta().next_outbox_seq;
  }
  return s;
}

void GroupCommit::start_wal(std::function<void()> notify) {
  wal_ = std::make_unique<storage::WalWriter>(
      *store_, config_.durability == Durability::kSync,
      config_.durability == Durability::kInterval ? config_.fsync_interval_ms : 0,
      std::move(notify), static_cast<int>(config_.wal_spin_us));
}

void GroupCommit::start_checkpointer(const BookLimits& limits) {
  CheckpointOptions o;
  o.every_entries = config_.checkpoint_every;
  o.every_ms = config_.checkpoint_interval_ms;
  o.outbox_retention_ms = config_.outbox_retention_ms;
  o.snapshot_every = config_.snapshot_every;
  o.limits = limits;
  checkpointer_ = std::make_unique<Checkpointer>(*store_, o);
}

void GroupCommit::close() {
  wal_.reset();  // joins the WAL thread after it wrote what was submitted
  if (checkpointer_ && !failed_) checkpointer_->stop(true);  // the next start replays nothing
  checkpointer_.reset();
  store_.reset();
}

// `count` entries (`records` of them outbox records) as one log value under `lsn`, in a batch of
// its own; the value stays in inflight_group_ for the checkpointer.
storage::Batch GroupCommit::group_batch(uint64_t lsn, int64_t base_ms, uint32_t records,
                                        uint32_t count, std::string_view entries) {
  storage::Batch b = wal_ ? wal_->recycled() : store_->batch();
  b.lsn = lsn;
  // Room to spare: the buffer goes round through the checkpointer's queue and comes back for a
  // later group, which is often a little larger (groups follow the load).
  const size_t need = entries.size() + 64;
  if (inflight_group_.capacity() < need)
    inflight_group_.reserve(std::max(need + need / 2, kGroupBufferMin));
  rec::encode_group(lsn, base_ms, group_first_seq_, records, count, entries, inflight_group_);
  b.put(rec::log_key(lsn), inflight_group_);
  return b;
}

void GroupCommit::seal(const Book& book, OutboxFeed& feed, Metrics& metrics) {
  STOCKD_CHECK(inflight_seq_ == 0, "one group in flight at a time");
  STOCKD_CHECK(durable_seq_ < fill_seq_, "groups become durable in sequence");
  if (gather_expected_ != 0 && gathered() >= gather_expected_) ++metrics.gathers_full;
  gather_expected_ = 0;
  if (changes_.entry_count == 0 || config_.durability == Durability::kOff) {
    conns_filling_ = 0;  // their answers are released with this turn's
    changes_.clear();    // nothing decided, or no store (and no outbox) to write it to
    group_first_seq_ = book.meta().next_outbox_seq;
    durable_seq_ = fill_seq_++;
    return;
  }
  // The store failed (and is being reopened): keep filling. Nothing decided may be written
  // while it is failed; sealing it into the failed writer would only fail the store again.
  if (!wal_ || failed_) return;
  const uint64_t end = book.meta().next_outbox_seq;
  storage::Batch b =
      group_batch(++lsn_, changes_.entry_base_ms, static_cast<uint32_t>(end - group_first_seq_),
                  changes_.entry_count, changes_.entries);
  if (end > group_first_seq_) feed.add_group({lsn_, group_first_seq_, end, changes_.entry_base_ms});
  group_first_seq_ = end;
  inflight_entries_ = changes_.entry_count;
  changes_.clear();
  inflight_seq_ = fill_seq_++;
  conns_inflight_ = std::exchange(conns_filling_, 0);
  feed.sealed(end - 1);
  wal_->submit(std::move(b));
}

bool GroupCommit::collect(Metrics& metrics, Status& failure) {
  bool advanced = false;
  if (!wal_) return false;
  for (auto& d : wal_->take_done()) {
    if (!d.status.ok()) {
      ++metrics.store_errors;
      failure = d.status;
      continue;
    }
    if (d.lsn == 0) continue;
    metrics.fsync_seconds.observe(static_cast<double>(d.write_us) / 1e6);
    metrics.batch_ops.observe(static_cast<double>(inflight_entries_));  // decisions per group
    STOCKD_CHECK(inflight_seq_ > durable_seq_, "the durable group sequence only rises");
    durable_seq_ = inflight_seq_;
    inflight_seq_ = 0;
    advanced = true;
    // Gather for clients that wait for each answer before they send again (about one decision
    // per answered connection). A pipelining client's turnaround is a whole batch of work for
    // the loop: waiting for it would leave the disk idle for as long, so it is not waited for.
    // After a window ran out with fewer than half of the clients back (they take longer than
    // it to send again, and writing while they do is better), the next groups are not gathered
    // for.
    const uint32_t answered_idle = std::exchange(conns_inflight_, 0);
    const bool skip = gather_skip_ > 0;
    if (skip) --gather_skip_;
    if (config_.durability == Durability::kSync && config_.group_gather_us > 0 && !skip &&
        answered_idle > 0 && inflight_entries_ <= 2 * answered_idle) {
      gather_base_ = conns_filling_;
      gather_expected_ = answered_idle;
      gather_token_ = d.lsn;
      wal_->wake_at(
          std::chrono::steady_clock::now() + std::chrono::microseconds(config_.group_gather_us),
          d.lsn);
    }
    if (checkpointer_) checkpointer_->submit(d.lsn, inflight_group_);  // swapped for a used one
    inflight_group_.clear();
    if (inflight_group_.capacity() > kGroupBufferKept) std::string().swap(inflight_group_);
  }
  if (gather_expected_ != 0 && wal_->take_woken() == gather_token_) {
    if (2 * gathered() < gather_expected_) gather_skip_ = kGatherSkipAfterTimeout;
    if (conns_filling_ > 0) ++metrics.gathers_timed_out;  // somebody waited
    gather_expected_ = 0;
  }
  return advanced;
}

void GroupCommit::waits_on(uint64_t newest, uint64_t tag) {
  if (newest == tag) return;
  if (tag == fill_seq_) ++conns_filling_;
  if (newest != 0 && newest == inflight_seq_ && conns_inflight_ > 0) --conns_inflight_;
}

Status GroupCommit::fail(const Status& why) {
  // The group in flight is answered STORAGE_UNAVAILABLE, "nothing of it was kept": until the
  // reopen deletes it, it must not come back (the earliest if a reopen failed too).
  if (inflight_seq_ != 0 && void_from_ == 0) void_from_ = lsn_;
  failed_ = true;
  reopen_due_ = true;
  error_ = why;
  inflight_seq_ = 0;
  conns_filling_ = conns_inflight_ = gather_expected_ = 0;
  changes_.clear();
  inflight_group_.clear();
  // The book is read back from the store next, with nothing writing to it: the writer that saw
  // the failure is done with (resume() starts a fresh one), and so is the checkpointer, whose
  // book is rebuilt with the loop's (its last durable groups replayed first, no checkpoint).
  wal_.reset();
  Status unreported;
  if (checkpointer_) {
    checkpointer_->stop(false);
    unreported = checkpointer_->take_error();
    checkpointer_.reset();
  }
  return unreported;
}

Status GroupCommit::reopen(const storage::StoreOptions& options) {
  wal_.reset();           // a writer that saw a failure stays failed; start a fresh one
  checkpointer_.reset();  // its book is rebuilt from the store with the loop's
  store_.reset();
  if (Status s = open(options); !s.ok()) return s;
  reopen_due_ = false;
  if (void_from_ == 0) return Status::Ok();
  // The store was closed (its LOCK free) while it failed: a second server started on the data
  // dir meanwhile may have written groups from void_from_ on and acknowledged them. Those are
  // not this server's failed group: deleting them would lose answers that server gave.
  if (const uint64_t acked = store_->acked_lsn(); acked >= void_from_) {
    store_.reset();
    return Status::Refused("the store's acknowledged mark is at lsn " + std::to_string(acked) +
                           ", past this server's failed group at lsn " +
                           std::to_string(void_from_) +
                           ": another server wrote to the data dir while this one's store was "
                           "failed; its log is left as it is");
  }
  uint64_t last = 0;
  Status s = store_->scan(
      std::string{rec::kTagLog, '/'},
      [&](std::string_view k, std::string_view) {
        last = rec::log_key_lsn(k);
        return true;
      },
      rec::log_key(void_from_));
  if (s.ok() && last >= void_from_) {
    storage::Batch b = store_->batch();
    b.del_range(rec::log_key(void_from_), rec::log_key(last + 1));
    s = store_->write(b, true);
    if (s.ok()) voided_ = {void_from_, last};
  }
  if (!s.ok()) return s.context("delete the failed group from the log");
  void_from_ = 0;
  return Status::Ok();
}

Status GroupCommit::resume(std::function<void()> notify, const BookLimits& limits) {
  start_wal(std::move(notify));
  // The proof: an empty group, synced (what the filling group holds waits for its seal).
  storage::Batch probe = group_batch(lsn_ + 1, 0, 0, 0, {});
  inflight_group_.clear();
  if (Status s = store_->write(probe, true); !s.ok()) return s;
  ++lsn_;
  failed_ = false;
  start_checkpointer(limits);
  return Status::Ok();
}

}  // namespace stockd
