// Private to the stockd_book library: the holds of the book, by id.
//
// A sale makes a hold per request and, past --finished-holds-max, forgets the oldest one per
// request: a node-based std::unordered_map paid a bucket walk (a division and a cache miss per
// node) on each insert, find and erase, and a malloc and a free per hold. Here the index is flat
// (open addressing, one 16-byte slot per lookup, as KeyIndex), and holds live in a pool: a
// forgotten hold's storage is reused by the next one, its strings and lists keeping their
// capacity, so a steady sale allocates nothing for its holds. A Hold never moves while it is in
// the table (the deadline heap and the key index point at it).
#pragma once

#include <bit>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "key_index.h"
#include "stockd/prefetch.h"

namespace stockd::book_detail {

struct Hold;

template <class H>
class HoldTableOf {
 public:
  void reserve(size_t n) {
    if (n * 4 > slots_.size() * 3) rebuild(std::bit_ceil(n * 4 / 3 + 1));
  }

  H* find(uint64_t id) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = home(id); slots_[i].owner != nullptr; i = (i + 1) & mask()) {
      if (slots_[i].id == id) return slots_[i].owner;
    }
    return nullptr;
  }
  bool contains(uint64_t id) const { return find(id) != nullptr; }
  // Asks the CPU to fetch the slot `id` hashes to (a replay does it one decision ahead, so the
  // cache miss overlaps the work before it).
  void prefetch(uint64_t id) const {
    if (!slots_.empty()) stockd::prefetch(&slots_[home(id)]);
  }

  // A hold with every field at its default (strings and lists emptied, their capacity kept),
  // indexed under `id`; nullptr if `id` is there already.
  H* emplace(uint64_t id) {
    reserve(size_ + 1);
    size_t i = home(id);
    for (; slots_[i].owner != nullptr; i = (i + 1) & mask()) {
      if (slots_[i].id == id) return nullptr;
    }
    H* h = nullptr;
    if (free_.empty()) {
      h = &pool_.emplace_back();
    } else {
      h = free_.back();
      free_.pop_back();
      h->reset();
    }
    h->id = id;
    slots_[i] = {id, h};
    ++size_;
    return h;
  }

  // Unindexes `h` and keeps its storage for the next emplace() (its id becomes 0: no hold has
  // that id, so walks skip it).
  void erase(H* h) {
    size_t i = home(h->id);
    while (slots_[i].owner != h) i = (i + 1) & mask();
    erase_slot(slots_, i, [this](const Slot& s) { return home(s.id); });
    --size_;
    h->id = 0;
    free_.push_back(h);
  }

  // nullptr if the index and the pool agree: every slot names a hold of the pool under its own
  // id, each hold of the pool is in one slot; else what is wrong. One pass over each.
  const char* check() const {
    size_t indexed = 0, pooled = 0;
    constexpr size_t kAhead = 16;  // each slot's hold is at random: fetched this many slots ahead
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (i + kAhead < slots_.size() && slots_[i + kAhead].owner != nullptr) {
        stockd::prefetch(slots_[i + kAhead].owner);
      }
      const Slot& s = slots_[i];
      if (s.owner == nullptr) continue;
      ++indexed;
      if (s.owner->id != s.id || s.id == 0) return "a hold is indexed under another id";
    }
    for (const H& h : pool_) pooled += h.id != 0 ? 1 : 0;
    if (indexed != size_ || pooled != size_) return "the hold index and its pool differ in size";
    return nullptr;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Every hold, in no particular order (the pool's: memory order, so that a walk of a million
  // holds reads them in sequence): (id, hold).
  class const_iterator {
   public:
    using Pool = std::deque<H>;
    const_iterator(typename Pool::const_iterator at, typename Pool::const_iterator end)
        : at_(at), end_(end) {
      skip();
    }
    std::pair<uint64_t, const H&> operator*() const { return {at_->id, *at_}; }
    const_iterator& operator++() {
      ++at_;
      skip();
      return *this;
    }
    bool operator!=(const const_iterator& o) const { return at_ != o.at_; }

   private:
    void skip() {
      while (at_ != end_ && at_->id == 0) ++at_;
    }
    typename Pool::const_iterator at_, end_;
  };
  const_iterator begin() const { return {pool_.begin(), pool_.end()}; }
  const_iterator end() const { return {pool_.end(), pool_.end()}; }

 private:
  struct Slot {
    uint64_t id = 0;
    H* owner = nullptr;  // nullptr: empty
  };

  // Sequential ids (no key) would fill runs of neighbouring slots; a mix spreads them.
  size_t home(uint64_t id) const {
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return id & mask();
  }
  size_t mask() const { return slots_.size() - 1; }

  void rebuild(size_t capacity) {
    grow_slots(slots_, capacity, [this](const Slot& s) { return home(s.id); });
  }

  using Slots = std::vector<Slot, HugePageAllocator<Slot>>;
  Slots slots_;  // size 0 or a power of two
  size_t size_ = 0;
  std::deque<H> pool_;    // every hold ever made; addresses never change
  std::vector<H*> free_;  // erased holds, for reuse
};

}  // namespace stockd::book_detail
