// stockctl migrate: a data dir of the layout before the log of decisions (families default,
// holds, outbox: every group wrote its rows, outbox records and meta row) becomes one of this
// layout (docs/storage.md, "Moving an earlier data dir"). Its rows already are a checkpoint but
// for the hold keys (id then, sequence number now); its retained outbox records become log
// groups at or before the checkpoint's lsn (read by the outbox, never replayed). One synced
// batch does all of it, then the outbox family is dropped; a run cut short is run again.
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "stockd/ack_mark.h"
#include "stockd/decisions.h"
#include "stockd/hold_ids.h"
#include "stockd/persist.h"
#include "stockd/store.h"

namespace stockd {
namespace {

constexpr size_t kRecordsPerGroup = 4096;

// The log entry an earlier outbox record becomes: K (order), L (released) or E (expired), with
// the record's content.
Status append_record(const proto::OutboxRecord& r, rec::LogWriter& w) {
  rec::Decision d;
  d.op = r.kind == proto::OutboxKind::kReleased  ? rec::Op::kRelease
         : r.kind == proto::OutboxKind::kExpired ? rec::Op::kExpire
                                                 : rec::Op::kCommit;
  d.at_ms = r.at_ms;
  d.hold_id = r.order_id;
  d.user = r.user;
  d.key = r.key;
  d.created_at_ms = r.created_at_ms;
  for (const proto::Line& l : r.lines) d.lines.push_back({l.sku, l.qty});
  for (const proto::SkuCode& c : r.codes) {
    uint32_t line = 0;
    while (line < r.lines.size() && r.lines[line].sku != c.sku) ++line;
    if (line == r.lines.size()) {
      return Status::Corruption("outbox record " + std::to_string(r.seq) + ": code of SKU " +
                                c.sku + " that is not one of its lines");
    }
    d.codes.push_back({line, c.code});
  }
  w.append(d);
  return Status::Ok();
}

struct Db {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::vector<std::string> names;
  ~Db() {
    for (auto* h : handles) (void)db->DestroyColumnFamilyHandle(h);
    if (db != nullptr) (void)db->Close();
    delete db;
  }
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return handles[i];
    }
    return nullptr;
  }
};

bool empty_family(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* h) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
  it->SeekToFirst();
  return !it->Valid();
}

}  // namespace

Status migrate_earlier_layout(const std::string& dir, std::string& report) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / "CURRENT", ec))
    return Status::Invalid(dir + " is not a data dir (no CURRENT)");
  rocksdb::DBOptions o;
  o.create_if_missing = false;
  o.paranoid_checks = true;
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  // A start of this version cut short while moving the logs into wal/ left them in wal.moving/:
  // opened without them, the store would be converted without its acknowledged decisions.
  if (!fs::exists(fs::path(dir) / "wal", ec) &&
      !storage::log_files_in(dir + "/wal.moving").empty()) {
    return Status::Refused(dir +
                           "/wal.moving holds the write-ahead log of a start cut short "
                           "while moving it into wal/: start stockd once to finish the "
                           "move (it then says whether to migrate)");
  }
  o.wal_dir = fs::exists(fs::path(dir) / "wal", ec) ? dir + "/wal" : dir;
  Db d;
  if (auto s = rocksdb::DB::ListColumnFamilies(o, dir, &d.names); !s.ok()) {
    return Status::Io("cannot read " + dir + ": " + s.ToString());
  }
  const auto has = [&d](const char* n) {
    return std::find(d.names.begin(), d.names.end(), n) != d.names.end();
  };
  if (!has("outbox")) {
    return has("log")
               ? Status::Refused(dir + " already has this version's layout: nothing to migrate")
               : Status::Invalid(dir + " is not a stockd data dir of a known layout");
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const std::string& n : d.names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  if (auto s = rocksdb::DB::Open(o, dir, cfs, &d.handles, &d.db); !s.ok()) {
    return Status::Io("cannot open " + dir + " (is its stockd still running?): " + s.ToString());
  }
  rocksdb::ColumnFamilyHandle* def = d.family("default");
  rocksdb::ColumnFamilyHandle* holds = d.family("holds");
  rocksdb::ColumnFamilyHandle* outbox = d.family("outbox");
  rocksdb::ColumnFamilyHandle* log = d.family("log");
  if (holds == nullptr) return Status::Invalid(dir + " has no holds family: not a stockd data dir");

  // The earlier store must be whole: what was acknowledged is there.
  std::string value;
  rec::MetaRow meta;
  if (auto s = d.db->Get(rocksdb::ReadOptions(), def, rec::meta_key(), &value); s.ok()) {
    if (Status bad = rec::decode(value, meta); !bad.ok()) {
      return std::move(bad).context("meta record is corrupt");
    }
  } else if (!s.IsNotFound()) {
    return Status::Io("cannot read the meta row: " + s.ToString());
  }
  uint64_t acked = 0;
  bool found = false;
  if (Status s = storage::AckMark::read(dir, acked, found); !s.ok()) return s;
  if (meta.lsn < acked) {
    return Status::Refused(
        "the store ends at lsn " + std::to_string(meta.lsn) + " but lsn " + std::to_string(acked) +
        " was acknowledged (ACKED): its log was lost; restore it from a backup first");
  }

  rocksdb::WriteBatch b;
  // Hold rows: h/ + id becomes h/ + sequence number. Deletes first, then puts, so that a new key
  // equal to another row's old key is not deleted after its put.
  const HoldIdKey key{meta.hold_id_key0, meta.hold_id_key1};
  std::vector<std::pair<std::string, std::string>> puts;
  size_t rekeyed = 0, hold_rows = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(d.db->NewIterator(rocksdb::ReadOptions(), holds));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      rec::HoldRow row;
      const std::string k = it->key().ToString();
      if (Status bad = rec::decode(std::string_view(it->value().data(), it->value().size()), row);
          !bad.ok()) {
        return std::move(bad).context("hold row (key " + std::to_string(k.size()) +
                                      " bytes) is corrupt");
      }
      ++hold_rows;
      const uint64_t seq = hold_seq_of(row.hold.hold_id, key);
      if (seq == 0 || seq >= meta.next_hold_id) {
        return Status::Corruption("hold row " + std::to_string(row.hold.hold_id) +
                                  " has an id its store never issued");
      }
      const std::string want = rec::hold_key(seq);
      if (want == k) continue;
      (void)b.Delete(holds, k);
      puts.emplace_back(want, it->value().ToString());
      ++rekeyed;
    }
    if (!it->status().ok())
      return Status::Io("cannot read the hold rows: " + it->status().ToString());
  }
  for (const auto& [k, v] : puts) (void)b.Put(holds, k, v);

  // The outbox: its records become log groups at lsn meta.lsn + 1 .. + n, which the new meta row
  // (lsn meta.lsn + n) covers: read by the outbox, never replayed. Skipped when an earlier run
  // that was cut short already wrote them (the batch is atomic).
  if (log == nullptr) {
    rocksdb::ColumnFamilyOptions lo;
    if (auto s = d.db->CreateColumnFamily(lo, "log", &log); !s.ok()) {
      return Status::Io("cannot create the log family: " + s.ToString());
    }
    d.handles.push_back(log);
    d.names.emplace_back("log");
  }
  size_t records = 0, groups = 0;
  if (empty_family(d.db, log)) {
    std::unique_ptr<rocksdb::Iterator> it(d.db->NewIterator(rocksdb::ReadOptions(), outbox));
    std::string entries, group;
    int64_t base = 0;
    uint32_t count = 0;
    uint64_t first = 0, expect = 0;
    auto flush = [&] {
      if (count == 0) return;
      ++groups;
      rec::encode_group(meta.lsn + groups, base, first, count, count, entries, group);
      (void)b.Put(log, rec::log_key(meta.lsn + groups), group);
      count = 0;
    };
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      proto::OutboxRecord r;
      if (Status bad = rec::decode(std::string_view(it->value().data(), it->value().size()), r);
          !bad.ok()) {
        return std::move(bad).context("outbox record is corrupt");
      }
      if (expect != 0 && r.seq != expect) {
        return Status::Corruption("outbox sequence gap: expected " + std::to_string(expect) +
                                  ", found " + std::to_string(r.seq));
      }
      expect = r.seq + 1;
      if (count == kRecordsPerGroup) flush();
      if (count == 0) first = r.seq;
      rec::LogWriter w{entries, base, count};
      if (Status s = append_record(r, w); !s.ok()) return s;
      ++records;
    }
    if (!it->status().ok()) return Status::Io("cannot read the outbox: " + it->status().ToString());
    flush();
    if (records > 0 && expect != meta.next_outbox_seq) {
      return Status::Corruption("the outbox ends at " + std::to_string(expect - 1) +
                                " but meta says next is " + std::to_string(meta.next_outbox_seq));
    }
    meta.lsn += groups;
    meta.outbox_first = records > 0 ? meta.outbox_first : meta.next_outbox_seq;
    std::string m;
    rec::encode(meta, m);
    (void)b.Put(def, rec::meta_key(), m);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto s = d.db->Write(wo, &b); !s.ok())
    return Status::Io("cannot write the migration: " + s.ToString());
  if (auto s = d.db->DropColumnFamily(outbox); !s.ok()) {
    return Status::Io("cannot drop the outbox family (run migrate again): " + s.ToString());
  }
  report = "migrated " + dir + ": " + std::to_string(hold_rows) + " hold rows (" +
           std::to_string(rekeyed) + " rekeyed by sequence number), " + std::to_string(records) +
           " outbox records into " + std::to_string(groups) + " log groups; checkpoint at lsn " +
           std::to_string(meta.lsn);
  return Status::Ok();
}

}  // namespace stockd
