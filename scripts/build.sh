#!/usr/bin/env bash
# Builds stockd into build/ (or $1 with extra cmake flags after it). Binaries land in build/bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j2
