// stockctl end to end: the real binary against the real server, checking what a script relies
// on -- exit codes (0 OK, 1 refused, 2 bad input with nothing sent, 3 no answer), a one-line
// reason on stderr, and --json output that parses.
#include <set>

#include "harness.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;
using proto::Role;
using proto::Status;

class StockctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start()) << "stockd did not come up";
    dir_ = make_temp_dir("ctl");
    admin_ = std::make_unique<Client>(server_.options(Role::kAdmin));
    connect_or_fail(*admin_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // stockctl --server ... [--token admin] ARGS...
  ToolResult ctl(std::vector<std::string> args, bool as_admin = false) {
    std::vector<std::string> all = {"--server", "127.0.0.1:" + std::to_string(server_.port()),
                                    "--timeout-ms", "5000"};
    if (as_admin) {
      all.push_back("--token");
      all.push_back(StockdProcess::kAdminToken);
    }
    all.insert(all.end(), args.begin(), args.end());
    return run_tool(STOCKCTL_BIN, all);
  }
  fs::path write_file(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p;
  }

  StockdProcess server_;
  fs::path dir_;
  std::unique_ptr<Client> admin_;
};

std::string show(const ToolResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

// One line of text, ending in a newline.
bool one_line(const std::string& s) {
  return !s.empty() && s.back() == '\n' && s.find('\n') == s.size() - 1;
}

TEST_F(StockctlTest, AdminBuyerAndErrorPathsEndToEnd) {
  // sku set
  auto set = ctl({"--json", "sku", "set", "CTL-A", "--total", "10", "--per-user-limit", "4"}, true);
  ASSERT_EQ(set.exit_code, 0) << show(set);
  ASSERT_TRUE(one_line(set.out)) << set.out;
  EXPECT_EQ(json_field(set.out, "status"), "OK");
  EXPECT_EQ(json_u64(set.out, "total"), 10u);
  EXPECT_EQ(json_u64(set.out, "per_user_limit"), 4u);
  EXPECT_EQ(admin_->sku_get("CTL-A").body.total, 10u);

  // A buyer may not create SKUs: refused by the server, exit 1.
  auto not_admin = ctl({"sku", "set", "CTL-NOPE", "--total", "5"});
  EXPECT_EQ(not_admin.exit_code, 1) << show(not_admin);
  EXPECT_NE(not_admin.err.find("UNAUTHORIZED"), std::string::npos) << show(not_admin);
  EXPECT_EQ(admin_->sku_get("CTL-NOPE").status, Status::kNotFound);
  // A wrong admin token: the refusal names the role in words (it said "role 2").
  auto wrong = ctl({"--token", "not-the-token", "stats"});
  EXPECT_EQ(wrong.exit_code, 1) << show(wrong);
  EXPECT_NE(wrong.err.find("wrong token for role admin"), std::string::npos) << show(wrong);

  // seed: a bad line anywhere means exit 2, the line named, and nothing created.
  fs::path bad = write_file("bad.csv",
                            "sku,total,per_user_limit,opens_at,closes_at\n"
                            "CTL-B,5,,,\n"
                            "CTL-C,lots,,,\n"
                            "CTL-D,3,1,,\n");
  auto seed_bad = ctl({"seed", bad.string()}, true);
  EXPECT_EQ(seed_bad.exit_code, 2) << show(seed_bad);
  EXPECT_NE(seed_bad.err.find("bad.csv:3"), std::string::npos) << show(seed_bad);
  for (const char* sku : {"CTL-B", "CTL-C", "CTL-D"}) {
    EXPECT_EQ(admin_->sku_get(sku).status, Status::kNotFound) << sku << " created by a bad seed";
  }
  fs::path good = write_file("good.csv",
                             "sku,total,per_user_limit,opens_at,closes_at\n"
                             "CTL-B,5,,,\n"
                             "CTL-D,3,1,,\n");
  auto seed_good = ctl({"--json", "seed", good.string()}, true);
  ASSERT_EQ(seed_good.exit_code, 0) << show(seed_good);
  EXPECT_EQ(json_u64(seed_good.out, "applied"), 2u);
  auto b = admin_->sku_get("CTL-B");
  auto d = admin_->sku_get("CTL-D");
  EXPECT_EQ(b.body.total, 5u);
  EXPECT_EQ(d.body.total, 3u);
  EXPECT_EQ(d.body.per_user_limit, 1u);

  // reserve (hold) -> commit
  auto hold =
      ctl({"--json", "reserve", "CTL-A:2", "--user", "u1", "--key", "k-1", "--ttl-ms", "60000"});
  ASSERT_EQ(hold.exit_code, 0) << show(hold);
  ASSERT_TRUE(one_line(hold.out)) << hold.out;
  const uint64_t hold_id = json_u64(hold.out, "hold_id");
  ASSERT_GT(hold_id, 0u);
  // Ids are 64-bit and random: as JSON numbers, parsers that read doubles (jq 1.6, JavaScript)
  // rounded them, and the commit of the rounded id answered NOT_FOUND. They are strings.
  EXPECT_NE(hold.out.find("\"hold_id\":\"" + std::to_string(hold_id) + "\""), std::string::npos)
      << hold.out;
  EXPECT_EQ(json_field(hold.out, "state"), "HELD");
  EXPECT_GT(static_cast<int64_t>(json_u64(hold.out, "expires_at_ms")), wall_now_ms() + 50'000);
  // The same key again (a script retrying) answers the same hold.
  auto retry =
      ctl({"--json", "reserve", "CTL-A:2", "--user", "u1", "--key", "k-1", "--ttl-ms", "60000"});
  EXPECT_EQ(retry.exit_code, 0) << show(retry);
  EXPECT_EQ(json_u64(retry.out, "hold_id"), hold_id);
  auto commit = ctl({"--json", "commit", std::to_string(hold_id), "--user", "u1"});
  ASSERT_EQ(commit.exit_code, 0) << show(commit);
  EXPECT_EQ(json_field(commit.out, "state"), "COMMITTED");
  EXPECT_EQ(json_u64(commit.out, "hold_id"), hold_id);
  auto again = ctl({"--json", "commit", std::to_string(hold_id), "--user", "u1"});
  EXPECT_EQ(again.exit_code, 1) << show(again);
  EXPECT_EQ(json_field(again.out, "status"), "ALREADY_DONE");
  EXPECT_EQ(json_field(again.out, "state"), "COMMITTED");

  // reserve -> release -> hold get
  auto hold2 = ctl({"--json", "reserve", "CTL-A", "CTL-B:2", "--user", "u2", "--ttl-ms", "60000"});
  ASSERT_EQ(hold2.exit_code, 0) << show(hold2);
  const uint64_t hold2_id = json_u64(hold2.out, "hold_id");
  EXPECT_EQ(admin_->sku_get("CTL-B").body.held, 2u);
  auto release = ctl({"--json", "release", std::to_string(hold2_id), "--user", "u2"});
  ASSERT_EQ(release.exit_code, 0) << show(release);
  EXPECT_EQ(json_field(release.out, "state"), "RELEASED");
  EXPECT_EQ(admin_->sku_get("CTL-B").body.held, 0u);
  EXPECT_EQ(admin_->sku_get("CTL-B").body.available, 5u);
  auto get = ctl({"--json", "hold", "get", std::to_string(hold2_id), "--user", "u2"});
  ASSERT_EQ(get.exit_code, 0) << show(get);
  EXPECT_EQ(json_field(get.out, "state"), "RELEASED");
  EXPECT_EQ(json_field(get.out, "user"), "u2");
  auto missing = ctl({"hold", "get", "999999"});
  EXPECT_EQ(missing.exit_code, 1) << show(missing);
  EXPECT_TRUE(one_line(missing.err)) << show(missing);

  // codes load -> claim
  std::string codes_text;
  std::set<std::string> codes;
  for (int i = 0; i < 5; ++i) {
    codes.insert("CTL-CODE-" + std::to_string(i));
    codes_text += "CTL-CODE-" + std::to_string(i) + "\n";
  }
  ASSERT_EQ(ctl({"sku", "set", "CTL-G"}, true).exit_code, 0);
  auto load = ctl({"--json", "codes", "load", "CTL-G", write_file("codes.txt", codes_text)}, true);
  ASSERT_EQ(load.exit_code, 0) << show(load);
  EXPECT_EQ(json_u64(load.out, "loaded"), 5u);
  auto claim = ctl({"--json", "claim", "CTL-G", "--user", "u3", "--key", "ck-1"});
  ASSERT_EQ(claim.exit_code, 0) << show(claim);
  auto code = json_field(claim.out, "code");
  ASSERT_TRUE(code.has_value()) << claim.out;
  EXPECT_EQ(codes.count(*code), 1u) << *code << " was not loaded";
  EXPECT_GT(json_u64(claim.out, "order_id"), 0u);
  EXPECT_NE(claim.out.find("\"order_id\":\""), std::string::npos) << claim.out;
  EXPECT_EQ(json_u64(claim.out, "available"), 4u);
  auto claim_retry = ctl({"--json", "claim", "CTL-G", "--user", "u3", "--key", "ck-1"});
  EXPECT_EQ(json_field(claim_retry.out, "code"), code);
  // A load run again (after one cut short, or with more codes) adds what the pool lacks; the codes
  // in it already (the claimed one too) are skipped. It used to fail at the first, DUPLICATE_CODE.
  auto reload = ctl({"--json", "codes", "load", "CTL-G",
                     write_file("more.txt", codes_text + "CTL-CODE-5\nCTL-CODE-6\n")},
                    true);
  ASSERT_EQ(reload.exit_code, 0) << show(reload);
  EXPECT_EQ(json_u64(reload.out, "added"), 2u) << reload.out;
  EXPECT_EQ(json_u64(reload.out, "already_in_pool"), 5u) << reload.out;
  auto g = admin_->sku_get("CTL-G");
  EXPECT_EQ(g.body.total, 7u);
  EXPECT_EQ(g.body.available, 6u);

  // SOLD_OUT: exit 1, one line on stderr that says so; nothing on stdout without --json.
  auto all = ctl({"reserve", "CTL-B:5", "--user", "u6"});
  ASSERT_EQ(all.exit_code, 0) << show(all);
  auto sold_out = ctl({"reserve", "CTL-B", "--user", "u4"});
  EXPECT_EQ(sold_out.exit_code, 1) << show(sold_out);
  EXPECT_TRUE(one_line(sold_out.err)) << show(sold_out);
  EXPECT_NE(sold_out.err.find("SOLD_OUT"), std::string::npos) << show(sold_out);
  EXPECT_EQ(sold_out.out, "");
  auto sold_out_json = ctl({"--json", "reserve", "CTL-B", "--user", "u4"});
  EXPECT_EQ(sold_out_json.exit_code, 1);
  EXPECT_EQ(json_field(sold_out_json.out, "status"), "SOLD_OUT");
  EXPECT_EQ(json_u64(sold_out_json.out, "available"), 0u);
  EXPECT_EQ(admin_->sku_get("CTL-B").body.sold, 5u);
  // Over the per-user limit: exit 1 too, and the reason says which.
  auto limit = ctl({"reserve", "CTL-A:100", "--user", "u4"});
  EXPECT_EQ(limit.exit_code, 1) << show(limit);
  EXPECT_TRUE(one_line(limit.err)) << show(limit);
  EXPECT_NE(limit.err.find("LIMIT_EXCEEDED"), std::string::npos) << show(limit);

  // Bad arguments: exit 2, nothing sent.
  auto bad_args = ctl({"reserve", "CTL-A:zero", "--user", "u5"});
  EXPECT_EQ(bad_args.exit_code, 2) << show(bad_args);
  auto a = admin_->sku_get("CTL-A");
  EXPECT_EQ(a.body.sold, 2u);
  EXPECT_EQ(a.body.held, 0u);
  EXPECT_EQ(a.body.available, 8u);

  // Server down: exit 3 with a reason.
  ASSERT_TRUE(server_.alive());
  server_.kill9();
  auto down = ctl({"ping"});
  EXPECT_EQ(down.exit_code, 3) << show(down);
  EXPECT_TRUE(one_line(down.err)) << show(down);
  auto down_json = ctl({"--json", "sku", "get", "CTL-A"});
  EXPECT_EQ(down_json.exit_code, 3) << show(down_json);
}

// A SKU_LIST page may hold fewer than asked while more follow (it fits the frame: 1,000 views
// of 64-byte ids do not fit 64 KiB). `sku list` and `top` took the first short page for the
// last: 550 SKUs of 1,500, and top's sold-out and top-sold tables silently missed the rest.
TEST(StockctlPages, ShortPagesAreNotTheEnd) {
  StockdProcess server({"--frame-bytes-max", "65536"});
  ASSERT_TRUE(server.start());
  Client admin = server.admin();
  constexpr int kSkus = 1500;
  for (int i = 0; i < kSkus; ++i) {
    std::string id = "PAGE-" + std::to_string(10000 + i);
    id.resize(proto::kSkuBytesMax, 'x');
    admin.queue(proto::Opcode::kSkuSet, proto::SkuSetReq{id, proto::kSetTotal, 0, 0, 0, 0});
    if (i % 100 == 99) {
      for (const auto& a : admin.flush()) ASSERT_TRUE(a.ok()) << a.error;
    }
  }
  auto count = [](const std::string& out) {
    size_t n = 0;
    for (size_t at = out.find("PAGE-"); at != std::string::npos; at = out.find("PAGE-", at + 1))
      ++n;
    return n;
  };
  const std::vector<std::string> base = {"--server", "127.0.0.1:" + std::to_string(server.port()),
                                         "--token", StockdProcess::kAdminToken};
  std::vector<std::string> list = base;
  list.insert(list.end(), {"sku", "list", "--json"});
  ToolResult r = run_tool(STOCKCTL_BIN, list);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count(r.out), static_cast<size_t>(kSkus)) << "SKUs listed";
  std::vector<std::string> top = base;
  top.insert(top.end(), {"top", "--iterations", "1", "--json"});
  r = run_tool(STOCKCTL_BIN, top);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"skus\":" + std::to_string(kSkus)), std::string::npos) << r.out;
}

// A server that takes the connection and never answers: stockctl gives up after --timeout-ms,
// exit 3. Each call tried three connections, each waiting the whole timeout for its HELLO: 3.2 s
// for --timeout-ms 1000 (30 s at the default).
TEST(StockctlTimeout, ASilentServerIsGivenUpOnAfterTheTimeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // the kernel completes connects; nobody reads
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const auto t0 = Clock::now();
  ToolResult r =
      run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(ntohs(a.sin_port)),
                              "--timeout-ms", "1000", "stats"});
  const int64_t took = ms_since(t0);
  ::close(fd);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_LT(took, 2500 * kSlow) << "ms for --timeout-ms 1000";
  // A request that a rerun would apply twice: the operator is told what to check first.
  r = run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(ntohs(a.sin_port)),
                              "--timeout-ms", "300", "restock", "drop-1", "100"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("may have been applied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sku get drop-1"), std::string::npos) << r.err;
}

// A server that answers HELLO and the first row of a seed, then nothing: `seed --json` said
// "status": "OK" with rows unanswered (exit 3), and a script reading .status took it for done.
TEST(StockctlTimeout, ASeedWithRowsUnansweredIsNotOk) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::atomic<bool> done{false};
  std::thread fake([&] {  // answers HELLO and one SKU_SET, then reads and answers nothing
    const int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    std::string in, out;
    int answered = 0;
    char buf[4096];
    while (!done) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      for (;;) {
        std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(in.data()), in.size());
        proto::FrameDecode d = proto::decode_frame(bytes, proto::Limits{1 << 20});
        if (d.kind != proto::DecodeKind::kFrame) break;
        const auto op = static_cast<proto::Opcode>(d.header.opcode);
        if (op == proto::Opcode::kHello) {
          proto::encode_response(
              op, d.header.request_id, Status::kOk,
              proto::Response(proto::HelloResp{.frame_bytes_max = 1 << 20, .inflight_max = 1024}),
              out);
        } else if (answered++ == 0) {
          proto::encode_response(op, d.header.request_id, Status::kOk,
                                 proto::Response(proto::SkuView{.sku = "A", .total = 1}), out);
        }
        in.erase(0, d.consumed);
      }
      if (!out.empty() && ::send(c, out.data(), out.size(), MSG_NOSIGNAL) > 0) out.clear();
    }
    ::close(c);
  });
  const fs::path dir = make_temp_dir("ctl-fake");
  const fs::path seed = dir / "seed.csv";
  std::ofstream(seed) << "sku,total\nA,1\nB,2\nC,3\n";
  ToolResult r = run_tool(
      STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(ntohs(a.sin_port)), "--timeout-ms",
                     "500", "--token", "t", "--json", "seed", seed.string()});
  done = true;
  fake.join();
  ::close(fd);
  fs::remove_all(dir);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(json_field(r.out, "status"), "NO_ANSWER") << r.out;
  EXPECT_EQ(json_u64(r.out, "applied"), 1u) << r.out;
  EXPECT_EQ(json_u64(r.out, "unanswered"), 2u) << r.out;
}

// A seed "file" that never ends (a device, a wrong path): a clear refusal, exit 2, nothing sent.
// It was read until memory ran out: std::bad_alloc, "internal error", exit 3 (and without a
// limit on memory, the OOM killer).
// A device or a directory given as the file is refused at once, whatever memory allows: a seed of
// /dev/urandom grew stockctl to 2 GiB on the server's host before it was refused.
TEST_F(StockctlTest, ADeviceOrADirectoryIsNoFile) {
  for (const std::string& path : {std::string("/dev/urandom"), dir_.string()}) {
    const auto t0 = Clock::now();
    ToolResult r = ctl({"seed", path}, true);
    EXPECT_EQ(r.exit_code, 2) << show(r);
    EXPECT_NE(r.err.find("not a seed or codes file"), std::string::npos) << show(r);
    EXPECT_LT(ms_since(t0), 2000 * kSlow);
    r = ctl({"codes", "load", "POOL", path}, true);
    EXPECT_EQ(r.exit_code, 2) << show(r);
    EXPECT_NE(r.err.find("not a seed or codes file"), std::string::npos) << show(r);
  }
  auto skus = admin_->sku_list("", 10);
  ASSERT_TRUE(skus.ok()) << skus.error;
  EXPECT_TRUE(skus.body.skus.empty()) << "something was sent";
}

TEST_F(StockctlTest, AFileThatNeverEndsIsRefused) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan maps terabytes of shadow memory: a process under ulimit -v cannot start";
#endif
  // A pipe is a file (`seed <(make-seed)`): one that never ends is read up to the cap or what
  // memory allows, then refused.
  const std::string cmd = "ulimit -v 400000; cat /dev/zero | " + std::string(STOCKCTL_BIN) +
                          " --server 127.0.0.1:" + std::to_string(server_.port()) + " --token " +
                          StockdProcess::kAdminToken + " seed /dev/stdin";
  ToolResult r = run_tool("/bin/sh", {"-c", cmd});
  EXPECT_EQ(r.exit_code, 2) << show(r);
  EXPECT_NE(r.err.find("cannot read /dev/stdin"), std::string::npos) << show(r);
  auto skus = admin_->sku_list("", 10);
  ASSERT_TRUE(skus.ok()) << skus.error;
  EXPECT_TRUE(skus.body.skus.empty()) << "something was sent";
}

}  // namespace
}  // namespace stockd::test
