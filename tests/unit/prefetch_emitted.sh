#!/usr/bin/env bash
# The book's prefetch helpers must leave their prefetch instructions in the code that calls them.
# GCC 12 deleted some of them once (a function whose only statement is __builtin_prefetch is
# "const" to it, and calls of a const function whose result is unused are dropped: the hold
# table's slot in Book::prefetch, every one in forgetting), and nothing else would notice: a
# missing prefetch only makes recovery and forgetting slower. Checks an optimized build (a
# debug build keeps the helpers out of line, and is not what runs a sale).
#   prefetch_emitted.sh BINARY BUILD_TYPE
set -euo pipefail
bin=$1 type=${2:-}
case $(uname -m) in x86_64) ;; *) echo "skipped: checks x86-64 code only"; exit 77 ;; esac
case $type in Debug | "") echo "skipped: not an optimized build ($type)"; exit 77 ;; esac
command -v objdump >/dev/null || { echo "skipped: no objdump"; exit 77; }
code=$(objdump -d -C --no-show-raw-insn "$bin")
# prefetches FUNCTION: how many prefetch instructions the body of FUNCTION (demangled) holds.
prefetches() {
  awk -v f="$1" 'index($0, "<" f) && /^[0-9a-f]+ </ { on = 1; next } on && /^$/ { on = 0 }
                 on && /:[ \t]+prefetch/ { n++ } END { print n + 0 }' <<<"$code"
}
fail=0
# FUNCTION and the prefetches it makes: Book::prefetch fetches the hold's slot and the key's.
while IFS='|' read -r f want; do
  n=$(prefetches "$f")
  echo "$f...): $n prefetch instructions (at least $want)"
  [[ $n -ge $want ]] || { echo "FAIL: $f...) lost its prefetches"; fail=1; }
done <<'LIST'
stockd::Book::prefetch(unsigned long, std::basic_string_view|2
stockd::Book::Impl::forget_finished(|1
stockd::Book::Impl::forget_logged(|1
LIST
exit $fail
