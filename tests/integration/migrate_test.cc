// A data dir of the layout before the log of decisions (families default, holds, outbox; hold
// rows under their ids; outbox records as rows), written here byte for byte as that stockd
// wrote it: the new stockd refuses it and names the command; `stockctl migrate` converts it;
// then stockd starts on it with every SKU, hold, idempotency key and retained outbox record.
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <chrono>
#include <filesystem>

#include "harness.h"
#include "stockd/ack_mark.h"
#include "stockd/hold_ids.h"
#include "stockd/records.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;

// A minute ago: within the finished holds' retention (24 h) when the new stockd starts.
const int64_t kT0 = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count() -
                    60'000;
const HoldIdKey kKey{0x1122334455667788ULL, 0x99aabbccddeeff00ULL};

struct Earlier {
  std::vector<uint64_t> ids;  // holds 1..3 (by sequence number)
  std::vector<proto::OutboxRecord> records;
};

// Three keyed buy-nows of one "tee" each (of 10), their three outbox records (the first acked).
Earlier write_earlier_layout(const fs::path& dir) {
  Earlier e;
  fs::create_directories(dir / "wal");
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  o.wal_dir = (dir / "wal").string();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {"default", {}}, {"holds", {}}, {"outbox", {}}};
  std::vector<rocksdb::ColumnFamilyHandle*> h;
  rocksdb::DB* db = nullptr;
  EXPECT_TRUE(rocksdb::DB::Open(o, dir.string(), cfs, &h, &db).ok());
  rocksdb::WriteBatch b;
  rec::SkuRow sku{"tee", 10, 7, 0, 3, 0, 0, 0, false, false};
  (void)b.Put(h[0], rec::sku_key("tee"), rec::encode(sku));
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    const uint64_t id = hold_id_of(seq, kKey);
    e.ids.push_back(id);
    const int64_t at = kT0 + static_cast<int64_t>(seq);
    rec::HoldRow hold{{id,
                       proto::HoldState::kCommitted,
                       "u" + std::to_string(seq),
                       "k" + std::to_string(seq),
                       at,
                       0,
                       {{"tee", 1}},
                       {}},
                      0,
                      0,
                      at};
    (void)b.Put(h[1], rec::hold_key(id), rec::encode(hold));
    proto::OutboxRecord r{
        seq, proto::OutboxKind::kOrder, id, hold.hold.user, hold.hold.key, at, at, {{"tee", 1}},
        {}};
    (void)b.Put(h[2], rec::outbox_key(seq), rec::encode(r));
    e.records.push_back(r);
  }
  rec::MetaRow meta{5, 4, 4, 1, 1, kKey.k0, kKey.k1};
  (void)b.Put(h[0], rec::meta_key(), rec::encode(meta));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  EXPECT_TRUE(db->Write(wo, &b).ok());
  for (auto* x : h) (void)db->DestroyColumnFamilyHandle(x);
  delete db;
  auto mark = storage::AckMark::open(dir.string(), true);
  EXPECT_TRUE(mark.ok()) << mark.status().message();
  if (mark.ok()) {
    EXPECT_TRUE((*mark)->advance(5).ok());
  }
  return e;
}

// A start cut short while moving the log into wal/ leaves it in wal.moving/. migrate opened the
// store without it and converted a state that lacked every decision since the last flush. It
// now refuses; a start finishes the move, and migrate then converts everything.
TEST(Migrate, ALogLeftInWalMovingIsNotLeftOut) {
  const fs::path base = make_temp_dir("migrate-moving");
  const fs::path dir = base / "data";
  const Earlier e = write_earlier_layout(dir);
  fs::rename(dir / "wal", dir / "wal.moving");
  ToolResult m = run_tool(STOCKCTL_BIN, {"migrate", "--data-dir", dir.string()});
  EXPECT_EQ(m.exit_code, 1) << m.out << m.err;
  EXPECT_NE(m.err.find("wal.moving holds the write-ahead log"), std::string::npos) << m.err;
  StockdProcess start({}, dir.string());
  EXPECT_FALSE(start.start(5000)) << "started on a data dir of the earlier layout";
  EXPECT_TRUE(fs::exists(dir / "wal")) << "the start did not finish the move";
  ToolResult again = run_tool(STOCKCTL_BIN, {"migrate", "--data-dir", dir.string()});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  StockdProcess server({}, dir.string());
  ASSERT_TRUE(server.start());
  Client admin = server.admin();
  auto sku = admin.sku_get("tee");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.sold, 3u);
  for (uint64_t id : e.ids) EXPECT_TRUE(admin.hold_get(id).ok()) << "hold " << id;
  server.kill9();
  fs::remove_all(base);
}

TEST(Migrate, AnEarlierDataDirIsRefusedThenConvertedWithEverything) {
  const fs::path base = make_temp_dir("migrate");
  const fs::path dir = base / "data";
  const Earlier e = write_earlier_layout(dir);

  StockdProcess refused({}, dir.string());
  refused.set_log_file((base / "refused.log").string());
  EXPECT_FALSE(refused.start(5000)) << "started on a data dir of the earlier layout";
  const std::string log = slurp(base / "refused.log");
  EXPECT_NE(log.find("the layout of an earlier stockd"), std::string::npos) << log;
  EXPECT_NE(log.find("stockctl migrate --data-dir " + dir.string()), std::string::npos) << log;

  ToolResult m = run_tool(STOCKCTL_BIN, {"migrate", "--data-dir", dir.string()});
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_NE(m.out.find("3 hold rows (3 rekeyed by sequence number), 3 outbox records into 1 log "
                       "groups; checkpoint at lsn 6"),
            std::string::npos)
      << m.out;
  ToolResult v = run_tool(STOCKCTL_BIN, {"verify", "--data-dir", dir.string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  ToolResult again = run_tool(STOCKCTL_BIN, {"migrate", "--data-dir", dir.string()});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already has this version's layout"), std::string::npos) << again.err;

  StockdProcess server({}, dir.string());
  server.set_log_file((base / "after.log").string());
  ASSERT_TRUE(server.start()) << slurp(base / "after.log");
  Client admin = server.admin();
  auto sku = admin.sku_get("tee");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.sold, 3u);
  EXPECT_EQ(sku.body.available, 7u);
  for (size_t i = 0; i < e.ids.size(); ++i) {
    auto h = admin.hold_get(e.ids[i]);
    ASSERT_TRUE(h.ok()) << "hold " << e.ids[i];
    EXPECT_EQ(h.body.key, "k" + std::to_string(i + 1));
  }
  // The outbox: records 2 and 3 (1 was acknowledged), as the earlier store held them.
  Client outbox(server.options(proto::Role::kOutbox));
  ASSERT_TRUE(outbox.connect().ok());
  auto read = outbox.outbox_read({1, 100, 0});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read.body.head_seq, 3u);
  EXPECT_EQ(read.body.acked_seq, 1u);
  ASSERT_EQ(read.body.records.size(), 2u);
  EXPECT_EQ(read.body.records[0], e.records[1]);
  EXPECT_EQ(read.body.records[1], e.records[2]);
  // New holds go on from the earlier sequence under the earlier key.
  auto r = server.buyer().reserve({"u9", "k9", 0, {{"tee", 1}}});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body.hold_id, hold_id_of(4, kKey));
  fs::remove_all(base);
}

}  // namespace
}  // namespace stockd::test
