#include "stockd/unacked.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

namespace stockd {

int unacked_bytes(int fd) {
  int n = 0;
  return ::ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

}  // namespace stockd
