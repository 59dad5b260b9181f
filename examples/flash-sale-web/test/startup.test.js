// Start-up: the app listens only once its stockd client is connected, so no buyer meets a
// process that cannot sell yet (nor a load balancer's health check one that passes). stockd
// of its own for each case; no PostgreSQL.
'use strict';
const assert = require('node:assert/strict');
const { after, describe, test } = require('node:test');
const { setTimeout: sleep } = require('node:timers/promises');
const { StockdClient } = require('stockd-client');
const { Stack, freePort } = require('./stack');

describe('start-up', { timeout: 60_000 }, () => {
  const stack = new Stack();

  after(() => stack.stop());

  /** Resolves once `proc`'s output matches `re` (within `ms`). */
  async function saw(proc, re, ms = 10_000) {
    const deadline = Date.now() + ms;
    while (!re.test(proc.output)) {
      if (proc.exitCode !== null) throw new Error(`exited (${proc.exitCode}) before saying ${re}:\n${proc.output}`);
      if (Date.now() > deadline) throw new Error(`did not say ${re} within ${ms} ms:\n${proc.output}`);
      await sleep(20);
    }
  }

  test('stockd not up yet: the app waits, not listening, then sells from its first request', async () => {
    const [stockdPort, appPort] = [await freePort(), await freePort()];
    const app = stack.spawnApp({ PORT: String(appPort), STOCKD_PORT: String(stockdPort) });
    await saw(app, /waiting for stockd|listening on/);
    // A buyer (or a health check) meets a refused connection, not a process that answers 503.
    assert.doesNotMatch(app.output, /listening on/);
    assert.match(app.output, new RegExp(`waiting for stockd at 127\\.0\\.0\\.1:${stockdPort}\\b.*not listening`));
    const refused = await fetch(`http://127.0.0.1:${appPort}/api/stock/sneaker`).then(() => 'answered', (e) => e.cause?.code);
    assert.equal(refused, 'ECONNREFUSED');
    // stockd comes up (after the app, as in a deploy that starts both at once).
    const { port } = await stack.spawnStockd({ port: stockdPort });
    const admin = new StockdClient({ port, role: 'admin', token: stack.adminToken.value });
    await admin.skuSet({ sku: 'sneaker', total: 10 });
    await admin.close();
    const url = await stack.appUrl(app, 15_000);
    const res = await fetch(`${url}/api/buy`, {
      method: 'POST',
      headers: { 'X-User-Id': 'first', 'Content-Type': 'application/json' },
      body: JSON.stringify({ sku: 'sneaker' }),
    });
    assert.equal(res.status, 201);
  });

  test('SIGTERM while it waits for stockd: a clean exit at once', async () => {
    const app = stack.spawnApp({ STOCKD_PORT: String(await freePort()) });
    await saw(app, /waiting for stockd/);
    const t0 = Date.now();
    app.kill('SIGTERM');
    assert.equal(await app.exited, 0);
    assert.ok(Date.now() - t0 < 1000, `exited ${Date.now() - t0} ms after SIGTERM`);
    assert.match(app.output, /flash-sale-web: stopped/);
  });

  for (const workers of ['1', '2']) {
    // In cluster mode the primary used to restart each refused worker every 30 s forever,
    // never exiting: the supervisor above it saw nothing wrong.
    test(`stockd refuses its token (${workers} worker(s)): the app exits 1 saying so, rather than serve 503s`, async () => {
      const { port } = await stack.spawnStockd({ args: ['--client-token-file', stack.token('client-token').file] });
      const wrong = stack.token('wrong-client-token');
      const app = stack.spawnApp({ STOCKD_PORT: String(port), STOCKD_CLIENT_TOKEN_FILE: wrong.file, WEB_WORKERS: workers });
      const code = await Promise.race([app.exited, sleep(10_000, 'still running', { ref: false })]);
      assert.equal(code, 1, app.output);
      assert.match(app.output, /refused this app.*UNAUTHORIZED/);
      assert.doesNotMatch(app.output, /listening on/);
    });
  }
});
