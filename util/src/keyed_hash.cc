#include "stockd/keyed_hash.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace stockd {

SipKey draw_hash_key() {
  uint64_t words[2];
  auto* out = reinterpret_cast<unsigned char*>(words);
  size_t got = 0;
  while (got < sizeof words) {
    const ssize_t n = ::getrandom(out + got, sizeof words - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      std::fprintf(stderr, "stockd: getrandom failed (errno %d): no key for the hash tables\n",
                   errno);
      std::abort();
    }
  }
  return {words[0], words[1]};
}

}  // namespace stockd
