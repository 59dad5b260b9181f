#!/usr/bin/env bash
# Builds stockd into build/ (or $1 with extra cmake flags after it). Binaries land in build/bin/.
# STOCKD_TARGETS="stockd stockctl" builds only those targets (scripts/run.sh: no test binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
targets=()
for t in ${STOCKD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$dir" -j2 "${targets[@]}"
