// Private to the stockd_book library: a string-keyed index, key -> the object that owns the key
// (idempotency keys -> their Hold, SKU ids -> their Sku).
//
// Every keyed request looks its key up, and almost always misses (a new key), in an index of
// millions; every request looks up its SKUs, of which there may be a million. A node-based
// std::unordered_map pays two or three cache misses for that (bucket, the node before, the nodes);
// here a lookup reads one 16-byte slot (the stored hash tells a miss without touching the owner)
// and, on a hash match, the owner's key. Open addressing with linear probing and backward-shift
// deletion (no tombstones), at most 3/4 full; the capacity doubles when needed (one sequential pass
// over the slots).
#pragma once

#include <sys/mman.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <string_view>
#include <vector>

#include "stockd/keyed_hash.h"
#include "stockd/prefetch.h"

namespace stockd::book_detail {

// Allocates big arrays on 2 MiB boundaries and asks for transparent huge pages: a lookup is a
// random read in tens of MiB, and with 4 KiB pages most of them also miss the TLB (a page walk,
// nested under virtualization). A hint only: without THP the pages are ordinary.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  static constexpr size_t kHuge = size_t{2} << 20;
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHuge) return static_cast<T*>(::operator new(bytes));
    void* p = std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
    if (p == nullptr) throw std::bad_alloc();
    (void)::madvise(p, bytes, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) < kHuge) {
      ::operator delete(p);
    } else {
      std::free(p);
    }
  }
  bool operator==(const HugePageAllocator&) const { return true; }
};

// Empties slot `i` of an open-addressing table with linear probing (`slots.size()` a power of
// two, a slot free when its `owner` is null): later entries of the run move back into the hole
// when their home slot allows, so that every key stays reachable from its home without
// tombstones. `home(slot)` is a slot's home index.
template <class Slots, class Home>
void erase_slot(Slots& slots, size_t i, Home&& home) {
  const size_t mask = slots.size() - 1;
  for (size_t j = (i + 1) & mask; slots[j].owner != nullptr; j = (j + 1) & mask) {
    const size_t h = home(slots[j]);
    const bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
    if (movable) {
      slots[i] = slots[j];
      i = j;
    }
  }
  slots[i] = {};
}

// Moves every slot of `slots` into a table of `capacity` slots (a power of two), each at the first
// free slot from its home: one sequential pass.
template <class Slots, class Home>
void grow_slots(Slots& slots, size_t capacity, Home&& home) {
  Slots old(capacity);
  old.swap(slots);
  const size_t mask = capacity - 1;
  for (const auto& s : old) {
    if (s.owner == nullptr) continue;
    size_t i = home(s);
    while (slots[i].owner != nullptr) i = (i + 1) & mask;
    slots[i] = s;
  }
}

// T's key is index_key(const T&) -> std::string_view, found by argument-dependent lookup; it
// must not change while T is indexed.
template <class T>
class KeyIndex {
 public:
  // Room for n keys without growing.
  void reserve(size_t n) {
    if (n * 4 > slots_.size() * 3) rebuild(std::bit_ceil(n * 4 / 3 + 1));
  }

  // The hash a key is indexed under (kept by callers that erase by owner, below): keyed, so that
  // no peer can make keys of one hash and turn lookups into walks of them (keyed_hash.h).
  static uint64_t hash(std::string_view key) { return keyed_hash(key); }

  // Asks the CPU to fetch the slot `key` hashes to (see HoldTableOf::prefetch).
  void prefetch(std::string_view key) const { prefetch_hash(hash(key)); }
  void prefetch_hash(uint64_t h) const {
    if (!slots_.empty()) stockd::prefetch(&slots_[h & mask()]);
  }

  T* find(std::string_view key) const { return find(key, hash(key)); }
  // The same, with the key's hash(), already made.
  T* find(std::string_view key, uint64_t h) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = h & mask(); slots_[i].owner != nullptr; i = (i + 1) & mask()) {
      if (slots_[i].hash == h && index_key(*slots_[i].owner) == key) {
        return slots_[i].owner;
      }
    }
    return nullptr;
  }

  // Indexes `owner` under index_key(*owner); false (and nothing changes) if the key is there.
  bool insert(T* owner) { return insert(owner, hash(index_key(*owner))); }
  // The same, with the key's hash(), already made.
  bool insert(T* owner, uint64_t h) {
    reserve(size_ + 1);
    const std::string_view key = index_key(*owner);
    size_t i = h & mask();
    for (; slots_[i].owner != nullptr; i = (i + 1) & mask()) {
      if (slots_[i].hash == h && index_key(*slots_[i].owner) == key) return false;
    }
    slots_[i] = {h, owner};
    ++size_;
    return true;
  }

  // Removes `key`; false if it was not there.
  bool erase(std::string_view key) {
    if (slots_.empty()) return false;
    const uint64_t h = hash(key);
    size_t i = h & mask();
    for (;; i = (i + 1) & mask()) {
      if (slots_[i].owner == nullptr) return false;
      if (slots_[i].hash == h && index_key(*slots_[i].owner) == key) break;
    }
    erase_slot(slots_, i, [this](const Slot& s) { return s.hash & mask(); });
    --size_;
    return true;
  }

  // The owner of `key`'s home slot, if that slot holds the key's hash (most keys live in their
  // home slot), else nullptr: for a prefetch after prefetch(key) brought the slot, no key is read.
  const T* home_owner(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    const uint64_t h = hash(key);
    const Slot& s = slots_[h & mask()];
    return s.hash == h ? s.owner : nullptr;
  }

  // Removes `owner`, indexed under hash `h`, without reading its key (a forgotten hold's key
  // is cold memory); false if it is not there.
  bool erase_owner(const T* owner, uint64_t h) {
    if (slots_.empty()) return false;
    size_t i = h & mask();
    for (;; i = (i + 1) & mask()) {
      if (slots_[i].owner == nullptr) return false;
      if (slots_[i].owner == owner) break;
    }
    erase_slot(slots_, i, [this](const Slot& s) { return s.hash & mask(); });
    --size_;
    return true;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return slots_.size(); }

 private:
  struct Slot {
    uint64_t hash = 0;
    T* owner = nullptr;  // nullptr: empty
  };

  size_t mask() const { return slots_.size() - 1; }

  void rebuild(size_t capacity) {
    grow_slots(slots_, capacity, [this](const Slot& s) { return s.hash & mask(); });
  }

  using Slots = std::vector<Slot, HugePageAllocator<Slot>>;
  Slots slots_;  // size 0 or a power of two
  size_t size_ = 0;
};

}  // namespace stockd::book_detail
