// KeyIndex (the book's idempotency-key index) against std::map under random inserts, finds and
// erases in a small table, where probe runs collide, wrap around the end and shift back often.
#include "../../book/src/key_index.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>

#include "../../book/src/hold_table.h"

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

struct TestHold {
  uint64_t id = 0;
  std::string user;
  void reset() { user.clear(); }
};

// HoldTableOf (the book's holds by id) against std::map: finds, reuse of erased holds, and its
// walk, which goes over the pool and must skip every erased hold.
TEST(HoldTableTest, MatchesAMapUnderRandomOperations) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    std::map<uint64_t, TestHold*> model;
    HoldTableOf<TestHold> table;
    for (int step = 0; step < 3000; ++step) {
      const uint64_t id = 1 + rng() % 200;
      const uint32_t op = rng() % 3;
      if (op == 0) {
        TestHold* h = table.emplace(id);
        ASSERT_EQ(h != nullptr, !model.contains(id)) << id;
        if (h != nullptr) {
          EXPECT_EQ(h->id, id);
          EXPECT_EQ(h->user, "") << "a reused hold keeps nothing of the one before";
          h->user = "user of " + std::to_string(id);
          model[id] = h;
        }
      } else if (op == 1) {
        auto it = model.find(id);
        if (it != model.end()) {
          table.erase(it->second);
          model.erase(it);
        }
      } else {
        auto it = model.find(id);
        ASSERT_EQ(table.find(id), it == model.end() ? nullptr : it->second) << id;
      }
      ASSERT_EQ(table.size(), model.size());
    }
    EXPECT_EQ(table.check(), nullptr);
    std::map<uint64_t, std::string> walked;
    for (const auto& [id, h] : table) {
      EXPECT_EQ(id, h.id);
      EXPECT_TRUE(walked.emplace(id, h.user).second) << "walked twice: " << id;
    }
    ASSERT_EQ(walked.size(), model.size());
    for (const auto& [id, h] : model) EXPECT_EQ(walked[id], h->user);
  }
}

TEST(HoldTableTest, CheckFindsAHoldWhoseIdChangedUnderTheIndex) {
  HoldTableOf<TestHold> table;
  TestHold* h = table.emplace(5);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(table.check(), nullptr);
  h->id = 6;
  EXPECT_STREQ(table.check(), "a hold is indexed under another id");
}

}  // namespace
}  // namespace stockd::book_detail
