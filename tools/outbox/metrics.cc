#include "metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace stockd::outbox {
namespace {

constexpr int kPollMs = 200;               // how often the HTTP thread checks for stop
constexpr size_t kRequestBytesMax = 8192;  // a bigger request head is refused
constexpr int kClientTimeoutMs = 2000;     // a client must send its request within this

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

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

void MetricsServer::serve() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < kRequestBytesMax) {
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, kClientTimeoutMs) <= 0) break;
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    if (req.rfind("GET /metrics", 0) == 0) {
      send_all(c, http(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render()));
    } else if (req.rfind("GET /healthz", 0) == 0) {
      bool up;
      {
        std::lock_guard lock(mu_);
        up = gauges_.sql_up && gauges_.stockd_up;
      }
      send_all(c, up ? http(200, "OK", "text/plain", "ok\n")
                     : http(503, "Service Unavailable", "text/plain", "sql or stockd down\n"));
    } else {
      send_all(c, http(404, "Not Found", "text/plain", "try /metrics or /healthz\n"));
    }
    ::close(c);
  }
}

}  // namespace stockd::outbox
