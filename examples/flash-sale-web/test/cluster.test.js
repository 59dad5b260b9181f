// Cluster mode (WEB_WORKERS=2): a worker that dies is restarted, with a backoff while workers
// keep dying young; SIGTERM stops the restarts and every worker. stockd of its own; no
// PostgreSQL. Worker processes are found in /proc (Linux).
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { setTimeout: sleep } = require('node:timers/promises');
const { StockdClient } = require('stockd-client');
const { Stack } = require('./stack');

/** The child processes of `pid`, from /proc. */
function childrenOf(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`)
      .flatMap((task) => fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' '))
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // gone
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Resolves once `ok()` holds (within `ms`, while `proc` runs); else throws, with its output. */
async function until(what, proc, ok, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (proc.exitCode !== null) throw new Error(`${what}: the app exited (${proc.exitCode}) first; it said:\n${proc.output}`);
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms; the app said:\n${proc.output}`);
    await sleep(20);
  }
}

describe('cluster', { timeout: 60_000 }, () => {
  const stack = new Stack();

  before(async () => {
    try {
      await stack.startStockd();
      const admin = new StockdClient({ port: stack.stockdPort, role: 'admin', token: stack.adminToken.value });
      await admin.skuSet({ sku: 'sneaker', total: 1000 });
      await admin.close();
    } catch (e) {
      await stack.stop();
      throw e;
    }
  });

  after(() => stack.stop());

  test('a worker that dies is restarted; SIGTERM still stops every worker', async () => {
    const app = stack.spawnApp({ WEB_WORKERS: '2' });
    const url = await stack.appUrl(app);
    const first = childrenOf(app.pid);
    assert.equal(first.length, 2, `two workers: ${first}`);
    const [victim, survivor] = first;
    process.kill(victim, 'SIGKILL');
    // A new worker in its place: the sale keeps both workers' capacity.
    await until('a worker in place of the dead one', app, () => {
      const now = childrenOf(app.pid);
      return now.length === 2 && !now.includes(victim) && now.includes(survivor);
    });
    const [replacement] = childrenOf(app.pid).filter((pid) => pid !== survivor);
    await until('the new worker listening', app, () => app.output.includes(`worker ${replacement} listening, in place of ${victim}`));
    assert.match(app.output, new RegExp(`worker ${victim} died \\(SIGKILL\\) after [0-9.]+ s; restarting it in 100 ms`));
    // Both workers sell (connections go to either; 20 of them reach both).
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(`${url}/api/buy`, {
          method: 'POST',
          headers: { 'X-User-Id': `u${i}`, 'Content-Type': 'application/json', Connection: 'close' },
          body: JSON.stringify({ sku: 'sneaker' }),
        }).then((r) => r.status),
      ),
    );
    assert.deepEqual(answers, Array(20).fill(201));
    // SIGTERM: every worker stops, none is restarted, the primary exits 0.
    app.kill('SIGTERM');
    assert.equal(await app.exited, 0);
    for (let i = 0; i < 150 && (alive(survivor) || alive(replacement)); i++) await sleep(20);
    assert.ok(!alive(survivor) && !alive(replacement), 'the workers are gone');
    assert.equal(app.output.match(/restarting it/g).length, 1, app.output);
  });

  test('a crash loop: restarts wait longer each time; SIGTERM ends the loop', async () => {
    // Every worker dies at start (its token file is missing): a crash loop.
    const missing = path.join(stack.dir, 'no-such-token');
    const app = stack.spawnApp({ WEB_WORKERS: '2', STOCKD_CLIENT_TOKEN_FILE: missing });
    await until('a fourth restart of a worker', app, () => /restarting it in 800 ms/.test(app.output), 15_000);
    const delays = [...app.output.matchAll(/died \(exit code 1\) after [0-9.]+ s; restarting it in (\d+) ms/g)].map((m) => Number(m[1]));
    // Per worker 100, 200, 400, 800 ms: 8 restarts at most by now, not hundreds.
    assert.ok(delays.length >= 4 && delays.length <= 8, `restarts: ${delays}`);
    for (const d of [100, 200, 400, 800]) assert.ok(delays.includes(d), `a wait of ${d} ms: ${delays}`);
    assert.ok(delays.every((d) => [100, 200, 400, 800].includes(d)), `${delays}`);
    // SIGTERM during the backoff: no restart after it, and the primary exits 0 at once.
    const said = app.output.length;
    const t0 = Date.now();
    app.kill('SIGTERM');
    assert.equal(await app.exited, 0);
    assert.ok(Date.now() - t0 < 2000, `exited ${Date.now() - t0} ms after SIGTERM`);
    await sleep(300);
    assert.doesNotMatch(app.output.slice(said), /restarting|died/);
  });
});
