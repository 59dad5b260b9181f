// Helpers shared by the real-socket integration tests (tests/integration/*_test.cc): scaling,
// polling with a deadline, a raw loopback socket that speaks bytes rather than the client
// library, running stockctl, and reading flat fields out of its --json output.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/process.h"
#include "stockd/client.h"
#include "stockd/protocol.h"

// How gtest prints the views that tests compare (found by argument-dependent lookup).
namespace stockd::proto {
inline void PrintTo(const HoldView& h, std::ostream* os) {
  *os << "hold " << h.hold_id << " " << hold_state_name(h.state) << " user=" << h.user
      << " key=" << h.key << " created=" << h.created_at_ms << " expires=" << h.expires_at_ms
      << " lines=" << h.lines.size() << " codes=" << h.codes.size();
}
inline void PrintTo(const SkuView& v, std::ostream* os) {
  *os << v.sku << " total=" << v.total << " available=" << v.available << " held=" << v.held
      << " sold=" << v.sold << " limit=" << v.per_user_limit << " flags=" << int{v.flags};
}
}  // namespace stockd::proto

namespace stockd::test {

using Clock = std::chrono::steady_clock;

// STOCKD_STRESS_SCALE (default 1) multiplies the big counts: 0.2 under sanitizers, 5 for a soak.
inline double stress_scale() {
  const char* s = std::getenv("STOCKD_STRESS_SCALE");
  if (s == nullptr || *s == '\0') return 1.0;
  double v = std::atof(s);
  return std::clamp(v, 0.01, 100.0);
}
// `n` scaled, at least `floor`.
inline size_t scaled(size_t n, size_t floor = 1) {
  return std::max(floor, static_cast<size_t>(static_cast<double>(n) * stress_scale()));
}

inline int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

#if defined(__SANITIZE_ADDRESS__)
inline constexpr int kSlow =
    3;  // ASan+UBSan build: time bounds of the tests are three times as long
#else
inline constexpr int kSlow = 1;
#endif

inline int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// Calls `pred` every `step_ms` until it returns true or `timeout_ms` passed; returns its last
// value.
template <class Pred>
bool eventually(int timeout_ms, Pred pred, int step_ms = 10) {
  auto until = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
  }
}

// A client that said HELLO, or a fatal test failure (use in functions returning void).
inline proto::ReserveReq reserve_req(std::string user, std::string key, uint32_t ttl_ms,
                                     std::vector<proto::Line> lines) {
  return proto::ReserveReq{std::move(user), std::move(key), ttl_ms, std::move(lines)};
}

inline void connect_or_fail(Client& c) {
  const stockd::Status s = c.connect();
  ASSERT_TRUE(s.ok()) << "connect to 127.0.0.1:" << c.options().port << ": " << s.message();
}

// Creates (or updates) a counted SKU through `admin`.
inline proto::SkuView make_sku(Client& admin, const std::string& sku, uint64_t total,
                               uint32_t per_user_limit = 0) {
  proto::SkuSetReq req;
  req.sku = sku;
  req.mask = proto::kSetTotal | proto::kSetPerUserLimit;
  req.total = total;
  req.per_user_limit = per_user_limit;
  auto r = admin.sku_set(req);
  EXPECT_TRUE(r.ok()) << sku << ": " << proto::status_name(r.status) << " " << r.error;
  return r.body;
}

// Creates a code-pool SKU and loads `codes` in as many CODES_LOAD requests as the server's frame
// limit needs. Returns how many requests it took (0 on failure, with a test failure).
inline size_t make_code_pool(Client& admin, const std::string& sku,
                             const std::vector<std::string>& codes) {
  proto::SkuSetReq set;
  set.sku = sku;  // mask 0: created with total 0, ready for codes
  auto s = admin.sku_set(set);
  EXPECT_TRUE(s.ok()) << proto::status_name(s.status) << " " << s.error;
  if (!s.ok()) return 0;
  // Frame = header + str sku + u32 count + (u16 len + bytes) per code.
  const size_t fixed = proto::kHeaderBytes + 2 + sku.size() + 4;
  size_t requests = 0;
  size_t i = 0;
  while (i < codes.size()) {
    proto::CodesLoadReq req;
    req.sku = sku;
    size_t bytes = fixed;
    while (i < codes.size() && bytes + 2 + codes[i].size() <= admin.frame_bytes_max()) {
      bytes += 2 + codes[i].size();
      req.codes.push_back(codes[i++]);
    }
    EXPECT_FALSE(req.codes.empty()) << "a code does not fit in a frame";
    if (req.codes.empty()) return 0;
    auto r = admin.codes_load(req);
    EXPECT_TRUE(r.ok()) << "CODES_LOAD #" << requests << ": " << proto::status_name(r.status) << " "
                        << r.error << " duplicate=" << r.body.duplicate;
    if (!r.ok()) return 0;
    ++requests;
  }
  return requests;
}

// Stats as a name -> value map.
inline std::map<std::string, uint64_t> stats_map(Client& c) {
  std::map<std::string, uint64_t> m;
  auto r = c.stats();
  EXPECT_TRUE(r.ok()) << r.error;
  for (const auto& s : r.body.stats) m[s.name] = s.value;
  return m;
}

inline uint64_t stat_of(Client& c, const std::string& name) {
  auto m = stats_map(c);
  auto it = m.find(name);
  EXPECT_NE(it, m.end()) << "no stat " << name;
  return it == m.end() ? 0 : it->second;
}

// Resident memory of `pid`, from /proc (0 if unreadable).
inline uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

// CPU seconds (user + system) `pid` has used, from /proc (-1 if unreadable).
inline double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end = stat.rfind(')');  // the name may hold spaces: fields follow its ')'
  if (end == std::string::npos) return -1;
  std::istringstream fields(stat.substr(end + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::strtoull(f.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(f.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Every SKU, page by page.
inline std::vector<proto::SkuView> all_skus(Client& c) {
  std::vector<proto::SkuView> out;
  std::string after;
  for (;;) {
    auto r = c.sku_list(after, 1000);
    EXPECT_TRUE(r.ok()) << r.error;
    if (!r.ok() || r.body.skus.empty()) return out;
    after = r.body.skus.back().sku;
    out.insert(out.end(), r.body.skus.begin(), r.body.skus.end());
  }
}

// 127.0.0.1:`port`.
inline sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

// A loopback port nothing listens on right now (bound to port 0, read back, closed).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// A started stockd with `extra` flags and its metrics port on a free loopback port (`mport`);
// null if it did not start (three tries: the port may be taken meanwhile).
inline std::unique_ptr<StockdProcess> start_with_metrics(std::vector<std::string> extra,
                                                         int& mport) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    mport = free_port();
    std::vector<std::string> args = {"--metrics-listen", "127.0.0.1:" + std::to_string(mport)};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = std::make_unique<StockdProcess>(args);
    if (server->start()) return server;
  }
  return nullptr;
}

// ---- Raw socket: bytes in, frames out, no client library in between. ----

// Builds one frame by hand, so that tests can break any field of it.
inline std::string raw_frame(uint16_t opcode, uint32_t request_id, const std::string& body,
                             uint8_t flags = 0, uint16_t magic = proto::kMagic,
                             uint8_t version = proto::kProtocolVersion) {
  proto::FrameHeader h;
  h.magic = magic;
  h.version = version;
  h.flags = flags;
  h.body_len = static_cast<uint32_t>(body.size());
  h.opcode = opcode;
  h.request_id = request_id;
  std::string out;
  proto::encode_header(h, out);
  return out + body;
}

// The body of a well-formed request, for tampering with.
inline std::string request_body(proto::Opcode op, const proto::Request& req) {
  std::string frame;
  proto::encode_request(op, 0, req, frame);
  return frame.substr(proto::kHeaderBytes);
}

class RawConn {
 public:
  struct Frame {
    proto::FrameHeader header;
    std::string body;
    std::string message;  // ErrorResp.message when status >= 64
    proto::Status status() const { return static_cast<proto::Status>(header.status); }
  };
  enum class Got { kFrame, kClosed, kTimeout, kMalformed };

  // Takes one response frame (at most `frame_bytes_max`) off the front of `buf` into `out`:
  // kFrame, kMalformed, or kTimeout when `buf` does not hold a whole frame yet.
  static Got take_frame(std::string& buf, uint32_t frame_bytes_max, Frame& out) {
    std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(buf.data()), buf.size());
    proto::FrameDecode d = proto::decode_frame(in, proto::Limits{frame_bytes_max});
    if (d.kind == proto::DecodeKind::kInvalid) return Got::kMalformed;
    if (d.kind != proto::DecodeKind::kFrame) return Got::kTimeout;
    out.header = d.header;
    out.body.assign(reinterpret_cast<const char*>(d.body.data()), d.body.size());
    out.message.clear();
    if (proto::is_error_status(out.status())) {
      auto r =
          proto::decode_response(static_cast<proto::Opcode>(d.header.opcode), out.status(), d.body);
      if (!r.ok()) return Got::kMalformed;
      out.message = std::get<proto::ErrorResp>(*r).message;
    }
    buf.erase(0, d.consumed);
    return Got::kFrame;
  }

  explicit RawConn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(port);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool ok() const { return fd_ >= 0; }

  // Writes every byte (blocking). False if the peer is gone.
  bool send(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // HELLO as `role` with `token`; true if answered OK.
  bool hello(proto::Role role, const std::string& token, uint32_t id = 1) {
    std::string f;
    proto::encode_request(proto::Opcode::kHello, id, proto::HelloReq{1, role, token, "raw"}, f);
    Frame got;
    return send(f) && read(got, 5000) == Got::kFrame && got.status() == proto::Status::kOk;
  }

  // Reads one response frame within `timeout_ms`.
  Got read(Frame& out, int timeout_ms) {
    auto until = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (Got g = take_frame(buf_, proto::Limits{}.frame_bytes_max, out); g != Got::kTimeout) {
        return g;
      }
      Got g = fill(until);
      if (g != Got::kFrame) return g;
    }
  }

  // True if the server closes the connection (EOF or reset) within `timeout_ms` without sending
  // any further byte.
  bool closed_within(int timeout_ms) {
    if (!buf_.empty()) return false;
    return fill(Clock::now() + std::chrono::milliseconds(timeout_ms)) == Got::kClosed &&
           buf_.empty();
  }

 private:
  // Reads what is there into buf_: kFrame = got bytes.
  Got fill(Clock::time_point until) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      pollfd p{fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (rc < 0 && errno == EINTR) continue;
      if (rc == 0) return Got::kTimeout;
      char chunk[65536];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Got::kClosed;
      buf_.append(chunk, static_cast<size_t>(n));
      return Got::kFrame;
    }
  }

  int fd_ = -1;
  std::string buf_;
};

// ---- Running stockctl. ----

struct ToolResult {
  int exit_code = -1;  // 128 + signal if killed
  std::string out;
  std::string err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `binary args...` with stdout and stderr captured; waits for it.
inline ToolResult run_tool(const std::string& binary, const std::vector<std::string>& args) {
  static int counter = 0;
  auto base = std::filesystem::temp_directory_path() /
              ("stockd-tool-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  const std::string out_path = base.string() + ".out";
  const std::string err_path = base.string() + ".err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> all = {binary};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  ToolResult r;
  pid_t pid = -1;
  if (posix_spawn(&pid, binary.c_str(), &fa, nullptr, argv.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&fa);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(err_path);
  return r;
}

// ---- Reading stockctl --json output: one flat JSON object per line is all we need. ----

// The raw text of the first top-level member `name` of the JSON object `json` (a string without
// its quotes and escapes resolved only for \" and \\; a number or literal as written); nullopt
// if absent. Nested objects and arrays are skipped, so a nested "sku" never matches.
inline std::optional<std::string> json_field(const std::string& json, const std::string& name) {
  size_t i = json.find('{');
  if (i == std::string::npos) return std::nullopt;
  ++i;
  auto read_string = [&](size_t& p) {
    std::string s;
    for (++p; p < json.size() && json[p] != '"'; ++p) {
      if (json[p] == '\\' && p + 1 < json.size()) ++p;
      s += json[p];
    }
    ++p;
    return s;
  };
  auto skip_value = [&](size_t& p) {
    int depth = 0;
    while (p < json.size()) {
      char c = json[p];
      if (c == '"') {
        read_string(p);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (depth == 0) return;
        --depth;
      }
      if (c == ',' && depth == 0) return;
      ++p;
    }
  };
  while (i < json.size()) {
    while (i < json.size() && (json[i] == ' ' || json[i] == ',' || json[i] == '\n')) ++i;
    if (i >= json.size() || json[i] != '"') return std::nullopt;
    std::string key = read_string(i);
    while (i < json.size() && (json[i] == ' ' || json[i] == ':')) ++i;
    if (key == name) {
      if (json[i] == '"') return read_string(i);
      size_t start = i;
      skip_value(i);
      return json.substr(start, i - start);
    }
    skip_value(i);
  }
  return std::nullopt;
}

inline uint64_t json_u64(const std::string& json, const std::string& name) {
  auto v = json_field(json, name);
  EXPECT_TRUE(v.has_value()) << "no \"" << name << "\" in " << json;
  return v ? std::strtoull(v->c_str(), nullptr, 10) : 0;
}

}  // namespace stockd::test
