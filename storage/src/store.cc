#include "stockd/store.h"

#include <fcntl.h>
#include <pthread.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/file_system.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <utility>

#include "stockd/ack_mark.h"
#include "stockd/wal_check.h"

namespace stockd::storage {
namespace {

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

Status to_status(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string message = std::string(what) + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(message));
  if (s.IsInvalidArgument()) return Status::Invalid(std::move(message));
  return Status::Io(std::move(message));
}

// RocksDB's own messages go to our log (logger "rocksdb"), not to a LOG file in the data dir:
// one place to read, and no second writer on the disk that may be full (RocksDB 7.8 asserts
// when its info log is written to again after a failed append).
class RocksLogger final : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL) {
    log_ = spdlog::get("rocksdb");
    if (!log_) log_ = spdlog::default_logger()->clone("rocksdb");
  }
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, ap);
    switch (level) {
      case rocksdb::InfoLogLevel::DEBUG_LEVEL:
      case rocksdb::InfoLogLevel::INFO_LEVEL:
        log_->debug("{}", buf);  // chatty: compactions, options dumps
        break;
      case rocksdb::InfoLogLevel::WARN_LEVEL:
        // A checkpoint's table files are ingested, and RocksDB 7.8 records no unique id for an
        // ingested file, so it warns about them at every open: not news for an operator.
        if (std::strstr(buf, "opened without unique ID to verify") != nullptr) {
          log_->debug("{}", buf);
        } else {
          log_->warn("{}", buf);
        }
        break;
      default:
        log_->error("{}", buf);
        break;
    }
  }

 private:
  std::shared_ptr<spdlog::logger> log_;
};

// Tables live in column families by how they are written: the log's groups arrive in key order
// (lsns only grow), so in a family of its own they flush to files that never overlap, which
// compaction moves instead of rewriting, and a trim drops whole files; hold rows, the bulk of a
// checkpoint, have theirs; the other rows of a checkpoint (SKUs, per-user counts, codes, meta)
// stay in the default family. A key's table tag (its first byte, records.h) picks its family,
// so callers never name one.
constexpr const char* kFamilyNames[] = {"default", "holds", "log"};
constexpr size_t kSpareBatches = 2;          // written batches a WalWriter keeps for recycled()
constexpr size_t kSpareBytesMax = 1u << 20;  // but not the buffer of a spike's largest group

// Present while the state's tables are dropped and written anew (Store::drop_state() to
// state_repaired()): a store opened with it holds part of an old state at best. Its tag puts it
// in the log's family, outside the log's keys (l/ and an lsn), synced through the WAL.
constexpr std::string_view kRepairMarkKey = "l!repair";

size_t family_of(std::string_view key) {
  const char tag = key.empty() ? '\0' : key[0];
  return tag == 'h' ? 1 : tag == 'l' ? 2 : 0;
}

std::string log_key_be(uint64_t lsn) {
  std::string k{'l', '/'};
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((lsn >> (8 * i)) & 0xFF));
  return k;
}

// Files of a checkpoint being written: <dir>/checkpoint.tmp/<family>-<lsn>.sst, one per family
// that gets rows, moved into the store by ingestion (or removed).
std::string checkpoint_tmp_dir(const std::string& dir) { return dir + "/checkpoint.tmp"; }

// Snapshots: <dir>/snapshots/<lsn, 20 digits>/<family>.sst, written in <lsn>.tmp/ and renamed
// once complete and synced, so that a directory with a bare number for a name is whole.
constexpr size_t kSnapshotNameDigits = 20;
std::string snapshots_dir(const std::string& dir) { return dir + "/snapshots"; }
std::string snapshot_name(uint64_t lsn) {
  std::string n = std::to_string(lsn);
  return std::string(kSnapshotNameDigits - n.size(), '0') + n;
}

// The lsn a snapshot directory's name says, or 0 if the name is not a snapshot's.
uint64_t snapshot_lsn(const std::string& name) {
  uint64_t lsn = 0;
  if (name.size() != kSnapshotNameDigits) return 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), lsn);
  return ec == std::errc() && end == name.data() + name.size() ? lsn : 0;
}

// Every use of the log's file: the WAL thread's writes, the checkpointer's sync and trim, the
// interval mode's sync. Once one failed, RocksDB's writer of the log file carries the error and
// any later sync of it is an assertion failure (abort) in the RocksDB built with assertions, as
// Debian's is; so the first failure is kept and every later use gets it without touching the
// log, until the store is reopened. The lock makes "failed" and the next use one step (the WAL
// thread and the checkpointer's thread).
class LogGuard {
 public:
  // Runs `use` (a RocksDB status) unless an earlier use failed; keeps its failure. `what` and
  // `lsn` (if not 0) name the use in a message, made only on failure.
  template <class Use>
  Status run(Use&& use, const char* what, uint64_t lsn = 0) {
    const auto named = [&] { return lsn == 0 ? std::string(what) : what + std::to_string(lsn); };
    std::lock_guard lock(mu_);
    if (!failed_.ok()) {
      return Status::Io(named() + ": an earlier write or sync of the log failed (" +
                        failed_.message() + "); the store must be reopened");
    }
    const rocksdb::Status r = use();
    if (r.ok()) return Status::Ok();
    failed_ = to_status(r, named());
    return failed_;
  }

  // Whether a group was written without sync since the log was last synced (durability
  // `interval`): only read and written inside run().
  bool unsynced = false;

 private:
  std::mutex mu_;
  Status failed_;
};

// Removes the snapshots in `dir` (the snapshots' directory) older than `lsn`.
void remove_snapshots_below(const std::string& dir, uint64_t lsn) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const uint64_t at = snapshot_lsn(e.path().filename().string());
    if (at != 0 && at < lsn) std::filesystem::remove_all(e.path(), ec);
  }
}

// A checkpoint's files, ingested into the store; or, with `snapshots` (the snapshots' directory),
// a snapshot's, published there under the lsn (docs/storage.md, "Snapshots").
class RocksCheckpoint final : public CheckpointWriter {
 public:
  RocksCheckpoint(rocksdb::DB* db, LogGuard& log, const Batch::Families& families,
                  const std::array<rocksdb::Options, 3>& options, std::string tmp_dir, uint64_t lsn,
                  std::string snapshots = {})
      : db_(db),
        log_(log),
        families_(families),
        options_(options),
        tmp_(std::move(tmp_dir)),
        lsn_(lsn),
        snapshots_(std::move(snapshots)) {}
  ~RocksCheckpoint() override {
    remove_files();
    std::error_code ec;
    if (!snapshots_.empty()) std::filesystem::remove_all(tmp_, ec);  // unless published
  }

  void put(std::string_view key, std::string_view value) override {
    if (rocksdb::SstFileWriter* w = writer(family_of(key))) note(w->Put(slice(key), slice(value)));
  }
  void del(std::string_view key) override {
    if (rocksdb::SstFileWriter* w = writer(family_of(key))) note(w->Delete(slice(key)));
  }

  Status commit() override {
    std::vector<rocksdb::IngestExternalFileArg> args;
    for (size_t i = 0; i < writers_.size() && error_.empty(); ++i) {
      if (!writers_[i]) continue;
      rocksdb::ExternalSstFileInfo info;
      note(writers_[i]->Finish(&info));
      bytes_ += info.file_size;
      rocksdb::IngestExternalFileArg arg;
      arg.column_family = families_[i];
      arg.external_files = {paths_[i]};
      arg.options.move_files = true;
      args.push_back(std::move(arg));
    }
    if (!error_.empty()) return Status::Io(what() + ": " + error_);
    if (!snapshots_.empty()) return publish();
    // The log groups the checkpoint covers must be durable before it says so: with durability
    // `interval` they may still be in the OS's hands, and a power loss would leave a checkpoint
    // holding decisions whose outbox records (log entries) were lost.
    // With durability `sync` they are (each was written with sync before it was handed over),
    // and a sync here would hold the log's lock, and the next group, for an fsync of nothing.
    Status s = log_.run(
        [&] {
          if (!log_.unsynced) return rocksdb::Status::OK();
          rocksdb::Status r = db_->FlushWAL(true);
          if (r.ok()) log_.unsynced = false;
          return r;
        },
        "sync the log before a checkpoint");
    if (s.ok() && !args.empty()) {
      s = to_status(db_->IngestExternalFiles(args), what());
    }
    remove_files();
    return s;
  }
  uint64_t bytes() const override { return bytes_; }

 private:
  rocksdb::SstFileWriter* writer(size_t family) {
    if (!error_.empty()) return nullptr;
    if (!writers_[family]) {
      std::error_code ec;
      std::filesystem::create_directories(tmp_, ec);
      paths_[family] = tmp_ + "/" + kFamilyNames[family] +
                       (snapshots_.empty() ? "-" + std::to_string(lsn_) : "") + ".sst";
      // A checkpoint's pages stay in the OS's cache once written (RocksDB drops them by
      // default): the next start reads them back, often right after a clean stop. A snapshot,
      // read only if a checkpoint is damaged, leaves the cache as it was.
      writers_[family] = std::make_unique<rocksdb::SstFileWriter>(
          rocksdb::EnvOptions(options_[family]), options_[family], families_[family],
          /*invalidate_page_cache=*/!snapshots_.empty());
      note(writers_[family]->Open(paths_[family]));
    }
    return error_.empty() ? writers_[family].get() : nullptr;
  }
  void note(const rocksdb::Status& s) {
    if (!s.ok() && error_.empty()) error_ = s.ToString();
  }
  std::string what() const {
    return (snapshots_.empty() ? "checkpoint at lsn " : "snapshot at lsn ") + std::to_string(lsn_);
  }
  // The snapshot's files are finished and synced (SstFileWriter::Finish): the directory is
  // synced and renamed to its lsn, the snapshots' directory synced, and the older snapshots go.
  // Through RocksDB's file system, as the store's own files (the crash tests' power cuts).
  // One already at this lsn is replaced, not kept: a new snapshot is asked for when the newest
  // was found damaged, and an idle server's next one falls at the same lsn. It is moved aside
  // under a .tmp name first (a crash leaves it to be removed at the next open).
  Status publish() {
    const std::string to = snapshots_ + "/" + snapshot_name(lsn_);
    const std::string replaced = to + ".replaced.tmp";
    rocksdb::FileSystem& fs = *options_[0].env->GetFileSystem();
    std::error_code ec;
    if (std::filesystem::exists(to, ec)) {
      std::filesystem::remove_all(replaced, ec);
      if (rocksdb::IOStatus r = fs.RenameFile(to, replaced, rocksdb::IOOptions(), nullptr);
          !r.ok()) {
        return to_status(r, what());
      }
    }
    const auto sync_dir = [&](const std::string& path) {
      std::unique_ptr<rocksdb::FSDirectory> d;
      rocksdb::IOStatus r = fs.NewDirectory(path, rocksdb::IOOptions(), &d, nullptr);
      if (r.ok()) r = d->Fsync(rocksdb::IOOptions(), nullptr);
      return r;
    };
    // A family without rows gets an empty <family>.none instead of its table file, so that a
    // table file missing from a snapshot is damage, never "no rows".
    rocksdb::IOStatus r;
    for (size_t i = 0; i < writers_.size() - 1 && r.ok(); ++i) {
      if (writers_[i]) continue;
      std::unique_ptr<rocksdb::FSWritableFile> none;
      r = fs.NewWritableFile(tmp_ + "/" + kFamilyNames[i] + ".none", rocksdb::FileOptions(), &none,
                             nullptr);
      if (r.ok()) r = none->Sync(rocksdb::IOOptions(), nullptr);
      if (r.ok()) r = none->Close(rocksdb::IOOptions(), nullptr);
    }
    if (r.ok()) r = sync_dir(tmp_);
    if (r.ok()) r = fs.RenameFile(tmp_, to, rocksdb::IOOptions(), nullptr);
    if (r.ok()) r = sync_dir(snapshots_);
    if (!r.ok()) return to_status(r, what());
    std::filesystem::remove_all(replaced, ec);
    remove_snapshots_below(snapshots_, lsn_);
    return Status::Ok();
  }
  void remove_files() {
    for (size_t i = 0; i < writers_.size(); ++i) {
      writers_[i].reset();
      std::error_code ec;
      if (!paths_[i].empty()) std::filesystem::remove(paths_[i], ec);  // gone if it was moved
    }
  }

  rocksdb::DB* db_;
  LogGuard& log_;
  Batch::Families families_;
  std::array<rocksdb::Options, 3> options_;
  std::string tmp_;
  uint64_t lsn_;
  std::string snapshots_;  // a snapshot's: where it is published
  std::array<std::unique_ptr<rocksdb::SstFileWriter>, 3> writers_;
  std::array<std::string, 3> paths_;
  std::string error_;
  uint64_t bytes_ = 0;
};

// A snapshot's rows, read from its files (one per family that had rows; the default family's,
// which holds the meta row, always exists).
class SnapshotRows final : public RowSource {
 public:
  static Result<std::unique_ptr<SnapshotRows>> open(
      const std::string& dir, uint64_t lsn, const std::array<rocksdb::Options, 3>& options) {
    auto rows = std::unique_ptr<SnapshotRows>(new SnapshotRows());
    rows->name_ = "snapshot at lsn " + std::to_string(lsn);
    for (size_t i = 0; i < rows->readers_.size(); ++i) {
      const std::string path = dir + "/" + kFamilyNames[i] + ".sst";
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) {
        // No rows of that family, if the snapshot says so (the default family's has the meta row).
        if (i != 0 && std::filesystem::exists(dir + "/" + kFamilyNames[i] + ".none", ec)) continue;
        return Status::Corruption(rows->name_ + ": " + path + " is missing");
      }
      auto reader = std::make_unique<rocksdb::SstFileReader>(options[i]);
      if (rocksdb::Status r = reader->Open(path); !r.ok()) {
        return Status::Corruption(rows->name_ + ": " + path + ": " + r.ToString());
      }
      rows->readers_[i] = std::move(reader);
    }
    return rows;
  }

  Status verify() {
    for (const auto& reader : readers_) {
      if (!reader) continue;
      if (rocksdb::Status r = reader->VerifyChecksum(); !r.ok()) {
        return Status::Corruption(name_ + ": " + r.ToString());
      }
    }
    return Status::Ok();
  }

  Status scan(std::string_view prefix,
              const std::function<bool(std::string_view, std::string_view)>& fn,
              std::string_view from, bool bulk) override {
    rocksdb::SstFileReader* reader = readers_[family_of(prefix)].get();
    if (reader == nullptr) return Status::Ok();
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    if (bulk) {
      ro.fill_cache = false;
      ro.readahead_size = 2 << 20;
    }
    std::unique_ptr<rocksdb::Iterator> it(reader->NewIterator(ro));
    for (it->Seek(slice(from > prefix ? from : prefix)); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key();
      if (!k.starts_with(slice(prefix))) break;
      rocksdb::Slice v = it->value();
      if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
    }
    return to_status(it->status(), name_);
  }

  Status get(std::string_view key, std::string& value, bool& found) override {
    found = false;
    return scan(
        key,
        [&](std::string_view k, std::string_view v) {
          if (k == key) {
            value.assign(v);
            found = true;
          }
          return false;
        },
        {}, false);
  }

 private:
  SnapshotRows() = default;
  std::string name_;
  std::array<std::unique_ptr<rocksdb::SstFileReader>, 2> readers_;  // default, holds
};

class RocksStore final : public Store {
 public:
  RocksStore(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& handles,
             std::string dir, const std::array<rocksdb::Options, 3>& options)
      : db_(db), dir_(std::move(dir)), options_(options) {
    std::copy(handles.begin(), handles.end(), families_.begin());
  }
  void set_mark(std::unique_ptr<AckMark> mark, uint64_t acked) {
    mark_ = std::move(mark);
    acked_at_open_ = acked;
  }
  ~RocksStore() override {
    for (rocksdb::ColumnFamilyHandle* h : families_) (void)db_->DestroyColumnFamilyHandle(h);
    (void)db_->Close();
    delete db_;
  }

  Batch batch() override { return Batch(families_); }

  Status write(Batch& batch, bool sync) override {
    if (!batch.status().ok()) return batch.status().context("building batch");
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    Status s = log_.run(
        [&] {
          rocksdb::Status r = db_->Write(wo, &batch.rep());
          if (r.ok()) log_.unsynced = log_.unsynced || !sync;
          return r;
        },
        "write lsn ", batch.lsn);
    if (!s.ok()) return s;
    written_lsn_ = std::max(written_lsn_, batch.lsn);
    return sync ? advance_mark(batch.lsn) : s;
  }

  std::unique_ptr<CheckpointWriter> checkpoint_writer(uint64_t lsn) override {
    return std::make_unique<RocksCheckpoint>(db_, log_, families_, options_,
                                             checkpoint_tmp_dir(dir_), lsn);
  }

  std::vector<uint64_t> snapshots() const override {
    std::vector<uint64_t> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(snapshots_dir(dir_), ec)) {
      const uint64_t lsn = snapshot_lsn(e.path().filename().string());
      if (lsn != 0 && e.is_directory(ec)) found.push_back(lsn);
    }
    std::sort(found.rbegin(), found.rend());
    return found;
  }

  std::unique_ptr<CheckpointWriter> snapshot_writer(uint64_t lsn) override {
    return std::make_unique<RocksCheckpoint>(
        db_, log_, families_, options_, snapshots_dir(dir_) + "/" + snapshot_name(lsn) + ".tmp",
        lsn, snapshots_dir(dir_));
  }

  Result<std::unique_ptr<RowSource>> open_snapshot(uint64_t lsn) override {
    auto rows = snapshot_rows(lsn);
    if (!rows.ok()) return rows.status();
    return std::unique_ptr<RowSource>(std::move(*rows));
  }

  Status verify_tables() override {
    return to_status(db_->VerifyChecksum(rocksdb::ReadOptions()), "verify the table files");
  }

  void remove_snapshots(uint64_t below) override {
    remove_snapshots_below(snapshots_dir(dir_), below);
  }

  Status verify_snapshot(uint64_t lsn) override {
    auto rows = snapshot_rows(lsn);
    return rows.ok() ? (*rows)->verify() : rows.status();
  }

  Result<std::unique_ptr<SnapshotRows>> snapshot_rows(uint64_t lsn) const {
    return SnapshotRows::open(snapshots_dir(dir_) + "/" + snapshot_name(lsn), lsn, options_);
  }

  // RocksDB deletes the files of levels 1 and up in a range without reading them; a file of
  // level 0, or the last file of its key range, only one at a time (the oldest of level 0
  // first). So: the memtable flushed, compactions paused (one running on a damaged file fails
  // and is not retried), the levels emptied by range, then file by file until none is left.
  Status drop_state() override {
    if (Status s = write_repair_mark(true); !s.ok()) return s;
    for (size_t f = 0; f < 2; ++f) {
      const std::string family = kFamilyNames[f];
      rocksdb::FlushOptions fo;
      if (rocksdb::Status r = db_->Flush(fo, families_[f]); !r.ok()) {
        return to_status(r, "drop the state's tables: flush " + family);
      }
      if (rocksdb::Status r = db_->PauseBackgroundWork(); !r.ok()) {
        return to_status(r, "drop the state's tables: pause compactions");
      }
      rocksdb::Status r = rocksdb::DeleteFilesInRange(db_, families_[f], nullptr, nullptr);
      for (int round = 0; r.ok() && round < 1000; ++round) {
        rocksdb::ColumnFamilyMetaData md;
        db_->GetColumnFamilyMetaData(families_[f], &md);
        std::string name;  // the oldest file of the lowest level that has any
        uint64_t oldest = UINT64_MAX;
        for (const rocksdb::LevelMetaData& level : md.levels) {
          for (const rocksdb::SstFileMetaData& file : level.files) {
            if (file.smallest_seqno < oldest) {
              oldest = file.smallest_seqno;
              name = file.name;
            }
          }
          if (!name.empty()) break;
        }
        if (name.empty()) break;
        r = db_->DeleteFile(name);
        if (!r.ok()) r = rocksdb::Status::Corruption("cannot delete " + name, r.ToString());
      }
      (void)db_->ContinueBackgroundWork();
      if (!r.ok()) return to_status(r, "drop the state's tables (" + family + ")");
      rocksdb::ColumnFamilyMetaData md;
      db_->GetColumnFamilyMetaData(families_[f], &md);
      if (md.file_count != 0) {
        return Status::Io("drop the state's tables: " + std::to_string(md.file_count) +
                          " files of " + family + " remain");
      }
    }
    return Status::Ok();
  }

  Status state_repaired() override { return write_repair_mark(false); }

  Status write_repair_mark(bool on) {
    rocksdb::WriteBatch b;
    rocksdb::Status r = on ? b.Put(families_[2], slice(kRepairMarkKey), rocksdb::Slice())
                           : b.Delete(families_[2], slice(kRepairMarkKey));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (r.ok()) r = db_->Write(wo, &b);
    return to_status(r, on ? "mark the store as under repair" : "clear the repair mark");
  }

  Status trim_log(uint64_t lsn) override {
    rocksdb::WriteBatch b;
    rocksdb::Status s = b.DeleteRange(families_[2], log_key_be(0), log_key_be(lsn));
    if (!s.ok()) return to_status(s, "trim the log");
    return log_.run([&] { return db_->Write(rocksdb::WriteOptions(), &b); },
                    "trim the log below lsn ", lsn);
  }

  Status sync_wal() override {
    Status s = log_.run(
        [&] {
          rocksdb::Status r = db_->SyncWAL();
          if (r.ok()) log_.unsynced = false;
          return r;
        },
        "sync WAL");
    return s.ok() ? advance_mark(written_lsn_) : s;
  }

  uint64_t acked_lsn() const override { return acked_at_open_; }
  Status restore_mark(bool& restored) override {
    restored = false;
    return mark_ ? mark_->restore_if_unlinked(dir_, restored) : Status::Ok();
  }
  const std::string& damage_found_at_open() const override { return damage_at_open; }
  std::string damage_at_open;

  Status scan(std::string_view prefix,
              const std::function<bool(std::string_view, std::string_view)>& fn,
              std::string_view from, bool bulk) override {
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    if (bulk) {  // a sixth off a million-hold checkpoint's load (docs/performance.md)
      ro.fill_cache = false;
      ro.readahead_size = 2 << 20;
    }
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, families_[family_of(prefix)]));
    for (it->Seek(slice(from > prefix ? from : prefix)); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key();
      if (!k.starts_with(slice(prefix))) break;
      rocksdb::Slice v = it->value();
      if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
    }
    return to_status(it->status(), "scan");
  }

  Status get(std::string_view key, std::string& value, bool& found) override {
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    rocksdb::Status s = db_->Get(ro, families_[family_of(key)], slice(key), &value);
    found = s.ok();
    if (s.IsNotFound()) return Status::Ok();
    return to_status(s, "get");
  }

 private:
  Status advance_mark(uint64_t lsn) {
    if (!mark_) return Status::Ok();  // read-only
    return mark_->advance(lsn);
  }

  rocksdb::DB* db_;
  std::string dir_;
  std::array<rocksdb::Options, 3> options_;  // per family, for checkpoint files
  Batch::Families families_{};
  std::unique_ptr<AckMark> mark_;  // null when read-only
  uint64_t acked_at_open_ = 0;
  uint64_t written_lsn_ = 0;  // the last lsn written (synced or not)
  LogGuard log_;
};

// The first table file of `family` that cannot be opened (its footer, index and properties read,
// as a paranoid open does), with why; "" if every one opens.
std::string unreadable_log_file(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family,
                                const rocksdb::Options& options) {
  rocksdb::ColumnFamilyMetaData md;
  db->GetColumnFamilyMetaData(family, &md);
  for (const rocksdb::LevelMetaData& level : md.levels) {
    for (const rocksdb::SstFileMetaData& file : level.files) {
      rocksdb::SstFileReader reader(options);
      if (rocksdb::Status r = reader.Open(file.db_path + file.name); !r.ok()) {
        return file.db_path + file.name + ": " + r.ToString();
      }
    }
  }
  return "";
}

// The write-ahead log lives in <dir>/wal/, named so that nobody takes it for disposable logs.
// A store of an earlier version kept its NNNNNN.log files in <dir> itself: they are moved in
// (each rename is atomic; the directories are fsynced) before RocksDB opens the store.
std::string wal_dir_of(const std::string& dir) { return dir + "/wal"; }

// A store (CURRENT) without wal/ is of an earlier layout only if its live log is in `dir`
// itself: RocksDB always keeps one. With none, wal/ was deleted (often with ACKED, both taken
// for disposable): taken for an earlier layout, the store would start without every decision
// since its last checkpoint, acknowledged ones included, and with a new mark.
// A move into wal/ cut short by a crash (move_logs_into_wal_dir) left the logs in wal.moving/:
// the next start finishes it; a read-only open cannot, and says so.
Status check_wal_dir_present(const std::string& dir, bool read_only) {
  std::error_code ec;
  const std::string moving = (std::filesystem::path(dir) / "wal.moving").string();
  if (!std::filesystem::exists(wal_dir_of(dir), ec) && !log_files_in(moving).empty()) {
    if (!read_only) return Status::Ok();
    return Status::Refused("the move of its write-ahead log into " + wal_dir_of(dir) +
                           " was cut short (its logs are in " + moving +
                           "): start stockd once on it to finish the move, then read it");
  }
  if (std::filesystem::exists(wal_dir_of(dir), ec) ||
      !std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec) ||
      !log_files_in(dir).empty()) {
    return Status::Ok();
  }
  return Status::Refused(
      "its write-ahead log is missing: " + wal_dir_of(dir) + " does not exist and " + dir +
      " holds no log of an earlier layout. wal/ was deleted, and with it every decision since "
      "the last checkpoint, acknowledged ones included; restore the data dir from a backup "
      "(never delete wal/ or ACKED)");
}

Status move_logs_into_wal_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path wal = wal_dir_of(dir);
  if (fs::exists(wal, ec) || !fs::exists(fs::path(dir) / "CURRENT", ec)) return Status::Ok();
  const std::vector<fs::path> logs = log_files_in(dir);
  const fs::path tmp = fs::path(dir) / "wal.moving";
  fs::create_directories(tmp, ec);
  for (const fs::path& p : logs) {
    fs::rename(p, tmp / p.filename(), ec);
    if (ec) {
      return Status::Io("cannot move " + p.string() + " into " + wal.string() + ": " +
                        ec.message());
    }
  }
  fs::rename(tmp, wal, ec);  // the new layout appears whole, or not at all
  if (ec) return Status::Io("cannot create " + wal.string() + ": " + ec.message());
  for (const fs::path& d : {fs::path(dir), wal}) {
    const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      (void)::fsync(fd);
      ::close(fd);
    }
  }
  spdlog::warn("moved the write-ahead log of {} into {} (layout of this version)", dir,
               wal.string());
  return Status::Ok();
}

// RocksDB 7.8 keeps the empty log a start creates when nothing is written before the next start
// (its issue 11313, fixed in 8.x): a crash loop, or restarts of an idle server, would leave one
// more file each time. It keeps as well a log whose only record was torn (the first write after
// a start, cut by a crash or a short write), whose torn bytes read as damage in the middle of
// the history once a newer log holds records: every later start refused. With the store open,
// and so its lock held (no other process writes here), a log older than the live one that
// holds no complete record holds nothing and is removed.
void remove_empty_old_logs(rocksdb::DB* db, const std::string& wal_dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<rocksdb::LogFile> live;
  if (!db->GetCurrentWalFile(&live).ok() || live == nullptr) return;
  size_t removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(wal_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    uint64_t number = 0;
    const auto [ptr, err] = std::from_chars(name.data(), name.data() + name.size(), number);
    std::error_code size_ec;
    if (err != std::errc() || std::string_view(ptr) != ".log" || number >= live->LogNumber() ||
        !it->is_regular_file(size_ec) || size_ec || !log_holds_no_record(it->path().string())) {
      continue;
    }
    if (fs::remove(it->path(), size_ec)) ++removed;
  }
  if (removed == 0) return;
  const int fd = ::open(wal_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

// The mark for a store in `dir`: created with a new store; required by a store made since marks
// exist (it has a wal/ dir); created for an older one (which could not be checked this once).
// Sets `mark` (left empty when read-only) and `acked`.
Status open_mark(const std::string& dir, bool store_exists, bool had_wal_dir, bool read_only,
                 uint64_t& acked, std::unique_ptr<AckMark>& mark) {
  bool found = false;
  // The way out when only the mark was lost or damaged (the log intact): the operator's call.
  const std::string rewrite =
      "; if only " + std::string(kAckMarkFile) +
      " was deleted or damaged and wal/ is intact, `stockctl mark rewrite --data-dir " + dir +
      "` writes it again at the log's end; else restore the data dir from a backup";
  if (Status s = AckMark::read(dir, acked, found); !s.ok()) {
    return s.code() == Status::Code::kCorruption ? Status::Corruption(s.message() + rewrite) : s;
  }
  if (!found && store_exists && had_wal_dir) {
    return Status::Refused(std::string(kAckMarkFile) +
                           " (the acknowledged mark) is missing: it says how much of the log was "
                           "answered, and without it a lost log cannot be told from a small "
                           "store" +
                           rewrite);
  }
  if (found && !store_exists && acked > 0) {
    return Status::Refused("the store's files are missing but its " + std::string(kAckMarkFile) +
                           " mark says lsn " + std::to_string(acked) +
                           " was acknowledged: the data was deleted; restore it from a backup "
                           "(or remove the whole data dir to start empty)");
  }
  if (read_only) return Status::Ok();
  Result<std::unique_ptr<AckMark>> opened = AckMark::open(dir, true);
  if (!opened.ok()) return opened.status();
  if (!found && store_exists) {
    spdlog::warn("{}: created the acknowledged mark for a store of an earlier version", dir);
  }
  mark = std::move(*opened);
  return Status::Ok();
}

}  // namespace

Batch::Batch(const Families& families)
    : rep_(std::make_unique<rocksdb::WriteBatch>()), families_(families) {}
Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

void Batch::clear() {
  rep_->Clear();
  lsn = 0;
  ops_ = 0;
  status_ = Status::Ok();
}

void Batch::put(std::string_view key, std::string_view value) {
  rocksdb::Status s = rep_->Put(families_[family_of(key)], slice(key), slice(value));
  if (!s.ok() && status_.ok()) status_ = Status::Io(s.ToString());
  ++ops_;
}

void Batch::del_range(std::string_view from, std::string_view to) {
  rocksdb::Status s = rep_->DeleteRange(families_[family_of(from)], slice(from), slice(to));
  if (!s.ok() && status_.ok()) status_ = Status::Io(s.ToString());
  ++ops_;
}

void Batch::del(std::string_view key) {
  rocksdb::Status s = rep_->Delete(families_[family_of(key)], slice(key));
  if (!s.ok() && status_.ok()) status_ = Status::Io(s.ToString());
  ++ops_;
}

Result<std::unique_ptr<Store>> Store::open(const std::string& dir, const StoreOptions& options) {
  const std::string cannot = "cannot open store in " + dir;
  if (options.without_mark && !options.read_only) {
    return Status::Invalid(cannot + ": without_mark is for a read-only open");
  }
  rocksdb::DBOptions o;
  o.create_if_missing = options.create_if_missing;
  // Safety over defaults: a torn last record (the write that was never acknowledged) is
  // dropped; corruption anywhere else stops the open instead of silently shortening history.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  o.paranoid_checks = true;
  o.max_open_files = 256;
  o.allow_concurrent_memtable_write = false;  // required by the vector memtable; one writer
  o.IncreaseParallelism(2);
  // The default family may see only a few rows per group (a hot SKU, meta) and rarely fill its
  // memtable; past this much WAL, RocksDB flushes it so that old WAL files can go.
  o.max_total_wal_size = 512 << 20;
  // Table files (a checkpoint's, a flush's, a compaction's) are handed to the disk a megabyte at
  // a time as they are written, not all at their final fsync: on ext4 (data=ordered) a WAL
  // fdatasync that commits the journal waits for every dirty page pending, so tens of MB left
  // dirty by a checkpoint would stall the group commits behind it.
  o.bytes_per_sync = 1 << 20;
  o.info_log = std::make_shared<RocksLogger>();
  if (options.env != nullptr) o.env = options.env;

  // Throughput on few cores: every request writes a few small rows that are mostly read only at
  // recovery, so spend as little CPU as possible after the WAL. Measured with stockbench (see
  // docs/performance.md): no compression, larger memtables (fewer flushes and compactions), and
  // insert hints for keys that grow in order within a table (hold ids, outbox sequence numbers).
  rocksdb::ColumnFamilyOptions cf;
  cf.compression = rocksdb::kNoCompression;
  cf.write_buffer_size = 128 << 20;
  cf.max_write_buffer_number = 4;
  cf.level0_file_num_compaction_trigger = 8;
  cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(2));
  rocksdb::BlockBasedTableOptions t;
  t.checksum = rocksdb::kXXH3;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::ColumnFamilyOptions state = cf;
  state.write_buffer_size = 32 << 20;
  // The default family's rows are rewritten in place on random keys (a SKU per request when a
  // sale spans many SKUs) and read only at start: an unsorted vector memtable takes an insert
  // without the skiplist's key comparisons (sorted once, at flush or when scanned).
  state.memtable_factory.reset(new rocksdb::VectorRepFactory);
  // The log takes one insert per group (no hint needed) and range deletes when it is trimmed:
  // RocksDB 7.8 mixes up insert hints of point keys and range tombstones (its issue 5118, fixed
  // in 9.x by PR 12558), which corrupts the memtable, so the log has no hint extractor.
  rocksdb::ColumnFamilyOptions log = cf;
  log.memtable_insert_with_hint_prefix_extractor.reset();
  log.write_buffer_size = 64 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(kFamilyNames[0], state);
  families.emplace_back(kFamilyNames[1], cf);
  families.emplace_back(kFamilyNames[2], log);

  // Create a new store's directory ourselves: RocksDB would log an ERROR line ("Error when
  // reading ... dir NotFound") on every first start before creating it.
  if (options.create_if_missing && !options.read_only) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);  // a failure is reported by the open below
    if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) {
      std::filesystem::create_directories(wal_dir_of(dir), ec);  // a new store's log dir
    }
  }
  // kTolerateCorruptedTailRecords takes an acknowledged record whose length was damaged to run
  // past the end of the last log for a torn tail and drops it with all that follows. Tell the
  // two apart first, for the read-only inspection too, so that both say the same.
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    return Status::Invalid(cannot + ": it is not a directory");
  }
  const bool had_wal_dir = std::filesystem::exists(wal_dir_of(dir), ec);
  if (Status s = check_wal_dir_present(dir, options.read_only); !s.ok()) return s.context(cannot);
  if (!options.read_only) {
    if (Status s = move_logs_into_wal_dir(dir); !s.ok()) return s.context(cannot);
  }
  // Read-only inspection of an older layout reads its logs where they are.
  o.wal_dir = options.read_only && !had_wal_dir ? dir : wal_dir_of(dir);
  if (Status damage = check_wal_tail(o.wal_dir); !damage.ok()) return damage.context(cannot);
  // Families are created with a new store only: an existing one without them (an older
  // layout) is refused as it is, not changed.
  std::vector<std::string> have;
  const bool exists = rocksdb::DB::ListColumnFamilies(o, dir, &have).ok();
  const bool existed = std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec);
  o.create_missing_column_families = options.create_if_missing && !exists;
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  const auto open_db = [&] {
    return options.read_only ? rocksdb::DB::OpenForReadOnly(o, dir, families, &handles, &db)
                             : rocksdb::DB::Open(o, dir, families, &handles, &db);
  };
  // The mark's refusals before RocksDB opens the store: a writable open makes a new log file,
  // and a start refused for a lost mark must leave the data dir as it found it (that new, empty
  // log then passed stockctl mark rewrite's "wal/ holds a log" check after an emptied wal/).
  if (!options.without_mark) {
    uint64_t acked = 0;
    std::unique_ptr<AckMark> none;
    if (Status m = open_mark(dir, existed, had_wal_dir, /*read_only=*/true, acked, none); !m.ok()) {
      return m.context(cannot);
    }
  }
  rocksdb::Status s = open_db();
  // A damaged table file (its footer, index or properties, which the open reads) stops the open
  // with paranoid checks. It may be a file of the state, which recovery can do without (it falls
  // back on a snapshot, then drops those files): opened again without them, the damage is kept
  // to be reported (damage_found_at_open()), and recovery treats the checkpoint as damaged. Only
  // if every table file of the log opens: a snapshot does not replace decisions, and RocksDB
  // 7.8 fails an assertion (aborts) reading a family whose file is missing.
  std::string damage;
  const std::string why = s.ToString();  // a table file is named *.sst (or *.ldb, its old name)
  if (s.IsCorruption() &&
      (why.find(".sst") != std::string::npos || why.find(".ldb") != std::string::npos) &&
      std::filesystem::exists(snapshots_dir(dir), ec)) {
    damage = cannot + ": " + why;
    o.paranoid_checks = false;
    // First read-only (a refusal changes nothing in the data dir), to check the log's files.
    handles.clear();
    s = rocksdb::DB::OpenForReadOnly(o, dir, families, &handles, &db);
    if (s.ok()) {
      const std::string bad = unreadable_log_file(db, handles[2], {o, families[2].options});
      for (rocksdb::ColumnFamilyHandle* h : handles) (void)db->DestroyColumnFamilyHandle(h);
      delete db;
      db = nullptr;
      if (!bad.empty()) {
        return Status::Corruption(damage + " (a table file of the log: " + bad + ")");
      }
      handles.clear();
      s = open_db();
    }
  }
  if (!s.ok()) {
    std::string error = cannot + ": " + s.ToString();
    if (s.IsInvalidArgument() && exists) {
      std::string list;
      for (const std::string& f : have) list += (list.empty() ? "" : ", ") + f;
      const bool earlier = std::find(have.begin(), have.end(), "outbox") != have.end();
      error += earlier ? " (its column families are [" + list +
                             "]: the layout of an earlier stockd, which wrote state rows and "
                             "outbox records per group; with that stockd's server stopped, "
                             "convert it with `stockctl migrate --data-dir " +
                             dir + "`)"
                       : " (its column families are [" + list +
                             "], not default, holds and log: not a store of this stockd version)";
      return Status::Refused(std::move(error));
    }
    return s.IsCorruption() ? Status::Corruption(std::move(error)) : Status::Io(std::move(error));
  }
  std::array<rocksdb::Options, 3> per_family;
  for (size_t i = 0; i < per_family.size(); ++i) {
    per_family[i] = rocksdb::Options(o, families[i].options);
  }
  if (!options.read_only) {  // a checkpoint cut short by a crash left its files behind
    std::error_code ec;
    std::filesystem::remove_all(checkpoint_tmp_dir(dir), ec);
    for (const auto& e : std::filesystem::directory_iterator(snapshots_dir(dir), ec)) {
      if (e.path().extension() != ".tmp") continue;
      // A snapshot moved aside to be replaced by one at its lsn, and the crash came before the
      // new one was in place: it is put back (it may be the only fallback). Else: cut short.
      const std::string name = e.path().filename().string();
      const std::string replaced = ".replaced.tmp";
      if (name.ends_with(replaced)) {
        const auto back = e.path().parent_path() / name.substr(0, name.size() - replaced.size());
        if (!std::filesystem::exists(back, ec)) {
          std::filesystem::rename(e.path(), back, ec);
          if (!ec) continue;
        }
      }
      std::filesystem::remove_all(e.path(), ec);
    }
    remove_empty_old_logs(db, o.wal_dir);
  }
  // A repair cut short: the state's tables hold what its drop left of them.
  std::string repair;
  if (rocksdb::Status m =
          db->Get(rocksdb::ReadOptions(), handles[2], slice(kRepairMarkKey), &repair);
      m.ok()) {
    damage += std::string(damage.empty() ? "" : "; ") +
              "a repair of the state was cut short: its table files were being dropped to be "
              "written anew";
  } else if (!m.IsNotFound()) {
    for (rocksdb::ColumnFamilyHandle* h : handles) (void)db->DestroyColumnFamilyHandle(h);
    delete db;
    return to_status(m, cannot + ": read the repair mark");
  }
  auto store = std::make_unique<RocksStore>(db, handles, dir, per_family);
  store->damage_at_open = std::move(damage);
  // The mark after RocksDB: a damaged CURRENT or MANIFEST is reported by RocksDB by name.
  uint64_t acked = 0;
  std::unique_ptr<AckMark> mark;
  if (!options.without_mark) {
    if (Status m = open_mark(dir, existed, had_wal_dir, options.read_only, acked, mark); !m.ok()) {
      return m.context(cannot);
    }
  }
  store->set_mark(std::move(mark), acked);
  return std::unique_ptr<Store>(std::move(store));
}

WalWriter::WalWriter(Store& store, bool sync, int interval_ms, std::function<void()> notify,
                     int spin_us)
    : store_(store),
      sync_(sync),
      interval_ms_(interval_ms),
      spin_us_(spin_us),
      notify_(std::move(notify)) {
  queue_.reserve(kSpareBatches);
  spare_.reserve(kSpareBatches);
  thread_ = std::thread([this] { run(); });
}

WalWriter::~WalWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

Batch WalWriter::recycled() {
  {
    std::lock_guard lock(mu_);
    if (!spare_.empty()) {
      Batch b = std::move(spare_.back());
      spare_.pop_back();
      return b;
    }
  }
  return store_.batch();
}

void WalWriter::submit(Batch batch) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(batch));
    ++in_flight_;
    wake_token_ = 0;
  }
  cv_.notify_one();
}

void WalWriter::wake_at(std::chrono::steady_clock::time_point at, uint64_t token) {
  {
    std::lock_guard lock(mu_);
    wake_at_ = at;
    wake_token_ = token;
  }
  cv_.notify_one();
}

uint64_t WalWriter::take_woken() {
  std::lock_guard lock(mu_);
  return std::exchange(woken_, 0);
}

// Sync mode: sleeps until a batch comes or the writer stops; an armed wake that comes due first
// calls notify_ (the loop then seals what it gathered) and the wait goes on.
void WalWriter::wait_for_batch(std::unique_lock<std::mutex>& lock) {
  using Clock = std::chrono::steady_clock;
  // Wait a little by yielding before sleeping: the next group usually comes within a group
  // write's time, and a futex wake-up on a busy machine costs more than that.
  const auto until = Clock::now() + std::chrono::microseconds(spin_us_);
  while (queue_.empty() && !stop_ && Clock::now() < until) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
  const auto ready = [this] { return stop_ || !queue_.empty(); };
  while (!ready()) {
    if (wake_token_ == 0) {
      cv_.wait(lock, [&] { return ready() || wake_token_ != 0; });
    } else if (!cv_.wait_until(lock, wake_at_, [&] { return ready() || wake_token_ == 0; })) {
      woken_ = std::exchange(wake_token_, 0);
      lock.unlock();
      notify_();
      lock.lock();
    }
  }
}

std::vector<WalWriter::Done> WalWriter::take_done() {
  std::lock_guard lock(mu_);
  std::vector<Done> out;
  out.swap(done_);
  for (const auto& d : out) {
    if (d.lsn != 0) --in_flight_;  // lsn 0: a periodic sync, not a submitted batch
  }
  return out;
}

uint64_t WalWriter::synced_lsn() const {
  std::lock_guard lock(mu_);
  return synced_lsn_;
}

size_t WalWriter::in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}

void WalWriter::run() {
  (void)pthread_setname_np(pthread_self(), "stockd-wal");  // for top -H, perf, /proc/PID/task
  using Clock = std::chrono::steady_clock;
  const bool periodic = !sync_ && interval_ms_ > 0;
  auto next_sync = Clock::now() + std::chrono::milliseconds(interval_ms_);
  bool unsynced = false;
  std::unique_lock lock(mu_);
  for (;;) {
    if (periodic) {
      cv_.wait_until(lock, next_sync, [this] { return stop_ || !queue_.empty(); });
    } else {
      wait_for_batch(lock);
    }
    if (periodic && unsynced && failed_.empty() &&
        (Clock::now() >= next_sync || (stop_ && queue_.empty()))) {
      const uint64_t covered = written_lsn_;  // the batches written before the sync
      lock.unlock();
      Status s = store_.sync_wal();
      lock.lock();
      unsynced = false;
      next_sync = Clock::now() + std::chrono::milliseconds(interval_ms_);
      if (s.ok()) {
        synced_lsn_ = std::max(synced_lsn_, covered);  // the outbox may serve what it covers
      } else {
        failed_ = s.message();  // reported to the loop as a store failure
      }
      done_.push_back({0, 0, 0, std::move(s)});
      lock.unlock();
      notify_();
      lock.lock();
    } else if (periodic && Clock::now() >= next_sync) {
      next_sync = Clock::now() + std::chrono::milliseconds(interval_ms_);
    }
    if (queue_.empty()) {
      if (stop_) return;
      continue;
    }
    Batch b = std::move(queue_.front());
    queue_.erase(queue_.begin());
    lock.unlock();
    auto start = Clock::now();
    Status s = failed_.empty() ? store_.write(b, sync_)
                               : Status::Io("not written: the store failed earlier: " + failed_);
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
    lock.lock();
    if (!s.ok() && failed_.empty()) failed_ = s.message();
    if (s.ok()) {
      written_lsn_ = b.lsn;
      if (sync_) synced_lsn_ = b.lsn;
    }
    unsynced = unsynced || !sync_;
    done_.push_back({b.lsn, b.size(), us.count(), std::move(s)});
    if (spare_.size() < kSpareBatches && b.rep().Data().capacity() <= kSpareBytesMax) {
      b.clear();
      spare_.push_back(std::move(b));
    }
    lock.unlock();
    notify_();
    lock.lock();
  }
}

std::vector<std::filesystem::path> log_files_in(const std::string& dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> logs;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".log") logs.push_back(e.path());
  }
  return logs;
}

}  // namespace stockd::storage
