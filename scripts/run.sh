#!/usr/bin/env bash
# Starts stockd on 127.0.0.1:7070 with its data in ./data, and the outbox sidecar writing
# committed orders to ./data/orders.db (SQLite). Installs missing packages and builds first.
# Tokens come from STOCKD_ADMIN_TOKEN / STOCKD_OUTBOX_TOKEN (defaults suit a local try-out only).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
export STOCKD_ADMIN_TOKEN=${STOCKD_ADMIN_TOKEN:-s3cret}
export STOCKD_OUTBOX_TOKEN=${STOCKD_OUTBOX_TOKEN:-outbox-s3cret}
mkdir -p data
sidecar=""
if [[ -x build/bin/stockd-outbox ]]; then
  build/bin/stockd-outbox --server 127.0.0.1:7070 --token "$STOCKD_OUTBOX_TOKEN" \
    --sql sqlite:./data/orders.db &
  sidecar=$!
  trap '[[ -n "$sidecar" ]] && kill "$sidecar" 2>/dev/null; wait' EXIT
fi
build/bin/stockd --listen 127.0.0.1:7070 --data-dir ./data "$@"
