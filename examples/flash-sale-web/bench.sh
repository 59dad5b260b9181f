#!/usr/bin/env bash
# The spike in its variants, one after the other in the same run, as a markdown table for
# docs/performance.md: the app (1 and 2 node:cluster workers) and a bare Express app (no stockd,
# the same JSON parsing), at 1,000 connections, and the app at 50 connections. Each variant is
# a fresh ./run.sh (its own PostgreSQL, stockd and sidecar).
#
#   ./bench.sh                  # 10 s per spike after a 3 s warm-up, about 3 minutes
#   SPIKE_SECONDS=5 ./bench.sh
set -euo pipefail
cd "$(dirname "$0")"
SECS=${SPIKE_SECONDS:-10}
OUT=$(mktemp -d -t flash-sale-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

# variant NAME MODE WORKERS CONNECTIONS
variant() {
  echo "bench.sh: $1" >&2
  WEB_WORKERS=$3 ./run.sh "$2" --json --connections "$4" --duration "$SECS" >"$OUT/$1.json" ||
    echo "bench.sh: $1 exited $? (failed checks are in the table)" >&2
}
variant app-1-1000 --spike 1 1000
variant bare-1-1000 --bare-spike 1 1000
variant app-2-1000 --spike 2 1000
variant bare-2-1000 --bare-spike 2 1000
variant app-1-50 --spike 1 50

node - "$OUT" <<'EOF'
const fs = require('fs');
const dir = process.argv[2];
const read = (n) => JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8'));
const rows = [
  ['app-1-1000', 'app, 1 process', 1000], ['bare-1-1000', 'bare Express, 1 process', 1000],
  ['app-2-1000', 'app, 2 cluster workers', 1000], ['bare-2-1000', 'bare Express, 2 cluster workers', 1000],
  ['app-1-50', 'app, 1 process', 50],
];
console.log('| server | connections | HTTP req/s | p50 ms | p99 ms | answers | CPU us per request (app, stockd, sidecar, postgres, load generator) | last order in PostgreSQL after the spike (last sale) | checks |');
console.log('|---|---:|---:|---:|---:|---|---|---:|---|');
for (const [name, label, conns] of rows) {
  const r = read(name);
  const c = r.cpuUsPerRequest;
  const cpu = ['app', 'stockd', 'stockd-outbox', 'postgres', 'load generator'].map((k) => c[k] ?? '-').join(' / ');
  const answers = Object.entries(r.statuses).map(([s, n]) => `${s}: ${n}`).join(', ') + (r.http.timeouts ? `, timed out: ${r.http.timeouts}` : '');
  const late = r.bare ? '-' : `${r.catchUpMs} ms (${r.lastSaleMs} ms)`;
  const checks = r.bare ? '-' : r.checks.every((x) => x.ok) ? `all ${r.checks.length} ok` : 'FAILED: ' + r.checks.filter((x) => !x.ok).map((x) => x.name).join('; ');
  console.log(`| ${label} | ${conns} | ${r.http.requestsPerSec} | ${r.http.p50Ms} | ${r.http.p99Ms} | ${answers} | ${cpu} | ${late} | ${checks} |`);
}
EOF
