// Every operation of every role against a real stockd.
'use strict';
const { describe: nodeDescribe, it, before, after } = require('node:test');
// A deadline per suite: a bug shows as a failure, never as a hung run.
const describe = (name, fn) => nodeDescribe(name, { timeout: 60_000 }, fn);
const assert = require('node:assert/strict');
const net = require('net');
const s = require('../dist');
const { StockdClient } = s;
const { TOKENS, startStockd, sleep } = require('./helpers/stockd');

const INFLIGHT_MAX = 8;
let srv, buyer, admin, outbox;
const client = (role, extra = {}) => new StockdClient({ port: srv.port, role, token: TOKENS[role], timeoutMs: 5000, ...extra });

before(async () => {
  srv = await startStockd({ args: ['--inflight-max', String(INFLIGHT_MAX)] });
  buyer = client('buyer');
  admin = client('admin');
  outbox = client('outbox');
  await Promise.all([buyer.connect(), admin.connect(), outbox.connect()]);
});

after(async () => {
  await Promise.all([buyer, admin, outbox].map((c) => c && c.close()));
  if (srv) await srv.stop();
});

let skuSeq = 0;
async function makeSku(total, extra = {}) {
  const sku = `SKU-${++skuSeq}`;
  const r = await admin.skuSet({ sku, total, ...extra });
  assert.equal(r.status, 'OK');
  return sku;
}

describe('any role', () => {
  it('ping, stats, serverLimits', async () => {
    await buyer.ping();
    await outbox.ping();
    const stats = await buyer.stats();
    assert.ok(stats.length > 0);
    for (const st of stats) assert.equal(typeof st.value, 'bigint', st.name);
    assert.equal(buyer.serverLimits.inflightMax, INFLIGHT_MAX);
    assert.ok(buyer.serverLimits.frameBytesMax >= 65536);
  });
});

describe('admin: SKUs', () => {
  it('skuSet creates and changes only the fields given; skuGet', async () => {
    const sku = await makeSku(10, { perUserLimit: 3 });
    let r = await admin.skuSet({ sku, total: 12n });
    assert.equal(r.status, 'OK');
    assert.equal(r.sku.total, 12n);
    assert.equal(r.sku.perUserLimit, 3, 'per_user_limit untouched');
    const g = await buyer.skuGet(sku);
    assert.equal(g.status, 'OK');
    assert.deepEqual([g.sku.total, g.sku.available, g.sku.held, g.sku.sold], [12n, 12n, 0n, 0n]);
    assert.deepEqual(await buyer.skuGet('NO-SUCH-SKU'), { status: 'NOT_FOUND' });
  });

  it('restock: OK, BELOW_COMMITTED, NOT_FOUND', async () => {
    const sku = await makeSku(5);
    const up = await admin.restock({ sku, delta: 3 });
    assert.equal(up.status, 'OK');
    assert.equal(up.sku.total, 8n);
    const below = await admin.restock({ sku, delta: -9n });
    assert.equal(below.status, 'BELOW_COMMITTED');
    assert.equal(below.sku.total, 8n, 'the SKU unchanged');
    assert.deepEqual(await admin.restock({ sku: 'NO-SUCH-SKU', delta: 1 }), { status: 'NOT_FOUND' });
  });

  it('skuSet BELOW_COMMITTED once units are sold', async () => {
    const sku = await makeSku(5);
    assert.equal((await buyer.reserve({ user: 'bc', ttlMs: 0, lines: [{ sku, qty: 4 }] })).status, 'OK');
    const r = await admin.skuSet({ sku, total: 3 });
    assert.equal(r.status, 'BELOW_COMMITTED');
    assert.equal(r.sku.sold, 4n);
  });

  it('skuList pages and the skus() iterator walk every SKU in byte order', async () => {
    const mine = [];
    for (let i = 0; i < 23; i++) {
      const sku = `LIST-${String(i).padStart(2, '0')}`;
      mine.push(sku);
      await admin.skuSet({ sku, total: i });
    }
    const page = await buyer.skuList({ after: 'LIST-', limit: 5 });
    assert.deepEqual(page.map((v) => v.sku), mine.slice(0, 5));
    const seen = [];
    for await (const v of buyer.skus({ pageSize: 7 })) seen.push(v.sku);
    assert.deepEqual(seen.filter((x) => x.startsWith('LIST-')), mine);
    assert.deepEqual([...seen].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), seen);
    assert.deepEqual(await buyer.skuList({ after: '\u{10FFFF}' }), []);
  });
});

describe('buyer: holds', () => {
  it('reserve several lines, holdGet, commit; a repeat commit is ALREADY_DONE', async () => {
    const a = await makeSku(10);
    const b = await makeSku(10);
    const r = await buyer.reserve({ user: 'alice', ttlMs: 60000, lines: [{ sku: a, qty: 2 }, { sku: b, qty: 1 }] });
    assert.equal(r.status, 'OK');
    assert.equal(typeof r.holdId, 'bigint');
    assert.equal(r.state, 'HELD');
    assert.ok(r.expiresAtMs > Date.now());
    assert.equal(r.available, 8n);
    assert.match(r.key, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUIDv7 key');
    assert.equal((await buyer.skuGet(a)).sku.held, 2n);

    const g = await buyer.holdGet({ holdId: r.holdId, user: 'alice' });
    assert.equal(g.status, 'OK');
    assert.deepEqual(g.hold.lines, [{ sku: a, qty: 2 }, { sku: b, qty: 1 }]);
    assert.equal(g.hold.key, r.key);
    assert.deepEqual(await buyer.holdGet({ holdId: r.holdId, user: 'mallory' }), { status: 'NOT_FOUND' });

    const c = await buyer.commit({ holdId: r.holdId, user: 'alice' });
    assert.equal(c.status, 'OK');
    assert.equal(c.hold.state, 'COMMITTED');
    const again = await buyer.commit({ holdId: String(r.holdId), user: 'alice' });
    assert.equal(again.status, 'ALREADY_DONE');
    assert.equal(again.hold.state, 'COMMITTED');
    assert.equal((await buyer.release({ holdId: r.holdId, user: 'alice' })).status, 'ALREADY_DONE');
    const v = (await buyer.skuGet(a)).sku;
    assert.deepEqual([v.available, v.held, v.sold], [8n, 0n, 2n]);
  });

  it('release gives the units back; another user cannot touch the hold', async () => {
    const sku = await makeSku(3);
    const r = await buyer.reserve({ user: 'bob', ttlMs: 60000, lines: [{ sku, qty: 3 }] });
    assert.equal(r.status, 'OK');
    assert.deepEqual(await buyer.release({ holdId: r.holdId, user: 'eve' }), { status: 'NOT_FOUND' });
    const rel = await buyer.release({ holdId: r.holdId, user: 'bob' });
    assert.equal(rel.status, 'OK');
    assert.equal(rel.hold.state, 'RELEASED');
    assert.equal((await buyer.skuGet(sku)).sku.available, 3n);
  });

  it('a buyer must name the user (the server says BAD_REQUEST); admin and outbox need not', async () => {
    const sku = await makeSku(3);
    const r = await buyer.reserve({ user: 'carol', ttlMs: 60000, lines: [{ sku, qty: 1 }] });
    // The reason is for humans; matched here only to tell this rule from a decode failure.
    const named = (e) => e instanceof s.StockdBadRequestError && !e.local && /must name/.test(e.serverMessage);
    await assert.rejects(buyer.holdGet({ holdId: r.holdId }), named);
    await assert.rejects(buyer.commit({ holdId: r.holdId, user: '' }), named);
    await assert.rejects(buyer.release({ holdId: r.holdId, user: '' }), named);
    const g = await admin.holdGet({ holdId: r.holdId });
    assert.equal(g.status, 'OK');
    assert.equal(g.hold.user, 'carol');
    assert.deepEqual(await admin.holdGet({ holdId: r.holdId, user: 'not-carol' }), { status: 'NOT_FOUND' });
    assert.equal((await outbox.holdGet({ holdId: r.holdId })).status, 'OK');
    assert.deepEqual(await admin.holdGet({ holdId: 987654321987n }), { status: 'NOT_FOUND' });
  });

  it('HOLD_EXPIRED after the deadline', async () => {
    const sku = await makeSku(3);
    const r = await buyer.reserve({ user: 'dave', ttlMs: 1, lines: [{ sku, qty: 1 }] });
    await sleep(20);
    const c = await buyer.commit({ holdId: r.holdId, user: 'dave' });
    assert.equal(c.status, 'HOLD_EXPIRED');
  });

  it('buy now: COMMITTED at once, no deadline', async () => {
    const sku = await makeSku(3);
    const r = await buyer.reserve({ user: 'erin', ttlMs: 0, lines: [{ sku, qty: 1 }] });
    assert.deepEqual([r.status, r.state, r.expiresAtMs], ['OK', 'COMMITTED', 0]);
  });

  it('refusals are values: SOLD_OUT, LIMIT_EXCEEDED, NOT_FOUND, SALE_NOT_OPEN, SALE_CLOSED', async () => {
    const a = await makeSku(2);
    const limited = await makeSku(10, { perUserLimit: 2 });
    const later = await makeSku(10, { opensAtMs: Date.now() + 3_600_000 });
    const closing = await makeSku(10);
    const line = (sku, qty = 1) => ({ sku, qty });
    let r = await buyer.reserve({ user: 'f', ttlMs: 60000, lines: [line(limited), line(a, 3)] });
    assert.deepEqual({ ...r, key: '' }, { status: 'SOLD_OUT', key: '', failedLine: 1, available: 2n });
    r = await buyer.reserve({ user: 'f', ttlMs: 60000, lines: [line(limited, 3)] });
    assert.deepEqual([r.status, r.failedLine, r.available], ['LIMIT_EXCEEDED', 0, 2n]);
    r = await buyer.reserve({ user: 'f', ttlMs: 60000, lines: [line(a), line('NO-SUCH-SKU')] });
    assert.deepEqual([r.status, r.failedLine], ['NOT_FOUND', 1]);
    r = await buyer.reserve({ user: 'f', ttlMs: 60000, lines: [line(later)] });
    assert.equal(r.status, 'SALE_NOT_OPEN');
    const closed = await admin.saleClose(closing);
    assert.equal(closed.status, 'OK');
    assert.equal(closed.sku.flags & s.codec.SKU_CLOSED, s.codec.SKU_CLOSED);
    r = await buyer.reserve({ user: 'f', ttlMs: 60000, lines: [line(closing)] });
    assert.equal(r.status, 'SALE_CLOSED');
    assert.deepEqual(await admin.saleClose('NO-SUCH-SKU'), { status: 'NOT_FOUND' });
  });

  it('idempotency: the same key answers the first answer; another request under it is KEY_CONFLICT', async () => {
    const sku = await makeSku(5);
    const req = { user: 'gina', ttlMs: 60000, lines: [{ sku, qty: 1 }], key: `k-${Date.now()}` };
    const first = await buyer.reserve(req);
    const again = await buyer.reserve(req);
    assert.equal(again.status, 'OK');
    assert.equal(again.holdId, first.holdId);
    assert.equal((await buyer.skuGet(sku)).sku.held, 1n, 'reserved once');
    const other = await buyer.reserve({ ...req, lines: [{ sku, qty: 2 }] });
    assert.deepEqual(other, { status: 'KEY_CONFLICT', key: req.key });
  });
});

describe('buyer: a lost answer', () => {
  it("a keyed reserve whose answer is lost: the error names its key; resent with it, it is the same purchase", async (t) => {
    const sku = await makeSku(5);
    // A proxy to stockd that stops passing the server's answers once `mute` is set.
    let mute = false;
    const proxy = net.createServer((down) => {
      const up = net.connect(srv.port, srv.host);
      down.on('error', () => {});
      up.on('error', () => {});
      down.pipe(up);
      up.on('data', (d) => mute || down.write(d));
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    const lossy = client('buyer', { port: proxy.address().port });
    t.after(() => {
      lossy.destroy();
      proxy.close();
    });
    await lossy.connect();
    mute = true;
    const req = { user: 'nina', ttlMs: 60000, lines: [{ sku, qty: 1 }] };
    const err = await lossy.reserve(req, { timeoutMs: 300 }).then(() => assert.fail('answered'), (e) => e);
    assert.ok(err instanceof s.StockdTimeoutError && err.outcomeUnknown, err.message);
    assert.match(err.idempotencyKey, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal((await buyer.skuGet(sku)).sku.held, 1n, 'the server applied it');
    const again = await buyer.reserve({ ...req, key: err.idempotencyKey });
    assert.equal(again.status, 'OK');
    assert.equal((await buyer.holdGet({ holdId: again.holdId, user: 'nina' })).hold.key, err.idempotencyKey);
    assert.equal((await buyer.skuGet(sku)).sku.held, 1n, 'the resend is the same purchase');
  });
});

describe('buyer: code pools', () => {
  it('codesLoad, DUPLICATE_CODE, claim, SOLD_OUT, NOT_FOUND', async () => {
    const sku = `POOL-${Date.now()}`;
    assert.equal((await admin.skuSet({ sku })).status, 'OK');
    const loaded = await admin.codesLoad({ sku, codes: [`${sku}-A`, `${sku}-B`] });
    assert.equal(loaded.status, 'OK');
    assert.equal(loaded.sku.total, 2n);
    assert.equal(loaded.sku.flags & s.codec.SKU_CODE_POOL, s.codec.SKU_CODE_POOL);
    const other = `${sku}-OTHER`;
    assert.equal((await admin.skuSet({ sku: other })).status, 'OK');
    const dup = await admin.codesLoad({ sku: other, codes: [`${sku}-C`, `${sku}-A`] });
    assert.deepEqual([dup.status, dup.duplicate, dup.sku.total], ['DUPLICATE_CODE', `${sku}-A`, 0n]);
    // The same SKU again: codes in it already are skipped (a load cut short is run again).
    const again = await admin.codesLoad({ sku, codes: [`${sku}-A`, `${sku}-B`, `${sku}-C`] });
    assert.deepEqual([again.status, again.sku.total], ['OK', 3n]);
    assert.deepEqual(await admin.codesLoad({ sku: 'NO-SUCH-SKU', codes: ['x'] }), { status: 'NOT_FOUND' });

    const c1 = await buyer.claim({ sku, user: 'hana' });
    assert.equal(c1.status, 'OK');
    assert.equal(typeof c1.orderId, 'bigint');
    assert.ok([`${sku}-A`, `${sku}-B`, `${sku}-C`].includes(c1.code));
    const h = await buyer.holdGet({ holdId: c1.orderId, user: 'hana' });
    assert.deepEqual([h.hold.state, h.hold.expiresAtMs], ['COMMITTED', 0]);
    assert.equal((await buyer.claim({ sku, user: 'ivan' })).status, 'OK');
    assert.equal((await buyer.claim({ sku, user: 'ida' })).status, 'OK');
    const out = await buyer.claim({ sku, user: 'jon' });
    assert.deepEqual([out.status, out.available], ['SOLD_OUT', 0n]);
    assert.equal((await buyer.claim({ sku: 'NO-SUCH-SKU', user: 'jon' })).status, 'NOT_FOUND');
    const held = await buyer.reserve({ user: 'kim', ttlMs: 0, lines: [{ sku, qty: 1 }] });
    assert.equal(held.status, 'SOLD_OUT');
  });
});

describe('outbox', () => {
  it('status, read, ack; a long poll waits', async () => {
    const sku = await makeSku(5);
    const r = await buyer.reserve({ user: 'lea', ttlMs: 0, lines: [{ sku, qty: 1 }] });
    const st = await outbox.outboxStatus();
    assert.ok(st.headSeq >= 1n);
    let records = [];
    for (let after = 0n; ; ) {
      const page = await outbox.outboxRead({ afterSeq: after, maxRecords: 100 });
      if (page.records.length === 0) break;
      records = records.concat(page.records);
      after = page.records[page.records.length - 1].seq;
    }
    const mine = records.find((x) => x.orderId === r.holdId);
    assert.ok(mine, 'the buy-now order is in the outbox');
    assert.deepEqual([mine.kind, mine.user, mine.key], ['ORDER', 'lea', r.key]);
    const head = records[records.length - 1].seq;
    const acked = await outbox.outboxAck(head);
    assert.equal(acked.ackedSeq, head);
    const t0 = Date.now();
    const empty = await outbox.outboxRead({ afterSeq: (await admin.outboxStatus()).headSeq, waitMs: 1200 }, { timeoutMs: 1000 });
    assert.equal(empty.records.length, 0);
    assert.ok(Date.now() - t0 >= 900, 'the long poll waited (its deadline is timeoutMs + waitMs)');
  });

  it('a waiting outboxRead holds its connection: other calls wait in the client, not behind it', async (t) => {
    const poller = client('outbox');
    t.after(() => poller.destroy());
    const trouble = [];
    poller.on('error', (e) => trouble.push(e.message));
    poller.on('reconnecting', (e) => trouble.push(`reconnecting: ${e.error.message}`));
    const head = (await poller.outboxStatus()).headSeq;
    const t0 = Date.now();
    const poll = poller.outboxRead({ afterSeq: head, waitMs: 2000 }, { timeoutMs: 1000 });
    // On the poll's connection the server would run it only after the poll (section 5): it
    // would time out there, and its connection be presumed stuck a second later.
    await assert.rejects(poller.outboxStatus({ timeoutMs: 300 }), s.StockdTimeoutError);
    const later = poller.outboxStatus({ timeoutMs: 5000 });
    assert.equal((await poll).records.length, 0);
    assert.ok(Date.now() - t0 >= 1500, 'the poll waited');
    assert.ok((await later).headSeq >= head);
    assert.deepEqual(trouble, [], 'the connection was kept');
  });
});

describe('errors', () => {
  it('an operation outside the role is StockdUnauthorizedError; the connection stays', async () => {
    await assert.rejects(buyer.restock({ sku: 'X', delta: 1 }), s.StockdUnauthorizedError);
    await assert.rejects(outbox.reserve({ user: 'u', ttlMs: 0, lines: [{ sku: 'X', qty: 1 }] }), s.StockdUnauthorizedError);
    await buyer.ping();
  });

  it('a wrong token fails connect and calls with StockdUnauthorizedError, not a timeout', async () => {
    const bad = new StockdClient({ port: srv.port, role: 'admin', token: 'wrong', timeoutMs: 5000 });
    try {
      const t0 = Date.now();
      await assert.rejects(bad.connect(), s.StockdUnauthorizedError);
      await assert.rejects(bad.ping(), s.StockdUnauthorizedError);
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      bad.destroy();
    }
  });

  it('BAD_REQUEST from the server carries its message', async () => {
    const sku = await makeSku(5);
    await assert.rejects(buyer.reserve({ user: 'u', ttlMs: 0, lines: [{ sku, qty: 1 }, { sku, qty: 1 }] }), (e) => {
      assert.ok(e instanceof s.StockdBadRequestError);
      assert.equal(e.local, false);
      assert.match(e.serverMessage, /repeated/);
      return true;
    });
  });

  it('bad arguments are refused before sending (local StockdBadRequestError naming the field)', async () => {
    await assert.rejects(buyer.skuGet('x'.repeat(65)), { name: 'StockdBadRequestError', local: true, serverMessage: 'sku_get: sku is 65 bytes, max 64' });
    await assert.rejects(buyer.commit({ holdId: -1, user: 'u' }), { local: true });
    await assert.rejects(buyer.commit({ holdId: 0n, user: 'u' }), { local: true, serverMessage: 'commit: hold_id is 0, must be at least 1' });
  });

  it("a frame over the server's frame_bytes_max is refused with StockdFrameTooLargeError, not sent", async () => {
    const codes = Array.from({ length: 9000 }, (_, i) => `BIG-${i}-${'x'.repeat(110)}`);
    await assert.rejects(admin.codesLoad({ sku: 'BIG', codes }), { name: 'StockdFrameTooLargeError', local: true });
    await admin.ping();
  });

  it("a hold past the user's cap is StockdTooManyHoldsError (a StockdBusyError): the buyer's own doing", async () => {
    const sku = await makeSku(1000);
    const user = 'greedy-node';
    const held = await Promise.all(Array.from({ length: 100 }, () => buyer.reserve({ user, ttlMs: 60_000, lines: [{ sku, qty: 1 }] })));
    assert.ok(held.every((r) => r.status === 'OK'));
    await assert.rejects(buyer.reserve({ user, ttlMs: 60_000, lines: [{ sku, qty: 1 }] }), (e) => {
      assert.ok(e instanceof s.StockdTooManyHoldsError, e.name);
      assert.ok(e instanceof s.StockdBusyError, 'code written for BUSY keeps working');
      assert.deepEqual([e.code, e.status, e.local], ['TOO_MANY_HOLDS', 72, false]);
      assert.match(e.serverMessage, /--user-holds-max/);
      return true;
    });
    assert.equal((await buyer.reserve({ user, ttlMs: 0, lines: [{ sku, qty: 1 }] })).status, 'OK', 'buy now is not capped');
    await buyer.release({ holdId: held[0].holdId, user });
    assert.equal((await buyer.reserve({ user, ttlMs: 60_000, lines: [{ sku, qty: 1 }] })).status, 'OK', 'room again after a release');
  });

  it('an aborted call rejects with StockdAbortError', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(buyer.ping({ signal: ac.signal }), { name: 'AbortError', code: 'ABORTED' });
  });
});

describe('transport', () => {
  it(`many calls in flight on one connection stay within inflight_max (${INFLIGHT_MAX})`, async () => {
    const sku = await makeSku(1000);
    const all = await Promise.all(Array.from({ length: 300 }, (_, i) => buyer.reserve({ user: `p${i}`, ttlMs: 0, lines: [{ sku, qty: 1 }] })));
    assert.ok(all.every((r) => r.status === 'OK'));
    assert.equal((await buyer.skuGet(sku)).sku.sold, 300n);
  });

  it('a pool of connections', async (t) => {
    const pool = client('buyer', { connections: 3 });
    t.after(() => pool.destroy());
    let connects = 0;
    pool.on('connect', () => connects++);
    await pool.connect();
    const got = await Promise.all(Array.from({ length: 200 }, () => pool.stats()));
    assert.equal(got.length, 200);
    assert.equal(connects, 3);
    await pool.close();
  });

  it('close() lets calls in flight finish, then refuses new ones', async (t) => {
    const sku = await makeSku(100);
    const c = client('buyer');
    t.after(() => c.destroy());
    let closed = false;
    c.on('close', () => (closed = true));
    const calls = Array.from({ length: 50 }, (_, i) => c.reserve({ user: `z${i}`, ttlMs: 0, lines: [{ sku, qty: 1 }] }));
    await c.close();
    const results = await Promise.all(calls);
    assert.ok(results.every((r) => r.status === 'OK'));
    assert.ok(closed);
    await assert.rejects(c.ping(), s.StockdConnectionError);
  });
});
