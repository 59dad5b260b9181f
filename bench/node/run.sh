#!/usr/bin/env bash
# Durable buy-now from one Node.js process: the stockd Node client against stockd
# (--durability sync) vs ioredis running the Lua "decrement if enough" script against
# redis-server (--appendonly yes --appendfsync always). Starts both servers on free loopback
# ports in a temp dir, fresh for every run, runs bench.js against each in turn (alternating,
# same run), prints a markdown table with the ratios, and stops each by PID. See
# docs/performance.md.
#
#   bench/node/run.sh                     # 10 s per run (+2 s warm-up), about 2 minutes
#   BENCH_SECONDS=5 BENCH_ROUNDS=2 bench/node/run.sh
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(cd ../.. && pwd)
BIN=$REPO/${STOCKD_BUILD_DIR:-build}/bin
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-1}

log() { echo "bench/node: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"  # as_pg, free_port, wait_for

[[ -x $BIN/stockd ]] || die "$BIN/stockd is missing: build first (scripts/build.sh)"
command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
[[ -f $REPO/client/node/dist/index.js ]] || (cd "$REPO/client/node" && npm ci --silent && npm run --silent build)
[[ -d node_modules/ioredis ]] || npm ci --silent

WORK=$(mktemp -d -t stockd-bench-node.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$WORK/admin-token")

# Each run gets fresh servers, stopped after it: a run then never shares the machine with the
# work an earlier run left behind (a stockd checkpoint of the ~1,000,000 decisions of a
# 50 x 16 run used to fall into the 50 x 1 run after it), and every stockd run starts with an
# empty book, as every Redis run starts with an empty AOF.
SERVER_PID=""
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
# start_stockd / start_redis: a fresh server; sets PORT.
start_stockd() {
  rm -rf "$WORK/stockd" "$WORK/stockd.ready"
  "$BIN/stockd" --listen 127.0.0.1:0 --ready-file "$WORK/stockd.ready" --data-dir "$WORK/stockd" \
    --durability sync --admin-token-file "$WORK/admin-token" --log-level warn >"$WORK/stockd.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_for 30 stockd test -s "$WORK/stockd.ready"
  PORT=$(awk '{print $2}' "$WORK/stockd.ready")
}
start_redis() {
  rm -rf "$WORK/redis"
  mkdir -p "$WORK/redis"
  local _
  for _ in 1 2 3; do # a free port may be taken before Redis binds it: try another
    PORT=$(free_port)
    redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
      --appendonly yes --appendfsync always --daemonize no --logfile "$WORK/redis/log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do
      redis-cli -p "$PORT" ping >/dev/null 2>&1 && return 0
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_server
  done
  die "redis-server did not come up: $(tail -3 "$WORK/redis/log")"
}

# run NAME ARGS...: one bench.js run; its JSON line goes to $WORK/NAME.json.
run() {
  local name=$1
  shift
  log "$name (${SECS} s)"
  node bench.js --seconds "$SECS" "$@" >"$WORK/$name.json" || die "$name failed: $(cat "$WORK/$name.json")"
}
stockd_run() {
  start_stockd
  run "$1" --target stockd --port "$PORT" --admin-token-file "$WORK/admin-token" "${@:2}"
  stop_server
}
redis_run() {
  start_redis
  run "$1" --target redis --port "$PORT" "${@:2}"
  stop_server
}

CASES=("50 16" "50 1")
for r in $(seq "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    read -r conns inflight <<<"$c"
    stockd_run "r$r-stockd-$conns-$inflight" --connections "$conns" --inflight "$inflight" --sku "hot-$r-$inflight"
    redis_run "r$r-redis-$conns-$inflight" --connections "$conns" --inflight "$inflight" --sku "hot-$r-$inflight"
  done
  stockd_run "r$r-stockd-nokeys" --connections 50 --inflight 16 --no-keys --sku "hot-$r-nokeys"
  redis_run "r$r-redis-autopipe" --connections 50 --inflight 16 --auto-pipelining --sku "hot-$r-autopipe"
done

# jf FILE KEY: a field of bench.js's one-line JSON.
jf() { node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r[process.argv[2]])' "$WORK/$1.json" "$2"; }
ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo
echo "Machine: $(nproc) cores shared by the Node process, the server and everything else; $(uname -sr); node $(node --version);" \
  "${SECS} s per run after a 2 s warm-up; buy-now of 1 unit of one hot SKU, closed loop." \
  "Node CPU us/req: the Node process's user + system CPU per request."
echo
echo "| round | workload | stockd-client req/s | p99 ms | Node CPU us/req | ioredis+Lua req/s | p99 ms | Node CPU us/req | stockd/redis | verdicts |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
row() { # row ROUND LABEL STOCKD_RUN REDIS_RUN
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | stockd %s, redis %s |\n' "$1" "$2" \
    "$(jf "$3" requestsPerSec)" "$(ms "$(jf "$3" p99Ms)")" "$(jf "$3" cpuUsPerRequest)" \
    "$(jf "$4" requestsPerSec)" "$(ms "$(jf "$4" p99Ms)")" "$(jf "$4" cpuUsPerRequest)" \
    "$(ratio "$(jf "$3" requestsPerSec)" "$(jf "$4" requestsPerSec)")" "$(jf "$3" verdict)" "$(jf "$4" verdict)"
}
for r in $(seq "$ROUNDS"); do
  row "$r" "50 conns x 16 in flight" "r$r-stockd-50-16" "r$r-redis-50-16"
  row "$r" "50 conns x 1 in flight" "r$r-stockd-50-1" "r$r-redis-50-1"
  row "$r" "50 x 16: stockd without keys, ioredis auto-pipelining" "r$r-stockd-nokeys" "r$r-redis-autopipe"
done
