// Disk full: the data dir on a small tmpfs is filled under load. stockd must answer
// STORAGE_UNAVAILABLE (never a false OK), stay up, resume once space is freed, and keep every
// acknowledged order across a kill -9.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "support/process.h"
#include "support/small_disk.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;
using proto::Status;

TEST(DiskFull, TypedErrorsNoFalseOkThenResumes) {
  SmallDisk disk(16);
  if (!disk.mounted())
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << strerror(errno);
  StockdProcess server({}, (disk.dir() / "data").string());
  ASSERT_TRUE(server.start());
  {
    Client admin = server.admin();
    proto::SkuSetReq set{"disk", proto::kSetTotal, 1'000'000'000, 0, 0, 0};
    ASSERT_TRUE(admin.sku_set(set).ok());
  }
  disk.fill_leaving(150 * 1024);

  std::mutex mu;
  std::set<uint64_t> acked;  // hold ids answered OK
  std::atomic<int> unavailable{0};
  std::atomic<int> other{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> buyers;
  for (int t = 0; t < 4; ++t) {
    buyers.emplace_back([&, t] {
      Client c = server.buyer();
      for (int i = 0; !stop && i < 20000; ++i) {
        proto::ReserveReq r{"u" + std::to_string(t),
                            "k" + std::to_string(t) + "-" + std::to_string(i),
                            0,
                            {{"disk", 1}}};
        auto rep = c.reserve(r);
        if (rep.ok()) {
          std::lock_guard lock(mu);
          acked.insert(rep.body.hold_id);
        } else if (rep.transport_ok() && rep.status == Status::kStorageUnavailable) {
          if (++unavailable > 200) stop = true;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& b : buyers) b.join();
  ASSERT_GT(unavailable.load(), 0) << "the disk never filled up";
  EXPECT_EQ(other.load(), 0) << "only OK or STORAGE_UNAVAILABLE are acceptable answers";
  ASSERT_TRUE(server.running());

  // Free space: service resumes within a few seconds (the store is retried every second).
  disk.free_filler();
  Client c = server.buyer();
  bool resumed = false;
  for (int i = 0; i < 100 && !resumed; ++i) {
    auto rep = c.reserve({"after", "after-key", 0, {{"disk", 1}}});
    if (rep.ok()) {
      acked.insert(rep.body.hold_id);
      resumed = true;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_TRUE(resumed) << "stockd did not resume after space was freed";

  // Everything acknowledged is there, also after kill -9.
  for (int round = 0; round < 2; ++round) {
    Client q = server.admin();  // reads any user's order
    auto sku = q.sku_get("disk");
    ASSERT_TRUE(sku.ok());
    EXPECT_GE(sku.body.sold, acked.size());
    EXPECT_EQ(sku.body.available + sku.body.held + sku.body.sold, sku.body.total);
    for (uint64_t id : acked) {
      auto h = q.hold_get(id);
      ASSERT_TRUE(h.ok()) << "acknowledged order " << id << " is missing (round " << round << ")";
      EXPECT_EQ(h.body.state, proto::HoldState::kCommitted);
    }
    if (round == 0) {
      server.kill9();
      ASSERT_TRUE(server.start());
    }
  }
}

}  // namespace
}  // namespace stockd::test
