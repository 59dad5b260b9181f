// Hostile peers against the real stockd over loopback sockets. Each test plays a client that
// misbehaves on purpose -- hangs up in the middle of its answers, never reads, trickles bytes,
// holds half frames, floods the metrics port, asks for more than an answer can carry, signals
// the process -- and checks that the server contains it, stays up, and keeps serving a fresh
// connection afterwards.
//
// Written against the hardened server: --hello-timeout-ms, --frame-timeout-ms,
// --hello-pending-max, --output-bytes-max, --write-timeout-ms, --http-connections-max,
// --http-timeout-ms, --user-holds-max, --live-holds-max, --finished-holds-max, a minimum
// --frame-bytes-max of 65536, at most 256 codes per hold (proto::kHoldCodesMax), frames before
// HELLO answered UNAUTHORIZED (or FRAME_TOO_LARGE past 512 body bytes) and closed, SIGHUP
// ignored, long polls not idle, COMMIT of a released hold ALREADY_DONE.
//
// Time bounds are stated where they are asserted; under the sanitizers (a several times slower
// server) they are multiplied by kSlow. STOCKD_STRESS_SCALE scales the big counts (harness.h).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <string_view>
#include <thread>

#include "harness.h"

// gtest prints statuses by name and RawConn::Got by its enumerator.
namespace stockd::proto {
inline void PrintTo(Status s, std::ostream* os) { *os << status_name(s); }
}  // namespace stockd::proto

namespace stockd::test {
inline void PrintTo(RawConn::Got g, std::ostream* os) {
  static const char* const kNames[] = {"kFrame", "kClosed", "kTimeout", "kMalformed"};
  *os << kNames[static_cast<int>(g)];
}

namespace {

using proto::HoldState;
using proto::Opcode;
using proto::Role;
using proto::Status;
using std::chrono::milliseconds;

// The codes one RESERVE may take, summed over its code-pool lines.
constexpr uint32_t kHoldCodesMax = static_cast<uint32_t>(proto::kHoldCodesMax);

std::string exit_text(int status) {
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "wait status " + std::to_string(status);
}

// Starts `s`. A flag today's stockd does not know makes it refuse to start: that fails here.
::testing::AssertionResult started(StockdProcess& s) {
  if (s.start()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "stockd did not start (" << exit_text(s.exit_status())
                                       << "); does it know every flag this test passes?";
}

// The same process is alive and answers a PING on a fresh connection.
void expect_serving(StockdProcess& s, const std::string& after) {
  SCOPED_TRACE("after " + after);
  ASSERT_TRUE(s.alive()) << "stockd is gone: " << exit_text(s.exit_status());
  ClientOptions o = s.options(Role::kBuyer);
  o.timeout_ms = 5000 * kSlow;
  o.reconnect_attempts = 1;
  Client c(o);
  auto p = c.ping();
  EXPECT_TRUE(p.ok()) << "PING on a fresh connection: " << proto::status_name(p.status) << " "
                      << p.error;
  EXPECT_TRUE(s.alive()) << "stockd is gone: " << exit_text(s.exit_status());
}

std::string frame(Opcode op, uint32_t id, const proto::Request& req) {
  std::string f;
  proto::encode_request(op, id, req, f);
  return f;
}

std::string hello_frame(Role role, const std::string& token, uint32_t id = 1) {
  return frame(Opcode::kHello, id, proto::HelloReq{1, role, token, "hostile"});
}

// A header announcing `body_len` bytes, without the body.
std::string header_only(Opcode op, uint32_t id, uint32_t body_len) {
  proto::FrameHeader h;
  h.body_len = body_len;
  h.opcode = static_cast<uint16_t>(op);
  h.request_id = id;
  std::string out;
  proto::encode_header(h, out);
  return out;
}

std::string describe(const RawConn::Frame& f) {
  return "opcode " + std::to_string(f.header.opcode) + " status " + proto::status_name(f.status()) +
         " id " + std::to_string(f.header.request_id) + " '" + f.message + "'";
}

// A raw client socket that can misbehave: send without reading, send what fits right now, hang
// up with a FIN or a reset, and tell when the server closed it.
class Peer {
 public:
  using Frame = RawConn::Frame;
  using Got = RawConn::Got;

  // `rcvbuf` > 0: a receive buffer that small (set before connecting, so that the window the
  // server sees is small too), with an Ethernet-sized segment as a network client has: on
  // loopback (64 KiB segments) a window this small meets the kernel's SWS avoidance and the
  // server's TCP stops sending for seconds, a stall no real client sees.
  explicit Peer(int port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
      int mss = 1448;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
    }
    sockaddr_in a = loopback(port);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Peer() { close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Hangs up with a reset rather than a FIN.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }

  // Every byte, waiting at most `timeout_ms` for room; false if the server is gone or no room.
  bool send(std::string_view bytes, int timeout_ms = 5000 * kSlow) {
    auto until = Clock::now() + milliseconds(timeout_ms);
    for (;;) {
      bytes.remove_prefix(send_some(bytes));
      if (bytes.empty()) return true;
      if (gone_ || !wait(POLLOUT, until)) return false;
    }
  }
  // What the socket takes now without waiting: 0 when it is full or gone (gone() tells).
  size_t send_some(std::string_view bytes) {
    if (bytes.empty() || fd_ < 0) return 0;
    for (;;) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) gone_ = true;
      return 0;
    }
  }
  bool gone() const { return gone_; }
  // Waits up to `timeout_ms` until the socket takes more bytes (or is gone).
  void wait_writable(int timeout_ms) { wait(POLLOUT, Clock::now() + milliseconds(timeout_ms)); }
  // Waits up to `timeout_ms` until the socket can be read or written.
  void wait_any(int timeout_ms) { wait(POLLIN | POLLOUT, Clock::now() + milliseconds(timeout_ms)); }

  bool hello(Role role, const std::string& token, uint32_t id = 1) {
    Frame f;
    return send(hello_frame(role, token, id)) && read(f, 5000 * kSlow) == Got::kFrame &&
           f.status() == Status::kOk;
  }

  // One response frame within `timeout_ms` (any size: this side checks sizes itself).
  Got read(Frame& out, int timeout_ms) {
    auto until = Clock::now() + milliseconds(timeout_ms);
    for (;;) {
      if (Got g = RawConn::take_frame(buf_, 64u << 20, out); g != Got::kTimeout) return g;
      if (!wait(POLLIN, until)) return Got::kTimeout;
      char chunk[65536];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return Got::kClosed;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Reads what is there right now, up to `max` bytes, and throws it away.
  size_t discard_now(size_t max) {
    size_t total = 0;
    char chunk[65536];
    while (total < max) {
      ssize_t n = ::recv(fd_, chunk, std::min(sizeof chunk, max - total), MSG_DONTWAIT);
      if (n <= 0) break;
      total += static_cast<size_t>(n);
    }
    return total;
  }

  // True if the server closes the connection (EOF or reset) within `timeout_ms`; whatever it
  // sends before (an error frame, answers) is read and thrown away.
  bool closed_within(int timeout_ms) {
    buf_.clear();
    auto until = Clock::now() + milliseconds(timeout_ms);
    for (;;) {
      if (!wait(POLLIN, until)) return false;
      char chunk[65536];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EINTR && errno != EAGAIN) return true;  // reset
    }
  }

 private:
  // True when `events` (or an error or hang-up) is reported before `until`.
  bool wait(short events, Clock::time_point until) {
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
      pollfd p{fd_, events, 0};
      int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left)));
      if (rc < 0 && errno == EINTR) continue;
      return rc > 0;
    }
  }

  int fd_ = -1;
  bool gone_ = false;
  std::string buf_;
};

// `n` SKU ids of exactly `len` bytes in ascending byte order: prefix, zero-padded index, 'x'.
std::vector<std::string> sku_names(const std::string& prefix, size_t n, size_t len) {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    char num[24];
    std::snprintf(num, sizeof num, "%07zu", i);
    std::string s = prefix + num;
    s.resize(len, 'x');
    out.push_back(std::move(s));
  }
  return out;
}

// Creates counted SKUs, pipelined 1,000 SKU_SETs at a time. False (with a failure) on an error.
bool make_skus(Client& admin, const std::vector<std::string>& names, uint64_t total) {
  for (size_t i = 0; i < names.size(); i += 1000) {
    for (size_t j = i; j < std::min(names.size(), i + 1000); ++j) {
      admin.queue(Opcode::kSkuSet, proto::SkuSetReq{names[j], proto::kSetTotal, total, 0, 0, 0});
    }
    for (const auto& a : admin.flush()) {
      if (!a.ok()) {
        ADD_FAILURE() << "SKU_SET: " << proto::status_name(a.status) << " " << a.error;
        return false;
      }
    }
  }
  return true;
}

// `n` unique codes of exactly `len` bytes.
std::vector<std::string> code_names(const std::string& prefix, size_t n, size_t len) {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string c = prefix + std::to_string(i) + "-";
    c.resize(len, 'Z');
    out.push_back(std::move(c));
  }
  return out;
}

// GET `path` from 127.0.0.1:port; the HTTP status, or 0 if no answer came within `timeout_ms`.
int http_status(int port, const std::string& path, int timeout_ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
  sockaddr_in a = loopback(port);
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  std::string resp;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) resp.append(buf, size_t(n));
  }
  ::close(fd);
  if (resp.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(resp.c_str() + 9);
}

// ---- 1. SIGPIPE: answers written to a peer that hung up must not kill the server. ----

TEST(Sigpipe, AnswersToAPeerThatHungUpDoNotKillTheServer) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  ASSERT_TRUE(make_skus(admin, sku_names("PIPE-", 1000, 60), 10));
  const uint64_t base = stat_of(admin, "connections");

  std::string stats = hello_frame(Role::kBuyer, "");
  for (uint32_t i = 0; i < 2000; ++i) stats += frame(Opcode::kStats, 2 + i, proto::StatsReq{});
  std::string lists = hello_frame(Role::kBuyer, "");
  for (uint32_t i = 0; i < 30; ++i) {
    lists += frame(Opcode::kSkuList, 2 + i, proto::SkuListReq{"", 1000});
  }
  enum class HangUp { kClose, kReset, kShutdown };
  const std::pair<const char*, HangUp> hang_ups[] = {
      {"close", HangUp::kClose}, {"SO_LINGER 0", HangUp::kReset}, {"shutdown", HangUp::kShutdown}};
  const std::pair<const char*, const std::string*> loads[] = {{"2,000 STATS", &stats},
                                                              {"30 SKU_LIST of 1,000", &lists}};
  for (int round = 0; round < 3; ++round) {
    for (const auto& [load_name, load] : loads) {
      for (const auto& [how_name, how] : hang_ups) {
        const std::string what = std::string(load_name) + ", then " + how_name;
        {
          Peer p(server.port());
          ASSERT_TRUE(p.ok());
          ASSERT_TRUE(p.send(*load)) << what;
          if (how == HangUp::kReset) {
            p.reset();
          } else {
            if (how == HangUp::kShutdown) ::shutdown(p.fd(), SHUT_RDWR);
            p.close();
          }
        }
        // The server has written (or tried to) and dropped the connection, or died doing it.
        eventually(5000 * kSlow, [&] {
          if (!server.alive()) return true;
          auto r = admin.stats();
          if (!r.ok()) return false;
          for (const auto& s : r.body.stats) {
            if (s.name == "connections") return s.value <= base;
          }
          return false;
        });
        ASSERT_TRUE(server.alive())
            << "stockd died after " << what << ": " << exit_text(server.exit_status());
      }
    }
  }
  expect_serving(server, "peers that hung up on their answers");
}

// ---- 2. A hold carries at most 256 codes. ----

TEST(HoldCodesMax, AReserveOfMoreThan256CodesIsRefused) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  const size_t kBig = 65536;  // one more than a list16 count can say
  ASSERT_GT(make_code_pool(admin, "HC-BIG", code_names("B", kBig, 8)), 0u);
  ASSERT_GT(make_code_pool(admin, "HC-TWO", code_names("T", 200, 8)), 0u);
  make_sku(admin, "HC-PLAIN", 10'000);

  ClientOptions o = server.options(Role::kBuyer);
  o.timeout_ms = 10000 * kSlow;
  o.reconnect_attempts = 1;
  Client buyer(o);
  auto refused = [&](const char* what, std::vector<proto::Line> lines) {
    SCOPED_TRACE(what);
    auto r = buyer.reserve(reserve_req("hc-user", "", 60'000, std::move(lines)));
    ASSERT_TRUE(r.transport_ok()) << r.error << "; stockd "
                                  << (server.alive() ? "alive" : exit_text(server.exit_status()));
    EXPECT_EQ(r.status, Status::kBadRequest) << r.error << " codes=" << r.body.codes.size();
    EXPECT_NE(r.error.find(std::to_string(kHoldCodesMax)), std::string::npos)
        << "the reason does not name the limit: " << r.error;
  };
  refused("one line of 65,536 codes", {{"HC-BIG", static_cast<uint32_t>(kBig)}});
  ASSERT_FALSE(server.wait_exit_for(200)) << "stockd died: " << exit_text(server.exit_status());
  refused("one line of 257 codes", {{"HC-BIG", kHoldCodesMax + 1}});
  refused("two pools, 257 codes together", {{"HC-BIG", 200}, {"HC-TWO", 57}});
  expect_serving(server, "RESERVEs of too many codes");

  // At the limit it works, and counted units are not codes.
  auto at_limit = buyer.reserve(reserve_req("hc-user", "hc-1", 0, {{"HC-BIG", kHoldCodesMax}}));
  ASSERT_TRUE(at_limit.ok()) << proto::status_name(at_limit.status) << " " << at_limit.error;
  EXPECT_EQ(at_limit.body.codes.size(), kHoldCodesMax);
  auto split = buyer.reserve(reserve_req("hc-user", "hc-2", 0, {{"HC-BIG", 200}, {"HC-TWO", 56}}));
  ASSERT_TRUE(split.ok()) << proto::status_name(split.status) << " " << split.error;
  EXPECT_EQ(split.body.codes.size(), kHoldCodesMax);
  auto mixed =
      buyer.reserve(reserve_req("hc-user", "hc-3", 0, {{"HC-BIG", 1}, {"HC-PLAIN", 1000}}));
  EXPECT_TRUE(mixed.ok()) << proto::status_name(mixed.status) << " " << mixed.error;
  auto claim = buyer.claim({"HC-BIG", "hc-claimer", "hc-4"});
  EXPECT_TRUE(claim.ok()) << proto::status_name(claim.status) << " " << claim.error;

  // The refused requests took nothing.
  auto big = admin.sku_get("HC-BIG");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big.body.sold, kHoldCodesMax + 200 + 1 + 1);
  EXPECT_EQ(big.body.held, 0u);
  EXPECT_EQ(big.body.available, kBig - big.body.sold);
  auto two = admin.sku_get("HC-TWO");
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two.body.sold, 56u);
  EXPECT_EQ(two.body.held, 0u);
  expect_serving(server, "RESERVEs at the limit");
}

// ---- 3. Every answer fits in the smallest frame the server may be configured with. ----

TEST(FrameFit, FrameBytesMaxBelow65536IsRefused) {
  StockdProcess server({"--frame-bytes-max", "32768"});
  EXPECT_FALSE(server.start()) << "stockd started with --frame-bytes-max 32768";
  if (server.alive()) server.stop();
}

TEST(FrameFit, AHoldOf256LongCodesFitsIn65536ByteFrames) {
  StockdProcess server({"--frame-bytes-max", "65536"});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  ASSERT_EQ(admin.frame_bytes_max(), 65536u);
  const std::string sku = "FIT-" + std::string(proto::kSkuBytesMax - 4, 'S');  // 64 bytes
  ASSERT_GT(make_code_pool(admin, sku, code_names("FIT-CODE-", 600, proto::kCodeBytesMax)), 0u);
  const std::string user(proto::kUserBytesMax, 'u');
  const std::string key(proto::kKeyBytesMax, 'k');

  // The client library refuses any answer over the frame limit its HELLO announced.
  Client buyer = server.buyer();
  ASSERT_EQ(buyer.frame_bytes_max(), 65536u);
  auto r = buyer.reserve(reserve_req(user, key, 600'000, {{sku, kHoldCodesMax}}));
  ASSERT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  EXPECT_EQ(r.body.state, HoldState::kHeld);
  auto commit = buyer.commit(r.body.hold_id, user);
  ASSERT_TRUE(commit.ok()) << commit.error;
  EXPECT_EQ(commit.body.state, HoldState::kCommitted);
  EXPECT_EQ(commit.body.codes.size(), kHoldCodesMax);
  auto view = buyer.hold_get(r.body.hold_id, user);
  ASSERT_TRUE(view.ok()) << view.error;
  EXPECT_EQ(view.body.codes, commit.body.codes);
  // A buy-now of as many: its answer (and a retry's) carries the 256 codes.
  const std::string now_key(proto::kKeyBytesMax, 'n');
  auto bought = buyer.reserve(reserve_req(user, now_key, 0, {{sku, kHoldCodesMax}}));
  ASSERT_TRUE(bought.ok()) << proto::status_name(bought.status) << " " << bought.error;
  EXPECT_EQ(bought.body.codes.size(), kHoldCodesMax);
  auto again = buyer.reserve(reserve_req(user, now_key, 0, {{sku, kHoldCodesMax}}));
  ASSERT_TRUE(again.ok()) << "replay: " << again.error;
  EXPECT_EQ(again.body.codes, bought.body.codes);
  auto read = admin.outbox_read({0, 100, 0});
  ASSERT_TRUE(read.ok()) << read.error;
  bool found = false;
  for (const auto& rec : read.body.records) {
    if (rec.order_id != r.body.hold_id || rec.kind != proto::OutboxKind::kOrder) continue;
    found = true;
    EXPECT_EQ(rec.codes, commit.body.codes);
    EXPECT_EQ(rec.user, user);
  }
  EXPECT_TRUE(found) << "OUTBOX_READ did not return the order (" << read.body.records.size()
                     << " records)";
  // After the last possible seq there is nothing (after_seq + 1 wrapped to 0: every record).
  auto top = admin.outbox_read({UINT64_MAX, 100, 0});
  ASSERT_TRUE(top.ok()) << top.error;
  EXPECT_EQ(top.body.records.size(), 0u);
  expect_serving(server, "a hold of 256 long codes");
}

TEST(FrameFit, SkuListPagesStayWithin65536ByteFrames) {
  StockdProcess server({"--frame-bytes-max", "65536"});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  const auto names = sku_names("LIST-", 1000, proto::kSkuBytesMax);
  ASSERT_TRUE(make_skus(admin, names, 5));

  Peer p(server.port());
  ASSERT_TRUE(p.hello(Role::kBuyer, ""));
  std::vector<std::string> seen;
  std::string after;
  size_t largest = 0;
  for (uint32_t page = 0; page < 1100; ++page) {
    ASSERT_TRUE(p.send(frame(Opcode::kSkuList, 10 + page, proto::SkuListReq{after, 1000})));
    Peer::Frame f;
    ASSERT_EQ(p.read(f, 5000 * kSlow), Peer::Got::kFrame) << "page " << page;
    ASSERT_EQ(f.status(), Status::kOk) << describe(f);
    const size_t size = proto::kHeaderBytes + f.header.body_len;
    largest = std::max(largest, size);
    EXPECT_LE(size, 65536u) << "page " << page << " after '" << after << "'";
    auto resp =
        proto::decode_response(Opcode::kSkuList, Status::kOk,
                               {reinterpret_cast<const uint8_t*>(f.body.data()), f.body.size()});
    ASSERT_TRUE(resp.ok()) << resp.status().message();
    const auto& skus = std::get<proto::SkuListResp>(*resp).skus;
    if (skus.empty()) break;
    for (const auto& s : skus) seen.push_back(s.sku);
    after = skus.back().sku;
  }
  std::printf("[ measured ] 1,000 SKUs of 64-byte ids: largest SKU_LIST frame %zu bytes\n",
              largest);
  EXPECT_EQ(seen.size(), names.size());
  EXPECT_TRUE(seen == names) << "paging with after = the last id did not visit every SKU once";

  // The client library (which refuses frames over the HELLO limit) pages through them too.
  Client buyer = server.buyer();
  EXPECT_EQ(all_skus(buyer).size(), names.size());
  expect_serving(server, "SKU_LIST of long ids");
}

// ---- 4. One client's expensive requests do not stall the loop for everyone else. ----

TEST(LoopWork, BigAnswersForOneClientDoNotStallAnother) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  const size_t kSkus = scaled(20'000, 2'000);
  ASSERT_TRUE(make_skus(admin, sku_names("LW-", kSkus, 24), 10));

  // The probe: a PING every 10 ms on its own connection. Latency counts from when the PING was
  // due, so that one long stall shows in every PING it delayed (no coordinated omission).
  ClientOptions o = server.options(Role::kBuyer);
  o.timeout_ms = 10000 * kSlow;
  Client probe(o);
  ASSERT_EQ(probe.connect().message(), "");

  // The hog: batches of 300 STATS then 300 SKU_LIST of 1,000, sent as fast as the socket takes
  // them. It reads its answers as fast as they come and throws them away, so that nothing but
  // the server's own loop holds its requests back.
  std::string batch;
  for (uint32_t i = 0; i < 300; ++i) batch += frame(Opcode::kStats, 2 + i, proto::StatsReq{});
  for (uint32_t i = 0; i < 300; ++i) {
    batch += frame(Opcode::kSkuList, 302 + i, proto::SkuListReq{"", 1000});
  }
  Peer hog(server.port());
  ASSERT_TRUE(hog.hello(Role::kBuyer, ""));
  std::atomic<bool> stop{false};
  std::atomic<size_t> batches{0};
  std::atomic<uint64_t> hog_bytes{0};
  std::thread hog_thread([&] {
    std::string pending;
    while (!stop && !hog.gone()) {
      if (pending.empty()) {
        pending = batch;
        ++batches;
      }
      const size_t sent = hog.send_some(pending);
      pending.erase(0, sent);
      const size_t got = hog.discard_now(16u << 20);
      hog_bytes += got;
      if (sent == 0 && got == 0) hog.wait_any(5);
    }
  });

  std::vector<int64_t> latency_ms;
  size_t failures = 0;
  const auto start = Clock::now();
  for (auto due = start; due < start + milliseconds(3000); due += milliseconds(10)) {
    std::this_thread::sleep_until(due);
    auto p = probe.ping();
    if (!p.ok()) ++failures;
    latency_ms.push_back(ms_since(due));
  }
  stop = true;
  hog_thread.join();
  std::sort(latency_ms.begin(), latency_ms.end());
  const int64_t p50 = latency_ms[latency_ms.size() / 2];
  const int64_t p99 = latency_ms[latency_ms.size() * 99 / 100];
  std::printf(
      "[ measured ] %zu SKUs, hog sent %zu batches of 600, read %llu MiB: probe PING p50 %lld ms, "
      "p99 %lld ms, max %lld ms\n",
      kSkus, batches.load(), static_cast<unsigned long long>(hog_bytes.load() >> 20),
      static_cast<long long>(p50), static_cast<long long>(p99),
      static_cast<long long>(latency_ms.back()));
  EXPECT_EQ(failures, 0u);
  // Bound: p99 of the probe's PINGs under 250 ms. A PING costs microseconds; what it waits for
  // is the loop turn doing the hog's work, so this bounds the work one connection may make the
  // loop do at a time (before: one STATS walked every SKU and a turn answered every request a
  // read brought in; p99 2.4-6.3 s). Under the sanitizers the test's own hog thread, decoding
  // ~100 KB answers with ASan on the same two cores, sets the pace (p50 ~1-2 s whatever the
  // server does), so there the run checks that nothing crashes or stops and reports the figure.
  if (kSlow == 1) {
    EXPECT_LT(p99, 250);
  }
  expect_serving(server, "a hog of STATS and SKU_LIST");
}

// ---- 5. A client that never reads holds a bounded amount of memory, then is closed. ----

TEST(OutputBound, AClientThatNeverReadsIsBoundedThenClosed) {
  constexpr int kWriteTimeoutMs = 2000;
  StockdProcess server(
      {"--output-bytes-max", "1048576", "--write-timeout-ms", std::to_string(kWriteTimeoutMs)});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  ASSERT_TRUE(make_skus(admin, sku_names("OUT-", 1000, 48), 10));  // ~100 KB per SKU_LIST answer
  const uint64_t base_conns = stat_of(admin, "connections");
  const uint64_t base_rss = rss_bytes(server.pid());
  ASSERT_GT(base_rss, 0u);

  std::string batch;
  for (uint32_t i = 0; i < 64; ++i) {
    batch += frame(Opcode::kSkuList, 2 + i, proto::SkuListReq{"", 1000});
  }
  Peer never_reads(server.port());
  ASSERT_TRUE(never_reads.hello(Role::kBuyer, ""));
  const auto start = Clock::now();
  uint64_t peak = base_rss;
  size_t sent = 0;
  std::string pending;
  // Sends for 3 s (or until the server closes it), never reading; samples the server's memory.
  while (ms_since(start) < 3000 && !never_reads.gone()) {
    if (pending.empty()) pending = batch;
    size_t n = never_reads.send_some(pending);
    pending.erase(0, n);
    sent += n;
    if (n == 0) never_reads.wait_writable(20);
    peak = std::max(peak, rss_bytes(server.pid()));
  }
  // The server closes it once its answers made no progress for --write-timeout-ms.
  bool closed = eventually((kWriteTimeoutMs + 5000) * kSlow - static_cast<int>(ms_since(start)),
                           [&] {
                             peak = std::max(peak, rss_bytes(server.pid()));
                             return !server.alive() || stat_of(admin, "connections") <= base_conns;
                           },
                           50);
  const int64_t closed_after = ms_since(start);
  std::printf(
      "[ measured ] never-reading client sent %zu bytes; server RSS %llu MiB -> peak %llu MiB; "
      "closed after %lld ms: %s\n",
      sent, static_cast<unsigned long long>(base_rss >> 20),
      static_cast<unsigned long long>(peak >> 20), static_cast<long long>(closed_after),
      closed ? "yes" : "no");
  ASSERT_TRUE(server.alive()) << exit_text(server.exit_status());
  // Bound: 64 MiB over the resident size before the attack (the output allowance is 1 MiB).
  EXPECT_LT(peak, base_rss + (64u << 20)) << "memory grew with a client that never reads";
  EXPECT_TRUE(closed) << "the connection that never reads was not closed within "
                      << (kWriteTimeoutMs + 5000) * kSlow << " ms";
  EXPECT_TRUE(never_reads.closed_within(5000 * kSlow)) << "the peer did not see the close";
  expect_serving(server, "a client that never reads");
}

// ---- 6. Slowloris: unauthenticated and half-sent frames do not hold connections forever. ----

TEST(Slowloris, TricklingHellosAreClosedAndDoNotStarveBuyers) {
  constexpr int kHelloTimeoutMs = 1000;
  StockdProcess server(
      {"--hello-pending-max", "50", "--hello-timeout-ms", std::to_string(kHelloTimeoutMs)});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "SLOW-1", 100);

  // 200 connections, each sending one byte of a HELLO every 300 ms (a whole HELLO would take
  // about 8 s).
  const std::string hello = hello_frame(Role::kBuyer, "");
  std::vector<std::unique_ptr<Peer>> trick;
  const auto t0 = Clock::now();
  for (int i = 0; i < 200; ++i) {
    trick.push_back(std::make_unique<Peer>(server.port()));
    ASSERT_TRUE(trick.back()->ok()) << "connection " << i;
  }
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    for (size_t pos = 0; pos < hello.size() && !stop; ++pos) {
      for (auto& p : trick) {
        if (!p->gone()) p->send_some(std::string_view(hello).substr(pos, 1));
      }
      for (int i = 0; i < 30 && !stop; ++i) std::this_thread::sleep_for(milliseconds(10));
    }
  });

  // A real buyer gets through meanwhile.
  std::this_thread::sleep_for(milliseconds(300));
  ClientOptions o = server.options(Role::kBuyer);
  o.timeout_ms = 3000 * kSlow;
  o.reconnect_attempts = 1;
  Client buyer(o);
  EXPECT_EQ(buyer.connect().message(), "");
  auto r = buyer.reserve(reserve_req("real-buyer", "slow-1", 60'000, {{"SLOW-1", 1}}));
  EXPECT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;

  // Over --hello-pending-max the oldest are closed at once: by 500 ms at most 50 are left.
  std::this_thread::sleep_until(t0 + milliseconds(500));
  size_t closed_early = 0;
  for (auto& p : trick) closed_early += p->closed_within(0) ? 1 : 0;
  std::printf("[ measured ] tricklers closed by 500 ms: %zu of 200\n", closed_early);
  EXPECT_GE(closed_early, 150u);

  // Past --hello-timeout-ms every trickler is closed (bound: the timeout + 2 s).
  size_t open = 0;
  for (auto& p : trick) {
    auto left = (kHelloTimeoutMs + 2000) * kSlow - ms_since(t0);
    if (!p->closed_within(static_cast<int>(std::max<int64_t>(0, left)))) ++open;
  }
  std::printf("[ measured ] tricklers still open %lld ms after connecting: %zu\n",
              static_cast<long long>(ms_since(t0)), open);
  stop = true;
  trickler.join();
  EXPECT_EQ(open, 0u) << "connections that never completed HELLO were not closed";
  // The authenticated buyer was not touched by the HELLO timeout.
  auto ping = buyer.ping();
  EXPECT_TRUE(ping.ok()) << ping.error;
  auto view = buyer.hold_get(r.body.hold_id, "real-buyer");
  EXPECT_TRUE(view.ok()) << view.error;
  expect_serving(server, "200 trickling HELLOs");
}

// Descriptors held by stockd (0 if /proc cannot tell).
size_t open_descriptors(pid_t pid) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// A flood of connections that never say HELLO: each new one past --hello-pending-max evicts the
// oldest, and past the socket cap each is refused. The refused used to linger with their BUSY
// frame (2 s, or the write timeout when the peer does not acknowledge) outside any bound, so a
// flood held one descriptor per refusal and kept real buyers out with BUSY meanwhile.
TEST(Slowloris, AFloodOfSilentPeersHoldsBoundedDescriptors) {
  constexpr int kConnsMax = 8, kPendingMax = 8, kFlood = 400;
  constexpr size_t kRefusalsMax = 64;  // refusals that linger at a time (docs/protocol.md)
  StockdProcess server({"--connections-max", std::to_string(kConnsMax), "--hello-pending-max",
                        std::to_string(kPendingMax)});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "FLOOD-1", 100);
  const size_t before = open_descriptors(server.pid());
  ASSERT_GT(before, 0u);
  std::vector<std::unique_ptr<Peer>> flood;
  for (int i = 0; i < kFlood; ++i) {
    flood.push_back(std::make_unique<Peer>(server.port()));
    ASSERT_TRUE(flood.back()->ok()) << "connection " << i;
  }
  std::this_thread::sleep_for(milliseconds(300));  // every one accepted (they never leave)
  const size_t during = open_descriptors(server.pid());
  std::printf("[ measured ] stockd descriptors: %zu before, %zu with %d silent peers connected\n",
              before, during, kFlood);
  // Slots for the peers still to say HELLO and the admin's, the lingering refusals, and room
  // for what the server itself opens meanwhile.
  EXPECT_LE(during, before + kPendingMax + kRefusalsMax + 16);
  // A real buyer gets in while the flood is still connected.
  ClientOptions o = server.options(Role::kBuyer);
  o.timeout_ms = 3000 * kSlow;
  o.reconnect_attempts = 1;
  Client buyer(o);
  EXPECT_EQ(buyer.connect().message(), "");
  auto r = buyer.reserve(reserve_req("real-buyer", "flood-1", 0, {{"FLOOD-1", 1}}));
  EXPECT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  flood.clear();
  expect_serving(server, "a flood of silent peers");
}

// The same flood, each peer sending a bad first frame: each is answered and closed, and
// lingered inside the slots, so a real buyer got BUSY until they were gone.
TEST(Slowloris, AFloodOfBadFirstFramesDoesNotKeepBuyersOut) {
  constexpr int kConnsMax = 8, kPendingMax = 8, kFlood = 200;
  StockdProcess server({"--connections-max", std::to_string(kConnsMax), "--hello-pending-max",
                        std::to_string(kPendingMax)});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "FLOOD-2", 100);
  std::vector<std::unique_ptr<Peer>> flood;
  for (int i = 0; i < kFlood; ++i) {
    flood.push_back(std::make_unique<Peer>(server.port()));
    ASSERT_TRUE(flood.back()->ok()) << "connection " << i;
    flood.back()->send_some(header_only(Opcode::kHello, 1, 1u << 30));  // over any frame limit
  }
  std::this_thread::sleep_for(milliseconds(300));
  ClientOptions o = server.options(Role::kBuyer);
  o.timeout_ms = 3000 * kSlow;
  o.reconnect_attempts = 1;
  Client buyer(o);
  EXPECT_EQ(buyer.connect().message(), "");
  auto r = buyer.reserve(reserve_req("real-buyer", "flood-2", 0, {{"FLOOD-2", 1}}));
  EXPECT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  flood.clear();
  expect_serving(server, "a flood of bad first frames");
}

TEST(Slowloris, AHalfFrameAfterHelloIsClosedByTheFrameTimeout) {
  constexpr int kFrameTimeoutMs = 1000;
  StockdProcess server({"--frame-timeout-ms", std::to_string(kFrameTimeoutMs)});
  ASSERT_TRUE(started(server));
  Peer idle(server.port());  // authenticated, sends nothing: not affected
  ASSERT_TRUE(idle.hello(Role::kBuyer, ""));
  Peer half(server.port());
  ASSERT_TRUE(half.hello(Role::kBuyer, ""));
  const std::string f = frame(Opcode::kReserve, 2, reserve_req("half", "half-1", 0, {{"NOPE", 1}}));
  ASSERT_TRUE(half.send(f.substr(0, f.size() / 2)));
  const auto t0 = Clock::now();
  // Bound: closed within the frame timeout + 1.5 s, and not long before the timeout.
  const bool closed = half.closed_within((kFrameTimeoutMs + 1500) * kSlow);
  const int64_t after = ms_since(t0);
  std::printf("[ measured ] half frame: %s after %lld ms\n", closed ? "closed" : "still open",
              static_cast<long long>(after));
  EXPECT_TRUE(closed) << "a frame left half-sent was not closed";
  if (closed) {
    EXPECT_GE(after, kFrameTimeoutMs - 200) << "closed before --frame-timeout-ms";
  }
  ASSERT_TRUE(idle.send(frame(Opcode::kPing, 3, proto::PingReq{})));
  Peer::Frame pong;
  ASSERT_EQ(idle.read(pong, 5000 * kSlow), Peer::Got::kFrame);
  EXPECT_EQ(pong.status(), Status::kOk) << describe(pong);
  expect_serving(server, "a half frame");
}

// Before HELLO a peer gets no service of any kind: anything but a HELLO is UNAUTHORIZED (and a
// close), and a HELLO-sized limit applies to the frame.
TEST(BeforeHello, FramesOtherThanHelloAreUnauthorizedAndClose) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  struct Case {
    const char* what;
    std::string bytes;
    uint32_t id;
    Status status;
  };
  const Case cases[] = {
      {"unknown opcode", raw_frame(0x7777, 41, "whatever"), 41, Status::kUnauthorized},
      {"RESERVE whose body does not decode", raw_frame(0x10, 42, "\x01"), 42,
       Status::kUnauthorized},
      {"PING with a body", raw_frame(0x02, 43, "xyz"), 43, Status::kUnauthorized},
      {"PING with 600 body bytes", raw_frame(0x02, 44, std::string(600, 'p')), 44,
       Status::kFrameTooLarge},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    Peer p(server.port());
    ASSERT_TRUE(p.send(k.bytes));
    Peer::Frame f;
    ASSERT_EQ(p.read(f, 5000 * kSlow), Peer::Got::kFrame);
    EXPECT_EQ(f.status(), k.status) << describe(f);
    EXPECT_EQ(f.header.request_id, k.id) << describe(f);
    EXPECT_TRUE(p.closed_within(1000 * kSlow)) << "still open after " << describe(f);
  }
  Peer good(server.port());
  EXPECT_TRUE(good.hello(Role::kBuyer, ""));
  expect_serving(server, "frames before HELLO");
}

// ---- 7. The read budget cannot be held by unauthenticated peers; hogs go first. ----

TEST(ReadBudget, UnauthenticatedPeersCannotHoldItAndHogsAreEvictedFirst) {
  StockdProcess server({"--read-buffer-budget", "262144", "--frame-bytes-max", "65536"});
  ASSERT_TRUE(started(server));

  // Before HELLO a frame announcing 60,000 body bytes is refused from its header.
  {
    std::vector<std::unique_ptr<Peer>> early;
    for (uint32_t i = 0; i < 10; ++i) {
      early.push_back(std::make_unique<Peer>(server.port()));
      ASSERT_TRUE(
          early.back()->send(header_only(Opcode::kHello, 50 + i, 60000) + std::string(4000, 'h')));
    }
    const auto t0 = Clock::now();
    size_t refused = 0;
    for (auto& p : early) {
      Peer::Frame f;
      auto left = static_cast<int>(std::max<int64_t>(0, 2000 * kSlow - ms_since(t0)));
      if (p->read(f, left) != Peer::Got::kFrame) continue;
      EXPECT_EQ(f.status(), Status::kFrameTooLarge) << describe(f);
      EXPECT_TRUE(p->closed_within(3000 * kSlow)) << "still open after " << describe(f);
      ++refused;
    }
    EXPECT_EQ(refused, early.size()) << "pre-HELLO frames of 60,000 bytes were waited for";
  }

  // Eight admins each hold most of a CODES_LOAD frame: 466 KB wanted, 256 KiB allowed. The first
  // is the oldest and the largest.
  std::vector<std::unique_ptr<Peer>> hogs;
  for (uint32_t i = 0; i < 8; ++i) {
    hogs.push_back(std::make_unique<Peer>(server.port()));
    ASSERT_TRUE(hogs.back()->hello(Role::kAdmin, StockdProcess::kAdminToken, 60 + i));
    const size_t body = i == 0 ? 62000 : 58000;
    ASSERT_TRUE(
        hogs.back()->send(header_only(Opcode::kCodesLoad, 70 + i, 65000) + std::string(body, 'c')));
    std::this_thread::sleep_for(milliseconds(50));
  }
  // A newcomer whose HELLO arrives in two segments 100 ms apart is still served.
  Peer newcomer(server.port());
  const std::string hello = hello_frame(Role::kBuyer, "", 80);
  ASSERT_TRUE(newcomer.send(hello.substr(0, 10)));
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(newcomer.send(hello.substr(10)));
  Peer::Frame f;
  ASSERT_EQ(newcomer.read(f, 3000 * kSlow), Peer::Got::kFrame);
  EXPECT_EQ(f.status(), Status::kOk) << "newcomer's HELLO: " << describe(f);
  ASSERT_TRUE(newcomer.send(frame(Opcode::kPing, 81, proto::PingReq{})));
  ASSERT_EQ(newcomer.read(f, 3000 * kSlow), Peer::Got::kFrame);
  EXPECT_EQ(f.status(), Status::kOk) << describe(f);

  std::vector<bool> evicted(hogs.size(), false);
  for (size_t i = 0; i < hogs.size(); ++i) {
    Peer::Frame busy;
    auto got = hogs[i]->read(busy, 200);
    if (got == Peer::Got::kTimeout) continue;
    evicted[i] = true;
    ASSERT_EQ(got, Peer::Got::kFrame) << "hog " << i << " closed without a BUSY frame";
    EXPECT_EQ(busy.status(), Status::kBusy) << "hog " << i << ": " << describe(busy);
    EXPECT_TRUE(hogs[i]->closed_within(3000 * kSlow)) << "hog " << i;
  }
  std::string who;
  for (size_t i = 0; i < evicted.size(); ++i) who += evicted[i] ? 'E' : '.';
  std::printf("[ measured ] hogs evicted (oldest first, E = evicted): %s\n", who.c_str());
  EXPECT_GE(std::count(evicted.begin(), evicted.end(), true), 4);
  EXPECT_TRUE(evicted[0]) << "the oldest, largest hog kept its bytes: " << who;
  expect_serving(server, "a full read budget");
}

// ---- 8. Requests past --inflight-max do not wait for the next timer tick. ----

TEST(InflightStall, FortyPipelinedPingsWithInflightMaxFour) {
  StockdProcess server({"--inflight-max", "4"});
  ASSERT_TRUE(started(server));
  Peer p(server.port());
  ASSERT_TRUE(p.hello(Role::kBuyer, ""));
  std::string pings;
  for (uint32_t i = 0; i < 40; ++i) pings += frame(Opcode::kPing, 100 + i, proto::PingReq{});
  const auto t0 = Clock::now();
  ASSERT_TRUE(p.send(pings));
  for (uint32_t i = 0; i < 40; ++i) {
    Peer::Frame f;
    ASSERT_EQ(p.read(f, 10000), Peer::Got::kFrame) << "answer " << i;
    EXPECT_EQ(f.header.request_id, 100 + i);
    EXPECT_EQ(f.status(), Status::kOk);
  }
  const int64_t took = ms_since(t0);
  std::printf("[ measured ] 40 pipelined PINGs at --inflight-max 4: %lld ms\n",
              static_cast<long long>(took));
  EXPECT_LT(took, 500 * kSlow);  // bound: 500 ms
  expect_serving(server, "pipelined PINGs");
}

TEST(InflightStall, ThreeThousandPipelinedSkuGetsAtTheDefaultLimit) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "STALL-1", 10);
  Peer p(server.port());
  ASSERT_TRUE(p.hello(Role::kBuyer, ""));
  std::string gets;
  for (uint32_t i = 0; i < 3100; ++i)
    gets += frame(Opcode::kSkuGet, 2 + i, proto::SkuReq{"STALL-1"});
  const auto t0 = Clock::now();
  ASSERT_TRUE(p.send(gets));
  for (uint32_t i = 0; i < 3100; ++i) {
    Peer::Frame f;
    ASSERT_EQ(p.read(f, 10000), Peer::Got::kFrame) << "answer " << i;
    ASSERT_EQ(f.header.request_id, 2 + i);
    ASSERT_EQ(f.status(), Status::kOk);
  }
  const int64_t took = ms_since(t0);
  std::printf("[ measured ] 3,100 pipelined SKU_GETs: %lld ms\n", static_cast<long long>(took));
  // Bound: 500 ms (3,100 SKU_GETs take milliseconds; today each stop at --inflight-max waits
  // for the server's 1 s timer).
  EXPECT_LT(took, 500 * kSlow);
  expect_serving(server, "pipelined SKU_GETs");
}

// ---- 9. Retained and live holds are bounded. ----

TEST(RetainedState, FinishedHoldsAreCappedOldestFirst) {
  StockdProcess server({"--finished-holds-max", "1000"});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "FIN-1", 1'000'000);
  Client buyer = server.buyer();
  const size_t kReserves = scaled(5000, 2000);
  size_t bought = 0;
  uint64_t first_hold = 0;
  for (size_t i = 0; i < kReserves; i += 500) {
    for (size_t j = i; j < std::min(kReserves, i + 500); ++j) {
      const std::string n = std::to_string(j);
      // Even: buy now (finished at once); odd: a 1 ms hold that expires.
      buyer.queue(Opcode::kReserve,
                  reserve_req("fin-" + n, "fin-" + n, j % 2 == 0 ? 0 : 1, {{"FIN-1", 1}}));
    }
    for (const auto& a : buyer.flush()) {
      ASSERT_TRUE(a.ok()) << proto::status_name(a.status) << " " << a.error;
      const auto& r = std::get<proto::ReserveResp>(a.body);
      if (first_hold == 0) first_hold = r.hold_id;
      if (r.state == HoldState::kCommitted) ++bought;
    }
  }
  uint64_t live = 0, finished = 0;
  bool capped = eventually(3000 * kSlow, [&] {
    auto m = stats_map(admin);
    live = m["live_holds"];
    finished = m["finished_holds"];
    return live == 0 && finished <= 1000;
  });
  std::printf("[ measured ] %zu reserves: live_holds %llu, finished_holds %llu\n", kReserves,
              static_cast<unsigned long long>(live), static_cast<unsigned long long>(finished));
  EXPECT_TRUE(capped) << "finished_holds " << finished << " over --finished-holds-max 1000";
  // The oldest are the ones forgotten; the newest finished hold is kept.
  EXPECT_EQ(admin.hold_get(first_hold).status, Status::kNotFound);
  auto last = buyer.reserve(reserve_req("fin-last", "fin-last", 0, {{"FIN-1", 1}}));
  ASSERT_TRUE(last.ok()) << last.error;
  ++bought;
  auto view = buyer.hold_get(last.body.hold_id, "fin-last");
  EXPECT_TRUE(view.ok()) << proto::status_name(view.status);
  // Forgetting holds does not touch units.
  auto sku = admin.sku_get("FIN-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.sold, bought);
  EXPECT_EQ(sku.body.held, 0u);
  EXPECT_EQ(sku.body.available, 1'000'000 - bought);
  expect_serving(server, "thousands of finished holds");
}

TEST(RetainedState, LiveHoldsPerUserAndInAllAreCapped) {
  StockdProcess server({"--user-holds-max", "5", "--live-holds-max", "12"});
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "UH-1", 100);
  Client buyer = server.buyer();
  auto hold = [&](const std::string& user, const std::string& key) {
    return buyer.reserve(reserve_req(user, key, 600'000, {{"UH-1", 1}}));
  };
  std::vector<uint64_t> greedy;
  for (int i = 0; i < 5; ++i) {
    auto r = hold("greedy", "g-" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << i << ": " << proto::status_name(r.status) << " " << r.error;
    greedy.push_back(r.body.hold_id);
  }
  auto sixth = hold("greedy", "g-5");
  EXPECT_EQ(sixth.status, Status::kTooManyHolds) << "6th live hold of one user: " << sixth.error;
  EXPECT_FALSE(sixth.error.empty()) << "BUSY without a reason";
  auto other = hold("other", "o-0");
  EXPECT_TRUE(other.ok()) << proto::status_name(other.status) << " " << other.error;
  auto rel = buyer.release(greedy[0], "greedy");
  ASSERT_TRUE(rel.ok()) << rel.error;
  auto after_release = hold("greedy", "g-6");
  EXPECT_TRUE(after_release.ok()) << proto::status_name(after_release.status) << " "
                                  << after_release.error;
  EXPECT_EQ(hold("greedy", "g-7").status, Status::kTooManyHolds);
  auto sku = admin.sku_get("UH-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.held, 6u);  // greedy 5 (one released, one new) + other 1

  // --live-holds-max 12: six more users fill it, the next one is BUSY.
  for (int i = 0; i < 6; ++i) {
    auto r = hold("many-" + std::to_string(i), "m-" + std::to_string(i));
    EXPECT_TRUE(r.ok()) << i << ": " << proto::status_name(r.status) << " " << r.error;
  }
  auto over = hold("late", "late-0");
  EXPECT_EQ(over.status, Status::kBusy) << "13th live hold: " << over.error;
  EXPECT_FALSE(over.error.empty());
  ASSERT_TRUE(buyer.release(greedy[1], "greedy").ok());
  EXPECT_TRUE(hold("late", "late-1").ok());
  expect_serving(server, "capped holds");
}

// ---- 10. The metrics port: capped connections, half requests timed out. ----

TEST(MetricsPort, HalfRequestsAreCappedAndTimedOut) {
  constexpr int kHttpTimeoutMs = 1000;
  int mport = 0;
  auto server = start_with_metrics(
      {"--http-connections-max", "16", "--http-timeout-ms", std::to_string(kHttpTimeoutMs)}, mport);
  ASSERT_TRUE(server) << "stockd with the metrics flags did not start (does it know them?)";
  ASSERT_EQ(http_status(mport, "/healthz", 2000), 200);
  const size_t before = open_descriptors(server->pid());

  // 300 connections that send half a request and wait (connects do not block: once the server
  // stops accepting, the kernel's queue fills).
  const std::string half = "GET /metrics HTTP/1.1\r\nHost: 127";
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a = loopback(mport);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fds.push_back(fd);
  }
  const auto t0 = Clock::now();
  std::vector<int> connected;
  for (int fd : fds) {
    pollfd p{fd, POLLOUT, 0};
    int left = static_cast<int>(std::max<int64_t>(0, 2000 - ms_since(t0)));
    int err = 0;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, left) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        err == 0 && ::send(fd, half.data(), half.size(), MSG_NOSIGNAL) > 0) {
      connected.push_back(fd);
    }
  }
  EXPECT_GE(connected.size(), 16u);
  // The 16 slots, and at most 16 refusals lingering with their 503 (the rest were closed at
  // once): the refused used to linger outside any bound, one descriptor each.
  std::this_thread::sleep_for(milliseconds(200));
  const size_t during = open_descriptors(server->pid());
  std::printf("[ measured ] stockd descriptors: %zu before, %zu with 300 metrics connections\n",
              before, during);
  EXPECT_LE(during, before + 16 + 16 + 16);
  // A health probe during the flood is answered: the oldest half request gives way to it (it
  // used to get a 503 until the half requests timed out, which an orchestrator takes for a
  // dead server).
  EXPECT_EQ(http_status(mport, "/healthz", 1000), 200) << "a health probe during the flood";

  // The client port is not affected.
  {
    ClientOptions o = server->options(Role::kBuyer);
    o.timeout_ms = 3000 * kSlow;
    o.reconnect_attempts = 1;
    Client buyer(o);
    auto p = buyer.ping();
    EXPECT_TRUE(p.ok()) << "client port during the metrics flood: " << p.error;
    auto s = buyer.stats();
    EXPECT_TRUE(s.ok()) << s.error;
  }
  // Soon /healthz answers again (bound: the HTTP timeout + 3 s).
  int code = 0;
  bool healthy =
      eventually((kHttpTimeoutMs + 3000) * kSlow,
                 [&] { return (code = http_status(mport, "/healthz", 1000)) == 200; }, 100);
  std::printf("[ measured ] /healthz 200 again %lld ms after the flood (%zu connected)\n",
              static_cast<long long>(ms_since(t0)), connected.size());
  EXPECT_TRUE(healthy) << "/healthz answered " << code;
  // Every half request was closed by the server.
  size_t open = 0;
  for (int fd : connected) {
    bool closed = false;
    for (;;) {
      int left =
          static_cast<int>(std::max<int64_t>(0, (kHttpTimeoutMs + 3000) * kSlow - ms_since(t0)));
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, left) != 1) break;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        closed = true;
        break;
      }
    }
    if (!closed) ++open;
  }
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(open, 0u) << "half HTTP requests left open past --http-timeout-ms";
  expect_serving(*server, "a metrics-port flood");
}

// Peers that send whole requests, read the answers and never close: each answered connection
// lingers (FIN sent, input drained) up to 2 s and held its slot meanwhile, so some 70 cheap
// probes a second kept /healthz answering 503 (or closed), which an orchestrator takes for a
// dead server. Over the cap a lingering connection whose answer the peer's kernel took gives
// way to a newcomer.
TEST(MetricsPort, AnsweredPeersThatNeverCloseDoNotKeepAProbeOut) {
  int mport = 0;
  auto server =
      start_with_metrics({"--http-connections-max", "8", "--http-timeout-ms", "10000"}, mport);
  ASSERT_TRUE(server);
  const std::string probe = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<int> held;
  for (int i = 0; i < 8; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(mport);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::send(fd, probe.data(), probe.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(probe.size()));
    std::string in;
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (ssize_t n;
         in.find("ok\n") == std::string::npos && (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
      in.append(buf, static_cast<size_t>(n));
    ASSERT_NE(in.find(" 200 "), std::string::npos) << in;
    held.push_back(fd);  // answered, never closed
  }
  EXPECT_EQ(http_status(mport, "/healthz", 1000), 200) << "a probe past 8 answered peers";
  for (int fd : held) ::close(fd);
  expect_serving(*server, "answered metrics peers that never close");
}

// A request too large for the metrics port, its sender still sending, gets its 431, and a
// scrape with a body its whole page, though the sender's receive window is smaller than the
// page: the answer is not destroyed by a reset when the server closes with bytes unread.
TEST(MetricsPort, AnAnswerIsNotDestroyedByBytesTheServerDidNotRead) {
  std::unique_ptr<StockdProcess> server;
  int mport = 0;
  for (int attempt = 0; attempt < 3 && !server; ++attempt) {  // the port may be taken meanwhile
    mport = free_port();
    server = std::make_unique<StockdProcess>(
        std::vector<std::string>{"--metrics-listen", "127.0.0.1:" + std::to_string(mport)});
    if (!server->start()) server.reset();
  }
  ASSERT_TRUE(server) << "stockd with the metrics flags did not start (does it know them?)";
  const std::string filler = "X-Filler: " + std::string(100, 'a') + "\r\n";
  std::string huge = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  while (huge.size() < (256u << 10)) huge += filler;
  const std::string with_body =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 262144\r\n\r\n" +
      std::string(256u << 10, 'b');
  const std::pair<const char*, const std::string*> cases[] = {{"431", &huge}, {"200", &with_body}};
  for (const auto& [want, bytes] : cases) {
    SCOPED_TRACE(std::string("expecting ") + want);
    for (int round = 0; round < 5; ++round) {
      Peer p(mport, 4 << 10);
      ASSERT_TRUE(p.ok());
      // The sender goes on while the server answers and closes; then it reads the answer.
      std::atomic<bool> stop{false};
      std::thread sender([&] {
        std::string_view left = *bytes;
        while (!stop && !left.empty() && !p.gone()) {
          left.remove_prefix(p.send_some(left));
          p.wait_writable(20);
        }
      });
      std::this_thread::sleep_for(milliseconds(300));
      std::string resp;
      const auto until = Clock::now() + milliseconds(5000 * kSlow);
      for (;;) {
        pollfd pf{p.fd(), POLLIN, 0};
        if (::poll(&pf, 1, static_cast<int>(std::max<int64_t>(0, -ms_since(until)))) != 1) break;
        char buf[4096];
        ssize_t n = ::recv(p.fd(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        resp.append(buf, static_cast<size_t>(n));
      }
      stop = true;
      sender.join();
      ASSERT_EQ(resp.substr(0, 12), std::string("HTTP/1.1 ") + want) << "round " << round;
      const size_t head_end = resp.find("\r\n\r\n");
      const size_t length_at = resp.find("Content-Length: ");
      ASSERT_TRUE(head_end != std::string::npos && length_at < head_end) << resp.substr(0, 200);
      EXPECT_EQ(resp.size() - head_end - 4, std::stoul(resp.substr(length_at + 16)))
          << "round " << round << ": the answer was cut";
    }
  }
  expect_serving(*server, "requests larger than the metrics port reads");
}

// ---- 11. SIGTERM under load: every applied purchase was answered before the close. ----

// 20 clients (16 KiB receive buffers) pipeline buy-now RESERVEs and count the OK answers they
// read. Around the SIGTERM they pause reading for a moment, as a busy client may: answers back
// up in the socket buffers, and a server that closes a connection with unread requests in it (a
// reset) while answers still sit in its send buffer loses them. After a restart, units sold must
// equal the OK answers the clients got. Three rounds on the same data.
TEST(GracefulStop, EveryAppliedPurchaseIsAnsweredBeforeTheClose) {
  constexpr size_t kClients = 20;
  constexpr int kRounds = 3;
  StockdProcess server;
  ASSERT_TRUE(started(server));
  {
    Client admin = server.admin();
    make_sku(admin, "TERM-1", 100'000'000);
  }
  uint64_t sold_before = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::atomic<uint64_t> ok{0};
    std::atomic<size_t> unfinished{0};
    std::atomic<bool> paused{false};
    std::vector<std::thread> clients;
    for (size_t t = 0; t < kClients; ++t) {
      clients.emplace_back([&, t] {
        auto p = std::make_unique<Peer>(server.port(), 16 << 10);
        if (!p->ok() || !p->hello(Role::kBuyer, "")) {
          ADD_FAILURE() << "client " << t << " could not connect";
          return;
        }
        std::atomic<bool> done{false};
        // Writer: buy-now RESERVEs with unique keys, 32 per write, as fast as they are taken.
        std::thread writer([&] {
          std::string pending;
          uint32_t n = 0;
          while (!done && !p->gone()) {
            if (pending.empty()) {
              for (int i = 0; i < 32; ++i, ++n) {
                const std::string key =
                    "t" + std::to_string(round) + "-" + std::to_string(t) + "-" + std::to_string(n);
                pending += frame(Opcode::kReserve, 2 + n,
                                 reserve_req("u" + std::to_string(t), key, 0, {{"TERM-1", 1}}));
              }
            }
            size_t sent = p->send_some(pending);
            pending.erase(0, sent);
            if (sent == 0) p->wait_writable(20);
          }
        });
        // Reader: counts OK answers until the server closes (EOF or reset).
        const auto until = Clock::now() + milliseconds(30000 * kSlow);
        for (;;) {
          while (paused && Clock::now() < until) std::this_thread::sleep_for(milliseconds(5));
          Peer::Frame f;
          auto left = static_cast<int>(std::max<int64_t>(
              0, std::chrono::duration_cast<milliseconds>(until - Clock::now()).count()));
          auto got = p->read(f, left);
          if (got == Peer::Got::kClosed) break;
          if (got != Peer::Got::kFrame) {
            ++unfinished;
            break;
          }
          if (f.header.opcode == static_cast<uint16_t>(Opcode::kReserve) &&
              f.status() == Status::kOk) {
            ++ok;
          }
        }
        done = true;
        writer.join();
        p->close();
      });
    }
    std::this_thread::sleep_for(milliseconds(300));
    paused = true;
    std::this_thread::sleep_for(milliseconds(300));
    server.signal(SIGTERM);
    std::this_thread::sleep_for(milliseconds(300));
    paused = false;
    for (auto& c : clients) c.join();
    EXPECT_EQ(unfinished.load(), 0u) << "clients that saw no close within 30 s";
    ASSERT_TRUE(server.wait_exit_for(20000 * kSlow)) << "stockd did not stop after SIGTERM";
    EXPECT_TRUE(WIFEXITED(server.exit_status()) && WEXITSTATUS(server.exit_status()) == 0)
        << exit_text(server.exit_status());

    ASSERT_TRUE(started(server)) << "restart on the same data";
    Client admin = server.admin();
    auto sku = admin.sku_get("TERM-1");
    ASSERT_TRUE(sku.ok()) << sku.error;
    const uint64_t sold = sku.body.sold - sold_before;
    std::printf("[ measured ] round %d: %llu OK answers read, %llu units sold\n", round,
                static_cast<unsigned long long>(ok.load()), static_cast<unsigned long long>(sold));
    EXPECT_GT(ok.load(), 0u) << "no purchase happened before the SIGTERM";
    // A purchase applied but never answered is a sale the buyer does not know of.
    EXPECT_EQ(sold, ok.load()) << "purchases applied but their answers lost with the connection";
    sold_before = sku.body.sold;
  }
  expect_serving(server, "SIGTERM under load");
}

// A peer that takes no answers for longer than the server's linger after a SIGTERM, and still
// sends, gets every answer once it reads: the server does not close a connection whose answers
// the peer's kernel has not taken (with input unread, that close is a reset that destroys them).
TEST(GracefulStop, APeerThatPausesPastTheLingerStillGetsEveryAnswer) {
  constexpr uint32_t kBuys = 20000;  // answers well past the peer's receive window
  StockdProcess server;
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "SLOW-1", 1'000'000);
  Peer p(server.port(), 256 << 10);
  ASSERT_TRUE(p.ok() && p.hello(Role::kBuyer, ""));
  std::string buys;
  for (uint32_t n = 0; n < kBuys; ++n) {
    buys += frame(Opcode::kReserve, 2 + n,
                  reserve_req("slow-user", "slow-" + std::to_string(n), 0, {{"SLOW-1", 1}}));
  }
  ASSERT_TRUE(p.send(buys));
  // All applied (however slow this build is); their answers wait in the buffers.
  ASSERT_TRUE(eventually(
      30000 * kSlow, [&] { return admin.sku_get("SLOW-1").body.sold == kBuys; }, 50))
      << "sold " << admin.sku_get("SLOW-1").body.sold;
  server.signal(SIGTERM);
  // The peer keeps sending (a request every 20 ms) and reads nothing for 3.5 s.
  std::atomic<bool> done{false};
  std::thread writer([&] {
    const std::string ping = frame(Opcode::kPing, 1, proto::PingReq{});
    while (!done && !p.gone()) {
      p.send_some(ping);
      std::this_thread::sleep_for(milliseconds(20));
    }
  });
  // While it waits for the peer, the server has nothing to do: it must not spin.
  std::this_thread::sleep_for(milliseconds(500));
  const double cpu_before = cpu_seconds(server.pid());
  std::this_thread::sleep_for(milliseconds(2500));
  const double lingering_cpu = cpu_seconds(server.pid()) - cpu_before;
  std::this_thread::sleep_for(milliseconds(500));
  std::printf("[ measured ] CPU of the lingering server over 2.5 s: %.2f s\n", lingering_cpu);
  EXPECT_GE(cpu_before, 0);
  EXPECT_LT(lingering_cpu, 0.5) << "the server spins while it lingers";
  uint64_t ok = 0;
  for (;;) {
    Peer::Frame f;
    auto got = p.read(f, 20000 * kSlow);
    if (got != Peer::Got::kFrame) {
      EXPECT_EQ(got, Peer::Got::kClosed) << "no close within 20 s";
      break;
    }
    if (f.header.opcode == static_cast<uint16_t>(Opcode::kReserve) && f.status() == Status::kOk) {
      ++ok;
    }
  }
  done = true;
  writer.join();
  ASSERT_TRUE(server.wait_exit_for(20000 * kSlow)) << "stockd did not stop after SIGTERM";

  ASSERT_TRUE(started(server)) << "restart on the same data";
  Client again = server.admin();
  auto sku = again.sku_get("SLOW-1");
  ASSERT_TRUE(sku.ok()) << sku.error;
  std::printf("[ measured ] %llu OK answers read, %llu units sold\n",
              static_cast<unsigned long long>(ok), static_cast<unsigned long long>(sku.body.sold));
  EXPECT_EQ(sku.body.sold, kBuys);
  EXPECT_EQ(ok, kBuys) << "purchases applied but their answers destroyed with the connection";
}

// ---- 12. SIGHUP is not a way to kill the server. ----

TEST(Signals, SighupIsIgnored) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  for (int i = 0; i < 2; ++i) {
    server.signal(SIGHUP);
    std::this_thread::sleep_for(milliseconds(200));
    ASSERT_TRUE(server.alive()) << "SIGHUP: " << exit_text(server.exit_status());
  }
  expect_serving(server, "SIGHUP");
}

// ---- 13. A long poll that is waiting is not an idle connection. ----

TEST(LongPoll, AnOutstandingLongPollIsNotIdle) {
  StockdProcess server({"--idle-timeout-ms", "500"});
  ASSERT_TRUE(started(server));
  Peer p(server.port());
  ASSERT_TRUE(p.hello(Role::kOutbox, StockdProcess::kOutboxToken));
  const auto t0 = Clock::now();
  ASSERT_TRUE(p.send(frame(Opcode::kOutboxRead, 7, proto::OutboxReadReq{0, 10, 2000})));
  Peer::Frame f;
  auto got = p.read(f, 5000 * kSlow);
  const int64_t took = ms_since(t0);
  std::printf("[ measured ] long poll of 2,000 ms with --idle-timeout-ms 500: %s after %lld ms\n",
              got == Peer::Got::kFrame ? "answered" : "closed", static_cast<long long>(took));
  ASSERT_EQ(got, Peer::Got::kFrame) << "the connection was closed while its long poll waited";
  EXPECT_EQ(f.status(), Status::kOk) << describe(f);
  auto resp =
      proto::decode_response(Opcode::kOutboxRead, Status::kOk,
                             {reinterpret_cast<const uint8_t*>(f.body.data()), f.body.size()});
  ASSERT_TRUE(resp.ok()) << resp.status().message();
  EXPECT_TRUE(std::get<proto::OutboxReadResp>(*resp).records.empty());
  EXPECT_GE(took, 1900);                 // the poll's wait, not an early answer
  EXPECT_LE(took, 2000 + 1500 * kSlow);  // bound: wait_ms + 1.5 s
  expect_serving(server, "a long poll");
}

// A long poll answered when a group becomes durable must not overtake the answers before it on
// its connection: they wait on a later group (the one filling when they were made). Pipelined
// OUTBOX_STATUS + OUTBOX_READ{wait} while a buy's group is being written: the poll is woken by
// that group's records, the STATUS answer waits on the group after it. The server used to tag the
// poll's answer with the durable group, an earlier one, and abort on its order check.
TEST(LongPoll, APollPipelinedBehindAnotherAnswerKeepsTheOrder) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  {
    Client admin = server.admin();
    make_sku(admin, "POLL-1", 1'000'000);
  }
  Peer buyer(server.port());
  ASSERT_TRUE(buyer.hello(Role::kBuyer, ""));
  Peer outbox(server.port());
  ASSERT_TRUE(outbox.hello(Role::kOutbox, StockdProcess::kOutboxToken));
  auto read_answer = [](Peer& p, Opcode op, uint32_t id) -> std::optional<proto::Response> {
    Peer::Frame f;
    if (p.read(f, 5000 * kSlow) != Peer::Got::kFrame) return std::nullopt;
    EXPECT_EQ(f.header.request_id, id) << "answers out of request order";
    EXPECT_EQ(f.status(), Status::kOk) << describe(f);
    auto r = proto::decode_response(
        op, f.status(), {reinterpret_cast<const uint8_t*>(f.body.data()), f.body.size()});
    if (!r.ok()) return std::nullopt;
    return std::move(*r);
  };
  // The head before the first buy.
  ASSERT_TRUE(outbox.send(frame(Opcode::kOutboxStatus, 2, proto::OutboxStatusReq{})));
  auto st = read_answer(outbox, Opcode::kOutboxStatus, 2);
  ASSERT_TRUE(st.has_value());
  uint64_t head = std::get<proto::OutboxStatusResp>(*st).head_seq;
  uint32_t id = 10;
  // Each round: one buy, then (a little later, so that it lands while the buy's group is
  // written) the pipelined pair; the delay varies over the rounds to meet the window.
  for (int round = 0; round < 60; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const uint32_t buy_id = id++, status_id = id++, read_id = id++;
    const std::string key = "poll-" + std::to_string(round);
    ASSERT_TRUE(buyer.send(
        frame(Opcode::kReserve, buy_id, reserve_req("poll-u", key, 0, {{"POLL-1", 1}}))));
    std::this_thread::sleep_for(std::chrono::microseconds(25 * (round % 12)));
    ASSERT_TRUE(
        outbox.send(frame(Opcode::kOutboxStatus, status_id, proto::OutboxStatusReq{}) +
                    frame(Opcode::kOutboxRead, read_id, proto::OutboxReadReq{head, 100, 3000})));
    auto bought = read_answer(buyer, Opcode::kReserve, buy_id);
    ASSERT_TRUE(bought.has_value()) << "the server stopped answering the buyer";
    auto status = read_answer(outbox, Opcode::kOutboxStatus, status_id);
    ASSERT_TRUE(status.has_value()) << "the server stopped answering the outbox";
    auto polled = read_answer(outbox, Opcode::kOutboxRead, read_id);
    ASSERT_TRUE(polled.has_value()) << "the long poll was not answered";
    const auto& records = std::get<proto::OutboxReadResp>(*polled).records;
    ASSERT_FALSE(records.empty()) << "the poll ended without the buy's order";
    EXPECT_EQ(records.front().seq, head + 1);
    head = records.back().seq;
  }
  expect_serving(server, "long polls pipelined behind other answers");
}

// ---- Protocol edges. ----

TEST(ProtocolEdges, CommitOfAReleasedHoldIsAlreadyDone) {
  StockdProcess server;
  ASSERT_TRUE(started(server));
  Client admin = server.admin();
  make_sku(admin, "EDGE-1", 10);
  Client buyer = server.buyer();
  auto r = buyer.reserve(reserve_req("edge", "edge-1", 600'000, {{"EDGE-1", 2}}));
  ASSERT_TRUE(r.ok()) << r.error;
  auto rel = buyer.release(r.body.hold_id, "edge");
  ASSERT_TRUE(rel.ok()) << rel.error;
  EXPECT_EQ(rel.body.state, HoldState::kReleased);
  auto commit = buyer.commit(r.body.hold_id, "edge");
  EXPECT_EQ(commit.status, Status::kAlreadyDone) << proto::status_name(commit.status);
  EXPECT_EQ(commit.body.state, HoldState::kReleased);
  auto again = buyer.release(r.body.hold_id, "edge");
  EXPECT_EQ(again.status, Status::kAlreadyDone);
  auto sku = admin.sku_get("EDGE-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.available, 10u);
  EXPECT_EQ(sku.body.sold, 0u);
  expect_serving(server, "COMMIT of a released hold");
}

}  // namespace
}  // namespace stockd::test
