#!/usr/bin/env bash
# stockd vs Redis (AOF, appendfsync always) vs PostgreSQL (fsync, synchronous_commit) on the
# same flash-sale workload: many buyers taking one unit of one hot SKU, every answer durable.
# Starts throwaway servers in a temp dir on free ports, runs build/bin/stockbench against
# stockd and Redis (same connection machinery, same histogram) and pgbench against PostgreSQL,
# prints markdown tables, and removes everything on exit. See docs/performance.md.
#
#   bench/compare.sh                  # ~10 s per run (about 2 minutes in all)
#   BENCH_SECONDS=3 bench/compare.sh  # quicker, noisier
#   BENCH_OUT=dir bench/compare.sh    # also keep every run's JSON and logs in dir
#   BENCH_TLS=0 bench/compare.sh      # skip the TLS rows (stockd with --tls-cert vs plain)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-10}
BIN=${STOCKD_BUILD_DIR:-build}/bin
OUT=${BENCH_OUT:-}
CASES=("50 1" "1000 1" "50 16")  # connections, pipeline
PG_CLIENTS=50

log() { echo "compare: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=bench/lib.sh
source bench/lib.sh  # as_pg, free_port, wait_for, thousands

[[ -x $BIN/stockbench && -x $BIN/stockd ]] || scripts/build.sh
command -v redis-server >/dev/null || die "redis-server is missing (scripts/deps.sh installs it)"
# 1,000 connections need more descriptors than the usual soft limit of 1024 (Redis, too,
# lowers its maxclients to fit the limit it starts with).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d -t stockd-compare.XXXXXX)
chmod 711 "$WORK"  # the postgres user must reach its data dir inside
PIDS=()
PG_DATA=""

cleanup() {
  local pid
  if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ -n $OUT ]]; then mkdir -p "$OUT" && cp -r "$WORK"/runs "$OUT"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/runs"



# The admin token goes by file, never on a command line (ps shows those to every local user).
TOKEN_FILE=$WORK/admin-token
(umask 077 && od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE")

start_stockd() {  # start_stockd NAME DURABILITY [FLAGS...] -> sets STOCKD_PORT
  local dir=$WORK/$1 durability=$2
  shift 2
  mkdir -p "$dir"
  "$BIN/stockd" --listen 127.0.0.1:0 --data-dir "$dir/data" --durability "$durability" \
    --admin-token-file "$TOKEN_FILE" --ready-file "$dir/ready" --log-level warn "$@" \
    >"$dir/log" 2>&1 &
  PIDS+=($!)
  wait_for 30 "stockd ($durability)" test -s "$dir/ready"
  STOCKD_PORT=$(awk '{print $2}' "$dir/ready")
}

start_redis() {  # sets REDIS_PORT
  local dir=$WORK/redis
  mkdir -p "$dir"
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --save '' \
    --appendonly yes --appendfsync always --maxclients 10000 --daemonize no \
    --logfile "$dir/log" &
  PIDS+=($!)
  wait_for 30 "redis-server" redis-cli -p "$REDIS_PORT" ping
}

start_postgres() {  # sets PG_PORT, or returns 1 when PostgreSQL is not installed
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -n $PG_BIN && -x $PG_BIN/initdb ]] || return 1
  [[ $(id -u) -ne 0 ]] || id postgres >/dev/null 2>&1 || return 1
  local dir=$WORK/pg
  mkdir -p "$dir"
  [[ $(id -u) -ne 0 ]] || chown postgres "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 ||
    die "initdb failed (see $dir/initdb.log)"
  PG_DATA=$dir/data
  PG_PORT=$(free_port)
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/log" -w -t 60 start -o \
    "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
    >/dev/null || die "PostgreSQL did not start (see $dir/log)"
}

psql_q() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -tA -c "$1" postgres; }

# jnum FILE KEY: the first number stored under "KEY" in stockbench's one-line JSON.
jnum() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -1 | cut -d: -f2; }

# run_bench NAME ARGS...: one stockbench run; leaves runs/NAME.json and sets RPS, P99, VERDICT.
run_bench() {
  local name=$1 rc=0
  shift
  log "running $name ($SECS s)"
  timeout $((SECS + 120)) "$BIN/stockbench" "$@" --duration "${SECS}s" --json \
    >"$WORK/runs/$name.json" 2>"$WORK/runs/$name.log" || rc=$?
  if [[ $rc -gt 1 ]]; then
    tail -3 "$WORK/runs/$name.log" >&2
    die "stockbench $name failed (exit $rc)"
  fi
  RPS=$(jnum "$WORK/runs/$name.json" requests_per_sec)
  P99=$(jnum "$WORK/runs/$name.json" p99)
  VERDICT=$([[ $rc -eq 0 ]] && echo ok || echo FAILED)
}

ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
rps() { awk -v r="$1" 'BEGIN { printf "%.0f", r }'; }

start_stockd stockd-sync sync
SYNC_PORT=$STOCKD_PORT
start_stockd stockd-off off
OFF_PORT=$STOCKD_PORT
TLS=${BENCH_TLS:-1}
if [[ $TLS -eq 1 ]]; then  # a throwaway CA and a certificate for 127.0.0.1 (ECDSA P-256)
  mkdir -p "$WORK/tls"
  (cd "$WORK/tls" &&
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes) &&
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca &&
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=127.0.0.1 &&
    printf 'subjectAltName=IP:127.0.0.1\n' >san.ext &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile san.ext -out server.pem) >"$WORK/tls/log" 2>&1 || die "openssl: $(tail -3 "$WORK/tls/log")"
  start_stockd stockd-tls sync --tls-cert "$WORK/tls/server.pem" --tls-key "$WORK/tls/server.key"
  TLS_PORT=$STOCKD_PORT
fi
start_redis
HAVE_PG=1
start_postgres || HAVE_PG=0

# ---- stockd (sync) vs Redis, alternating per case ----
declare -A S_RPS S_P99 R_RPS R_P99 VERDICTS O_RPS O_P99 O_VERDICT
for c in "${CASES[@]}"; do
  read -r conns pipe <<<"$c"
  run_bench "stockd-c$conns-p$pipe" --server "127.0.0.1:$SYNC_PORT" --admin-token-file "$TOKEN_FILE" \
    --sku "hot-c$conns-p$pipe" --connections "$conns" --pipeline "$pipe"
  S_RPS[$c]=$RPS S_P99[$c]=$P99 VERDICTS[$c]="stockd $VERDICT"
  run_bench "redis-c$conns-p$pipe" --target "redis://127.0.0.1:$REDIS_PORT" \
    --sku "hot-c$conns-p$pipe" --connections "$conns" --pipeline "$pipe"
  R_RPS[$c]=$RPS R_P99[$c]=$P99 VERDICTS[$c]+=", redis $VERDICT"
  # Like for like on what an answer promises: the Redis script that also checks and keeps the
  # idempotency key, writes an order hash and an outbox stream entry.
  run_bench "redis-order-c$conns-p$pipe" --target "redis://127.0.0.1:$REDIS_PORT" \
    --sku "hot-order-c$conns-p$pipe" --connections "$conns" --pipeline "$pipe" --redis-script order
  O_RPS[$c]=$RPS O_P99[$c]=$P99 O_VERDICT[$c]=$VERDICT
done
run_bench "stockd-off-c1000-p1" --server "127.0.0.1:$OFF_PORT" --admin-token-file "$TOKEN_FILE" \
  --sku hot-off --connections 1000 --pipeline 1
OFF_RPS=$RPS OFF_P99=$P99 OFF_VERDICT=$VERDICT
# Redis keeps no idempotency keys; this shows what stockd's (durable) keys cost.
run_bench "stockd-nokeys-c50-p16" --server "127.0.0.1:$SYNC_PORT" --admin-token-file "$TOKEN_FILE" \
  --sku hot-nokeys --connections 50 --pipeline 16 --no-keys
NOKEYS_RPS=$RPS NOKEYS_P99=$P99 NOKEYS_VERDICT=$VERDICT
# TLS: the same workload against a stockd started with --tls-cert.
declare -A T_RPS T_P99 T_VERDICT
TLS_CASES=("50 1" "50 16")
if [[ $TLS -eq 1 ]]; then
  for c in "${TLS_CASES[@]}"; do
    read -r conns pipe <<<"$c"
    run_bench "stockd-tls-c$conns-p$pipe" --server "127.0.0.1:$TLS_PORT" \
      --admin-token-file "$TOKEN_FILE" --tls-ca "$WORK/tls/ca.pem" \
      --sku "hot-tls-c$conns-p$pipe" --connections "$conns" --pipeline "$pipe"
    T_RPS[$c]=$RPS T_P99[$c]=$P99 T_VERDICT[$c]=$VERDICT
  done
fi

# ---- PostgreSQL: pgbench, one conditional UPDATE per transaction ----
if [[ $HAVE_PG -eq 1 ]]; then
  PG_STOCK=1000000000000
  psql_q "CREATE TABLE stock (sku text PRIMARY KEY, qty bigint NOT NULL);
          INSERT INTO stock VALUES ('hot', $PG_STOCK);"
  echo "UPDATE stock SET qty = qty - 1 WHERE sku = 'hot' AND qty > 0;" >"$WORK/pg/buy.sql"
  log "running pgbench ($PG_CLIENTS clients, $SECS s)"
  (cd "$WORK/pg" && "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres \
    -c "$PG_CLIENTS" -j 2 -T "$SECS" -f buy.sql -l --log-prefix=tx postgres) \
    >"$WORK/runs/pgbench.log" 2>&1 || die "pgbench failed: $(tail -3 "$WORK/runs/pgbench.log")"
  PG_RPS=$(grep -o 'tps = [0-9.]*' "$WORK/runs/pgbench.log" | head -1 | awk '{print $3}')
  PG_TX=$(grep -o 'actually processed: [0-9]*' "$WORK/runs/pgbench.log" | awk '{print $3}')
  # Per-transaction latency (us) is the third field of pgbench's log lines.
  cat "$WORK"/pg/tx.* | awk '{print $3}' | sort -n >"$WORK/pg/lat"
  PG_P99=$(awk -v n="$(wc -l <"$WORK/pg/lat")" 'NR == int(n * 0.99 + 0.999) { print; exit }' \
    "$WORK/pg/lat")
  PG_LEFT=$(psql_q "SELECT qty FROM stock WHERE sku = 'hot'")
  PG_VERDICT=$([[ $((PG_STOCK - PG_LEFT)) -eq $PG_TX ]] && echo ok || echo FAILED)
fi

# ---- Report ----
echo
echo "Machine: $(nproc) cores, $(uname -sr), load generator on the same machine;" \
  "${SECS} s per run, 1 SKU, buy-now of 1 unit, closed loop."
echo
echo "| workload | stockd req/s | stockd p99 ms | redis req/s | redis p99 ms | stockd/redis | verdicts |"
echo "|---|---:|---:|---:|---:|---:|---|"
for c in "${CASES[@]}"; do
  read -r conns pipe <<<"$c"
  printf '| %s conns, pipeline %s | %s | %s | %s | %s | %s | %s |\n' \
    "$(thousands "$conns")" "$pipe" "$(rps "${S_RPS[$c]}")" \
    "$(ms "${S_P99[$c]}")" "$(rps "${R_RPS[$c]}")" "$(ms "${R_P99[$c]}")" \
    "$(ratio "${S_RPS[$c]}" "${R_RPS[$c]}")" "${VERDICTS[$c]}"
done
echo
echo "| like for like on the promise: Redis order script (key, order hash, outbox stream) | stockd req/s | redis req/s | redis p99 ms | stockd/redis | verdict |"
echo "|---|---:|---:|---:|---:|---|"
for c in "${CASES[@]}"; do
  read -r conns pipe <<<"$c"
  printf '| %s conns, pipeline %s | %s | %s | %s | %s | redis %s |\n' \
    "$(thousands "$conns")" "$pipe" "$(rps "${S_RPS[$c]}")" "$(rps "${O_RPS[$c]}")" \
    "$(ms "${O_P99[$c]}")" "$(ratio "${S_RPS[$c]}" "${O_RPS[$c]}")" "${O_VERDICT[$c]}"
done
echo
base="50 1"
if [[ $HAVE_PG -eq 1 ]]; then
  echo "| PostgreSQL (pgbench, $PG_CLIENTS clients, conditional UPDATE) | req/s | p99 ms | stockd/postgres (50 conns) | verdict |"
  echo "|---|---:|---:|---:|---|"
  printf '| UPDATE stock SET qty = qty - 1 WHERE sku = '"'"'hot'"'"' AND qty > 0 | %s | %s | %s | %s |\n' \
    "$(rps "$PG_RPS")" "$(ms "$PG_P99")" "$(ratio "${S_RPS[$base]}" "$PG_RPS")" \
    "$PG_VERDICT ($PG_TX updates, stock down by $((PG_STOCK - PG_LEFT)))"
else
  echo "(PostgreSQL not installed: skipped)"
fi
echo
c="1000 1"
echo "| stockd, 1,000 conns, pipeline 1 | req/s | p99 ms | verdict |"
echo "|---|---:|---:|---|"
printf '| --durability sync | %s | %s | %s |\n' "$(rps "${S_RPS[$c]}")" "$(ms "${S_P99[$c]}")" \
  "${VERDICTS[$c]%%,*}"
printf '| --durability off | %s | %s | stockd %s |\n' "$(rps "$OFF_RPS")" "$(ms "$OFF_P99")" \
  "$OFF_VERDICT"
printf '| off / sync | %s | | |\n' "$(ratio "$OFF_RPS" "${S_RPS[$c]}")"
echo
c="50 16"
echo "| stockd sync, 50 conns, pipeline 16 | req/s | p99 ms | stockd/redis | verdict |"
echo "|---|---:|---:|---:|---|"
printf '| with idempotency keys (default) | %s | %s | %s | %s |\n' "$(rps "${S_RPS[$c]}")" \
  "$(ms "${S_P99[$c]}")" "$(ratio "${S_RPS[$c]}" "${R_RPS[$c]}")" "${VERDICTS[$c]%%,*}"
printf '| --no-keys | %s | %s | %s | stockd %s |\n' "$(rps "$NOKEYS_RPS")" "$(ms "$NOKEYS_P99")" \
  "$(ratio "$NOKEYS_RPS" "${R_RPS[$c]}")" "$NOKEYS_VERDICT"
if [[ $TLS -eq 1 ]]; then
  echo
  echo "| stockd sync, TLS vs plain (same run) | plain req/s | plain p99 ms | TLS req/s | TLS p99 ms | TLS/plain | verdict |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for c in "${TLS_CASES[@]}"; do
    read -r conns pipe <<<"$c"
    printf '| %s conns, pipeline %s | %s | %s | %s | %s | %s | tls %s |\n' "$conns" "$pipe" \
      "$(rps "${S_RPS[$c]}")" "$(ms "${S_P99[$c]}")" "$(rps "${T_RPS[$c]}")" \
      "$(ms "${T_P99[$c]}")" "$(ratio "${T_RPS[$c]}" "${S_RPS[$c]}")" "${T_VERDICT[$c]}"
  done
fi
