#include "metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string_view>
#include <vector>

#include "stockd/unacked.h"

namespace stockd::outbox {
namespace {

constexpr int kPollMs = 200;               // how often the HTTP thread checks for stop
constexpr size_t kRequestBytesMax = 8192;  // a bigger request head is refused
constexpr int kClientTimeoutMs = 2000;     // for its request, for each part of the answer
constexpr size_t kClientsMax = 16;         // peers served at once (see serve())

std::string http(int code, const char* reason, const std::string& type, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
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
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    return Status::Invalid("bad IPv4 address " + host);
  }
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd_, 16) != 0) {
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

namespace {
// Whether the request line asks for `path` (the path alone or with a query string).
bool asks_for(const std::string& request, std::string_view path) {
  const std::string_view line = std::string_view(request).substr(0, request.find("\r\n"));
  if (!line.starts_with("GET ") || line.substr(4, path.size()) != path) return false;
  const std::string_view after = line.substr(4 + path.size());
  return after.empty() || after[0] == ' ' || after[0] == '?';
}
}  // namespace

std::string MetricsServer::answer(const std::string& request) const {
  if (asks_for(request, "/metrics")) {
    return http(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render());
  }
  if (asks_for(request, "/healthz")) {
    bool up;
    {
      std::lock_guard lock(mu_);
      up = gauges_.sql_up && gauges_.stockd_up;
    }
    return up ? http(200, "OK", "text/plain", "ok\n")
              : http(503, "Service Unavailable", "text/plain", "sql or stockd down\n");
  }
  return http(404, "Not Found", "text/plain", "try /metrics or /healthz\n");
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
