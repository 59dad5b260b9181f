// The flash-sale workload. See workload.h.
#include "workload.h"

#include <algorithm>
#include <cmath>

namespace stockd::bench {

namespace {

bool keyed_kind(OpKind k) {
  return k == OpKind::kBuyNow || k == OpKind::kReserve || k == OpKind::kClaim;
}
bool changes_stock(OpKind k) {
  return k == OpKind::kBuyNow || k == OpKind::kCommit || k == OpKind::kClaim;
}

uint32_t pick(Rng& rng, const std::vector<double>& cdf) {
  const double u = rng.unit() * cdf.back();
  auto it = std::upper_bound(cdf.begin(), cdf.end(), u);
  return static_cast<uint32_t>(std::min<size_t>(it - cdf.begin(), cdf.size() - 1));
}

// Records the answer to a keyed request; true if it is a new order (not a replay).
bool fresh_answer(const Op& op, const Reply& r, ConnKeys& k, Tally& t) {
  if (op.key != k.answer_key) k.answer_key = op.key, k.answer_order = 0;
  if (r.status != kStatusOk) return false;
  if (k.answer_order == 0) {
    k.answer_order = r.id;
    return true;
  }
  if (k.answer_order == r.id) {
    ++t.replays;
    return false;
  }
  ++t.replay_mismatches;  // the server made a second order for one key: count it too
  return true;
}

void add_units(const Config& c, const Op& op, Tally& t) {
  t.sold[op.sku] += op.qty;
  if (c.per_user_limit > 0) t.user_units[op.sku * c.users + op.user] += op.qty;
}

}  // namespace

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

Generator::Generator(const Config& c, uint32_t thread, uint64_t seed)
    : c_(c),
      rng_(seed),
      key_base_(static_cast<uint64_t>(thread + 1) << 40),
      keyed_(c.keys && (c.target == TargetKind::kStockd || c.redis_script == "order")) {
  if (c.zipf > 0 && c.skus.size() > 1) {
    double sum = 0;
    for (size_t i = 0; i < c.skus.size(); ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), c.zipf);
      sku_cdf_.push_back(sum);
    }
  }
  double sum = 0;
  for (const MixEntry& e : c.mix) mix_cdf_.push_back(sum += e.weight);
}

uint32_t Generator::pick_sku() {
  if (!sku_cdf_.empty()) return pick(rng_, sku_cdf_);
  return static_cast<uint32_t>(rng_.below(c_.skus.size()));
}

Workload Generator::pick_workload() {
  if (c_.workload != Workload::kMixed) return c_.workload;
  return c_.mix[pick(rng_, mix_cdf_)].workload;
}

Op Generator::next(ConnKeys& k) {
  if (c_.retry_rate > 0 && k.has_last && rng_.unit() < c_.retry_rate) {
    Op again = k.last;
    again.retry = true;
    return again;
  }
  Op op;
  op.sku = pick_sku();
  op.user = static_cast<uint32_t>(rng_.below(c_.users));
  op.qty = c_.qty;
  switch (pick_workload()) {
    case Workload::kBuyNow:
      op.kind = OpKind::kBuyNow;
      break;
    case Workload::kReserveCommit:
      op.kind = OpKind::kReserve, op.then = OpKind::kCommit;
      break;
    case Workload::kReserveRelease:
      op.kind = OpKind::kReserve, op.then = OpKind::kRelease;
      break;
    case Workload::kReserveHold:
      op.kind = OpKind::kReserve, op.then = OpKind::kHello;  // nothing follows
      break;
    case Workload::kClaim:
      op.kind = OpKind::kClaim, op.qty = 1;
      break;
    case Workload::kQuery:
    case Workload::kMixed:
      op.kind = OpKind::kQuery;
      break;
  }
  if (keyed_ && keyed_kind(op.kind)) {
    op.key = key_base_ | ++key_seq_;
    k.last = op;
    k.has_last = true;
  }
  return op;
}

uint64_t Tally::errors() const {
  uint64_t n = 0;
  for (size_t s = kStatusErrorMin; s < by_status.size(); ++s) n += by_status[s];
  return n;
}

void Tally::merge(const Tally& o) {
  latency.merge(o.latency);
  sent += o.sent, answered += o.answered, lost += o.lost, dropped += o.dropped;
  disconnects += o.disconnects, lost_reserves += o.lost_reserves;
  replays += o.replays, replay_mismatches += o.replay_mismatches;
  for (size_t i = 0; i < by_status.size(); ++i) by_status[i] += o.by_status[i];
  for (size_t i = 0; i < sold.size() && i < o.sold.size(); ++i) {
    sold[i] += o.sold[i], held[i] += o.held[i], lost_units[i] += o.lost_units[i];
  }
  for (const auto& [key, units] : o.user_units) user_units[key] += units;
  codes.insert(codes.end(), o.codes.begin(), o.codes.end());
  if (first_error.empty()) first_error = o.first_error;
}

void Tally::note_lost(const Op& op) {
  if (op.kind == OpKind::kHello) return;
  ++lost;
  if (changes_stock(op.kind)) lost_units[op.sku] += op.qty;
  if (op.kind == OpKind::kReserve) ++lost_reserves;
}

std::optional<Op> account(const Config& c, const Op& op, const Reply& r, ConnKeys& k, Tally& t) {
  ++t.answered;
  ++t.by_status[r.status < 127 ? r.status : 127];
  if (r.status >= kStatusErrorMin && t.first_error.empty()) t.first_error = r.message;
  const bool ok = r.status == kStatusOk;
  const bool fresh = op.key != 0 ? fresh_answer(op, r, k, t) : ok;
  switch (op.kind) {
    case OpKind::kBuyNow:
      if (fresh) add_units(c, op, t);
      break;
    case OpKind::kClaim:
      if (fresh) add_units(c, op, t), t.codes.push_back(r.code);
      break;
    case OpKind::kReserve: {
      if (!fresh) break;
      t.held[op.sku] += op.qty;
      if (op.then == OpKind::kHello) break;  // the hold stays live
      Op next = op;
      next.kind = op.then, next.key = 0, next.retry = false, next.hold_id = r.id;
      return next;
    }
    case OpKind::kCommit:
      if (ok) t.held[op.sku] -= op.qty, add_units(c, op, t);
      break;
    case OpKind::kRelease:
      if (ok) t.held[op.sku] -= op.qty;
      break;
    case OpKind::kHello:
    case OpKind::kQuery:
      break;
  }
  return std::nullopt;
}

}  // namespace stockd::bench
