// The checker side of the ledger: read a restarted server and hold it to the model.
#include <algorithm>
#include <chrono>
#include <thread>

#include "ledger.h"
#include "ledger_util.h"

namespace stockd::crash {

using proto::HoldState;
using proto::Status;

namespace {

constexpr size_t kPipelineDepth = 256;     // HOLD_GETs per flush
constexpr int64_t kSettleBudgetMs = 5000;  // time to find a moment without expiries
constexpr size_t kFreshRetries = 40;       // keys of the last phase sent again per verify()
constexpr size_t kOldRetries = 20;         // older keys sent again per verify()

bool read_skus(Client& admin, const std::vector<SkuSpec>& skus,
               std::map<std::string, proto::SkuView>& out, std::vector<Violation>& v) {
  for (const SkuSpec& s : skus) {
    auto r = admin.sku_get(s.id);
    if (!r.ok()) {
      const bool lost = r.transport_ok() && r.status == Status::kNotFound;
      add(v, lost ? Problem::kLostAck : Problem::kServer,
          "SKU_GET " + s.id + " (created and acknowledged): " + reply_text(r));
      return false;
    }
    out[s.id] = r.body;
  }
  return true;
}

bool read_next_hold_id(Client& admin, uint64_t& next, std::vector<Violation>& v) {
  auto r = admin.stats();
  if (r.ok()) {
    for (const auto& s : r.body.stats) {
      if (s.name == "next_hold_id") {
        next = s.value;
        return true;
      }
    }
  }
  add(v, Problem::kServer, "STATS without next_hold_id: " + reply_text(r));
  return false;
}

}  // namespace

struct Ledger::Snapshot {
  std::map<std::string, proto::SkuView> skus;
  uint64_t next_hold_id = 0;
  std::vector<proto::HoldView> views;  // holds read back
  std::vector<uint64_t> missing;       // ids asked for and NOT_FOUND
  int64_t t_begin = 0, t_end = 0;      // the reads happened between these
};

// HOLD_GET of every hold that may have changed (or of all), bracketed by two identical reads
// of the SKUs, so that holds and counts show one moment (an expiry in between changes both).
bool Ledger::read_state(Client& admin, bool full, Snapshot& snap, std::vector<Violation>& out) {
  const int64_t give_up = wall_ms() + kSettleBudgetMs;
  while (true) {
    snap = Snapshot{};
    snap.t_begin = wall_ms();
    std::map<std::string, proto::SkuView> before;
    if (!read_skus(admin, skus_, before, out)) return false;
    if (!read_next_hold_id(admin, snap.next_hold_id, out)) return false;
    std::set<uint64_t> ids;
    for (uint64_t id = full ? 1 : scanned_to_; id < snap.next_hold_id; ++id) ids.insert(id);
    for (const auto& [id, h] : holds_) {
      if (!h.checked || h.state == HoldState::kHeld || h.maybe_commit || h.maybe_release) {
        ids.insert(id);
      }
    }
    std::vector<uint64_t> list(ids.begin(), ids.end());
    for (size_t i = 0; i < list.size(); i += kPipelineDepth) {
      for (size_t j = i; j < std::min(list.size(), i + kPipelineDepth); ++j) {
        admin.queue(proto::Opcode::kHoldGet, proto::HoldReq{list[j], ""});
      }
      auto replies = admin.flush();
      for (size_t j = 0; j < replies.size(); ++j) {
        const auto& r = replies[j];
        if (r.transport && r.status == Status::kOk) {
          snap.views.push_back(std::get<proto::HoldView>(r.body));
        } else if (r.transport && r.status == Status::kNotFound) {
          snap.missing.push_back(list[i + j]);
        } else {
          add(out, Problem::kServer,
              "HOLD_GET " + std::to_string(list[i + j]) + ": " +
                  (r.transport ? proto::status_name(r.status) : r.error));
          return false;
        }
      }
    }
    if (!read_skus(admin, skus_, snap.skus, out)) return false;
    snap.t_end = wall_ms();
    if (snap.skus == before) return true;
    if (wall_ms() > give_up) {
      add(out, Problem::kServer, "SKU counts kept changing while no client ran");
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<Violation> Ledger::verify(Client& admin, Client& buyer, std::mt19937_64& rng,
                                      bool full) {
  std::vector<Violation> out;
  Snapshot snap;
  if (!read_state(admin, full, snap, out)) return out;
  for (uint64_t id : snap.missing) {
    auto it = holds_.find(id);
    if (it != holds_.end()) {
      add(out, Problem::kLostAck,
          hold_name(id) + " (key " + it->second.key + ", " + state_name(it->second.state) + ", " +
              lines_text(it->second.lines) + ") is NOT_FOUND after the restart");
    } else {
      add(out, Problem::kUnexplained,
          hold_name(id) + " is NOT_FOUND though next_hold_id is " +
              std::to_string(snap.next_hold_id) + " (a hole in the ids: half a batch?)");
    }
  }
  for (const proto::HoldView& v : snap.views) {
    if (holds_.contains(v.hold_id)) {
      check_hold(v, snap.t_begin, snap.t_end, out);
    } else {
      check_new_hold(v, snap.t_end, out);
    }
  }
  settle_pending();
  check_accounting(snap, out);
  check_codes(out);
  scanned_to_ = std::max(scanned_to_, snap.next_hold_id);
  retry_keys(buyer, rng, out);
  fresh_keys_.clear();
  return out;
}

// A hold of the model, read back: same body, and a state the acknowledged answers allow.
void Ledger::check_hold(const proto::HoldView& v, int64_t t_begin, int64_t t_end,
                        std::vector<Violation>& out) {
  Hold& h = holds_.at(v.hold_id);
  ++counts_.holds_checked;
  std::string why = learn_codes(h, v);
  if (!why.empty() || !same_body(h, v, why)) {
    add(out, Problem::kLostAck, hold_name(h.id) + " read back with " + why);
  }
  const HoldState s = v.state;
  if (terminal(h.state) && s != h.state) {
    add(out, Problem::kLostAck,
        hold_name(h.id) + " (key " + h.key + ") was acknowledged " + state_name(h.state) +
            ", the restarted server says " + state_name(s));
  } else if (h.state == HoldState::kHeld) {
    check_transition(h, s, false, false, t_begin, t_end, out);
    if ((s == HoldState::kCommitted && h.maybe_commit) ||
        (s == HoldState::kReleased && h.maybe_release)) {
      ++counts_.inflight_durable;
    } else if (h.maybe_commit || h.maybe_release) {
      ++counts_.inflight_lost;
    }
  }
  h.state = s;
  h.maybe_commit = h.maybe_release = false;
  h.checked = true;
}

// A hold nobody was told about: it must be the work of a request unanswered at the crash.
void Ledger::check_new_hold(const proto::HoldView& v, int64_t seen_ms,
                            std::vector<Violation>& out) {
  ++counts_.holds_checked;
  const std::string what = hold_name(v.hold_id) + " (key '" + v.key + "', user " + v.user + ", " +
                           state_name(v.state) + ", " + lines_text(v.lines) + ")";
  auto it = keys_.find(v.key);
  if (v.key.empty() || it == keys_.end()) {
    add(out, Problem::kUnexplained, what + " matches no request ever sent");
    return;
  }
  Key& k = it->second;
  if (k.hold != 0) {
    add(out, Problem::kAppliedTwice,
        what + ": its key already made " + hold_name(k.hold) + " (idempotency key applied twice)");
    return;
  }
  if (!k.pending) {
    add(out, Problem::kUnexplained,
        what + ": its request was answered " + proto::status_name(k.request.status) +
            ", which stores nothing");
    return;
  }
  const Op& req = k.request;
  const std::string& user = req.kind == Kind::kClaim ? req.claim.user : req.reserve.user;
  std::string why = v.user != user ? "user " + v.user + " for a request of " + user
                                   : request_mismatch(req, v.state, v.lines, v.codes,
                                                      v.expires_at_ms, seen_ms, true, codes_);
  if (!why.empty()) add(out, Problem::kUnexplained, what + " differs from its request: " + why);
  if (req.kind == Kind::kClaim && !v.codes.empty() &&
      !claimed_codes_.insert(v.codes.front().code).second) {
    add(out, Problem::kDuplicateCode,
        what + " bought code " + v.codes.front().code + ", which an earlier claim bought");
  }
  Hold h;
  h.id = v.hold_id;
  h.owner = req.thread;
  h.user = v.user;
  h.key = v.key;
  h.lines = v.lines;
  h.codes = v.codes;
  h.held_first = req.kind != Kind::kClaim && req.reserve.ttl_ms > 0;
  h.state = v.state;
  h.expires_at_ms = v.expires_at_ms;
  h.checked = true;
  holds_[h.id] = std::move(h);
  k.hold = v.hold_id;
  k.pending = false;
  fresh_keys_.push_back(v.key);
  known_keys_.push_back(v.key);
  ++counts_.inflight_durable;
}

// Unanswered requests that left no hold were simply not durable: allowed.
void Ledger::settle_pending() {
  for (const std::string& key : pending_keys_) {
    Key& k = keys_.at(key);
    if (k.pending) ++counts_.inflight_lost;
    k.pending = false;
  }
  pending_keys_.clear();
}

// Counts per SKU must be exactly what the holds add up to, and no user past a limit.
void Ledger::check_accounting(const Snapshot& snap, std::vector<Violation>& out) const {
  std::map<std::string, uint64_t> held, sold;
  std::map<std::pair<std::string, std::string>, uint64_t> units;
  for (const auto& [id, h] : holds_) {
    if (h.state != HoldState::kHeld && h.state != HoldState::kCommitted) continue;
    for (const auto& l : h.lines) {
      (h.state == HoldState::kHeld ? held : sold)[l.sku] += l.qty;
      units[{l.sku, h.user}] += l.qty;
    }
  }
  for (const SkuSpec& s : skus_) {
    const proto::SkuView& v = snap.skus.at(s.id);
    const std::string name = "sku " + s.id + " (total " + std::to_string(v.total) + ", available " +
                             std::to_string(v.available) + ", held " + std::to_string(v.held) +
                             ", sold " + std::to_string(v.sold) + ")";
    if (v.available + v.held + v.sold != v.total || v.total > (1ULL << 62)) {
      add(out, Problem::kOversold, name + ": available + held + sold != total");
    }
    if (v.total != total_.at(s.id)) {
      add(out, Problem::kOversold,
          name + ": the acknowledged total is " + std::to_string(total_.at(s.id)));
    }
    if (v.sold != sold[s.id] || v.held != held[s.id]) {
      add(out, Problem::kOversold,
          name + ": its holds add up to held " + std::to_string(held[s.id]) + ", sold " +
              std::to_string(sold[s.id]));
    }
    if (v.per_user_limit != s.per_user_limit) {
      add(out, Problem::kServer, name + ": per_user_limit " + std::to_string(v.per_user_limit));
    }
  }
  for (const auto& [su, n] : units) {
    auto spec = std::find_if(skus_.begin(), skus_.end(),
                             [&](const SkuSpec& s) { return s.id == su.first; });
    if (spec != skus_.end() && spec->per_user_limit != 0 && n > spec->per_user_limit) {
      add(out, Problem::kLimit,
          "user " + su.second + " holds or bought " + std::to_string(n) + " of " + su.first +
              ", limit " + std::to_string(spec->per_user_limit));
    }
  }
}

// A code is in at most one live (HELD or COMMITTED) hold.
void Ledger::check_codes(std::vector<Violation>& out) const {
  std::map<std::string, uint64_t> owner;
  for (const auto& [id, h] : holds_) {
    if (h.state != HoldState::kHeld && h.state != HoldState::kCommitted) continue;
    for (const auto& c : h.codes) {
      auto [it, fresh] = owner.emplace(c.code, id);
      if (!fresh) {
        add(out, Problem::kDuplicateCode,
            "code " + c.code + " is in " + hold_name(it->second) + " and in " + hold_name(id));
      }
    }
  }
}

// Known keys sent again must answer with their first hold (across the restart).
void Ledger::retry_keys(Client& buyer, std::mt19937_64& rng, std::vector<Violation>& out) {
  std::vector<std::string> picks = fresh_keys_;
  std::shuffle(picks.begin(), picks.end(), rng);
  if (picks.size() > kFreshRetries) picks.resize(kFreshRetries);
  for (size_t i = 0; i < kOldRetries && !known_keys_.empty(); ++i) {
    picks.push_back(known_keys_[rng() % known_keys_.size()]);
  }
  for (const std::string& key : picks) {
    Op op = keys_.at(key).request;
    op.is_claim = op.kind == Kind::kClaim;
    op.kind = Kind::kReplay;
    op.sent_ms = wall_ms();
    if (op.is_claim) {
      auto r = buyer.claim(op.claim);
      op.transport = r.transport;
      op.status = r.status;
      op.claimed = r.body;
      op.error = r.error;
    } else {
      auto r = buyer.reserve(op.reserve);
      op.transport = r.transport;
      op.status = r.status;
      op.reserved = r.body;
      op.error = r.error;
    }
    if (!op.answered()) {
      add(out, Problem::kServer,
          "retry of key " + key +
              " after the restart: " + (op.transport ? proto::status_name(op.status) : op.error));
      return;
    }
    absorb_replay(op, out);
  }
}

}  // namespace stockd::crash
