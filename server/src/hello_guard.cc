#include "hello_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace stockd {

PeerAddr peer_addr(const sockaddr_storage& sa) {
  PeerAddr p;
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(sa).sin_addr;
    p.key.assign(reinterpret_cast<const char*>(&a), 4);
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    p.text = buf;
  } else if (sa.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(sa).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      p.key.assign(reinterpret_cast<const char*>(a.s6_addr) + 12, 4);
      inet_ntop(AF_INET, a.s6_addr + 12, buf, sizeof buf);
      p.text = buf;
    } else {
      p.key.assign(reinterpret_cast<const char*>(a.s6_addr), 8);
      in6_addr prefix{};
      std::memcpy(prefix.s6_addr, a.s6_addr, 8);
      inet_ntop(AF_INET6, &prefix, buf, sizeof buf);
      p.text = std::string(buf) + "/64";
    }
  }
  return p;
}

void HelloGuard::refill(Entry& e, int64_t now) const {
  if (now > e.updated_ms) {
    e.allowance = std::min<double>(burst_, e.allowance + static_cast<double>(now - e.updated_ms) /
                                                             static_cast<double>(refill_ms_));
    e.updated_ms = now;
  }
}

bool HelloGuard::locked(const PeerAddr& peer, int64_t now, int64_t& retry_ms) {
  retry_ms = 0;
  auto it = table_.find(peer.key);
  if (peer.key.empty() || it == table_.end()) return false;
  refill(it->second, now);
  if (it->second.allowance >= 1) return false;
  retry_ms = static_cast<int64_t>((1 - it->second.allowance) * static_cast<double>(refill_ms_)) + 1;
  return true;
}

uint64_t HelloGuard::failed(const PeerAddr& peer, int64_t now, bool spend) {
  if (peer.key.empty()) return 1;  // not counted, always logged (it cannot be a flood of these)
  auto it = table_.find(peer.key);
  if (it == table_.end()) {
    if (table_.size() >= entries_max_) make_room(now);
    it = table_.emplace(peer.key, Entry{static_cast<double>(burst_), now, 0, 0}).first;
  }
  Entry& e = it->second;
  refill(e, now);
  if (spend) e.allowance = std::max(0.0, e.allowance - 1);
  ++e.unlogged;
  if (e.logged_ms != 0 && now - e.logged_ms < kLogEveryMs) return 0;
  e.logged_ms = now;
  return std::exchange(e.unlogged, 0);
}

void HelloGuard::make_room(int64_t now) {
  // A full sweep at most once a second, so a flood of new addresses cannot make every failure
  // walk the table; between sweeps one arbitrary entry goes.
  if (now - swept_ms_ >= 1000) {
    swept_ms_ = now;
    for (auto it = table_.begin(); it != table_.end();) {
      refill(it->second, now);
      it = it->second.allowance >= burst_ ? table_.erase(it) : std::next(it);
    }
  }
  if (table_.size() >= entries_max_) table_.erase(table_.begin());
}

}  // namespace stockd
