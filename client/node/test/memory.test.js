// What the client keeps alive while stockd is slow or down: measured with the GC in a process
// of its own (node --test runs each file in one), where no other test's garbage comes and goes.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('v8');
const vm = require('vm');
const { StockdClient } = require('../dist');
const { deadPort } = require('./helpers/fake');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// maxQueued is checked before the request is encoded: a refused call's frame would share the
// codec's 64 KiB slab with the accepted ones, and once refusals far outnumber acceptances (a
// queue that stays full) each queued call kept a slab of its own alive: 64 KiB, not ~200 bytes.
test('calls refused past maxQueued leave nothing behind: a queued call keeps only its own frame alive', async () => {
  const c = new StockdClient({ port: await deadPort(), timeoutMs: 30_000, maxQueued: 100, reconnect: { minDelayMs: 10_000, maxDelayMs: 10_000 } });
  c.on('error', () => {});
  const user = 'u'.repeat(100);
  const call = (signal) => c.reserve({ user, ttlMs: 0, lines: [{ sku: 'A', qty: 1 }] }, { signal }).catch(() => {});
  try {
    const first = Array.from({ length: 100 }, () => new AbortController());
    for (const ac of first) call(ac.signal);
    gc();
    const before = process.memoryUsage().arrayBuffers;
    // Each round: a place frees up, one call takes it, then 500 calls (~100 KB) are refused.
    for (const ac of first) {
      ac.abort();
      call();
      for (let i = 0; i < 500; i++) call();
    }
    await sleep(10);
    gc();
    const grew = process.memoryUsage().arrayBuffers - before;
    assert.ok(grew < 1_000_000, `100 queued calls hold ${grew} bytes more`);
  } finally {
    c.destroy();
  }
});
