// The data dir's own lock: a server holds it for as long as it runs, so no second server (nor
// stockctl migrate or mark rewrite) writes the dir meanwhile. RocksDB's LOCK is not enough: it is
// held only while the store is open, and a server whose store failed closes it and opens it
// again each second; a second server started in between took the store, acknowledged groups,
// and the first one's reopen then deleted them as its own failed group.
//
// An open file description lock (F_OFD_SETLK) on <dir>/stockd.lock, a regular file: NFS passes
// it to the server (flock on a directory stays local to one host there), it conflicts between
// two opens in one process too (in-process tests), and it goes away with the process, however
// it ends. Readers (stockctl inspect, verify) only ask whether it is held, and hold nothing: a
// server starting during a long verify is not kept from starting.
#pragma once

#include <memory>
#include <string>

#include "stockd/status.h"

namespace stockd::storage {

inline constexpr const char* kDirLockFile = "stockd.lock";

class DirLock {
 public:
  // Locks `dir` (which must exist), creating its lock file if need be. Refused when another
  // process (or another DirLock) holds it; Io when the file cannot be opened or locked.
  static Result<std::unique_ptr<DirLock>> take(const std::string& dir);
  // Refused if a DirLock on `dir` is held now; Ok if not (or `dir` has no lock file).
  static Status check_free(const std::string& dir);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

  // Ok while `dir`'s lock file is still the one locked here; Refused when it is not: the path
  // now names another directory (a symlink repointed, the dir moved and replaced), whose store
  // this server must not open.
  Status still_ours(const std::string& dir) const;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace stockd::storage
