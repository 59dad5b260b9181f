#!/usr/bin/env bash
# The whole flash-sale stack from this repository, in one command: a throwaway PostgreSQL
# cluster, stockd (--durability sync), stockd-outbox copying every order into that PostgreSQL,
# a seeded sale (stockctl), and this Express app. Everything lives in a temp dir and is stopped
# by PID on exit (Ctrl-C).
#
#   ./run.sh                       # serve on http://127.0.0.1:3000 until Ctrl-C
#   ./run.sh --spike [ARGS...]     # ... run the 1,000-connection spike (node spike.js ARGS), exit
#   ./run.sh --bare-spike [ARGS]   # the same spike against a bare Express hello-world (no stockd)
#
# Environment: PORT (3000), WEB_WORKERS (1: node:cluster processes), STOCKD_CONNECTIONS (4 per
# process), STOCK (1000000 units of 'sneaker'), PER_USER_LIMIT (2), CODES (100000 codes of
# 'gift-card'), STOCKD_BUILD_DIR (build), APP_NODE_FLAGS (node flags for the app, e.g.
# "--cpu-prof --cpu-prof-dir=prof"). Needs build/bin (scripts/build.sh), node and npm,
# and PostgreSQL's server binaries (initdb; as root, a 'postgres' user to run them).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
REPO=$(cd ../.. && pwd)
BIN=$REPO/${STOCKD_BUILD_DIR:-build}/bin
PORT=${PORT:-3000}
STOCK=${STOCK:-1000000}
PER_USER_LIMIT=${PER_USER_LIMIT:-2}
CODES=${CODES:-100000}

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"  # as_pg, free_port, wait_for

MODE=serve
case ${1:-} in
  --spike) MODE=spike; shift ;;
  --bare-spike) MODE=bare; shift ;;
  -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
esac

for b in stockd stockd-outbox stockctl; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (scripts/build.sh)"
done
[[ -f $REPO/client/node/dist/index.js ]] || (cd "$REPO/client/node" && npm ci --silent && npm run --silent build)
[[ -d node_modules/express ]] || npm ci --silent
# 1,000 connections need more descriptors than the usual soft limit of 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d -t flash-sale-web.XXXXXX)
WAIT_HINT="logs in $WORK"
chmod 711 "$WORK" # the postgres user must reach its data dir inside
PIDS=()
PG_DATA=""

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



start_app() { # start_app SCRIPT: the web app on $PORT, in the background
  # shellcheck disable=SC2086 # APP_NODE_FLAGS is a list of flags
  PORT=$PORT node ${APP_NODE_FLAGS:-} "$1" >"$WORK/app.log" 2>&1 &
  PIDS+=($!)
  CPU_PIDS="app:$!"
  wait_for 30 "the web app" grep -q listening "$WORK/app.log"
}

if [[ $MODE == bare ]]; then
  start_app bare.js
  CPU_PIDS=$CPU_PIDS APP_URL=http://127.0.0.1:$PORT node spike.js --bare "$@"
  exit 0
fi

# ---- PostgreSQL: initdb in the temp dir, a free loopback port, its socket in the temp dir ----
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $PG_BIN && -x $PG_BIN/initdb ]] || PG_BIN=$(pg_config --bindir 2>/dev/null || true)
[[ -n $PG_BIN && -x $PG_BIN/initdb ]] || die "PostgreSQL server binaries not found (apt-get install postgresql)"
[[ $(id -u) -ne 0 ]] || id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user"
mkdir -p "$WORK/pg"
[[ $(id -u) -ne 0 ]] || chown postgres "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
  >"$WORK/pg/initdb.log" 2>&1 || die "initdb failed: $(tail -3 "$WORK/pg/initdb.log")"
PG_DATA=$WORK/pg/data
PG_PORT=$(free_port)
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/log" -w -t 60 start -o \
  "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
  >/dev/null || die "PostgreSQL did not start: $(tail -3 "$WORK/pg/log")"
"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -c "CREATE DATABASE shop" postgres
PG_URL=postgresql://postgres@127.0.0.1:$PG_PORT/shop

# ---- stockd: every answer fsynced; tokens by file, owner-only ----
(umask 077 && for t in admin outbox; do od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$WORK/$t-token"; done)
"$BIN/stockd" --listen 127.0.0.1:0 --ready-file "$WORK/stockd.ready" --data-dir "$WORK/stockd" \
  --durability sync --admin-token-file "$WORK/admin-token" --outbox-token-file "$WORK/outbox-token" \
  --log-level warn >"$WORK/stockd.log" 2>&1 &
PIDS+=($!)
STOCKD_PID=$!
wait_for 30 stockd test -s "$WORK/stockd.ready"
STOCKD_PORT=$(awk '{print $2}' "$WORK/stockd.ready")

# ---- stockd-outbox: every order into PostgreSQL, exactly once ----
"$BIN/stockd-outbox" --server "127.0.0.1:$STOCKD_PORT" --token-file "$WORK/outbox-token" \
  --sql "$PG_URL" --log-level warn >"$WORK/outbox.log" 2>&1 &
PIDS+=($!)
OUTBOX_PID=$!

# ---- The sale: counted units with a per-user limit, and a pool of unique gift-card codes ----
ctl() { "$BIN/stockctl" --server "127.0.0.1:$STOCKD_PORT" --token-file "$WORK/admin-token" "$@" >/dev/null; }
ctl sku set sneaker --total "$STOCK" --per-user-limit "$PER_USER_LIMIT"
ctl sku set gift-card --per-user-limit 1
TAG=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
seq -f "GC-$TAG-%07g" 1 "$CODES" >"$WORK/codes.txt"
ctl codes load gift-card "$WORK/codes.txt"

export STOCKD_PORT PG_URL PER_USER_LIMIT APP_URL=http://127.0.0.1:$PORT
start_app server.js
# Whose CPU the spike reports (with their child processes: cluster workers, PostgreSQL's backends).
PG_PID=$(head -1 "$PG_DATA/postmaster.pid")
export CPU_PIDS="$CPU_PIDS,stockd:$STOCKD_PID,stockd-outbox:$OUTBOX_PID,postgres:$PG_PID"
log "PostgreSQL $PG_URL; stockd 127.0.0.1:$STOCKD_PORT (sync); outbox -> PostgreSQL; app $APP_URL"
log "SKUs: sneaker ($STOCK units, $PER_USER_LIMIT per user), gift-card ($CODES codes, 1 per user)"

if [[ $MODE == spike ]]; then
  node spike.js "$@"
  exit 0
fi
cat >&2 <<EOF
run.sh: try:
  curl -s $APP_URL/api/stock/sneaker
  curl -s -X POST $APP_URL/api/buy -H 'X-User-Id: alice' -H 'Content-Type: application/json' -d '{"sku":"sneaker"}'
  psql $PG_URL -c 'SELECT order_id, user_id, committed_at_ms FROM orders'
run.sh: Ctrl-C stops everything.
EOF
wait "${PIDS[@]}"
