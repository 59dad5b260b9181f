// Failed HELLOs, counted per source address, so a token cannot be guessed at network speed.
//
// Each address (an IPv4 address; an IPv6 /64, since one host owns a whole /64) has an
// allowance of `burst` failures that refills at one per `refill_ms`, like a token bucket.
// While it has none left, its HELLOs are not checked at all: the caller answers BUSY, so a
// guesser learns nothing and gets one try per refill however many connections it opens. The
// table is bounded: past `entries_max` addresses, entries whose allowance has refilled are
// dropped (a full allowance is the same as no entry), else the oldest.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "stockd/keyed_hash.h"

namespace stockd {

struct PeerAddr {
  std::string key;   // 4 bytes (IPv4) or 8 (an IPv6 /64); empty if unknown (not counted)
  std::string text;  // for logs: "203.0.113.9" or "2001:db8:1:2::/64"
};

// The address a peer connected from, as the guard counts it (IPv4-mapped IPv6 counts as IPv4).
PeerAddr peer_addr(const sockaddr_storage& sa);

class HelloGuard {
 public:
  HelloGuard(uint32_t burst, int64_t refill_ms, size_t entries_max = 100000)
      : burst_(burst), refill_ms_(refill_ms), entries_max_(entries_max) {}

  // Whether HELLOs from `peer` are refused unchecked; if so, `retry_ms` says for how long.
  bool locked(const PeerAddr& peer, int64_t now, int64_t& retry_ms);

  // Records one failed HELLO; `spend` false for one refused unchecked while locked (counted for
  // the log only, so the allowance still refills). Returns how many failures to report in a
  // log line now (0 = stay quiet): the first of an address, then at most one line per 10 s with
  // the count since the last line.
  uint64_t failed(const PeerAddr& peer, int64_t now, bool spend = true);

  size_t size() const { return table_.size(); }
  static constexpr int64_t kLogEveryMs = 10000;

 private:
  struct Entry {
    double allowance = 0;    // failures left, refilled continuously
    int64_t updated_ms = 0;  // when `allowance` was computed
    int64_t logged_ms = 0;   // last log line (0 = never)
    uint64_t unlogged = 0;   // failures since that line
  };
  void refill(Entry& e, int64_t now) const;
  void make_room(int64_t now);

  uint32_t burst_;
  int64_t refill_ms_;
  size_t entries_max_;
  int64_t swept_ms_ = 0;
  struct AddressHash {  // keyed: a peer picks its addresses (keyed_hash.h)
    size_t operator()(const std::string& s) const { return keyed_hash(s); }
  };
  std::unordered_map<std::string, Entry, AddressHash> table_;
};

}  // namespace stockd
