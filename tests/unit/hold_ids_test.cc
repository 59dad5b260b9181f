// Hold ids: a keyed permutation of sequence numbers (stockd/hold_ids.h).
#include "stockd/hold_ids.h"

#include <gtest/gtest.h>

#include <set>

namespace stockd {
namespace {

TEST(HoldIds, SipHashMatchesTheReferenceVector) {
  // Key 00 01 .. 0f and the 8-byte message 00 01 .. 07 of the SipHash-2-4 reference vectors.
  EXPECT_EQ(siphash24(0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL, 0x0706050403020100ULL),
            0x93f5f5799a932462ULL);
}

TEST(HoldIds, TheZeroKeyIsTheIdentity) {
  const HoldIdKey zero;
  for (uint64_t s : {uint64_t{1}, uint64_t{2}, uint64_t{1000}, kHoldIdMax}) {
    EXPECT_EQ(hold_id_of(s, zero), s);
    EXPECT_EQ(hold_seq_of(s, zero), s);
  }
}

TEST(HoldIds, AKeyedPermutationOfOneTo2Pow62) {
  const HoldIdKey key{0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL};
  std::set<uint64_t> ids;
  uint64_t next_to_previous = 0;
  uint64_t previous = 0;
  for (uint64_t seq = 1; seq <= 200000; ++seq) {
    const uint64_t id = hold_id_of(seq, key);
    ASSERT_GE(id, 1u);
    ASSERT_LE(id, kHoldIdMax);
    ASSERT_EQ(hold_seq_of(id, key), seq) << "id " << id;
    ASSERT_TRUE(ids.insert(id).second) << "id " << id << " given twice";
    if (id == previous + 1) ++next_to_previous;
    previous = id;
  }
  // Consecutive holds do not get neighbouring ids: an id says nothing about the next one.
  EXPECT_EQ(next_to_previous, 0u);
  // The ends of the range map inside it; ids outside it belong to no sequence number.
  EXPECT_EQ(hold_seq_of(hold_id_of(kHoldIdMax, key), key), kHoldIdMax);
  EXPECT_EQ(hold_seq_of(0, key), 0u);
  EXPECT_EQ(hold_seq_of(kHoldIdMax + 1, key), 0u);
  EXPECT_EQ(hold_seq_of(~uint64_t{0}, key), 0u);
  // Another key, other ids.
  const HoldIdKey other{key.k0 + 1, key.k1};
  size_t same = 0;
  for (uint64_t seq = 1; seq <= 1000; ++seq) same += hold_id_of(seq, key) == hold_id_of(seq, other);
  EXPECT_EQ(same, 0u);
}

}  // namespace
}  // namespace stockd
