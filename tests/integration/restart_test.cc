// Stopping and restarting the real server on the same data dir: SIGTERM under load exits 0 and
// loses no acknowledged answer; kill -9 then restart gives back SKUs, holds, idempotency keys,
// per-user counts and code pools, and expires holds whose deadline passed while it was down.
#include <atomic>
#include <mutex>
#include <set>

#include "harness.h"

namespace stockd::test {
namespace {

using proto::HoldState;
using proto::Opcode;
using proto::Role;
using proto::Status;

// SIGTERM while 8 connections pipeline buy-now reserves: stockd exits 0; after a restart every
// order answered OK is there, and resending every key applies each purchase exactly once.
TEST(RestartTest, SigtermWhilePipeliningExitsCleanlyAndKeepsEveryAnsweredOk) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  Client admin(server.options(Role::kAdmin));
  connect_or_fail(admin);
  make_sku(admin, "G-QUIET", 1000, 10);
  make_sku(admin, "G-HOT", 10'000'000);
  {
    Client b(server.options());
    connect_or_fail(b);
    for (int i = 0; i < 20; ++i) {
      const std::string n = std::to_string(i);
      ASSERT_TRUE(
          b.reserve(reserve_req("q-" + n, "q-" + n, i % 3 == 0 ? 600'000 : 0, {{"G-QUIET", 2}}))
              .ok());
    }
  }
  const proto::SkuView quiet = admin.sku_get("G-QUIET").body;
  admin.close();

  struct Sent {
    std::string key;
    uint64_t hold_id = 0;  // 0: no OK answer seen
  };
  constexpr size_t kThreads = 8, kBatch = 64;
  const size_t kBatchesMax = scaled(400, 20);  // per thread; only a bound, SIGTERM ends it first
  const size_t kOkBeforeStop = scaled(2000, 200);
  std::vector<std::vector<Sent>> sent(kThreads);
  std::atomic<size_t> oks{0}, refusals{0}, early_failures{0};
  std::atomic<bool> signaled{false};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ClientOptions o = server.options();
      o.reconnect_attempts = 1;
      Client c(o);
      bool up = true;
      for (size_t batch = 0; batch < kBatchesMax && up; ++batch) {
        const size_t first = sent[t].size();
        for (size_t i = 0; i < kBatch; ++i) {
          std::string key = "g-" + std::to_string(t) + "-" + std::to_string(first + i);
          c.queue(Opcode::kReserve, reserve_req(key, key, 0, {{"G-HOT", 1}}));
          sent[t].push_back({key});
        }
        auto answers = c.flush();
        for (size_t i = 0; i < answers.size(); ++i) {
          if (!answers[i].transport_ok()) {
            up = false;
            if (!signaled && early_failures++ == 0) ADD_FAILURE() << answers[i].error;
          } else if (answers[i].status == Status::kOk) {
            sent[t][first + i].hold_id = std::get<proto::ReserveResp>(answers[i].body).hold_id;
            ++oks;
          } else {
            ++refusals;
          }
        }
      }
    });
  }
  ASSERT_TRUE(eventually(30'000, [&] { return oks.load() >= kOkBeforeStop; }))
      << "only " << oks.load() << " OK answers";
  signaled = true;
  server.signal(SIGTERM);
  const bool exited = server.wait_exit_for(20'000);
  for (auto& t : threads) t.join();
  ASSERT_TRUE(exited) << "stockd did not stop within 20 s of SIGTERM";
  const int st = server.exit_status();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << "exit status " << st << (WIFSIGNALED(st) ? " (signal)" : "");
  EXPECT_EQ(refusals.load(), 0u);
  EXPECT_EQ(early_failures.load(), 0u) << "connections failed before SIGTERM";
  size_t total_sent = 0;
  for (const auto& s : sent) total_sent += s.size();
  std::printf("[ measured ] SIGTERM after %zu OK answers; %zu reserves queued in all\n", oks.load(),
              total_sent);

  ASSERT_TRUE(server.start()) << "stockd did not restart";
  Client after(server.options(Role::kAdmin));
  connect_or_fail(after);
  auto q = after.sku_get("G-QUIET");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q.body, quiet);
  auto hot = after.sku_get("G-HOT");
  ASSERT_TRUE(hot.ok());
  EXPECT_GE(hot.body.sold, oks.load()) << "orders answered OK are missing";
  EXPECT_EQ(hot.body.held, 0u);
  EXPECT_EQ(hot.body.sold + hot.body.available, hot.body.total);
  // Every OK order is there as it was answered.
  for (const auto& per_thread : sent) {
    for (const Sent& s : per_thread) {
      if (s.hold_id == 0) continue;
      auto h = after.hold_get(s.hold_id);
      ASSERT_TRUE(h.ok()) << s.key << " (hold " << s.hold_id << ") lost";
      EXPECT_EQ(h.body.key, s.key);
      EXPECT_EQ(h.body.state, HoldState::kCommitted);
    }
  }
  // Resend everything: answered keys answer the same order; the rest are applied now, once.
  for (const auto& per_thread : sent) {
    for (const Sent& s : per_thread)
      after.queue(Opcode::kReserve, reserve_req(s.key, s.key, 0, {{"G-HOT", 1}}));
    auto answers = after.flush();
    ASSERT_EQ(answers.size(), per_thread.size());
    for (size_t i = 0; i < answers.size(); ++i) {
      ASSERT_TRUE(answers[i].ok()) << per_thread[i].key << ": " << answers[i].error;
      if (per_thread[i].hold_id != 0) {
        EXPECT_EQ(std::get<proto::ReserveResp>(answers[i].body).hold_id, per_thread[i].hold_id);
      }
    }
  }
  EXPECT_EQ(after.sku_get("G-HOT").body.sold, total_sent) << "a purchase applied twice or lost";
}

// kill -9, then a restart on the same data: everything acknowledged is back, exactly.
TEST(RestartTest, KillNineThenRestartBringsBackSkusHoldsKeysAndCodes) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  Client admin(server.options(Role::kAdmin));
  connect_or_fail(admin);
  make_sku(admin, "R-COUNT", 50, 5);
  const size_t kCodes = 200;
  std::vector<std::string> codes;
  for (size_t i = 0; i < kCodes; ++i) codes.push_back("RC-" + std::to_string(i * 7 + 3));
  ASSERT_GT(make_code_pool(admin, "R-CODES", codes), 0u);

  Client b(server.options());
  connect_or_fail(b);
  auto held = b.reserve(reserve_req("ru1", "rk-held", 600'000, {{"R-COUNT", 2}}));
  auto committed = b.reserve(reserve_req("ru1", "rk-commit", 600'000, {{"R-COUNT", 3}}));
  auto released = b.reserve(reserve_req("ru2", "rk-rel", 600'000, {{"R-COUNT", 1}}));
  auto with_codes =
      b.reserve(reserve_req("ru5", "rk-codes", 600'000, {{"R-CODES", 2}, {"R-COUNT", 1}}));
  auto bought = b.reserve(reserve_req("ru4", "rk-buy", 0, {{"R-COUNT", 1}}));
  for (auto* r : {&held, &committed, &released, &with_codes, &bought}) {
    ASSERT_TRUE(r->ok()) << proto::status_name(r->status) << " " << r->error;
  }
  ASSERT_TRUE(b.commit(committed.body.hold_id, "ru1").ok());
  ASSERT_TRUE(b.release(released.body.hold_id, "ru2").ok());
  // Claims, pipelined.
  const size_t kClaimsBefore = kCodes / 2;
  for (size_t i = 0; i < kClaimsBefore; ++i) {
    const std::string n = std::to_string(i);
    b.queue(Opcode::kClaim, proto::ClaimReq{"R-CODES", "cu-" + n, "ck-" + n});
  }
  std::vector<proto::ClaimResp> claims_before;
  for (const auto& a : b.flush()) {
    ASSERT_TRUE(a.ok()) << a.error;
    claims_before.push_back(std::get<proto::ClaimResp>(a.body));
  }
  // A hold that will run out while the server is down.
  auto short_hold = b.reserve(reserve_req("ru3", "rk-short", 700, {{"R-COUNT", 4}}));
  ASSERT_TRUE(short_hold.ok());

  std::map<uint64_t, proto::HoldView> holds_before;
  for (const auto* r : {&held, &committed, &released, &with_codes, &bought, &short_hold}) {
    auto v = admin.hold_get(r->body.hold_id);
    ASSERT_TRUE(v.ok());
    holds_before[r->body.hold_id] = v.body;
  }
  const proto::SkuView count_before = admin.sku_get("R-COUNT").body;
  const proto::SkuView codes_before = admin.sku_get("R-CODES").body;
  EXPECT_EQ(count_before.held, 2u + 1u + 4u);

  server.kill9();
  // Stay down past the short hold's deadline.
  const int64_t wait_ms = short_hold.body.expires_at_ms + 20 - wall_now_ms();
  if (wait_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  ASSERT_TRUE(server.start()) << "stockd did not restart after kill -9";
  Client c(server.options());
  connect_or_fail(c);
  Client admin2(server.options(Role::kAdmin));
  connect_or_fail(admin2);

  // Holds: each exactly as before, except the one whose deadline passed.
  for (const auto& [id, before] : holds_before) {
    auto v = c.hold_get(id, before.user);
    ASSERT_TRUE(v.ok()) << "hold " << id << " lost";
    proto::HoldView want = before;
    if (id == short_hold.body.hold_id) want.state = HoldState::kExpired;
    EXPECT_EQ(v.body, want);
  }
  // SKUs: the expired hold's 4 units are back, nothing else moved.
  proto::SkuView count_want = count_before;
  count_want.held -= 4;
  count_want.available += 4;
  EXPECT_EQ(admin2.sku_get("R-COUNT").body, count_want);
  EXPECT_EQ(admin2.sku_get("R-CODES").body, codes_before);

  // Idempotency keys: the same request answers the same, another request conflicts.
  auto held_again = c.reserve(reserve_req("ru1", "rk-held", 600'000, {{"R-COUNT", 2}}));
  ASSERT_TRUE(held_again.ok());
  EXPECT_EQ(held_again.body.hold_id, held.body.hold_id);
  EXPECT_EQ(held_again.body.expires_at_ms, held.body.expires_at_ms);
  EXPECT_EQ(c.reserve(reserve_req("ru4", "rk-buy", 0, {{"R-COUNT", 1}})).body.hold_id,
            bought.body.hold_id);
  auto codes_again =
      c.reserve(reserve_req("ru5", "rk-codes", 600'000, {{"R-CODES", 2}, {"R-COUNT", 1}}));
  EXPECT_EQ(codes_again.body.codes, with_codes.body.codes);
  EXPECT_EQ(c.reserve(reserve_req("ru1", "rk-held", 600'000, {{"R-COUNT", 1}})).status,
            Status::kKeyConflict);
  for (size_t i = 0; i < kClaimsBefore; ++i) {
    const std::string n = std::to_string(i);
    c.queue(Opcode::kClaim, proto::ClaimReq{"R-CODES", "cu-" + n, "ck-" + n});
  }
  auto replays = c.flush();
  for (size_t i = 0; i < replays.size(); ++i) {
    ASSERT_TRUE(replays[i].ok()) << replays[i].error;
    const auto& r = std::get<proto::ClaimResp>(replays[i].body);
    EXPECT_EQ(r.order_id, claims_before[i].order_id);
    EXPECT_EQ(r.code, claims_before[i].code);
  }
  EXPECT_EQ(admin2.sku_get("R-COUNT").body, count_want) << "a replay applied something";

  // Per-user counts: ru1 holds 2 and bought 3 of its limit 5.
  auto over = c.reserve(reserve_req("ru1", "rk-more", 0, {{"R-COUNT", 1}}));
  EXPECT_EQ(over.status, Status::kLimitExceeded);

  // Codes: the held hold's two show once it is sold; the rest of the pool goes to new claims,
  // none of them a code handed out before.
  auto codes_sold = c.commit(with_codes.body.hold_id, "ru5");
  ASSERT_TRUE(codes_sold.ok()) << codes_sold.error;
  ASSERT_EQ(codes_sold.body.codes.size(), 2u);
  std::set<std::string> handed;
  for (const auto& cl : claims_before) handed.insert(cl.code);
  for (const auto& sc : codes_sold.body.codes) handed.insert(sc.code);
  ASSERT_EQ(handed.size(), kClaimsBefore + 2);
  // Ids are not in order (they cannot be walked), but none is ever given twice.
  std::set<uint64_t> ids_before;
  for (const auto& [id, h] : holds_before) ids_before.insert(id);
  for (const auto& cl : claims_before) ids_before.insert(cl.order_id);
  const size_t kClaimsAfter = kCodes - handed.size() + 20;
  for (size_t i = 0; i < kClaimsAfter; ++i) {
    const std::string n = std::to_string(i);
    c.queue(Opcode::kClaim, proto::ClaimReq{"R-CODES", "cv-" + n, "cv-" + n});
  }
  size_t ok_after = 0, sold_out_after = 0;
  for (const auto& a : c.flush()) {
    ASSERT_TRUE(a.transport_ok()) << a.error;
    if (a.status == Status::kSoldOut) {
      ++sold_out_after;
      continue;
    }
    ASSERT_EQ(a.status, Status::kOk);
    const auto& r = std::get<proto::ClaimResp>(a.body);
    EXPECT_TRUE(handed.insert(r.code).second) << r.code << " handed out twice";
    EXPECT_TRUE(ids_before.insert(r.order_id).second)
        << "order id " << r.order_id << " was reused after the restart";
    ++ok_after;
  }
  EXPECT_EQ(ok_after, kCodes - kClaimsBefore - 2);
  EXPECT_EQ(sold_out_after, 20u);
  EXPECT_TRUE(handed == std::set<std::string>(codes.begin(), codes.end()));

  // The restored hold still works.
  auto commit = c.commit(held.body.hold_id, "ru1");
  EXPECT_TRUE(commit.ok());
  EXPECT_EQ(commit.body.state, HoldState::kCommitted);
}

// A client with connect_in_calls off (the outbox sidecar's) does not carry on over a connection
// it did not ask for: after a restart of the server its calls fail, and nothing is sent, until
// the caller close()s (or connect()s); then the next call connects. A default client carries
// on by itself.
TEST(RestartTest, AClientThatConnectsOnlyWhenToldDoesNotCarryOnAfterARestart) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  ClientOptions told = server.options(Role::kAdmin);
  told.connect_in_calls = false;
  told.reconnect_attempts = 1;
  Client strict(told);
  Client easy(server.options(Role::kAdmin));
  ASSERT_TRUE(strict.ping().ok()) << "the first call connects";
  ASSERT_TRUE(easy.ping().ok());
  ASSERT_EQ(server.stop(), 0);
  ASSERT_TRUE(server.start());
  auto refused = strict.sku_set({"after", proto::kSetTotal, 5, 0, 0, 0});
  EXPECT_FALSE(refused.transport_ok()) << "a call connected by itself";
  EXPECT_NE(refused.error.find("connects again only when told to"), std::string::npos)
      << refused.error;
  EXPECT_FALSE(strict.ping().transport_ok()) << "a later call connected by itself";
  auto carried = easy.ping();
  EXPECT_TRUE(carried.ok()) << carried.error;
  auto absent = easy.sku_get("after");
  EXPECT_EQ(absent.status, Status::kNotFound) << "the refused call reached the server";
  strict.close();
  EXPECT_TRUE(strict.ping().ok()) << "after close() the next call connects";
}

// An operator restarting the sale's server with --durability off on its data dir: it started
// blank beside the store, sold again what the store (and SQL) says is sold, and what it sold
// reached neither. It refuses, and the store is untouched.
TEST(RestartTest, DurabilityOffOnADataDirWithAStoreRefusesToStart) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  Client admin = server.admin();
  ASSERT_TRUE(admin.sku_set({"tee", proto::kSetTotal, 5, 0, 0, 0}).ok());
  ASSERT_EQ(server.stop(), 0);
  const std::string log = server.data_dir() + ".log";
  server.set_log_file(log);
  server.set_args({"--durability", "off"});
  EXPECT_FALSE(server.start(3000)) << "started blank beside the store";
  const int status = server.wait_exit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << "a bad setting exits 2: " << status;
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("--durability off keeps nothing"), std::string::npos) << text;
  std::filesystem::remove(log);
  server.set_args({});
  ASSERT_TRUE(server.start());
  Client again = server.admin();
  EXPECT_EQ(again.sku_get("tee").body.total, 5u);
}

// ACKED deleted while the server runs (taken for a stray file): the server wrote on to the
// unlinked file, and the next start refused the store as one whose mark was lost. It is now
// written anew within a second (the tick), and later groups advance the new file.
TEST(RestartTest, AnAckedMarkDeletedWhileRunningIsWrittenAnew) {
  StockdProcess server;
  const std::string log = server.data_dir() + ".log";
  server.set_log_file(log);
  ASSERT_TRUE(server.start());
  {
    Client admin = server.admin();
    ASSERT_TRUE(admin.sku_set({"tee", proto::kSetTotal, 5, 0, 0, 0}).ok());
  }
  const std::filesystem::path mark = std::filesystem::path(server.data_dir()) / "ACKED";
  ASSERT_TRUE(std::filesystem::remove(mark));
  Client buyer = server.buyer();
  ASSERT_TRUE(buyer.reserve(reserve_req("u1", "", 0, {{"tee", 1}})).ok());
  EXPECT_TRUE(eventually(3000, [&] { return std::filesystem::exists(mark); }))
      << "ACKED not written anew";
  ASSERT_TRUE(buyer.reserve(reserve_req("u2", "", 0, {{"tee", 1}})).ok());
  server.kill9();
  ASSERT_TRUE(server.start()) << "refused after ACKED was deleted while it ran";
  Client admin = server.admin();
  EXPECT_EQ(admin.sku_get("tee").body.sold, 2u);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("ACKED was deleted or replaced while the server ran"), std::string::npos)
      << text;
  std::filesystem::remove(log);
}

// The data dir moved away and replaced while the server runs (a restore from a backup): the
// mark's check each second must not write this server's ACKED into the directory now at the
// path (another store's, whose next start it would refuse or weaken).
TEST(RestartTest, TheMarkIsNotWrittenIntoADirectoryThatReplacedTheDataDir) {
  StockdProcess server;
  ASSERT_TRUE(server.start());
  const std::string dir = server.data_dir();
  std::filesystem::rename(dir, dir + ".moved");
  std::filesystem::create_directory(dir);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // two ticks
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(dir) / "ACKED"))
      << "the server wrote its mark into the directory that replaced its data dir";
  server.kill9();
  std::filesystem::remove_all(dir + ".moved");
}

// stockd's exit codes are what a supervisor restarts on (README "Exit codes"; the systemd unit
// restarts on 1 only): a flag CLI11 cannot parse is a bad setting, 2, not CLI11's own 1xx codes
// (--bogus-flag exited 109, which the unit restarted).
TEST(ExitCodes, ABadFlagExitsTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--bogus-flag"}, {"--durability", "foo"}, {"--connections-max", "abc"}}) {
    ToolResult r = run_tool(STOCKD_BIN, args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
  }
  ToolResult help = run_tool(STOCKD_BIN, {"--help"});
  EXPECT_EQ(help.exit_code, 0);
}

// A port that cannot be bound (held by a process still stopping, an address not up yet at
// boot) is a fault a restart may cure: 1, which the unit restarts. It was 2, never restarted.
TEST(ExitCodes, APortInUseExitsOne) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), len), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const auto dir = make_temp_dir("port-in-use");
  ToolResult r = run_tool(STOCKD_BIN, {"--listen", "127.0.0.1:" + std::to_string(ntohs(a.sin_port)),
                                       "--data-dir", (dir / "data").string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  ::close(fd);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stockd::test
