// The book as rows: reading the current row of anything a Changes named, and recovery, which
// takes rows in any order and rebuilds every index once in finish_restore().
//
// Recovery refuses rows that cannot be linked (a line or code naming an unknown SKU, a code
// listed by a hold but owned by another, ids past the meta row's next ids, duplicates, gaps in a
// pool's indexes), then runs check_invariants() for everything else. A code may be owned by a
// hold that no longer exists: its order was sold and forgotten after retention.
#include <algorithm>
#include <tuple>

#include "book_impl.h"
#include "stockd/prefetch.h"

namespace stockd {

using book_detail::Hold;
using book_detail::Restoring;
using book_detail::Sku;
using proto::HoldState;

// ---- Rows. ----

namespace {
void sku_row_of(const Sku& s, rec::SkuRow& out) {
  sku_fields(s, out);
  out.closed = s.closed;
  out.code_pool = s.pool;
}
}  // namespace

bool Book::sku_row(std::string_view sku, rec::SkuRow& out) const {
  const Sku* s = impl_->find_sku(sku);
  if (s == nullptr) return false;
  sku_row_of(*s, out);
  return true;
}

void Book::named_sku_rows(
    const Changes& ch, rec::SkuRow& row,
    const std::function<void(std::string_view, const rec::SkuRow*)>& fn) const {
  const Impl& x = *impl_;
  std::vector<const Sku*>& picked = x.skus_picked;
  picked.clear();
  if (ch.skus.size() * 16 >= x.skus.size()) {
    std::vector<const Sku*>& all = x.skus_by_name;
    if (all.size() != x.skus.size()) {
      all.clear();
      for (const auto& [id, s] : x.skus) all.push_back(&s);
      std::sort(all.begin(), all.end(), [](const Sku* a, const Sku* b) { return a->id < b->id; });
    }
    constexpr size_t kAhead = 8;
    for (size_t i = 0; i < all.size(); ++i) {
      if (i + kAhead < all.size()) stockd::prefetch(&all[i + kAhead]->named_in);
      if (ch.named(all[i]->named_in)) picked.push_back(all[i]);
    }
  }
  // Each SKU `ch` names was marked by it unless another Changes marked it since, or `ch` is a
  // copy: then (and when it names few) by name.
  if (picked.size() == ch.skus.size()) {
    for (size_t i = 0; i < picked.size(); ++i) {
      if (i + 8 < picked.size()) book_detail::prefetch_sku_node(picked[i + 8]);
      sku_row_of(*picked[i], row);
      fn(picked[i]->id, &row);
    }
    return;
  }
  std::vector<std::string_view> names(ch.skus.begin(), ch.skus.end());
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  for (std::string_view id : names) fn(id, sku_row(id, row) ? &row : nullptr);
}

std::optional<rec::SkuRow> Book::sku_row(std::string_view sku) const {
  rec::SkuRow row;
  if (!sku_row(sku, row)) return std::nullopt;
  return row;
}

bool Book::hold_row(uint64_t id, rec::HoldRow& out) const {
  const Hold* found = impl_->holds.find(id);
  if (found == nullptr) return false;
  const Hold& h = *found;
  impl_->hold_view(h, out.hold);
  hold_codes(h, out.hold.codes);  // every code it took: a buyer sees them once sold
  out.fingerprint = h.fingerprint;
  out.first_available = h.first_available;
  out.finished_at_ms = h.finished_at;
  return true;
}

std::optional<rec::HoldRow> Book::hold_row(uint64_t id) const {
  rec::HoldRow row;
  if (!hold_row(id, row)) return std::nullopt;
  return row;
}

std::optional<proto::ReserveResp> Book::idem_answer(std::string_view key) const {
  const book_detail::Hold* h = impl_->idem.find(key);
  if (h == nullptr) return std::nullopt;
  proto::ReserveResp out;
  impl_->first_answer(*h, out);
  return out;
}

std::optional<rec::UserRow> Book::user_row(std::string_view sku, std::string_view user) const {
  const Sku* s = impl_->find_sku(sku);
  if (s == nullptr) return std::nullopt;
  auto it = s->users.find(user);
  if (it == s->users.end()) return std::nullopt;
  return rec::UserRow{std::string(s->id), it->first, it->second};
}

std::optional<rec::CodeRow> Book::code_row(std::string_view sku, uint32_t index) const {
  const Sku* s = impl_->find_sku(sku);
  if (s == nullptr || index >= s->codes.size()) return std::nullopt;
  return rec::CodeRow{std::string(s->id), index, *s->codes[index].code, s->codes[index].owner};
}

void Book::name_all_rows(Changes& ch) const {
  const Impl& x = *impl_;
  for (const auto& [id, s] : x.skus) {
    ch.skus.emplace_back(id);
    for (const auto& [user, units] : s.users) ch.users.emplace_back(id, user);
    for (uint32_t i = 0; i < s.codes.size(); ++i) ch.codes.emplace_back(id, i);
  }
  for (const auto [id, h] : x.holds) ch.hold_changed(id, h.seq);
}

void Book::reset() { impl_ = std::make_unique<Impl>(impl_->limits); }

rec::MetaRow Book::meta() const {
  rec::MetaRow m;
  m.next_hold_id = impl_->next_hold_seq;
  m.next_outbox_seq = impl_->next_outbox_seq;
  m.outbox_acked = impl_->outbox_acked;
  m.outbox_first = impl_->outbox_first;
  m.hold_id_key0 = impl_->id_key.k0;
  m.hold_id_key1 = impl_->id_key.k1;
  return m;
}

bool Book::set_hold_id_key(const HoldIdKey& key, int64_t now, Changes& ch) {
  if (impl_->next_hold_seq != 1) return false;  // ids were handed out under the old key
  impl_->id_key = key;
  impl_->ahead = {};
  ch.meta = true;
  if (ch.log) {
    rec::Decision& d = book_detail::new_entry(rec::Op::kHoldIdKey, now);
    d.key0 = key.k0;
    d.key1 = key.k1;
    ch.writer().append(d);
  }
  return true;
}

void Book::outbox_ack(uint64_t upto, int64_t now, Changes& ch) {
  if (upto <= impl_->outbox_acked) return;
  impl_->outbox_acked = upto;
  ch.meta = true;
  if (ch.log) {
    rec::Decision& d = book_detail::new_entry(rec::Op::kOutboxAck, now);
    d.upto = upto;
    ch.writer().append(d);
  }
}

HoldIdKey Book::hold_id_key() const { return impl_->id_key; }

// ---- Recovery. ----

namespace {
// A stored row that cannot be part of a book: damaged, or written by something else.
stockd::Status bad_row(std::string what) { return stockd::Status::Corruption(std::move(what)); }
Restoring& pending(std::unique_ptr<Restoring>& r) {
  if (!r) r = std::make_unique<Restoring>();
  return *r;
}
}  // namespace

namespace {
// SKU, code and meta rows are applied by stage(): one that comes after it would be lost.
template <class Row>
void before_stage(Restoring& p, std::vector<Row>& rows, const Row& r, const char* what) {
  if (!p.staged) {
    rows.push_back(r);
  } else if (p.status.ok()) {
    p.status = stockd::Status::Refused(std::string("a ") + what +
                                       " row was restored after stage_restore()");
  }
}
}  // namespace

void Book::restore(const rec::SkuRow& r) {
  Restoring& p = pending(impl_->restoring);
  before_stage(p, p.skus, r, "SKU");
}
void Book::restore(const rec::HoldRow& r) { restore(rec::HoldRow(r)); }
void Book::restore(rec::HoldRow&& r) {
  Restoring& p = pending(impl_->restoring);
  if (p.staged) {
    impl_->restore_hold(p, r);
  } else {
    p.holds.push_back(std::move(r));
  }
}
void Book::restore(const rec::UserRow& r) { pending(impl_->restoring).users.push_back(r); }
void Book::restore(const rec::CodeRow& r) {
  Restoring& p = pending(impl_->restoring);
  before_stage(p, p.codes, r, "code");
}
void Book::restore(const rec::MetaRow& r) {
  Restoring& p = pending(impl_->restoring);
  if (p.staged && p.status.ok()) {
    p.status = stockd::Status::Refused("the meta row was restored after stage_restore()");
  }
  if (!p.staged) p.meta = r;
}

void Book::stage_restore() {
  Restoring& p = pending(impl_->restoring);
  if (!p.staged) impl_->stage(p);
}

stockd::Status Book::Impl::restore_skus(const Restoring& r) {
  // The rows come in name order (a table's), so the SKUs in name order (named_sku_rows) are
  // listed as they are made, instead of sorted at the first checkpoint after the start (a
  // second of the checkpointer for a million SKUs). Rows out of order leave the list to it.
  bool in_order = skus.empty();
  skus_by_name.clear();
  for (const rec::SkuRow& row : r.skus) {
    if (!book_detail::sku_id_ok(row.sku)) return bad_row("SKU row with a bad id");
    if (find_sku(row.sku) != nullptr) return bad_row("SKU " + row.sku + ": two rows");
    if (row.total > book_detail::kSkuUnitsMax)
      return bad_row("SKU " + row.sku + ": total too large");
    Sku& s = add_sku(row.sku);
    in_order = in_order && (skus_by_name.empty() || skus_by_name.back()->id < s.id);
    if (in_order) skus_by_name.push_back(&s);
    s.total = row.total;
    s.available = row.available;
    s.held = row.held;
    s.sold = row.sold;
    s.limit = row.per_user_limit;
    s.opens_at = row.opens_at_ms;
    s.closes_at = row.closes_at_ms;
    s.closed = row.closed;
    s.pool = row.code_pool;
  }
  if (!in_order) skus_by_name.clear();
  return stockd::Status::Ok();
}

stockd::Status Book::Impl::restore_codes(Restoring& r) {
  std::sort(r.codes.begin(), r.codes.end(), [](const rec::CodeRow& a, const rec::CodeRow& b) {
    return std::tie(a.sku, a.index) < std::tie(b.sku, b.index);
  });
  for (const rec::CodeRow& row : r.codes) {
    const auto at = [&row] { return "code " + row.sku + "/" + std::to_string(row.index) + ": "; };
    Sku* s = find_sku(row.sku);
    if (s == nullptr) return bad_row(at() + "unknown SKU");
    if (!s->pool) return bad_row(at() + "its SKU is not a code pool");
    if (row.index != s->codes.size()) return bad_row(at() + "indexes are not dense from 0");
    if (!book_detail::code_ok(row.code)) return bad_row(at() + "bad code length");
    if (row.owner != 0 && !issued(row.owner))
      return bad_row(at() + "owner is a hold id never issued");
    auto [it, inserted] = codes.emplace(row.code, book_detail::CodeLoc{s, row.index});
    if (!inserted) return bad_row(at() + "code " + row.code + " is in the book twice");
    s->codes.push_back({&it->first, row.owner});
    if (row.owner == 0) s->free.push_back(row.index);  // ascending: a valid min-heap
  }
  return stockd::Status::Ok();
}

stockd::Status Book::Impl::restore_hold(rec::HoldRow& row, book_detail::Finished& done) {
  // Built only for a refusal: a million holds restore without a string each.
  const auto at = [&row] { return "hold " + std::to_string(row.hold.hold_id) + ": "; };
  const uint64_t seq = hold_seq_of(row.hold.hold_id, id_key);
  if (seq == 0 || seq >= next_hold_seq)
    return bad_row(at() + "an id never issued (past next_hold_id)");
  if (row.hold.state < HoldState::kHeld || row.hold.state > HoldState::kExpired)
    return bad_row(at() + "bad state");
  if (row.hold.lines.empty() || row.hold.lines.size() > proto::kReserveLinesMax)
    return bad_row(at() + "bad lines");
  if (row.hold.state == HoldState::kHeld && row.finished_at_ms != 0)
    return bad_row(at() + "held but finished");
  Hold* made = holds.emplace(row.hold.hold_id);
  if (made == nullptr) return bad_row(at() + "two rows");
  Hold& h = *made;
  h.seq = seq;
  h.state = row.hold.state;
  h.user = std::move(row.hold.user);
  h.key = std::move(row.hold.key);
  h.fingerprint = row.fingerprint;
  h.first_available = row.first_available;
  h.created_at = row.hold.created_at_ms;
  h.expires_at = row.hold.expires_at_ms;
  h.finished_at = row.finished_at_ms;
  for (const proto::Line& l : row.hold.lines) {
    Sku* s = find_sku(l.sku);
    if (s == nullptr || l.qty == 0)
      return bad_row(at() + "line of unknown SKU " + l.sku + " or qty 0");
    h.lines.push_back({s, l.qty});
  }
  const bool owns = row.hold.state == HoldState::kHeld || row.hold.state == HoldState::kCommitted;
  for (const proto::SkuCode& c : row.hold.codes) {
    auto loc = codes.find(c.code);
    if (loc == codes.end() || loc->second.sku->id != c.sku)
      return bad_row(at() + "unknown code " + c.code);
    if (owns && loc->second.sku->codes[loc->second.index].owner != row.hold.hold_id) {
      return bad_row(at() + "code " + c.code + " is owned by another hold");
    }
    h.codes.push_back({loc->second.sku, loc->second.index});
  }
  if (row.hold.state == HoldState::kHeld) heap_push(h);
  done = {h.finished_at, h.id, &h, book_detail::key_hash(h.key)};
  if (!h.key.empty() && !idem.insert(&h, done.key_hash)) {
    return bad_row(at() + "idempotency key " + h.key + " is also another hold's");
  }
  return stockd::Status::Ok();
}

// One hold row into the book (after stage()): the first problem is kept for finish_restore().
void Book::Impl::restore_hold(Restoring& r, rec::HoldRow& row) {
  if (!r.status.ok()) return;
  book_detail::Finished done;
  r.status = restore_hold(row, done);
  if (r.status.ok() && row.hold.state != HoldState::kHeld) r.finished.push_back(done);
}

// The meta row, the SKUs and the codes: what hold rows link to.
void Book::Impl::stage(Restoring& r) {
  r.staged = true;
  if (!skus.empty() || !holds.empty() || !idem.empty()) {
    r.status = stockd::Status::Refused("restore: the book was not empty");
    return;
  }
  if (r.meta) {
    if (r.meta->next_hold_id == 0 || r.meta->next_outbox_seq == 0) {
      r.status = bad_row("meta: ids from 1");
      return;
    }
    next_hold_seq = r.meta->next_hold_id;
    id_key = {r.meta->hold_id_key0, r.meta->hold_id_key1};
    ahead = {};
    next_outbox_seq = r.meta->next_outbox_seq;
    outbox_acked = r.meta->outbox_acked;
    outbox_first = r.meta->outbox_first;
  }
  r.status = restore_skus(r);
  if (r.status.ok()) r.status = restore_codes(r);
  r.skus = {};
  r.codes = {};
  std::vector<rec::HoldRow> collected;
  collected.swap(r.holds);
  r.finished.reserve(collected.size());
  for (rec::HoldRow& row : collected) restore_hold(r, row);
}

stockd::Status Book::Impl::restore_users(const Restoring& r) {
  for (const rec::UserRow& row : r.users) {
    Sku* s = find_sku(row.sku);
    if (s == nullptr) return bad_row("user row of unknown SKU " + row.sku);
    if (!book_detail::user_ok(row.user))
      return bad_row("user row of SKU " + row.sku + ": bad user");
    if (row.units == 0) continue;  // equivalent to absent
    if (!s->users.emplace(row.user, row.units).second) {
      return bad_row("user row " + row.sku + "/" + row.user + ": two rows");
    }
  }
  return stockd::Status::Ok();
}

stockd::Status Book::finish_restore() {
  Impl& m = *impl_;
  if (!m.restoring) return check_invariants();  // nothing restored: an empty store
  if (!m.restoring->staged) m.stage(*m.restoring);
  std::unique_ptr<Restoring> r = std::move(m.restoring);
  if (!r->status.ok()) return r->status;
  // By finishing time; rows come in sequence order, which is mostly that order already (a
  // buy-now finishes as it is made), and holds finished in the same millisecond keep it.
  const auto earlier = [](const auto& a, const auto& b) { return a.at < b.at; };
  if (!std::is_sorted(r->finished.begin(), r->finished.end(), earlier)) {
    std::stable_sort(r->finished.begin(), r->finished.end(), earlier);
  }
  for (const book_detail::Finished& e : r->finished) m.fifo_of(*e.hold).push_back(e);
  if (stockd::Status s = m.restore_users(*r); !s.ok()) return s;
  for (const auto& [id, s] : m.skus) {
    m.units.total += s.total;
    m.units.available += s.available;
    m.units.held += s.held;
    m.units.sold += s.sold;
  }
  return check_invariants();
}

}  // namespace stockd
