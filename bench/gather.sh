#!/usr/bin/env bash
# Group commit's gathering (--group-gather-us) on and off, next to Redis, on one workload.
# Each round runs three fresh servers in turn, BENCH_SECONDS (default 8) each, buy-now of one hot
# SKU with `stockbench`:
#   - stockd `sync` with --group-gather-us GATHER_US (default 500);
#   - stockd `sync` with --group-gather-us 0;
#   - redis-server with appendfsync always and the Lua decrement (stockbench --target redis://).
# Prints each run's req/s, p99 and (for stockd) the mean decisions per group, then the means and
# their ratios to Redis. See docs/performance.md.
#
#   bench/gather.sh                         # 50 conns x 1, 4 rounds (~2 minutes)
#   CONNS=1000 PIPELINE=1 bench/gather.sh   # another workload
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
SECS=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-4}
CONNS=${CONNS:-50}
PIPELINE=${PIPELINE:-1}
GATHER_US=${GATHER_US:-500}

# shellcheck source=bench/lib.sh
source bench/lib.sh # bench_start, free_port, wait_for, thousands
bench_start gather
command -v redis-server >/dev/null || die "redis-server is missing (scripts/deps.sh installs it)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# run stockd-US|redis: one fresh server, one timed run; prints "req/s|p99 ms|decisions per group".
run() {
  rm -rf "$WORK/data" "$WORK/ready" "$WORK/redis"
  local target per_group="" metrics
  if [[ $1 == redis ]]; then
    local port
    mkdir -p "$WORK/redis"
    for _ in 1 2 3; do # a free port may be taken before Redis binds it: try another
      port=$(free_port)
      redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
        --appendonly yes --appendfsync always --daemonize no --logfile "$WORK/redis/log" &
      PID=$!
      for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break 2
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$PID" 2>/dev/null || true
      wait "$PID" 2>/dev/null || true
      PID=""
    done
    [[ -n $PID ]] || die "redis-server did not come up: $(tail -3 "$WORK/redis/log")"
    target=(--target "redis://127.0.0.1:$port")
  else
    metrics=$(free_port)
    "$BIN/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/data" --durability sync \
      --admin-token-file "$TOKEN_FILE" --ready-file "$WORK/ready" --log-level warn \
      --metrics-listen "127.0.0.1:$metrics" --group-gather-us "${1#stockd-}" \
      >"$WORK/stockd.log" 2>&1 &
    PID=$!
    wait_for 30 stockd test -s "$WORK/ready"
    target=(--server "127.0.0.1:$(awk '{print $2}' "$WORK/ready")" --admin-token-file "$TOKEN_FILE")
  fi
  "$BIN/stockbench" "${target[@]}" --connections "$CONNS" --pipeline "$PIPELINE" \
    --duration "${SECS}s" --no-progress --json >"$WORK/out.json" 2>"$WORK/bench.log" ||
    die "stockbench: $(tail -3 "$WORK/bench.log")"
  if [[ $1 != redis ]]; then
    per_group=$(curl -s "127.0.0.1:$metrics/metrics" |
      awk '/^stockd_group_commit_batch_ops_sum/ { s = $2 } /^stockd_group_commit_batch_ops_count/ { n = $2 }
           END { if (n > 0) printf "%.1f", s / n }')
  fi
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  local rps p99
  rps=$(grep -o '"requests_per_sec":[0-9]*' "$WORK/out.json" | cut -d: -f2)
  p99=$(grep -o '"p99":[0-9.]*' "$WORK/out.json" | head -1 | cut -d: -f2)
  echo "$rps|$(awk -v us="$p99" 'BEGIN { printf "%.2f", us / 1000 }')|$per_group"
}

RUNS=("stockd-$GATHER_US" stockd-0 redis)
declare -A SUM
echo "| round | server | req/s | p99 ms | decisions per group |"
echo "|---|---|---:|---:|---:|"
for round in $(seq "$ROUNDS"); do
  log "round $round ($CONNS conns x $PIPELINE)"
  for r in "${RUNS[@]}"; do
    IFS='|' read -r rps p99 per_group <<<"$(run "$r")"
    [[ -n $rps ]] || die "$r: no result"
    SUM[$r]=$((${SUM[$r]:-0} + rps))
    echo "| $round | ${r/stockd-/stockd --group-gather-us } | $(thousands "$rps") | $p99 | $per_group |"
  done
done
echo
for r in "${RUNS[@]}"; do
  mean=$((SUM[$r] / ROUNDS))
  echo "mean ${r/stockd-/stockd --group-gather-us }: $(thousands "$mean")/s, $(awk -v a="${SUM[$r]}" -v b="${SUM[redis]}" 'BEGIN { printf "%.2f", a / b }')x Redis"
done
