// The end of a connection that has written its last answer (the client port's and the metrics
// port's): it is half-closed (FIN) and its input is read and dropped until the peer closes.
// Closing a socket while input is unread sends a reset, and a reset destroys what the kernel
// still holds for the peer, answers included. So the socket is closed early only once the
// peer's kernel has acknowledged every byte and kDrainedMs passed, or when the peer took none
// of what is left for `stuck_ms` (the caller's write timeout).
#pragma once

#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "stockd/unacked.h"

namespace stockd {

class Linger {
 public:
  static constexpr int64_t kDrainedMs = 2000;

  void start(int64_t now) {
    progress_ms_ = now;
    unacked_seen_ = std::numeric_limits<int>::max();
  }

  // Checked once per tick: true when the socket may be closed now.
  bool over(uv_stream_t* s, int64_t now, uint32_t stuck_ms) {
    const int unacked = unacked_bytes(s);
    if (unacked < unacked_seen_) {
      unacked_seen_ = unacked;
      progress_ms_ = now;
    }
    return now - progress_ms_ >= (unacked > 0 ? static_cast<int64_t>(stuck_ms) : kDrainedMs);
  }
  // After over(): the peer had not taken every byte (a write timeout: closing loses them).
  bool stuck() const { return unacked_seen_ > 0; }
  // After the FIN: the peer's kernel has acknowledged every byte of the answer (the FIN counts
  // one, and a peer that reads no more may leave it unacknowledged): closing loses nothing.
  static bool drained(uv_stream_t* s) { return unacked_bytes(s) <= 1; }

 private:
  // Bytes the peer's kernel has not acknowledged; 0 if it cannot tell.
  static int unacked_bytes(uv_stream_t* s) {
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(s), &fd) != 0) return 0;
    return std::max(stockd::unacked_bytes(fd), 0);
  }

  int64_t progress_ms_ = 0;  // when it began, or the peer last acknowledged bytes
  int unacked_seen_ = std::numeric_limits<int>::max();
};

}  // namespace stockd
