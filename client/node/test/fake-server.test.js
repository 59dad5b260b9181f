// Broken and hostile servers: every failure is a typed error at or before the deadline, never
// a crash or a hang, and the connection that carried a bad frame is closed.
'use strict';
const nodeTest = require('node:test');
// A deadline per test: a bug shows as a failure, never as a hung run.
const test = (name, fn) => nodeTest(name, { timeout: 20_000 }, fn);
const assert = require('node:assert/strict');
const net = require('net');
const s = require('../dist');
const { codec, StockdClient } = s;
const { HELLO, deadPort, startFake } = require('./helpers/fake');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SKU = { sku: 'A', total: 1n, available: 1n, held: 0n, sold: 0n, perUserLimit: 0, opensAtMs: 0, closesAtMs: 0, flags: 0 };
const OK_RESERVE = { holdId: 77n, state: 'HELD', expiresAtMs: 5, failedLine: 0xffff, available: 3n, codes: [] };
const reserveReq = (key) => ({ user: 'u', ttlMs: 60000, lines: [{ sku: 'A', qty: 1 }], ...(key === undefined ? {} : { key }) });

async function withFake(script, body, opts) {
  const fake = await startFake(script, opts);
  const errors = [];
  const c = new StockdClient({ port: fake.port, timeoutMs: 2000, reconnect: { minDelayMs: 10, maxDelayMs: 50 }, ...(opts && opts.client) });
  c.on('error', (e) => errors.push(e));
  try {
    await body(c, fake, errors);
  } finally {
    c.destroy();
    await fake.close();
  }
}

async function firstClosed(fake) {
  for (let i = 0; i < 100 && !fake.closed(0); i++) await sleep(10);
  return fake.closed(0);
}

test('garbage instead of an answer: StockdProtocolError, connection closed', () =>
  withFake(
    (req) => req.op === 'PING' && req.replyRaw(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')),
    async (c, fake, errors) => {
      await assert.rejects(c.ping(), (e) => e instanceof s.StockdProtocolError && /bad magic/.test(e.message));
      assert.ok(await firstClosed(fake));
      assert.ok(errors.some((e) => e instanceof s.StockdProtocolError), "emitted on 'error'");
    },
  ));

test('an answer with the wrong request id: StockdProtocolError', () =>
  withFake(
    (req) => req.op === 'PING' && req.sock.write(codec.encodeResponse('PING', req.id + 1, 0, {})),
    async (c, fake) => {
      await assert.rejects(c.ping(), (e) => e instanceof s.StockdProtocolError && /out of order/.test(e.message));
      assert.ok(await firstClosed(fake));
    },
  ));

test('an answer with another opcode: StockdProtocolError', () =>
  withFake(
    (req) => req.op === 'SKU_GET' && req.sock.write(codec.encodeResponse('PING', req.id, 0, {})),
    async (c) => {
      await assert.rejects(c.skuGet('A'), s.StockdProtocolError);
    },
  ));

test('an answer whose body does not decode: StockdProtocolError naming the field', () =>
  withFake(
    (req) => {
      if (req.op !== 'SKU_GET') return;
      const f = codec.encodeResponse('SKU_GET', req.id, 0, SKU);
      f.writeUInt16LE(200, 16); // sku length over its 64-byte limit
      req.replyRaw(f);
    },
    async (c) => {
      await assert.rejects(c.skuGet('A'), (e) => e instanceof s.StockdProtocolError && /sku_get response: sku is 200 bytes, max 64/.test(e.message));
    },
  ));

test("a frame header over the HELLO's frame_bytes_max: StockdProtocolError without waiting for the body", () =>
  withFake(
    (req) => {
      if (req.op !== 'PING') return;
      const h = Buffer.from(codec.encodeResponse('PING', req.id, 0, {}));
      h.writeUInt32LE(HELLO.frameBytesMax, 4); // 16 + 65536 > 65536; the body never comes
      req.replyRaw(h);
    },
    async (c) => {
      const t0 = Date.now();
      await assert.rejects(c.ping(), (e) => e instanceof s.StockdProtocolError && /exceeds frame_bytes_max 65536/.test(e.message));
      assert.ok(Date.now() - t0 < 1000);
    },
  ));

test('an unsolicited answer: StockdProtocolError on the error event, the next call still works', () =>
  withFake(
    (req) => {
      if (req.conn === 0 && req.op === 'HELLO') {
        req.reply(0, HELLO);
        setTimeout(() => req.sock.write(codec.encodeResponse('PING', 999, 0, {})), 50);
        return 'handled';
      }
      if (req.op === 'PING') req.reply(0, {});
    },
    async (c, fake, errors) => {
      await c.connect();
      await sleep(150);
      assert.ok(errors.some((e) => e instanceof s.StockdProtocolError && /no request outstanding/.test(e.message)));
      assert.ok(fake.closed(0));
      await c.ping();
    },
  ));

test('a server that closes mid-frame: a read is resent on a new connection', () =>
  withFake(
    (req) => {
      if (req.op !== 'SKU_GET') return;
      if (req.conn === 0) {
        req.replyRaw(codec.encodeResponse('SKU_GET', req.id, 0, SKU).subarray(0, 20));
        req.sock.end();
      } else req.reply(0, SKU);
    },
    async (c, fake) => {
      const r = await c.skuGet('A');
      assert.equal(r.status, 'OK');
      assert.equal(fake.connections, 2);
    },
  ));

test('a server that closes mid-frame: an admin write fails with outcome unknown, never resent', () =>
  withFake(
    (req) => {
      if (req.op !== 'RESTOCK') return;
      req.replyRaw(codec.encodeResponse('RESTOCK', req.id, 0, SKU).subarray(0, 20));
      req.sock.end();
    },
    async (c, fake) => {
      await assert.rejects(c.restock({ sku: 'A', delta: 1 }), (e) => e instanceof s.StockdConnectionError && e.outcomeUnknown && /outcome is unknown/.test(e.message));
      await sleep(100);
      assert.equal(fake.received.filter((r) => r.op === 'RESTOCK').length, 1);
    },
    { client: { role: 'admin', token: 't' } },
  ));

test('a lost RESERVE is resent on a new connection with the same key', () =>
  withFake(
    (req) => {
      if (req.op !== 'RESERVE') return;
      if (req.conn === 0) req.sock.destroy();
      else req.reply(0, OK_RESERVE);
    },
    async (c, fake) => {
      const r = await c.reserve(reserveReq());
      assert.equal(r.status, 'OK');
      const sent = fake.received.filter((x) => x.op === 'RESERVE');
      assert.equal(sent.length, 2);
      assert.equal(sent[0].body.key, sent[1].body.key);
      assert.equal(sent[0].body.key, r.key);
      assert.notEqual(sent[0].conn, sent[1].conn);
    },
  ));

// STORAGE_UNAVAILABLE to a resend says nothing of the first send, which may have been applied:
// the server refuses writes before it looks the key up. Outcome unknown, with the key to retry
// it. BUSY comes after the key was looked up (the first send was not applied), and a refusal of
// a first send is a plain refusal.
test('a lost RESERVE whose resend finds the store failed: outcome unknown, with its key', () => {
  let fake;
  return withFake(
    (req) => {
      if (req.op !== 'RESERVE') return;
      const key = req.body.key;
      if (key !== 'plain' && fake.received.filter((x) => x.op === 'RESERVE' && x.body.key === key).length === 1) {
        return req.sock.destroy(); // the first send of each key but 'plain' is lost
      }
      req.reply(key === 'second' ? 66 : 67, { message: 'the store failed' });
    },
    async (c, f) => {
      fake = f;
      const err = await c.reserve(reserveReq('first')).then(
        () => assert.fail('resolved'),
        (e) => e,
      );
      assert.ok(err instanceof s.StockdStorageError, err.message);
      assert.equal(err.outcomeUnknown, true, err.message);
      assert.equal(err.idempotencyKey, 'first');
      assert.match(err.message, /earlier send of RESERVE was lost, so its outcome is unknown/);
      const busy = await c.reserve(reserveReq('second')).then(
        () => assert.fail('resolved'),
        (e) => e,
      );
      assert.ok(busy instanceof s.StockdBusyError && busy.outcomeUnknown === false, busy.message);
      const plain = await c.reserve(reserveReq('plain')).then(
        () => assert.fail('resolved'),
        (e) => e,
      );
      assert.ok(plain instanceof s.StockdStorageError && plain.outcomeUnknown === false, plain.message);
      // Spec section 9: a server killed before its store recovers may replay the group, and a
      // client that must know resends with the same key: the error names it.
      assert.equal(plain.idempotencyKey, 'plain');
      assert.equal(f.received.filter((x) => x.op === 'RESERVE').length, 5);
    },
  );
});

test("a lost RESERVE without a key (key: '') is not resent: outcome unknown", () =>
  withFake(
    (req) => req.op === 'RESERVE' && req.sock.destroy(),
    async (c, fake) => {
      await assert.rejects(c.reserve(reserveReq('')), (e) => e instanceof s.StockdConnectionError && e.outcomeUnknown);
      assert.equal(fake.received.filter((x) => x.op === 'RESERVE').length, 1);
    },
  ));

// The client resent the COMMIT (or RELEASE) itself: the repeat's ALREADY_DONE with the hold in
// the state asked for says resent: true (this call's first send did it, or another request
// did: a commit has no key). A backend could not tell that from another request's doing.
test('COMMIT and RELEASE resent after a lost answer: ALREADY_DONE in the state asked for says resent', () => {
  const lose = new Set(['COMMIT 5', 'RELEASE 6']); // the first send of each is lost
  return withFake(
    (req) => {
      if (req.op !== 'COMMIT' && req.op !== 'RELEASE') return;
      if (lose.delete(`${req.op} ${req.body.holdId}`)) return req.sock.destroy();
      const state = req.body.holdId === 5n ? 'COMMITTED' : 'RELEASED';
      req.reply(7, { holdId: req.body.holdId, state, user: 'u', key: 'k', createdAtMs: 1, expiresAtMs: 2, lines: [], codes: [] });
    },
    async (c) => {
      const r = await c.commit({ holdId: 5n, user: 'u' });
      assert.equal(r.status, 'ALREADY_DONE');
      assert.equal(r.resent, true);
      assert.equal(r.hold.state, 'COMMITTED');
      const released = await c.release({ holdId: 6n, user: 'u' });
      assert.equal(released.status, 'ALREADY_DONE');
      assert.equal(released.resent, true);
      const other = await c.commit({ holdId: 6n, user: 'u' }); // not resent: as the server says
      assert.equal(other.status, 'ALREADY_DONE');
      assert.equal(other.resent, undefined);
    },
  );
});

test('a server that never answers: StockdTimeoutError at the deadline', () =>
  withFake(
    () => {},
    async (c) => {
      const t0 = Date.now();
      await assert.rejects(c.ping({ timeoutMs: 300 }), s.StockdTimeoutError);
      const took = Date.now() - t0;
      assert.ok(took >= 290 && took < 1000, `took ${took} ms`);
      await assert.rejects(c.reserve(reserveReq(), { timeoutMs: 200 }), (e) => e instanceof s.StockdTimeoutError && e.outcomeUnknown);
    },
  ));

test('a server that never answers HELLO: StockdTimeoutError at the deadline', () =>
  withFake(
    (req) => (req.op === 'HELLO' ? 'handled' : undefined),
    async (c) => {
      const t0 = Date.now();
      await assert.rejects(c.ping({ timeoutMs: 300 }), s.StockdTimeoutError);
      assert.ok(Date.now() - t0 < 1000);
    },
  ));

test('nothing listening: StockdTimeoutError naming the connection error', async () => {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const c = new StockdClient({ port, timeoutMs: 300, reconnect: { minDelayMs: 10, maxDelayMs: 50 } });
  await assert.rejects(c.ping(), (e) => e instanceof s.StockdTimeoutError && /ECONNREFUSED/.test(e.message));
  await assert.rejects(c.connect(200), s.StockdTimeoutError);
  c.destroy();
});

test('an answer out of order fails the call it was expected for; the read behind it is resent', () =>
  withFake(
    (req) => {
      if (req.op !== 'SKU_GET') return;
      const delay = req.conn === 0 && req.body.sku === 'SLOW' ? 300 : 0;
      setTimeout(() => req.reply(0, { ...SKU, sku: req.body.sku }), delay);
    },
    async (c, fake) => {
      const slow = c.skuGet('SLOW', { timeoutMs: 2000 });
      const fast = c.skuGet('FAST', { timeoutMs: 2000 });
      // FAST's answer overtakes SLOW's, against section 5: never handed to SLOW.
      await assert.rejects(slow, (e) => e instanceof s.StockdProtocolError && /out of order/.test(e.message));
      assert.equal((await fast).sku.sku, 'FAST');
      assert.ok(await firstClosed(fake));
    },
  ));

test('answers in order after a timeout: the late one is dropped, the next one delivered', () =>
  withFake(
    (() => {
      const queue = [];
      return (req) => {
        if (req.op !== 'SKU_GET') return;
        queue.push(req);
        if (queue.length === 2) setTimeout(() => queue.forEach((q) => q.reply(0, { ...SKU, sku: q.body.sku })), 300);
      };
    })(),
    async (c) => {
      const slow = c.skuGet('FIRST', { timeoutMs: 100 });
      const next = c.skuGet('SECOND', { timeoutMs: 2000 });
      await assert.rejects(slow, s.StockdTimeoutError);
      const r = await next;
      assert.equal(r.sku.sku, 'SECOND');
      await assert.rejects(c.skuGet('THIRD', { timeoutMs: 100 }), s.StockdTimeoutError);
    },
  ));

test('a connection stuck behind an unanswered request is closed, and the calls behind it move on', () =>
  withFake(
    (req) => {
      if (req.op !== 'PING') return;
      if (req.conn > 0) req.reply(0, {});
    },
    async (c, fake) => {
      const stuck = c.ping({ timeoutMs: 100 });
      await assert.rejects(stuck, s.StockdTimeoutError);
      const t0 = Date.now();
      await c.ping({ timeoutMs: 3000 });
      assert.ok(Date.now() - t0 < 2500);
      assert.equal(fake.connections, 2);
    },
  ));

test('a refused HELLO fails calls at once with the typed error', () =>
  withFake(
    (req) => {
      if (req.op !== 'HELLO') return;
      req.reply(65, { message: 'bad token for role buyer' });
      req.sock.end();
      return 'handled';
    },
    async (c) => {
      const t0 = Date.now();
      await assert.rejects(c.ping(), (e) => e instanceof s.StockdUnauthorizedError && e.serverMessage === 'bad token for role buyer');
      await assert.rejects(c.ping(), s.StockdUnauthorizedError);
      assert.ok(Date.now() - t0 < 1000);
    },
  ));

test('a connection error frame (opcode 0, BUSY) closes the connection; a read is resent', () =>
  withFake(
    (req) => {
      if (req.op !== 'PING') return;
      if (req.conn === 0) {
        req.replyRaw(codec.encodeResponse(0, 0, 66, { message: 'read buffer budget' }));
        req.sock.end();
      } else req.reply(0, {});
    },
    async (c, fake, errors) => {
      await c.ping();
      assert.ok(errors.some((e) => e.cause instanceof s.StockdBusyError));
    },
  ));

test("FRAME_TOO_LARGE naming a request fails that request", () =>
  withFake(
    (req) => {
      if (req.op !== 'SKU_GET') return;
      req.replyRaw(codec.encodeResponse(0, req.id, 70, { message: 'frame of 99999 bytes exceeds frame_bytes_max 65536' }));
      req.sock.end();
    },
    async (c) => {
      await assert.rejects(c.skuGet('A'), (e) => e instanceof s.StockdFrameTooLargeError && !e.local);
    },
  ));

test('inflight_max from HELLO is respected; beyond it calls queue in the client', () => {
  let outstanding = 0;
  let most = 0;
  return withFake(
    (req) => {
      if (req.op !== 'PING') return;
      most = Math.max(most, ++outstanding);
      setTimeout(() => {
        outstanding--;
        req.reply(0, {});
      }, 5);
    },
    async (c) => {
      await Promise.all(Array.from({ length: 40 }, () => c.ping()));
      assert.equal(most, 3);
    },
    { hello: { ...HELLO, inflightMax: 3 } },
  );
});

test('frame_bytes_max from HELLO: a larger request is refused, not sent', () =>
  withFake(
    () => {},
    async (c, fake) => {
      await c.connect();
      const codes = Array.from({ length: 700 }, (_, i) => `C-${i}-${'x'.repeat(100)}`);
      await assert.rejects(c.codesLoad({ sku: 'A', codes }), (e) => e instanceof s.StockdFrameTooLargeError && e.local);
      assert.equal(fake.received.filter((r) => r.op === 'CODES_LOAD').length, 0);
    },
  ));

test('the requests of one tick go out in one socket write', () =>
  withFake(
    (req) => req.op === 'PING' && req.reply(0, {}),
    async (c, fake) => {
      await c.connect();
      const write = net.Socket.prototype.write;
      let writes = 0;
      net.Socket.prototype.write = function (...args) {
        if (this.remotePort === fake.port) writes++; // the fake's own replies do not count
        return write.apply(this, args);
      };
      try {
        await Promise.all(Array.from({ length: 50 }, () => c.ping()));
      } finally {
        net.Socket.prototype.write = write;
      }
      assert.equal(writes, 1);
    },
  ));

test('an abort while in flight rejects at once; the late answer is dropped', () =>
  withFake(
    (req) => req.op === 'PING' && setTimeout(() => req.reply(0, {}), 200),
    async (c) => {
      const ac = new AbortController();
      const p = c.ping({ signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await assert.rejects(p, { name: 'AbortError' });
      await c.ping();
    },
  ));

test('a call aborted before its frame left is never sent (outcome known: not applied)', () =>
  withFake(
    (req) => {
      if (req.op === 'RESERVE') req.reply(0, OK_RESERVE);
      if (req.op === 'PING') req.reply(0, {});
    },
    async (c, fake) => {
      await c.connect();
      const ac = new AbortController();
      const p = c.reserve(reserveReq(), { signal: ac.signal });
      ac.abort();
      await assert.rejects(p, (e) => e.name === 'AbortError' && e.outcomeUnknown === false);
      await c.ping();
      assert.equal(fake.received.filter((r) => r.op === 'RESERVE').length, 0);
    },
  ));

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('a keyed RESERVE that timed out once sent: the error carries the key the server saw', () =>
  withFake(
    () => {},
    async (c, fake) => {
      const err = await c.reserve(reserveReq(), { timeoutMs: 200 }).then(() => assert.fail('answered'), (e) => e);
      assert.ok(err instanceof s.StockdTimeoutError && err.outcomeUnknown, err.message);
      const sent = fake.received.filter((r) => r.op === 'RESERVE');
      assert.equal(sent.length, 1);
      assert.match(err.idempotencyKey, UUID_V7);
      assert.equal(err.idempotencyKey, sent[0].body.key);
      const ping = await c.ping({ timeoutMs: 100 }).catch((e) => e);
      assert.equal(ping.idempotencyKey, undefined, 'only keyed calls carry one');
    },
  ));

test('a keyed CLAIM resent over lost connections until its deadline: the error carries its key', () =>
  withFake(
    (req) => req.op === 'CLAIM' && req.sock.destroy(),
    async (c, fake) => {
      const p = c.claim({ sku: 'A', user: 'u', key: 'my-key' }, { timeoutMs: 300 });
      await assert.rejects(p, (e) => e instanceof s.StockdTimeoutError && e.outcomeUnknown && e.idempotencyKey === 'my-key');
      assert.ok(fake.received.filter((r) => r.op === 'CLAIM').length >= 2, 'resent');
    },
  ));

test('garbage in answer to a write: StockdProtocolError with outcome unknown (and the key); to a read: known', () =>
  withFake(
    (req) => req.op !== 'HELLO' && req.replyRaw(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')),
    async (c, fake) => {
      await assert.rejects(c.restock({ sku: 'A', delta: 1 }), (e) => e instanceof s.StockdProtocolError && e.outcomeUnknown === true);
      const err = await c.reserve(reserveReq()).then(() => assert.fail('answered'), (e) => e);
      assert.ok(err instanceof s.StockdProtocolError && err.outcomeUnknown, err.message);
      assert.equal(err.idempotencyKey, fake.received.find((r) => r.op === 'RESERVE').body.key);
      await assert.rejects(c.skuGet('A'), (e) => e instanceof s.StockdProtocolError && e.outcomeUnknown === false);
    },
    { client: { role: 'admin', token: 't' } },
  ));

// A pool-wide failure (destroy(), a refused HELLO on the redial) fails each waiting call with an
// error of its own: a keyed write already sent may have been applied, so it says so and names its
// key; a call never sent says the outcome is known.

/** Resolves to what `p` rejected with (fails the test if it resolves). */
const rejection = (p) => p.then((v) => assert.fail(`answered: ${JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? String(x) : x))}`), (e) => e);

async function redialled(fake) {
  for (let i = 0; i < 200 && fake.connections < 2; i++) await sleep(10);
  assert.ok(fake.connections >= 2, 'redialled');
}

test('destroy() while a sent keyed RESERVE waits to be resent: its own error, outcome unknown, with the key the server saw; an unsent call: known', () =>
  withFake(
    (req) => {
      if (req.op === 'HELLO') return req.conn === 0 ? undefined : 'handled'; // the redial's HELLO is never answered
      if (req.op === 'RESERVE') req.sock.destroy();
    },
    async (c, fake) => {
      const sent = rejection(c.reserve(reserveReq()));
      await redialled(fake);
      const unsent = rejection(c.reserve(reserveReq('never-sent')));
      c.destroy();
      const [w, u] = await Promise.all([sent, unsent]);
      const seen = fake.received.filter((r) => r.op === 'RESERVE');
      assert.equal(seen.length, 1);
      assert.ok(w instanceof s.StockdConnectionError && w.outcomeUnknown === true, w.message);
      assert.equal(w.idempotencyKey, seen[0].body.key);
      assert.match(w.message, /outcome is unknown/);
      assert.ok(u instanceof s.StockdConnectionError && u.outcomeUnknown === false, u.message);
      assert.equal(u.idempotencyKey, undefined);
      assert.notEqual(w, u, 'an error of its own');
    },
  ));

test('a refused HELLO on the redial fails a sent keyed CLAIM with outcome unknown and its key; an unsent call: known', () =>
  withFake(
    (req) => {
      if (req.op === 'HELLO') {
        if (req.conn === 0) return undefined;
        setTimeout(() => {
          req.reply(65, { message: 'bad token for role buyer' });
          req.sock.end();
        }, 100);
        return 'handled';
      }
      if (req.op === 'CLAIM') req.sock.destroy();
    },
    async (c, fake) => {
      const sent = rejection(c.claim({ sku: 'A', user: 'u', key: 'claim-key' }));
      await redialled(fake);
      const unsent = rejection(c.reserve(reserveReq('never-sent')));
      const [w, u] = await Promise.all([sent, unsent]);
      assert.equal(fake.received.filter((r) => r.op === 'CLAIM').length, 1);
      assert.equal(fake.received.filter((r) => r.op === 'RESERVE').length, 0);
      assert.ok(w instanceof s.StockdUnauthorizedError && w.outcomeUnknown === true, w.message);
      assert.equal(w.serverMessage, 'bad token for role buyer');
      assert.equal(w.idempotencyKey, 'claim-key');
      assert.ok(u instanceof s.StockdUnauthorizedError && u.outcomeUnknown === false, u.message);
      assert.equal(u.idempotencyKey, undefined);
      assert.notEqual(w, u, 'an error of its own');
    },
    { client: { timeoutMs: 3000 } },
  ));

test('destroy() after the redial is ready but before the resend is written: outcome unknown, with the key', () =>
  withFake(
    (req) => req.op === 'RESERVE' && req.conn === 0 && req.sock.destroy(),
    async (c, fake) => {
      let connects = 0;
      // The resend is queued on the new connection in this turn and written in a later one.
      c.on('connect', () => ++connects === 2 && process.nextTick(() => c.destroy()));
      const err = await rejection(c.reserve(reserveReq()));
      const seen = fake.received.filter((r) => r.op === 'RESERVE');
      assert.equal(seen.length, 1, 'not resent');
      assert.equal(connects, 2);
      assert.ok(err instanceof s.StockdConnectionError && err.outcomeUnknown === true, err.message);
      assert.equal(err.idempotencyKey, seen[0].body.key);
    },
  ));

test('FRAME_TOO_LARGE naming a resent keyed RESERVE: outcome unknown (the first send may have been applied), with its key', () =>
  withFake(
    (req) => {
      if (req.op !== 'RESERVE') return;
      if (req.conn === 0) return req.sock.destroy();
      req.replyRaw(codec.encodeResponse(0, req.id, 70, { message: 'frame too large' }));
      req.sock.end();
    },
    async (c, fake) => {
      const err = await rejection(c.reserve(reserveReq()));
      const seen = fake.received.filter((r) => r.op === 'RESERVE');
      assert.equal(seen.length, 2);
      assert.ok(err instanceof s.StockdFrameTooLargeError && err.outcomeUnknown === true, err.message);
      assert.equal(err.idempotencyKey, seen[0].body.key);
    },
  ));

// Bytes that arrive while no request is written on the connection answer none of its requests:
// the connection is closed, and a request queued on it but not yet written goes to the next one.
// The resend was failed with that protocol error (outcome unknown) though it could still be sent.
test("garbage right after the redial's HELLO, before the resend is written: not failed by it, resent with its key on the next connection", () =>
  withFake(
    (req) => {
      if (req.op === 'RESERVE') return req.conn === 0 ? req.sock.destroy() : req.reply(0, OK_RESERVE);
      if (req.op !== 'HELLO' || req.conn !== 1) return undefined;
      // One chunk: the resend is queued on the new connection when the garbage is read.
      req.replyRaw(Buffer.concat([codec.encodeResponse('HELLO', req.id, 0, HELLO), Buffer.from('garbage garbage garbage')]));
      return 'handled';
    },
    async (c, fake, errors) => {
      const r = await c.reserve(reserveReq());
      assert.equal(r.status, 'OK');
      const seen = fake.received.filter((x) => x.op === 'RESERVE');
      assert.deepEqual(seen.map((x) => x.conn), [0, 2]);
      assert.equal(seen[1].body.key, seen[0].body.key);
      assert.ok(errors.some((e) => e instanceof s.StockdProtocolError && /bad magic/.test(e.message)), "the garbage is on 'error'");
    },
  ));

test('after a refused HELLO an idle client does not redial; a call does, and waits for that dial', () => {
  let refuse = true;
  return withFake(
    (req) => {
      if (req.op === 'PING') return req.reply(0, {});
      if (req.op !== 'HELLO' || !refuse) return undefined;
      req.reply(65, { message: 'bad token for role buyer' });
      req.sock.end();
      return 'handled';
    },
    async (c, fake) => {
      await assert.rejects(c.ping(), s.StockdUnauthorizedError);
      await assert.rejects(c.ping(), s.StockdUnauthorizedError, 'at once, within the backoff');
      await sleep(500); // redial delays of 10..50 ms: many redials, were there any
      const dials = fake.connections;
      assert.ok(dials <= 2, `${dials} dials: redialled for nobody`);
      refuse = false; // the token is fixed
      await sleep(60); // past the backoff
      await c.ping();
      assert.equal(fake.connections, dials + 1);
    },
  );
});

/** A SKU_LIST answer for `ids` (Buffers): encoded with stand-ins of the same length, then the real bytes written over them. */
function skuListFrame(req, ids) {
  const f = codec.encodeResponse('SKU_LIST', req.id, 0, { skus: ids.map((id) => ({ ...SKU, sku: 'x'.repeat(id.length) })) });
  let at = 16 + 4; // header, count
  for (const id of ids) {
    id.copy(f, at + 2);
    at += 2 + id.length + 53; // u16 length, the id, the 53 bytes after it
  }
  return f;
}

test('a SKU id that is not UTF-8: skus() fails with StockdProtocolError, never pages with a wrong `after`', () => {
  const ids = [Buffer.from('A'), Buffer.from([0x42, 0xff]), Buffer.from('C')];
  return withFake(
    (req) => {
      if (req.op !== 'SKU_LIST') return;
      const after = Buffer.from(req.body.after);
      req.replyRaw(skuListFrame(req, ids.filter((id) => Buffer.compare(id, after) > 0).slice(0, req.body.limit)));
    },
    async (c) => {
      // Read as 'B\uFFFD', its `after` (42 EF BF BD) sorts before 42 FF: the same page forever.
      const seen = [];
      const walk = async () => {
        for await (const v of c.skus({ pageSize: 1 })) if (seen.push(v.sku) > 10) break;
      };
      await assert.rejects(walk(), (e) => e instanceof s.StockdProtocolError && /sku 0 sku is not valid UTF-8/.test(e.message));
      assert.deepEqual(seen, ['A']);
    },
  );
});

test('SKU_LIST pages that do not move past `after`: skus() fails with StockdProtocolError, no endless loop', () =>
  withFake(
    (req) => req.op === 'SKU_LIST' && req.replyRaw(skuListFrame(req, [Buffer.from('A'), Buffer.from('B')])),
    async (c) => {
      const seen = [];
      const walk = async () => {
        for await (const v of c.skus({ pageSize: 2 })) if (seen.push(v.sku) > 10) break;
      };
      await assert.rejects(walk(), (e) => e instanceof s.StockdProtocolError && /after "B" ends at "B", not past it/.test(e.message));
      assert.deepEqual(seen, ['A', 'B']);
    },
  ));

test('close() ends a connection whose keep-alive PING is never answered, within connectTimeoutMs', () =>
  withFake(
    () => {},
    async (c, fake) => {
      await c.connect();
      for (let i = 0; i < 100 && !fake.received.some((r) => r.op === 'PING'); i++) await sleep(10);
      assert.ok(fake.received.some((r) => r.op === 'PING'), 'a keep-alive PING is in flight');
      const t0 = Date.now();
      await c.close();
      for (let i = 0; i < 200 && !fake.closed(0); i++) await sleep(10);
      assert.ok(fake.closed(0), 'the connection was closed');
      assert.ok(Date.now() - t0 < 1000, `closed after ${Date.now() - t0} ms`);
    },
    { hello: { ...HELLO, idleTimeoutMs: 300 }, client: { connectTimeoutMs: 400 } },
  ));

// A server that takes HELLO and then drops the connection at once (a crash loop, a proxy): the
// redials back off as for a refused connect. A HELLO reset the backoff, so every slot of every
// process redialled every 5-10 ms for as long as calls waited.
test('a server that drops each connection right after HELLO is redialled with a growing delay', () =>
  withFake(
    (req) => {
      if (req.op !== 'HELLO') return;
      req.reply(0, HELLO);
      setImmediate(() => req.sock.destroy());
      return 'handled';
    },
    async (c, fake) => {
      await assert.rejects(c.ping({ timeoutMs: 2000 }), s.StockdTimeoutError);
      assert.ok(fake.connections >= 3 && fake.connections <= 14, `${fake.connections} connections in 2 s`);
    },
    { client: { reconnect: { minDelayMs: 10, maxDelayMs: 5000 } } },
  ));

// A connection that went silent (a server host that lost power, a middlebox that dropped the
// idle flow) is found by its keep-alive PING: unanswered past its own deadline, the connection
// is ended, and the next call takes a new one. The PING had no deadline: the next calls went to
// the dead connection and each timed out, with outcome unknown, until one more timeout passed.
test('a keep-alive PING left unanswered ends its connection; the next call takes a new one', () =>
  withFake(
    (req) => req.op === 'PING' && req.conn > 0 && req.reply(0, {}), // the first connection is dead
    async (c, fake) => {
      await c.connect();
      for (let i = 0; i < 100 && !fake.received.some((r) => r.op === 'PING'); i++) await sleep(10);
      assert.ok(fake.received.some((r) => r.op === 'PING'), 'a keep-alive PING is in flight');
      await sleep(1500);
      await c.ping({ timeoutMs: 500 });
      assert.ok(fake.connections >= 2, 'a new connection answered');
    },
    { hello: { ...HELLO, idleTimeoutMs: 300 }, client: { connectTimeoutMs: 1000 } },
  ));

// A PING's answer waits for the group commit in progress, as every answer does: a slow disk
// (1.5 s here) must not end a healthy connection, nor a call queued behind the PING.
test('a keep-alive PING answered late, as behind a slow disk, keeps its connection', () => {
  let pings = 0;
  let answers = Promise.resolve(); // in order, as the server answers
  const after = (ms, reply) => {
    answers = answers.then(() => sleep(ms)).then(reply);
  };
  return withFake(
    (req) => {
      if (req.op === 'PING') return after(pings++ === 0 ? 1500 : 0, () => req.reply(0, {}));
      if (req.op === 'RESERVE') return after(0, () => req.reply(0, OK_RESERVE));
    },
    async (c, fake, errors) => {
      await c.connect();
      for (let i = 0; i < 300 && pings === 0; i++) await sleep(10);
      assert.equal(pings, 1, 'a keep-alive PING is in flight');
      const r = await c.reserve(reserveReq(''));
      assert.equal(r.status, 'OK');
      assert.equal(fake.connections, 1);
      assert.deepEqual(errors, []);
    },
    { hello: { ...HELLO, idleTimeoutMs: 3000 }, client: { timeoutMs: 5000 } },
  );
});

test('an answer this client cannot decode (a SKU id that is not UTF-8) fails that call; the connection carries on', () =>
  withFake(
    (req) => {
      if (req.op === 'PING') return req.reply(0, {});
      if (req.op !== 'SKU_GET') return;
      const f = codec.encodeResponse('SKU_GET', req.id, 0, SKU);
      f[18] = 0xff; // the SKU id's one byte: legal for the server (any bytes but NUL), not UTF-8
      req.replyRaw(f);
    },
    async (c, fake) => {
      await c.ping();
      await assert.rejects(c.skuGet('A'), (e) => e instanceof s.StockdProtocolError && /undecodable answer to SKU_GET/.test(e.message) && !e.outcomeUnknown);
      await c.ping(); // the same connection answers on
      assert.ok(!fake.closed(0), 'the connection was closed for a frame that was in step');
    },
  ));

test('100,000 calls queued while the server is down all time out at their deadline', async () => {
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise((r) => probe.close(r));
  // maxQueued past its default (10,000): the queue itself must stay fast at this size.
  const c = new StockdClient({ port, timeoutMs: 1500, maxQueued: 100_000, reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
  c.on('error', () => {});
  const t0 = Date.now();
  const calls = [];
  for (let i = 0; i < 100_000; i++) calls.push(c.ping().then(() => 'ok', (e) => e.name));
  const results = await Promise.all(calls);
  const took = Date.now() - t0;
  c.destroy();
  assert.ok(results.every((r) => r === 'StockdTimeoutError'), 'each a timeout');
  // The deadlines fire together: the array queue's search per timeout took ~9 s here.
  assert.ok(took < 4500, `settled ${took} ms after submitting, for a 1500 ms deadline`);
});

// maxQueued: with stockd slow or down, calls past the cap fail at once instead of piling up
// (rate x timeout) in the client's memory. They were never sent, so they are safe to retry.

test('past maxQueued a new call rejects at once with StockdQueueFullError, unsent; calls settled while queued make room', () =>
  withFake(
    () => {}, // never answers
    async (c, fake) => {
      await c.connect();
      const inflight = [c.ping({ timeoutMs: 3000 }), c.ping({ timeoutMs: 3000 })]; // inflight_max 2
      const ac = new AbortController();
      const queued = [c.ping({ timeoutMs: 300 }), c.ping({ timeoutMs: 300 }), c.ping({ signal: ac.signal })];
      const t0 = Date.now();
      const err = await rejection(c.reserve(reserveReq('over')));
      assert.ok(Date.now() - t0 < 100, 'at once');
      assert.ok(err instanceof s.StockdQueueFullError && err instanceof s.StockdError, err.message);
      assert.equal(err.code, 'QUEUE_FULL');
      assert.equal(err.name, 'StockdQueueFullError');
      assert.equal(err.outcomeUnknown, false);
      assert.equal(err.local, true);
      assert.equal(err.idempotencyKey, undefined);
      assert.match(err.message, /^RESERVE not sent: 3 calls already wait for stockd \(maxQueued 3\); safe to retry/);
      ac.abort();
      await assert.rejects(queued[2], { name: 'AbortError' });
      const next = c.ping({ timeoutMs: 300 }); // the aborted call's place
      await assert.rejects(c.ping(), s.StockdQueueFullError);
      for (const p of [queued[0], queued[1], next]) await assert.rejects(p, s.StockdTimeoutError);
      await assert.rejects(c.ping({ timeoutMs: 100 }), s.StockdTimeoutError, 'room again once they timed out');
      assert.equal(fake.received.filter((r) => r.op === 'RESERVE').length, 0, 'never sent');
      assert.equal(fake.received.filter((r) => r.op === 'PING').length, 2, 'only the two in flight were sent');
      c.destroy();
      await Promise.allSettled(inflight);
    },
    { hello: { ...HELLO, inflightMax: 2 }, client: { maxQueued: 3 } },
  ));

test('with stockd down, the default maxQueued (10,000) refuses the calls past it at once; the rest time out', async () => {
  const c = new StockdClient({ port: await deadPort(), timeoutMs: 500, reconnect: { minDelayMs: 50, maxDelayMs: 100 } });
  c.on('error', () => {});
  try {
    const t0 = Date.now();
    const calls = [];
    for (let i = 0; i < 10_050; i++) calls.push(c.reserve(reserveReq()).then(() => 'ok', (e) => [e.code, Date.now() - t0]));
    const results = await Promise.all(calls);
    const full = results.filter(([code]) => code === 'QUEUE_FULL');
    assert.equal(full.length, 50);
    assert.ok(full.every(([, ms]) => ms < 400), 'refused at once, not at the deadline');
    assert.equal(results.filter(([code]) => code === 'TIMEOUT').length, 10_000);
  } finally {
    c.destroy();
  }
});

// The cap is on new calls only: a connection lost with calls in flight puts back every one that
// may be resent, even past maxQueued; it holds no more than inflight_max per connection.
test('resends after a lost connection go back to the front past maxQueued; new calls meanwhile are refused', () => {
  let onFirst = 0;
  return withFake(
    (req) => {
      if (req.op !== 'RESERVE') return;
      if (req.conn === 0) return ++onFirst === 4 && req.sock.destroy(); // 4 in flight, lost
      req.reply(0, OK_RESERVE);
    },
    async (c, fake) => {
      await c.connect();
      let during;
      c.once('reconnecting', () => (during = rejection(c.ping()))); // 4 resends + 2 queued wait
      const calls = Array.from({ length: 6 }, (_, i) => c.reserve(reserveReq(`k${i}`)));
      const over = await rejection(c.reserve(reserveReq('over')));
      assert.ok(over instanceof s.StockdQueueFullError, over.message);
      const results = await Promise.all(calls);
      assert.deepEqual(results.map((r) => r.status), Array(6).fill('OK'));
      const seen = fake.received.filter((r) => r.op === 'RESERVE');
      for (let i = 0; i < 6; i++) {
        assert.deepEqual(seen.filter((r) => r.body.key === `k${i}`).map((r) => r.conn), i < 4 ? [0, 1] : [1], `k${i}`);
      }
      const second = seen.filter((r) => r.conn === 1).map((r) => r.body.key);
      assert.deepEqual(second, ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'], 'the resends first');
      assert.ok(during, 'a call made while the resends wait');
      const e = await during;
      assert.ok(e instanceof s.StockdQueueFullError, e.message);
      assert.match(e.message, /6 calls already wait/);
      assert.equal(seen.filter((r) => r.body.key === 'over').length, 0);
    },
    { hello: { ...HELLO, inflightMax: 4 }, client: { maxQueued: 2 } },
  );
});

// A stockd that stops reading (stuck, or its host swapping): socket.write() returns false and
// the kernel buffers fill. The client hands a connection at most inflight_max requests (counted
// until answered, timed-out ones included), so its socket buffers at most that many frames; the
// rest wait in the queue up to maxQueued, and the calls past it fail at once.
test('a stockd that stops reading: at most inflight_max frames reach its socket, maxQueued wait, the rest are refused', () => {
  const INFLIGHT = 300;
  return withFake(
    (req) => {
      if (req.op !== 'HELLO') return undefined;
      req.reply(0, { ...HELLO, inflightMax: INFLIGHT });
      req.sock.pause(); // reads nothing more: its receive buffer and our send buffer fill
      return 'handled';
    },
    async (c, fake) => {
      await c.connect();
      const write = net.Socket.prototype.write;
      let frames = 0;
      let backedUp = false;
      net.Socket.prototype.write = function (chunk, ...rest) {
        const ours = this.remotePort === fake.port;
        if (ours) frames += countFrames(chunk);
        const ok = write.call(this, chunk, ...rest);
        if (ours && !ok) backedUp = true;
        return ok;
      };
      try {
        // ~50 KB each: 300 of them (15 MB) are more than loopback's buffers take (4 MB here).
        const codes = Array.from({ length: 450 }, (_, i) => `C-${i}-${'x'.repeat(100)}`);
        const calls = [];
        for (let i = 0; i < 1200; i++) calls.push(c.codesLoad({ sku: 'A', codes }).then(() => 'ok', (e) => e.code));
        await sleep(300);
        assert.ok(backedUp, 'socket.write() returned false');
        assert.equal(frames, INFLIGHT, 'frames written');
        c.destroy();
        const codesSeen = await Promise.all(calls);
        assert.equal(codesSeen.filter((x) => x === 'QUEUE_FULL').length, 1200 - INFLIGHT - 100);
      } finally {
        net.Socket.prototype.write = write;
      }
    },
    { client: { role: 'admin', token: 't', maxQueued: 100, timeoutMs: 5000 } },
  );
});

/** Request frames in `chunk` (whole frames: the client writes nothing else). */
function countFrames(chunk) {
  let n = 0;
  for (let at = 0; at + 16 <= chunk.length; at += 16 + chunk.readUInt32LE(at + 4)) n++;
  return n;
}

// A frame whose request id names no written request cannot be the answer of one not yet
// written: the connection is closed (protocol error) and such a request is sent on the next
// connection. A frame with the id and opcode the next request would get was delivered as its
// answer though it had not been sent, and a garbled one failed it.
for (const [kind, stray, reported] of [
  ['an answer with the id the unsent request gets', (id) => codec.encodeResponse('SKU_GET', id, 0, { ...SKU, sku: 'FORGED' }), /answer \(opcode 32, id 2\) with no request outstanding/],
  ['an undecodable answer with that id', (id) => {
    const f = codec.encodeResponse('SKU_GET', id, 0, SKU);
    f[18] = 0xff; // the SKU id's byte: not UTF-8
    return f;
  }, /bad response: sku_get response: sku is not valid UTF-8/],
  ['a FRAME_TOO_LARGE error frame naming that id', (id) => codec.encodeResponse(0, id, 70, { message: 'frame too large' }), /closed the connection: FRAME_TOO_LARGE/],
  ['an answer with an id no request has', () => codec.encodeResponse('PING', 999, 0, {}), /answer \(opcode 2, id 999\) with no request outstanding/],
]) {
  test(`${kind}, before the request is written: a protocol error, never its answer; the request goes out on the next connection`, () =>
    withFake(
      (req) => {
        if (req.op === 'SKU_GET') return req.reply(0, { ...SKU, sku: 'REAL' });
        if (req.op === 'RESTOCK') return req.reply(0, SKU);
        if (req.op !== 'HELLO' || req.conn !== 0) return undefined;
        // One chunk: the calls waiting for a connection are queued on this one (ids 2 and 3) when
        // HELLO's answer is read, and written only once the stray frame after it was read.
        req.replyRaw(Buffer.concat([codec.encodeResponse('HELLO', req.id, 0, HELLO), stray(2)]));
        return 'handled';
      },
      async (c, fake, errors) => {
        const [sku, restock] = await Promise.all([c.skuGet('A'), c.restock({ sku: 'A', delta: 1 })]);
        assert.equal(sku.sku.sku, 'REAL');
        assert.equal(restock.status, 'OK', 'an admin write never sent is sent, though it is never resent');
        for (const op of ['SKU_GET', 'RESTOCK']) {
          assert.deepEqual(fake.received.filter((r) => r.op === op).map((r) => r.conn), [1], op);
        }
        assert.ok(errors.some((e) => reported.test(e.message)), errors.map((e) => e.message).join('; '));
        assert.ok(fake.closed(0), 'the connection that got it is closed');
      },
      { client: { role: 'admin', token: 't' } },
    ));
}
