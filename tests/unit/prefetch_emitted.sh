#!/usr/bin/env bash
# The book's prefetch helpers must leave a prefetch instruction in the code that calls them.
# GCC 12 deleted them once already (a function whose only statement is __builtin_prefetch is
# "const" to it, and calls of a const function whose result is unused are dropped), and nothing
# else would notice: a missing prefetch only makes recovery and forgetting slower.
#   prefetch_emitted.sh BINARY
set -euo pipefail
bin=$1
case $(uname -m) in x86_64) ;; *) echo "skipped: checks x86-64 code only"; exit 77 ;; esac
command -v objdump >/dev/null || { echo "skipped: no objdump"; exit 77; }
code=$(objdump -d -C --no-show-raw-insn "$bin")
# prefetches FUNCTION: how many prefetch instructions the body of FUNCTION (demangled) holds.
prefetches() {
  awk -v f="$1" 'index($0, "<" f) && /^[0-9a-f]+ </ { on = 1; next } on && /^$/ { on = 0 }
                 on && /:[ \t]+prefetch/ { n++ } END { print n + 0 }' <<<"$code"
}
fail=0
for f in "stockd::Book::prefetch(unsigned long, std::basic_string_view" \
         "stockd::Book::Impl::forget_finished(" "stockd::Book::Impl::forget_logged("; do
  n=$(prefetches "$f")
  echo "$f...): $n prefetch instructions"
  [[ $n -gt 0 ]] || { echo "FAIL: no prefetch instruction in $f...)"; fail=1; }
done
exit $fail
