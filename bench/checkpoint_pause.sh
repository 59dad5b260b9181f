#!/usr/bin/env bash
# What checkpoints and snapshots cost the requests: the same durable buy-now load (stockbench,
# 50 conns x 16, BENCH_SECONDS each, default 20) against a stockd `sync` that writes a checkpoint
# every 2,000,000 decisions (the default: one every few seconds here; EVERY=N for another count)
# with a snapshot at each (the worst case: the default is one per 10,000,000 decisions;
# SNAPSHOT_EVERY=N for another), the same without snapshots, and one that writes neither,
# alternated BENCH_ROUNDS times (default 2). Prints throughput, p99 and p99.9 of each run and the
# checkpoints and snapshots it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
SECS=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_ROUNDS:-2}
EVERY=${EVERY:-2000000}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-$EVERY}

# shellcheck source=bench/lib.sh
source bench/lib.sh # bench_start, wait_for, thousands, server_stats, stat_of
bench_start checkpoint_pause

# run NAME FLAGS...: one stockd with FLAGS, one stockbench run, one table row.
run() {
  local name=$1
  shift
  rm -rf "$WORK/data" "$WORK/ready"
  "$BIN/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/data" --durability sync \
    --admin-token-file "$TOKEN_FILE" --ready-file "$WORK/ready" --log-level warn "$@" \
    >"$WORK/stockd.log" 2>&1 &
  PID=$!
  wait_for 30 stockd test -s "$WORK/ready"
  local port
  port=$(awk '{print $2}' "$WORK/ready")
  "$BIN/stockbench" --server "127.0.0.1:$port" --admin-token-file "$TOKEN_FILE" --sku hot \
    --connections 50 --pipeline 16 --duration "${SECS}s" --no-progress --json \
    >"$WORK/bench.json" 2>"$WORK/bench.log" || die "stockbench: $(tail -3 "$WORK/bench.log")"
  local stats written snapshots
  stats=$(server_stats "$port")
  written=$(stat_of checkpoints_written "$stats")
  snapshots=$(stat_of snapshots_written "$stats")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  python3 - "$WORK/bench.json" "$name" "${written:-?} / ${snapshots:-?}" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_us"]
print("| %s | %d | %.2f | %.2f | %.2f | %s | %s |" % (sys.argv[2], d["requests_per_sec"],
      l["p50"] / 1000, l["p99"] / 1000, l["p999"] / 1000, sys.argv[3],
      "ok" if d["verdict"]["ok"] else "FAILED"))
EOF
}

echo "| stockd sync, 50 x 16 buy-now, ${SECS} s | req/s | p50 ms | p99 ms | p99.9 ms | checkpoints / snapshots | verdict |"
echo "|---|---:|---:|---:|---:|---:|---|"
for _ in $(seq "$ROUNDS"); do
  run "a checkpoint every $(thousands "$EVERY"), a snapshot every $(thousands "$SNAPSHOT_EVERY")" \
    --checkpoint-every "$EVERY" --snapshot-every "$SNAPSHOT_EVERY"
  run "a checkpoint every $(thousands "$EVERY"), no snapshot" --checkpoint-every "$EVERY" \
    --snapshot-every 0
  run "no checkpoint during the run" --checkpoint-every 1000000000 \
    --checkpoint-interval-ms 86400000
done
