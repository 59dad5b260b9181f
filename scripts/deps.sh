#!/usr/bin/env bash
# Installs the Debian 12 packages stockd needs, if any is missing. Safe to run again.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libuv1-dev librocksdb-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libsqlite3-dev sqlite3 libpq-dev postgresql libssl-dev openssl
  redis-server prometheus clang
)

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
