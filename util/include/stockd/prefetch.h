// prefetch(p): asks the CPU to bring the cache line at `p` into its caches, so that a read a
// little later does not wait for memory. `p` may be any address: a prefetch never faults.
//
// Not a bare __builtin_prefetch: GCC 12 counts that builtin as free of side effects, so a small
// function that only prefetches is found "const" and every call of it is deleted (GCC's
// ipa-pure-const), which silently made the book's prefetch helpers no-ops. The empty asm after it
// is a side effect the compiler keeps, and with it the call and the prefetch instruction
// (prefetch_test checks the instruction is in the binary).
#pragma once

namespace stockd {

inline void prefetch(const void* p) {
  __builtin_prefetch(p, 0, 3);
  asm volatile("" : : "r"(p));
}

}  // namespace stockd
