// The model side of the ledger: seeding, topping up, handing out work, absorbing answers.
// verify() lives in ledger_verify.cc.
#include "ledger.h"

#include <algorithm>
#include <chrono>

#include "ledger_util.h"

namespace stockd::crash {

using proto::HoldState;
using proto::Status;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<SkuSpec> default_skus() {
  return {
      {"tee", 1000, 4, false},  // per-user limit: the global users run into it
      {"mug", 1000, 0, false},
      {"cap", 500, 2, false},
      {"code", 300, 3, true},  // a pool of unique codes, one per unit
  };
}

const char* problem_name(Problem p) {
  switch (p) {
    case Problem::kLostAck:
      return "LOST_ACK";
    case Problem::kOversold:
      return "OVERSOLD";
    case Problem::kDuplicateCode:
      return "DUPLICATE_CODE";
    case Problem::kAppliedTwice:
      return "APPLIED_TWICE";
    case Problem::kUnexplained:
      return "UNEXPLAINED";
    case Problem::kLimit:
      return "LIMIT";
    case Problem::kExpiry:
      return "EXPIRY";
    case Problem::kServer:
      return "SERVER";
  }
  return "?";
}

std::string describe(const std::vector<Violation>& v, size_t max_lines) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max_lines; ++i) {
    out += std::string("  ") + problem_name(v[i].problem) + ": " + v[i].what + "\n";
  }
  if (v.size() > max_lines) out += "  ... and " + std::to_string(v.size() - max_lines) + " more\n";
  return out;
}

std::string refusals_text(const Counts& c) {
  std::string s;
  for (const auto& [st, n] : c.refusals) {
    s += (s.empty() ? "" : ", ") + std::string(proto::status_name(st)) + " " + std::to_string(n);
  }
  return s;
}

Ledger::Ledger(std::vector<SkuSpec> skus) : skus_(std::move(skus)) {}

namespace {

std::vector<std::string> make_codes(const std::string& sku, int batch, uint64_t n) {
  std::vector<std::string> codes;
  for (uint64_t i = 0; i < n; ++i) {
    codes.push_back(sku + "-" + std::to_string(batch) + "-" + std::to_string(i));
  }
  return codes;
}

}  // namespace

std::string Ledger::seed(Client& admin) {
  for (const SkuSpec& s : skus_) {
    proto::SkuSetReq req;
    req.sku = s.id;
    req.mask = proto::kSetPerUserLimit | (s.pool ? 0 : proto::kSetTotal);
    req.total = s.pool ? 0 : s.units;
    req.per_user_limit = s.per_user_limit;
    auto r = admin.sku_set(req);
    if (!r.ok()) return "SKU_SET " + s.id + ": " + reply_text(r);
    total_[s.id] = s.pool ? 0 : s.units;
  }
  return top_up(admin);
}

std::string Ledger::top_up(Client& admin) {
  for (const SkuSpec& s : skus_) {
    auto view = admin.sku_get(s.id);
    if (!view.ok()) return "SKU_GET " + s.id + ": " + reply_text(view);
    if (view.body.available * 3 >= s.units) continue;
    if (s.pool) {
      proto::CodesLoadReq req{s.id, make_codes(s.id, code_batches_++, s.units)};
      auto r = admin.codes_load(req);
      if (!r.ok()) return "CODES_LOAD " + s.id + ": " + reply_text(r);
      codes_[s.id].insert(req.codes.begin(), req.codes.end());
    } else {
      auto r = admin.restock(s.id, static_cast<int64_t>(s.units));
      if (!r.ok()) return "RESTOCK " + s.id + ": " + reply_text(r);
    }
    total_[s.id] += s.units;
  }
  return "";
}

Work Ledger::work_for(int thread, std::mt19937_64& rng) const {
  Work w;
  for (const auto& [id, h] : holds_) {
    if (h.owner != thread) continue;
    if (h.state == HoldState::kHeld) {
      w.held.emplace_back(id, h.user);
    } else if (rng() % 64 == 0 && w.finished.size() < 4) {
      w.finished.emplace_back(id, h.user);
    }
  }
  for (int i = 0; i < 6 && !known_keys_.empty(); ++i) {
    const Key& k = keys_.at(known_keys_[rng() % known_keys_.size()]);
    Op op = k.request;
    op.is_claim = op.kind == Kind::kClaim;
    op.kind = Kind::kReplay;
    op.thread = thread;
    w.replays.push_back(op);
  }
  return w;
}

std::vector<Violation> Ledger::absorb(const std::vector<Op>& ops) {
  std::vector<Violation> out;
  for (const Op& op : ops) {
    ++counts_.ops;
    switch (op.kind) {
      case Kind::kReserve:
      case Kind::kClaim:
        absorb_new(op, out);
        break;
      case Kind::kReplay:
        absorb_replay(op, out);
        break;
      case Kind::kCommit:
      case Kind::kRelease:
        absorb_finish(op, out);
        break;
    }
  }
  return out;
}

// The hold an acknowledged RESERVE or CLAIM describes, checked against its request.
void Ledger::absorb_new(const Op& op, std::vector<Violation>& out) {
  const bool claim = op.kind == Kind::kClaim;
  const std::string& key = claim ? op.claim.key : op.reserve.key;
  auto [it, inserted] = keys_.try_emplace(key);
  if (!inserted) {
    add(out, Problem::kServer, "test bug: key " + key + " sent twice as a new request");
    return;
  }
  Key& k = it->second;
  k.request = op;
  if (!op.answered()) {
    k.pending = true;
    pending_keys_.push_back(key);
    ++counts_.unanswered;
    if (op.transport && op.status != Status::kStorageUnavailable) {
      add(out, Problem::kServer,
          "key " + key + " answered " + proto::status_name(op.status) + ": " + op.error);
    }
    return;
  }
  if (op.status != Status::kOk) {
    k.refused = true;
    ++counts_.refused;
    ++counts_.refusals[op.status];
    return;
  }
  ++counts_.acked;
  Hold h = claim ? hold_of_claim(op) : hold_of_reserve(op);
  h.owner = op.thread;
  std::string why = request_mismatch(op, h.state, h.lines, h.codes, h.expires_at_ms, op.answered_ms,
                                     false, codes_);
  if (!why.empty()) add(out, Problem::kServer, "key " + key + " answered " + why);
  if (holds_.contains(h.id)) {
    add(out, Problem::kAppliedTwice,
        hold_name(h.id) + " acknowledged for key " + key + " and for key " + holds_[h.id].key);
    return;
  }
  if (claim && !claimed_codes_.insert(h.codes.front().code).second) {
    add(out, Problem::kDuplicateCode,
        "code " + h.codes.front().code + " handed out by a second acknowledged claim (" +
            hold_name(h.id) + ", key " + key + ")");
  }
  k.hold = h.id;
  k.acked = true;
  fresh_keys_.push_back(key);
  known_keys_.push_back(key);
  holds_[h.id] = std::move(h);
}

Ledger::Hold Ledger::hold_of_claim(const Op& op) {
  Hold h;
  h.id = op.claimed.order_id;
  h.user = op.claim.user;
  h.key = op.claim.key;
  h.lines = {{op.claim.sku, 1}};
  h.codes = {{op.claim.sku, op.claimed.code}};
  h.state = HoldState::kCommitted;
  return h;
}

Ledger::Hold Ledger::hold_of_reserve(const Op& op) {
  Hold h;
  h.id = op.reserved.hold_id;
  h.user = op.reserve.user;
  h.key = op.reserve.key;
  h.lines = op.reserve.lines;
  h.codes = op.reserved.codes;
  h.held_first = op.reserved.state == HoldState::kHeld;
  h.state = op.reserved.state;
  h.expires_at_ms = op.reserved.expires_at_ms;
  return h;
}

// An acknowledged key sent again must give back the first answer.
void Ledger::absorb_replay(const Op& op, std::vector<Violation>& out) {
  const std::string& key = op.is_claim ? op.claim.key : op.reserve.key;
  const Key& k = keys_.at(key);
  ++counts_.key_retries;
  if (!op.answered()) return;
  const Hold& h = holds_.at(k.hold);
  if (op.status != Status::kOk) {
    add(out, Problem::kLostAck,
        "key " + key + " (first answer " + hold_name(h.id) + ") answered " +
            proto::status_name(op.status) + " when sent again");
    return;
  }
  const uint64_t got = op.is_claim ? op.claimed.order_id : op.reserved.hold_id;
  // The first answer again: a held hold's showed no codes, even once they were sold.
  const bool same_codes =
      op.is_claim ? h.codes.size() == 1 && op.claimed.code == h.codes[0].code
                  : op.reserved.codes == (h.held_first ? std::vector<proto::SkuCode>{} : h.codes);
  if (got != h.id || !same_codes) {
    add(out, Problem::kAppliedTwice,
        "key " + key + " first made " + hold_name(h.id) + " " + codes_text(h.codes) +
            ", sent again it answered " + hold_name(got));
  }
}

// The answer to a COMMIT or RELEASE: a HoldView whose state is durable.
void Ledger::absorb_finish(const Op& op, std::vector<Violation>& out) {
  Hold& h = holds_.at(op.hold_id);
  const bool commit = op.kind == Kind::kCommit;
  const std::string what = std::string(commit ? "COMMIT of " : "RELEASE of ") + hold_name(h.id);
  if (!op.answered()) {
    (commit ? h.maybe_commit : h.maybe_release) = true;
    ++counts_.unanswered;
    if (op.transport && op.status != Status::kStorageUnavailable) {
      add(out, Problem::kServer,
          what + " answered " + proto::status_name(op.status) + ": " + op.error);
    }
    return;
  }
  ++counts_.acked;
  if (op.status == Status::kNotFound) {
    add(out, Problem::kLostAck, what + " (acknowledged " + state_name(h.state) + "): NOT_FOUND");
    return;
  }
  const HoldState s = op.view.state;
  if (!finish_answer_ok(commit, op.status, s)) {
    add(out, Problem::kServer,
        what + " answered " + proto::status_name(op.status) + " with state " + state_name(s));
    return;
  }
  std::string why = learn_codes(h, op.view);
  if (!why.empty() || !same_body(h, op.view, why)) {
    add(out, Problem::kServer, what + " answered " + why);
  }
  if (terminal(h.state)) {
    if (s != h.state) {
      add(out, Problem::kLostAck,
          hold_name(h.id) + " was acknowledged " + state_name(h.state) + ", later answered " +
              state_name(s));
    }
    return;
  }
  check_transition(h, s, commit, !commit, op.sent_ms, op.answered_ms, out);
  if (commit && op.status == Status::kOk && op.sent_ms >= h.expires_at_ms) {
    add(out, Problem::kExpiry,
        what + " sent " + std::to_string(op.sent_ms - h.expires_at_ms) +
            " ms after its deadline was answered OK");
  }
  h.state = s;
  h.maybe_commit = h.maybe_release = false;
}

// HELD -> `s`: a commit or release must have been sent (`commit_sent`, `release_sent` or an
// earlier unanswered one), an expiry must not come before the deadline. `t_end`: when `s` was
// seen at the latest.
void Ledger::check_transition(const Hold& h, HoldState s, bool commit_sent, bool release_sent,
                              int64_t t_begin, int64_t t_end, std::vector<Violation>& out) const {
  switch (s) {
    case HoldState::kHeld:
      if (t_begin > h.expires_at_ms + kExpiryGraceMs) {
        add(out, Problem::kExpiry,
            hold_name(h.id) + " still HELD " + std::to_string(t_begin - h.expires_at_ms) +
                " ms after its deadline");
      }
      break;
    case HoldState::kCommitted:
      if (!commit_sent && !h.maybe_commit) {
        add(out, Problem::kUnexplained,
            hold_name(h.id) + " (HELD) became COMMITTED though no COMMIT was sent");
      }
      break;
    case HoldState::kReleased:
      if (!release_sent && !h.maybe_release) {
        add(out, Problem::kUnexplained,
            hold_name(h.id) + " (HELD) became RELEASED though no RELEASE was sent");
      }
      break;
    case HoldState::kExpired:
      if (t_end < h.expires_at_ms) {
        add(out, Problem::kExpiry,
            hold_name(h.id) + " EXPIRED " + std::to_string(h.expires_at_ms - t_end) +
                " ms before its deadline");
      }
      break;
    case HoldState::kNone:
      add(out, Problem::kServer, hold_name(h.id) + " has state NONE");
      break;
  }
}

std::string Ledger::learn_codes(Hold& h, const proto::HoldView& v) const {
  if (!h.held_first || !h.codes.empty() || v.state != HoldState::kCommitted) return "";
  uint64_t units = 0;
  for (const auto& l : h.lines) units += codes_.contains(l.sku) ? l.qty : 0;
  if (v.codes.size() != units) {
    return std::to_string(v.codes.size()) + " codes for " + std::to_string(units) +
           " pool units, sold";
  }
  for (const auto& c : v.codes) {
    auto pool = codes_.find(c.sku);
    if (pool == codes_.end() || !pool->second.contains(c.code)) {
      return "code " + c.code + " that was never loaded for " + c.sku;
    }
  }
  h.codes = v.codes;
  return "";
}

bool Ledger::same_body(const Hold& h, const proto::HoldView& v, std::string& why) const {
  auto differs = [&](const std::string& field, const std::string& got, const std::string& want) {
    why = field + " " + got + ", acknowledged " + want;
    return false;
  };
  if (v.hold_id != h.id) return differs("hold id", std::to_string(v.hold_id), std::to_string(h.id));
  if (v.user != h.user) return differs("user", v.user, h.user);
  if (v.key != h.key) return differs("key", v.key, h.key);
  if (v.lines != h.lines) return differs("lines", lines_text(v.lines), lines_text(h.lines));
  // Shown once sold: a hold not (or not yet known) COMMITTED shows none.
  const std::vector<proto::SkuCode> none;
  const auto& want = v.state == HoldState::kCommitted ? h.codes : none;
  if (v.codes != want) return differs("codes", codes_text(v.codes), codes_text(want));
  if (v.expires_at_ms != h.expires_at_ms) {
    return differs("expires_at_ms", std::to_string(v.expires_at_ms),
                   std::to_string(h.expires_at_ms));
  }
  return true;
}

std::string request_mismatch(const Op& op, HoldState state, const std::vector<proto::Line>& lines,
                             const std::vector<proto::SkuCode>& codes, int64_t expires_at_ms,
                             int64_t seen_ms, bool found,
                             const std::map<std::string, std::set<std::string>>& pools) {
  const bool claim = op.kind == Kind::kClaim;
  const std::vector<proto::Line> want =
      claim ? std::vector<proto::Line>{{op.claim.sku, 1}} : op.reserve.lines;
  if (lines != want) return "lines " + lines_text(lines) + " for a request of " + lines_text(want);
  const int64_t ttl = claim ? 0 : op.reserve.ttl_ms;
  if (ttl == 0 && (state != HoldState::kCommitted || expires_at_ms != 0)) {
    return "state " + state_name(state) + " expiring at " + std::to_string(expires_at_ms) +
           " for a buy-now";
  }
  if (ttl > 0) {
    if (state != HoldState::kHeld && !(found && state == HoldState::kExpired)) {
      return "state " + state_name(state) + " for a new hold";
    }
    if (expires_at_ms < op.sent_ms + ttl || expires_at_ms > seen_ms + ttl) {
      return "expires_at_ms " + std::to_string(expires_at_ms) + " for ttl " + std::to_string(ttl) +
             " sent at " + std::to_string(op.sent_ms);
    }
  }
  uint64_t units = 0;  // one code per unit of every pool line, shown once sold
  for (const auto& l : lines) units += pools.contains(l.sku) ? l.qty : 0;
  const uint64_t shown = state == HoldState::kCommitted ? units : 0;
  if (codes.size() != shown) {
    return std::to_string(codes.size()) + " codes for " + std::to_string(units) + " pool units (" +
           state_name(state) + ")";
  }
  for (const auto& c : codes) {
    auto pool = pools.find(c.sku);
    if (pool == pools.end() || !pool->second.contains(c.code)) {
      return "code " + c.code + " that was never loaded for " + c.sku;
    }
  }
  return "";
}

}  // namespace stockd::crash
