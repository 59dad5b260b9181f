// Socket helpers for stockbench: name resolution and TCP connect (blocking or not). Every failure
// is Io, its message naming the call that failed.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "stockd/status.h"

namespace stockd::bench {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "host:port", for messages
};

// Resolves host (name or address) and port.
Result<Endpoint> resolve(const std::string& host, uint16_t port);

// A TCP socket with TCP_NODELAY, connecting to `ep`. Non-blocking: the connect may still be in
// progress (wait for writability, then check connect_error). Blocking: connected, with
// `timeout_ms` on sends and receives. Returns the fd (the caller closes it).
Result<int> open_tcp(const Endpoint& ep, bool nonblocking, int timeout_ms);
// The outcome of a non-blocking connect once the socket is writable: ok, or why it failed (the
// bare strerror text).
Status connect_error(int fd);

// Blocking helpers: send everything / receive some bytes (appended).
Status send_all(int fd, const std::string& bytes);
Status receive_some(int fd, std::string& into);

}  // namespace stockd::bench
