// kill -9 of stockd under load, restarted on the same port and data dir: the client's keyed
// retries must leave every purchase it was told OK sold exactly once.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { StockdClient } = require('../dist');
const { TOKENS, startStockd, sleep } = require('./helpers/stockd');

const WORKERS = 64;

test('kill -9 mid-load: every OK is sold, none twice', { timeout: 90_000 }, async (t) => {
  const srv = await startStockd();
  // maxQueued: the check at the end asks for every hold at once (~100,000 HOLD_GETs), past the
  // default of 10,000 that a web backend's queue is capped at.
  const admin = new StockdClient({ port: srv.port, role: 'admin', token: TOKENS.admin, timeoutMs: 20000, maxQueued: 1_000_000 });
  const buyers = new StockdClient({
    port: srv.port,
    token: TOKENS.buyer,
    connections: 2,
    timeoutMs: 20000,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
  });
  t.after(async () => {
    admin.destroy();
    buyers.destroy();
    await srv.stop();
  });
  let reconnects = 0;
  buyers.on('reconnecting', () => reconnects++);
  buyers.on('error', () => {}); // expected while the server is down
  assert.equal((await admin.skuSet({ sku: 'CRASH', total: 1_000_000 })).status, 'OK');
  await buyers.connect();

  const oks = [];
  const failures = [];
  let stop = false;
  let sent = 0;
  let afterRestart = 0;
  let restarted = false;
  const worker = async (w) => {
    for (let i = 0; !stop; i++) {
      sent++;
      try {
        const r = await buyers.reserve({ user: `w${w}`, ttlMs: 0, lines: [{ sku: 'CRASH', qty: 1 }] });
        assert.equal(r.status, 'OK');
        oks.push(r);
        if (restarted) afterRestart++;
      } catch (e) {
        failures.push(e);
      }
    }
  };
  const running = Array.from({ length: WORKERS }, (_, w) => worker(w));

  await sleep(700);
  const before = oks.length;
  await srv.kill9();
  await sleep(300);
  const unanswered = sent - oks.length - failures.length; // each must be resent to the new server
  await srv.start(); // same port, same data dir
  restarted = true;
  await sleep(700);
  stop = true;
  await Promise.all(running);

  assert.deepEqual(failures.map((e) => e.message), [], 'keyed retries hide the crash');
  assert.ok(before > 0, 'load ran before the kill');
  assert.ok(afterRestart > 0, 'load ran after the restart');
  assert.ok(reconnects > 0, 'the client reconnected');
  assert.ok(unanswered > 0, 'requests were in flight when the server died');
  t.diagnostic(`${oks.length} OK, ${before} before the kill, ${unanswered} resent after it, ${afterRestart} after the restart`);

  const holdIds = new Set(oks.map((r) => r.holdId));
  assert.equal(holdIds.size, oks.length, 'no two purchases share a hold');
  const v = (await admin.skuGet('CRASH')).sku;
  assert.equal(v.sold, BigInt(holdIds.size), `sold == distinct OKs (${sent} sent)`);
  assert.equal(v.held, 0n);
  const views = await Promise.all([...holdIds].map((holdId) => admin.holdGet({ holdId })));
  const notSold = views.filter((g) => g.status !== 'OK' || g.hold.state !== 'COMMITTED');
  assert.equal(notSold.length, 0, 'every OK is COMMITTED after the restart');
});
