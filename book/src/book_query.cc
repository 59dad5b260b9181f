// The book's queries (no changes) and its small accessors.
#include <algorithm>
#include <utility>

#include "book_impl.h"

namespace stockd {

using book_detail::Sku;

proto::Status Book::hold_get(uint64_t hold_id, proto::HoldView& out, std::string_view user) const {
  out = proto::HoldView{};
  const book_detail::Hold* found = impl_->holds.find(hold_id);
  if (found == nullptr || !owned_by(*found, user)) return proto::Status::kNotFound;
  impl_->hold_view(*found, out);
  return proto::Status::kOk;
}

proto::Status Book::sku_get(std::string_view sku, proto::SkuView& out) const {
  out = proto::SkuView{};
  const Sku* s = impl_->find_sku(sku);
  if (s == nullptr) return proto::Status::kNotFound;
  sku_view(*s, out);
  return proto::Status::kOk;
}

void Book::sku_list(const proto::SkuListReq& req, proto::SkuListResp& out, size_t bytes_max) const {
  out.skus.clear();
  const uint32_t limit = std::min(req.limit, proto::kSkuListMax);
  size_t bytes = 0;
  for (auto it = impl_->sku_order.upper_bound(req.after);
       it != impl_->sku_order.end() && out.skus.size() < limit; ++it) {
    proto::SkuView v;
    sku_view(*impl_->find_sku(*it), v);
    bytes += proto::encoded_bytes(v);
    if (bytes > bytes_max && !out.skus.empty()) break;
    out.skus.push_back(std::move(v));
  }
}

void Book::stats(std::vector<proto::Stat>& out) const {
  const Impl& m = *impl_;  // O(1): the unit sums are kept as units move (Impl::units)
  const BookCounters& c = m.counters;
  const std::pair<const char*, uint64_t> rows[] = {
      {"skus", m.skus.size()},
      {"live_holds", m.deadlines.size()},
      {"finished_holds", m.holds.size() - m.deadlines.size()},
      {"idem_keys", m.idem.size()},
      {"codes", m.codes.size()},
      {"reserves_ok", c.reserves_ok},
      {"sold_out", c.sold_out},
      {"limit_exceeded", c.limit_exceeded},
      {"commits", c.commits},
      {"releases", c.releases},
      {"expiries", c.expiries},
      {"claims_ok", c.claims_ok},
      {"idem_hits", c.idem_hits},
      {"units_total", m.units.total},
      {"units_available", m.units.available},
      {"units_held", m.units.held},
      {"units_sold", m.units.sold},
      {"outbox_next_seq", m.next_outbox_seq},
      {"next_hold_id", m.next_hold_seq},
  };
  for (const auto& [name, value] : rows) out.push_back({name, value});
}

const BookCounters& Book::counters() const { return impl_->counters; }
size_t Book::sku_count() const { return impl_->skus.size(); }
size_t Book::live_holds() const { return impl_->deadlines.size(); }

}  // namespace stockd
