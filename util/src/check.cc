#include "stockd/check.h"

#include <cstdio>
#include <cstdlib>

namespace stockd {

void check_failed(const char* cond, const char* what, const char* file, int line) {
  std::fprintf(stderr, "stockd: invariant broken at %s:%d: %s (%s); stopping\n", file, line, what,
               cond);
  std::fflush(stderr);
  std::abort();
}

}  // namespace stockd
