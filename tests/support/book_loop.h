// The loop's half of the persistence tests, without a server: a book that logs, its groups
// written to a store and handed to a checkpointer as the loop does; and a comparison of two books.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "stockd/book.h"
#include "stockd/decisions.h"
#include "stockd/persist.h"
#include "stockd/store.h"

namespace stockd::test {

inline constexpr int64_t kT0 = 1767225600000;

// The loop's half: a book that logs, and groups written and handed to the checkpointer.
struct Loop {
  storage::Store& store;
  Checkpointer& cp;
  Book book;
  Changes ch;
  uint64_t lsn = 0;
  uint64_t first_seq = 1;
  Loop(storage::Store& s, Checkpointer& c, BookLimits limits = {}) : store(s), cp(c), book(limits) {
    ch.rows = false;
  }

  void seal() {
    if (ch.entry_count == 0) return;
    const uint64_t end = book.meta().next_outbox_seq;
    std::string group;
    rec::encode_group(++lsn, ch.entry_base_ms, first_seq, static_cast<uint32_t>(end - first_seq),
                      ch.entry_count, ch.entries, group);
    storage::Batch b = store.batch();
    b.lsn = lsn;
    b.put(rec::log_key(lsn), group);
    ASSERT_TRUE(store.write(b, true).ok());
    cp.submit(lsn, group);
    first_seq = end;
    ch.clear();
  }
  // The SKU "tee" (1,000 units) in the first group, then a wait until the checkpointer takes
  // its queue. It first rebuilds its book from the store, and groups written before that are
  // replayed there, not checkpointed one by one: the wait makes the cadence a test counts the
  // one of groups handed over (on a loaded machine a late thread otherwise replays them all at
  // once, and checkpoints fewer times).
  void start() {
    proto::SkuView v;
    ASSERT_EQ(book.sku_set({"tee", proto::kSetTotal, 1000, 0, 0, 0}, kT0, v, ch),
              proto::Status::kOk);
    seal();
    for (int i = 0; i < 5000 && cp.queued() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(cp.queued(), 0u);
  }
  void buy(int n, int64_t at) {
    proto::ReserveResp r;
    ASSERT_EQ(book.reserve({"u" + std::to_string(n), "k" + std::to_string(n), 0, {{"tee", 1}}}, at,
                           r, ch),
              proto::Status::kOk);
  }
};

// Every row of `book`'s holds, per-user counts and SKU "tee" is the same in `other`.
inline void expect_same_book(const Book& book, const Book& other) {
  proto::SkuView a, b;
  ASSERT_EQ(book.sku_get("tee", a), proto::Status::kOk);
  ASSERT_EQ(other.sku_get("tee", b), proto::Status::kOk);
  EXPECT_EQ(a, b);
  EXPECT_EQ(book.meta().next_hold_id, other.meta().next_hold_id);
  EXPECT_EQ(book.meta().next_outbox_seq, other.meta().next_outbox_seq);
  for (uint64_t id = 1; id < book.meta().next_hold_id; ++id) {
    proto::HoldView x, y;
    EXPECT_EQ(book.hold_get(id, x), other.hold_get(id, y)) << "hold " << id;
    EXPECT_EQ(x, y) << "hold " << id;
  }
  Changes all;
  book.name_all_rows(all);
  for (const auto& [sku, user] : all.users) {
    EXPECT_EQ(book.user_row(sku, user), other.user_row(sku, user)) << "user " << user;
  }
  EXPECT_EQ(other.check_invariants().message(), "");
}

}  // namespace stockd::test
