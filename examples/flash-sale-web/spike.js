// The flash-sale spike: 1,000 connections of buyers on POST /api/buy (autocannon), then the
// integrity checks in SQL and the time the last order took to reach PostgreSQL. Run it
// through ./run.sh --spike, which starts the stack and sets APP_URL, STOCKD_PORT and PG_URL.
//
//   node spike.js [--connections 1000] [--duration 10] [--warmup 3] [--users 200000]
//                 [--gift-share 0.05] [--json]
//   node spike.js --bare     # HTTP figures only, against bare.js (./run.sh --bare-spike)
'use strict';
const autocannon = require('autocannon');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { setTimeout: sleep } = require('node:timers/promises');
const { Client } = require('pg');
const { StockdClient } = require('stockd-client');

const { values: opt } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    users: { type: 'string', default: '200000' },
    'gift-share': { type: 'string', default: '0.05' },
    bare: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const env = process.env;
const APP_URL = env.APP_URL ?? 'http://127.0.0.1:3000';
const SKUS = ['sneaker', 'gift-card'];
const CATCH_UP_MAX_MS = 120_000;
const QUIET_MS = 500;

const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** CPU time (user + system) of a process and its descendants so far, in microseconds. */
function cpuUs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let us = (Number(f[11]) + Number(f[12])) * TICK_US; // utime, stime
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      for (const child of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) {
        if (child.trim()) us += cpuUs(Number(child));
      }
    }
    return us;
  } catch {
    return 0; // gone
  }
}

/** CPU used during `fn` by each process of CPU_PIDS ("name:pid,...") and by this one. */
async function cpuDuring(fn) {
  const procs = (env.CPU_PIDS ?? '').split(',').filter(Boolean).map((x) => x.split(':'));
  const before = procs.map(([, pid]) => cpuUs(pid));
  const self = process.cpuUsage();
  const result = await fn();
  const used = Object.fromEntries(procs.map(([name, pid], i) => [name, cpuUs(pid) - before[i]]));
  const mine = process.cpuUsage(self);
  used['load generator'] = mine.user + mine.system;
  return { result, used };
}

/** What the buyers were told: statuses, and the order ids and codes of every 201. */
class Tally {
  statuses = {};
  orderIds = [];
  codes = [];
  add(status, body) {
    this.statuses[status] = (this.statuses[status] ?? 0) + 1;
    if (status !== 201) return;
    const r = JSON.parse(body);
    this.orderIds.push(r.orderId);
    this.codes.push(...r.codes);
  }
}

/** One autocannon run of buyers: a random user each time, sometimes a gift card. */
function buyers(tally, connections, seconds) {
  const users = Number(opt.users);
  const giftShare = Number(opt['gift-share']);
  return autocannon({
    url: APP_URL,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/api/buy',
        setupRequest: (req) => ({
          ...req,
          headers: { 'content-type': 'application/json', 'x-user-id': `u${Math.floor(Math.random() * users)}` },
          body: JSON.stringify({ sku: Math.random() < giftShare ? 'gift-card' : 'sneaker' }),
        }),
        onResponse: (status, body) => tally.add(status, body),
      },
    ],
  });
}

function httpFigures(r) {
  return {
    connections: r.connections,
    seconds: r.duration,
    requestsPerSec: Math.round(r.requests.total / r.duration),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    errors: r.errors,
    timeouts: r.timeouts,
  };
}

/** Units sold per SKU by stockd, and the per-user limits. */
async function stockdView(stockd) {
  const out = {};
  for (const sku of SKUS) {
    const r = await stockd.skuGet(sku);
    if (r.status !== 'OK') throw new Error(`${sku}: ${r.status}`);
    out[sku] = r.sku;
  }
  return out;
}

async function unitsInPg(pg) {
  const r = await pg.query('SELECT sku, sum(qty)::bigint AS units FROM order_lines GROUP BY sku');
  return Object.fromEntries(r.rows.map((x) => [x.sku, BigInt(x.units)]));
}

/**
 * Polls until PostgreSQL holds every unit stockd sold and stockd has sold nothing new for
 * QUIET_MS (an app that fell behind still finishes requests whose buyers hung up). Returns,
 * in ms after `since`, when PostgreSQL first held that final count and when stockd's count
 * last moved (an upper bound of the last sale).
 */
async function catchUp(stockd, pg, since) {
  let caughtUpAt;
  let last = '';
  let lastChange = performance.now();
  for (;;) {
    const inPg = await unitsInPg(pg);
    const sold = await stockdView(stockd);
    const now = performance.now();
    const soldNow = SKUS.map((s) => sold[s].sold).join(',');
    if (soldNow !== last) [last, lastChange, caughtUpAt] = [soldNow, now, undefined];
    const equal = SKUS.every((s) => (inPg[s] ?? 0n) === sold[s].sold);
    if (!equal) caughtUpAt = undefined;
    else if (caughtUpAt === undefined) caughtUpAt = now;
    if (equal && now - lastChange >= QUIET_MS) return { catchUpMs: caughtUpAt - since, lastSaleMs: Math.max(0, lastChange - since) };
    if (now - since > CATCH_UP_MAX_MS) throw new Error('PostgreSQL did not catch up within 120 s');
    await sleep(5);
  }
}

async function checks(stockd, pg, tally, connections) {
  const out = [];
  const check = (name, ok, detail) => out.push({ name, ok, detail });
  const view = await stockdView(stockd);
  const inPg = await unitsInPg(pg);
  for (const sku of SKUS) {
    const v = view[sku];
    check(`${sku}: units in PostgreSQL == units sold by stockd`, (inPg[sku] ?? 0n) === v.sold, `${inPg[sku] ?? 0n} vs ${v.sold}`);
    check(`${sku}: available + held + sold == total`, v.available + v.held + v.sold === v.total, `${v.available} + ${v.held} + ${v.sold} vs ${v.total}`);
  }
  const ok201 = tally.orderIds.length;
  const distinct = new Set(tally.orderIds).size;
  check('no order id handed out twice', distinct === ok201, `${distinct} distinct of ${ok201}`);
  const orders = Number((await pg.query('SELECT count(*) FROM orders')).rows[0].count);
  // autocannon drops the answers in flight when the time is up: those orders exist unseen.
  check('orders in PostgreSQL == 201 answers (+ at most one cut off per connection or lost to an error)', orders >= ok201 && orders <= ok201 + connections, `${orders} orders, ${ok201} answers`);
  const found = await pg.query('SELECT count(*) FROM orders WHERE order_id = ANY($1::bigint[])', [tally.orderIds]);
  check('every order a buyer was told of is in PostgreSQL', Number(found.rows[0].count) === ok201, `${found.rows[0].count} of ${ok201}`);
  const dupCodes = await pg.query('SELECT count(*) - count(DISTINCT code_bytes) AS n FROM order_codes');
  const codesSeen = new Set(tally.codes).size;
  check('no code sold twice', Number(dupCodes.rows[0].n) === 0 && codesSeen === tally.codes.length, `${tally.codes.length} codes seen, ${codesSeen} distinct; duplicates in SQL: ${dupCodes.rows[0].n}`);
  const over = await pg.query(
    `SELECT count(*) FROM (SELECT l.sku FROM orders o JOIN order_lines l USING (order_id)
       GROUP BY o.user_id_bytes, l.sku HAVING sum(l.qty) > CASE l.sku WHEN 'sneaker' THEN $1::bigint ELSE $2::bigint END) x`,
    [view.sneaker.perUserLimit, view['gift-card'].perUserLimit],
  );
  check('nobody over the per-user limit', Number(over.rows[0].count) === 0, `${over.rows[0].count} (user, sku) over`);
  return out;
}

function report(r) {
  if (opt.json) return console.log(JSON.stringify(r));
  const h = r.http;
  console.log(`spike: ${h.connections} connections, ${h.seconds} s, POST /api/buy${r.bare ? ' (bare Express, no stockd)' : ''}`);
  console.log(`  HTTP: ${h.requestsPerSec} req/s, p50 ${h.p50Ms} ms, p99 ${h.p99Ms} ms, max ${h.maxMs} ms; errors ${h.errors}, timeouts ${h.timeouts}`);
  console.log(`  answers: ${Object.entries(r.statuses).map(([s, n]) => `${s}: ${n}`).join(', ')}`);
  const cpu = Object.entries(r.cpuUsPerRequest);
  const total = cpu.reduce((sum, [, us]) => sum + us, 0);
  console.log(`  CPU per request: ${cpu.map(([k, us]) => `${k} ${us} us`).join(', ')}; total ${total} us`);
  if (r.bare) return;
  console.log(`  orders in PostgreSQL: ${r.orders}; the last one arrived ${r.catchUpMs} ms after the spike's end (the last sale: within ${r.lastSaleMs} ms of it)`);
  for (const c of r.checks) console.log(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name} (${c.detail})`);
}

async function main() {
  const connections = Number(opt.connections);
  const warm = new Tally();
  if (Number(opt.warmup) > 0) warm.errors = (await buyers(warm, 100, Number(opt.warmup))).errors;
  const tally = new Tally();
  const { result, used } = await cpuDuring(() => buyers(tally, connections, Number(opt.duration)));
  const end = performance.now();
  const r = { bare: opt.bare, http: httpFigures(result), statuses: tally.statuses };
  // CPU per answered request, in microseconds: what each process costs a buy on this machine.
  r.cpuUsPerRequest = Object.fromEntries(Object.entries(used).map(([k, us]) => [k, Math.round(us / result.requests.total)]));
  if (opt.bare) return report(r);

  const stockd = new StockdClient({ port: Number(env.STOCKD_PORT ?? 7070) });
  const pg = new Client({ connectionString: env.PG_URL });
  await pg.connect();
  try {
    const { catchUpMs, lastSaleMs } = await catchUp(stockd, pg, end);
    r.catchUpMs = Math.round(catchUpMs);
    r.lastSaleMs = Math.round(lastSaleMs);
    const all = new Tally();
    all.orderIds = warm.orderIds.concat(tally.orderIds);
    all.codes = warm.codes.concat(tally.codes);
    r.orders = Number((await pg.query('SELECT count(*) FROM orders')).rows[0].count);
    // Unanswered: one per connection when autocannon stopped, and each request it gave up on.
    const unanswered = connections + 100 + result.errors + (warm.errors ?? 0);
    r.checks = await checks(stockd, pg, all, unanswered);
    report(r);
    if (!r.checks.every((c) => c.ok)) process.exitCode = 1;
  } finally {
    await pg.end();
    await stockd.close();
  }
}

main().catch((e) => {
  console.error('spike:', e);
  process.exit(2);
});
