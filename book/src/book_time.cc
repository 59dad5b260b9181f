// Time in the book: the deadline heap of live holds, expiry, finishing a hold (and its outbox
// record), and forgetting finished holds (with their idempotency keys) after their retention.
//
// Every sweep is bounded by limits.expire_per_call_max per queue and touches only due entries:
// the heap is ordered by (deadline, hold id), the retention queues by time.
#include <algorithm>

#include "book_impl.h"

namespace stockd {

using book_detail::Deadline;
using book_detail::Hold;
using book_detail::Sku;
using proto::HoldState;

namespace {
bool earlier(const Deadline& a, const Deadline& b) {
  return a.at < b.at || (a.at == b.at && a.id < b.id);
}
}  // namespace

// ---- The indexed heap: each HELD hold knows its position, so it can leave in O(log n). ----

void Book::Impl::place(size_t pos, const Deadline& d) {
  deadlines[pos] = d;
  d.hold->heap_pos = pos;
}

void Book::Impl::sift_up(size_t pos) {
  const Deadline d = deadlines[pos];
  while (pos > 0) {
    const size_t parent = (pos - 1) / 2;
    if (!earlier(d, deadlines[parent])) break;
    place(pos, deadlines[parent]);
    pos = parent;
  }
  place(pos, d);
}

void Book::Impl::sift_down(size_t pos) {
  const Deadline d = deadlines[pos];
  const size_t n = deadlines.size();
  for (;;) {
    size_t child = 2 * pos + 1;
    if (child >= n) break;
    if (child + 1 < n && earlier(deadlines[child + 1], deadlines[child])) ++child;
    if (!earlier(deadlines[child], d)) break;
    place(pos, deadlines[child]);
    pos = child;
  }
  place(pos, d);
}

// The live set: a hold enters the deadline heap when it becomes HELD and leaves it when it
// finishes; the per-user count of live holds (Book::reserve's cap) follows the same two doors.
void Book::Impl::heap_push(Hold& h) {
  deadlines.push_back({h.expires_at, h.id, &h});
  sift_up(deadlines.size() - 1);
  ++live_per_user[h.user];
}

void Book::Impl::heap_erase(Hold& h) {
  auto live = live_per_user.find(h.user);
  if (--live->second == 0) live_per_user.erase(live);
  const size_t pos = h.heap_pos;
  h.heap_pos = book_detail::kNoPos;
  const Deadline last = deadlines.back();
  deadlines.pop_back();
  if (pos == deadlines.size()) return;  // it was the last entry
  place(pos, last);
  if (pos > 0 && earlier(last, deadlines[(pos - 1) / 2])) {
    sift_up(pos);
  } else {
    sift_down(pos);
  }
}

// ---- Finishing holds. ----

void Book::Impl::finish(Hold& h, HoldState to, int64_t at, uint64_t key_hash) {
  h.state = to;
  h.finished_at = at;
  // The queue must stay sorted: a late-swept expiry (finished at its past deadline) is queued
  // at the newest time instead, which only keeps it a little longer than its retention.
  Ring<book_detail::Finished>& fifo = fifo_of(h);
  const int64_t key = fifo.empty() ? at : std::max(at, fifo.back().at);
  fifo.push_back({key, h.id, &h, key_hash});
}

void Book::Impl::emit(proto::OutboxKind kind, const Hold& h, int64_t at, Changes& ch) {
  ch.meta = true;
  const uint64_t seq = next_outbox_seq++;
  if (!ch.rows || !ch.records) return;       // the log entry carries it (stockd/decisions.h)
  proto::OutboxRecord& r = ch.add_outbox();  // every field is set below
  r.seq = seq;
  r.kind = kind;
  r.order_id = h.id;
  r.user.assign(h.user);
  r.key.assign(h.key);
  r.created_at_ms = h.created_at;
  r.at_ms = at;
  hold_lines(h, r.lines);
  hold_codes(h, r.codes);
}

// Precondition: h is HELD. Units, user counts and codes go back.
void Book::Impl::end_hold(Hold& h, HoldState to, int64_t at, Changes& ch) {
  heap_erase(h);
  for (const book_detail::HoldLine& l : h.lines) {
    Sku& s = *l.sku;
    s.held -= l.qty;
    s.available += l.qty;
    units.held -= l.qty;
    units.available += l.qty;
    changed(s, ch);
    sub_units(s, h.user, l.qty, ch);
  }
  for (const book_detail::HoldCode& c : h.codes) {
    Sku& s = *c.sku;
    s.codes[c.index].owner = 0;
    s.free.push_back(c.index);
    std::push_heap(s.free.begin(), s.free.end(), std::greater<>());
    if (ch.rows) ch.codes.emplace_back(std::string(s.id), c.index);
  }
  finish(h, to, at, book_detail::key_hash(h.key));
  const bool released = to == HoldState::kReleased;
  emit(released ? proto::OutboxKind::kReleased : proto::OutboxKind::kExpired, h, at, ch);
  ch.name_hold(h.named_in, h.id, h.seq);
  if (ch.log) log_hold_end(released ? rec::Op::kRelease : rec::Op::kExpire, h, at, ch);
}

// Precondition: h is HELD and not past its deadline.
void Book::Impl::commit_hold(Hold& h, int64_t now, Changes& ch) {
  heap_erase(h);
  for (const book_detail::HoldLine& l : h.lines) {
    l.sku->held -= l.qty;
    l.sku->sold += l.qty;
    units.held -= l.qty;
    units.sold += l.qty;
    changed(*l.sku, ch);
  }
  finish(h, HoldState::kCommitted, now, book_detail::key_hash(h.key));
  emit(proto::OutboxKind::kOrder, h, now, ch);
  ch.name_hold(h.named_in, h.id, h.seq);
  if (ch.log) log_hold_end(rec::Op::kCommit, h, now, ch);
}

// ---- Sweeps. ----

// Finished holds go when their retention ends; then, while more than limits.finished_holds_max
// are kept, the oldest unsold ones (released, expired), and the oldest orders only when no
// unsold one is left: a buyer who holds and releases over and over must not push out the keys
// of orders sold a moment ago (a retry of one would sell again). A repeat of a forgotten key is
// a new request.
void Book::Impl::forget_finished(int64_t now, Changes& ch) {
  size_t n = 0;
  const auto forget_front = [&](Ring<book_detail::Finished>& fifo) {
    const book_detail::Finished e = fifo.front();
    prefetch_forget(fifo, kForgetAhead);  // the one this loop, or the next requests', forgets
    fifo.pop_front();
    forget(e, now, ch);
    ++n;
  };
  for (Ring<book_detail::Finished>* fifo : {&unsold_fifo, &sold_fifo}) {
    while (n < limits.expire_per_call_max && !fifo->empty() &&
           book_detail::retention_over(fifo->front().at, limits.finished_hold_retention_ms, now)) {
      forget_front(*fifo);
    }
  }
  while (n < limits.expire_per_call_max && finished_count() > limits.finished_holds_max) {
    forget_front(unsold_fifo.empty() ? sold_fifo : unsold_fifo);
  }
}

// F: 'F' at hold_id. `e` has been taken off the retention queue.
void Book::Impl::forget(const book_detail::Finished& e, int64_t now, Changes& ch) {
  Hold& h = *e.hold;
  STOCKD_CHECK(h.id == e.id && h.state != HoldState::kHeld,
               "a retention queue entry must name a finished hold");
  const uint64_t id = h.id;
  ch.name_hold(h.named_in, id, h.seq);
  if (!h.key.empty()) idem.erase_owner(&h, e.key_hash);  // its key goes with it, first
  holds.erase(&h);  // codes it bought keep it as owner: they stay sold
  if (ch.log) {
    rec::Decision& d = book_detail::new_entry(rec::Op::kForget, now);
    d.hold_id = id;
    ch.writer().append(d);
  }
}

size_t Book::Impl::sweep(int64_t now, Changes& ch) {
  if (replaying) return 0;  // the log says what expired and what was forgotten
  size_t expired = 0;
  while (expired < limits.expire_per_call_max && !deadlines.empty() &&
         deadlines.front().at <= now) {
    Hold& h = *deadlines.front().hold;
    end_hold(h, HoldState::kExpired, h.expires_at, ch);
    ++counters.expiries;
    ++expired;
  }
  forget_finished(now, ch);
  return expired;
}

size_t Book::expire(int64_t now, Changes& ch) { return impl_->sweep(now, ch); }

int64_t Book::next_deadline() const {
  return impl_->deadlines.empty() ? INT64_MAX : impl_->deadlines.front().at;
}

}  // namespace stockd
