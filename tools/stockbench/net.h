// Socket helpers for stockbench: name resolution and TCP connect (blocking or not).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace stockd::bench {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "host:port", for messages
};

// Resolves host (name or address) and port. "" or why not.
std::string resolve(const std::string& host, uint16_t port, Endpoint& out);

// A TCP socket with TCP_NODELAY, connecting to `ep`. Non-blocking: the connect may still be in
// progress (wait for writability, then check connect_error). Blocking: connected, with
// `timeout_ms` on sends and receives. Returns the fd, or -1 and `err`.
int open_tcp(const Endpoint& ep, bool nonblocking, int timeout_ms, std::string& err);
// The outcome of a non-blocking connect once the socket is writable: "" or why it failed.
std::string connect_error(int fd);

// Blocking helpers: send everything / receive some bytes (appended). "" or why not.
std::string send_all(int fd, const std::string& bytes);
std::string receive_some(int fd, std::string& into);

}  // namespace stockd::bench
