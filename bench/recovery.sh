#!/usr/bin/env bash
# Recovery time and bytes on disk per buy-now: N keyed buy-now orders are made with stockbench
# (50 conns x 16) against a stockd `sync` in a temp dir, then the server is stopped two ways and
# started again on the same data, reading its "recovered ... in X s" line:
#   - kill -9 with every order in the log (no checkpoint since the start): recovery replays them;
#   - a clean stop (SIGTERM writes a last checkpoint, and the first snapshot): recovery loads the
#     checkpoint;
#   - the checkpoint's table files damaged (a bit flipped in each, found with sst_dump): recovery
#     falls back on the snapshot, and writes the state anew before it listens.
# Also prints the data dir's size before any checkpoint (log only) and after the checkpoint.
#
#   bench/recovery.sh                 # 1,000,000 orders
#   ORDERS=10000000 bench/recovery.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
ORDERS=${ORDERS:-1000000}

# shellcheck source=bench/lib.sh
source bench/lib.sh # bench_start, wait_for
bench_start recovery
DATA=$WORK/data

# start LOG: stockd on $DATA; no checkpoint by count or time during the run (only at a stop).
start() {
  rm -f "$WORK/ready"
  "$BIN/stockd" --listen 127.0.0.1:0 --data-dir "$DATA" --durability sync \
    --admin-token-file "$TOKEN_FILE" --ready-file "$WORK/ready" \
    --checkpoint-every 1000000000 --checkpoint-interval-ms 86400000 \
    --finished-holds-max "$ORDERS" --holds-expected "$ORDERS" >"$WORK/$1" 2>&1 &
  PID=$!
  wait_for 600 stockd test -s "$WORK/ready"
  PORT=$(awk '{print $2}' "$WORK/ready")
}
recovered() { grep -o 'recovered .* in [0-9.]*s' "$WORK/$1" | sed 's/.* in //'; }
bytes() { du -sb "$DATA" | awk '{print $1}'; }

start first.log
log "making $ORDERS buy-now orders"
"$BIN/stockbench" --server "127.0.0.1:$PORT" --admin-token-file "$TOKEN_FILE" --sku hot \
  --connections 50 --pipeline 16 --requests "$ORDERS" --no-progress --json \
  >"$WORK/bench.json" 2>"$WORK/bench.log" || die "stockbench failed: $(tail -3 "$WORK/bench.log")"
LOG_BYTES=$(bytes)
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
sync
start replay.log
REPLAY_S=$(recovered replay.log)
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
CKPT_BYTES=$(bytes)
sync # the checkpoint just written (1.8 GB at 10M) is not still being written back during the start
start checkpoint.log
CKPT_S=$(recovered checkpoint.log)
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=""
command -v sst_dump >/dev/null || die "sst_dump is missing (scripts/deps.sh installs rocksdb-tools)"
for f in "$DATA"/*.sst; do
  if sst_dump --file="$f" --show_properties 2>/dev/null | grep -qE 'column family name: (default|holds)$'; then
    # A bit flipped a third of the way in (the properties block of a small file).
    python3 -c 'import os,sys; p=sys.argv[1]; n=os.path.getsize(p)//3
with open(p,"r+b") as f: f.seek(n); b=f.read(1); f.seek(n); f.write(bytes([b[0]^16]))' "$f"
  fi
done
sync
start fallback.log
grep -q 'fell back on the snapshot' "$WORK/fallback.log" || die "no fallback: $(tail -3 "$WORK/fallback.log")"
FALLBACK_S=$(recovered fallback.log)
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=""

per() { awk -v b="$1" -v n="$ORDERS" 'BEGIN { printf "%.0f", b / n }'; }
echo "| $ORDERS keyed buy-now orders | recovery s | data dir bytes | bytes per order |"
echo "|---|---:|---:|---:|"
echo "| kill -9, all in the log (replayed) | $REPLAY_S | $LOG_BYTES | $(per "$LOG_BYTES") |"
echo "| clean stop, all in the checkpoint (loaded) | $CKPT_S | $CKPT_BYTES | $(per "$CKPT_BYTES") |"
echo "| the checkpoint damaged: the snapshot loaded, the state written anew | $FALLBACK_S | | |"
grep -o 'recovered .*' "$WORK/replay.log" "$WORK/checkpoint.log" "$WORK/fallback.log" |
  sed "s|$WORK/||" >&2
