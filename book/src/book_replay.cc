// Replay: a logged decision made again through the same code as the live request (the way
// leveldb and Redis replay their logs through their write paths), so that replay cannot drift
// from what was decided. The entry's outcome (hold id, codes) is compared with the replayed one:
// a mismatch means the log does not follow from this state, and recovery stops there.
#include <algorithm>

#include "book_impl.h"

namespace stockd {

using book_detail::Hold;
using proto::HoldState;

namespace {

std::string op_name(rec::Op op) { return std::string(1, static_cast<char>(op)); }

// A logged decision that does not follow from the book's state: a damaged or foreign log.
stockd::Status mismatch(const rec::Decision& d, const std::string& what) {
  return stockd::Status::Corruption("entry '" + op_name(d.op) + "' at " + std::to_string(d.at_ms) +
                                    " (hold " + std::to_string(d.hold_id) + "): " + what);
}
stockd::Status logged_wrong(std::string what) {
  return stockd::Status::Corruption(std::move(what));
}

bool same_codes(const rec::Decision& d, const std::vector<proto::SkuCode>& got) {
  if (got.size() != d.codes.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].code != d.codes[i].code || got[i].sku != d.lines[d.codes[i].line].sku) return false;
  }
  return true;
}

// Restores the flag on every way out of replay().
struct Replaying {
  bool& flag;
  explicit Replaying(bool& f) : flag(f) { flag = true; }
  ~Replaying() { flag = false; }
};

}  // namespace

stockd::Status Book::Impl::expire_logged(uint64_t hold_id, int64_t at, Changes& ch) {
  Hold* found = holds.find(hold_id);
  if (found == nullptr || found->state != HoldState::kHeld)
    return logged_wrong("no such live hold");
  Hold& h = *found;
  if (h.expires_at != at) return logged_wrong("its deadline is " + std::to_string(h.expires_at));
  end_hold(h, HoldState::kExpired, h.expires_at, ch);
  ++counters.expiries;
  return stockd::Status::Ok();
}

stockd::Status Book::Impl::forget_logged(uint64_t hold_id, Changes& ch) {
  Hold* h = holds.find(hold_id);
  if (h == nullptr || h->state == HoldState::kHeld) return logged_wrong("no such finished hold");
  // Its retention queue names it, near its front; its entry goes with it.
  Ring<book_detail::Finished>& fifo = fifo_of(*h);
  book_detail::Finished e;
  if (!fifo.empty() && fifo.front().id == hold_id) {
    e = fifo.front();  // the usual case: forgotten oldest first
    prefetch_forget(fifo, kForgetAhead);
    fifo.pop_front();
  } else {
    auto q = std::find_if(fifo.begin(), fifo.end(),
                          [hold_id](const book_detail::Finished& f) { return f.id == hold_id; });
    if (q == fifo.end()) return logged_wrong("a finished hold not in the retention queue");
    e = *q;
    fifo.erase(q);
  }
  forget(e, h->finished_at, ch);
  return stockd::Status::Ok();
}

void Book::prefetch(const rec::Decision& d) const {
  using rec::Op;
  if (d.op != Op::kReserve && d.op != Op::kClaim && d.op != Op::kCommit && d.op != Op::kRelease &&
      d.op != Op::kExpire) {
    return;
  }
  prefetch(d.hold_id, d.op == Op::kReserve || d.op == Op::kClaim ? d.key : std::string_view());
  if (d.op == Op::kReserve && !d.lines.empty()) prefetch_sku(d.lines[0].sku);
  if (d.op == Op::kClaim) prefetch_sku(d.sku);
}

void Book::prefetch_sku_of(const rec::Decision& d) const {
  if (d.op == rec::Op::kReserve && !d.lines.empty()) prefetch_sku_itself(d.lines[0].sku);
  if (d.op == rec::Op::kClaim) prefetch_sku_itself(d.sku);
}

void Book::prefetch(uint64_t hold_id, std::string_view key) const {
  impl_->holds.prefetch(hold_id);
  prefetch_key(key);
}

void Book::prefetch_hold(uint64_t hold_id, HoldPart part) const {
  const Hold* h = impl_->holds.find(hold_id);
  if (h == nullptr) return;
  switch (part) {
    case HoldPart::kHold:
      stockd::prefetch(h);
      stockd::prefetch(reinterpret_cast<const char*>(h) + 64);
      return;
    case HoldPart::kLines:
      if (!h->lines.empty()) stockd::prefetch(h->lines.data());
      return;
    case HoldPart::kSku:
      if (!h->lines.empty()) book_detail::prefetch_sku_node(h->lines.front().sku);
      return;
  }
}

void Book::prefetch_sku(std::string_view sku) const { impl_->sku_index.prefetch(sku); }

void Book::prefetch_sku_itself(std::string_view sku) const {
  if (const book_detail::Sku* s = impl_->sku_index.home_owner(sku))
    book_detail::prefetch_sku_node(s);
}

void Book::prefetch_key(std::string_view key) const {
  if (!key.empty()) impl_->idem.prefetch(key);
}

stockd::Status Book::replay(const rec::Decision& d, Changes& ch) {
  Impl& m = *impl_;
  Replaying on(m.replaying);
  using rec::Op;
  switch (d.op) {
    case Op::kReserve: {
      // Kept between calls: a replay of a million reservations allocates for none of them.
      thread_local proto::ReserveReq req;
      thread_local proto::ReserveResp out;
      req.user.assign(d.user);
      req.key.assign(d.key);
      req.ttl_ms = d.ttl_ms;
      req.lines.resize(d.lines.size());
      for (size_t i = 0; i < d.lines.size(); ++i) {
        req.lines[i].sku.assign(d.lines[i].sku);
        req.lines[i].qty = d.lines[i].qty;
      }
      const Verdict v = reserve(req, d.at_ms, out, ch);
      if (v != proto::Status::kOk) {
        return mismatch(d,
                        "replayed as " + std::string(proto::status_name(v.status)) + " " + v.why);
      }
      if (out.hold_id != d.hold_id) {
        return mismatch(d, "replayed as hold " + std::to_string(out.hold_id));
      }
      // The hold's codes, not the answer's (a held hold's answer shows none).
      thread_local std::vector<proto::SkuCode> taken;
      hold_codes(*m.holds.find(out.hold_id), taken);
      if (!same_codes(d, taken)) return mismatch(d, "replayed with other codes");
      return stockd::Status::Ok();
    }
    case Op::kClaim: {
      proto::ClaimReq req{std::string(d.sku), std::string(d.user), std::string(d.key)};
      proto::ClaimResp out;
      const Verdict v = claim(req, d.at_ms, out, ch);
      if (v != proto::Status::kOk) {
        return mismatch(d,
                        "replayed as " + std::string(proto::status_name(v.status)) + " " + v.why);
      }
      if (out.order_id != d.hold_id || out.code != d.codes.front().code) {
        return mismatch(d,
                        "replayed as hold " + std::to_string(out.order_id) + " code " + out.code);
      }
      return stockd::Status::Ok();
    }
    case Op::kCommit:
    case Op::kRelease: {
      proto::HoldView view;
      const bool commit = d.op == Op::kCommit;
      const proto::Status st = m.settle(d.hold_id, {}, d.at_ms, commit, view, ch);
      if (st != proto::Status::kOk)
        return mismatch(d, "replayed as " + std::string(proto::status_name(st)));
      return stockd::Status::Ok();
    }
    case Op::kExpire:
      if (stockd::Status s = m.expire_logged(d.hold_id, d.at_ms, ch); !s.ok()) {
        return mismatch(d, s.message());
      }
      return stockd::Status::Ok();
    case Op::kForget:
      if (stockd::Status s = m.forget_logged(d.hold_id, ch); !s.ok()) {
        return mismatch(d, s.message());
      }
      return stockd::Status::Ok();
    case Op::kSkuSet: {
      proto::SkuSetReq req{std::string(d.sku), d.mask,        d.total,
                           d.per_user_limit,   d.opens_at_ms, d.closes_at_ms};
      proto::SkuView out;
      const Verdict v = sku_set(req, d.at_ms, out, ch);
      if (v != proto::Status::kOk) return mismatch(d, "SKU_SET replayed as " + v.why);
      return stockd::Status::Ok();
    }
    case Op::kRestock: {
      proto::SkuView out;
      const Verdict v = restock({std::string(d.sku), d.delta}, d.at_ms, out, ch);
      if (v != proto::Status::kOk) return mismatch(d, "RESTOCK replayed as " + v.why);
      return stockd::Status::Ok();
    }
    case Op::kCodesLoad: {
      proto::CodesLoadReq req{std::string(d.sku), {}};
      req.codes.reserve(d.pool.size());
      for (std::string_view c : d.pool) req.codes.emplace_back(c);
      proto::CodesLoadResp out;
      const Verdict v = codes_load(req, d.at_ms, out, ch);
      if (v != proto::Status::kOk) return mismatch(d, "CODES_LOAD replayed as " + v.why);
      return stockd::Status::Ok();
    }
    case Op::kSaleClose: {
      proto::SkuView out;
      const Verdict v = sale_close(d.sku, d.at_ms, out, ch);
      if (v != proto::Status::kOk) return mismatch(d, "SALE_CLOSE replayed as " + v.why);
      return stockd::Status::Ok();
    }
    case Op::kHoldIdKey:
      if (!set_hold_id_key({d.key0, d.key1}, d.at_ms, ch)) {
        return mismatch(d, "the key of hold ids changes after holds were made");
      }
      return stockd::Status::Ok();
    case Op::kOutboxAck:
      outbox_ack(d.upto, d.at_ms, ch);
      return stockd::Status::Ok();
  }
  return mismatch(d, "unknown entry");
}

}  // namespace stockd
