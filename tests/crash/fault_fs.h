// A test-only RocksDB file system that simulates losing power.
//
// Wraps a real FileSystem and remembers, for every file written through it, how many bytes
// were appended and how many of those were made durable: by Sync or Fsync (everything so far),
// RangeSync (up to the end of the range, when it continues the synced prefix) or a successful
// Close (a simplification: a real close syncs nothing, but RocksDB syncs every file it relies on
// before closing it, and a WAL's last bytes are synced by the write that needed them).
//
// power_off() is the instant of the crash: from then on every write, sync, create, rename and
// delete fails, as on a machine without power. It waits for operations already under way, so
// each one happened wholly before the crash or not at all. Reads keep working: the dying
// process may still read what it wrote, but nothing it does can reach the disk any more.
//
// After every DB on it was closed, drop_unsynced() makes the files look like the disk after
// the reboot:
//   - each file is cut back to its last synced size: data appended after the last sync is lost;
//   - a file created since the last fsync of its directory and never synced is deleted.
// Deletes and renames done before the crash are kept (RocksDB fsyncs the directory after the
// renames it relies on; a deleted obsolete file coming back would be harmless).
//
// Real fsyncs are skipped: the simulation, not the disk, decides what survives, and a shared
// machine is spared thousands of fsyncs. Instead a file sync takes `sync_latency` (a sleep
// before it counts), so that a crash can land while a sync is under way, as on a real disk: the
// bytes it was syncing are then lost and the sync fails. Thread-safe: RocksDB calls it from
// its own threads.
#pragma once

#include <rocksdb/file_system.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

namespace stockd::crash {

class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(std::shared_ptr<rocksdb::FileSystem> base,
                   std::chrono::microseconds sync_latency = std::chrono::microseconds(0));
  const char* Name() const override { return "StockdFaultFs"; }
  std::chrono::microseconds sync_latency() const { return sync_latency_; }

  // The crash. Idempotent.
  void power_off();
  // The disk answers again: what failed in between models a transient I/O error (EIO once).
  void power_on();
  // The crash lands on the first delete of a file whose path `when` accepts (that delete fails):
  // a crash between two steps of a multi-step change, such as dropping a family's files.
  void power_off_at_delete(std::function<bool(const std::string&)> when);
  // The crash lands on the first sync of a file whose path `when` accepts (that sync fails):
  // a write of the log that fails, staged at a chosen point (`when` may count).
  void power_off_at_sync(std::function<bool(const std::string&)> when);

  struct Dropped {
    std::string file;
    uint64_t bytes = 0;    // unsynced bytes cut off (the whole size if deleted)
    bool deleted = false;  // a never-synced file created since its directory's last fsync
  };
  // Applies the crash to the real files. Call after power_off() and after the DB was closed.
  // Returns what was lost; `error` is set if a file could not be cut or deleted.
  std::vector<Dropped> drop_unsynced(std::string& error);

  // ---- rocksdb::FileSystem ----
  using IOStatus = rocksdb::IOStatus;
  using FileOptions = rocksdb::FileOptions;
  using IOOptions = rocksdb::IOOptions;
  using IODebugContext = rocksdb::IODebugContext;

  IOStatus NewWritableFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<rocksdb::FSWritableFile>* r,
                           IODebugContext* dbg) override;
  IOStatus ReopenWritableFile(const std::string& f, const FileOptions& o,
                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                              IODebugContext* dbg) override;
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old, const FileOptions& o,
                             std::unique_ptr<rocksdb::FSWritableFile>* r,
                             IODebugContext* dbg) override;
  IOStatus NewRandomRWFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                           IODebugContext* dbg) override;
  IOStatus NewDirectory(const std::string& name, const IOOptions& o,
                        std::unique_ptr<rocksdb::FSDirectory>* r, IODebugContext* dbg) override;
  IOStatus DeleteFile(const std::string& f, const IOOptions& o, IODebugContext* dbg) override;
  IOStatus RenameFile(const std::string& s, const std::string& t, const IOOptions& o,
                      IODebugContext* dbg) override;
  IOStatus LinkFile(const std::string& s, const std::string& t, const IOOptions& o,
                    IODebugContext* dbg) override;
  IOStatus Truncate(const std::string& f, size_t size, const IOOptions& o,
                    IODebugContext* dbg) override;
  IOStatus CreateDir(const std::string& d, const IOOptions& o, IODebugContext* dbg) override;
  IOStatus CreateDirIfMissing(const std::string& d, const IOOptions& o,
                              IODebugContext* dbg) override;
  IOStatus DeleteDir(const std::string& d, const IOOptions& o, IODebugContext* dbg) override;

  // ---- For the file and directory wrappers. ----
  // Holds the power on for one operation: while a Power is alive, power_off() waits.
  class Power {
   public:
    explicit Power(const FaultFs& fs) : lock_(fs.power_mu_), on_(fs.power_on_) {}
    bool on() const { return on_; }

   private:
    std::shared_lock<std::shared_mutex> lock_;
    bool on_;
  };
  static IOStatus off_error();
  void appended(const std::string& path, uint64_t end);  // the file now has `end` bytes
  void truncated(const std::string& path, uint64_t size);
  void synced(const std::string& path, uint64_t from, uint64_t upto);  // bytes [from, upto)
  void synced_all(const std::string& path);
  void dir_synced(const std::string& dir);
  void about_to_sync(const std::string& path);  // power_off_at_sync's crash, if it lands here

 private:
  struct FileState {
    uint64_t size = 0;
    uint64_t synced = 0;
  };
  // Starts tracking `path` as created by us (new) or existing (its bytes already durable).
  void track(const std::string& path, bool existed, uint64_t size);

  const std::chrono::microseconds sync_latency_;
  mutable std::shared_mutex power_mu_;
  bool power_on_ = true;
  std::mutex mu_;
  std::function<bool(const std::string&)> off_at_delete_;  // guarded by mu_
  std::function<bool(const std::string&)> off_at_sync_;    // guarded by mu_
  std::map<std::string, FileState> files_;                 // normalized path -> state
  std::map<std::string, std::set<std::string>> fresh_;     // dir -> files created since its fsync
};

}  // namespace stockd::crash
