#!/usr/bin/env bash
# Buy-now spread over many SKUs against one hot SKU (issue 13's target: spread >= 0.9x hot).
# Each round starts two fresh stockd `sync` servers in turn:
#   - spread: SKUS SKUs (default 1,000,000) made by a first, untimed stockbench run of 100,000
#     orders, then BENCH_SECONDS (default 8) of buy-now, each order on a SKU at random;
#   - hot: the same on one SKU.
# Each waits for the server's first checkpoint between the two runs (see run()).
# 50 conns x 16, keyed. Prints both rates and their ratio per round (BENCH_ROUNDS, default 3),
# and the CPU seconds of stockd's threads during each timed run (loop, WAL, checkpointer: the
# figure that moves least on a shared machine) and of stockbench, which shares the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
SECS=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
SKUS=${SKUS:-1000000}

# shellcheck source=bench/lib.sh
source bench/lib.sh # bench_start, wait_for, thousands, server_stats, stat_of
bench_start spread

# cpu: "tid:name:centiseconds" for each thread of $PID (the loop is `stockd`, the WAL thread
# `stockd-wal`, the checkpointer `stockd-ckpt`).
cpu() {
  local tk t st
  tk=$(getconf CLK_TCK)
  for t in /proc/"$PID"/task/*; do
    read -r -a st <<<"$(sed 's/.*) //' "$t/stat")"
    echo "${t##*/}:$(cat "$t/comm"):$(((st[11] + st[12]) * 100 / tk))"
  done
}
# cpu_delta BEFORE AFTER: the threads that used more than 0.1 s between the two, in seconds.
cpu_delta() {
  join -t: <(tr ' ' '\n' <<<"$1" | sort) <(tr ' ' '\n' <<<"$2" | sort) |
    awk -F: '{ d = ($5 - $3) / 100; if (d > 0.1) printf "%s %.2f, ", $2, d }' | sed 's/, $//'
}

bench() {
  "$BIN/stockbench" --server "127.0.0.1:$PORT" --admin-token-file "$TOKEN_FILE" \
    --connections 50 --pipeline 16 --no-progress --json "$@" 2>"$WORK/bench.log" ||
    die "stockbench: $(tail -3 "$WORK/bench.log")"
}

# run spread|hot: one fresh server, one timed run; prints "req/s|cpu".
# Both kinds start the same way: an untimed run of 100,000 orders (the spread one makes the
# SKUs), then a wait for the server's first checkpoint (at most --checkpoint-interval-ms, 30 s,
# after that run) and for the checkpointer to catch up. That first checkpoint writes the whole
# state and the first snapshot, and sorts the SKUs' names once; in a sale the catalogue is made
# before it opens, so it is not the sale's cost, and it falls outside both timed runs.
# Called in a subshell ($(run ...)), which does not inherit the EXIT trap: it sets its own, so
# that a run that dies does not leave its server running.
run() {
  trap '[[ -n $PID ]] && kill -9 "$PID" 2>/dev/null' EXIT
  rm -rf "$WORK/data" "$WORK/ready"
  "$BIN/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/data" --durability sync \
    --admin-token-file "$TOKEN_FILE" --ready-file "$WORK/ready" --log-level warn \
    >"$WORK/stockd.log" 2>&1 &
  PID=$!
  wait_for 30 stockd test -s "$WORK/ready"
  PORT=$(awk '{print $2}' "$WORK/ready")
  local args=(--sku hot)
  [[ $1 == spread ]] && args=(--skus "$SKUS")
  bench "${args[@]}" --requests 100000 >/dev/null
  args+=(--no-seed)
  local stats
  for _ in $(seq 450); do
    stats=$(server_stats "$PORT")
    [[ $(stat_of checkpoints_written "$stats") -ge 1 &&
      $(stat_of checkpoint_lsn "$stats") -eq $(stat_of lsn "$stats") ]] && break
    sleep 0.1
  done
  [[ $(stat_of checkpoints_written "$stats") -ge 1 ]] ||
    die "no checkpoint 45 s after the untimed run"
  local before after rps gen
  before=$(cpu | tr '\n' ' ')
  # The load generator's CPU too: it shares the two cores, and a spread run costs it misses of
  # its own (its per-SKU tallies).
  local TIMEFORMAT='%U %S'
  { time bench "${args[@]}" --duration "${SECS}s" >"$WORK/bench.json"; } 2>"$WORK/bench.time"
  after=$(cpu | tr '\n' ' ')
  rps=$(grep -o '"requests_per_sec":[0-9]*' "$WORK/bench.json" | cut -d: -f2)
  gen=$(awk '{ printf "stockbench %.2f", $1 + $2 }' "$WORK/bench.time")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  echo "$rps|$(cpu_delta "$before" "$after"), $gen"
}

echo "| round | spread over $(thousands "$SKUS") SKUs req/s | hot SKU req/s | spread / hot | CPU s, spread | CPU s, hot |"
echo "|---|---:|---:|---:|---|---|"
for round in $(seq "$ROUNDS"); do
  log "round $round"
  IFS='|' read -r s_rps s_cpu <<<"$(run spread)"
  IFS='|' read -r h_rps h_cpu <<<"$(run hot)"
  [[ -n $s_rps && -n $h_rps ]] || die "a run failed (its reason is above)"
  ratio=$(awk -v s="$s_rps" -v h="$h_rps" 'BEGIN { printf "%.2f", s / h }')
  echo "| $round | $(thousands "$s_rps") | $(thousands "$h_rps") | $ratio | $s_cpu | $h_cpu |"
done
