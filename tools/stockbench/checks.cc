// Verdict checks that need only the clients' tally (shared by every target).
#include <algorithm>

#include "stockd/protocol.h"
#include "target.h"

namespace stockd::bench {

namespace {

std::string n(uint64_t v) { return std::to_string(v); }

Check codes_check(const Tally& t) {
  std::vector<std::string_view> codes(t.codes.begin(), t.codes.end());
  std::sort(codes.begin(), codes.end());
  auto dup = std::adjacent_find(codes.begin(), codes.end());
  if (dup != codes.end()) {
    return {"no code handed out twice", false, "code " + std::string(*dup) + " was claimed twice"};
  }
  for (std::string_view code : codes) {
    if (code.empty()) return {"no code handed out twice", false, "an OK claim carried no code"};
  }
  return {"no code handed out twice", true, n(codes.size()) + " distinct codes"};
}

Check limit_check(const Config& c, const Tally& t) {
  uint64_t most = 0, over = 0;
  for (const auto& [user, units] : t.user_units) {
    most = std::max(most, units);
    over += units > c.per_user_limit;
  }
  Check k{"per-user limit held", over == 0, ""};
  k.detail = n(t.user_units.size()) + " buyer/SKU pairs, most " + n(most) + " units (limit " +
             n(c.per_user_limit) + ")";
  if (over > 0) k.detail += ", " + n(over) + " over the limit";
  return k;
}

}  // namespace

std::string status_text(uint16_t status) {
  if (status == kRedisError) return "REDIS_ERROR";
  if (status == 127) return "OTHER";
  return proto::status_name(static_cast<proto::Status>(status));
}

Check answers_check(const Tally& t) {
  const uint64_t business = t.answered - t.errors();
  Check k{"answers received", business > 0, ""};
  k.detail =
      n(business) + " business answers, " + n(t.errors()) + " errors, " + n(t.lost) + " unanswered";
  if (!k.ok && !t.first_error.empty()) k.detail += "; first error: " + t.first_error;
  return k;
}

void add_client_checks(const Config& c, const Tally& t, Verdict& v) {
  if (c.uses(Workload::kClaim)) v.checks.push_back(codes_check(t));
  if (c.per_user_limit > 0) v.checks.push_back(limit_check(c, t));
  if (c.retry_rate > 0) {
    Check k{"retries answered with the first answer", t.replay_mismatches == 0, ""};
    k.detail = n(t.replays) + " replays matched, " + n(t.replay_mismatches) + " made a new order";
    v.checks.push_back(k);
  }
}

}  // namespace stockd::bench
