// The book: stockd's state machine. SKUs, holds, per-user counts, code pools, idempotency keys.
//
// Pure and deterministic: no I/O, no clock, no threads, no logging. Every operation takes the
// current time (`now`, ms since epoch) and appends what it changed to a Changes, which the
// loop turns into one store batch per group. Recovery restores rows through restore_*() and
// then calls finish_restore(). Only the loop thread may touch a Book (it is not thread-safe).
//
// Promises kept here, checked by check_invariants():
//   for every SKU: available + held + sold == total; nothing negative;
//   per-user units (held + sold) never exceed the SKU's per-user limit when one is set;
//   every code of a pool is in exactly one place: free, or owned by exactly one hold;
//   a reused idempotency key returns the first answer; a different request under it conflicts.
// An idempotency key is part of the hold it created and is remembered as long as that hold:
// while it is live and for `finished_hold_retention_ms` after it finished.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "stockd/decisions.h"
#include "stockd/hold_ids.h"
#include "stockd/protocol.h"
#include "stockd/records.h"
#include "stockd/status.h"

namespace stockd {

// What operations changed, in order: the decisions as log entries (stockd/decisions.h), and the
// rows they touched. The live loop logs and skips the rows (`rows` false): a group is its log.
// The checkpointer replays the log into its own book and keeps the rows (`log` false), to write
// them as the next checkpoint. Row entries may repeat; build_batch() coalesces them.
struct Changes {
  bool log = true;      // append each decision to `entries`
  bool rows = true;     // name the rows each decision changed
  bool records = true;  // with rows: build each outbox record (tests; the log carries them)
  std::string entries;  // this group's log entries (valid while entry_count > 0)
  int64_t entry_base_ms = 0;
  uint32_t entry_count = 0;
  std::vector<std::string> skus;    // SKU rows to rewrite
  std::vector<uint64_t> holds;      // hold rows to put (if present) or delete
  std::vector<uint64_t> hold_seqs;  // their sequence numbers (the rows' keys), in step with holds
  std::vector<std::pair<std::string, std::string>> users;  // (sku, user) count rows
  std::vector<std::pair<std::string, uint32_t>> codes;     // (sku, index) code rows
  std::vector<proto::OutboxRecord> outbox;                 // new outbox records, seq ascending
  bool meta = false;                                       // next ids changed
  bool empty() const {
    return entry_count == 0 && skus.empty() && holds.empty() && users.empty() && codes.empty() &&
           outbox.empty() && !meta;
  }
  rec::LogWriter writer() { return {entries, entry_base_ms, entry_count}; }
  void hold_changed(uint64_t id, uint64_t seq) {
    holds.push_back(id);
    hold_seqs.push_back(seq);
  }
  // Whether a SKU or hold whose mark is `mark` is named here for the first time since the last
  // clear(); marks it named. The book keeps a mark in each SKU and hold, so that the checkpointer,
  // whose Changes span two million decisions, gets each row named once (not once per order, to be
  // sorted and coalesced). Stamps are unique per process, so a mark never vouches for another
  // Changes; a copy gets a stamp of its own (it may then name a row twice, never miss one).
  bool named(uint64_t mark) const { return mark == stamp_.value; }
  bool first_naming(uint64_t& mark) const {
    if (mark == stamp_.value) return false;
    mark = stamp_.value;
    return true;
  }
  // Names the row of hold `id` (key `seq`), whose mark is `mark`, unless it was named already.
  void name_hold(uint64_t& mark, uint64_t id, uint64_t seq) {
    if (rows && first_naming(mark)) hold_changed(id, seq);
  }
  void clear() {  // keeps the vectors' capacity, and the records' buffers, for the next group
    stamp_ = Stamp();
    entry_count = 0;
    entries.clear();
    skus.clear();
    holds.clear();
    hold_seqs.clear();
    users.clear();
    codes.clear();
    for (proto::OutboxRecord& r : outbox) spare_outbox_.push_back(std::move(r));
    outbox.clear();
    meta = false;
  }
  // A new record at the end of `outbox`: a recycled one (fields unspecified, their strings and
  // lists keep their capacity) when clear() left any, so a steady stream allocates nothing.
  proto::OutboxRecord& add_outbox() {
    if (spare_outbox_.empty()) return outbox.emplace_back();
    outbox.push_back(std::move(spare_outbox_.back()));
    spare_outbox_.pop_back();
    return outbox.back();
  }

 private:
  struct Stamp {
    static uint64_t next() {
      static std::atomic<uint64_t> last{0};
      return last.fetch_add(1, std::memory_order_relaxed) + 1;
    }
    uint64_t value = next();
    Stamp() = default;
    Stamp(const Stamp&) : value(next()) {}
    Stamp& operator=(const Stamp&) {
      value = next();
      return *this;
    }
  };
  Stamp stamp_;
  std::vector<proto::OutboxRecord> spare_outbox_;
};

struct BookLimits {
  size_t expire_per_call_max = 1024;  // holds one expire() may release
  // Finished holds, and the idempotency keys they carry, are kept this long after they finish.
  int64_t finished_hold_retention_ms = 24 * 3600 * 1000LL;
  size_t codes_per_sku_max = 10'000'000;
  // Index space reserved up front for this many holds and keys (~40 bytes each): a growing map
  // rehashes every entry at once (a pause of tens of ms at a million), which a sale should not
  // pay mid-spike.
  size_t holds_expected = 0;
  // What buyers can make the book keep. A RESERVE past a live cap is refused (the user's:
  // TOO_MANY_HOLDS; the server's: BUSY); past
  // finished_holds_max the oldest finished holds (and their keys) are forgotten first.
  size_t user_live_holds_max = 100;
  size_t live_holds_max = 10'000'000;
  size_t finished_holds_max = 1'000'000;
};

struct BookCounters {  // monotonic since start (not persisted)
  uint64_t reserves_ok = 0;
  uint64_t sold_out = 0;
  uint64_t limit_exceeded = 0;
  uint64_t commits = 0;
  uint64_t releases = 0;
  uint64_t expiries = 0;
  uint64_t claims_ok = 0;
  uint64_t idem_hits = 0;
};

// What an operation answers: its status and, for a refusal with an error status (BAD_REQUEST,
// BUSY), why, in words for the error answer. Compares and converts as its status.
struct [[nodiscard]] Verdict {
  proto::Status status = proto::Status::kOk;
  std::string why;
  Verdict(proto::Status s = proto::Status::kOk, std::string w = {})  // NOLINT: implicit on purpose
      : status(s), why(std::move(w)) {}
  operator proto::Status() const { return status; }  // NOLINT: implicit on purpose
  bool operator==(proto::Status s) const { return status == s; }
};

class Book {
 public:
  explicit Book(BookLimits limits = {});
  ~Book();
  Book(const Book&) = delete;
  Book& operator=(const Book&) = delete;

  // ---- Buyer operations. Each first expires holds due at `now` (bounded). ----
  Verdict reserve(const proto::ReserveReq& req, int64_t now, proto::ReserveResp& out, Changes& ch);
  // COMMIT, RELEASE and HOLD_GET act for `user`: a hold of another user is answered as an
  // unknown one (NOT_FOUND) and left alone. An empty `user` reaches any hold (admin, outbox).
  Verdict commit(uint64_t hold_id, int64_t now, proto::HoldView& out, Changes& ch,
                 std::string_view user = {});
  Verdict release(uint64_t hold_id, int64_t now, proto::HoldView& out, Changes& ch,
                  std::string_view user = {});
  // Buy-now of one code from a code-pool SKU (a reserve of qty 1 with ttl 0).
  Verdict claim(const proto::ClaimReq& req, int64_t now, proto::ClaimResp& out, Changes& ch);

  // ---- Queries (no changes). ----
  proto::Status hold_get(uint64_t hold_id, proto::HoldView& out, std::string_view user = {}) const;
  proto::Status sku_get(std::string_view sku, proto::SkuView& out) const;
  // SKUs after req.after, at most req.limit (capped at kSkuListMax) and at most `bytes_max`
  // encoded bytes of SkuViews (at least one if any): a page always fits the caller's frame.
  void sku_list(const proto::SkuListReq& req, proto::SkuListResp& out,
                size_t bytes_max = SIZE_MAX) const;
  void stats(std::vector<proto::Stat>& out) const;  // appends name/value pairs

  // ---- Admin operations. ----
  Verdict sku_set(const proto::SkuSetReq& req, int64_t now, proto::SkuView& out, Changes& ch);
  Verdict restock(const proto::RestockReq& req, int64_t now, proto::SkuView& out, Changes& ch);
  Verdict codes_load(const proto::CodesLoadReq& req, int64_t now, proto::CodesLoadResp& out,
                     Changes& ch);
  Verdict sale_close(std::string_view sku, int64_t now, proto::SkuView& out, Changes& ch);

  // ---- Time. ----
  // Expires up to limits.expire_per_call_max holds whose deadline <= now, and forgets finished
  // holds (with their idempotency keys) past their retention. Returns holds expired.
  size_t expire(int64_t now, Changes& ch);
  // Earliest deadline of a live hold, or INT64_MAX if none.
  int64_t next_deadline() const;

  // ---- Rows, for the store (read on the loop thread while building a batch). ----
  std::optional<rec::SkuRow> sku_row(std::string_view sku) const;
  std::optional<rec::HoldRow> hold_row(uint64_t id) const;
  // The same into a row the caller keeps (its strings and vectors are reused: no allocation once
  // they are big enough); false, `out` unspecified, if there is no such row.
  bool sku_row(std::string_view sku, rec::SkuRow& out) const;
  // The SKUs `ch` named, each once, in key order (a checkpoint's table file needs it):
  // fn(id, row) with the row filled into `row`, or nullptr if there is no such SKU. When `ch`
  // names most SKUs (a sale spread over a million, between two checkpoints), the book walks its
  // SKUs in name order and takes those `ch` marked, instead of sorting the names and looking
  // each up (a cache miss each).
  void named_sku_rows(const Changes& ch, rec::SkuRow& row,
                      const std::function<void(std::string_view, const rec::SkuRow*)>& fn) const;
  bool hold_row(uint64_t id, rec::HoldRow& out) const;
  // The first answer given under an idempotency key, if the key is remembered.
  std::optional<proto::ReserveResp> idem_answer(std::string_view key) const;
  std::optional<rec::UserRow> user_row(std::string_view sku, std::string_view user) const;
  std::optional<rec::CodeRow> code_row(std::string_view sku, uint32_t index) const;
  rec::MetaRow meta() const;  // lsn is the store's business and left 0
  // Names every row of the book in `ch` (a snapshot's rows: the whole state), without marking
  // any: the marks stay those of the Changes that set them.
  void name_all_rows(Changes& ch) const;

  // Hold ids are hold_id_of(sequence number, key) (stockd/hold_ids.h); the key is in meta().
  // It may be set only while no hold was ever made (false otherwise): a new store takes a random
  // one before its first hold. Restored from the meta row.
  bool set_hold_id_key(const HoldIdKey& key, int64_t now, Changes& ch);
  HoldIdKey hold_id_key() const;

  // The sidecar acknowledged outbox records up to `upto` (kept in the meta row; logged).
  void outbox_ack(uint64_t upto, int64_t now, Changes& ch);

  // ---- Replay: one logged decision made again through the same code as a live request, with
  // its logged time, sweeps and admission caps off (expiries and forgetting are entries of their
  // own). Ok, or Corruption: the entry does not follow from the book's state (a damaged or
  // foreign log).
  Status replay(const rec::Decision& d, Changes& ch);
  // Hints, no effect on state: start fetching what replaying `d`, or restoring a hold row with
  // this id and key, or a request with this idempotency key, will touch (the hold's index slot,
  // the key's). Recovery calls them one entry or row ahead, the server one frame ahead, so that
  // the cache misses overlap the work before.
  void prefetch(const rec::Decision& d) const;
  void prefetch_sku_of(const rec::Decision& d) const;  // then its SKU (reading the slot fetched)
  void prefetch(uint64_t hold_id, std::string_view key) const;
  void prefetch_key(std::string_view key) const;
  // A hold in steps, some work apart (each reads what the one before fetched): the hold itself
  // (its index slot is read now), then its lines, then its first line's SKU.
  enum class HoldPart { kHold, kLines, kSku };
  void prefetch_hold(uint64_t hold_id, HoldPart part = HoldPart::kHold) const;
  // A SKU in two steps, some work apart: its index slot, then the SKU (reading that slot).
  void prefetch_sku(std::string_view sku) const;
  void prefetch_sku_itself(std::string_view sku) const;

  // ---- Recovery: restore rows in any order, then finish_restore() once. ----
  void reset();  // empty again, with the same limits (a recovery that starts over)
  void restore(const rec::SkuRow& r);
  void restore(const rec::HoldRow& r);
  void restore(rec::HoldRow&& r);
  void restore(const rec::UserRow& r);
  void restore(const rec::CodeRow& r);
  void restore(const rec::MetaRow& r);
  // Optional, once the meta row, every SKU row and every code row are restored: applies them,
  // and hold rows restored after it go into the book as they come instead of being collected
  // (a million holds then cost no second copy). A problem found is returned by finish_restore().
  void stage_restore();
  // Rebuilds indexes; returns ok or what is inconsistent in the restored rows (Corruption; Refused
  // for rows restored out of order).
  Status finish_restore();

  // Ok when every invariant holds, else Corruption describing the first violation found.
  Status check_invariants() const;

  const BookCounters& counters() const;
  size_t sku_count() const;
  size_t live_holds() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Validation shared by the book and the server edge: ok, or Invalid saying why not.
Status validate(const proto::ReserveReq& req);

}  // namespace stockd
