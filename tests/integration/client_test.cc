// The C++ client (and stockctl on it) against a scripted server: answers lost, resends, and
// HELLO answers a real stockd never gives. Each accepted connection runs the next script (the
// last one again when they run out).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "harness.h"

namespace stockd::test {
namespace {

using proto::Opcode;

class ScriptedServer {
 public:
  using Script = std::function<void(int fd)>;

  explicit ScriptedServer(std::vector<Script> scripts) : scripts_(std::move(scripts)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(listener_, 8) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen";
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (size_t n = 0;; ++n) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // the listener was shut down
        scripts_[std::min(n, scripts_.size() - 1)](fd);
        ::close(fd);
      }
    });
  }
  ~ScriptedServer() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  uint16_t port() const { return port_; }

 private:
  std::vector<Script> scripts_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

// Reads one request frame; false at the end of input.
bool read_request(int fd, proto::FrameHeader& h) {
  unsigned char head[proto::kHeaderBytes];
  size_t got = 0;
  while (got < sizeof head) {
    const ssize_t n = ::recv(fd, head + got, sizeof head - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  h.body_len = head[4] | head[5] << 8 | head[6] << 16 | static_cast<uint32_t>(head[7]) << 24;
  h.opcode = static_cast<uint16_t>(head[8] | head[9] << 8);
  h.request_id = head[12] | head[13] << 8 | head[14] << 16 | static_cast<uint32_t>(head[15]) << 24;
  std::string body(h.body_len, '\0');
  for (size_t at = 0; at < body.size();) {
    const ssize_t n = ::recv(fd, body.data() + at, body.size() - at, 0);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

void answer(int fd, const proto::FrameHeader& to, proto::Status status, const proto::Response& r) {
  std::string out;
  proto::encode_response(static_cast<Opcode>(to.opcode), to.request_id, status, r, out);
  (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
}

constexpr proto::HelloResp kHello{proto::kProtocolVersion, 1 << 20, 64, 60'000};

// HELLO answered OK, then the first request read and the connection closed: its answer is lost.
void hello_then_lose_the_answer(int fd) {
  proto::FrameHeader h;
  if (!read_request(fd, h)) return;
  answer(fd, h, proto::Status::kOk, kHello);
  (void)read_request(fd, h);
}

ClientOptions options(uint16_t port) {
  ClientOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.timeout_ms = 5000;
  o.reconnect_backoff_ms = 10;
  return o;
}

// A COMMIT whose answer was lost is sent again, and answered ALREADY_DONE with the hold
// COMMITTED: the first send did it. The reply says it was a resend, and stockctl exits 0 (it
// printed "ALREADY_DONE" and exited 1 for a commit it made itself).
TEST(ClientResend, ACommitFoundDoneOnItsResendIsNotARefusal) {
  const ScriptedServer::Script done = [](int fd) {
    proto::FrameHeader h;
    if (!read_request(fd, h)) return;
    answer(fd, h, proto::Status::kOk, kHello);
    while (read_request(fd, h)) {
      proto::HoldView v;
      v.hold_id = 5;
      v.state = proto::HoldState::kCommitted;
      v.user = "u";
      answer(fd, h, proto::Status::kAlreadyDone, v);
    }
  };
  {
    ScriptedServer server({hello_then_lose_the_answer, done});
    Client c(options(server.port()));
    auto r = c.commit(5, "u");
    ASSERT_TRUE(r.transport_ok()) << r.error;
    EXPECT_EQ(r.status, proto::Status::kAlreadyDone);
    EXPECT_TRUE(r.resent);
    auto again = c.commit(5, "u");  // answered the first time: not a resend
    EXPECT_FALSE(again.resent);
  }
  ScriptedServer server({hello_then_lose_the_answer, done});
  ToolResult t = run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(server.port()),
                                         "--json", "commit", "5", "--user", "u"});
  EXPECT_EQ(t.exit_code, 0) << t.out << t.err;
  EXPECT_NE(t.out.find("\"resent\":true"), std::string::npos) << t.out;
  EXPECT_NE(t.err.find("sent again"), std::string::npos) << t.err;
}

// A keyed RESERVE whose answer was lost is sent again, and the new connection's HELLO is
// refused (a token rotated in a restart). That refusal was reported as the RESERVE's answer,
// "nothing reserved", though the first send may have bought: a caller retrying with a new key
// would buy twice. The outcome is unknown: a transport failure (stockctl exit 3).
TEST(ClientResend, AHelloRefusedOnTheResendLeavesTheOutcomeUnknown) {
  const ScriptedServer::Script refuse = [](int fd) {
    proto::FrameHeader h;
    if (read_request(fd, h)) {
      answer(fd, h, proto::Status::kUnauthorized, proto::ErrorResp{"wrong token for role buyer"});
    }
  };
  {
    ScriptedServer server({hello_then_lose_the_answer, refuse});
    Client c(options(server.port()));
    auto r = c.reserve(reserve_req("u", "k-1", 0, {{"tee", 1}}));
    EXPECT_FALSE(r.transport_ok()) << proto::status_name(r.status) << " " << r.error;
    EXPECT_NE(r.error.find("may or may not have been applied"), std::string::npos) << r.error;
  }
  ScriptedServer server({hello_then_lose_the_answer, refuse});
  ToolResult t = run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(server.port()),
                                         "reserve", "tee", "--user", "u", "--key", "k-1"});
  EXPECT_EQ(t.exit_code, 3) << t.out << t.err;
}

// A HELLO answer announcing a frame limit past what any stockd takes (64 MiB) would let the
// server make the client buffer that much for one answer: refused as a protocol error.
TEST(ClientHello, AFrameLimitPastSixtyFourMebibytesIsAProtocolError) {
  ScriptedServer server({[](int fd) {
    proto::FrameHeader h;
    if (!read_request(fd, h)) return;
    answer(fd, h, proto::Status::kOk,
           proto::HelloResp{proto::kProtocolVersion, 0xFFFFFFFFu, 64, 0});
  }});
  ClientOptions o = options(server.port());
  o.reconnect_attempts = 1;
  Client c(o);
  const Status s = c.connect();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("frame_bytes_max 4294967295"), std::string::npos) << s.message();
}

// A server that takes the request and never answers: a retry-safe call gives up at its timeout,
// its resend (a new connection, HELLO, the request again) included. It took the timeout twice
// over and more (stockctl --timeout-ms 10000 over TLS: about 52 s).
TEST(ClientTimeout, ACallEndsWithinItsTimeoutResendIncluded) {
  const ScriptedServer::Script silent = [](int fd) {
    proto::FrameHeader h;
    if (!read_request(fd, h)) return;
    answer(fd, h, proto::Status::kOk, kHello);
    while (read_request(fd, h)) {
    }  // never answers; returns when the client closes
  };
  ScriptedServer server({silent});
  ClientOptions o = options(server.port());
  o.timeout_ms = 600;
  Client c(o);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.sku_get("tee");
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_FALSE(r.transport_ok());
  EXPECT_LT(ms, 600 + 300) << "a 600 ms call took " << ms << " ms: " << r.error;
}

}  // namespace
}  // namespace stockd::test
