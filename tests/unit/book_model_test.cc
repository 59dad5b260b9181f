// Model-based randomized test of the book.
//
// Each seed runs a random sequence of operations against the Book and against a trivially
// correct model (ordered maps, linear scans). Every status, every response, every outbox record
// and every SKU count must match the model; check_invariants() must hold after every step; every
// 20 steps the book is rebuilt from the rows its Changes named (as a store would hold them) and
// the run goes on with the rebuilt book. Beside it runs a replica fed only the log entries of
// each step (encoded as a group, decoded, Book::replay): it must match the model at every round
// trip, the outbox records read from the entries must equal the book's, and at each round trip
// the replica starts again from the rows (a checkpoint) and replays on from there (recovery).
//
//   STOCKD_MODEL_SEEDS=N  run seeds 1..N (default 10000), split over the shards below
//   STOCKD_MODEL_SEED=N   run only seed N (the failure message names it)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "stockd/book.h"

namespace stockd::proto {
void PrintTo(Status s, std::ostream* os) { *os << status_name(s); }
void PrintTo(HoldState s, std::ostream* os) { *os << hold_state_name(s); }
void PrintTo(const ReserveResp& r, std::ostream* os) {
  *os << "{hold " << r.hold_id << " " << hold_state_name(r.state) << " exp " << r.expires_at_ms
      << " failed " << r.failed_line << " avail " << r.available << " codes";
  for (const auto& c : r.codes) *os << " " << c.sku << ":" << c.code;
  *os << "}";
}
void PrintTo(const SkuView& v, std::ostream* os) {
  *os << "{" << v.sku << " t" << v.total << " a" << v.available << " h" << v.held << " s" << v.sold
      << " lim" << v.per_user_limit << " [" << v.opens_at_ms << "," << v.closes_at_ms << ") f"
      << int(v.flags) << "}";
}
void PrintTo(const HoldView& v, std::ostream* os) {
  *os << "{hold " << v.hold_id << " " << hold_state_name(v.state) << " " << v.user << " key '"
      << v.key << "' c" << v.created_at_ms << " e" << v.expires_at_ms << " lines";
  for (const auto& l : v.lines) *os << " " << l.sku << "x" << l.qty;
  *os << " codes";
  for (const auto& c : v.codes) *os << " " << c.sku << ":" << c.code;
  *os << "}";
}
}  // namespace stockd::proto

namespace stockd {
namespace {

using proto::HoldState;
using proto::Line;
using proto::OutboxKind;
using proto::Status;

constexpr int kShards = 4;
constexpr int kRoundTripEvery = 20;
constexpr int64_t kT0 = 1'700'000'000'000;
constexpr int64_t kHoldRetentionMs = 6000;
// Times move in ticks so that deadlines, windows and retention ends are often hit exactly.
constexpr int64_t kTickMs = 50;

uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : dflt;
}

// splitmix64: the same sequence on every platform, unlike std distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
  bool chance(int percent) { return below(100) < static_cast<uint64_t>(percent); }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

 private:
  uint64_t s_;
};

// ---------------------------------------------------------------------------------------------
// The model: the rules written as plainly as possible.

struct MSku {
  std::string id;
  uint64_t total = 0, avail = 0, held = 0, sold = 0;
  uint32_t limit = 0;
  int64_t opens = 0, closes = 0;
  bool closed = false, pool = false;
  std::vector<std::string> codes;
  std::vector<uint64_t> owner;  // per code; 0 = free
};

struct MHold {
  uint64_t id = 0;
  HoldState state = HoldState::kNone;
  std::string user, key;
  int64_t created = 0, expires = 0, finished = 0;
  std::vector<Line> lines;
  std::vector<proto::SkuCode> codes;
  std::vector<uint32_t> code_index;
};

struct MIdem {
  int kind = 0;  // 1 reserve, 2 claim
  std::string user;
  uint32_t ttl = 0;
  std::vector<Line> lines;
  int64_t created = 0;
  proto::ReserveResp resp;
};

struct Model {
  std::map<std::string, MSku> skus;
  std::map<uint64_t, MHold> holds;
  std::map<std::pair<std::string, std::string>, uint64_t> units;
  std::map<std::string, MIdem> idem;
  uint64_t next_hold = 1, next_seq = 1;
  BookCounters counters;
  std::vector<proto::OutboxRecord> outbox;  // emitted during the current step

  static proto::SkuView view(const MSku& s) {
    return {s.id,
            s.total,
            s.avail,
            s.held,
            s.sold,
            s.limit,
            s.opens,
            s.closes,
            static_cast<uint8_t>((s.closed ? proto::kSkuFlagClosed : 0) |
                                 (s.pool ? proto::kSkuFlagCodePool : 0))};
  }
  // A buyer sees a hold's codes once they are sold.
  static std::vector<proto::SkuCode> shown(const MHold& h, HoldState as) {
    return as == HoldState::kCommitted ? h.codes : std::vector<proto::SkuCode>{};
  }
  static proto::HoldView view(const MHold& h) {
    return {h.id, h.state, h.user, h.key, h.created, h.expires, h.lines, shown(h, h.state)};
  }
  uint64_t units_of(const std::string& sku, const std::string& user) const {
    auto it = units.find({sku, user});
    return it == units.end() ? 0 : it->second;
  }
  // Counted only while the SKU has a limit; a limit set later counts the holds still here.
  void add_units(const std::string& sku, const std::string& user, int64_t d) {
    if (skus.at(sku).limit == 0) return;
    uint64_t& u = units[{sku, user}];
    u += static_cast<uint64_t>(d);
    if (u == 0) units.erase({sku, user});
  }

  std::map<std::pair<std::string, std::string>, uint64_t> counted(const std::string& sku) const {
    std::map<std::pair<std::string, std::string>, uint64_t> out;
    for (const auto& [id, h] : holds) {
      if (h.state != HoldState::kHeld && h.state != HoldState::kCommitted) continue;
      for (const Line& l : h.lines) {
        if (l.sku == sku) out[{sku, h.user}] += l.qty;
      }
    }
    return out;
  }

  void emit(OutboxKind kind, const MHold& h, int64_t at) {
    outbox.push_back({next_seq++, kind, h.id, h.user, h.key, h.created, at, h.lines, h.codes});
  }
  void end(MHold& h, HoldState to, int64_t at) {
    for (const Line& l : h.lines) {
      MSku& s = skus.at(l.sku);
      s.held -= l.qty;
      s.avail += l.qty;
      add_units(l.sku, h.user, -int64_t(l.qty));
    }
    for (size_t i = 0; i < h.codes.size(); ++i) skus.at(h.codes[i].sku).owner[h.code_index[i]] = 0;
    h.state = to;
    h.finished = at;
    emit(to == HoldState::kReleased ? OutboxKind::kReleased : OutboxKind::kExpired, h, at);
  }
  void sweep(int64_t now) {
    std::vector<std::pair<int64_t, uint64_t>> due;
    for (auto& [id, h] : holds) {
      if (h.state == HoldState::kHeld && h.expires <= now) due.emplace_back(h.expires, id);
    }
    std::sort(due.begin(), due.end());
    for (auto& [at, id] : due) {
      end(holds.at(id), HoldState::kExpired, at);
      ++counters.expiries;
    }
    std::erase_if(holds, [now](const auto& kv) {
      return kv.second.state != HoldState::kHeld && now - kv.second.finished >= kHoldRetentionMs;
    });
    // A key is remembered as long as the hold it created.
    std::erase_if(idem, [this](const auto& kv) { return !holds.contains(kv.second.resp.hold_id); });
  }

  static bool valid(const proto::ReserveReq& r) {
    if (r.user.empty() || r.user.size() > 128 || r.key.size() > 128) return false;
    if (r.ttl_ms > proto::kHoldTtlMsMax || r.lines.empty() || r.lines.size() > 64) return false;
    std::set<std::string> seen;
    for (const Line& l : r.lines) {
      if (l.sku.empty() || l.sku.size() > 64 || l.qty == 0 || !seen.insert(l.sku).second) {
        return false;
      }
    }
    return true;
  }

  Status check(const std::string& sku, const std::string& user, uint32_t qty, int64_t now,
               uint64_t& available) {
    auto it = skus.find(sku);
    if (it == skus.end()) return Status::kNotFound;
    const MSku& s = it->second;
    if (s.closed) return Status::kSaleClosed;
    if (s.opens != 0 && now < s.opens) return Status::kSaleNotOpen;
    if (s.closes != 0 && now >= s.closes) return Status::kSaleClosed;
    const uint64_t have = units_of(sku, user);
    if (s.limit != 0 && have + qty > s.limit) {
      available = have >= s.limit ? 0 : s.limit - have;
      ++counters.limit_exceeded;
      return Status::kLimitExceeded;
    }
    if (s.avail < qty) {
      available = s.avail;
      ++counters.sold_out;
      return Status::kSoldOut;
    }
    return Status::kOk;
  }

  proto::ReserveResp apply(const std::string& user, const std::string& key, uint32_t ttl,
                           const std::vector<Line>& lines, int64_t now) {
    MHold& h = holds[next_hold];
    h.id = next_hold++;
    h.user = user;
    h.key = key;
    h.created = now;
    h.lines = lines;
    uint64_t left = UINT64_MAX;
    for (const Line& l : lines) {
      MSku& s = skus.at(l.sku);
      for (uint32_t q = 0; s.pool && q < l.qty; ++q) {
        uint32_t i = 0;
        while (s.owner[i] != 0) ++i;  // the lowest free code
        s.owner[i] = h.id;
        h.codes.push_back({s.id, s.codes[i]});
        h.code_index.push_back(i);
      }
      s.avail -= l.qty;
      (ttl > 0 ? s.held : s.sold) += l.qty;
      add_units(l.sku, user, l.qty);
      left = std::min(left, s.avail);
    }
    if (ttl > 0) {
      h.state = HoldState::kHeld;
      h.expires = now + ttl;
    } else {
      h.state = HoldState::kCommitted;
      h.finished = now;
      emit(OutboxKind::kOrder, h, now);
    }
    return {h.id, h.state, h.expires, 0xFFFF, left, shown(h, h.state)};
  }

  Status reserve(const proto::ReserveReq& req, int64_t now, proto::ReserveResp& out) {
    out = {};
    sweep(now);
    if (!valid(req)) return Status::kBadRequest;
    if (!req.key.empty() && idem.contains(req.key)) {
      const MIdem& e = idem.at(req.key);
      if (e.kind != 1 || e.user != req.user || e.ttl != req.ttl_ms || e.lines != req.lines) {
        return Status::kKeyConflict;
      }
      out = e.resp;
      ++counters.idem_hits;
      return Status::kOk;
    }
    for (size_t i = 0; i < req.lines.size(); ++i) {
      Status st = check(req.lines[i].sku, req.user, req.lines[i].qty, now, out.available);
      if (st != Status::kOk) {
        out.failed_line = static_cast<uint16_t>(i);
        return st;
      }
    }
    out = apply(req.user, req.key, req.ttl_ms, req.lines, now);
    if (!req.key.empty()) idem[req.key] = {1, req.user, req.ttl_ms, req.lines, now, out};
    ++counters.reserves_ok;
    return Status::kOk;
  }

  Status claim(const proto::ClaimReq& req, int64_t now, proto::ClaimResp& out) {
    out = {};
    sweep(now);
    if (req.sku.empty() || req.sku.size() > 64 || req.user.empty() || req.user.size() > 128 ||
        req.key.size() > 128) {
      return Status::kBadRequest;
    }
    const std::vector<Line> lines = {{req.sku, 1}};
    if (!req.key.empty() && idem.contains(req.key)) {
      const MIdem& e = idem.at(req.key);
      if (e.kind != 2 || e.user != req.user || e.lines != lines) return Status::kKeyConflict;
      out = {e.resp.hold_id, e.resp.codes.at(0).code, e.resp.available};
      ++counters.idem_hits;
      return Status::kOk;
    }
    auto it = skus.find(req.sku);
    if (it == skus.end()) return Status::kNotFound;
    out.available = it->second.avail;
    if (!it->second.pool) return Status::kBadRequest;
    Status st = check(req.sku, req.user, 1, now, out.available);
    if (st != Status::kOk) return st;
    proto::ReserveResp r = apply(req.user, req.key, 0, lines, now);
    if (!req.key.empty()) idem[req.key] = {2, req.user, 0, lines, now, r};
    out = {r.hold_id, r.codes.at(0).code, it->second.avail};
    ++counters.claims_ok;
    return Status::kOk;
  }

  Status finish_op(bool commit, uint64_t id, int64_t now, proto::HoldView& out) {
    out = {};
    sweep(now);
    auto it = holds.find(id);
    if (it == holds.end()) return Status::kNotFound;
    MHold& h = it->second;
    Status st = Status::kOk;
    if (h.state == HoldState::kHeld && now >= h.expires) {
      end(h, HoldState::kExpired, h.expires);
      ++counters.expiries;
      st = Status::kHoldExpired;
    } else if (h.state == HoldState::kHeld && commit) {
      for (const Line& l : h.lines) {
        skus.at(l.sku).held -= l.qty;
        skus.at(l.sku).sold += l.qty;
      }
      h.state = HoldState::kCommitted;
      h.finished = now;
      emit(OutboxKind::kOrder, h, now);
      ++counters.commits;
    } else if (h.state == HoldState::kHeld) {
      end(h, HoldState::kReleased, now);
      ++counters.releases;
    } else if (h.state == HoldState::kCommitted) {
      st = Status::kAlreadyDone;
    } else if (h.state == HoldState::kReleased) {
      st = Status::kAlreadyDone;
    } else {
      st = Status::kHoldExpired;
    }
    out = view(h);
    return st;
  }

  Status sku_set(const proto::SkuSetReq& r, int64_t now, proto::SkuView& out) {
    out = {};
    sweep(now);
    if (r.sku.empty() || r.sku.size() > 64 || (r.mask & 0xF0) != 0) return Status::kBadRequest;
    if (r.opens_at_ms < 0 || r.closes_at_ms < 0) return Status::kBadRequest;
    if ((r.mask & proto::kSetTotal) && r.total > uint64_t(INT64_MAX)) return Status::kBadRequest;
    auto it = skus.find(r.sku);
    const bool exists = it != skus.end();
    const int64_t opens = (r.mask & proto::kSetOpensAt) ? r.opens_at_ms
                          : exists                      ? it->second.opens
                                                        : 0;
    const int64_t closes = (r.mask & proto::kSetClosesAt) ? r.closes_at_ms
                           : exists                       ? it->second.closes
                                                          : 0;
    if (opens != 0 && closes != 0 && closes <= opens) return Status::kBadRequest;
    if (exists) {
      const MSku& s = it->second;
      if ((r.mask & proto::kSetTotal) && s.pool) return Status::kBadRequest;
      if ((r.mask & proto::kSetTotal) && r.total < s.held + s.sold) {
        out = view(s);
        return Status::kBelowCommitted;
      }
      if ((r.mask & proto::kSetPerUserLimit) && r.per_user_limit != 0) {
        for (const auto& [k, u] : s.limit != 0 ? units : counted(r.sku)) {
          if (k.first == r.sku && u > r.per_user_limit) {
            out = view(s);
            return Status::kBelowCommitted;
          }
        }
      }
    }
    MSku& s = skus[r.sku];
    s.id = r.sku;
    if (r.mask & proto::kSetTotal) {
      s.total = r.total;
      s.avail = r.total - s.held - s.sold;
    }
    if (r.mask & proto::kSetPerUserLimit) {
      if (r.per_user_limit == 0 || s.limit == 0) {
        std::erase_if(units, [&r](const auto& kv) { return kv.first.first == r.sku; });
      }
      if (r.per_user_limit != 0 && s.limit == 0) units.merge(counted(r.sku));
      s.limit = r.per_user_limit;
    }
    s.opens = opens;
    s.closes = closes;
    out = view(s);
    return Status::kOk;
  }

  Status restock(const proto::RestockReq& r, proto::SkuView& out) {
    out = {};
    auto it = skus.find(r.sku);
    if (it == skus.end()) return Status::kNotFound;
    MSku& s = it->second;
    out = view(s);
    if (s.pool) return Status::kBadRequest;
    const int64_t total = int64_t(s.total) + r.delta;  // small numbers only in this test
    if (total < int64_t(s.held + s.sold)) return Status::kBelowCommitted;
    s.total = uint64_t(total);
    s.avail = s.total - s.held - s.sold;
    out = view(s);
    return Status::kOk;
  }

  Status codes_load(const proto::CodesLoadReq& r, proto::CodesLoadResp& out) {
    out = {};
    auto it = skus.find(r.sku);
    if (it == skus.end()) return Status::kNotFound;
    MSku& s = it->second;
    out.sku = view(s);
    if ((!s.pool && s.total != 0) || r.codes.empty()) return Status::kBadRequest;
    std::set<std::string> seen;
    std::vector<std::string> fresh;  // codes already in this pool are skipped
    for (const std::string& c : r.codes) {
      bool known = !seen.insert(c).second;
      bool mine = false;
      for (const auto& [id, other] : skus) {
        const bool in = std::find(other.codes.begin(), other.codes.end(), c) != other.codes.end();
        if (in && id == r.sku) mine = true;
        known = known || (in && id != r.sku);
      }
      if (known) {
        out.duplicate = c;
        return Status::kDuplicateCode;
      }
      if (!mine) fresh.push_back(c);
    }
    s.pool = true;
    for (const std::string& c : fresh) {
      s.codes.push_back(c);
      s.owner.push_back(0);
      ++s.total;
      ++s.avail;
    }
    out.sku = view(s);
    return Status::kOk;
  }

  Status sale_close(const std::string& sku, int64_t now, proto::SkuView& out) {
    out = {};
    sweep(now);
    auto it = skus.find(sku);
    if (it == skus.end()) return Status::kNotFound;
    it->second.closed = true;
    out = view(it->second);
    return Status::kOk;
  }
};

// ---------------------------------------------------------------------------------------------
// The store's view: every row a Changes named, re-read after the operation.

struct RowMirror {
  std::map<std::string, rec::SkuRow> skus;
  std::map<uint64_t, rec::HoldRow> holds;
  std::map<std::pair<std::string, std::string>, rec::UserRow> users;
  std::map<std::pair<std::string, uint32_t>, rec::CodeRow> codes;
  rec::MetaRow meta;

  template <class Map, class Key, class Row>
  static void put(Map& m, const Key& k, const std::optional<Row>& row) {
    if (row) {
      m[k] = *row;
    } else {
      m.erase(k);
    }
  }
  void apply(const Book& b, const Changes& ch) {
    for (const auto& s : ch.skus) put(skus, s, b.sku_row(s));
    for (uint64_t h : ch.holds) put(holds, h, b.hold_row(h));
    for (const auto& u : ch.users) put(users, u, b.user_row(u.first, u.second));
    for (const auto& c : ch.codes) put(codes, c, b.code_row(c.first, c.second));
    if (ch.meta) meta = b.meta();
  }
  std::string restore_into(Book& b) const {
    for (auto it = holds.rbegin(); it != holds.rend(); ++it) b.restore(it->second);
    for (const auto& [k, r] : users) b.restore(r);
    for (auto it = codes.rbegin(); it != codes.rend(); ++it) b.restore(it->second);
    b.restore(meta);
    for (const auto& [k, r] : skus) b.restore(r);
    return b.finish_restore().message();
  }
  // As recovery does it: what holds link to first, then stage_restore(), then each hold row
  // applied as it comes.
  std::string restore_staged_into(Book& b) const {
    b.restore(meta);
    for (const auto& [k, r] : skus) b.restore(r);
    for (const auto& [k, r] : codes) b.restore(r);
    b.stage_restore();
    for (const auto& [k, r] : holds) b.restore(r);
    for (const auto& [k, r] : users) b.restore(r);
    return b.finish_restore().message();
  }
};

// ---------------------------------------------------------------------------------------------
// One seed's run.

// What the runs of one shard exercised, "op STATUS" -> count; checked at the end so that the
// generator cannot quietly stop reaching a path.
using Coverage = std::map<std::string, uint64_t>;

const std::vector<std::string> kUsers = {"u0", "u1", "u2", "u3"};
const std::vector<std::string> kKeys = {"k0", "k1", "k2", "k3", "k4"};

class SeedRun {
 public:
  SeedRun(uint64_t seed, Coverage& seen)
      : rng_(seed), book_(make_book()), replica_(make_book()), seen_(seen) {
    replica_ch_.log = false;
  }

  void go(int steps) {
    setup();
    check_step();  // records the setup's Changes
    for (step_ = 1; step_ <= steps && !::testing::Test::HasFailure(); ++step_) {
      SCOPED_TRACE("step " + std::to_string(step_));
      one_step();
      if (::testing::Test::HasFailure()) break;
      check_step();
      if (step_ % kRoundTripEvery == 0 && !::testing::Test::HasFailure()) round_trip();
    }
  }
  int step() const { return step_; }

 private:
  static std::unique_ptr<Book> make_book() {
    BookLimits limits;
    limits.finished_hold_retention_ms = kHoldRetentionMs;
    return std::make_unique<Book>(limits);
  }

  void setup() {
    sku_set({"a", proto::kSetTotal | proto::kSetPerUserLimit, 3 + rng_.below(15),
             rng_.chance(50) ? uint32_t(2 + rng_.below(3)) : 0u, 0, 0});
    sku_set({"b", proto::kSetTotal, 1 + rng_.below(4), 0, 0, 0});
    sku_set({"cp", proto::kSetTotal | proto::kSetPerUserLimit, 0, rng_.chance(50) ? 2u : 0u, 0, 0});
    codes_load("cp", 2 + rng_.below(6));
    const int64_t opens = kT0 + ms(3000);
    sku_set({"w", proto::kSetTotal | proto::kSetOpensAt | proto::kSetClosesAt, 2 + rng_.below(6), 0,
             opens, opens + 2000 + ms(20000)});
  }

  int64_t ms(uint64_t max) { return int64_t(rng_.below(max / kTickMs + 1)) * kTickMs; }

  std::string any_sku() {
    static const std::vector<std::string> kSkus = {"a", "a", "b", "cp", "cp", "w", "cp2", "zz"};
    return rng_.pick(kSkus);
  }
  std::string key() { return rng_.chance(50) ? "" : rng_.pick(kKeys); }

  proto::ReserveReq random_reserve() {
    proto::ReserveReq r{rng_.pick(kUsers), key(), 0, {}};
    r.ttl_ms = rng_.chance(30) ? 0 : uint32_t(100 + ms(3000));
    const size_t n = 1 + rng_.below(rng_.chance(20) ? 4 : 2);
    for (size_t i = 0; i < n; ++i) {
      Line l{any_sku(), uint32_t(1 + rng_.below(3))};
      const bool dup = std::any_of(r.lines.begin(), r.lines.end(),
                                   [&l](const Line& x) { return x.sku == l.sku; });
      if (!dup || rng_.chance(10)) r.lines.push_back(l);  // a repeated SKU is BAD_REQUEST
    }
    if (rng_.chance(2)) r.lines[0].qty = 0;
    if (rng_.chance(1)) r.user.clear();
    return r;
  }

  void one_step() {
    ch_.clear();
    outbox_seen_ = 0;
    const uint64_t dice = rng_.below(100);
    now_ += rng_.chance(8) ? 1000 + ms(5000) : ms(250);
    if (dice < 28) {
      reserve(random_reserve());
    } else if (dice < 38) {
      retry();
    } else if (dice < 50) {
      finish(true, any_hold());
    } else if (dice < 60) {
      finish(false, any_hold());
    } else if (dice < 70) {
      proto::ClaimReq c{rng_.chance(85) ? (rng_.chance(70) ? "cp" : "cp2") : any_sku(),
                        rng_.pick(kUsers), key()};
      claim(c);
    } else if (dice < 76) {
      expire();
    } else if (dice < 81) {
      restock(any_sku(), int64_t(rng_.below(9)) - 3);
    } else if (dice < 86) {
      codes_load(rng_.chance(50) ? "cp" : "cp2", 1 + rng_.below(3));
    } else if (dice < 95) {
      random_sku_set();
    } else if (dice < 96) {
      static const std::vector<std::string> kClosable = {"b", "w", "n1", "zz"};
      sale_close(rng_.pick(kClosable));
    } else {
      queries();
    }
  }

  // Mostly a recent hold (likely live), sometimes any id, including unknown ones.
  uint64_t any_hold() {
    const uint64_t next = model_.next_hold;
    if (next > 1 && rng_.chance(70)) return next - 1 - rng_.below(std::min<uint64_t>(next - 1, 4));
    return 1 + rng_.below(next + 1);
  }

  void retry() {
    if (!past_claims_.empty() && rng_.chance(30)) {
      proto::ClaimReq c = rng_.pick(past_claims_);
      if (rng_.chance(30)) c.user = rng_.pick(kUsers);  // maybe a different request
      claim(c);
      return;
    }
    if (past_reserves_.empty()) return reserve(random_reserve());
    proto::ReserveReq r = rng_.pick(past_reserves_);
    if (rng_.chance(25)) r.lines[0].qty += 1;  // a different request under the same key
    if (rng_.chance(10)) r.ttl_ms = r.ttl_ms == 0 ? 500 : 0;
    reserve(r);
  }

  void random_sku_set() {
    proto::SkuSetReq r{
        rng_.chance(90) ? any_sku() : "n" + std::to_string(rng_.below(3)), 0, 0, 0, 0, 0};
    if (rng_.chance(40)) {
      r.mask |= proto::kSetTotal;
      r.total = rng_.below(12);
    }
    if (rng_.chance(40)) {
      r.mask |= proto::kSetPerUserLimit;
      r.per_user_limit = uint32_t(rng_.below(5));
    }
    if (rng_.chance(30)) {
      r.mask |= proto::kSetOpensAt;
      r.opens_at_ms = rng_.chance(30) ? 0 : now_ + ms(4000) - 2000;
    }
    if (rng_.chance(30)) {
      r.mask |= proto::kSetClosesAt;
      r.closes_at_ms = rng_.chance(30) ? 0 : now_ + ms(8000) - 1000;
    }
    if (rng_.chance(2)) r.mask |= 0x40;
    sku_set(r);
  }

  // ---- Each operation runs on both, and the answers must agree. ----

  void reserve(const proto::ReserveReq& req) {
    SCOPED_TRACE("reserve by " + req.user + " key '" + req.key + "'");
    proto::ReserveResp want, got;
    const uint64_t next_id = book_->meta().next_hold_id;
    const Status ws = model_.reserve(req, now_, want);
    const Status gs = book_->reserve(req, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
    saw("reserve", gs);
    if (gs == Status::kOk && got.hold_id < next_id) saw("reserve", "replayed");
    if (gs == Status::kOk && got.hold_id >= next_id) {
      took_codes(got.hold_id, book_->hold_row(got.hold_id)->hold.codes);  // shown or not
    }
    if (!req.key.empty() && gs == Status::kOk) past_reserves_.push_back(req);
  }

  void claim(const proto::ClaimReq& req) {
    SCOPED_TRACE("claim " + req.sku + " by " + req.user + " key '" + req.key + "'");
    proto::ClaimResp want, got;
    const uint64_t next_id = book_->meta().next_hold_id;
    const Status ws = model_.claim(req, now_, want);
    const Status gs = book_->claim(req, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
    saw("claim", gs);
    if (gs == Status::kOk && got.order_id < next_id) saw("claim", "replayed");
    if (gs == Status::kOk && got.order_id >= next_id)
      took_codes(got.order_id, {{req.sku, got.code}});
    if (!req.key.empty() && gs == Status::kOk) past_claims_.push_back(req);
  }

  void finish(bool commit, uint64_t id) {
    SCOPED_TRACE((commit ? "commit " : "release ") + std::to_string(id));
    proto::HoldView want, got;
    const Status ws = model_.finish_op(commit, id, now_, want);
    const Status gs =
        commit ? book_->commit(id, now_, got, fresh()) : book_->release(id, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
    saw(commit ? "commit" : "release", gs);
  }

  void expire() {
    SCOPED_TRACE("expire");
    model_.sweep(now_);
    book_->expire(now_, fresh());
    EXPECT_EQ(book_->next_deadline(), model_next_deadline());
  }

  void sku_set(const proto::SkuSetReq& req) {
    SCOPED_TRACE("sku_set " + req.sku + " mask " + std::to_string(req.mask));
    proto::SkuView want, got;
    const Status ws = model_.sku_set(req, now_, want);
    const Status gs = book_->sku_set(req, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
    saw("sku_set", gs);
  }

  void restock(const std::string& sku, int64_t delta) {
    SCOPED_TRACE("restock " + sku + " " + std::to_string(delta));
    proto::SkuView want, got;
    const Status ws = model_.restock({sku, delta}, want);
    const Status gs = book_->restock({sku, delta}, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
    saw("restock", gs);
  }

  void codes_load(const std::string& sku, uint64_t n) {
    proto::CodesLoadReq req{sku, {}};
    for (uint64_t i = 0; i < n; ++i) req.codes.push_back("code" + std::to_string(rng_.below(60)));
    SCOPED_TRACE("codes_load " + sku);
    if (sku == "cp2" && !model_.skus.contains("cp2")) sku_set({"cp2", 0, 0, 0, 0, 0});
    proto::CodesLoadResp want, got;
    const Status ws = model_.codes_load(req, want);
    const Status gs = book_->codes_load(req, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
    saw("codes_load", gs);
  }

  void sale_close(const std::string& sku) {
    SCOPED_TRACE("sale_close " + sku);
    proto::SkuView want, got;
    const Status ws = model_.sale_close(sku, now_, want);
    const Status gs = book_->sale_close(sku, now_, got, fresh());
    EXPECT_EQ(gs, ws);
    EXPECT_EQ(got, want);
  }

  void queries() {
    SCOPED_TRACE("queries");
    const std::string after = rng_.chance(50) ? "" : "b";
    proto::SkuListResp page;
    book_->sku_list({after, 2}, page);
    std::vector<proto::SkuView> want;
    for (auto it = model_.skus.upper_bound(after); it != model_.skus.end() && want.size() < 2;
         ++it) {
      want.push_back(Model::view(it->second));
    }
    EXPECT_EQ(page.skus, want);
    const uint64_t id = any_hold();
    proto::HoldView got;
    const Status st = book_->hold_get(id, got);
    auto it = model_.holds.find(id);
    EXPECT_EQ(st, it == model_.holds.end() ? Status::kNotFound : Status::kOk);
    if (it != model_.holds.end()) {
      EXPECT_EQ(got, Model::view(it->second));
    }
  }

  void saw(const char* op, Status st) { saw(op, proto::status_name(st)); }
  void saw(const char* op, const char* what) { ++seen_[std::string(op) + " " + what]; }

  // ---- After every step. ----

  // One step's Changes accumulate (a step may be two operations), as in one group commit.
  Changes& fresh() { return ch_; }

  int64_t model_next_deadline() const {
    int64_t d = INT64_MAX;
    for (const auto& [id, h] : model_.holds) {
      if (h.state == HoldState::kHeld) d = std::min(d, h.expires);
    }
    return d;
  }

  // Codes handed out must never be held or sold twice: tracked from the answers and the
  // outbox alone, not from the model.
  void took_codes(uint64_t hold_id, const std::vector<proto::SkuCode>& codes) {
    codes_returned();  // the operation's own sweep may have freed some first
    for (const proto::SkuCode& c : codes) {
      auto [it, fresh_code] = taken_.emplace(c.code, hold_id);
      EXPECT_TRUE(fresh_code || it->second == hold_id)
          << "code " << c.code << " given to hold " << hold_id << " and " << it->second;
    }
  }

  // Released and expired holds give their codes back.
  void codes_returned() {
    for (; outbox_seen_ < ch_.outbox.size(); ++outbox_seen_) {
      const proto::OutboxRecord& r = ch_.outbox[outbox_seen_];
      if (r.kind == OutboxKind::kOrder) continue;
      for (const proto::SkuCode& c : r.codes) {
        auto it = taken_.find(c.code);
        EXPECT_TRUE(it != taken_.end() && it->second == r.order_id) << c.code;
        if (it != taken_.end()) taken_.erase(it);
      }
    }
  }

  void check_step() {
    for (uint64_t id : ch_.holds) {
      auto it = rows_.holds.find(id);
      if (!book_->hold_row(id) && it != rows_.holds.end() && !it->second.hold.key.empty()) {
        saw("forget", "key");
      }
    }
    rows_.apply(*book_, ch_);
    replay_step();
    EXPECT_EQ(ch_.outbox, model_.outbox);
    codes_returned();
    for (const proto::OutboxRecord& r : ch_.outbox) {
      saw("outbox", r.kind == OutboxKind::kOrder      ? "order"
                    : r.kind == OutboxKind::kReleased ? "released"
                                                      : "expired");
    }
    for (uint64_t id : ch_.holds) {
      if (!book_->hold_row(id)) saw("forget", "hold");
    }
    model_.outbox.clear();
    EXPECT_EQ(book_->check_invariants().message(), "");
    EXPECT_EQ(book_->sku_count(), model_.skus.size());
    for (const auto& [id, s] : model_.skus) {
      proto::SkuView v;
      EXPECT_EQ(book_->sku_get(id, v), Status::kOk) << id;
      EXPECT_EQ(v, Model::view(s));
      for (const std::string& u : kUsers) {
        auto row = book_->user_row(id, u);
        EXPECT_EQ(row ? row->units : 0, model_.units_of(id, u)) << id << "/" << u;
        EXPECT_TRUE(!row || row->units != 0);
      }
    }
    size_t live = 0;
    for (const auto& [id, h] : model_.holds) live += h.state == HoldState::kHeld ? 1 : 0;
    EXPECT_EQ(book_->live_holds(), live);
    const BookCounters& c = book_->counters();
    const BookCounters& m = model_.counters;
    EXPECT_EQ(std::tie(c.reserves_ok, c.sold_out, c.limit_exceeded, c.commits, c.releases,
                       c.expiries, c.claims_ok, c.idem_hits),
              std::tie(m.reserves_ok, m.sold_out, m.limit_exceeded, m.commits, m.releases,
                       m.expiries, m.claims_ok, m.idem_hits));
  }

  // The whole book against the model: every hold, key, code and meta.
  void expect_matches_model(const Book& b) {
    EXPECT_EQ(b.meta().next_hold_id, model_.next_hold);
    EXPECT_EQ(b.meta().next_outbox_seq, model_.next_seq);
    EXPECT_EQ(b.next_deadline(), model_next_deadline());
    for (uint64_t id = 1; id < model_.next_hold + 2; ++id) {
      proto::HoldView v;
      auto it = model_.holds.find(id);
      if (it == model_.holds.end()) {
        EXPECT_EQ(b.hold_get(id, v), Status::kNotFound) << "hold " << id;
        continue;
      }
      EXPECT_EQ(b.hold_get(id, v), Status::kOk) << "hold " << id;
      EXPECT_EQ(v, Model::view(it->second));
      auto row = b.hold_row(id);
      EXPECT_TRUE(row && row->finished_at_ms == it->second.finished) << "hold " << id;
    }
    for (const std::string& k : kKeys) {
      auto answer = b.idem_answer(k);
      auto it = model_.idem.find(k);
      ASSERT_EQ(answer.has_value(), it != model_.idem.end()) << "key " << k;
      if (answer) {
        EXPECT_EQ(*answer, it->second.resp) << "key " << k;
      }
    }
    std::set<std::string> given;
    for (const auto& [id, s] : model_.skus) {
      proto::SkuView v;
      EXPECT_EQ(b.sku_get(id, v), Status::kOk);
      EXPECT_EQ(v, Model::view(s));
      for (uint32_t i = 0; i <= s.codes.size(); ++i) {
        auto row = b.code_row(id, i);
        ASSERT_EQ(row.has_value(), i < s.codes.size()) << id << "/" << i;
        if (!row) continue;
        EXPECT_EQ(row->code, s.codes[i]);
        EXPECT_EQ(row->owner, s.owner[i]) << id << "/" << i;
      }
    }
    for (const auto& [id, h] : model_.holds) {
      if (h.state != HoldState::kHeld && h.state != HoldState::kCommitted) continue;
      for (const auto& c : h.codes) EXPECT_TRUE(given.insert(c.code).second) << c.code;
    }
  }

  // The step's log entries, as one group, replayed into the replica; the outbox records they
  // carry must be the book's.
  void replay_step() {
    if (ch_.entry_count == 0) return;
    const uint64_t first_seq = ch_.outbox.empty() ? 0 : ch_.outbox.front().seq;
    std::string group;
    rec::encode_group(++lsn_, ch_.entry_base_ms, first_seq,
                      static_cast<uint32_t>(ch_.outbox.size()), ch_.entry_count, ch_.entries,
                      group);
    rec::GroupReader reader;
    ASSERT_TRUE(reader.open(group)) << reader.status().message();
    rec::Decision d;
    size_t records = 0;
    replica_ch_.clear();
    while (reader.next(d)) {
      ASSERT_EQ(replica_->replay(d, replica_ch_).message(), "");
      const char op[2] = {static_cast<char>(d.op), 0};
      saw("replay", op);
      if (!d.makes_record()) continue;
      ASSERT_LT(records, ch_.outbox.size());
      proto::OutboxRecord r;
      rec::outbox_record(d, first_seq + records, r);
      EXPECT_EQ(r, ch_.outbox[records]);
      ++records;
    }
    ASSERT_TRUE(reader.status().ok()) << reader.status().message();
    EXPECT_EQ(reader.read(), ch_.entry_count);
    EXPECT_EQ(records, ch_.outbox.size());
    EXPECT_EQ(reader.records(), ch_.outbox.size());
    EXPECT_EQ(replica_ch_.outbox, ch_.outbox);
    EXPECT_EQ(replica_->check_invariants().message(), "");
  }

  void round_trip() {
    SCOPED_TRACE("round trip");
    {
      SCOPED_TRACE("the replica, fed only the log");
      expect_matches_model(*replica_);
    }
    // A checkpoint: the replica starts again from the rows and replays what comes next.
    replica_ = make_book();
    ASSERT_EQ(rows_.restore_staged_into(*replica_), "");
    expect_matches_model(*book_);
    auto copy = make_book();
    ASSERT_EQ(rows_.restore_into(*copy), "");
    expect_matches_model(*copy);
    // Go on with the rebuilt book; its counters start again from 0.
    book_ = std::move(copy);
    model_.counters = BookCounters{};
    saw("round", "trip");
  }

  Rng rng_;
  Model model_;
  std::unique_ptr<Book> book_;
  RowMirror rows_;
  Changes ch_;
  std::unique_ptr<Book> replica_;  // fed only the log (replay_step)
  Changes replica_ch_;
  uint64_t lsn_ = 0;
  size_t outbox_seen_ = 0;  // records of ch_.outbox already counted by codes_returned()
  int64_t now_ = kT0;
  int step_ = 0;
  std::vector<proto::ReserveReq> past_reserves_;
  std::vector<proto::ClaimReq> past_claims_;
  std::map<std::string, uint64_t> taken_;
  Coverage& seen_;
};

class BookModelTest : public ::testing::TestWithParam<int> {};

TEST_P(BookModelTest, MatchesTheModel) {
  const int shard = GetParam();
  const uint64_t only = env_u64("STOCKD_MODEL_SEED", 0);
  const uint64_t seeds = env_u64("STOCKD_MODEL_SEEDS", 10000);
  uint64_t ran = 0, steps = 0;
  Coverage seen;
  for (uint64_t seed = 1; seed <= seeds || only != 0; ++seed) {
    if (only != 0) seed = only;
    if (seed % kShards == static_cast<uint64_t>(shard)) {
      SCOPED_TRACE("seed " + std::to_string(seed) +
                   " (reproduce: STOCKD_MODEL_SEED=" + std::to_string(seed) + ")");
      Rng len(seed ^ 0xABCDEFull);
      SeedRun run(seed, seen);
      run.go(50 + static_cast<int>(len.below(151)));
      ++ran;
      steps += static_cast<uint64_t>(run.step() - 1);
      if (HasFailure()) {
        ADD_FAILURE() << "failed: seed " << seed << " at step " << run.step()
                      << "; rerun with STOCKD_MODEL_SEED=" << seed;
        return;
      }
    }
    if (only != 0) break;
  }
  RecordProperty("seeds", std::to_string(ran));
  RecordProperty("steps", std::to_string(steps));
  if (ran < 500) return;  // a short run need not reach every path
  for (const char* path : {"reserve OK",
                           "reserve replayed",
                           "reserve SOLD_OUT",
                           "reserve LIMIT_EXCEEDED",
                           "reserve NOT_FOUND",
                           "reserve SALE_NOT_OPEN",
                           "reserve SALE_CLOSED",
                           "reserve KEY_CONFLICT",
                           "reserve BAD_REQUEST",
                           "claim OK",
                           "claim replayed",
                           "claim SOLD_OUT",
                           "claim BAD_REQUEST",
                           "claim KEY_CONFLICT",
                           "claim LIMIT_EXCEEDED",
                           "claim NOT_FOUND",
                           "commit OK",
                           "commit ALREADY_DONE",
                           "commit HOLD_EXPIRED",
                           "commit NOT_FOUND",
                           "release OK",
                           "release ALREADY_DONE",
                           "release HOLD_EXPIRED",
                           "release NOT_FOUND",
                           "sku_set OK",
                           "sku_set BAD_REQUEST",
                           "sku_set BELOW_COMMITTED",
                           "restock OK",
                           "restock BELOW_COMMITTED",
                           "restock BAD_REQUEST",
                           "restock NOT_FOUND",
                           "codes_load OK",
                           "codes_load DUPLICATE_CODE",
                           "codes_load BAD_REQUEST",
                           "outbox order",
                           "outbox released",
                           "outbox expired",
                           "forget hold",
                           "forget key",
                           "replay R",
                           "replay C",
                           "replay K",
                           "replay L",
                           "replay E",
                           "replay F",
                           "replay S",
                           "replay T",
                           "replay P",
                           "replay X",
                           "round trip"}) {
    EXPECT_GT(seen[path], 0u) << "never exercised: " << path;
  }
  for (const auto& [path, n] : seen) std::cout << "  " << path << ": " << n << "\n";
}

INSTANTIATE_TEST_SUITE_P(Shards, BookModelTest, ::testing::Range(0, kShards));

}  // namespace
}  // namespace stockd
