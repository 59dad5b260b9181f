// Ring<T>: a first-in first-out queue in one buffer that keeps its capacity. std::deque frees a
// block as its front empties and allocates one as its back fills, so a queue that only ever
// holds a few dozen entries still calls malloc every few dozen pushes; a ring allocates only
// when it grows past its capacity (doubling, a power of two) or when asked to give it back.
#pragma once

#include <cstddef>
#include <iterator>
#include <type_traits>
#include <utility>
#include <vector>

namespace stockd {

template <class T>
class Ring {
  template <bool Const>
  class Iter {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = std::conditional_t<Const, const T*, T*>;
    using reference = std::conditional_t<Const, const T&, T&>;
    using Owner = std::conditional_t<Const, const Ring, Ring>;

    Iter() = default;
    Iter(Owner* ring, size_t i) : ring_(ring), i_(i) {}
    reference operator*() const { return (*ring_)[i_]; }
    pointer operator->() const { return &(*ring_)[i_]; }
    reference operator[](difference_type n) const { return (*ring_)[i_ + n]; }
    Iter& operator++() { return ++i_, *this; }
    Iter operator++(int) { return Iter(ring_, i_++); }
    Iter& operator--() { return --i_, *this; }
    Iter operator--(int) { return Iter(ring_, i_--); }
    Iter& operator+=(difference_type n) { return i_ += n, *this; }
    Iter& operator-=(difference_type n) { return i_ -= n, *this; }
    friend Iter operator+(Iter a, difference_type n) { return a += n; }
    friend Iter operator+(difference_type n, Iter a) { return a += n; }
    friend Iter operator-(Iter a, difference_type n) { return a -= n; }
    friend difference_type operator-(const Iter& a, const Iter& b) {
      return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const Iter& a, const Iter& b) { return a.i_ == b.i_; }
    friend auto operator<=>(const Iter& a, const Iter& b) { return a.i_ <=> b.i_; }
    size_t index() const { return i_; }

   private:
    Owner* ring_ = nullptr;
    size_t i_ = 0;
  };

 public:
  using value_type = T;
  using iterator = Iter<false>;
  using const_iterator = Iter<true>;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return buf_.size(); }

  T& operator[](size_t i) { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  const T& operator[](size_t i) const { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  T& front() { return (*this)[0]; }
  const T& front() const { return (*this)[0]; }
  T& back() { return (*this)[size_ - 1]; }
  const T& back() const { return (*this)[size_ - 1]; }

  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size_}; }

  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (size_ == buf_.size()) grow(size_ + 1);
    T& slot = (*this)[size_];
    slot = T{std::forward<Args>(args)...};
    ++size_;
    return slot;
  }
  void push_back(T v) { emplace_back(std::move(v)); }
  // The slot after the back, now part of the ring, as the entry that last used it left it
  // (moved from, or whatever it held): a caller can reuse what it owns, e.g. a string's buffer.
  T& push_slot() {
    if (size_ == buf_.size()) grow(size_ + 1);
    return (*this)[size_++];
  }

  void pop_front(size_t n = 1) {  // n <= size()
    head_ = (head_ + n) & (buf_.empty() ? 0 : buf_.size() - 1);
    size_ -= n;
  }
  // Removes one entry, moving those after it one place forward (O(entries after it)).
  iterator erase(iterator pos) {
    for (size_t i = pos.index(); i + 1 < size_; ++i) (*this)[i] = std::move((*this)[i + 1]);
    --size_;
    return {this, pos.index()};
  }
  void clear() { head_ = size_ = 0; }  // the entries stay in their slots (see push_slot)
  void swap(Ring& other) noexcept {
    buf_.swap(other.buf_);
    std::swap(head_, other.head_);
    std::swap(size_, other.size_);
  }
  // Room for n entries without allocating again.
  void reserve(size_t n) {
    if (n > buf_.size()) grow(n);
  }
  // Gives the buffer back when the ring is empty and holds room for more than `keep` entries
  // (what a burst left behind need not stay with an idle owner).
  void release_if_idle(size_t keep) {
    if (size_ == 0 && buf_.size() > keep) {
      std::vector<T>().swap(buf_);
      head_ = 0;
    }
  }

 private:
  void grow(size_t at_least) {
    size_t cap = buf_.empty() ? 8 : buf_.size() * 2;
    while (cap < at_least) cap *= 2;
    std::vector<T> next(cap);
    for (size_t i = 0; i < size_; ++i) next[i] = std::move((*this)[i]);
    buf_.swap(next);
    head_ = 0;
  }

  std::vector<T> buf_;  // its size is the capacity, a power of two (or 0)
  size_t head_ = 0;     // index in buf_ of the front entry
  size_t size_ = 0;
};

}  // namespace stockd
