// One closed-loop run of durable buy-now (1 unit of one hot SKU) from this Node.js process:
// `connections` connections, `inflight` requests in flight on each, for `seconds`. Prints one
// JSON line: requests/s, latency percentiles and an integrity verdict read back afterwards.
//
//   node bench.js --target stockd --port P --admin-token-file F [--no-keys]
//   node bench.js --target redis  --port P [--auto-pipelining]
//   common: [--connections 50] [--inflight 16] [--seconds 10] [--warmup 2] [--sku hot]
//
// STOCKD_CLIENT=path/to/dist/index.js runs another build of the client (e.g. an older commit's,
// for a before/after comparison in one session); the default is client/node.
//
// stockd: one StockdClient with a pool of `connections`, RESERVE with ttlMs 0 (an idempotency
// key per request, made by the client, unless --no-keys). Redis: `connections` ioredis
// clients, EVALSHA of the "decrement if enough" script of tools/stockbench/redis_codec.cc.
'use strict';
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const Redis = require('ioredis');
const { StockdClient } = require(process.env.STOCKD_CLIENT || 'stockd-client');

const { values: opt } = parseArgs({
  options: {
    target: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    'admin-token-file': { type: 'string' },
    connections: { type: 'string', default: '50' },
    inflight: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    sku: { type: 'string', default: 'hot' },
    users: { type: 'string', default: '100000' },
    'no-keys': { type: 'boolean', default: false },
    'auto-pipelining': { type: 'boolean', default: false },
  },
});

// The same script as stockbench's (tools/stockbench/redis_codec.cc).
const LUA_DECREMENT =
  "local v = tonumber(redis.call('GET', KEYS[1]) or '0'); " +
  "if v >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]); return 1 " +
  'else return 0 end';
const STOCK = 1_000_000_000_000n; // never sells out within a run

/** Latencies in ms, kept whole for exact percentiles (a few million doubles at most). */
class Samples {
  chunks = [];
  cur = new Float64Array(1 << 20);
  n = 0;
  add(ms) {
    if (this.n === this.cur.length) {
      this.chunks.push(this.cur);
      this.cur = new Float64Array(1 << 20);
      this.n = 0;
    }
    this.cur[this.n++] = ms;
  }
  sorted() {
    const all = new Float64Array(this.chunks.length * (1 << 20) + this.n);
    let at = 0;
    for (const c of this.chunks) all.set(c, (at += c.length) - c.length);
    all.set(this.cur.subarray(0, this.n), at);
    return all.sort();
  }
}

const pct = (s, p) => (s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : 0);

/** Runs `workers` loops of `once()` until `ms` passes; each answer is timed. */
async function closedLoop(workers, ms, once, samples) {
  const until = performance.now() + ms;
  let ok = 0;
  let refused = 0;
  let errors = 0;
  const loop = async () => {
    while (performance.now() < until) {
      const t0 = performance.now();
      try {
        if (await once()) ok++;
        else refused++;
      } catch {
        errors++;
      }
      samples?.add(performance.now() - t0);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: workers }, loop));
  return { ok, refused, errors, seconds: (performance.now() - t0) / 1000 };
}

async function stockdTarget(port, connections) {
  const token = fs.readFileSync(opt['admin-token-file'], 'utf8').trim();
  const admin = new StockdClient({ host: opt.host, port, role: 'admin', token });
  await admin.skuSet({ sku: opt.sku, total: STOCK, perUserLimit: 0 });
  const client = new StockdClient({ host: opt.host, port, connections, timeoutMs: 30_000 });
  await client.connect();
  const users = Array.from({ length: Number(opt.users) }, (_, i) => `u${i}`);
  const lines = [{ sku: opt.sku, qty: 1 }];
  const key = opt['no-keys'] ? '' : undefined;
  let i = 0;
  const sold = async () => (await admin.skuGet(opt.sku)).sku.sold;
  return {
    once: async () => (await client.reserve({ user: users[i++ % users.length], ttlMs: 0, lines, key })).status === 'OK',
    sold,
    close: () => Promise.all([client.close(), admin.close()]),
  };
}

async function redisTarget(port, connections) {
  const options = { host: opt.host, port, enableAutoPipelining: opt['auto-pipelining'], maxRetriesPerRequest: 0 };
  const clients = Array.from({ length: connections }, () => new Redis(options));
  const key = `stockbench:${opt.sku}`;
  await clients[0].set(key, String(STOCK));
  const sha = await clients[0].script('LOAD', LUA_DECREMENT);
  let i = 0;
  const left = async () => BigInt(await clients[0].get(key));
  return {
    once: async () => (await clients[i++ % connections].evalsha(sha, 1, key, 1)) === 1,
    sold: async () => STOCK - (await left()),
    close: () => Promise.all(clients.map((c) => c.quit())),
  };
}

async function main() {
  const port = Number(opt.port);
  const connections = Number(opt.connections);
  const workers = connections * Number(opt.inflight);
  const target = opt.target === 'stockd' ? await stockdTarget(port, connections) : await redisTarget(port, connections);
  const warm = await closedLoop(workers, Number(opt.warmup) * 1000, target.once);
  const before = await target.sold();
  const samples = new Samples();
  const cpu0 = process.cpuUsage();
  const run = await closedLoop(workers, Number(opt.seconds) * 1000, target.once, samples);
  const cpu = process.cpuUsage(cpu0);
  const soldDelta = (await target.sold()) - before;
  await target.close();
  const s = samples.sorted();
  const verdict = soldDelta === BigInt(run.ok) && run.errors === 0 && warm.errors === 0;
  console.log(
    JSON.stringify({
      target: opt.target,
      keys: opt.target === 'stockd' ? !opt['no-keys'] : undefined,
      autoPipelining: opt.target === 'redis' ? opt['auto-pipelining'] : undefined,
      connections,
      inflight: Number(opt.inflight),
      seconds: run.seconds,
      requestsPerSec: Math.round((run.ok + run.refused + run.errors) / run.seconds),
      ok: run.ok,
      refused: run.refused,
      errors: run.errors,
      p50Ms: pct(s, 50),
      p99Ms: pct(s, 99),
      maxMs: s.length ? s[s.length - 1] : 0,
      // This process's CPU (user + system, all its threads) per request, in microseconds.
      cpuUsPerRequest: Number(((cpu.user + cpu.system) / (run.ok + run.refused + run.errors)).toFixed(2)),
      verdict: verdict ? 'ok' : `FAILED (sold ${soldDelta}, told OK ${run.ok}, errors ${run.errors + warm.errors})`,
    }),
  );
  if (!verdict) process.exitCode = 1;
}

main().catch((e) => {
  console.error('bench:', e);
  process.exit(2);
});
