// kill -9 under load, over and over: the real stockd on one data dir, client threads buying,
// holding, committing, releasing and claiming with idempotency keys; SIGKILL at a random moment
// (and, every tenth cycle, again while it recovers); restart; check the server against every
// answer the clients were given (see ledger.h for what is checked).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "crash_env.h"
#include "ledger.h"
#include "load.h"
#include "support/process.h"

namespace stockd::crash {
namespace {

using namespace std::chrono_literals;
using test::StockdProcess;

std::string tail_of(const std::string& path, size_t bytes = 3000) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

// Starts stockd on `dir` and kills it `delay` later, whether or not it finished recovering.
void kill_while_recovering(const std::string& dir, const std::string& log,
                           std::chrono::microseconds delay) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    execl(STOCKD_BIN, STOCKD_BIN, "--listen", "127.0.0.1:0", "--data-dir", dir.c_str(),
          "--admin-token", StockdProcess::kAdminToken, "--log-level", "warn", nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(delay);
  ::kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

Client connect(const StockdProcess& p, proto::Role role) {
  ClientOptions o = p.options(role);
  o.timeout_ms = 10000;
  Client c(o);
  (void)c.connect();  // a failure shows in the first call, which connects again
  return c;
}

TEST(Kill9, CrashLoopUnderLoadKeepsEveryAcknowledgedAnswer) {
  const int cycles = env_int("STOCKD_CRASH_CYCLES", 100);
  const uint64_t seed = env_seed();
  std::printf("kill9: %d cycles, STOCKD_CRASH_SEED=%llu\n", cycles,
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  // The ledger walks hold ids in sequence to find the holds it was never told about. A
  // checkpoint every few hundred decisions and a snapshot every thousand or so: the kills land
  // before, during and after checkpoints and snapshots (their table files half written,
  // ingested or renamed, the log not yet trimmed) as well as in the log.
  StockdProcess p(
      {"--sequential-hold-ids", "--checkpoint-every", "300", "--snapshot-every", "1000"});
  const std::string log = p.data_dir() + ".log";
  p.set_log_file(log);
  ASSERT_TRUE(p.start()) << tail_of(log);

  Ledger ledger(default_skus());
  {
    Client admin = connect(p, proto::Role::kAdmin);
    ASSERT_EQ(ledger.seed(admin), "");
  }
  const auto t0 = std::chrono::steady_clock::now();
  int recovery_kills = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    const std::string where = "cycle " + std::to_string(cycle) +
                              ", STOCKD_CRASH_SEED=" + std::to_string(seed) + ", data dir " +
                              p.data_dir();
    Load load({.port = static_cast<uint16_t>(p.port()), .cycle = cycle, .seed = rng()}, ledger);
    load.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 281));
    p.kill9();
    load.stop();
    std::vector<Violation> v = ledger.absorb(load.ops());
    ASSERT_TRUE(v.empty()) << where << ": answers during the load broke promises:\n" << describe(v);

    if (cycle % 10 == 9) {  // a second crash while it replays the log
      kill_while_recovering(p.data_dir(), log, std::chrono::microseconds(rng() % 30000));
      ++recovery_kills;
    }
    ASSERT_TRUE(p.start()) << where << ": stockd did not come back:\n" << tail_of(log);
    Client admin = connect(p, proto::Role::kAdmin);
    Client buyer = connect(p, proto::Role::kBuyer);
    v = ledger.verify(admin, buyer, rng, false);
    ASSERT_TRUE(v.empty()) << where << ": after the restart:\n" << describe(v) << tail_of(log);
    ASSERT_EQ(ledger.top_up(admin), "") << where;
  }
  {
    Client admin = connect(p, proto::Role::kAdmin);
    Client buyer = connect(p, proto::Role::kBuyer);
    std::vector<Violation> v = ledger.verify(admin, buyer, rng, true);
    EXPECT_TRUE(v.empty()) << "final full check, STOCKD_CRASH_SEED=" << seed << ":\n"
                           << describe(v);
  }
  EXPECT_EQ(p.stop(), 0);
  if (!HasFailure()) {
    std::filesystem::remove(log);
    std::filesystem::remove(p.data_dir() + ".ready");
  }
  const Counts& c = ledger.counts();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "kill9: %d cycles (+%d kills during recovery) in %.1fs: %llu ops, %llu acknowledged, "
      "%llu refused (%s), %llu unanswered (%llu found durable, %llu not), %llu hold reads, "
      "%llu key retries\n",
      cycles, recovery_kills, secs, static_cast<unsigned long long>(c.ops),
      static_cast<unsigned long long>(c.acked), static_cast<unsigned long long>(c.refused),
      refusals_text(c).c_str(), static_cast<unsigned long long>(c.unanswered),
      static_cast<unsigned long long>(c.inflight_durable),
      static_cast<unsigned long long>(c.inflight_lost),
      static_cast<unsigned long long>(c.holds_checked),
      static_cast<unsigned long long>(c.key_retries));
}

}  // namespace
}  // namespace stockd::crash
