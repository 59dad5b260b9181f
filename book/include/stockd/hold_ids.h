// Hold ids as handed out: a keyed permutation of the sequence numbers 1, 2, 3, ... so that an id
// tells nothing about the others (an outsider cannot walk them), while the book still counts in
// sequence and never gives an id twice.
//
// The permutation is a 4-round Feistel network over 62 bits whose round function is SipHash-2-4
// under a 128-bit key kept in the meta row: ids are 1..2^62, so they fit a signed 64-bit SQL
// column. The all-zero key is the identity (id == sequence number): data dirs made before keys
// existed, unit tests, and --sequential-hold-ids.
#pragma once

#include <cstdint>

namespace stockd {

struct HoldIdKey {
  uint64_t k0 = 0, k1 = 0;
  bool sequential() const { return k0 == 0 && k1 == 0; }
  bool operator==(const HoldIdKey&) const = default;
};

inline constexpr uint64_t kHoldIdMax = uint64_t{1} << 62;

// The id of sequence number `seq` (1..2^62): in 1..2^62.
uint64_t hold_id_of(uint64_t seq, const HoldIdKey& key);
// The sequence number of `id`; 0 if `id` is not in 1..2^62 (no hold ever has it).
uint64_t hold_seq_of(uint64_t id, const HoldIdKey& key);

// SipHash-2-4 of one 64-bit word (exposed for its test vector).
uint64_t siphash24(uint64_t k0, uint64_t k1, uint64_t word);

}  // namespace stockd
