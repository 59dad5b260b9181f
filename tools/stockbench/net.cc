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

Result<Endpoint> resolve(const std::string& host, uint16_t port) {
  Endpoint out;
  if (Status s = resolve_tcp(host, port, false, out.addr, out.len); !s.ok()) return s;
  out.text = host + ":" + std::to_string(port);
  return out;
}

Result<int> open_tcp(const Endpoint& ep, bool nonblocking, int timeout_ms) {
  int fd = ::socket(ep.addr.ss_family,
                    SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return Status::Io(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!nonblocking) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0 &&
      !(nonblocking && errno == EINPROGRESS)) {
    Status s = Status::Io("connect to " + ep.text + ": " + std::strerror(errno));
    ::close(fd);
    return s;
  }
  return fd;
}

Status connect_error(int fd) {
  int so_error = 0;
  socklen_t len = sizeof so_error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
  return so_error == 0 ? Status::Ok() : Status::Io(std::strerror(so_error));
}

Status send_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Io(std::string("send: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status receive_some(int fd, std::string& into) {
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Status::Io("connection closed by peer");
    if (n < 0) return Status::Io(std::string("recv: ") + std::strerror(errno));
    into.append(buf, static_cast<size_t>(n));
    return Status::Ok();
  }
}

}  // namespace stockd::bench
