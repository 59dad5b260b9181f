#include "stockd/endpoint.h"

#include <netdb.h>

#include <charconv>
#include <cstring>

namespace stockd {

Status parse_host_port(std::string_view text, std::string& host, uint16_t& port,
                       bool allow_port_zero) {
  const std::string quoted = "'" + std::string(text) + "'";
  std::string_view h, p;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::Invalid("expected [IPV6]:PORT, got " + quoted);
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return Status::Invalid("expected HOST:PORT, got " + quoted);
    if (text.find(':') != colon)
      return Status::Invalid("an IPv6 address needs brackets: [HOST]:PORT, got " + quoted);
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (h.empty()) return Status::Invalid("empty host in " + quoted);
  unsigned v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size()) {
    return Status::Invalid("bad port in " + quoted);
  }
  if (v > 65535 || (v == 0 && !allow_port_zero))
    return Status::Invalid("port out of range in " + quoted);
  host = std::string(h);
  port = static_cast<uint16_t>(v);
  return Status::Ok();
}

Status resolve_tcp(const std::string& host, uint16_t port, bool passive, sockaddr_storage& out,
                   socklen_t& len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
    return Status::Io("cannot resolve '" + host + "': " + ::gai_strerror(rc));
  }
  const addrinfo* pick = list;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  out = {};
  std::memcpy(&out, pick->ai_addr, pick->ai_addrlen);
  len = pick->ai_addrlen;
  ::freeaddrinfo(list);
  return Status::Ok();
}

}  // namespace stockd
