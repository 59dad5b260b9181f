#include "metrics.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string_view>
#include <vector>

#include "stockd/endpoint.h"
#include "stockd/unacked.h"

namespace stockd::outbox {
namespace {

constexpr int kPollMs = 200;               // how often the HTTP thread checks for stop
constexpr size_t kRequestBytesMax = 8192;  // a bigger request head is refused
constexpr int kClientTimeoutMs = 2000;     // for its request, for each part of the answer
constexpr size_t kClientsMax = 16;         // peers served at once (see serve())

// `head_only`: the answer to HEAD, the head a GET's would have (its Content-Length too) and no
// body (RFC 9110 9.3.2).
std::string http(int code, const char* reason, const std::string& type, const std::string& body,
                 bool head_only = false) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         (code == 405 ? "Allow: GET, HEAD\r\n" : "") + "Connection: close\r\n\r\n" +
         (head_only ? std::string() : body);
}

void metric(std::string& out, const char* name, const char* type, const char* help, uint64_t v) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
         name + " " + std::to_string(v) + "\n";
}

}  // namespace

MetricsServer::~MetricsServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

Status MetricsServer::start(const std::string& host, uint16_t port) {
  sockaddr_storage a{};
  socklen_t len = 0;
  if (Status s = resolve_tcp(host, port, /*passive=*/true, a, len); !s.ok()) return s;
  fd_ = ::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 16) != 0) {
    return Status::Io("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                      std::strerror(errno));
  }
  thread_ = std::thread([this] { serve(); });
  return Status::Ok();
}

void MetricsServer::publish(const SidecarGauges& g) {
  std::lock_guard lock(mu_);
  gauges_ = g;
}

std::string MetricsServer::render() const {
  SidecarGauges g;
  {
    std::lock_guard lock(mu_);
    g = gauges_;
  }
  std::string out;
  metric(out, "stockd_outbox_sidecar_cursor_seq", "gauge",
         "Highest outbox sequence number committed to SQL.", g.cursor);
  metric(out, "stockd_outbox_sidecar_head_seq", "gauge", "stockd's outbox head as last seen.",
         g.head);
  metric(out, "stockd_outbox_sidecar_lag", "gauge", "Records stockd has that SQL does not yet.",
         g.head > g.cursor ? g.head - g.cursor : 0);
  metric(out, "stockd_outbox_sidecar_sql_up", "gauge", "1 while the last SQL transaction worked.",
         g.sql_up ? 1 : 0);
  metric(out, "stockd_outbox_sidecar_stockd_up", "gauge", "1 while connected to stockd.",
         g.stockd_up ? 1 : 0);
  metric(out, "stockd_outbox_sidecar_copied_records_total", "counter",
         "Outbox records committed to SQL since start.", g.copied_total);
  metric(out, "stockd_outbox_sidecar_sql_failures_total", "counter",
         "Failed SQL transactions (each is retried, never skipped).", g.sql_failures_total);
  metric(out, "stockd_outbox_sidecar_stockd_failures_total", "counter",
         "Failed reads or connections to stockd.", g.stockd_failures_total);
  return out;
}

std::string MetricsServer::answer(const std::string& request) const {
  // The request line: METHOD SP PATH[?QUERY] SP VERSION (the path is matched whole).
  const std::string_view line = std::string_view(request).substr(0, request.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return http(400, "Bad Request", "text/plain", "bad request\n");
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  if (method != "GET" && method != "HEAD") {
    return http(405, "Method Not Allowed", "text/plain", "only GET and HEAD\n");
  }
  const bool head = method == "HEAD";
  if (path == "/metrics") {
    return http(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render(), head);
  }
  if (path == "/healthz") {
    bool up;
    {
      std::lock_guard lock(mu_);
      up = gauges_.sql_up && gauges_.stockd_up;
    }
    return up ? http(200, "OK", "text/plain", "ok\n", head)
              : http(503, "Service Unavailable", "text/plain", "sql or stockd down\n", head);
  }
  return http(404, "Not Found", "text/plain", "try /metrics or /healthz\n", head);
}

// A few peers at once, none able to hold the others up: each has kClientTimeoutMs to send its
// request head, then gets its answer (sent as the peer takes it, the same time to take each
// part), then the connection is half-closed and what the peer still sends is read and dropped
// until it closes or the time is up. Closing with bytes unread would be a reset, which destroys
// whatever part of the answer the peer has not taken yet.
// Past kClientsMax peers a newcomer is still accepted, and a peer gives way to it: the oldest
// without a whole request (silent or trickling peers cannot keep a probe out), else one after
// its answer whose whole answer the peer's kernel took (peers that read their answers and never
// close held their slots for the drain's 2 s); else, every slot writing an answer, the newcomer
// is closed at once.
void MetricsServer::serve() {
  using Clock = std::chrono::steady_clock;
  enum class Phase { kReading, kWriting, kDraining };
  struct Peer {
    int fd;
    Phase phase = Phase::kReading;
    std::string in, out;
    size_t sent = 0;
    Clock::time_point deadline;
    Clock::time_point accepted;
  };
  // The answer and its FIN are acknowledged (the FIN counts one).
  const auto drained = [](const Peer& p) {
    const int unacked = unacked_bytes(p.fd);
    return unacked >= 0 && unacked <= 1;
  };
  std::vector<Peer> peers;
  const auto later = [] { return Clock::now() + std::chrono::milliseconds(kClientTimeoutMs); };
  while (!stop_) {
    std::vector<pollfd> fds;
    for (const Peer& p : peers) {
      fds.push_back({p.fd, static_cast<short>(p.phase == Phase::kWriting ? POLLOUT : POLLIN), 0});
    }
    fds.push_back({fd_, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), kPollMs) < 0) continue;
    const auto now = Clock::now();
    for (size_t i = 0; i < peers.size(); ++i) {
      Peer& p = peers[i];
      bool done = false;
      if (fds[i].revents != 0) {
        char buf[4096];
        if (p.phase == Phase::kWriting) {
          ssize_t n = ::send(p.fd, p.out.data() + p.sent, p.out.size() - p.sent,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n > 0) {
            p.sent += static_cast<size_t>(n);
            p.deadline = later();
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            done = true;
          }
          if (!done && p.sent == p.out.size()) {
            ::shutdown(p.fd, SHUT_WR);
            p.phase = Phase::kDraining;
            p.deadline = later();
          }
        } else {
          ssize_t n = ::recv(p.fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            done = true;  // the peer closed (or reset): nothing more to give it
          } else if (n > 0 && p.phase == Phase::kReading) {
            p.in.append(buf, static_cast<size_t>(n));
            if (p.in.find("\r\n\r\n") != std::string::npos || p.in.size() >= kRequestBytesMax) {
              p.out = answer(p.in);
              p.in.clear();
              p.phase = Phase::kWriting;
              p.deadline = later();
            }
          }
        }
      }
      if (done || now >= p.deadline) {
        ::close(p.fd);
        peers[i] = std::move(peers.back());
        fds[i] = fds[peers.size() - 1];
        peers.pop_back();
        --i;
      }
    }
    if (fds.back().fd == fd_ && fds.back().revents != 0) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0 && peers.size() >= kClientsMax) {
        Peer* gives_way = nullptr;
        for (Peer& p : peers) {
          if (p.phase == Phase::kReading &&
              (gives_way == nullptr || p.accepted < gives_way->accepted))
            gives_way = &p;
        }
        for (Peer& p : peers) {
          if (gives_way == nullptr && p.phase == Phase::kDraining && drained(p)) gives_way = &p;
        }
        if (gives_way != nullptr) {
          ::close(gives_way->fd);
          *gives_way = std::move(peers.back());
          peers.pop_back();
        } else {
          ::close(c);
          c = -1;
        }
      }
      if (c >= 0) peers.push_back(Peer{c, Phase::kReading, {}, {}, 0, later(), Clock::now()});
    }
  }
  for (const Peer& p : peers) ::close(p.fd);
}

}  // namespace stockd::outbox
