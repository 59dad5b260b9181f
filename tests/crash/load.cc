#include "load.h"

#include <chrono>

namespace stockd::crash {
namespace {

// Relative weights of the operations a load thread picks from.
enum Pick { kBuyNow, kHold, kCommit, kRelease, kClaim, kPoolHold, kReplay, kPoke, kPicks };
constexpr int kWeights[kPicks] = {22, 22, 14, 10, 14, 6, 6, 3};

Pick pick(std::mt19937_64& rng) {
  int total = 0;
  for (int w : kWeights) total += w;
  int r = static_cast<int>(rng() % static_cast<uint64_t>(total));
  for (int p = 0; p < kPicks; ++p) {
    if (r < kWeights[p]) return static_cast<Pick>(p);
    r -= kWeights[p];
  }
  return kBuyNow;
}

int64_t between(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

Work::HoldOf take(std::vector<Work::HoldOf>& v, std::mt19937_64& rng) {
  size_t i = rng() % v.size();
  Work::HoldOf h = std::move(v[i]);
  v[i] = std::move(v.back());
  v.pop_back();
  return h;
}

}  // namespace

Load::Load(LoadOptions options, const Ledger& ledger)
    : options_(options), skus_(ledger.skus()), ops_(static_cast<size_t>(options.threads)) {
  std::mt19937_64 rng(options_.seed ^ 0x5bd1e995u);
  for (int t = 0; t < options_.threads; ++t) work_.push_back(ledger.work_for(t, rng));
}

Load::~Load() { stop(); }

void Load::start() {
  for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { run(t); });
}

void Load::stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::vector<Op> Load::ops() const {
  std::vector<Op> all;
  for (const auto& v : ops_) all.insert(all.end(), v.begin(), v.end());
  return all;
}

void Load::run(int t) {
  std::mt19937_64 rng(options_.seed * 1000003u + static_cast<uint64_t>(t));
  ClientOptions o;
  o.port = options_.port;
  o.client_name = "crash-load";
  o.connect_timeout_ms = 1000;
  o.timeout_ms = options_.timeout_ms;
  o.reconnect_attempts = 1;  // the server is dead or alive; waiting does not help
  Client c(o);
  std::vector<Op>& log = ops_[static_cast<size_t>(t)];
  for (uint64_t n = 0; !stop_; ++n) {
    Op op = next_op(t, rng, n);
    send(c, op);
    if (op.kind == Kind::kReserve && op.status == proto::Status::kOk && op.transport &&
        op.reserved.state == proto::HoldState::kHeld) {
      work_[static_cast<size_t>(t)].held.emplace_back(op.reserved.hold_id, op.reserve.user);
    }
    log.push_back(std::move(op));
    if (!log.back().transport) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// A random next request. Keys are unique per (cycle, thread, n); users are mostly this
// phase's (fresh allowance), a quarter global (soon at their per-user limits).
Op Load::next_op(int t, std::mt19937_64& rng, uint64_t n) {
  Work& w = work_[static_cast<size_t>(t)];
  Op op;
  op.thread = t;
  const std::string key =
      "c" + std::to_string(options_.cycle) + "t" + std::to_string(t) + "n" + std::to_string(n);
  const std::string user =
      rng() % 4 != 0 ? "c" + std::to_string(options_.cycle) + "u" + std::to_string(rng() % 200)
                     : "g" + std::to_string(rng() % 6);
  Pick p = pick(rng);
  if ((p == kCommit || p == kRelease) && w.held.empty()) p = kHold;
  if (p == kReplay && w.replays.empty()) p = kBuyNow;
  if (p == kPoke && w.finished.empty()) p = kClaim;
  std::vector<const SkuSpec*> counted, pools;
  for (const SkuSpec& s : skus_) (s.pool ? pools : counted).push_back(&s);
  switch (p) {
    case kBuyNow:
    case kHold: {
      op.kind = Kind::kReserve;
      op.reserve.user = user;
      op.reserve.key = key;
      op.reserve.ttl_ms = p == kBuyNow ? 0 : ttl(rng);
      size_t first = rng() % counted.size();
      size_t lines = rng() % 4 == 0 ? 2 : 1;
      for (size_t i = 0; i < lines && i < counted.size(); ++i) {
        const SkuSpec* s = counted[(first + i) % counted.size()];
        op.reserve.lines.push_back({s->id, static_cast<uint32_t>(between(rng, 1, 2))});
      }
      break;
    }
    case kPoolHold:
      op.kind = Kind::kReserve;
      op.reserve = {user, key, ttl(rng), {{pools[rng() % pools.size()]->id, 1}}};
      break;
    case kClaim:
      op.kind = Kind::kClaim;
      op.claim = {pools[rng() % pools.size()]->id, user, key};
      break;
    case kCommit:
    case kRelease:
      op.kind = p == kCommit ? Kind::kCommit : Kind::kRelease;
      std::tie(op.hold_id, op.hold_user) = take(w.held, rng);
      break;
    case kReplay:
      op = w.replays[rng() % w.replays.size()];
      break;
    case kPoke:
      op.kind = rng() % 2 ? Kind::kCommit : Kind::kRelease;
      std::tie(op.hold_id, op.hold_user) = w.finished[rng() % w.finished.size()];
      break;
    case kPicks:
      break;
  }
  op.thread = t;
  return op;
}

// Short holds fall due within the phase or soon after the restart; long ones outlive
// several phases and are committed or released by later ones.
uint32_t Load::ttl(std::mt19937_64& rng) const {
  const bool short_hold = options_.short_holds && rng() % 5 < 3;
  return static_cast<uint32_t>(short_hold ? between(rng, 100, 400) : between(rng, 30000, 90000));
}

void Load::send(Client& c, Op& op) {
  op.sent_ms = wall_ms();
  auto fill = [&op](const auto& r) {
    op.transport = r.transport;
    op.status = r.status;
    op.error = r.error;
  };
  switch (op.kind) {
    case Kind::kReserve: {
      auto r = c.reserve(op.reserve);
      fill(r);
      op.reserved = r.body;
      break;
    }
    case Kind::kClaim: {
      auto r = c.claim(op.claim);
      fill(r);
      op.claimed = r.body;
      break;
    }
    case Kind::kCommit:
    case Kind::kRelease: {
      auto r = op.kind == Kind::kCommit ? c.commit(op.hold_id, op.hold_user)
                                        : c.release(op.hold_id, op.hold_user);
      fill(r);
      op.view = r.body;
      break;
    }
    case Kind::kReplay:
      if (op.is_claim) {
        auto r = c.claim(op.claim);
        fill(r);
        op.claimed = r.body;
      } else {
        auto r = c.reserve(op.reserve);
        fill(r);
        op.reserved = r.body;
      }
      break;
  }
  op.answered_ms = wall_ms();
}

}  // namespace stockd::crash
