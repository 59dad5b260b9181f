// The operator's view of the real stockd: GET /metrics (checked by promtool when installed, and
// against the answers the test got), /healthz, 404 and 405, and `stockctl top`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <thread>

#include "harness.h"

namespace stockd::test {
namespace {

using proto::Role;
using proto::Status;
using std::chrono::milliseconds;

struct HttpAnswer {
  int code = 0;      // 0: no HTTP answer
  std::string head;  // the status line and the header fields
  std::string body;
};

// Sends `request` as is to ip:port (an IPv4 or IPv6 literal) and reads the answer until the
// server closes.
HttpAnswer http(int port, const std::string& request, const char* ip = "127.0.0.1") {
  HttpAnswer out;
  sockaddr_storage a{};
  socklen_t len = 0;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&a);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&a);
  if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *a4;
  } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *a6;
  }
  int fd = ::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string resp;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buf[65536];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) resp.append(buf, size_t(n));
  }
  ::close(fd);
  size_t head_end = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) return out;
  out.code = std::atoi(resp.c_str() + 9);
  out.head = resp.substr(0, head_end + 2);
  out.body = resp.substr(head_end + 4);
  return out;
}

HttpAnswer get(int port, const std::string& path) {
  return http(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

// One sample of a Prometheus text body: `name` with exactly `labels`; nullopt if absent.
std::optional<double> sample(const std::string& body, const std::string& name,
                             const std::map<std::string, std::string>& labels = {}) {
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
    size_t p = name.size();
    std::map<std::string, std::string> got;
    if (p < line.size() && line[p] == '{') {
      size_t end = line.find('}', p);
      if (end == std::string::npos) continue;
      std::string ls = line.substr(p + 1, end - p - 1);
      for (size_t i = 0; i < ls.size();) {  // name="value",... (test values have no quotes)
        size_t eq = ls.find("=\"", i), q = ls.find('"', eq + 2);
        if (eq == std::string::npos || q == std::string::npos) break;
        got[ls.substr(i, eq - i)] = ls.substr(eq + 2, q - eq - 2);
        i = q + 2;
      }
      p = end + 1;
    }
    if (p >= line.size() || line[p] != ' ' || got != labels) continue;
    return std::strtod(line.c_str() + p + 1, nullptr);
  }
  return std::nullopt;
}

// promtool on PATH, or "".
std::string find_promtool() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string p = (dir.empty() ? std::string(".") : dir) + "/promtool";
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// `promtool check metrics` on `body`: its exit status (as from pclose) and output.
std::pair<int, std::string> promtool_check(const std::string& promtool, const std::string& body) {
  auto file = std::filesystem::temp_directory_path() /
              ("stockd-metrics-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(file) << body;
  std::string cmd = "'" + promtool + "' check metrics < '" + file.string() + "' 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = ::pclose(p);
  std::filesystem::remove(file);
  return {status, out};
}

proto::ReserveReq reserve(const std::string& user, const std::string& sku, uint32_t qty,
                          uint32_t ttl_ms = 0) {
  proto::ReserveReq r;
  r.user = user;
  r.ttl_ms = ttl_ms;
  r.lines = {{sku, qty}};
  return r;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The port may be taken between free_port() and stockd's bind: try a few.
    for (int attempt = 0; attempt < 3; ++attempt) {
      metrics_port_ = free_port();
      server_ = std::make_unique<StockdProcess>(std::vector<std::string>{
          "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_)});
      if (server_->start()) return;
    }
    FAIL() << "stockd with --metrics-listen did not come up";
  }

  ToolResult top(std::vector<std::string> args) {
    std::vector<std::string> all = {"--server", "127.0.0.1:" + std::to_string(server_->port()),
                                    "--timeout-ms", "5000", "top"};
    all.insert(all.end(), args.begin(), args.end());
    return run_tool(STOCKCTL_BIN, all);
  }

  // RESERVE answers of every kind (by status, as this test saw them): 4 OK, 2 SOLD_OUT,
  // 1 LIMIT_EXCEEDED, 1 NOT_FOUND, 1 BAD_REQUEST; leaves one live hold of 2 units.
  std::map<Status, int> traffic() {
    Client admin = server_->admin();
    make_sku(admin, "M-DROP", 3);
    make_sku(admin, "M-HOLD", 5, /*per_user_limit=*/3);
    Client buyer = server_->buyer();
    std::map<Status, int> answers;
    auto count = [&](const proto::ReserveReq& req) {
      auto r = buyer.reserve(req);
      EXPECT_TRUE(r.transport_ok()) << r.error;
      ++answers[r.status];
    };
    for (int i = 0; i < 5; ++i) count(reserve("u" + std::to_string(i), "M-DROP", 1));
    count(reserve("h1", "M-HOLD", 2, 60000));  // a live hold
    count(reserve("h1", "M-HOLD", 2, 60000));  // over the limit of 3
    count(reserve("x", "M-NOPE", 1));
    count(reserve("x", "M-HOLD", 0));  // qty 0
    return answers;
  }

  int metrics_port_ = 0;
  std::unique_ptr<StockdProcess> server_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string show(const ToolResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

TEST_F(MetricsTest, CountersMatchWhatWasAnswered) {
  std::map<Status, int> answers = traffic();
  ASSERT_EQ(answers[Status::kOk], 4);
  ASSERT_EQ(answers[Status::kSoldOut], 2);
  ASSERT_EQ(answers[Status::kLimitExceeded], 1);
  ASSERT_EQ(answers[Status::kNotFound], 1);
  ASSERT_EQ(answers[Status::kBadRequest], 1);

  HttpAnswer m = get(metrics_port_, "/metrics");
  ASSERT_EQ(m.code, 200) << m.body;
  for (auto [status, n] : answers) {
    auto v = sample(m.body, "stockd_requests_total",
                    {{"op", "RESERVE"}, {"status", proto::status_name(status)}});
    ASSERT_TRUE(v.has_value()) << proto::status_name(status) << " missing in\n" << m.body;
    EXPECT_EQ(*v, n) << proto::status_name(status);
  }
  EXPECT_EQ(sample(m.body, "stockd_live_holds"), 1);
  EXPECT_EQ(sample(m.body, "stockd_skus"), 2);
  EXPECT_EQ(sample(m.body, "stockd_store_failed"), 0);
  EXPECT_EQ(sample(m.body, "stockd_sku_units", {{"sku", "M-DROP"}, {"state", "sold"}}), 3);
  EXPECT_EQ(sample(m.body, "stockd_sku_units", {{"sku", "M-DROP"}, {"state", "available"}}), 0);
  EXPECT_EQ(sample(m.body, "stockd_sku_units", {{"sku", "M-HOLD"}, {"state", "held"}}), 2);
  EXPECT_EQ(sample(m.body, "stockd_outbox_lag"), 3);  // 3 orders, no sidecar
  // Every answered request is timed: at least the test's 9 reserves.
  auto timed = sample(m.body, "stockd_request_duration_seconds_count");
  ASSERT_TRUE(timed.has_value());
  EXPECT_GE(*timed, 9);
  EXPECT_EQ(sample(m.body, "stockd_request_duration_seconds_bucket", {{"le", "+Inf"}}), timed);
}

TEST_F(MetricsTest, PromtoolAcceptsTheFormat) {
  traffic();  // so that every family, the SKU gauges included, has samples
  HttpAnswer m = get(metrics_port_, "/metrics");
  ASSERT_EQ(m.code, 200) << m.body;
  std::string promtool = find_promtool();
  if (promtool.empty()) GTEST_SKIP() << "promtool not on PATH (Debian: prometheus): not checked";
  auto [status, out] = promtool_check(promtool, m.body);
  EXPECT_EQ(status, 0) << "promtool check metrics:\n" << out << "\non:\n" << m.body;
}

// The metrics address may be a name (localhost) or an IPv6 literal, as the client port's may.
TEST(MetricsListen, TakesLocalhostAndIpv6) {
  const int port4 = free_port();
  StockdProcess by_name({"--metrics-listen", "localhost:" + std::to_string(port4)});
  ASSERT_TRUE(by_name.start()) << "--metrics-listen localhost:PORT refused";
  EXPECT_EQ(http(port4, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").code, 200);
  const int port6 = free_port();
  StockdProcess v6({"--metrics-listen", "[::1]:" + std::to_string(port6)});
  if (!v6.start()) GTEST_SKIP() << "no IPv6 loopback here";
  EXPECT_EQ(http(port6, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "::1").code, 200);
}

// HEAD gets the head a GET would get, its Content-Length included, and no body (RFC 9110 9.3.2):
// a scraper or load balancer that probes with HEAD on a kept-alive connection would otherwise
// read the body as the start of its next answer.
void expect_head_answers_without_a_body(int port, const char* ip = "127.0.0.1") {
  for (const char* path : {"/metrics", "/healthz", "/nope"}) {
    const HttpAnswer got =
        http(port, std::string("GET ") + path + " HTTP/1.1\r\nConnection: close\r\n\r\n", ip);
    const HttpAnswer head =
        http(port, std::string("HEAD ") + path + " HTTP/1.1\r\nConnection: close\r\n\r\n", ip);
    ASSERT_NE(got.code, 0) << path;
    EXPECT_EQ(head.code, got.code) << path;
    EXPECT_EQ(head.body, "") << path;
    if (std::string(path) != "/metrics") {  // the page's numbers move between the two requests
      EXPECT_NE(head.head.find("Content-Length: " + std::to_string(got.body.size()) + "\r\n"),
                std::string::npos)
          << path << ": " << head.head;
    }
  }
}

TEST_F(MetricsTest, HealthzNotFoundAndMethodNotAllowed) {
  HttpAnswer h = get(metrics_port_, "/healthz");
  EXPECT_EQ(h.code, 200);
  EXPECT_EQ(h.body, "ok\n");
  EXPECT_EQ(get(metrics_port_, "/nope").code, 404);
  EXPECT_EQ(get(metrics_port_, "/metrics?x=1").code, 200);  // a query string is ignored
  HttpAnswer post =
      http(metrics_port_, "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.code, 405);
  EXPECT_NE(post.head.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << post.head;
  expect_head_answers_without_a_body(metrics_port_);
}

// A connection closed for bad input whose peer never takes its last answers is closed at the
// write timeout (not kept, not closed sooner), and counted as one: those answers are lost.
TEST(MetricsCloses, AFinishedConnectionWhoseAnswersDoNotMoveIsCountedAsAWriteTimeout) {
  constexpr int kWriteTimeoutMs = 1500;
  int mport = 0;
  auto server = start_with_metrics({"--write-timeout-ms", std::to_string(kWriteTimeoutMs)}, mport);
  ASSERT_TRUE(server) << "stockd with --metrics-listen did not come up";
  const auto write_timeouts = [&] {
    return sample(get(mport, "/metrics").body, "stockd_connection_closes_total",
                  {{"reason", "write_timeout"}})
        .value_or(-1);
  };
  ASSERT_EQ(write_timeouts(), 0);

  {
    Client admin = server->admin();
    make_sku(admin, "WT-1", 1'000'000);
  }
  // A peer (with an Ethernet-sized segment) that pipelines 20,000 buy-now RESERVEs, whose
  // answers outgrow its receive window, then bytes that are no frame, and reads nothing.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rcvbuf = 256 << 10, mss = 1448;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  ::setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(server->port()));
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::string bytes;
  proto::encode_request(proto::Opcode::kHello, 1, proto::HelloReq{1, Role::kBuyer, "", "raw"},
                        bytes);
  for (uint32_t i = 0; i < 20000; ++i) {
    proto::encode_request(proto::Opcode::kReserve, 2 + i, reserve("wt", "WT-1", 1), bytes);
  }
  bytes += std::string(32, '\xff');
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    std::string_view left = bytes;
    while (!stop && !left.empty()) {
      ssize_t n = ::send(fd, left.data(), left.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) left.remove_prefix(static_cast<size_t>(n));
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
      if (n <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  const auto t0 = Clock::now();
  const bool counted =
      eventually((kWriteTimeoutMs + 5000) * kSlow, [&] { return write_timeouts() == 1; }, 50);
  const int64_t after = ms_since(t0);
  stop = true;
  sender.join();
  ::close(fd);
  std::printf("[ measured ] closed and counted after %lld ms\n", static_cast<long long>(after));
  EXPECT_TRUE(counted) << "write_timeout closes: " << write_timeouts();
  EXPECT_GE(after, kWriteTimeoutMs - 200) << "closed before the write timeout";
}

TEST_F(MetricsTest, TopPrintsOneJsonObjectPerRefresh) {
  Client admin = server_->admin();
  make_sku(admin, "T-GONE", 1);
  make_sku(admin, "T-BUSY", 1000000);
  Client buyer = server_->buyer();
  ASSERT_TRUE(buyer.reserve(reserve("a", "T-GONE", 1)).ok());
  // Traffic while top runs, so that its rates have something to show.
  std::atomic<bool> done{false};
  std::thread load([&] {
    Client c = server_->buyer();
    for (int i = 0; !done; ++i) {
      (void)c.reserve(reserve("b" + std::to_string(i), "T-BUSY", 1));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  // top starts once the load sells (on a loaded machine the thread may start late, and a first
  // refresh without sales would show no rate and T-GONE ahead of T-BUSY).
  ASSERT_TRUE(eventually(10000, [&] { return admin.sku_get("T-BUSY").body.sold >= 10; }))
      << "the load did not start";
  ToolResult r = top({"--iterations", "2", "--interval-ms", "200", "--json", "--metrics",
                      "127.0.0.1:" + std::to_string(metrics_port_)});
  done = true;
  load.join();
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (const auto& l : lines) {
    EXPECT_EQ(json_field(l, "store"), "ok") << l;
    EXPECT_EQ(json_u64(l, "skus"), 2u) << l;
    EXPECT_EQ(json_u64(l, "sold_out_skus"), 1u) << l;
    EXPECT_NE(l.find(R"("sold_out":[{"sku":"T-GONE")"), std::string::npos) << l;
    EXPECT_NE(l.find(R"("top_sold":[{"sku":"T-BUSY")"), std::string::npos) << l;
    EXPECT_EQ(json_u64(l, "live_holds"), 0u) << l;
    EXPECT_GE(json_u64(l, "connections"), 2u) << l;  // top's own and the load's
    uint64_t interval = json_u64(l, "interval_ms");
    EXPECT_GE(interval, 150u) << l;
    EXPECT_LE(interval, 5000u) << l;
    double rps = std::atof(json_field(l, "requests_per_s").value_or("-1").c_str());
    double ok = std::atof(json_field(l, "reserves_ok_per_s").value_or("-1").c_str());
    EXPECT_GT(ok, 0) << l;
    EXPECT_GE(rps, ok) << l;
    EXPECT_NE(json_field(l, "group_size_mean"), "null") << l;
    auto p99 = json_field(l, "p99_ms");
    ASSERT_TRUE(p99.has_value()) << l;
    EXPECT_NE(*p99, "null") << l;
    EXPECT_GT(std::atof(p99->c_str()), 0) << l;
    EXPECT_FALSE(json_field(l, "metrics_error").has_value()) << l;
  }
}

TEST_F(MetricsTest, TopTextIsOneBlockPerRefreshWithoutATerminal) {
  ToolResult r = top({"--iterations", "2", "--interval-ms", "100"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  size_t blocks = 0;
  for (const auto& l : lines_of(r.out)) blocks += l.rfind("stockd 127.0.0.1:", 0) == 0;
  EXPECT_EQ(blocks, 2u) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "ANSI codes without a terminal";
  EXPECT_NE(r.out.find("p99 latency - (needs --metrics)"), std::string::npos) << r.out;
}

// top's exit code follows its last refresh the way it follows a first sample: 1 when the server
// refused it, 3 when nothing answered (it said 3 for both). Restarted with a client token, the
// server refuses the running top's next HELLO (top speaks as a buyer without a token here).
TEST_F(MetricsTest, TopExitsOneWhenItsLastRefreshIsRefused) {
  std::thread restart([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    server_->kill9();
    server_->set_args({"--client-token", "sale-day-token"});
    EXPECT_TRUE(server_->start());
  });
  ToolResult r = top({"--iterations", "3", "--interval-ms", "1500"});  // the restart: < 3 s
  restart.join();
  EXPECT_EQ(r.exit_code, 1) << show(r);
}

TEST_F(MetricsTest, TopWithoutAServerExitsThree) {
  ToolResult r = run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(free_port()),
                                         "top", "--iterations", "1"});
  EXPECT_EQ(r.exit_code, 3) << show(r);
  ToolResult bad = top({"--metrics", "no-port"});
  EXPECT_EQ(bad.exit_code, 2) << show(bad);
}

}  // namespace
}  // namespace stockd::test

namespace stockd::test {
namespace {

// Starts stockd-outbox with --metrics-listen; returns its pid (or -1).
pid_t start_sidecar(const std::vector<std::string>& args) {
  std::vector<std::string> all = {STOCKD_OUTBOX_BIN};
  all.insert(all.end(), args.begin(), args.end());
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!std::getenv("STOCKD_TEST_SIDECAR_LOG")) {  // set it to see the sidecar's log
      if (FILE* f = std::freopen("/dev/null", "w", stderr)) (void)f;
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

void stop_sidecar(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// The sidecar says on /metrics what it copied, and when SQL is down, says that too (sql_up 0,
// failures counted, /healthz 503) while it keeps retrying.
TEST_F(MetricsTest, SidecarExportsItsProgressAndSqlOutages) {
  traffic();  // 3 buy-now orders in the outbox (and one live hold, not an order)
  Client admin = server_->admin();
  auto st = admin.outbox_status();
  ASSERT_TRUE(st.ok()) << st.error;
  const double head = static_cast<double>(st.body.head_seq);
  ASSERT_EQ(head, 3.0);
  auto dir = make_temp_dir("sidecar-metrics");
  const std::string server = "127.0.0.1:" + std::to_string(server_->port());
  int good_port = free_port();
  pid_t good = start_sidecar({"--server", server, "--token", StockdProcess::kOutboxToken, "--sql",
                              "sqlite:" + (dir / "o.db").string(), "--metrics-listen",
                              "127.0.0.1:" + std::to_string(good_port)});
  int down_port = free_port();
  pid_t down = start_sidecar({"--server", server, "--token", StockdProcess::kOutboxToken, "--sql",
                              "postgresql://nobody@127.0.0.1:1/none", "--metrics-listen",
                              "127.0.0.1:" + std::to_string(down_port)});
  HttpAnswer m;
  EXPECT_TRUE(eventually(10000, [&] {
    m = get(good_port, "/metrics");
    return sample(m.body, "stockd_outbox_sidecar_cursor_seq") == head;
  })) << m.body;
  EXPECT_EQ(sample(m.body, "stockd_outbox_sidecar_lag"), 0.0);
  EXPECT_EQ(sample(m.body, "stockd_outbox_sidecar_sql_up"), 1.0);
  EXPECT_EQ(sample(m.body, "stockd_outbox_sidecar_copied_records_total"), head);
  EXPECT_EQ(get(good_port, "/healthz").code, 200);
  std::string promtool = find_promtool();
  if (!promtool.empty()) {
    auto [status, out] = promtool_check(promtool, m.body);
    EXPECT_EQ(status, 0) << out;
  }

  HttpAnswer d;
  EXPECT_TRUE(eventually(10000, [&] {
    d = get(down_port, "/metrics");
    auto f = sample(d.body, "stockd_outbox_sidecar_sql_failures_total");
    return f && *f >= 2.0;
  })) << d.body;
  EXPECT_EQ(sample(d.body, "stockd_outbox_sidecar_sql_up"), 0.0);
  EXPECT_EQ(get(down_port, "/healthz").code, 503);
  stop_sidecar(good);
  stop_sidecar(down);
  std::filesystem::remove_all(dir);
}

// The sidecar's --metrics-listen takes what stockd's does (a name, an IPv6 address in brackets:
// it used to refuse both, "bad IPv4 address"), and answers HEAD and other methods as HTTP says.
TEST_F(MetricsTest, SidecarMetricsListenTakesNamesAndIpv6AndAnswersHead) {
  auto dir = make_temp_dir("sidecar-listen");
  const std::string server = "127.0.0.1:" + std::to_string(server_->port());
  const auto start = [&](const std::string& listen, int port, const char* ip) {
    pid_t pid = start_sidecar({"--server", server, "--token", StockdProcess::kOutboxToken, "--sql",
                               "sqlite:" + (dir / "o.db").string(), "--metrics-listen", listen});
    if (!eventually(5000,
                    [&] { return http(port, "GET /healthz HTTP/1.1\r\n\r\n", ip).code == 200; })) {
      stop_sidecar(pid);
      return pid_t{-1};
    }
    return pid;
  };
  const int port4 = free_port();
  const pid_t by_name = start("localhost:" + std::to_string(port4), port4, "127.0.0.1");
  EXPECT_GT(by_name, 0) << "--metrics-listen localhost:PORT";
  if (by_name > 0) {
    const HttpAnswer post = http(port4, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(post.code, 405);
    EXPECT_NE(post.head.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << post.head;
    expect_head_answers_without_a_body(port4);
  }
  stop_sidecar(by_name);
  const int fd6 = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  const bool have_v6 = fd6 >= 0 && ::bind(fd6, reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0;
  if (fd6 >= 0) ::close(fd6);
  if (have_v6) {
    const int port6 = free_port();
    const pid_t v6 = start("[::1]:" + std::to_string(port6), port6, "::1");
    EXPECT_GT(v6, 0) << "--metrics-listen [::1]:PORT";
    if (v6 > 0) expect_head_answers_without_a_body(port6, "::1");
    stop_sidecar(v6);
  }
  std::filesystem::remove_all(dir);
}

// The sidecar's metrics port against peers an operator's scraper never is: one that trickles its
// request a byte at a time must not keep a scrape waiting, and one that sends more than the
// port reads while its receive window is smaller than the page still gets the whole page (a
// close with bytes unread is a reset, which destroys what the peer has not taken yet).
TEST_F(MetricsTest, SidecarMetricsPortServesScrapesPastHostilePeers) {
  auto dir = make_temp_dir("sidecar-hostile");
  const std::string server = "127.0.0.1:" + std::to_string(server_->port());
  int port = 0;
  pid_t sidecar = -1;
  for (int attempt = 0; attempt < 3 && sidecar < 0; ++attempt) {  // the port may be taken
    port = free_port();
    sidecar = start_sidecar({"--server", server, "--token", StockdProcess::kOutboxToken, "--sql",
                             "sqlite:" + (dir / "o.db").string(), "--metrics-listen",
                             "127.0.0.1:" + std::to_string(port)});
    if (!eventually(5000, [&] { return get(port, "/healthz").code == 200; })) {
      stop_sidecar(sidecar);
      sidecar = -1;
    }
  }
  ASSERT_GT(sidecar, 0) << "stockd-outbox with --metrics-listen did not come up";
  const auto connect_to = [&](int rcvbuf) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) {  // a small window, and segments small enough to fill it
      int mss = 536;
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
      ::setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  };

  {  // A trickler sends a byte every 200 ms for 4 s; a scrape meanwhile is answered at once.
    int slow = connect_to(0);
    std::atomic<bool> stop{false};
    std::thread trickler([&] {
      const std::string req = "GET /metrics HTTP/1.1\r\nX-Slow: " + std::string(200, 'a');
      for (size_t i = 0; i < req.size() && !stop; ++i) {
        if (::send(slow, &req[i], 1, MSG_NOSIGNAL) != 1) break;
        for (int t = 0; t < 20 && !stop; ++t) std::this_thread::sleep_for(milliseconds(10));
      }
    });
    std::this_thread::sleep_for(milliseconds(300));
    const auto t0 = Clock::now();
    HttpAnswer h = get(port, "/metrics");
    const int64_t took = ms_since(t0);
    stop = true;
    trickler.join();
    ::close(slow);
    EXPECT_EQ(h.code, 200);
    EXPECT_LT(took, 1000) << "a scrape waited " << took << " ms behind a trickling peer";
  }

  {  // 16 silent peers hold every slot and 4 more wait in the backlog: a probe still gets in.
    std::vector<int> silent;
    for (int i = 0; i < 20; ++i) silent.push_back(connect_to(0));
    std::this_thread::sleep_for(milliseconds(300));
    const auto t0 = Clock::now();
    HttpAnswer h = get(port, "/healthz");
    const int64_t took = ms_since(t0);
    for (int fd : silent) ::close(fd);
    EXPECT_EQ(h.code, 200);
    EXPECT_LT(took, 500) << "a probe waited " << took << " ms behind silent peers";
  }
  {  // 40 probes that read their answers and never close, then one more: none waits for slots.
    std::vector<int> kept;
    const auto t0 = Clock::now();
    for (int i = 0; i < 40; ++i) {
      const int fd = connect_to(0);
      kept.push_back(fd);
      const std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
      ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
      std::string resp;
      while (resp.find("ok\n") == std::string::npos) {
        pollfd pf{fd, POLLIN, 0};
        char buf[512];
        if (::poll(&pf, 1, 5000) != 1) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        resp.append(buf, static_cast<size_t>(n));
      }
      ASSERT_NE(resp.find("ok\n"), std::string::npos) << "probe " << i << ": " << resp;
    }
    HttpAnswer h = get(port, "/healthz");
    const int64_t took = ms_since(t0);
    for (int fd : kept) ::close(fd);
    EXPECT_EQ(h.code, 200);
    EXPECT_LT(took, 3000) << "41 probes took " << took << " ms: answered peers kept their slots";
  }
  EXPECT_EQ(get(port, "/metricsX").code, 404);
  EXPECT_EQ(get(port, "/metrics?name[]=x").code, 200);

  const std::string with_body =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 262144\r\n\r\n" +
      std::string(256u << 10, 'b');
  for (int round = 0; round < 5; ++round) {
    int fd = connect_to(1);  // the kernel's smallest receive buffer: a window under the page
    std::atomic<bool> stop{false};
    std::thread sender([&] {  // goes on sending while the sidecar answers and closes
      std::string_view left = with_body;
      while (!stop && !left.empty()) {
        ssize_t n = ::send(fd, left.data(), left.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) left.remove_prefix(static_cast<size_t>(n));
        if (n < 0 && errno != EAGAIN && errno != EINTR) break;
        if (n <= 0) std::this_thread::sleep_for(milliseconds(5));
      }
    });
    std::this_thread::sleep_for(milliseconds(300));  // a busy scraper: reads a moment later
    std::string resp;
    for (;;) {
      pollfd pf{fd, POLLIN, 0};
      if (::poll(&pf, 1, 5000) != 1) break;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) break;
      resp.append(buf, static_cast<size_t>(n));
    }
    stop = true;
    sender.join();
    ::close(fd);
    ASSERT_EQ(resp.substr(0, 12), "HTTP/1.1 200") << "round " << round << ": " << resp.size();
    const size_t head_end = resp.find("\r\n\r\n");
    const size_t length_at = resp.find("Content-Length: ");
    ASSERT_TRUE(head_end != std::string::npos && length_at < head_end) << resp.substr(0, 200);
    EXPECT_EQ(resp.size() - head_end - 4, std::stoul(resp.substr(length_at + 16)))
        << "round " << round << ": the page was cut";
  }
  EXPECT_EQ(get(port, "/healthz").code, 200) << get(port, "/metrics").body;
  stop_sidecar(sidecar);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stockd::test
