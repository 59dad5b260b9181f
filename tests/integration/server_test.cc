// The real stockd over real loopback sockets: races for the last units and codes, per-user
// limits under retries, idempotency across connections, hold expiry, pipelining.
//
// Each test starts its own server (fresh data dir, durability sync) through StockdProcess.
// STOCKD_STRESS_SCALE scales the big counts (see harness.h).
#include <atomic>
#include <latch>
#include <mutex>
#include <set>
#include <unordered_set>

#include "harness.h"

namespace stockd::test {
namespace {

using proto::HoldState;
using proto::Opcode;
using proto::Role;
using proto::Status;

// Unique codes, long enough that 10,000 of them need more than one 1 MiB CODES_LOAD.
std::vector<std::string> make_codes(const std::string& prefix, size_t n) {
  std::vector<std::string> codes;
  codes.reserve(n);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < n; ++i) {
    std::string c = prefix + std::to_string(i) + "-";
    while (c.size() < 110) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c += "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[x % 32];
    }
    codes.push_back(std::move(c));
  }
  return codes;
}

class ServerTest : public ::testing::Test {
 protected:
  ServerTest() = default;
  explicit ServerTest(std::vector<std::string> args) : server_(std::move(args)) {}
  void SetUp() override {
    ASSERT_TRUE(server_.start()) << "stockd did not come up";
    admin_ = std::make_unique<Client>(server_.options(Role::kAdmin));
    connect_or_fail(*admin_);
  }
  Client new_buyer() {
    Client c(server_.options(Role::kBuyer));
    EXPECT_EQ(c.connect().message(), "");
    return c;
  }

  StockdProcess server_;
  std::unique_ptr<Client> admin_;
};

// 500 buyers on 200 connections race for 100 units: exactly 100 win, nobody oversells.
TEST_F(ServerTest, FiveHundredBuyersRaceForOneHundredUnits) {
  constexpr size_t kUnits = 100, kBuyers = 500, kConns = 200;
  make_sku(*admin_, "RACE-1", kUnits);

  std::vector<Client> clients;
  for (size_t i = 0; i < kConns; ++i) clients.push_back(new_buyer());
  std::vector<std::vector<Reply<proto::Response>>> answers(kConns);
  std::latch ready(kConns + 1);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kConns; ++t) {
    threads.emplace_back([&, t] {
      for (size_t b = t; b < kBuyers; b += kConns) {  // 2 or 3 buyers per connection
        clients[t].queue(Opcode::kReserve,
                         reserve_req("buyer-" + std::to_string(b), "race-key-" + std::to_string(b),
                                     0, {{"RACE-1", 1}}));
      }
      ready.arrive_and_wait();
      answers[t] = clients[t].flush();
    });
  }
  ready.arrive_and_wait();
  for (auto& t : threads) t.join();

  size_t ok = 0, sold_out = 0, other = 0;
  std::set<uint64_t> orders;
  for (const auto& per_conn : answers) {
    for (const auto& a : per_conn) {
      ASSERT_TRUE(a.transport_ok()) << a.error;
      const auto& r = std::get<proto::ReserveResp>(a.body);
      if (a.status == Status::kOk) {
        ++ok;
        EXPECT_EQ(r.state, HoldState::kCommitted);
        EXPECT_TRUE(orders.insert(r.hold_id).second) << "order id given twice: " << r.hold_id;
      } else if (a.status == Status::kSoldOut) {
        ++sold_out;
        EXPECT_EQ(r.hold_id, 0u);
        EXPECT_EQ(r.available, 0u);
      } else {
        ++other;
        ADD_FAILURE() << "unexpected " << proto::status_name(a.status) << " " << a.error;
      }
    }
  }
  std::printf("[ measured ] race: %zu OK, %zu SOLD_OUT, %zu other\n", ok, sold_out, other);
  EXPECT_EQ(ok, kUnits);
  EXPECT_EQ(sold_out, kBuyers - kUnits);
  auto sku = admin_->sku_get("RACE-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.total, kUnits);
  EXPECT_EQ(sku.body.sold + sku.body.held, kUnits);
  EXPECT_EQ(sku.body.sold, kUnits);
  EXPECT_EQ(sku.body.available, 0u);
}

// 50,000 claims for 10,000 codes from many pipelining connections: each code exactly once.
TEST_F(ServerTest, FiftyThousandClaimsRaceForTenThousandCodes) {
  const size_t kCodes = scaled(10'000, 10);
  const size_t kClaims = kCodes * 5;
  constexpr size_t kThreads = 16, kBatch = 500;
  const std::vector<std::string> codes = make_codes("GIFT-", kCodes);
  size_t requests = make_code_pool(*admin_, "CODES-1", codes);
  ASSERT_GT(requests, 0u);
  std::printf("[ measured ] %zu codes loaded in %zu CODES_LOAD requests\n", kCodes, requests);
  auto pool = admin_->sku_get("CODES-1");
  ASSERT_TRUE(pool.ok());
  ASSERT_EQ(pool.body.total, kCodes);
  ASSERT_EQ(pool.body.available, kCodes);
  EXPECT_NE(pool.body.flags & proto::kSkuFlagCodePool, 0);

  std::mutex mu;
  std::vector<std::string> got_codes;
  std::vector<uint64_t> got_orders;
  std::atomic<size_t> sold_out{0}, other{0};
  std::latch ready(kThreads + 1);
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client c = new_buyer();
      std::vector<std::string> mine_codes;
      std::vector<uint64_t> mine_orders;
      ready.arrive_and_wait();
      for (size_t first = t; first < kClaims; first += kThreads * kBatch) {
        for (size_t i = first; i < kClaims && i < first + kThreads * kBatch; i += kThreads) {
          const std::string n = std::to_string(i);
          c.queue(Opcode::kClaim, proto::ClaimReq{"CODES-1", "claimer-" + n, "claim-" + n});
        }
        for (const auto& a : c.flush()) {
          if (a.transport_ok() && a.status == Status::kOk) {
            const auto& r = std::get<proto::ClaimResp>(a.body);
            mine_codes.push_back(r.code);
            mine_orders.push_back(r.order_id);
          } else if (a.transport_ok() && a.status == Status::kSoldOut) {
            ++sold_out;
          } else {
            if (other++ == 0) ADD_FAILURE() << proto::status_name(a.status) << " " << a.error;
          }
        }
      }
      std::lock_guard lock(mu);
      got_codes.insert(got_codes.end(), mine_codes.begin(), mine_codes.end());
      got_orders.insert(got_orders.end(), mine_orders.begin(), mine_orders.end());
    });
  }
  ready.arrive_and_wait();
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();

  std::printf(
      "[ measured ] %zu claims on %zu connections in %.2fs: %zu OK, %zu SOLD_OUT, %zu other\n",
      kClaims, kThreads, secs, got_codes.size(), sold_out.load(), other.load());
  EXPECT_EQ(other.load(), 0u);
  EXPECT_EQ(got_codes.size(), kCodes);
  EXPECT_EQ(sold_out.load(), kClaims - kCodes);
  std::set<std::string> unique(got_codes.begin(), got_codes.end());
  EXPECT_EQ(unique.size(), got_codes.size()) << "a code was handed out twice";
  EXPECT_TRUE(unique == std::set<std::string>(codes.begin(), codes.end()))
      << "the codes handed out are not the codes loaded";
  EXPECT_EQ(std::set<uint64_t>(got_orders.begin(), got_orders.end()).size(), got_orders.size());
  auto after = admin_->sku_get("CODES-1");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after.body.available, 0u);
  EXPECT_EQ(after.body.held, 0u);
  EXPECT_EQ(after.body.sold, kCodes);
}

// Per-user limit 2, one user, 20 keys sent at once from 20 connections, each key also retried
// from two other connections: the user gets exactly 2 units; an OK key always answers its hold.
TEST_F(ServerTest, PerUserLimitHoldsUnderConcurrentRetries) {
  constexpr size_t kKeys = 20;
  make_sku(*admin_, "LIMIT-1", 100, 2);
  auto req = [](size_t k) {
    return reserve_req("limited-user", "lim-" + std::to_string(k), 60'000, {{"LIMIT-1", 1}});
  };
  struct Seen {
    Status status;
    uint64_t hold_id;
  };
  std::mutex mu;
  std::vector<std::vector<Seen>> seen(kKeys);
  std::latch ready(kKeys + 1);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kKeys; ++t) {
    threads.emplace_back([&, t] {
      Client a = new_buyer(), b = new_buyer(), c = new_buyer();
      ready.arrive_and_wait();
      // Own key on a, then the neighbours' keys on b and c while they race for theirs.
      std::pair<size_t, Reply<proto::ReserveResp>> got[] = {
          {t, a.reserve(req(t))},
          {(t + 1) % kKeys, b.reserve(req((t + 1) % kKeys))},
          {(t + 2) % kKeys, c.reserve(req((t + 2) % kKeys))},
          {t, c.reserve(req(t))},
      };
      std::lock_guard lock(mu);
      for (auto& [k, r] : got) {
        EXPECT_TRUE(r.transport_ok()) << r.error;
        seen[k].push_back({r.status, r.body.hold_id});
      }
    });
  }
  ready.arrive_and_wait();
  for (auto& t : threads) t.join();

  std::set<uint64_t> holds;
  size_t ok_keys = 0;
  for (size_t k = 0; k < kKeys; ++k) {
    const bool key_ok = std::any_of(seen[k].begin(), seen[k].end(),
                                    [](const Seen& s) { return s.status == Status::kOk; });
    for (const Seen& s : seen[k]) {
      if (key_ok) {
        // Requests are decided one at a time: whichever copy of a key came first decided it,
        // and every later copy replays that answer (no unit comes back within the 60 s TTL).
        EXPECT_EQ(s.status, Status::kOk) << "key " << k;
        holds.insert(s.hold_id);
      } else {
        EXPECT_EQ(s.status, Status::kLimitExceeded) << "key " << k;
      }
    }
    if (key_ok) ++ok_keys;
  }
  EXPECT_EQ(ok_keys, 2u);
  EXPECT_EQ(holds.size(), 2u) << "an OK key answered two different holds";

  // Retries now, sequentially, from a fresh connection: OK keys answer their hold again.
  Client late = new_buyer();
  for (size_t k = 0; k < kKeys; ++k) {
    auto r = late.reserve(req(k));
    ASSERT_TRUE(r.transport_ok());
    if (r.status == Status::kOk) {
      EXPECT_EQ(holds.count(r.body.hold_id), 1u) << "retry of key " << k << " got a new hold";
    } else {
      EXPECT_EQ(r.status, Status::kLimitExceeded);
      EXPECT_EQ(r.body.available, 0u);
    }
  }
  auto sku = admin_->sku_get("LIMIT-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.held, 2u);
  EXPECT_EQ(sku.body.sold, 0u);
  EXPECT_EQ(sku.body.available, 98u);
  for (uint64_t h : holds) {
    auto v = late.hold_get(h, "limited-user");
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v.body.user, "limited-user");
    EXPECT_EQ(v.body.state, HoldState::kHeld);
    EXPECT_TRUE(late.commit(h, "limited-user").ok());
  }
  auto more = late.reserve(reserve_req("limited-user", "lim-after", 0, {{"LIMIT-1", 1}}));
  EXPECT_EQ(more.status, Status::kLimitExceeded);
  sku = admin_->sku_get("LIMIT-1");
  EXPECT_EQ(sku.body.sold, 2u);
  EXPECT_EQ(sku.body.held, 0u);
}

// A retry of the same request from another connection gets the first answer; another request
// under the same key is a KEY_CONFLICT; nothing is applied twice.
TEST_F(ServerTest, IdempotentRetryFromAnotherConnection) {
  ASSERT_GT(make_code_pool(*admin_, "IDEM-CODES", make_codes("IC-", 10)), 0u);
  Client a = new_buyer(), b = new_buyer();

  auto first = a.claim({"IDEM-CODES", "alice", "K-claim"});
  ASSERT_TRUE(first.ok()) << proto::status_name(first.status) << " " << first.error;
  ASSERT_FALSE(first.body.code.empty());
  auto again = b.claim({"IDEM-CODES", "alice", "K-claim"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.body.order_id, first.body.order_id);
  EXPECT_EQ(again.body.code, first.body.code);
  EXPECT_EQ(again.body.available, first.body.available);

  EXPECT_EQ(b.claim({"IDEM-CODES", "bob", "K-claim"}).status, Status::kKeyConflict);
  EXPECT_EQ(a.reserve(reserve_req("alice", "K-claim", 0, {{"IDEM-CODES", 1}})).status,
            Status::kKeyConflict);

  // A multi-unit hold with codes, retried from the other connection.
  auto hold = a.reserve(reserve_req("carol", "K-hold", 60'000, {{"IDEM-CODES", 2}}));
  ASSERT_TRUE(hold.ok());
  ASSERT_EQ(hold.body.codes.size(), 0u) << "a held hold's codes are shown once sold";
  auto hold2 = b.reserve(reserve_req("carol", "K-hold", 60'000, {{"IDEM-CODES", 2}}));
  ASSERT_TRUE(hold2.ok());
  EXPECT_EQ(hold2.body.hold_id, hold.body.hold_id);
  EXPECT_EQ(hold2.body.codes, hold.body.codes);
  EXPECT_EQ(hold2.body.expires_at_ms, hold.body.expires_at_ms);
  EXPECT_EQ(b.reserve(reserve_req("carol", "K-hold", 60'000, {{"IDEM-CODES", 3}})).status,
            Status::kKeyConflict);
  EXPECT_EQ(b.reserve(reserve_req("carol", "K-hold", 30'000, {{"IDEM-CODES", 2}})).status,
            Status::kKeyConflict);

  auto sku = admin_->sku_get("IDEM-CODES");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.sold, 1u);
  EXPECT_EQ(sku.body.held, 2u);
  EXPECT_EQ(sku.body.available, 7u);
  // The code claimed is not among the codes held.
  for (const auto& c : hold.body.codes) EXPECT_NE(c.code, first.body.code);
}

// A 300 ms hold gives its units back by itself, not before its deadline and soon after it.
TEST_F(ServerTest, HoldsExpireOnTime) {
  make_sku(*admin_, "EXP-1", 10);
  Client c = new_buyer();
  auto keep = c.reserve(reserve_req("patient", "exp-keep", 60'000, {{"EXP-1", 1}}));
  ASSERT_TRUE(keep.ok());

  const auto sent = Clock::now();
  auto h = c.reserve(reserve_req("hasty", "exp-key", 300, {{"EXP-1", 3}}));
  ASSERT_TRUE(h.ok()) << h.error;
  EXPECT_EQ(h.body.state, HoldState::kHeld);
  const int64_t ttl_left = h.body.expires_at_ms - wall_now_ms();
  EXPECT_GT(ttl_left, 100);
  EXPECT_LE(ttl_left, 300);
  auto held = c.sku_get("EXP-1");
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held.body.held, 4u);
  EXPECT_EQ(held.body.available, 6u);

  // Poll (without touching the hold) until the units are back.
  proto::SkuView now_view;
  bool back = eventually(
      2000,
      [&] {
        auto v = c.sku_get("EXP-1");
        now_view = v.body;
        return v.ok() && v.body.held == 1;
      },
      5);
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent).count();
  std::printf("[ measured ] 300 ms hold came back after %lld ms\n", static_cast<long long>(waited));
  ASSERT_TRUE(back) << "units not back after 2 s: held " << now_view.held;
  EXPECT_GE(waited, 295) << "expired before its deadline";
  EXPECT_LE(waited, 1000) << "expired late";
  EXPECT_EQ(now_view.available, 9u);
  EXPECT_EQ(now_view.sold, 0u);

  auto view = c.hold_get(h.body.hold_id, "hasty");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view.body.state, HoldState::kExpired);
  auto commit = c.commit(h.body.hold_id, "hasty");
  EXPECT_EQ(commit.status, Status::kHoldExpired);
  EXPECT_EQ(commit.body.state, HoldState::kExpired);
  EXPECT_EQ(c.release(h.body.hold_id, "hasty").status, Status::kHoldExpired);
  // The long hold is untouched and still commits.
  auto k = c.commit(keep.body.hold_id, "patient");
  EXPECT_TRUE(k.ok());
  EXPECT_EQ(k.body.state, HoldState::kCommitted);
}

// 1,000 pipelined requests of mixed kinds on one connection: answered in order, each answer
// the one for its request (reserves decided in sending order, reads see the writes before them).
TEST_F(ServerTest, PipelinedRequestsAnswerInOrder) {
  const size_t kRequests = 1000, kUnits = 300;
  make_sku(*admin_, "PIPE-1", kUnits);
  Client c = new_buyer();
  std::vector<Opcode> ops;
  for (size_t i = 0; i < kRequests; ++i) {
    Opcode op = i % 5 == 4 ? Opcode::kSkuGet : i % 5 == 3 ? Opcode::kPing : Opcode::kReserve;
    ops.push_back(op);
    if (op == Opcode::kSkuGet) c.queue(op, proto::SkuReq{"PIPE-1"});
    if (op == Opcode::kPing) c.queue(op, proto::PingReq{});
    if (op == Opcode::kReserve) {
      c.queue(op, reserve_req("piper-" + std::to_string(i), "pipe-" + std::to_string(i), 0,
                              {{"PIPE-1", 1}}));
    }
  }
  auto answers = c.flush();
  ASSERT_EQ(answers.size(), kRequests);
  uint64_t reserved = 0, last_available = kUnits;
  std::set<uint64_t> holds;
  for (size_t i = 0; i < kRequests; ++i) {
    const auto& a = answers[i];
    ASSERT_TRUE(a.transport_ok()) << i << ": " << a.error;
    if (ops[i] == Opcode::kReserve) {
      const auto& r = std::get<proto::ReserveResp>(a.body);
      if (reserved < kUnits) {
        ASSERT_EQ(a.status, Status::kOk) << "request " << i;
        // Units left after each: one fewer per reserve, in sending order.
        EXPECT_EQ(r.available, last_available - 1) << "request " << i << " decided out of order";
        last_available = r.available;
        EXPECT_TRUE(holds.insert(r.hold_id).second) << "hold id " << r.hold_id << " given twice";
        ++reserved;
      } else {
        EXPECT_EQ(a.status, Status::kSoldOut) << "request " << i;
      }
    } else if (ops[i] == Opcode::kSkuGet) {
      ASSERT_EQ(a.status, Status::kOk);
      EXPECT_EQ(std::get<proto::SkuView>(a.body).sold, reserved) << "request " << i;
    } else {
      ASSERT_EQ(a.status, Status::kOk);
      EXPECT_TRUE(std::holds_alternative<proto::PingResp>(a.body));
    }
  }
  EXPECT_EQ(reserved, kUnits);
}

// With --inflight-max 16 and 1,000 requests written at once (no client-side window), the server
// stops reading instead of failing: every request is answered, in order, with its request id.
TEST(ServerInflightTest, MoreThanInflightMaxOutstandingIsStillAnswered) {
  StockdProcess server({"--inflight-max", "16"});
  ASSERT_TRUE(server.start());
  Client admin(server.options(Role::kAdmin));
  connect_or_fail(admin);
  make_sku(admin, "FLOW-1", 100'000);

  RawConn raw(server.port());
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw.hello(Role::kBuyer, ""));
  constexpr size_t kRequests = 1000;
  std::string bytes;
  std::vector<std::pair<uint32_t, Opcode>> sent;
  for (size_t i = 0; i < kRequests; ++i) {
    const uint32_t id = static_cast<uint32_t>(7'000'000 + i * 7919 % 100'003);  // not sequential
    Opcode op = i % 2 == 0 ? Opcode::kReserve : Opcode::kSkuGet;
    if (op == Opcode::kReserve) {
      proto::encode_request(
          op, id,
          reserve_req("flow-" + std::to_string(i), "flow-" + std::to_string(i), 0, {{"FLOW-1", 1}}),
          bytes);
    } else {
      proto::encode_request(op, id, proto::SkuReq{"FLOW-1"}, bytes);
    }
    sent.emplace_back(id, op);
  }
  // Write everything from another thread while this one reads, as a careless client would.
  std::atomic<bool> wrote{false};
  std::thread writer([&] { wrote = raw.send(bytes); });
  size_t answered = 0;
  for (; answered < kRequests; ++answered) {
    RawConn::Frame f;
    auto got = raw.read(f, 20'000);
    ASSERT_EQ(got, RawConn::Got::kFrame) << "after " << answered << " answers";
    ASSERT_EQ(f.header.request_id, sent[answered].first) << "answer " << answered;
    ASSERT_EQ(f.header.opcode, static_cast<uint16_t>(sent[answered].second));
    ASSERT_EQ(f.status(), Status::kOk) << "answer " << answered << ": " << f.message;
  }
  writer.join();
  EXPECT_TRUE(wrote.load());
  EXPECT_EQ(answered, kRequests);
  auto sku = admin.sku_get("FLOW-1");
  EXPECT_EQ(sku.body.sold, kRequests / 2);

  // The client library's own pipelining windows itself to inflight_max and also gets everything.
  Client c(server.options());
  connect_or_fail(c);
  for (size_t i = 0; i < kRequests; ++i) c.queue(Opcode::kPing, proto::PingReq{});
  auto answers = c.flush();
  EXPECT_EQ(std::count_if(answers.begin(), answers.end(), [](const auto& a) { return a.ok(); }),
            static_cast<long>(kRequests));
}

// A buyer acts only on holds of the user it names: another user's hold is NOT_FOUND for
// HOLD_GET, COMMIT and RELEASE (as if it did not exist) and stays untouched; a buyer that names
// no user is refused; admin reaches any hold.
TEST_F(ServerTest, BuyersSeeAndSettleOnlyTheirOwnHolds) {
  make_sku(*admin_, "MINE-1", 10);
  make_code_pool(*admin_, "MINE-CODES", {"MINE-SECRET-CODE-1", "MINE-SECRET-CODE-2"});
  Client alice = new_buyer();
  Client mallory = new_buyer();
  auto held =
      alice.reserve(reserve_req("alice", "alice-key", 600'000, {{"MINE-1", 2}, {"MINE-CODES", 1}}));
  ASSERT_TRUE(held.ok()) << held.error;
  auto bought = alice.reserve(reserve_req("alice", "alice-buy", 0, {{"MINE-1", 1}}));
  ASSERT_TRUE(bought.ok()) << bought.error;

  for (uint64_t id : {held.body.hold_id, bought.body.hold_id}) {
    // Mallory names herself: nothing to see, nothing to settle, not even that the hold exists.
    for (auto r : {mallory.hold_get(id, "mallory"), mallory.commit(id, "mallory"),
                   mallory.release(id, "mallory")}) {
      EXPECT_EQ(r.status, Status::kNotFound) << proto::status_name(r.status);
      EXPECT_EQ(r.body, proto::HoldView{}) << "another user's hold leaked";
    }
    // A hold id that was never given out answers the same.
    EXPECT_EQ(mallory.hold_get(id + 1000, "mallory").status, Status::kNotFound);
    // Naming nobody is not a way around it.
    for (auto r : {mallory.hold_get(id), mallory.commit(id), mallory.release(id)}) {
      EXPECT_EQ(r.status, Status::kBadRequest);
      EXPECT_NE(r.error.find("a buyer must name the hold's user"), std::string::npos) << r.error;
    }
  }
  // Nothing moved: the hold is still HELD with its units and code.
  auto sku = admin_->sku_get("MINE-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.held, 2u);
  EXPECT_EQ(sku.body.sold, 1u);
  auto view = alice.hold_get(held.body.hold_id, "alice");
  ASSERT_TRUE(view.ok()) << view.error;
  EXPECT_EQ(view.body.state, HoldState::kHeld);
  EXPECT_EQ(view.body.codes.size(), 0u) << "a held hold's codes are shown once sold";

  // Admin without a user sees any hold; admin naming someone else gets NOT_FOUND too.
  auto as_admin = admin_->hold_get(held.body.hold_id);
  ASSERT_TRUE(as_admin.ok()) << as_admin.error;
  EXPECT_EQ(as_admin.body.user, "alice");
  EXPECT_EQ(admin_->hold_get(held.body.hold_id, "mallory").status, Status::kNotFound);
  // The owner settles it.
  auto commit = alice.commit(held.body.hold_id, "alice");
  ASSERT_TRUE(commit.ok()) << commit.error;
  EXPECT_EQ(commit.body.state, HoldState::kCommitted);
  EXPECT_EQ(mallory.release(held.body.hold_id, "mallory").status, Status::kNotFound);
  EXPECT_EQ(admin_->sku_get("MINE-1").body.sold, 3u);
}

// Group commit's gathering (--group-gather-us, server/src/group_commit.h). Buyers that each
// wait for an answer before buying again share one group per write instead of alternating
// between two; a lone buyer is written for at once, not after the window; and a buyer that
// stops sending costs the others at most the window, never an answer.
struct GroupTotals {
  uint64_t groups = 0, ops = 0, full = 0, timed_out = 0;
};
GroupTotals group_totals(Client& admin) {
  auto m = stats_map(admin);
  return {m["groups_written"], m["group_ops_total"], m["group_gathers_full"],
          m["group_gathers_timed_out"]};
}
// `buyers` connections, each buying `rounds` times one unit, one call in flight each.
void buy_in_closed_loop(StockdProcess& server, const std::string& sku, size_t buyers, size_t rounds,
                        const std::string& prefix) {
  std::vector<std::thread> threads;
  std::atomic<size_t> ok{0};
  for (size_t b = 0; b < buyers; ++b) {
    threads.emplace_back([&, b] {
      Client c(server.options());
      if (!c.connect().ok()) return;
      for (size_t r = 0; r < rounds; ++r) {
        const std::string key = prefix + std::to_string(b) + "-" + std::to_string(r);
        auto got = c.reserve(reserve_req("u" + std::to_string(b), key, 0, {{sku, 1}}));
        if (got.ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), buyers * rounds) << "every buy is answered OK";
}

// A server whose gathering window (10 ms) is longer than any client here takes to send again.
class GatherTest : public ServerTest {
 protected:
  GatherTest() : ServerTest({"--group-gather-us", "10000"}) {}
  void SetUp() override {
    ServerTest::SetUp();
    make_sku(*admin_, "GATHER", 1'000'000);
  }
};

TEST_F(GatherTest, BuyersThatWaitForEachAnswerShareOneGroupPerWrite) {
  constexpr size_t kBuyers = 8, kRounds = 60;
  const GroupTotals before = group_totals(*admin_);
  buy_in_closed_loop(server_, "GATHER", kBuyers, kRounds, "g-");
  const GroupTotals after = group_totals(*admin_);
  const double groups = static_cast<double>(after.groups - before.groups);
  const double ops = static_cast<double>(after.ops - before.ops);
  ASSERT_EQ(ops, kBuyers * kRounds);
  // Without gathering the buyers split into two halves that alternate (3.7 per group with the
  // window at 0); gathering makes 8, less where a stall of the machine ran a window out.
  EXPECT_GE(ops / groups, 5.0) << groups << " groups for " << ops << " buys";
  EXPECT_GT(after.full - before.full, kRounds / 2) << "few gatherings saw every buyer back";
  EXPECT_EQ(admin_->sku_get("GATHER").body.sold, kBuyers * kRounds);
}

TEST_F(GatherTest, ALoneBuyerIsWrittenForAtOnce) {
  const GroupTotals before = group_totals(*admin_);
  buy_in_closed_loop(server_, "GATHER", 1, 50, "lone-");
  const GroupTotals after = group_totals(*admin_);
  EXPECT_EQ(after.timed_out, before.timed_out) << "a lone buyer waited out the window";
  EXPECT_GE(after.full - before.full, 45u);
}

TEST_F(GatherTest, ABuyerThatStopsCostsTheOthersAtMostTheWindow) {
  // Two buyers in step; one closes its connection after 3 buys while the other buys on. The
  // gathering after the quitter's last answer waits for it in vain, once: every call is answered.
  const GroupTotals before = group_totals(*admin_);
  std::thread quitter([&] { buy_in_closed_loop(server_, "GATHER", 1, 3, "quit-"); });
  buy_in_closed_loop(server_, "GATHER", 1, 30, "stay-");
  quitter.join();
  const GroupTotals after = group_totals(*admin_);
  EXPECT_EQ(admin_->sku_get("GATHER").body.sold, 33u);
  EXPECT_EQ(after.ops - before.ops, 33u);
  EXPECT_LE(after.timed_out - before.timed_out, 4u)
      << "the window is armed only for connections that had an answer in the group";
}

// --durability interval: a buy is answered once written, synced within the interval. The outbox
// served it to the sidecar at once too, before any sync: a power cut then lost it in stockd
// (which may sell the unit again, and give its seq and hold id to another order) while SQL kept
// it. Records are served once the periodic sync covers them.
TEST(IntervalOutbox, RecordsAreServedOnceSynced) {
  StockdProcess server({"--durability", "interval", "--fsync-interval-ms", "5000"});
  ASSERT_TRUE(server.start());  // its first sync is ~5 s away
  Client admin(server.options(Role::kAdmin));
  make_sku(admin, "IV-1", 10);
  Client buyer(server.options());
  ASSERT_TRUE(buyer.reserve(reserve_req("u", "k-1", 0, {{"IV-1", 1}})).ok());
  Client outbox(server.options(Role::kOutbox));
  auto now = outbox.outbox_read({0, 100, 0});
  ASSERT_TRUE(now.ok()) << now.error;
  EXPECT_EQ(now.body.records.size(), 0u) << "a record served before the log was synced";
  EXPECT_EQ(now.body.head_seq, 0u);
  // The long poll is answered by the sync.
  auto later = outbox.outbox_read({0, 100, 9000});
  ASSERT_TRUE(later.ok()) << later.error;
  EXPECT_EQ(later.body.records.size(), 1u);
}

}  // namespace
}  // namespace stockd::test
