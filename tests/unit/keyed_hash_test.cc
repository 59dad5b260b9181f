// SipHash as keyed_hash.h makes it: the reference vectors of the paper (SipHash-2-4, key
// 00 01 .. 0f), and the process key the indexes hash under.
#include "stockd/keyed_hash.h"

#include <gtest/gtest.h>

#include <string>

namespace stockd {
namespace {

constexpr SipKey kPaperKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

std::string bytes_upto(int n) {  // 00 01 .. n-1
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(i));
  return s;
}

TEST(KeyedHash, SipHash24MatchesThePapersVectors) {
  EXPECT_EQ((siphash<2, 4>(kPaperKey, "")), 0x726fdb47dd0e0e31ULL);
  EXPECT_EQ((siphash<2, 4>(kPaperKey, bytes_upto(15))), 0xa129ca6149be45e5ULL);
}

// The tail's length byte and every byte count: strings that differ only in a trailing zero,
// or in length past a word, hash apart.
TEST(KeyedHash, EveryByteAndTheLengthCount) {
  const std::string a = bytes_upto(15);
  EXPECT_NE((siphash<1, 3>(kPaperKey, a)), (siphash<1, 3>(kPaperKey, a + '\0')));
  EXPECT_NE((siphash<1, 3>(kPaperKey, bytes_upto(8))), (siphash<1, 3>(kPaperKey, bytes_upto(9))));
  std::string b = a;
  b[3] ^= 1;
  EXPECT_NE((siphash<1, 3>(kPaperKey, a)), (siphash<1, 3>(kPaperKey, b)));
}

// The process key is random (not the zero key), fixed for the process, and the one keyed_hash
// uses: a peer cannot know the hashes its keys get.
TEST(KeyedHash, TheProcessKeyIsRandomAndFixed) {
  const SipKey& k = process_hash_key();
  EXPECT_FALSE(k.k0 == 0 && k.k1 == 0);
  EXPECT_EQ(&k, &process_hash_key());
  EXPECT_EQ(keyed_hash("order-17"), (siphash<1, 3>(k, "order-17")));
  EXPECT_NE(keyed_hash("order-17"), (siphash<1, 3>(SipKey{}, "order-17")));
  const SipKey other = draw_hash_key();
  EXPECT_FALSE(other.k0 == k.k0 && other.k1 == k.k1);
}

}  // namespace
}  // namespace stockd
