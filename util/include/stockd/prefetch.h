// prefetch(p): asks the CPU to bring the cache line at `p` into its caches, so that a read a
// little later does not wait for memory. `p` may be any address: a prefetch never faults.
//
// Not a bare __builtin_prefetch: GCC 12 counts that builtin as free of side effects, so a small
// function that only prefetches is found "const" and a call of it that was not inlined first is
// deleted (GCC's ipa-pure-const): recovery's fetch of the hold table's slot was silently gone.
// The empty asm after it is a side effect the compiler keeps, and with it the call and the
// prefetch instruction (the ctest prefetch_emitted checks the instructions are in the binary).
#pragma once

namespace stockd {

inline void prefetch(const void* p) {
  __builtin_prefetch(p, 0, 3);
  asm volatile("" : : "r"(p));
}

}  // namespace stockd
