// STOCKD_CHECK(cond, what): an invariant that must hold in every build, release included. When it
// does not, the process stops at once, naming what broke and where: going on could oversell, give
// a code twice or send an answer before the state it reports is durable, and a restart recovers
// from the log (whose recovery checks the same invariants) instead.
#pragma once

namespace stockd {

[[noreturn]] void check_failed(const char* cond, const char* what, const char* file, int line);

}  // namespace stockd

#define STOCKD_CHECK(cond, what)                                 \
  do {                                                           \
    if (!(cond)) [[unlikely]]                                    \
      ::stockd::check_failed(#cond, (what), __FILE__, __LINE__); \
  } while (0)
