// The book's admin operations: create/update a SKU, restock, load codes, close a sale.
//
// Every refusal changes nothing. Rules the header leaves open, made here:
// - sku_set creates a SKU with total 0 when kSetTotal is not in the mask (how a code pool
//   starts); a total is at most kSkuUnitsMax. Unknown mask bits and negative times are
//   BAD_REQUEST.
// - Lowering a per-user limit below what some user already holds or bought is BELOW_COMMITTED
//   (the limit is a promise check_invariants() keeps). That check walks the SKU's users, once,
//   on an admin call.
// - Per-user units are counted only while a SKU has a limit, so that a sale without one stores
//   no row per buyer. Setting a limit on a SKU that had none counts the units of the holds still
//   in the book (live ones, and bought ones within their retention), one walk over the holds;
//   removing the limit forgets the counts.
// - A closed sale stays closed: sale_close is final, a new window does not reopen it.
// - codes_load with no codes is BAD_REQUEST; codes already in the SKU are skipped (a load cut
//   short is finished by running it again), codes of another SKU are DUPLICATE_CODE.
#include <algorithm>
#include <unordered_set>

#include "book_impl.h"

namespace stockd {

using book_detail::Sku;

namespace {

constexpr uint8_t kSetMask =
    proto::kSetTotal | proto::kSetPerUserLimit | proto::kSetOpensAt | proto::kSetClosesAt;

bool users_within(const book_detail::StrMap<uint64_t>& users, uint32_t limit) {
  if (limit == 0) return true;
  return std::all_of(users.begin(), users.end(),
                     [limit](const auto& u) { return u.second <= limit; });
}

}  // namespace

// Units each user holds or bought of `s`, among the holds in the book.
book_detail::StrMap<uint64_t> Book::Impl::count_users(const Sku& s) const {
  book_detail::StrMap<uint64_t> users;
  for (const auto& [id, h] : holds) {
    if (h.state != proto::HoldState::kHeld && h.state != proto::HoldState::kCommitted) continue;
    for (const book_detail::HoldLine& l : h.lines) {
      if (l.sku == &s) users[h.user] += l.qty;
    }
  }
  return users;
}

Verdict Book::sku_set(const proto::SkuSetReq& req, int64_t now, proto::SkuView& out, Changes& ch) {
  Impl& m = *impl_;
  out = proto::SkuView{};
  m.sweep(now, ch);  // so that held counts are current before a new total is checked
  if (!book_detail::sku_id_ok(req.sku)) return m.refuse("sku_set: " + book_detail::sku_rule());
  if ((req.mask & ~kSetMask) != 0) return m.refuse("sku_set: unknown mask bits");
  // Fields outside the mask are ignored, whatever they hold (protocol.md 7.4).
  if (((req.mask & proto::kSetOpensAt) && req.opens_at_ms < 0) ||
      ((req.mask & proto::kSetClosesAt) && req.closes_at_ms < 0)) {
    return m.refuse("sku_set: opens_at and closes_at must not be negative");
  }
  if ((req.mask & proto::kSetTotal) && req.total > book_detail::kSkuUnitsMax) {
    return m.refuse("sku_set: total is over 2^63-1");
  }
  Sku* s = m.find_sku(req.sku);
  std::optional<book_detail::StrMap<uint64_t>> recount;  // a limit on a SKU that had none
  const bool set_limit = (req.mask & proto::kSetPerUserLimit) != 0;
  const int64_t opens = (req.mask & proto::kSetOpensAt) ? req.opens_at_ms : s ? s->opens_at : 0;
  const int64_t closes = (req.mask & proto::kSetClosesAt) ? req.closes_at_ms : s ? s->closes_at : 0;
  if (opens != 0 && closes != 0 && closes <= opens) {
    return m.refuse("sku_set: closes_at must be after opens_at");
  }
  if (s != nullptr) {
    if (req.mask & proto::kSetTotal) {
      if (s->pool)
        return m.refuse("sku_set: '" + req.sku + "' is a code pool: its codes define its total");
      if (req.total < s->held + s->sold) {
        sku_view(*s, out);
        return proto::Status::kBelowCommitted;
      }
    }
    if (set_limit && req.per_user_limit != 0 && s->limit == 0) {
      recount = m.count_users(*s);
    }
    const auto& users = recount ? *recount : s->users;
    if (set_limit && (recount || req.per_user_limit < s->limit) &&
        !users_within(users, req.per_user_limit)) {
      sku_view(*s, out);
      return proto::Status::kBelowCommitted;
    }
  } else {
    s = &m.add_sku(req.sku);
  }
  if (req.mask & proto::kSetTotal) {
    m.units.total += req.total - s->total;  // unsigned: wraps back when the total shrinks
    m.units.available += (req.total - s->held - s->sold) - s->available;
    s->total = req.total;
    s->available = req.total - s->held - s->sold;
  }
  if (set_limit) {
    // A new limit brings the counts; no limit takes them (and their rows) away.
    if (recount) s->users = std::move(*recount);
    if (recount || req.per_user_limit == 0) {
      if (ch.rows) {
        for (const auto& [user, units] : s->users) ch.users.emplace_back(std::string(s->id), user);
      }
    }
    if (req.per_user_limit == 0) s->users.clear();
    s->limit = req.per_user_limit;
  }
  s->opens_at = opens;
  s->closes_at = closes;
  m.changed(*s, ch);
  sku_view(*s, out);
  if (ch.log) {
    rec::Decision& d = book_detail::new_entry(rec::Op::kSkuSet, now);
    d.sku = req.sku;
    d.mask = req.mask;
    d.total = req.total;
    d.per_user_limit = req.per_user_limit;
    d.opens_at_ms = req.opens_at_ms;
    d.closes_at_ms = req.closes_at_ms;
    ch.writer().append(d);
  }
  return proto::Status::kOk;
}

Verdict Book::restock(const proto::RestockReq& req, int64_t now, proto::SkuView& out, Changes& ch) {
  out = proto::SkuView{};
  if (!book_detail::sku_id_ok(req.sku)) return impl_->refuse("restock: " + book_detail::sku_rule());
  Sku* s = impl_->find_sku(req.sku);
  if (s == nullptr) return proto::Status::kNotFound;
  sku_view(*s, out);
  if (s->pool)
    return impl_->refuse("restock: '" + req.sku + "' is a code pool: load codes instead");
  if (req.delta >= 0) {
    const uint64_t add = static_cast<uint64_t>(req.delta);
    if (add > book_detail::kSkuUnitsMax - s->total)
      return impl_->refuse("restock: total would pass 2^63-1");
    s->total += add;
    s->available += add;
    impl_->units.total += add;
    impl_->units.available += add;
  } else {
    // -(delta + 1) + 1 is |delta| without overflowing on INT64_MIN.
    const uint64_t sub = static_cast<uint64_t>(-(req.delta + 1)) + 1;
    if (sub > s->available)
      return proto::Status::kBelowCommitted;  // total would go under held + sold
    s->total -= sub;
    s->available -= sub;
    impl_->units.total -= sub;
    impl_->units.available -= sub;
  }
  if (req.delta != 0) impl_->changed(*s, ch);
  sku_view(*s, out);
  if (req.delta != 0 && ch.log) {
    rec::Decision& d = book_detail::new_entry(rec::Op::kRestock, now);
    d.sku = req.sku;
    d.delta = req.delta;
    ch.writer().append(d);
  }
  return proto::Status::kOk;
}

Verdict Book::codes_load(const proto::CodesLoadReq& req, int64_t now, proto::CodesLoadResp& out,
                         Changes& ch) {
  Impl& m = *impl_;
  out = proto::CodesLoadResp{};
  if (!book_detail::sku_id_ok(req.sku)) return m.refuse("codes_load: " + book_detail::sku_rule());
  Sku* s = m.find_sku(req.sku);
  if (s == nullptr) return proto::Status::kNotFound;
  sku_view(*s, out.sku);
  if (!s->pool && s->total != 0) {
    return m.refuse("codes_load: '" + req.sku +
                    "' sells counted units; a code pool starts as a SKU with total 0");
  }
  if (req.codes.empty()) return m.refuse("codes_load: no codes");
  if (!std::all_of(req.codes.begin(), req.codes.end(), book_detail::code_ok)) {
    return m.refuse("codes_load: every " + book_detail::size_rule("code", proto::kCodeBytesMax));
  }
  // A code already in this pool is skipped, so that a load cut short (a lost connection, a
  // refused request) is finished by running it again. One of another SKU, or repeated in the
  // request, is DUPLICATE_CODE and nothing is loaded: a code is never handed out twice.
  std::unordered_set<std::string_view, book_detail::StrHash> seen;
  seen.reserve(req.codes.size());
  std::vector<std::string_view> fresh;
  fresh.reserve(req.codes.size());
  for (const std::string& c : req.codes) {
    const auto known = m.codes.find(c);
    if (!seen.insert(c).second || (known != m.codes.end() && known->second.sku != s)) {
      out.duplicate = c;
      return proto::Status::kDuplicateCode;
    }
    if (known == m.codes.end()) fresh.push_back(c);
  }
  const size_t pool_size = s->codes.size() + fresh.size();
  const size_t pool_max = m.replaying ? UINT32_MAX : m.limits.codes_per_sku_max;
  if (pool_size > pool_max || pool_size > UINT32_MAX) {
    return m.refuse("codes_load: the pool would pass " +
                    std::to_string(m.limits.codes_per_sku_max) + " codes");
  }
  if (fresh.empty()) return proto::Status::kOk;  // every code is in the pool already
  s->pool = true;
  s->codes.reserve(s->codes.size() + fresh.size());
  for (std::string_view c : fresh) {
    const uint32_t index = static_cast<uint32_t>(s->codes.size());
    auto it = m.codes.emplace(std::string(c), book_detail::CodeLoc{s, index}).first;
    s->codes.push_back({&it->first, 0});
    s->free.push_back(index);
    std::push_heap(s->free.begin(), s->free.end(), std::greater<>());  // O(1): largest index
    ++s->total;
    ++s->available;
    ++m.units.total;
    ++m.units.available;
    if (ch.rows) ch.codes.emplace_back(std::string(s->id), index);
  }
  m.changed(*s, ch);
  sku_view(*s, out.sku);
  if (ch.log) {
    rec::Decision& d = book_detail::new_entry(rec::Op::kCodesLoad, now);
    d.sku = req.sku;
    d.pool.assign(fresh.begin(), fresh.end());
    ch.writer().append(d);
  }
  return proto::Status::kOk;
}

Verdict Book::sale_close(std::string_view sku, int64_t now, proto::SkuView& out, Changes& ch) {
  out = proto::SkuView{};
  impl_->sweep(now, ch);
  if (!book_detail::sku_id_ok(sku)) return impl_->refuse("sale_close: " + book_detail::sku_rule());
  Sku* s = impl_->find_sku(sku);
  if (s == nullptr) return proto::Status::kNotFound;
  if (!s->closed) {
    s->closed = true;
    impl_->changed(*s, ch);
    if (ch.log) {
      rec::Decision& d = book_detail::new_entry(rec::Op::kSaleClose, now);
      d.sku = sku;
      ch.writer().append(d);
    }
  }
  sku_view(*s, out);
  return proto::Status::kOk;
}

}  // namespace stockd
