// keyed_hash(s): SipHash-1-3 of `s` under a random 128-bit key drawn once per process.
//
// For the in-memory indexes keyed by what peers send (idempotency keys, SKU ids, user ids):
// std::hash is MurmurHash with a fixed, public seed, so a peer can compute any number of keys
// with one and the same 64-bit hash and turn a lookup into a walk of all of them (hash flooding,
// as against Redis's dicts and Python's dicts; both moved to SipHash). Under a secret key the
// hashes of chosen strings cannot be predicted. Never stored: a restart draws a new key, and
// every index is rebuilt from the strings.
//
// siphash<C, D>() is the reference algorithm (Aumasson and Bernstein, 2012) with C compression
// and D finalization rounds; SipHash-2-4 is checked against the paper's vectors (util_test).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace stockd {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

namespace detail {
inline void sip_round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1;
  v1 = std::rotl(v1, 13);
  v1 ^= v0;
  v0 = std::rotl(v0, 32);
  v2 += v3;
  v3 = std::rotl(v3, 16);
  v3 ^= v2;
  v0 += v3;
  v3 = std::rotl(v3, 21);
  v3 ^= v0;
  v2 += v1;
  v1 = std::rotl(v1, 17);
  v1 ^= v2;
  v2 = std::rotl(v2, 32);
}
}  // namespace detail

template <int C, int D>
uint64_t siphash(const SipKey& key, std::string_view s) {
  uint64_t v0 = key.k0 ^ 0x736f6d6570736575ULL;
  uint64_t v1 = key.k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = key.k0 ^ 0x6c7967656e657261ULL;
  uint64_t v3 = key.k1 ^ 0x7465646279746573ULL;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const auto compress = [&](uint64_t m) {
    v3 ^= m;
    for (int i = 0; i < C; ++i) detail::sip_round(v0, v1, v2, v3);
    v0 ^= m;
  };
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t m;
    std::memcpy(&m, p + i, 8);
    if constexpr (std::endian::native == std::endian::big) m = __builtin_bswap64(m);
    compress(m);
  }
  uint64_t last = static_cast<uint64_t>(n & 0xff) << 56;
  for (size_t j = 0; i + j < n; ++j) last |= static_cast<uint64_t>(p[i + j]) << (8 * j);
  compress(last);
  v2 ^= 0xff;
  for (int r = 0; r < D; ++r) detail::sip_round(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

// A key from the kernel's random source (getrandom); aborts if there is none to be had.
SipKey draw_hash_key();

// The process's key, drawn on first use.
inline const SipKey& process_hash_key() {
  static const SipKey key = draw_hash_key();
  return key;
}

inline uint64_t keyed_hash(std::string_view s) { return siphash<1, 3>(process_hash_key(), s); }

}  // namespace stockd
