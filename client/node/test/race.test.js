// 500 buyers at once for 100 units, from one process: exactly 100 get them.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { StockdClient } = require('../dist');
const { TOKENS, startStockd } = require('./helpers/stockd');

test('500 concurrent buyers for 100 units: 100 OK, 400 SOLD_OUT, sold == 100', { timeout: 60_000 }, async (t) => {
  const srv = await startStockd();
  const admin = new StockdClient({ port: srv.port, role: 'admin', token: TOKENS.admin });
  const buyers = new StockdClient({ port: srv.port, token: TOKENS.buyer, connections: 4, timeoutMs: 20000 });
  t.after(async () => {
    await Promise.all([admin.close(), buyers.close()]);
    await srv.stop();
  });
  assert.equal((await admin.skuSet({ sku: 'DROP', total: 100 })).status, 'OK');
  await buyers.connect();

  const results = await Promise.all(
    Array.from({ length: 500 }, (_, i) => buyers.reserve({ user: `buyer-${i}`, ttlMs: 0, lines: [{ sku: 'DROP', qty: 1 }] })),
  );
  const count = (st) => results.filter((r) => r.status === st).length;
  assert.equal(count('OK'), 100);
  assert.equal(count('SOLD_OUT'), 400);
  assert.equal(new Set(results.filter((r) => r.status === 'OK').map((r) => r.holdId)).size, 100);
  const v = (await admin.skuGet('DROP')).sku;
  assert.deepEqual([v.total, v.available, v.held, v.sold], [100n, 0n, 0n, 100n]);
});
