// Socket helpers. See net.h.
#include "net.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "stockd/endpoint.h"

namespace stockd::bench {

std::string resolve(const std::string& host, uint16_t port, Endpoint& out) {
  socklen_t len = 0;
  if (std::string e = resolve_tcp(host, port, false, out.addr, len); !e.empty()) return e;
  out.len = len;
  out.text = host + ":" + std::to_string(port);
  return "";
}

int open_tcp(const Endpoint& ep, bool nonblocking, int timeout_ms, std::string& err) {
  int fd = ::socket(ep.addr.ss_family,
                    SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) {
    err = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!nonblocking) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0 &&
      !(nonblocking && errno == EINPROGRESS)) {
    err = "connect to " + ep.text + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string connect_error(int fd) {
  int so_error = 0;
  socklen_t len = sizeof so_error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
  return so_error == 0 ? "" : std::strerror(so_error);
}

std::string send_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::string("send: ") + std::strerror(errno);
    done += static_cast<size_t>(n);
  }
  return "";
}

std::string receive_some(int fd, std::string& into) {
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return "connection closed by peer";
    if (n < 0) return std::string("recv: ") + std::strerror(errno);
    into.append(buf, static_cast<size_t>(n));
    return "";
  }
}

}  // namespace stockd::bench
