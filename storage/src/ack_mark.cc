#include "stockd/ack_mark.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "stockd/wire.h"

namespace stockd::storage {
namespace {

constexpr char kMagic[8] = {'S', 'T', 'K', 'A', 'C', 'K', '0', '1'};

std::string path_of(const std::string& dir) { return dir + "/" + kAckMarkFile; }
Status errno_status(const std::string& what) {
  return Status::Io(what + ": " + std::strerror(errno));
}

void put64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}
uint64_t get64(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

bool write_all(int fd, const std::string& bytes) {
  return ::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size());
}

}  // namespace

std::string encode_ack_mark(uint64_t lsn) {
  std::string out(kMagic, sizeof kMagic);
  put64(out, lsn);
  put64(out, wire::fnv1a64(out));
  return out;
}

Status decode_ack_mark(const std::string& bytes, uint64_t& lsn) {
  if (bytes.size() != kAckMarkBytes) {
    return Status::Corruption("is " + std::to_string(bytes.size()) + " bytes, not " +
                              std::to_string(kAckMarkBytes));
  }
  if (bytes.compare(0, sizeof kMagic, kMagic, sizeof kMagic) != 0) {
    return Status::Corruption("has no STKACK01 magic");
  }
  if (get64(bytes, 16) != wire::fnv1a64(std::string_view(bytes).substr(0, 16))) {
    return Status::Corruption("fails its checksum");
  }
  lsn = get64(bytes, 8);
  return Status::Ok();
}

Status AckMark::read(const std::string& dir, uint64_t& lsn, bool& found) {
  found = false;
  const int fd = ::open(path_of(dir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? Status::Ok() : errno_status("cannot read " + path_of(dir));
  std::string bytes(kAckMarkBytes + 1, '\0');
  const ssize_t n = ::pread(fd, bytes.data(), bytes.size(), 0);
  ::close(fd);
  if (n < 0) return errno_status("cannot read " + path_of(dir));
  bytes.resize(static_cast<size_t>(n));
  if (Status s = decode_ack_mark(bytes, lsn); !s.ok()) {
    return Status::Corruption(path_of(dir) + " " + s.message() +
                              " (the acknowledged mark is damaged)");
  }
  found = true;
  return Status::Ok();
}

Result<std::unique_ptr<AckMark>> AckMark::open(const std::string& dir, bool create) {
  uint64_t lsn = 0;
  bool found = false;
  if (Status s = read(dir, lsn, found); !s.ok()) return s;
  if (!found && !create) return Status::Refused(path_of(dir) + " is missing");
  const int fd = ::open(path_of(dir).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return errno_status("cannot open " + path_of(dir));
  if (!found) {  // a new mark reaches the disk, with its name, before anything relies on it
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool ok =
        write_all(fd, encode_ack_mark(0)) && ::fsync(fd) == 0 && dfd >= 0 && ::fsync(dfd) == 0;
    if (dfd >= 0) ::close(dfd);
    if (!ok) {
      Status failed = errno_status("cannot create " + path_of(dir));
      ::close(fd);
      return failed;
    }
  }
  return std::unique_ptr<AckMark>(new AckMark(fd, lsn));
}

AckMark::~AckMark() {
  // The last lsn once more: a mark written anew (restore_if_unlinked) may hold an older one, if
  // an advance went to the old file meanwhile. No other thread writes by now.
  (void)write_all(fd_, encode_ack_mark(lsn()));
  (void)::fsync(fd_);
  ::close(fd_);
}

Status AckMark::advance(uint64_t lsn) {
  if (lsn <= lsn_.load(std::memory_order_relaxed)) return Status::Ok();
  if (!write_all(fd_, encode_ack_mark(lsn))) return errno_status("cannot write the ACKED mark");
  lsn_.store(lsn, std::memory_order_relaxed);
  return Status::Ok();
}

Status AckMark::restore_if_unlinked(const std::string& dir, bool& restored) {
  restored = false;
  struct stat mine {
  }, named{};
  if (::fstat(fd_, &mine) != 0) return errno_status("cannot stat the ACKED mark");
  if (::stat(path_of(dir).c_str(), &named) == 0 && named.st_dev == mine.st_dev &&
      named.st_ino == mine.st_ino) {
    return Status::Ok();
  }
  // Made whole under a temporary name, then renamed over whatever is at the path now.
  const std::string tmp = path_of(dir) + ".tmp";
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_status("cannot create " + tmp);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool written = write_all(fd, encode_ack_mark(lsn())) && ::fsync(fd) == 0;
  const bool renamed = written && ::rename(tmp.c_str(), path_of(dir).c_str()) == 0;
  const bool ok = renamed && dfd >= 0 && ::fsync(dfd) == 0;
  Status failed = ok ? Status::Ok() : errno_status("cannot write " + path_of(dir) + " anew");
  if (!renamed) ::unlink(tmp.c_str());
  if (dfd >= 0) ::close(dfd);
  // From here advance() writes the new file: dup3 swaps what fd_ names in one step.
  if (ok && ::dup3(fd, fd_, O_CLOEXEC) < 0) failed = errno_status("cannot switch to the new ACKED");
  ::close(fd);
  restored = failed.ok();
  return failed;
}

}  // namespace stockd::storage
