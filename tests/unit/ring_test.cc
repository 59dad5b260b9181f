// Ring<T> against std::deque under random pushes, pops and erases (wrapping and growing), and
// the reason it exists: a queue whose length stays bounded stops allocating.
#include "stockd/ring.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <random>

namespace stockd {
namespace {

template <class A, class B>
void expect_same(const A& ring, const B& model) {
  ASSERT_EQ(ring.size(), model.size());
  ASSERT_TRUE(std::equal(ring.begin(), ring.end(), model.begin(), model.end()));
  if (!model.empty()) {
    EXPECT_EQ(ring.front(), model.front());
    EXPECT_EQ(ring.back(), model.back());
  }
}

TEST(Ring, BehavesAsADequeUnderRandomOperations) {
  std::mt19937_64 rng(7);
  Ring<uint64_t> ring;
  std::deque<uint64_t> model;
  uint64_t next = 1;
  for (int step = 0; step < 200'000; ++step) {
    const auto op = rng() % 10;
    if (op < 5 || model.empty()) {
      ring.push_back(next);
      model.push_back(next++);
    } else if (op < 8) {
      ring.pop_front();
      model.pop_front();
    } else if (op == 8) {
      const size_t n = rng() % (model.size() + 1);
      ring.pop_front(n);
      model.erase(model.begin(), model.begin() + static_cast<long>(n));
    } else {
      const size_t at = rng() % model.size();
      auto it = ring.erase(ring.begin() + static_cast<long>(at));
      auto mt = model.erase(model.begin() + static_cast<long>(at));
      EXPECT_EQ(it == ring.end(), mt == model.end());
      if (mt != model.end()) {
        EXPECT_EQ(*it, *mt);
      }
    }
    if (step % 997 == 0) expect_same(ring, model);
  }
  expect_same(ring, model);
  ring.clear();
  EXPECT_TRUE(ring.empty());
}

TEST(Ring, KeepsOrderWhenItGrowsWhileWrapped) {
  Ring<int> ring;
  for (int i = 0; i < 6; ++i) ring.push_back(i);
  ring.pop_front(5);                               // the front is now near the end of the buffer
  for (int i = 6; i < 40; ++i) ring.push_back(i);  // wraps, then grows twice
  std::vector<int> want;
  for (int i = 5; i < 40; ++i) want.push_back(i);
  EXPECT_TRUE(std::equal(ring.begin(), ring.end(), want.begin(), want.end()));
  EXPECT_TRUE(std::is_sorted(ring.begin(), ring.end()));
  auto it = std::find(ring.begin(), ring.end(), 17);
  ASSERT_NE(it, ring.end());
  *it = 117;
  EXPECT_EQ(ring[12], 117);
}

TEST(Ring, ABoundedQueueStopsAllocatingAndGivesBackABurst) {
  Ring<uint64_t> ring;
  ring.reserve(20);
  EXPECT_EQ(ring.capacity(), 32u);
  for (uint64_t i = 0; i < 1'000'000; ++i) {  // 16 in flight, as a pipeline of 16
    ring.push_back(i);
    if (ring.size() == 16) ring.pop_front(16);
  }
  EXPECT_EQ(ring.capacity(), 32u);  // never grown: no allocation after the first
  for (uint64_t i = 0; i < 1000; ++i) ring.push_back(i);
  ring.release_if_idle(64);
  EXPECT_EQ(ring.capacity(), 1024u);  // not empty: kept
  ring.pop_front(ring.size());
  ring.release_if_idle(64);
  EXPECT_EQ(ring.capacity(), 0u);
  ring.push_back(5);
  EXPECT_EQ(ring.front(), 5u);
}

}  // namespace
}  // namespace stockd
