#include "stockd/persist.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unordered_set>

#include "stockd/decisions.h"

namespace stockd {
namespace {

// Calls fn once per distinct item (in sorted order), without allocating once `order` is big
// enough: a group names the same SKU once per request that touched it.
template <class T, class Fn>
void each_once(const std::vector<T>& items, std::vector<const T*>& order, Fn&& fn) {
  if (items.size() == 1) return fn(items[0]);
  order.clear();
  for (const T& it : items) order.push_back(&it);
  std::sort(order.begin(), order.end(), [](const T* a, const T* b) { return *a < *b; });
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || *order[i - 1] < *order[i]) fn(*order[i]);
  }
}

// What a checkpoint reuses from one to the next: rows and the encoded value are filled in place.
struct Scratch {
  std::string value;
  rec::SkuRow sku;
  rec::HoldRow hold;
  std::vector<std::pair<uint64_t, uint64_t>> holds;  // (sequence number, id)
  std::vector<std::pair<uint64_t, uint64_t>> older, fresh;
  std::vector<const std::pair<std::string, std::string>*> users;
  std::vector<const std::pair<std::string, uint32_t>*> codes;
};
thread_local Scratch scratch;  // write_rows' (a checkpoint's, a snapshot's)

// The holds `ch` names, as (sequence number, id) in sequence order, each once, into x.holds.
// The book names each hold once per Changes, in the order of its first change: holds made since
// the last checkpoint (from `unwritten_seq` on) in the order they were made, older ones in the
// order they finished. So each of the two runs is sorted as it comes, and they are merged rather
// than sorted (two million entries per checkpoint of a buy-now sale); sorted all the same if not.
void sorted_holds(const Changes& ch, uint64_t unwritten_seq, Scratch& x) {
  x.older.clear();
  x.fresh.clear();
  for (size_t i = 0; i < ch.holds.size(); ++i) {
    (ch.hold_seqs[i] < unwritten_seq ? x.older : x.fresh)
        .emplace_back(ch.hold_seqs[i], ch.holds[i]);
  }
  for (auto* run : {&x.older, &x.fresh}) {
    if (!std::is_sorted(run->begin(), run->end())) std::sort(run->begin(), run->end());
  }
  x.holds.resize(x.older.size() + x.fresh.size());
  std::merge(x.older.begin(), x.older.end(), x.fresh.begin(), x.fresh.end(), x.holds.begin());
  x.holds.erase(std::unique(x.holds.begin(), x.holds.end()), x.holds.end());
}

// Puts `row` (encoded into `value`) under `key`, or deletes `key` when there is no row.
template <class Sink, class Row>
void write_row(Sink& b, const std::string& key, const Row* row, std::string& value) {
  if (row != nullptr) {
    rec::encode(*row, value);
    b.put(key, value);
  } else {
    b.del(key);
  }
}

// Every row `ch` names, once, in its current state (deleted if gone), and the meta row, in key
// order within each family (a checkpoint's table files need it): codes c/, meta m/, SKUs s/,
// users u/ (the default family); holds h/, keyed by their sequence number, which rises with
// time, so that each checkpoint's new holds form a key range of their own.
//
// A hold of sequence number `unwritten_seq` or later has no row yet: if gone, nothing is written.
template <class Sink>
void write_rows(Sink& b, const Book& book, const Changes& ch, uint64_t lsn, uint64_t outbox_acked,
                uint64_t outbox_first, uint64_t unwritten_seq = UINT64_MAX) {
  Scratch& x = scratch;
  each_once(ch.codes, x.codes, [&](const std::pair<std::string, uint32_t>& c) {
    const auto row = book.code_row(c.first, c.second);
    write_row(b, rec::code_key(c.first, c.second), row ? &*row : nullptr, x.value);
  });
  rec::MetaRow meta = book.meta();
  meta.lsn = lsn;
  meta.outbox_acked = outbox_acked;
  meta.outbox_first = outbox_first;
  write_row(b, rec::meta_key(), &meta, x.value);
  book.named_sku_rows(ch, x.sku, [&](std::string_view sku, const rec::SkuRow* row) {
    write_row(b, rec::sku_key(sku), row, x.value);
  });
  each_once(ch.users, x.users, [&](const std::pair<std::string, std::string>& u) {
    const auto row = book.user_row(u.first, u.second);
    write_row(b, rec::user_key(u.first, u.second), row ? &*row : nullptr, x.value);
  });
  sorted_holds(ch, unwritten_seq, x);
  // In sequence order, which is neither the index's nor the pool's: while one row is encoded,
  // the CPU fetches the index slot of the hold 8 rows on, that hold 6 on, its lines 4 on and
  // the SKU of its first line 2 on (a row names its SKUs: over a million SKUs, a miss each).
  const size_t n = x.holds.size();
  for (size_t i = 0; i < n; ++i) {
    if (i + 8 < n) book.prefetch(x.holds[i + 8].second, {});
    if (i + 6 < n) book.prefetch_hold(x.holds[i + 6].second, Book::HoldPart::kHold);
    if (i + 4 < n) book.prefetch_hold(x.holds[i + 4].second, Book::HoldPart::kLines);
    if (i + 2 < n) book.prefetch_hold(x.holds[i + 2].second, Book::HoldPart::kSku);
    const auto [seq, id] = x.holds[i];
    const bool exists = book.hold_row(id, x.hold);
    if (exists || seq < unwritten_seq) {
      write_row(b, rec::hold_key(seq), exists ? &x.hold : nullptr, x.value);
    }
  }
}

}  // namespace

void build_batch(storage::Batch& b, const Book& book, const Changes& ch, uint64_t lsn,
                 uint64_t outbox_acked, uint64_t outbox_first) {
  b.lsn = lsn;
  write_rows(b, book, ch, lsn, outbox_acked, outbox_first);
}

namespace {

// Scans one table, decoding each value into Row and handing it to `take`, which may return
// false to end the scan early.
template <class Row, class Take>
Status load_table(storage::RowSource& store, char tag, size_t& count, Take&& take) {
  Status bad;
  const std::string prefix{tag, '/'};
  Status s = store.scan(
      prefix,
      [&](std::string_view k, std::string_view v) {
        Row row;
        if (Status d = rec::decode(v, row); !d.ok()) {
          bad = std::move(d).context("record " + std::string(1, tag) + "/... (key " +
                                     std::to_string(k.size()) + " bytes) is corrupt");
          return false;
        }
        ++count;
        if constexpr (std::is_same_v<decltype(take(row)), bool>) {
          return take(row);
        } else {
          take(row);
          return true;
        }
      },
      {}, /*bulk=*/true);
  if (!s.ok()) return s;
  return bad;
}

// The hold rows, the bulk of a checkpoint: read and decoded (RocksDB's scan, each record's
// checksum) on a thread of their own, in batches, while this thread puts the batch before into
// the book, one row ahead so that the slots a row lands in are fetched while the row before it
// is restored. A few batches at most wait between the two.
Status load_holds(storage::RowSource& store, Book& book, Recovered& out) {
  constexpr size_t kBatchRows = 2048;
  constexpr size_t kBatchesMax = 4;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<rec::HoldRow>> ready;
  bool done = false, stop = false;
  Status read;
  std::thread reader([&] {
    std::vector<rec::HoldRow> batch;
    const auto hand_over = [&] {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return ready.size() < kBatchesMax || stop; });
      if (stop) return false;
      ready.push_back(std::move(batch));
      batch = {};
      cv.notify_all();
      return true;
    };
    Status s = load_table<rec::HoldRow>(store, rec::kTagHold, out.holds, [&](rec::HoldRow& row) {
      if (batch.empty()) batch.reserve(kBatchRows);
      batch.push_back(std::move(row));
      return batch.size() < kBatchRows || hand_over();
    });
    if (s.ok() && !batch.empty()) hand_over();
    std::lock_guard lock(mu);
    read = std::move(s);
    done = true;
    cv.notify_all();
  });
  rec::HoldRow* pending = nullptr;
  std::vector<rec::HoldRow> current, previous;  // `pending` may point into the previous batch
  for (;;) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !ready.empty() || done; });
      if (ready.empty()) break;
      previous.swap(current);
      current = std::move(ready.front());
      ready.pop_front();
      cv.notify_all();
    }
    for (rec::HoldRow& row : current) {
      out.idem += row.hold.key.empty() ? 0 : 1;
      book.prefetch(row.hold.hold_id, row.hold.key);
      if (pending != nullptr) book.restore(std::move(*pending));
      pending = &row;
    }
  }
  if (pending != nullptr) book.restore(std::move(*pending));
  {
    std::lock_guard lock(mu);
    stop = true;
    cv.notify_all();
  }
  reader.join();
  return read;
}

}  // namespace

namespace {

// Reads one log group: its header and checksum, and, when `replay`, each entry replayed into
// `book`. Ok, or Corruption saying what is wrong.
Status read_group(std::string_view value, uint64_t lsn, Book& book, bool replay, Changes& ch,
                  LogGroupRef& ref, size_t& entries) {
  const auto corrupt = [lsn](const Status& s) {
    return s.context("log group at lsn " + std::to_string(lsn) + " is corrupt");
  };
  rec::GroupReader r;
  if (!r.open(value)) return corrupt(r.status());
  if (r.lsn() != lsn) {
    return Status::Corruption("log group stored under lsn " + std::to_string(lsn) + " says lsn " +
                              std::to_string(r.lsn()));
  }
  ref = {lsn, r.first_outbox_seq(), r.first_outbox_seq() + r.records(), r.base_ms(), r.count()};
  if (!replay) return Status::Ok();
  if (r.count() > 0 && r.first_outbox_seq() != book.meta().next_outbox_seq) {
    return Status::Corruption(
        "log group " + std::to_string(lsn) + " numbers its outbox records from " +
        std::to_string(r.first_outbox_seq()) + " but the state before it is at " +
        std::to_string(book.meta().next_outbox_seq));
  }
  // Two entries read ahead: the index slots of an entry's hold, key and SKU are fetched two
  // entries before it is replayed, its SKU (read through its slot) one before, so that the
  // cache misses overlap the replays before (a miss each per decision otherwise, a third of a
  // million-order replay; the SKU's two over a million SKUs). The three entries (replayed, next,
  // the one after) take turns in `window` by index: a Decision is never moved.
  std::array<rec::Decision, 3> window;
  const auto read = [&](rec::Decision& into) {
    if (!r.next(into)) return false;
    book.prefetch(into);
    return true;
  };
  bool have = read(window[0]), have_next = have && read(window[1]);
  uint32_t records = 0, index = 0;
  for (; have; ++index) {
    rec::Decision& d = window[index % 3];
    rec::Decision& next = window[(index + 1) % 3];
    const bool have_ahead = have_next && read(window[(index + 2) % 3]);
    if (have_next) book.prefetch_sku_of(next);
    if (Status s = book.replay(d, ch); !s.ok()) {
      return std::move(s).context("log group " + std::to_string(lsn) + ", entry " +
                                  std::to_string(index) +
                                  " does not follow from the state before it");
    }
    ++entries;
    records += d.makes_record() ? 1 : 0;
    have = have_next;
    have_next = have_ahead;
  }
  if (!r.status().ok()) return corrupt(r.status());
  if (records != r.records()) {
    return Status::Corruption("log group " + std::to_string(lsn) + " says " +
                              std::to_string(r.records()) +
                              " outbox records but its entries make " + std::to_string(records));
  }
  return Status::Ok();
}

}  // namespace

namespace {

// A state (the checkpoint in the store, or a snapshot): the meta row and the rows as of its lsn,
// into an empty `book`.
Status load_state(storage::RowSource& rows, Book& book, Recovered& out) {
  std::string value;
  bool found = false;
  if (Status s = rows.get(rec::meta_key(), value, found); !s.ok()) return s;
  rec::MetaRow meta;
  if (found) {
    if (Status s = rec::decode(value, meta); !s.ok()) {
      return std::move(s).context("meta record is corrupt");
    }
    book.restore(meta);
  }
  out.checkpoint_lsn = meta.lsn;
  auto plain = [&book](const auto& row) { book.restore(row); };
  Status s = load_table<rec::SkuRow>(rows, rec::kTagSku, out.skus, plain);
  if (s.ok()) s = load_table<rec::CodeRow>(rows, rec::kTagCode, out.codes, plain);
  if (!s.ok()) return s;
  book.stage_restore();  // what holds link to is in: each hold row goes into the book as read
  s = load_holds(rows, book, out);
  if (s.ok()) s = load_table<rec::UserRow>(rows, rec::kTagUser, out.users, plain);
  if (!s.ok()) return s;
  if (s = book.finish_restore(); !s.ok()) {
    return std::move(s).context("restored state is inconsistent");
  }
  return Status::Ok();
}

// `since`: the lsn after which the log's entries are counted (Recovered::logged_since).
// `upto`: groups after it are left out (recover's).
Status replay_log(storage::Store& store, Book& book, Recovered& out, Changes* changes,
                  uint64_t since, uint64_t upto);

}  // namespace

Status recover(storage::Store& store, Book& book, Recovered& out, Changes* changes, uint64_t upto) {
  const std::vector<uint64_t> snapshots = store.snapshots();
  Status s = store.damage_found_at_open().empty()
                 ? load_state(store, book, out)
                 : Status::Corruption(store.damage_found_at_open());
  // A store with snapshots had a checkpoint (each snapshot follows one): without its meta row,
  // its state was lost (a repair below cut short by a crash).
  if (s.ok() && out.checkpoint_lsn == 0 && !snapshots.empty()) {
    s = Status::Corruption("its meta row is missing");
  }
  if (s.ok()) {
    return replay_log(store, book, out, changes, snapshots.empty() ? 0 : snapshots[0], upto);
  }
  if (s.code() != Status::Code::kCorruption) return s;
  // The checkpoint is damaged: the newest snapshot that loads, with the longer log after it.
  const std::string damaged = "the checkpoint in the store is damaged (" + s.message() + ")";
  if (snapshots.empty()) return Status::Corruption(damaged + " and there is no snapshot");
  std::string why;
  for (uint64_t lsn : snapshots) {
    book.reset();
    out = Recovered{};
    if (changes != nullptr) changes->clear();
    Result<std::unique_ptr<storage::RowSource>> rows = store.open_snapshot(lsn);
    Status f = rows.ok() ? load_state(**rows, book, out) : rows.status();
    if (f.ok() && out.checkpoint_lsn != lsn) {
      f = Status::Corruption("its meta row says lsn " + std::to_string(out.checkpoint_lsn));
    }
    if (f.ok()) f = replay_log(store, book, out, changes, lsn, upto);
    if (f.ok()) {
      out.snapshot_lsn = lsn;
      out.damaged = damaged;
      return f;
    }
    why += "; the snapshot at lsn " + std::to_string(lsn) + " cannot be used: " + f.message();
  }
  return Status::Corruption(damaged + why);
}

namespace {

// The log after the state `book` holds (out.checkpoint_lsn): replayed, and indexed for the
// outbox; then the acknowledged mark is checked.
Status replay_log(storage::Store& store, Book& book, Recovered& out, Changes* changes,
                  uint64_t since, uint64_t upto) {
  const uint64_t from = out.checkpoint_lsn;
  // The log: every group after the checkpoint is replayed; those at or before it are kept only
  // for their outbox records. Groups are consecutive from the first retained one.
  Changes own;
  own.log = false;
  own.rows = false;
  Changes& ch = changes != nullptr ? *changes : own;
  uint64_t last = from, expect = 0, seen = 0;  // seen: the log's last group (0: none)
  Status bad;
  Status s = store.scan(
      std::string{rec::kTagLog, '/'},
      [&](std::string_view k, std::string_view v) {
        const uint64_t lsn = rec::log_key_lsn(k);
        if (lsn > upto && lsn != 0) return false;
        if (lsn == 0) {
          bad = Status::Corruption("a key of " + std::to_string(k.size()) +
                                   " bytes in the log is not a log key");
          return false;
        }
        if (expect == 0 && lsn > from + 1) {
          bad = Status::Refused("the log after the checkpoint at lsn " + std::to_string(from) +
                                " starts at lsn " + std::to_string(lsn) + ": groups " +
                                std::to_string(from + 1) + ".." + std::to_string(lsn - 1) +
                                " are missing");
          return false;
        }
        if (expect != 0 && lsn != expect) {
          bad = Status::Refused("log group " + std::to_string(expect) +
                                " is missing (the log goes on at lsn " + std::to_string(lsn) + ")");
          return false;
        }
        expect = lsn + 1;
        LogGroupRef ref;
        bad = read_group(v, lsn, book, lsn > from, ch, ref, out.replayed);
        if (!bad.ok()) return false;
        if (lsn > since) out.logged_since += ref.entries;
        ++out.log_groups;
        last = std::max(last, lsn);
        seen = lsn;
        if (ref.end_seq > ref.first_seq) out.outbox_groups.push_back(ref);
        return true;
      },
      {}, /*bulk=*/true);
  if (!s.ok()) return s;
  // Groups missing from the log (at its start, in the middle, at its end): RocksDB 7.8 can step
  // over a damaged block of a table file without an error (its merging iterator, with the
  // trims' range tombstones), so the tables' checksums are read to name the damage, if that
  // was it.
  const auto explained = [&store](Status gap) {
    if (Status v = store.verify_tables(); !v.ok()) return std::move(v).context(gap.message());
    return gap;
  };
  if (bad.code() == Status::Code::kRefused) return explained(std::move(bad));
  if (!bad.ok()) return bad;
  // Trims cut a prefix, so a log that keeps any group keeps every one up to the checkpoint's.
  if (seen != 0 && seen < from) {
    return explained(Status::Refused("the log ends at lsn " + std::to_string(seen) +
                                     ", before the checkpoint at lsn " + std::to_string(from) +
                                     ": groups " + std::to_string(seen + 1) + ".." +
                                     std::to_string(from) + " are missing"));
  }
  // Every group up to the acknowledged mark was answered: a store that ends before it lost
  // part of its log, which must never pass for a smaller store.
  if (last < store.acked_lsn()) {
    return explained(Status::Refused(
        "the store ends at lsn " + std::to_string(last) + " but lsn " +
        std::to_string(store.acked_lsn()) +
        " was acknowledged (ACKED): " + std::to_string(store.acked_lsn() - last) +
        " acknowledged groups are missing. The write-ahead log in wal/ was deleted, cut "
        "short or replaced by an older copy; restore the data dir from a backup (never "
        "delete files under wal/)"));
  }
  out.meta = book.meta();
  out.meta.lsn = last;
  out.meta.outbox_first =
      out.outbox_groups.empty() ? out.meta.next_outbox_seq : out.outbox_groups.front().first_seq;
  out.outbox = out.meta.next_outbox_seq - out.meta.outbox_first;
  return Status::Ok();
}

}  // namespace

namespace {
// Every row of `book` into `w`, as of `lsn`: a snapshot, or the state written anew after a
// fallback. The scratch sized for every hold is let go after it.
void write_whole_state(storage::CheckpointWriter& w, const Book& book, uint64_t lsn,
                       uint64_t outbox_acked, uint64_t outbox_first) {
  Changes all;
  book.name_all_rows(all);
  write_rows(w, book, all, lsn, outbox_acked, outbox_first);
  scratch = Scratch();  // a checkpoint's changes are a fraction of that
}
}  // namespace

Status rewrite_state(storage::Store& store, const Book& book, const Recovered& r) {
  if (Status s = store.drop_state(); !s.ok()) return s;
  std::unique_ptr<storage::CheckpointWriter> w = store.checkpoint_writer(r.meta.lsn);
  write_whole_state(*w, book, r.meta.lsn, r.meta.outbox_acked, r.meta.outbox_first);
  if (Status s = w->commit(); !s.ok()) return s.context("write the state anew");
  return store.state_repaired();
}

// ---- The checkpointer. ----

namespace {
int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Checkpointer::Checkpointer(storage::Store& store, CheckpointOptions options)
    : store_(store), options_(options), book_(options.limits) {
  changes_.log = false;
  changes_.records = false;
  thread_ = std::thread([this] { run(); });
}

Checkpointer::~Checkpointer() {
  if (thread_.joinable()) stop(false);
}

void Checkpointer::submit(uint64_t lsn, std::string& group) {
  {
    std::lock_guard lock(mu_);
    durable_ = lsn;
    // Past the cap the group is not kept: the checkpointer reads it back from the log (it is
    // durable there), so a checkpointer that lags behind a spike holds no more than this.
    if (queued_bytes_ + group.size() <= kQueueBytesMax) {
      queued_bytes_ += group.size();
      auto& [at, value] = queue_.push_slot();  // a slot keeps the string of a group before
      at = lsn;
      value.swap(group);
    }
  }
  cv_.notify_one();
}

// Replays the durable groups after lsn_ and before `upto` from the store (those not queued).
bool Checkpointer::catch_up(uint64_t upto) {
  if (broken_ || lsn_ + 1 >= upto) return !broken_;
  Status s = store_.scan(
      std::string{rec::kTagLog, '/'},
      [&](std::string_view k, std::string_view v) {
        const uint64_t lsn = rec::log_key_lsn(k);
        return lsn < upto && apply(lsn, v);
      },
      rec::log_key(lsn_ + 1), /*bulk=*/true);
  if (!s.ok() && !broken_) {
    broken_ = true;
    fail(std::move(s).context("checkpointer: cannot read the log back"));
  }
  if (!broken_ && lsn_ + 1 < upto) {
    broken_ = true;
    fail(Status::Refused("checkpointer: log groups " + std::to_string(lsn_ + 1) + ".." +
                         std::to_string(upto - 1) + " are not in the store"));
  }
  return !broken_;
}

void Checkpointer::stop(bool final) {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    final_ = final;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

size_t Checkpointer::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

Status Checkpointer::take_error() {
  std::lock_guard lock(mu_);
  return std::exchange(error_, Status::Ok());
}

void Checkpointer::fail(Status why) {
  std::lock_guard lock(mu_);
  if (error_.ok()) error_ = std::move(why);
}

bool Checkpointer::apply(uint64_t lsn, std::string_view group) {
  if (broken_ || lsn <= lsn_) return !broken_;  // recovery's scan already saw it
  LogGroupRef ref;
  size_t entries = 0;
  if (lsn != lsn_ + 1) {
    broken_ = true;
    fail(Status::Refused("checkpointer: group " + std::to_string(lsn) + " follows " +
                         std::to_string(lsn_)));
    return false;
  }
  if (Status s = read_group(group, lsn, book_, true, changes_, ref, entries); !s.ok()) {
    broken_ = true;
    fail(Status::Corruption("checkpointer: " + s.message() +
                            "; no more checkpoints until a restart (the log is kept)"));
    return false;
  }
  lsn_ = lsn;
  entries_since_ += entries;
  entries_since_snapshot_ += entries;
  if (ref.end_seq > ref.first_seq) groups_.push_back(ref);
  return true;
}

// Whether the oldest retained group with records is covered by the book, acknowledged and past
// its retention.
bool Checkpointer::trimmable(int64_t now) const {
  if (groups_.empty()) return false;
  const LogGroupRef& g = groups_.front();
  // now - at_ms, not at_ms + retention: a retention of "forever" (INT64_MAX) must not wrap.
  return g.lsn <= lsn_ && g.end_seq - 1 <= book_.meta().outbox_acked &&
         now - g.at_ms >= options_.outbox_retention_ms;
}

void Checkpointer::checkpoint(int64_t now) {
  const auto start = std::chrono::steady_clock::now();
  const rec::MetaRow meta = book_.meta();
  while (trimmable(now)) groups_.pop_front();
  uint64_t below = groups_.empty() ? lsn_ + 1 : std::min(groups_.front().lsn, lsn_ + 1);
  const uint64_t first = groups_.empty() ? meta.next_outbox_seq : groups_.front().first_seq;
  std::unique_ptr<storage::CheckpointWriter> w = store_.checkpoint_writer(lsn_);
  write_rows(*w, book_, changes_, lsn_, meta.outbox_acked, first, unwritten_seq_);
  if (Status s = w->commit(); !s.ok()) {
    fail(Status::Io(s.message() + " (retried in a second; the log is kept meanwhile)"));
    retry_at_ = now + 1000;  // a full disk is not hammered once per group
    return;
  }
  last_bytes_ = w->bytes();
  if (options_.snapshot_every > 0) {
    if (entries_since_snapshot_ >= options_.snapshot_every) snapshot(meta.outbox_acked, first);
    // The log is kept back to the snapshot, for a recovery that falls back on it.
    if (snapshot_lsn_ != 0) below = std::min(below, snapshot_lsn_ + 1);
  } else if (snapshot_lsn_ != 0) {
    // Snapshots were turned off: the log is no longer kept back to the ones written before,
    // so they could not be used; they go.
    store_.remove_snapshots(UINT64_MAX);
    snapshot_lsn_ = 0;
    last_snapshot_lsn_ = 0;
  }
  // The trim after the checkpoint is durable; one lost in a crash is done again.
  if (below > 1) {
    if (Status s = store_.trim_log(below); !s.ok()) fail(std::move(s));
  }
  changes_.clear();
  entries_since_ = 0;
  unwritten_seq_ = meta.next_hold_id;  // every hold before it is in this checkpoint or gone
  checkpoint_lsn_ = lsn_;
  trimmed_below_ = below;
  outbox_first_ = first;
  ++checkpoints_;
  last_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::steady_clock::now() - start)
                 .count();
}

// The whole state as of lsn_ (just written as a checkpoint too), as a snapshot of its own. A
// failure keeps the older one (and the log back to it) and is retried at the next checkpoint.
void Checkpointer::snapshot(uint64_t outbox_acked, uint64_t outbox_first) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<storage::CheckpointWriter> w = store_.snapshot_writer(lsn_);
  write_whole_state(*w, book_, lsn_, outbox_acked, outbox_first);
  if (Status s = w->commit(); !s.ok()) {
    fail(Status::Io(s.message() + " (retried at the next checkpoint; the older snapshot and the "
                                  "log back to it are kept)"));
    return;
  }
  snapshot_lsn_ = lsn_;
  entries_since_snapshot_ = 0;
  last_snapshot_lsn_ = lsn_;
  ++snapshots_;
  last_snapshot_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
}

void Checkpointer::run() {
  // The loop comes first: on a machine with few cores the checkpointer takes what is left, lags
  // during a spike (reading back from the log what it did not keep) and catches up after it.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNice);
  (void)pthread_setname_np(pthread_self(), "stockd-ckpt");
  Recovered r;
  if (Status s = recover(store_, book_, r, &changes_); !s.ok()) {
    broken_ = true;
    fail(std::move(s).context("checkpointer cannot rebuild its book"));
  }
  lsn_ = r.meta.lsn;
  entries_since_ = r.replayed;
  const std::vector<uint64_t> snapshots = store_.snapshots();
  snapshot_lsn_ = snapshots.empty() ? 0 : snapshots.front();
  last_snapshot_lsn_ = snapshot_lsn_;
  // Without a snapshot, one comes with the first checkpoint; so it does when the newest is
  // damaged (read whole here, off the loop, so that the damage is found before it is needed).
  entries_since_snapshot_ = snapshot_lsn_ == 0 ? options_.snapshot_every : r.logged_since;
  if (snapshot_lsn_ != 0 && options_.snapshot_every > 0 && !broken_) {
    if (Status s = store_.verify_snapshot(snapshot_lsn_); !s.ok()) {
      fail(
          std::move(s).context("the newest snapshot is damaged (a new one comes with the next "
                               "checkpoint; until then a damaged checkpoint cannot be recovered)"));
      entries_since_snapshot_ = options_.snapshot_every;
    }
  }
  checkpoint_lsn_ = r.checkpoint_lsn;
  outbox_first_ = r.meta.outbox_first;
  groups_.assign(r.outbox_groups.begin(), r.outbox_groups.end());
  int64_t last = now_ms();
  constexpr size_t kSlotsKept = 64;
  constexpr size_t kGroupBytesKept = 256 << 10;
  Ring<std::pair<uint64_t, std::string>> work;  // swapped with queue_: its strings are reused
  for (;;) {
    bool stopping = false, final = false;
    uint64_t durable = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(options_.every_ms, 1000)),
                   [this] { return stop_ || !queue_.empty(); });
      work.swap(queue_);
      queued_bytes_ = 0;
      durable = durable_;
      stopping = stop_;
      final = final_;
    }
    for (auto& [lsn, group] : work) {
      if (!catch_up(lsn) || !apply(lsn, group)) break;
      if (entries_since_ >= options_.every_entries && now_ms() >= retry_at_) {
        checkpoint(now_ms());
        last = now_ms();
      }
    }
    // The groups' strings stay in their slots for the loop's next groups (swapped in submit),
    // but not a spike's: its large groups, or its many (up to kQueueBytesMax queued).
    for (auto& [at, group] : work) {
      if (group.capacity() > kGroupBytesKept) std::string().swap(group);
    }
    if (work.capacity() > kSlotsKept) {
      work = {};
    } else {
      work.clear();
    }
    catch_up(durable + 1);
    if (broken_) {
      if (stopping) return;
      continue;
    }
    const int64_t now = now_ms();
    if (stopping) {
      if (final && (entries_since_ > 0 || checkpoint_lsn_ < lsn_)) checkpoint(now);
      return;
    }
    // On time; or, at most once a second, as soon as log groups could be trimmed (the sidecar
    // acknowledged records past their retention): a small checkpoint then frees the log.
    const bool due = entries_since_ > 0 && now - last >= options_.every_ms;
    if (now >= retry_at_ && (due || (now - last >= 1000 && trimmable(now)))) {
      checkpoint(now);
      last = now;
    }
  }
}

}  // namespace stockd
