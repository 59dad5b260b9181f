// KeyIndex (the book's idempotency-key index) against std::map under random inserts, finds and
// erases in a small table, where probe runs collide, wrap around the end and shift back often.
#include "../../book/src/key_index.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>

namespace stockd::book_detail {
namespace {

struct Owner {
  std::string key;
};
std::string_view index_key(const Owner& o) { return o.key; }

TEST(KeyIndexTest, MatchesAMapUnderRandomOperations) {
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    std::deque<Owner> owners;  // stable addresses
    std::map<std::string, Owner*> model;
    KeyIndex<Owner> index;
    for (int step = 0; step < 4000; ++step) {
      const std::string key = "k" + std::to_string(rng() % 300);
      const uint32_t op = rng() % 3;
      if (op == 0) {
        Owner& o = owners.emplace_back(Owner{key});
        const bool fresh = !model.contains(key);
        ASSERT_EQ(index.insert(&o), fresh) << key;
        if (fresh) model[key] = &o;
      } else if (op == 1) {
        ASSERT_EQ(index.erase(key), model.erase(key) == 1) << key;
      } else {
        auto it = model.find(key);
        ASSERT_EQ(index.find(key), it == model.end() ? nullptr : it->second) << key;
      }
      ASSERT_EQ(index.size(), model.size());
    }
    for (const auto& [key, owner] : model) ASSERT_EQ(index.find(key), owner) << key;
    ASSERT_LE(index.size() * 4, index.capacity() * 3);  // never over 3/4 full
  }
}

TEST(KeyIndexTest, ReserveMakesRoomUpFront) {
  KeyIndex<Owner> index;
  EXPECT_EQ(index.find("a"), nullptr);
  EXPECT_FALSE(index.erase("a"));
  index.reserve(1000);
  const size_t capacity = index.capacity();
  EXPECT_GE(capacity * 3, 1000u * 4);
  std::deque<Owner> owners;
  for (int i = 0; i < 1000; ++i)
    ASSERT_TRUE(index.insert(&owners.emplace_back(Owner{std::to_string(i)})));
  EXPECT_EQ(index.capacity(), capacity);                         // no growth
  EXPECT_FALSE(index.insert(&owners.emplace_back(Owner{"7"})));  // already there
  EXPECT_EQ(index.find("7"), &owners[7]);
  EXPECT_EQ(index.find(""), nullptr);
}

}  // namespace
}  // namespace stockd::book_detail
