// The example end to end: PostgreSQL, stockd (sync), stockd-outbox and server.js on free
// ports; every endpoint over HTTP, then the orders in SQL.
'use strict';
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { setTimeout: sleep } = require('node:timers/promises');
const { Client } = require('pg');
const { StockdClient } = require('stockd-client');
const { Stack } = require('./stack');

describe('flash-sale-web', { timeout: 60_000 }, () => {
  const stack = new Stack();
  let url;
  let admin;
  const orders = []; // order ids the API reported

  /** fetch with JSON in and out; `user` is the session stand-in header. */
  async function call(method, path, { user, body, key, raw, base = url } = {}) {
    const headers = {};
    if (user) headers['X-User-Id'] = user;
    if (key) headers['Idempotency-Key'] = key;
    if (body !== undefined || raw !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(base + path, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
    const text = await res.text();
    assert.doesNotMatch(text, /\bat .*\.js:\d+/, 'no stack trace in a body');
    return { status: res.status, body: JSON.parse(text), headers: res.headers };
  }
  const post = (path, opts) => call('POST', path, opts);

  before(async () => {
    await Promise.all([stack.startPostgres(), stack.startStockd()]).catch(async (e) => {
      await stack.stop();
      throw e;
    });
    stack.startOutbox();
    admin = new StockdClient({ port: stack.stockdPort, role: 'admin', token: stack.adminToken.value });
    await admin.skuSet({ sku: 'sneaker', total: 100, perUserLimit: 2 });
    await admin.skuSet({ sku: 'last-one', total: 1 });
    await admin.skuSet({ sku: 'gift-card', perUserLimit: 1 });
    await admin.codesLoad({ sku: 'gift-card', codes: ['GC-0001', 'GC-0002'] });
    await admin.skuSet({ sku: 'later', total: 10, opensAtMs: Date.now() + 3_600_000 });
    await admin.skuSet({ sku: 'closed', total: 10 });
    await admin.saleClose('closed');
    url = await stack.startApp();
  });

  after(async () => {
    await admin?.close();
    await stack.stop();
  });

  test('stock of a SKU, and of an unknown one', async () => {
    const r = await call('GET', '/api/stock/sneaker');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {
      sku: 'sneaker', total: 100, available: 100, held: 0, sold: 0, perUserLimit: 2, opensAt: null, closesAt: null, closed: false,
    });
    assert.equal((await call('GET', '/api/stock/nope')).status, 404);
    assert.equal((await call('GET', '/api/nothing-here')).status, 404);
  });

  test('bad input is a 400, no session a 401', async () => {
    assert.equal((await post('/api/buy', { body: { sku: 'sneaker' } })).status, 401);
    for (const body of [{}, { sku: '' }, { sku: 'sneaker', qty: 0 }, { sku: 'sneaker', qty: 1.5 }, { sku: 'sneaker', mode: 'later' }, { sku: 'x'.repeat(65) }]) {
      const r = await post('/api/buy', { user: 'alice', body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error, 'BAD_REQUEST');
    }
    const broken = await post('/api/buy', { user: 'alice', raw: '{"sku":' });
    assert.deepEqual([broken.status, broken.body.error], [400, 'BAD_REQUEST']);
    assert.equal((await post('/api/checkout', { user: 'alice', body: { holdId: 12 } })).status, 400, 'hold ids are strings');
    // What stockd or its client refuse as malformed is the buyer's 400 too, never a 5xx.
    assert.equal((await post('/api/checkout', { user: 'alice', body: { holdId: '18446744073709551616' } })).status, 400, 'over u64');
    assert.equal((await post('/api/buy', { user: 'alice', body: { sku: 'a\u0000b' } })).status, 400, 'NUL in a SKU');
    // What Express and its body parser refuse keeps their 4xx (it was a 500 and a logged stack).
    assert.equal((await call('GET', '/api/stock/%E0')).status, 400);
    const latin1 = await fetch(url + '/api/buy', {
      method: 'POST',
      headers: { 'X-User-Id': 'alice', 'Content-Type': 'application/json; charset=latin1' },
      body: '{"sku":"sneaker"}',
    });
    assert.equal(latin1.status, 415);
    // A hold time the server cannot use is refused at start, not blamed on each buyer.
    const { createApp } = require('../app');
    for (const holdTtlMs of [0, NaN, 86_400_001]) assert.throws(() => createApp(null, { holdTtlMs }), /holdTtlMs/);
  });

  test('buy now: an order; the same Idempotency-Key gives the same order; the per-user limit holds', async () => {
    const first = await post('/api/buy', { user: 'alice', body: { sku: 'sneaker' }, key: 'alice-1' });
    assert.equal(first.status, 201);
    assert.match(first.body.orderId, /^[1-9][0-9]*$/);
    assert.equal(first.headers.get('idempotency-key'), 'alice-1');
    const again = await post('/api/buy', { user: 'alice', body: { sku: 'sneaker' }, key: 'alice-1' });
    assert.deepEqual([again.status, again.body.orderId], [201, first.body.orderId]);
    const second = await post('/api/buy', { user: 'alice', body: { sku: 'sneaker' } });
    assert.equal(second.status, 201);
    assert.ok(second.headers.get('idempotency-key'), 'a generated key is handed back');
    const third = await post('/api/buy', { user: 'alice', body: { sku: 'sneaker' } });
    assert.deepEqual([third.status, third.body.error, third.body.available], [409, 'LIMIT_EXCEEDED', 0]);
    // A key reused for another request: 422, as the IETF's Idempotency-Key draft says.
    const conflict = await post('/api/buy', { user: 'alice', body: { sku: 'sneaker', qty: 2 }, key: 'alice-1' });
    assert.deepEqual([conflict.status, conflict.body.error], [422, 'KEY_CONFLICT']);
    // Keys are the user's own: another user's request under alice's key is a request of its own
    // (stockd's keys are global: mallory could block alice's key, and learn that it was used).
    const mallory = await post('/api/buy', { user: 'mallory', body: { sku: 'no-such-sku' }, key: 'alice-1' });
    assert.deepEqual([mallory.status, mallory.body.error], [404, 'NOT_FOUND']);
    orders.push(first.body.orderId, second.body.orderId);
  });

  test('hold then checkout; only the holder may check out', async () => {
    const hold = await post('/api/buy', { user: 'bob', body: { sku: 'sneaker', qty: 2, mode: 'hold' } });
    assert.equal(hold.status, 201);
    assert.ok(Date.parse(hold.body.expiresAt) > Date.now());
    const { holdId } = hold.body;
    assert.equal((await call('GET', '/api/stock/sneaker')).body.held, 2);
    const other = await post('/api/checkout', { user: 'mallory', body: { holdId } });
    assert.deepEqual([other.status, other.body.error], [404, 'NOT_FOUND']);
    assert.equal((await post('/api/cancel', { user: 'mallory', body: { holdId } })).status, 404);
    const done = await post('/api/checkout', { user: 'bob', body: { holdId } });
    assert.deepEqual([done.status, done.body.orderId, done.body.order.state], [200, holdId, 'COMMITTED']);
    // A retried checkout (a double click, a retry after a 503) finds the order: 200, the same.
    const twice = await post('/api/checkout', { user: 'bob', body: { holdId } });
    assert.deepEqual([twice.status, twice.body.orderId, twice.body.order.state], [200, holdId, 'COMMITTED']);
    assert.equal((await post('/api/checkout', { user: 'bob', body: { holdId: '12345' } })).status, 404);
    orders.push(holdId);
  });

  test('hold then cancel: the units go back', async () => {
    const hold = await post('/api/buy', { user: 'carol', body: { sku: 'sneaker', mode: 'hold' } });
    assert.equal(hold.status, 201);
    const cancel = await post('/api/cancel', { user: 'carol', body: { holdId: hold.body.holdId } });
    assert.deepEqual([cancel.status, cancel.body.hold.state], [200, 'RELEASED']);
    const again = await post('/api/cancel', { user: 'carol', body: { holdId: hold.body.holdId } });
    assert.deepEqual([again.status, again.body.hold.state], [200, 'RELEASED']);
    const late = await post('/api/checkout', { user: 'carol', body: { holdId: hold.body.holdId } });
    assert.deepEqual([late.status, late.body.error], [409, 'ALREADY_DONE']);
    const stock = (await call('GET', '/api/stock/sneaker')).body;
    assert.deepEqual([stock.held, stock.sold, stock.available], [0, 4, 96]);
  });

  test('claim: unique codes, one per user, then sold out', async () => {
    const a = await post('/api/claim', { user: 'dave', body: { sku: 'gift-card' } });
    const b = await post('/api/claim', { user: 'erin', body: { sku: 'gift-card' } });
    assert.deepEqual([a.status, b.status], [201, 201]);
    assert.deepEqual([a.body.code, b.body.code].sort(), ['GC-0001', 'GC-0002']);
    const limit = await post('/api/claim', { user: 'dave', body: { sku: 'gift-card' } });
    assert.deepEqual([limit.status, limit.body.error], [409, 'LIMIT_EXCEEDED']);
    const none = await post('/api/claim', { user: 'frank', body: { sku: 'gift-card' } });
    assert.deepEqual([none.status, none.body.error, none.body.available], [409, 'SOLD_OUT', 0]);
    assert.equal((await post('/api/claim', { user: 'frank', body: { sku: 'nope' } })).status, 404);
    assert.equal((await post('/api/claim', { user: 'frank', body: { sku: 'sneaker' } })).status, 400, 'not a code pool');
    orders.push(a.body.orderId, b.body.orderId);
  });

  test('sold out, sale not open, sale closed', async () => {
    const last = await post('/api/buy', { user: 'gina', body: { sku: 'last-one' } });
    assert.equal(last.status, 201);
    orders.push(last.body.orderId);
    const gone = await post('/api/buy', { user: 'hank', body: { sku: 'last-one' } });
    assert.deepEqual([gone.status, gone.body.error, gone.body.available], [409, 'SOLD_OUT', 0]);
    // Not 425 Too Early: that is TLS early data's (RFC 8470), which a client may resend at once.
    const early = await post('/api/buy', { user: 'hank', body: { sku: 'later' } });
    assert.deepEqual([early.status, early.body.error], [403, 'SALE_NOT_OPEN']);
    const closed = await post('/api/buy', { user: 'hank', body: { sku: 'closed' } });
    assert.deepEqual([closed.status, closed.body.error], [403, 'SALE_CLOSED']);
    assert.equal((await post('/api/buy', { user: 'hank', body: { sku: 'nope' } })).status, 404);
  });

  test('an expired hold is a 410', async () => {
    const quick = await stack.startApp({ HOLD_TTL_MS: '200' });
    const hold = await post('/api/buy', { base: quick, user: 'ivy', body: { sku: 'sneaker', mode: 'hold' } });
    assert.equal(hold.status, 201);
    await sleep(300);
    const late = await post('/api/checkout', { base: quick, user: 'ivy', body: { holdId: hold.body.holdId } });
    assert.deepEqual([late.status, late.body.error], [410, 'HOLD_EXPIRED']);
  });

  /** An app whose stockd is gone (killed after the app connected): its URL and process. */
  async function appWithStockdGone(env) {
    const lost = await stack.spawnStockd();
    const app = stack.spawnApp({ STOCKD_PORT: String(lost.port), ...env });
    const base = await stack.appUrl(app);
    lost.proc.kill('SIGKILL');
    await lost.proc.exited;
    return { base, app };
  }

  test('stockd unreachable: 503 with Retry-After and the key to retry with', async () => {
    const { base: down } = await appWithStockdGone({ STOCKD_TIMEOUT_MS: '300' });
    const r = await post('/api/buy', { base: down, user: 'jack', body: { sku: 'sneaker' }, key: 'jack-1' });
    assert.deepEqual([r.status, r.body.error, r.body.key], [503, 'UNAVAILABLE', 'jack-1']);
    assert.equal(r.headers.get('retry-after'), '1');
  });

  // A deploy mid-sale: SIGTERM while a request is in flight on a keep-alive connection. Its
  // answer comes, with Connection: close, and the app exits by its clean path (stockd's client
  // closed) as soon as nothing is in flight. The socket, kept alive after its answer, kept
  // server.close() from finishing: the 5 s timer exited the process, cutting what was in flight.
  test('SIGTERM with a request in flight on a keep-alive connection: answered, then a clean exit', async () => {
    const http = require('node:http');
    const { base: slow, app } = await appWithStockdGone({ STOCKD_TIMEOUT_MS: '800' });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const answer = new Promise((resolve, reject) => {
      const req = http.request(`${slow}/api/buy`, {
        method: 'POST',
        agent,
        headers: { 'X-User-Id': 'kim', 'Content-Type': 'application/json' },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve(res));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ sku: 'sneaker' }));
    });
    await sleep(200);
    const t0 = Date.now();
    app.kill('SIGTERM');
    const res = await answer;
    assert.equal(res.statusCode, 503); // stockd unreachable: the answer, not a cut connection
    assert.equal(res.headers.connection, 'close');
    const code = await app.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 3000, `exited ${Date.now() - t0} ms after SIGTERM`);
    assert.match(app.output, /flash-sale-web: stopped/);
    agent.destroy();
  });

  test('every order reaches PostgreSQL through stockd-outbox, exactly once', async () => {
    const pg = new Client({ connectionString: stack.pgUrl });
    await pg.connect();
    try {
      const ids = orders.map(BigInt);
      let rows = [];
      for (let i = 0; i < 250 && rows.length < ids.length; i++) {
        if (i > 0) await sleep(20);
        rows = await pg.query('SELECT order_id, user_id FROM orders WHERE order_id = ANY($1::bigint[])', [ids]).then((r) => r.rows, () => []);
      }
      assert.equal(rows.length, ids.length, `every order the API reported; stockd-outbox said:\n${stack.outbox.output}`);
      const users = rows.map((r) => r.user_id).sort();
      assert.deepEqual(users, ['alice', 'alice', 'bob', 'dave', 'erin', 'gina']);
      const codes = await pg.query('SELECT code, o.user_id FROM order_codes JOIN orders o USING (order_id) ORDER BY code');
      assert.deepEqual(codes.rows.map((r) => r.code), ['GC-0001', 'GC-0002']);
      const lines = await pg.query("SELECT sum(qty)::int AS units FROM order_lines WHERE sku = 'sneaker'");
      assert.equal(lines.rows[0].units, 4, 'alice 2, bob 2');
      let released = [];
      for (let i = 0; i < 100 && released.length < 1; i++) {
        if (i > 0) await sleep(20);
        released = (await pg.query("SELECT user_id FROM hold_events WHERE kind = 'released'")).rows;
      }
      assert.deepEqual(released, [{ user_id: 'carol' }]);
    } finally {
      await pg.end();
    }
  });
});
