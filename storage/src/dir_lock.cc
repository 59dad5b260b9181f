#include "stockd/dir_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace stockd::storage {
namespace {

std::string path_of(const std::string& dir) { return dir + "/" + kDirLockFile; }

Status in_use(const std::string& dir) {
  return Status::Refused(dir +
                         " is in use: another stockd runs on it (or stockctl migrate or mark "
                         "rewrite is writing it); stop that one first");
}

}  // namespace

Result<std::unique_ptr<DirLock>> DirLock::take(const std::string& dir) {
  const std::string path = path_of(dir);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Io("cannot open " + path + ": " + std::strerror(errno));
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &l) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EAGAIN || err == EACCES) return in_use(dir);
    return Status::Io("cannot lock " + path + ": " + std::strerror(err));
  }
  return std::unique_ptr<DirLock>(new DirLock(fd));
}

Status DirLock::check_free(const std::string& dir) {
  const std::string path = path_of(dir);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::Ok()
                           : Status::Io("cannot open " + path + ": " + std::strerror(errno));
  }
  struct flock l {};
  l.l_type = F_WRLCK;  // would a writer get it: is anybody holding it?
  l.l_whence = SEEK_SET;
  const int rc = ::fcntl(fd, F_OFD_GETLK, &l);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Io("cannot test the lock " + path + ": " + std::strerror(err));
  return l.l_type == F_UNLCK ? Status::Ok() : in_use(dir);
}

Status DirLock::still_ours(const std::string& dir) const {
  struct stat mine {
  }, now{};
  if (::fstat(fd_, &mine) != 0 || ::stat(path_of(dir).c_str(), &now) != 0 ||
      mine.st_dev != now.st_dev || mine.st_ino != now.st_ino) {
    return Status::Refused(dir +
                           " is no longer the directory this server locked at start (moved, "
                           "replaced or repointed): its store is not this server's to open");
  }
  return Status::Ok();
}

DirLock::~DirLock() { ::close(fd_); }

}  // namespace stockd::storage
