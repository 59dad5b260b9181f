// HOST:PORT, the way every command line here takes an address (stockd --listen and
// --metrics-listen, the clients' --server, stockbench's --target), and its resolution.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "stockd/status.h"

namespace stockd {

// "127.0.0.1:7070", "localhost:7070", "[::1]:7070" (an IPv6 address needs its brackets). Port
// 1..65535, or 0 too with `allow_port_zero` (a listening address: any free port). ok or why not
// (Invalid).
Status parse_host_port(std::string_view text, std::string& host, uint16_t& port,
                       bool allow_port_zero = false);

// One socket address for host:port: an IP literal as it is, a name by getaddrinfo (its IPv4
// address when it has one, as clients dialling "localhost" mostly try that first). `passive`: an
// address to bind. ok or why not (Io).
Status resolve_tcp(const std::string& host, uint16_t port, bool passive, sockaddr_storage& out,
                   socklen_t& len);

}  // namespace stockd
