// stockd's caps on live holds (docs/protocol.md, section 6): a buyer at the cap per user
// (--user-holds-max, TOO_MANY_HOLDS) is the buyer's doing, a 429; the server at its cap
// (--live-holds-max, BUSY) is an overload, a 503 with Retry-After. A stockd of its own with small caps
// (2 per user, 3 in all) and the app; no PostgreSQL.
'use strict';
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { StockdClient } = require('stockd-client');
const { Stack } = require('./stack');

describe('caps on live holds', { timeout: 60_000 }, () => {
  const stack = new Stack();
  let url;
  let admin;

  async function post(path, user, body, key) {
    const headers = { 'X-User-Id': user, 'Content-Type': 'application/json' };
    if (key) headers['Idempotency-Key'] = key;
    const res = await fetch(url + path, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, body: await res.json(), headers: res.headers };
  }
  const hold = (user, key) => post('/api/buy', user, { sku: 'sneaker', mode: 'hold' }, key);

  before(async () => {
    try {
      const { port } = await stack.spawnStockd({ args: ['--user-holds-max', '2', '--live-holds-max', '3'] });
      stack.stockdPort = port;
      admin = new StockdClient({ port, role: 'admin', token: stack.adminToken.value });
      await admin.skuSet({ sku: 'sneaker', total: 100 });
      url = await stack.startApp();
    } catch (e) {
      await stack.stop();
      throw e;
    }
  });

  after(async () => {
    await admin?.close();
    await stack.stop();
  });

  test("a buyer at the cap per user: 429, the buyer's to fix; the server full: 503 with Retry-After", async () => {
    const [a1, a2] = [await hold('alice'), await hold('alice')];
    assert.deepEqual([a1.status, a2.status], [201, 201]);
    // Alice's third live hold: her own cap. Not a 503, whose Retry-After would have her retry
    // in vain every second until one of her holds ends.
    const a3 = await hold('alice', 'alice-3');
    assert.deepEqual([a3.status, a3.body.error], [429, 'TOO_MANY_HOLDS']);
    assert.match(a3.body.message, /check out or cancel/);
    assert.equal(a3.headers.get('retry-after'), null, 'no wait is known to help');
    assert.equal(a3.headers.get('idempotency-key'), 'alice-3');
    // Nothing was held, and a buy now (no hold) still sells to her.
    assert.equal((await fetch(`${url}/api/stock/sneaker`).then((r) => r.json())).held, 2);
    assert.equal((await post('/api/buy', 'alice', { sku: 'sneaker' })).status, 201);
    // Bob's hold makes 3 live holds, the server's cap: the next hold is refused for everyone,
    // a 503 to retry later with the same key.
    const bob = await hold('bob');
    assert.equal(bob.status, 201);
    const c1 = await hold('carol', 'carol-1');
    assert.deepEqual([c1.status, c1.body.error, c1.body.key], [503, 'UNAVAILABLE', 'carol-1']);
    assert.equal(c1.headers.get('retry-after'), '1');
    // Alice is at her cap too, but the server's comes first: a 503 for her as well.
    assert.equal((await hold('alice')).status, 503);
    // Bob checks out: room again, and carol's retry with her key gets her hold.
    assert.equal((await post('/api/checkout', 'bob', { holdId: bob.body.holdId })).status, 200);
    assert.equal((await hold('carol', 'carol-1')).status, 201);
    // The app's probes (a user and a SKU that do not exist) held and sold nothing.
    const stock = await fetch(`${url}/api/stock/sneaker`).then((r) => r.json());
    assert.deepEqual([stock.held, stock.sold, stock.available], [3, 2, 95]);
  });
});
