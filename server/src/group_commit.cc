#include "group_commit.h"

#include "stockd/check.h"

namespace stockd {

std::string GroupCommit::open(const storage::StoreOptions& options) {
  std::string err;
  store_ = storage::Store::open(config_.data_dir, options, err);
  return store_ ? "" : err;
}

std::string GroupCommit::recover_into(Book& book, Recovered& r) {
  std::string err = recover(*store_, book, r);
  if (err.empty()) lsn_ = r.meta.lsn;
  return err;
}

void GroupCommit::start_wal(std::function<void()> notify) {
  wal_ = std::make_unique<storage::WalWriter>(
      *store_, config_.durability == Durability::kSync,
      config_.durability == Durability::kInterval ? config_.fsync_interval_ms : 0,
      std::move(notify), static_cast<int>(config_.wal_spin_us));
}

void GroupCommit::close() {
  wal_.reset();  // joins the WAL thread after it wrote what was submitted
  store_.reset();
}

void GroupCommit::seal(const Book& book, OutboxFeed& feed) {
  STOCKD_CHECK(inflight_seq_ == 0, "one group in flight at a time");
  STOCKD_CHECK(durable_seq_ < fill_seq_, "groups become durable in sequence");
  if (changes_.empty() && deletes_.empty()) {
    durable_seq_ = fill_seq_++;
    return;
  }
  if (config_.durability == Durability::kOff) {  // no store, hence no outbox to advance
    changes_.clear();
    durable_seq_ = fill_seq_++;
    return;
  }
  if (!wal_) return;  // the store is being reopened after a failure: keep filling
  storage::Batch b = store_->batch();
  build_batch(b, book, changes_, ++lsn_, feed.acked(), feed.first());
  for (auto& k : deletes_) b.del(std::move(k));
  deletes_.clear();
  changes_.clear();
  inflight_seq_ = fill_seq_++;
  feed.sealed(book.meta().next_outbox_seq - 1);
  wal_->submit(std::move(b));
}

bool GroupCommit::collect(Metrics& metrics, std::string& failure) {
  bool advanced = false;
  if (!wal_) return false;
  for (auto& d : wal_->take_done()) {
    if (!d.status.ok()) {
      ++metrics.store_errors;
      failure = d.status.message();
      continue;
    }
    if (d.lsn == 0) continue;
    metrics.fsync_seconds.observe(static_cast<double>(d.write_us) / 1e6);
    metrics.batch_ops.observe(static_cast<double>(d.ops));
    STOCKD_CHECK(inflight_seq_ > durable_seq_, "the durable group sequence only rises");
    durable_seq_ = inflight_seq_;
    inflight_seq_ = 0;
    advanced = true;
  }
  return advanced;
}

void GroupCommit::fail(const std::string& why) {
  failed_ = true;
  error_ = why;
  inflight_seq_ = 0;
  changes_.clear();
  deletes_.clear();
}

std::string GroupCommit::reopen(const storage::StoreOptions& options) {
  wal_.reset();  // a writer that saw a failure stays failed; start a fresh one
  store_.reset();
  return open(options);
}

std::string GroupCommit::resume(const Book& book, const OutboxFeed& feed,
                                std::function<void()> notify) {
  start_wal(std::move(notify));
  storage::Batch probe = store_->batch();
  build_batch(probe, book, Changes{}, lsn_ + 1, feed.acked(), feed.first());
  storage::Status s = store_->write(probe, true);
  if (!s.ok()) return s.message();
  ++lsn_;
  failed_ = false;
  return "";
}

}  // namespace stockd
