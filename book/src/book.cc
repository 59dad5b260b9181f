// The book's buyer operations: reserve, claim, commit, release, and the shared helpers.
//
// Choices the header leaves open, made here:
// - On success ReserveResp.available is the fewest units left among the request's SKUs (for a
//   one-line request: the units left of that SKU). It is part of the stored first answer.
// - Code pools hand out their lowest free index first, so the book stays deterministic across a
//   restore (the free list is rebuilt from the code rows alone).
// - A sold order is never returned by release (ALREADY_DONE, state COMMITTED): refunds and
//   returns are out of scope; an admin restock adds units back instead.
// - Idempotency keys are global (not per user); the fingerprint includes the user, so another
//   user's request under the same key is a KEY_CONFLICT.
#include "stockd/book.h"

#include <algorithm>

#include "book_impl.h"
#include "stockd/wire.h"

namespace stockd {

using book_detail::Hold;
using book_detail::Sku;
using book_detail::Want;
using proto::HoldState;

namespace {

// Opcode kinds inside fingerprints, so that a claim never matches a reserve.
constexpr uint32_t kFingerprintReserve = 1;
constexpr uint32_t kFingerprintClaim = 2;

// FNV-1a 64 over a canonical serialization: u32 LE integers, u32-length-prefixed strings.
class Fingerprint {
 public:
  explicit Fingerprint(uint32_t kind) { u32(kind); }
  void u32(uint32_t v) {
    const char b[4] = {static_cast<char>(v & 0xFF), static_cast<char>((v >> 8) & 0xFF),
                       static_cast<char>((v >> 16) & 0xFF), static_cast<char>((v >> 24) & 0xFF)};
    h_ = wire::fnv1a64(std::string_view(b, 4), h_);
  }
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    h_ = wire::fnv1a64(s, h_);
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = wire::fnv1a64(std::string_view());
};

uint64_t reserve_fingerprint(const proto::ReserveReq& req) {
  Fingerprint f(kFingerprintReserve);
  f.str(req.user);
  f.u32(req.ttl_ms);
  f.u32(static_cast<uint32_t>(req.lines.size()));
  for (const proto::Line& l : req.lines) {
    f.str(l.sku);
    f.u32(l.qty);
  }
  return f.value();
}

uint64_t claim_fingerprint(const proto::ClaimReq& req) {
  Fingerprint f(kFingerprintClaim);
  f.str(req.user);
  f.str(req.sku);
  return f.value();
}

bool claim_ok(const proto::ClaimReq& req) {
  return book_detail::sku_id_ok(req.sku) && book_detail::user_ok(req.user) &&
         req.key.size() <= proto::kKeyBytesMax;
}

}  // namespace

stockd::Status validate(const proto::ReserveReq& req) {
  if (!book_detail::user_ok(req.user))
    return stockd::Status::Invalid(book_detail::size_rule("user", proto::kUserBytesMax));
  if (req.key.size() > proto::kKeyBytesMax) {
    return stockd::Status::Invalid(book_detail::size_rule("key", proto::kKeyBytesMax, true));
  }
  if (req.ttl_ms > proto::kHoldTtlMsMax) {
    return stockd::Status::Invalid("ttl_ms is over hold_ttl_ms_max (" +
                                   std::to_string(proto::kHoldTtlMsMax) + ")");
  }
  if (req.lines.empty() || req.lines.size() > proto::kReserveLinesMax) {
    return stockd::Status::Invalid("a reservation has 1.." +
                                   std::to_string(proto::kReserveLinesMax) + " lines");
  }
  for (size_t i = 0; i < req.lines.size(); ++i) {
    const proto::Line& l = req.lines[i];
    if (!book_detail::sku_id_ok(l.sku))
      return stockd::Status::Invalid("line " + std::to_string(i) + ": " + book_detail::sku_rule());
    if (l.qty == 0)
      return stockd::Status::Invalid("line " + std::to_string(i) + ": qty must be >= 1");
    for (size_t j = 0; j < i; ++j) {
      if (req.lines[j].sku == l.sku)
        return stockd::Status::Invalid("line " + std::to_string(i) + ": sku repeated");
    }
  }
  return stockd::Status::Ok();
}

Book::Book(BookLimits limits) : impl_(std::make_unique<Impl>(limits)) {}
Book::~Book() = default;

// ---- Shared helpers. ----

Sku* Book::Impl::find_sku(std::string_view id) { return sku_index.find(id); }
const Sku* Book::Impl::find_sku(std::string_view id) const { return sku_index.find(id); }
Sku& Book::Impl::add_sku(std::string_view id) {
  auto [it, inserted] = skus.try_emplace(std::string(id));
  it->second.id = it->first;
  if (inserted) sku_index.insert(&it->second);
  if (inserted) sku_order.insert(it->second.id);
  return it->second;
}

void sku_view(const Sku& s, proto::SkuView& out) {
  sku_fields(s, out);
  out.flags = static_cast<uint8_t>((s.closed ? proto::kSkuFlagClosed : 0) |
                                   (s.pool ? proto::kSkuFlagCodePool : 0));
}

uint64_t units_of(const Sku& s, std::string_view user) {
  auto it = s.users.find(user);
  return it == s.users.end() ? 0 : it->second;
}
void add_units(Sku& s, std::string_view user, uint64_t qty, Changes& ch) {
  if (s.limit == 0) return;  // counted only while a limit is set (book_impl.h)
  auto it = s.users.find(user);
  if (it == s.users.end()) {
    s.users.emplace(std::string(user), qty);
  } else {
    it->second += qty;
  }
  if (ch.rows) ch.users.emplace_back(std::string(s.id), std::string(user));
}
void sub_units(Sku& s, std::string_view user, uint64_t qty, Changes& ch) {
  if (s.limit == 0) return;
  auto it = s.users.find(user);
  if (it == s.users.end()) return;  // check_invariants() proves this does not happen
  it->second -= std::min(it->second, qty);
  if (it->second == 0) s.users.erase(it);
  if (ch.rows) ch.users.emplace_back(std::string(s.id), std::string(user));
}

void Book::Impl::hold_view(const Hold& h, proto::HoldView& out) const {
  out.hold_id = h.id;
  out.state = h.state;
  out.user = h.user;
  out.key = h.key;
  out.created_at_ms = h.created_at;
  out.expires_at_ms = h.expires_at;
  hold_lines(h, out.lines);
  shown_codes(h, h.state, out.codes);
}

void hold_lines(const Hold& h, std::vector<proto::Line>& out) {
  out.resize(h.lines.size());
  for (size_t i = 0; i < h.lines.size(); ++i) {
    out[i].sku.assign(h.lines[i].sku->id);
    out[i].qty = h.lines[i].qty;
  }
}

// A hold's codes are the buyer's to see once they are sold (COMMITTED): a HELD hold that is
// released or expires gives them back to the pool, for another buyer; a code its holder had
// seen would then be known to two.
void shown_codes(const Hold& h, HoldState as, std::vector<proto::SkuCode>& out) {
  if (as == HoldState::kCommitted) {
    hold_codes(h, out);
  } else {
    out.clear();
  }
}

void hold_codes(const Hold& h, std::vector<proto::SkuCode>& out) {
  out.resize(h.codes.size());
  for (size_t i = 0; i < h.codes.size(); ++i) {
    const book_detail::HoldCode& c = h.codes[i];
    out[i].sku.assign(c.sku->id);
    out[i].code.assign(*c.sku->codes[c.index].code);
  }
}

// ---- Reserve and claim. ----

// The answer the reservation that created `h` got: its state then (held, or committed when
// bought at once), the units left then, and the codes it bought (none when it was held).
void Book::Impl::first_answer(const Hold& h, proto::ReserveResp& out) const {
  out.hold_id = h.id;
  out.state = h.expires_at != 0 ? HoldState::kHeld : HoldState::kCommitted;
  out.expires_at_ms = h.expires_at;
  out.failed_line = book_detail::kNoLine;
  out.available = h.first_available;
  shown_codes(h, out.state, out.codes);
}

// If `key` is known: OK with the first answer (same request) or KEY_CONFLICT. The user is
// compared as it is, not only through the fingerprint: a 64-bit FNV-1a can be made to collide
// on purpose, and a forged request under another user's key must never get that user's answer
// (its hold id, its codes).
proto::Status Book::Impl::replay(std::string_view key, uint64_t key_hash, std::string_view user,
                                 uint64_t fingerprint, proto::ReserveResp& out, bool& found) {
  const Hold* h = idem.find(key, key_hash);
  found = h != nullptr;
  if (!found) return proto::Status::kOk;
  if (h->fingerprint != fingerprint || h->user != user) return proto::Status::kKeyConflict;
  first_answer(*h, out);
  ++counters.idem_hits;
  return proto::Status::kOk;
}

proto::Status Book::Impl::check_line(const Sku* s, std::string_view user, uint32_t qty, int64_t now,
                                     uint64_t& available) {
  if (s == nullptr) return proto::Status::kNotFound;
  if (s->closed) return proto::Status::kSaleClosed;
  if (s->opens_at != 0 && now < s->opens_at) return proto::Status::kSaleNotOpen;
  if (s->closes_at != 0 && now >= s->closes_at) return proto::Status::kSaleClosed;
  if (s->limit != 0) {
    const uint64_t have = units_of(*s, user);
    if (have + qty > s->limit) {
      available = have >= s->limit ? 0 : s->limit - have;
      ++counters.limit_exceeded;
      return proto::Status::kLimitExceeded;
    }
  }
  if (s->available < qty) {
    available = s->available;
    ++counters.sold_out;
    return proto::Status::kSoldOut;
  }
  return proto::Status::kOk;
}

// kOk if `user` may take one more live hold, else why not: BUSY when the server holds its
// maximum, TOO_MANY_HOLDS when the user does (the buyer's own doing), with `why` for the answer.
proto::Status Book::Impl::live_cap(std::string_view user, std::string& why) const {
  if (deadlines.size() >= limits.live_holds_max) {
    why = "reserve: the server holds its maximum of " + std::to_string(limits.live_holds_max) +
          " live holds (--live-holds-max); retry later or buy now (ttl 0)";
    return proto::Status::kBusy;
  }
  auto it = live_per_user.find(user);
  if (it != live_per_user.end() && it->second >= limits.user_live_holds_max) {
    why = "reserve: this user has " + std::to_string(it->second) +
          " live holds, the maximum (--user-holds-max); commit or release one first";
    return proto::Status::kTooManyHolds;
  }
  return proto::Status::kOk;
}

void Book::Impl::take_codes(Sku& s, uint32_t qty, Hold& h, Changes& ch) {
  // free.size() == available >= qty, checked by check_line and kept by check_invariants().
  for (uint32_t i = 0; i < qty; ++i) {
    std::pop_heap(s.free.begin(), s.free.end(), std::greater<>());
    const uint32_t index = s.free.back();
    s.free.pop_back();
    s.codes[index].owner = h.id;
    h.codes.push_back({&s, index});
    if (ch.rows) ch.codes.emplace_back(std::string(s.id), index);
  }
}

namespace {

// The line of `h` that a code of `c`'s SKU belongs to.
uint32_t line_of(const Hold& h, const book_detail::HoldCode& c) {
  uint32_t i = 0;
  while (i + 1 < h.lines.size() && h.lines[i].sku != c.sku) ++i;
  return i;
}

// The entry of a decision about `h` (the log's fields: rec::entry_fields): its id, buyer, key,
// lines and codes, as views into the book.
rec::Decision& hold_entry(rec::Op op, const Hold& h, int64_t at) {
  rec::Decision& d = book_detail::new_entry(op, at);
  d.hold_id = h.id;
  d.user = h.user;
  d.key = h.key;
  d.created_at_ms = h.created_at;
  for (const book_detail::HoldLine& l : h.lines) d.lines.push_back({l.sku->id, l.qty});
  for (const book_detail::HoldCode& c : h.codes) {
    d.codes.push_back({line_of(h, c), *c.sku->codes[c.index].code});
  }
  return d;
}

void log_reserve(const Hold& h, bool claim, uint32_t ttl_ms, int64_t now, Changes& ch) {
  rec::Decision& d = hold_entry(claim ? rec::Op::kClaim : rec::Op::kReserve, h, now);
  d.ttl_ms = ttl_ms;
  ch.writer().append(d);
}

}  // namespace

// COMMIT, RELEASE, EXPIRE: the order (or what went back) in full, so that its outbox record is
// read from the log alone.
void Book::Impl::log_hold_end(rec::Op op, const Hold& h, int64_t at, Changes& ch) const {
  ch.writer().append(hold_entry(op, h, at));
}

void Book::Impl::apply_reserve(std::string_view user, std::string_view key, uint64_t key_hash,
                               uint32_t ttl_ms, std::span<const Want> wants, uint64_t fingerprint,
                               int64_t now, proto::ReserveResp& out, Changes& ch, bool claim) {
  const uint64_t seq = next_hold_seq++;
  const uint64_t id = seq == ahead.seq ? ahead.id : hold_id_of(seq, id_key);
  Hold& h = *holds.emplace(id);  // a new id: hold ids never repeat
  // The next hold's id, made now: its index slot (random memory) is fetched while this
  // request is answered, instead of stalling the next one.
  ahead = {next_hold_seq, hold_id_of(next_hold_seq, id_key)};
  holds.prefetch(ahead.id);
  h.seq = seq;
  h.user.assign(user);
  h.key.assign(key);
  h.fingerprint = key.empty() ? 0 : fingerprint;
  h.created_at = now;
  h.lines.reserve(wants.size());
  uint64_t left = UINT64_MAX;
  for (const Want& w : wants) {
    Sku& s = *w.sku;
    if (s.pool) take_codes(s, w.qty, h, ch);
    s.available -= w.qty;
    (ttl_ms > 0 ? s.held : s.sold) += w.qty;
    units.available -= w.qty;
    (ttl_ms > 0 ? units.held : units.sold) += w.qty;
    h.lines.push_back({&s, w.qty});
    left = std::min(left, s.available);
    changed(s, ch);
    add_units(s, user, w.qty, ch);
  }
  if (ttl_ms > 0) {
    h.state = HoldState::kHeld;
    h.expires_at = now + ttl_ms;
    heap_push(h);
  } else {
    finish(h, HoldState::kCommitted, now, key_hash);
    emit(proto::OutboxKind::kOrder, h, now, ch);
  }
  ch.name_hold(h.named_in, id, seq);
  ch.meta = true;
  if (ch.log) log_reserve(h, claim, ttl_ms, now, ch);
  out.hold_id = id;
  out.state = h.state;
  out.expires_at_ms = h.expires_at;
  out.failed_line = book_detail::kNoLine;
  out.available = left;
  shown_codes(h, h.state, out.codes);
  if (!key.empty()) {
    h.first_available = left;
    idem.insert(&h, key_hash);  // not there: replay() looked
  }
}

Verdict Book::reserve(const proto::ReserveReq& req, int64_t now, proto::ReserveResp& out,
                      Changes& ch) {
  Impl& m = *impl_;
  out = proto::ReserveResp{};
  m.sweep(now, ch);
  if (stockd::Status bad = validate(req); !bad.ok()) return m.refuse("reserve: " + bad.message());
  const uint64_t fingerprint = reserve_fingerprint(req);
  const uint64_t key_hash = book_detail::key_hash(req.key);
  if (!req.key.empty()) {
    bool found = false;
    const proto::Status st = m.replay(req.key, key_hash, req.user, fingerprint, out, found);
    if (found) return st;
  }
  // Refusals change nothing and are not remembered under the key: a retry may succeed.
  if (req.ttl_ms > 0 && !m.replaying) {
    std::string why;
    if (const proto::Status capped = m.live_cap(req.user, why); capped != proto::Status::kOk) {
      return m.refuse(std::move(why), capped);
    }
  }
  Want wants[proto::kReserveLinesMax];
  uint64_t codes = 0;
  for (size_t i = 0; i < req.lines.size(); ++i) {
    Sku* s = m.find_sku(req.lines[i].sku);
    const proto::Status st = m.check_line(s, req.user, req.lines[i].qty, now, out.available);
    if (st != proto::Status::kOk) {
      out.failed_line = static_cast<uint16_t>(i);
      return st;
    }
    if (s->pool) codes += req.lines[i].qty;
    wants[i] = {s, req.lines[i].qty};
  }
  if (codes > proto::kHoldCodesMax) {  // the answer and the outbox record must fit a frame
    return m.refuse("reserve: a hold takes at most " + std::to_string(proto::kHoldCodesMax) +
                    " unique codes; this one asks for " + std::to_string(codes));
  }
  m.apply_reserve(req.user, req.key, key_hash, req.ttl_ms,
                  std::span<const Want>(wants, req.lines.size()), fingerprint, now, out, ch);
  ++m.counters.reserves_ok;
  return proto::Status::kOk;
}

Verdict Book::claim(const proto::ClaimReq& req, int64_t now, proto::ClaimResp& out, Changes& ch) {
  Impl& m = *impl_;
  out = proto::ClaimResp{};
  m.sweep(now, ch);
  if (!claim_ok(req))
    return m.refuse("claim: " + book_detail::sku_rule() + ", " +
                    book_detail::size_rule("user", proto::kUserBytesMax) + ", " +
                    book_detail::size_rule("key", proto::kKeyBytesMax, true));
  const uint64_t fingerprint = claim_fingerprint(req);
  const uint64_t key_hash = book_detail::key_hash(req.key);
  proto::ReserveResp r;
  if (!req.key.empty()) {
    bool found = false;
    const proto::Status st = m.replay(req.key, key_hash, req.user, fingerprint, r, found);
    if (found) {
      out.order_id = r.hold_id;
      if (!r.codes.empty()) out.code = r.codes.front().code;
      out.available = r.available;
      return st;
    }
  }
  Sku* s = m.find_sku(req.sku);
  if (s == nullptr) return proto::Status::kNotFound;
  out.available = s->available;
  if (!s->pool) {
    return m.refuse("claim: '" + req.sku + "' sells counted units, not codes (use RESERVE)");
  }
  // LIMIT_EXCEEDED: `available` is the user's allowance left, as in RESERVE.
  const proto::Status st = m.check_line(s, req.user, 1, now, out.available);
  if (st != proto::Status::kOk) return st;
  const Want want{s, 1};
  m.apply_reserve(req.user, req.key, key_hash, 0, std::span<const Want>(&want, 1), fingerprint, now,
                  r, ch, true);
  out.order_id = r.hold_id;
  out.code = r.codes.front().code;
  out.available = s->available;
  ++m.counters.claims_ok;
  return proto::Status::kOk;
}

// ---- Commit and release. ----

proto::Status Book::Impl::settle(uint64_t hold_id, std::string_view user, int64_t now, bool commit,
                                 proto::HoldView& out, Changes& ch) {
  out = proto::HoldView{};
  sweep(now, ch);
  Hold* found = holds.find(hold_id);
  // Another user's hold looks exactly like an unknown one: nothing to see, nothing to probe.
  if (found == nullptr || !owned_by(*found, user)) return proto::Status::kNotFound;
  Hold& h = *found;
  proto::Status st = proto::Status::kOk;
  if (h.state == HoldState::kHeld && now >= h.expires_at) {
    end_hold(h, HoldState::kExpired, h.expires_at, ch);
    ++counters.expiries;
    st = proto::Status::kHoldExpired;
  } else if (h.state == HoldState::kHeld && commit) {
    commit_hold(h, now, ch);
    ++counters.commits;
  } else if (h.state == HoldState::kHeld) {
    end_hold(h, HoldState::kReleased, now, ch);
    ++counters.releases;
  } else if (h.state == HoldState::kExpired) {
    st = proto::Status::kHoldExpired;
  } else {
    // Released (by its buyer: COMMIT or RELEASE again is done, as docs/protocol.md says) or
    // committed (done for commit; a sold order is never returned by release).
    st = proto::Status::kAlreadyDone;
  }
  hold_view(h, out);
  return st;
}

Verdict Book::commit(uint64_t hold_id, int64_t now, proto::HoldView& out, Changes& ch,
                     std::string_view user) {
  return impl_->settle(hold_id, user, now, true, out, ch);
}

Verdict Book::release(uint64_t hold_id, int64_t now, proto::HoldView& out, Changes& ch,
                      std::string_view user) {
  return impl_->settle(hold_id, user, now, false, out, ch);
}

}  // namespace stockd
