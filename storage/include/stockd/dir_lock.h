// The data dir's own lock: a server holds it for as long as it runs, so no second server (nor
// an offline stockctl) uses the dir meanwhile. RocksDB's LOCK is not enough: it is held only
// while the store is open, and a server whose store failed closes it and opens it again each
// second; a second server started in between took the store, acknowledged groups, and the
// first one's reopen then deleted them as its own failed group.
//
// flock(2) on the directory itself: no file is added to the data dir, the lock is independent of
// RocksDB's (POSIX record locks), it conflicts between two opens in one process too (in-process
// tests), and it goes away with the process, however it ends.
#pragma once

#include <memory>
#include <string>

#include "stockd/status.h"

namespace stockd::storage {

class DirLock {
 public:
  // Locks `dir` (which must exist). Refused when another process (or another DirLock) holds
  // it; Io when the directory cannot be opened.
  static Result<std::unique_ptr<DirLock>> take(const std::string& dir);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace stockd::storage
