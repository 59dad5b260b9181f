// Private to the stockd_book library: the state behind Book and the indexes that keep every
// operation O(lines + codes) instead of O(book).
//
// Ownership: Impl::skus and Impl::codes are node-based maps and Impl::holds keeps its holds in a
// pool (hold_table.h), so pointers to their keys and values stay valid until that entry is
// erased. SKUs and codes are never erased; a hold is erased only when its retention ends (and
// then nothing points at it: it is not HELD), and its storage is reused by a later hold.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hold_table.h"
#include "key_index.h"
#include "stockd/book.h"
#include "stockd/check.h"
#include "stockd/keyed_hash.h"
#include "stockd/prefetch.h"
#include "stockd/ring.h"

namespace stockd::book_detail {

using proto::HoldState;
using proto::Status;

// A SKU's total stays within int64 so that restock deltas never overflow.
inline constexpr uint64_t kSkuUnitsMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
inline constexpr size_t kNoPos = std::numeric_limits<size_t>::max();
inline constexpr uint16_t kNoLine = 0xFFFF;

// Heterogeneous: maps keyed by std::string are searched with a string_view, no copy. Not
// noexcept on purpose: libstdc++ then stores each node's hash, so walking a bucket and erasing
// compare stored hashes instead of rehashing keys (2-4x faster on big maps). Keyed (the strings
// are the peers', keyed_hash.h).
struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return keyed_hash(s); }
};
template <class V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

struct CodeSlot {
  const std::string* code = nullptr;  // the key of Impl::codes
  uint64_t owner = 0;                 // hold id holding or having bought it; 0 = free
};

struct Sku {
  std::string_view id;  // the key of Impl::skus
  uint64_t total = 0;
  uint64_t available = 0;
  uint64_t held = 0;
  uint64_t sold = 0;
  uint32_t limit = 0;  // per user; 0 = none
  int64_t opens_at = 0;
  int64_t closes_at = 0;
  bool closed = false;
  bool pool = false;
  std::vector<CodeSlot> codes;    // by index, dense from 0
  std::vector<uint32_t> free;     // min-heap (std::greater) of free indexes: lowest goes first
  StrMap<uint64_t> users;         // units held or bought per user, kept only while limit != 0
  mutable uint64_t named_in = 0;  // Changes::first_naming
};

// Asks the CPU to fetch a SKU and its id: the key of the node that holds it, just before it
// (Impl::skus).
inline void prefetch_sku_node(const Sku* s) {
  stockd::prefetch(reinterpret_cast<const char*>(s) - sizeof(std::string));
  stockd::prefetch(s);
}

struct HoldLine {
  Sku* sku = nullptr;
  uint32_t qty = 0;
};
struct HoldCode {
  Sku* sku = nullptr;
  uint32_t index = 0;
};

struct Hold {
  uint64_t id = 0;
  uint64_t seq = 0;  // its sequence number: id == hold_id_of(seq, key)
  HoldState state = HoldState::kNone;
  std::string user;
  std::string key;               // idempotency key ("" = none): indexed by Impl::idem
  uint64_t fingerprint = 0;      // with a key: the request's, to tell a retry from a conflict
  uint64_t first_available = 0;  // with a key: `available` of the first answer
  int64_t created_at = 0;
  int64_t expires_at = 0;   // deadline while held; 0 for buy-now
  int64_t finished_at = 0;  // 0 while held
  std::vector<HoldLine> lines;
  std::vector<HoldCode> codes;  // kept after release/expiry, for the view and the outbox
  size_t heap_pos = kNoPos;     // index in Impl::deadlines while HELD
  uint64_t named_in = 0;        // Changes::first_naming
  // Every field back to its default, the strings' and lists' capacity kept (HoldTable reuse).
  void reset() {
    id = seq = 0;
    state = HoldState::kNone;
    user.clear();
    key.clear();
    fingerprint = first_available = 0;
    created_at = expires_at = finished_at = 0;
    lines.clear();
    codes.clear();
    heap_pos = kNoPos;
    named_in = 0;
  }
};
using HoldTable = HoldTableOf<Hold>;

// Whether a caller acting for `user` may see and settle `h`: empty = any user (admin, outbox).
// The log entry about to be written (Changes::log), reset for `op` at `at_ms`: one per thread (a
// book belongs to one thread), so its lists keep their capacity from one decision to the next.
inline rec::Decision& new_entry(rec::Op op, int64_t at_ms) {
  thread_local rec::Decision d;
  d.op = op;
  d.at_ms = at_ms;
  d.lines.clear();
  d.codes.clear();
  d.pool.clear();
  return d;
}

inline bool owned_by(const Hold& h, std::string_view user) {
  return user.empty() || h.user == user;
}

inline std::string_view index_key(const Sku& s) { return s.id; }
inline std::string_view index_key(const Hold& h) { return h.key; }
// What an idempotency key is indexed under (0 for no key); made once per request.
inline uint64_t key_hash(std::string_view key) {
  return key.empty() ? 0 : KeyIndex<Hold>::hash(key);
}

struct CodeLoc {
  Sku* sku = nullptr;
  uint32_t index = 0;
};

struct Deadline {  // one entry of the indexed min-heap of live holds, ordered by (at, id)
  int64_t at = 0;
  uint64_t id = 0;
  Hold* hold = nullptr;
};

// One entry of the retention queue: a finished hold, oldest first. Past --finished-holds-max a
// sale forgets one per request, and that hold, its index slot and its key's slot are memory
// nobody touched since it finished (tens of MB of holds): the entry carries what forgetting
// reads, so that the entries a few places behind the front can be fetched ahead (prefetch).
struct Finished {
  int64_t at = 0;  // finished_at (or a later time, to keep the queue sorted)
  uint64_t id = 0;
  Hold* hold = nullptr;   // valid while hold->id == id: the pool keeps storage, ids never repeat
  uint64_t key_hash = 0;  // KeyIndex::hash(hold->key), if it has a key
};

struct Want {  // one checked line of a reservation
  Sku* sku = nullptr;
  uint32_t qty = 0;
};

struct Restoring {  // rows handed to restore(), applied by stage_restore() / finish_restore()
  std::vector<rec::SkuRow> skus;
  std::vector<rec::HoldRow> holds;  // until staged; then each is applied as it comes
  std::vector<rec::UserRow> users;
  std::vector<rec::CodeRow> codes;
  std::optional<rec::MetaRow> meta;
  bool staged = false;             // meta, SKUs and codes applied
  stockd::Status status;           // the first problem found once staged
  std::vector<Finished> finished;  // the restored finished holds
};

// SKU ids never contain a NUL byte: stored keys separate the SKU from a user or code index with
// one (records.h), so "a\0b"+"c" and "a"+"b\0c" must not both be possible.
inline bool sku_id_ok(std::string_view s) {
  return !s.empty() && s.size() <= proto::kSkuBytesMax && s.find('\0') == std::string_view::npos;
}
inline bool user_ok(std::string_view s) { return !s.empty() && s.size() <= proto::kUserBytesMax; }
// Refusals quote the limits from their constants, never as literals that could drift.
inline std::string sku_rule() {
  return "sku must be 1.." + std::to_string(proto::kSkuBytesMax) + " bytes without NUL";
}
inline std::string size_rule(const char* what, size_t max, bool may_be_empty = false) {
  return std::string(what) + (may_be_empty ? " must be at most " : " must be 1..") +
         std::to_string(max) + " bytes";
}
inline bool code_ok(std::string_view s) { return !s.empty() && s.size() <= proto::kCodeBytesMax; }
// True once `ret` ms have passed since `t` (now - t >= ret), without overflow.
inline bool retention_over(int64_t t, int64_t ret, int64_t now) {
  if (now < t) return false;
  const uint64_t age = static_cast<uint64_t>(now) - static_cast<uint64_t>(t);
  return ret <= 0 || age >= static_cast<uint64_t>(ret);
}

}  // namespace stockd::book_detail

namespace stockd {

struct Book::Impl {
  // A refusal with its reason, for the error answer.
  static Verdict refuse(std::string why, proto::Status st = proto::Status::kBadRequest) {
    return {st, std::move(why)};
  }

  using Sku = book_detail::Sku;
  using Hold = book_detail::Hold;
  using HoldState = proto::HoldState;

  explicit Impl(BookLimits l) : limits(l) {
    holds.reserve(l.holds_expected);
    idem.reserve(l.holds_expected);
    sold_fifo.reserve(std::min(l.holds_expected, l.finished_holds_max));
    unsold_fifo.reserve(std::min(l.holds_expected, l.finished_holds_max));
  }

  BookLimits limits;
  book_detail::StrMap<Sku> skus;         // owns the SKUs (nodes never move)
  book_detail::KeyIndex<Sku> sku_index;  // the lookup: one slot read per SKU
  std::set<std::string_view> sku_order;  // views of the keys of `skus`, for sku_list
  // The SKUs in name order, for named_sku_rows(): rebuilt when SKUs were added since (SKUs are
  // never removed), with the SKUs it picks.
  mutable std::vector<const Sku*> skus_by_name, skus_picked;
  book_detail::HoldTable holds;                  // live and retained finished holds
  std::vector<book_detail::Deadline> deadlines;  // indexed min-heap of HELD holds
  book_detail::StrMap<uint32_t> live_per_user;   // HELD holds per user (users with any)
  // Sums over every SKU, kept as units move so that STATS costs O(1), not a walk of the book.
  struct Units {
    uint64_t total = 0, available = 0, held = 0, sold = 0;
    bool operator==(const Units&) const = default;
  } units;
  book_detail::StrMap<book_detail::CodeLoc> codes;  // every code of every pool
  // Idempotency keys: each views the key of the hold it created, and goes with that hold (the
  // first answer is rebuilt from the hold, see first_answer()).
  book_detail::KeyIndex<Hold> idem;
  // Retention queues in time order, oldest first: committed holds, and the others (released,
  // expired). Past limits.finished_holds_max the unsold go first, so that holding and releasing
  // cannot push out the keys of orders (forget_finished).
  Ring<book_detail::Finished> sold_fifo;
  Ring<book_detail::Finished> unsold_fifo;
  Ring<book_detail::Finished>& fifo_of(const Hold& h) {
    return h.state == HoldState::kCommitted ? sold_fifo : unsold_fifo;
  }
  size_t finished_count() const { return sold_fifo.size() + unsold_fifo.size(); }
  // How far behind the front forget_finished() fetches: a request or two of work hides a miss.
  static constexpr size_t kForgetAhead = 4;
  void prefetch_forget(const Ring<book_detail::Finished>& fifo, size_t i) const {
    if (i >= fifo.size()) return;
    const book_detail::Finished& e = fifo[i];
    stockd::prefetch(e.hold);
    stockd::prefetch(reinterpret_cast<const char*>(e.hold) + 64);
    holds.prefetch(e.id);
    if (e.key_hash != 0) idem.prefetch_hash(e.key_hash);
  }
  uint64_t next_hold_seq = 1;  // the next hold's sequence number; its id is hold_id_of(seq)
  HoldIdKey id_key;            // all zero: ids are the sequence numbers
  struct {
    uint64_t seq = 0, id = 0;  // hold_id_of(seq, id_key), made one hold ahead (seq 0: none)
  } ahead;
  // Whether `id` was ever handed out (live, finished or forgotten).
  bool issued(uint64_t id) const {
    const uint64_t seq = hold_seq_of(id, id_key);
    return seq != 0 && seq < next_hold_seq;
  }
  uint64_t next_outbox_seq = 1;
  uint64_t outbox_acked = 0;  // store-owned; echoed from restore() by meta()
  uint64_t outbox_first = 1;  // store-owned; echoed from restore() by meta()
  BookCounters counters;
  std::unique_ptr<book_detail::Restoring> restoring;
  // While replaying the log (Book::replay): no sweeps (expiries and forgetting are entries of
  // their own) and no admission caps (the entry was admitted when it was decided).
  bool replaying = false;

  Sku* find_sku(std::string_view id);
  const Sku* find_sku(std::string_view id) const;
  Sku& add_sku(std::string_view id);

  // book_time.cc: deadlines, expiry, finishing holds, retention.
  size_t sweep(int64_t now, Changes& ch);
  void heap_push(Hold& h);
  void heap_erase(Hold& h);
  void sift_up(size_t pos);
  void sift_down(size_t pos);
  void place(size_t pos, const book_detail::Deadline& d);
  void end_hold(Hold& h, HoldState to, int64_t at, Changes& ch);  // release or expire
  void commit_hold(Hold& h, int64_t now, Changes& ch);
  // COMMIT (commit = true) or RELEASE of a hold: both expire a hold past its deadline first.
  proto::Status settle(uint64_t hold_id, std::string_view user, int64_t now, bool commit,
                       proto::HoldView& out, Changes& ch);
  void finish(Hold& h, HoldState to, int64_t at, uint64_t key_hash);  // key_hash(h.key)
  void emit(proto::OutboxKind kind, const Hold& h, int64_t at, Changes& ch);
  void forget_finished(int64_t now, Changes& ch);

  // book.cc: buyer operations.
  proto::Status replay(std::string_view key, uint64_t key_hash, std::string_view user,
                       uint64_t fingerprint, proto::ReserveResp& out, bool& found);
  proto::Status check_line(const Sku* s, std::string_view user, uint32_t qty, int64_t now,
                           uint64_t& available);
  proto::Status live_cap(std::string_view user, std::string& why) const;  // kOk: not capped
  void apply_reserve(std::string_view user, std::string_view key, uint64_t key_hash,
                     uint32_t ttl_ms, std::span<const book_detail::Want> wants,
                     uint64_t fingerprint, int64_t now, proto::ReserveResp& out, Changes& ch,
                     bool claim = false);
  // Log entries (stockd/decisions.h) of the decisions that end or forget a hold.
  void log_hold_end(rec::Op op, const Hold& h, int64_t at, Changes& ch) const;
  // Replay helpers (book_replay.cc).
  stockd::Status expire_logged(uint64_t hold_id, int64_t at, Changes& ch);
  stockd::Status forget_logged(uint64_t hold_id, Changes& ch);
  void forget(const book_detail::Finished& e, int64_t now, Changes& ch);
  void take_codes(Sku& s, uint32_t qty, Hold& h, Changes& ch);
  // Records that `s` changed (its row is written with the group), once its change is complete:
  // the never-oversell invariant is checked here, in every build, for every SKU that moves.
  void changed(const Sku& s, Changes& ch) {
    STOCKD_CHECK(s.available + s.held + s.sold == s.total && s.total <= uint64_t{INT64_MAX},
                 "a SKU's available + held + sold must equal its total");
    // Named once per Changes: a hot SKU changes with every request, and the checkpointer's
    // Changes span millions of them.
    if (ch.rows && ch.first_naming(s.named_in)) ch.skus.emplace_back(s.id);
  }
  void first_answer(const Hold& h, proto::ReserveResp& out) const;
  void hold_view(const Hold& h, proto::HoldView& out) const;

  // book_admin.cc.
  book_detail::StrMap<uint64_t> count_users(const Sku& s) const;

  // book_rows.cc: recovery.
  stockd::Status restore_skus(const book_detail::Restoring& r);
  stockd::Status restore_codes(book_detail::Restoring& r);
  void stage(book_detail::Restoring& r);
  void restore_hold(book_detail::Restoring& r, rec::HoldRow& row);  // takes its strings
  stockd::Status restore_hold(rec::HoldRow& row, book_detail::Finished& made);
  stockd::Status restore_users(const book_detail::Restoring& r);

  // book_check.cc: invariants, O(book).
  stockd::Status check_skus() const;
  stockd::Status check_holds() const;
  stockd::Status check_codes() const;
  stockd::Status check_indexes() const;
  stockd::Status check_key_indexes() const;
};

// The fields a SkuView (an answer) and a SkuRow (the stored row) share.
template <class Out>
void sku_fields(const book_detail::Sku& s, Out& out) {
  out.sku.assign(s.id);
  out.total = s.total;
  out.available = s.available;
  out.held = s.held;
  out.sold = s.sold;
  out.per_user_limit = s.limit;
  out.opens_at_ms = s.opens_at;
  out.closes_at_ms = s.closes_at;
}
void sku_view(const book_detail::Sku& s, proto::SkuView& out);
// A hold's lines / codes as protocol values, into `out` (its strings' capacity reused).
void hold_lines(const book_detail::Hold& h, std::vector<proto::Line>& out);
void hold_codes(const book_detail::Hold& h, std::vector<proto::SkuCode>& out);
// The codes a buyer is shown for `h` in state `as`: all of them once sold, else none.
void shown_codes(const book_detail::Hold& h, proto::HoldState as, std::vector<proto::SkuCode>& out);
// A user's units of `s`, kept (and their row named in `ch`) only while `s` has a limit.
void add_units(book_detail::Sku& s, std::string_view user, uint64_t qty, Changes& ch);
void sub_units(book_detail::Sku& s, std::string_view user, uint64_t qty, Changes& ch);
uint64_t units_of(const book_detail::Sku& s, std::string_view user);

}  // namespace stockd
