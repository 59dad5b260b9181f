#include "fault_fs.h"

#include <filesystem>
#include <thread>
#include <utility>

namespace stockd::crash {
namespace {

namespace fs = std::filesystem;
using rocksdb::IOStatus;

std::string norm(const std::string& path) { return fs::path(path).lexically_normal().string(); }
std::string dir_of(const std::string& path) {
  return fs::path(path).lexically_normal().parent_path().string();
}

// A file written through FaultFs: every write is refused once the power is off, and every
// append and sync is reported back. Syncs do not reach the disk (see fault_fs.h).
class FaultFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultFile(std::unique_ptr<rocksdb::FSWritableFile> f, FaultFs& fs, std::string path)
      : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), path_(std::move(path)) {}

  IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                  rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    IOStatus s = target()->Append(data, o, dbg);
    if (s.ok()) fs_.appended(path_, target()->GetFileSize(o, dbg));
    return s;
  }
  IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                  const rocksdb::DataVerificationInfo& info,
                  rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    IOStatus s = target()->Append(data, o, info, dbg);
    if (s.ok()) fs_.appended(path_, target()->GetFileSize(o, dbg));
    return s;
  }
  IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                            const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    IOStatus s = target()->PositionedAppend(data, offset, o, dbg);
    if (s.ok()) fs_.appended(path_, offset + data.size());
    return s;
  }
  IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                            const rocksdb::IOOptions& o, const rocksdb::DataVerificationInfo& info,
                            rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    IOStatus s = target()->PositionedAppend(data, offset, o, info, dbg);
    if (s.ok()) fs_.appended(path_, offset + data.size());
    return s;
  }
  IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o,
                    rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    IOStatus s = target()->Truncate(size, o, dbg);
    if (s.ok()) fs_.truncated(path_, size);
    return s;
  }
  IOStatus Flush(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    return target()->Flush(o, dbg);
  }
  IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return sync(); }
  IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return sync(); }
  IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions&,
                     rocksdb::IODebugContext*) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    fs_.synced(path_, offset, offset + nbytes);
    return IOStatus::OK();
  }
  IOStatus Close(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    IOStatus s = target()->Close(o, dbg);
    if (s.ok()) fs_.synced_all(path_);
    return s;
  }
  IOStatus Allocate(uint64_t offset, uint64_t len, const rocksdb::IOOptions& o,
                    rocksdb::IODebugContext* dbg) override {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    return target()->Allocate(offset, len, o, dbg);
  }

 private:
  // The disk takes a while; the power may go off meanwhile, and then nothing was synced.
  IOStatus sync() {
    if (fs_.sync_latency().count() > 0) std::this_thread::sleep_for(fs_.sync_latency());
    fs_.about_to_sync(path_);
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    fs_.synced_all(path_);
    return IOStatus::OK();
  }
  FaultFs& fs_;
  std::string path_;
};

// A directory handle: its fsync makes the names created in it durable.
class FaultDir : public rocksdb::FSDirectoryWrapper {
 public:
  FaultDir(std::unique_ptr<rocksdb::FSDirectory> d, FaultFs& fs, std::string dir)
      : FSDirectoryWrapper(std::move(d)), fs_(fs), dir_(std::move(dir)) {}
  IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return sync(); }
  IOStatus FsyncWithDirOptions(const rocksdb::IOOptions&, rocksdb::IODebugContext*,
                               const rocksdb::DirFsyncOptions&) override {
    return sync();
  }

 private:
  IOStatus sync() {
    FaultFs::Power p(fs_);
    if (!p.on()) return FaultFs::off_error();
    fs_.dir_synced(dir_);
    return IOStatus::OK();
  }
  FaultFs& fs_;
  std::string dir_;
};

}  // namespace

FaultFs::FaultFs(std::shared_ptr<rocksdb::FileSystem> base, std::chrono::microseconds sync_latency)
    : FileSystemWrapper(base), sync_latency_(sync_latency) {}

IOStatus FaultFs::off_error() {
  return IOStatus::IOError("simulated power loss: the power is off");
}

void FaultFs::power_off() {
  std::unique_lock lock(power_mu_);
  power_on_ = false;
}

void FaultFs::power_on() {
  std::unique_lock lock(power_mu_);
  power_on_ = true;
}

void FaultFs::track(const std::string& path, bool existed, uint64_t size) {
  std::lock_guard lock(mu_);
  const std::string p = norm(path);
  files_[p] = {size, size};
  if (!existed) fresh_[dir_of(p)].insert(p);
}

void FaultFs::appended(const std::string& path, uint64_t end) {
  std::lock_guard lock(mu_);
  FileState& f = files_[norm(path)];
  f.size = std::max(f.size, end);
}

void FaultFs::truncated(const std::string& path, uint64_t size) {
  std::lock_guard lock(mu_);
  FileState& f = files_[norm(path)];
  f.size = size;
  f.synced = std::min(f.synced, size);
}

void FaultFs::synced(const std::string& path, uint64_t from, uint64_t upto) {
  std::lock_guard lock(mu_);
  FileState& f = files_[norm(path)];
  if (from <= f.synced) f.synced = std::max(f.synced, std::min(upto, f.size));
}

void FaultFs::synced_all(const std::string& path) {
  std::lock_guard lock(mu_);
  FileState& f = files_[norm(path)];
  f.synced = f.size;
}

void FaultFs::dir_synced(const std::string& dir) {
  std::lock_guard lock(mu_);
  fresh_.erase(norm(dir));
}

IOStatus FaultFs::NewWritableFile(const std::string& f, const FileOptions& o,
                                  std::unique_ptr<rocksdb::FSWritableFile>* r,
                                  IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  const bool existed = target()->FileExists(f, IOOptions(), dbg).ok();
  IOStatus s = target()->NewWritableFile(f, o, r, dbg);
  if (!s.ok()) return s;
  track(f, existed, 0);  // an existing file was truncated: none of the new bytes are durable
  *r = std::make_unique<FaultFile>(std::move(*r), *this, f);
  return s;
}

IOStatus FaultFs::ReopenWritableFile(const std::string& f, const FileOptions& o,
                                     std::unique_ptr<rocksdb::FSWritableFile>* r,
                                     IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  uint64_t size = 0;
  const bool existed = target()->GetFileSize(f, IOOptions(), &size, dbg).ok();
  IOStatus s = target()->ReopenWritableFile(f, o, r, dbg);
  if (!s.ok()) return s;
  track(f, existed, existed ? size : 0);  // what was there before us counts as durable
  *r = std::make_unique<FaultFile>(std::move(*r), *this, f);
  return s;
}

IOStatus FaultFs::ReuseWritableFile(const std::string& f, const std::string& old,
                                    const FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  IOStatus s = target()->ReuseWritableFile(f, old, o, r, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard lock(mu_);
    files_.erase(norm(old));
    fresh_[dir_of(old)].erase(norm(old));
  }
  track(f, false, 0);  // a recycled log: its old bytes are not ours to keep
  *r = std::make_unique<FaultFile>(std::move(*r), *this, f);
  return s;
}

// Random read-write files are not used by the stores under test (they serve external file
// ingestion); they are refused once the power is off but not tracked.
IOStatus FaultFs::NewRandomRWFile(const std::string& f, const FileOptions& o,
                                  std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                  IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  return target()->NewRandomRWFile(f, o, r, dbg);
}

IOStatus FaultFs::NewDirectory(const std::string& name, const IOOptions& o,
                               std::unique_ptr<rocksdb::FSDirectory>* r, IODebugContext* dbg) {
  IOStatus s = target()->NewDirectory(name, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultDir>(std::move(*r), *this, norm(name));
  return s;
}

void FaultFs::power_off_at_delete(std::function<bool(const std::string&)> when) {
  std::lock_guard lock(mu_);
  off_at_delete_ = std::move(when);
}

void FaultFs::power_off_at_sync(std::function<bool(const std::string&)> when) {
  std::lock_guard lock(mu_);
  off_at_sync_ = std::move(when);
}

void FaultFs::about_to_sync(const std::string& path) {
  bool off = false;
  {
    std::lock_guard lock(mu_);
    off = off_at_sync_ && off_at_sync_(path);
  }
  if (off) power_off();
}

IOStatus FaultFs::DeleteFile(const std::string& f, const IOOptions& o, IODebugContext* dbg) {
  bool off = false;
  {
    std::lock_guard lock(mu_);
    off = off_at_delete_ && off_at_delete_(f);
  }
  if (off) power_off();
  Power p(*this);
  if (!p.on()) return off_error();
  IOStatus s = target()->DeleteFile(f, o, dbg);
  if (s.ok()) {
    std::lock_guard lock(mu_);
    files_.erase(norm(f));
    fresh_[dir_of(f)].erase(norm(f));
  }
  return s;
}

IOStatus FaultFs::RenameFile(const std::string& s, const std::string& t, const IOOptions& o,
                             IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  IOStatus st = target()->RenameFile(s, t, o, dbg);
  if (!st.ok()) return st;
  std::lock_guard lock(mu_);
  const std::string from = norm(s), to = norm(t);
  auto it = files_.find(from);
  files_.erase(to);
  fresh_[dir_of(to)].erase(to);
  if (it != files_.end()) {
    files_[to] = it->second;
    files_.erase(it);
  }
  if (fresh_[dir_of(from)].erase(from) > 0) fresh_[dir_of(to)].insert(to);
  return st;
}

IOStatus FaultFs::LinkFile(const std::string& s, const std::string& t, const IOOptions& o,
                           IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  return target()->LinkFile(s, t, o, dbg);
}

IOStatus FaultFs::Truncate(const std::string& f, size_t size, const IOOptions& o,
                           IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  IOStatus s = target()->Truncate(f, size, o, dbg);
  if (s.ok()) truncated(f, size);
  return s;
}

IOStatus FaultFs::CreateDir(const std::string& d, const IOOptions& o, IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  return target()->CreateDir(d, o, dbg);
}

IOStatus FaultFs::CreateDirIfMissing(const std::string& d, const IOOptions& o,
                                     IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  return target()->CreateDirIfMissing(d, o, dbg);
}

IOStatus FaultFs::DeleteDir(const std::string& d, const IOOptions& o, IODebugContext* dbg) {
  Power p(*this);
  if (!p.on()) return off_error();
  return target()->DeleteDir(d, o, dbg);
}

std::vector<FaultFs::Dropped> FaultFs::drop_unsynced(std::string& error) {
  std::lock_guard lock(mu_);
  std::vector<Dropped> out;
  for (const auto& [path, f] : files_) {
    std::error_code ec;
    const uint64_t size = fs::file_size(path, ec);
    if (ec) continue;  // gone already
    auto fresh = fresh_.find(dir_of(path));
    if (f.synced == 0 && fresh != fresh_.end() && fresh->second.contains(path)) {
      if (!fs::remove(path, ec) || ec) error = "cannot delete " + path + ": " + ec.message();
      out.push_back({path, size, true});
    } else if (size > f.synced) {
      fs::resize_file(path, f.synced, ec);
      if (ec) error = "cannot truncate " + path + ": " + ec.message();
      out.push_back({path, size - f.synced, false});
    }
  }
  files_.clear();
  fresh_.clear();
  return out;
}

}  // namespace stockd::crash
