// Settings the client cannot use are refused where the caller can catch them (a RangeError
// from the constructor or the call), never thrown later from a socket event or a dial, and
// never handed to a timer that Node cuts to 1 ms.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { StockdClient } = require('../dist');

test('HELLO settings that HELLO cannot carry: RangeError from the constructor', () => {
  assert.throws(() => new StockdClient({ token: 'x'.repeat(257) }), { name: 'RangeError', message: /token is 257 bytes, max 256/ });
  assert.throws(() => new StockdClient({ clientName: 'n'.repeat(129) }), { name: 'RangeError', message: /client_name is 129 bytes, max 128/ });
  assert.throws(() => new StockdClient({ role: 'root' }), { name: 'RangeError', message: /role is root, not a Role/ });
  assert.throws(() => new StockdClient({ token: 42 }), { name: 'RangeError', message: /token must be a string/ });
  new StockdClient({ token: 'x'.repeat(256), clientName: 'n'.repeat(128), role: 'outbox' }).destroy();
});

test('host and port net cannot dial: RangeError from the constructor', () => {
  for (const port of [0, 70000, 1.5, '7070', NaN]) {
    assert.throws(() => new StockdClient({ port }), { name: 'RangeError', message: /port must be an integer from 1 to 65535/ }, String(port));
  }
  assert.throws(() => new StockdClient({ host: '' }), { name: 'RangeError', message: /host must be a non-empty string/ });
  new StockdClient({ port: 65535, host: 'localhost' }).destroy();
});

test('timeouts and redial delays outside 1..2^31-1 ms: RangeError from the constructor', () => {
  const bad = [0, -1, NaN, Infinity, 2 ** 31, '100'];
  for (const v of bad) {
    assert.throws(() => new StockdClient({ timeoutMs: v }), { name: 'RangeError', message: /timeoutMs must be a number of ms from 1 to 2147483647/ }, String(v));
    assert.throws(() => new StockdClient({ connectTimeoutMs: v }), /connectTimeoutMs must be/, String(v));
    assert.throws(() => new StockdClient({ reconnect: { minDelayMs: v } }), /reconnect\.minDelayMs must be/, String(v));
    assert.throws(() => new StockdClient({ reconnect: { maxDelayMs: v } }), /reconnect\.maxDelayMs must be/, String(v));
  }
  new StockdClient({ timeoutMs: 2 ** 31 - 1, connectTimeoutMs: 1, reconnect: { minDelayMs: 1, maxDelayMs: 1 } }).destroy();
});

test("a call's timeoutMs outside 1..2^31-1 ms: the call rejects with RangeError, sends nothing", async () => {
  const c = new StockdClient({ port: 9 });
  let dials = 0;
  c.on('reconnecting', () => dials++);
  try {
    for (const timeoutMs of [Infinity, 2 ** 31, 0, NaN]) {
      await assert.rejects(c.ping({ timeoutMs }), { name: 'RangeError', message: /timeoutMs must be/ }, String(timeoutMs));
      await assert.rejects(c.reserve({ user: 'u', ttlMs: 0, lines: [{ sku: 'A', qty: 1 }] }, { timeoutMs }), RangeError);
    }
    await assert.rejects(c.connect(Infinity), RangeError);
    assert.equal(dials, 0, 'nothing was dialled');
  } finally {
    c.destroy();
  }
});

test('maxQueued that is not an integer >= 1: RangeError from the constructor', () => {
  for (const maxQueued of [0, -1, 1.5, NaN, Infinity, '100', 2 ** 53]) {
    assert.throws(() => new StockdClient({ maxQueued }), { name: 'RangeError', message: /maxQueued must be an integer >= 1/ }, String(maxQueued));
  }
  new StockdClient({ maxQueued: 1 }).destroy();
  new StockdClient({ maxQueued: Number.MAX_SAFE_INTEGER }).destroy();
});
