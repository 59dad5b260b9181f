#!/usr/bin/env bash
# Installs the Debian 12 packages stockd needs, if any is missing. Safe to run again.
#   scripts/deps.sh run   what building and running stockd, the sidecar and stockctl need
#   scripts/deps.sh       that, plus what the tests and benchmarks need (and Node.js)
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libuv1-dev librocksdb-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libsqlite3-dev sqlite3 libpq-dev libssl-dev
)
if [[ ${1:-all} != run ]]; then
  # GoogleTest, a PostgreSQL server for the SQL tests, Redis and pgbench for the comparison,
  # promtool for the metrics format, clang-format for the style check, openssl for test certs,
  # sst_dump (rocksdb-tools) for bench/recovery.sh to find the checkpoint's table files.
  PACKAGES+=(libgtest-dev libgmock-dev postgresql redis-server prometheus clang openssl
    rocksdb-tools)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "stockd: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node.js (the Node client and the example web backend): Debian's nodejs and npm, only when no
# node is on PATH at all (a newer one installed another way is used as it is).
if [[ ${1:-all} != run ]] && ! command -v node >/dev/null; then
  echo "stockd: installing nodejs npm" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
