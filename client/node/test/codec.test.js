// The codec alone: framing checks in the spec's order, limits, and errors that name the field.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { codec } = require('../dist');

const MAX = codec.FRAME_BYTES_MAX_DEFAULT;
const header = (o = {}) => {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(o.magic ?? codec.MAGIC, 0);
  b.writeUInt8(o.version ?? 1, 2);
  b.writeUInt8(o.flags ?? 1, 3);
  b.writeUInt32LE(o.bodyLen ?? 0, 4);
  b.writeUInt16LE(o.opcode ?? 2, 8);
  b.writeUInt16LE(o.status ?? 0, 10);
  b.writeUInt32LE(o.id ?? 1, 12);
  return b;
};
const framed = (b, max = MAX) => codec.decodeFrame(b, max);

test('framing: fewer than 16 bytes waits, whatever they are', () => {
  assert.deepEqual(framed(Buffer.from('garbage')), { kind: 'more' });
});

test('framing: checks run in the spec order (magic, version, flags, size)', () => {
  const all = header({ magic: 0x1234, version: 2, flags: 0x03, bodyLen: MAX });
  assert.deepEqual(framed(all), { kind: 'invalid', status: 64, reason: 'bad magic 0x1234, expected 0x4B53' });
  const noMagic = header({ version: 2, flags: 0x03, bodyLen: MAX });
  assert.deepEqual(framed(noMagic), { kind: 'invalid', status: 69, reason: 'unsupported protocol version 2, expected 1' });
  const flagsAndSize = header({ flags: 0x03, bodyLen: MAX });
  assert.deepEqual(framed(flagsAndSize), { kind: 'invalid', status: 64, reason: 'unknown flag bits 0x02 (only 0x01 is defined)' });
  const size = header({ bodyLen: MAX });
  assert.deepEqual(framed(size), { kind: 'invalid', status: 70, reason: `frame of ${MAX + 16} bytes exceeds frame_bytes_max ${MAX}` });
});

test('framing: the size limit is decided from the header, before the body arrives', () => {
  assert.equal(framed(header({ bodyLen: 100 }), 115).kind, 'invalid');
  assert.equal(framed(header({ bodyLen: 100 }), 116).kind, 'more');
});

test('framing: a stream of frames split at every byte gives the same frames', () => {
  const frames = [
    codec.encodeResponse('PING', 7, 0, {}),
    codec.encodeResponse('SKU_GET', 8, 3, { sku: '', total: 0n, available: 0n, held: 0n, sold: 0n, perUserLimit: 0, opensAtMs: 0, closesAtMs: 0, flags: 0 }),
    codec.encodeResponse('RESERVE', 9, 64, { message: 'reserve: user is empty' }),
  ];
  const stream = Buffer.concat(frames);
  for (let cut = 0; cut <= stream.length; cut++) {
    const reader = new codec.FrameReader();
    const got = [];
    for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
      reader.push(part);
      for (let r; (r = reader.next(MAX)).kind === 'frame'; ) got.push(r.frame.header.requestId);
    }
    assert.deepEqual(got, [7, 8, 9], `cut at ${cut}`);
  }
});

test('bodies: trailing bytes are invalid', () => {
  const f = codec.encodeResponse('PING', 1, 0, {});
  const long = Buffer.concat([f, Buffer.from([0, 0, 0])]);
  long.writeUInt32LE(3, 4);
  const r = framed(long);
  assert.throws(() => codec.decodeResponse(r.frame), { name: 'CodecError', message: 'ping response: trailing 3 bytes after body' });
});

test('bodies: a short body names the field it ends in', () => {
  const f = codec.encodeResponse('CLAIM', 1, 0, { orderId: 5n, code: 'X', available: 1n });
  const cut = Buffer.from(f.subarray(0, f.length - 3));
  cut.writeUInt32LE(cut.length - 16, 4);
  assert.throws(() => codec.decodeResponse(framed(cut).frame), /claim response: available is cut short/);
});

test('requests: the checks of section 7.2 name the field, like the server', () => {
  const enc = (op, body) => () => codec.encodeRequest(op, 1, body);
  assert.throws(enc('RESERVE', { user: 'u', key: '', ttlMs: 90000000, lines: [{ sku: 'A', qty: 1 }] }), {
    message: 'reserve: ttl_ms is 90000000, max 86400000',
  });
  assert.throws(enc('RESERVE', { user: 'u', key: '', ttlMs: 0, lines: [{ sku: 'A', qty: 1 }, { sku: '', qty: 1 }] }), {
    message: 'reserve: line 1 sku is empty',
  });
  assert.throws(enc('RESERVE', { user: '', key: '', ttlMs: 0, lines: [{ sku: 'A', qty: 1 }] }), { message: 'reserve: user is empty' });
  assert.throws(enc('RESERVE', { user: 'u', key: '', ttlMs: 0, lines: [{ sku: 'A', qty: 0 }] }), {
    message: 'reserve: line 0 qty is 0, must be at least 1',
  });
  assert.throws(enc('RESERVE', { user: 'u', key: '', ttlMs: 0, lines: [] }), { message: 'reserve: lines has 0 items, must have at least 1' });
  assert.throws(enc('COMMIT', { holdId: 0n, user: 'u' }), { message: 'commit: hold_id is 0, must be at least 1' });
  assert.throws(enc('SKU_GET', { sku: 'x'.repeat(65) }), { message: 'sku_get: sku is 65 bytes, max 64' });
  assert.throws(enc('SKU_LIST', { after: '', limit: 1001 }), { message: 'sku_list: limit is 1001, max 1000' });
  assert.throws(enc('SKU_SET', { sku: 'A', mask: 16, total: 0n, perUserLimit: 0, opensAtMs: 0, closesAtMs: 0 }), {
    message: 'sku_set: mask is 16, max 15',
  });
  assert.throws(enc('SKU_SET', { sku: 'A', mask: 4, total: 0n, perUserLimit: 0, opensAtMs: 2 ** 60, closesAtMs: 0 }), {
    message: /sku_set: opens_at_ms must be a safe integer/,
  });
  assert.throws(enc('CODES_LOAD', { sku: 'A', codes: ['ok', ''] }), { message: 'codes_load: code 1 is empty' });
  assert.throws(enc('OUTBOX_READ', { afterSeq: 0n, maxRecords: 1, waitMs: 30001 }), { message: 'outbox_read: wait_ms is 30001, max 30000' });
  assert.throws(enc('HELLO', { version: 1, role: 'root', token: '', clientName: '' }), { message: 'hello: role is root, not a Role' });
  assert.throws(enc('COMMIT', { holdId: 5, user: 'u' }), { message: 'commit: hold_id must be a bigint, got number' });
});

test('requests: decoding applies the same checks', () => {
  const good = codec.encodeRequest('SKU_LIST', 1, { after: '', limit: 5 });
  good.writeUInt32LE(0, good.length - 4);
  assert.throws(() => codec.decodeRequest(framed(good).frame), { message: 'sku_list: limit is 0, must be at least 1' });
});

test('responses: enums out of range and unsafe times are refused', () => {
  const f = codec.encodeResponse('RESERVE', 1, 0, { holdId: 1n, state: 'HELD', expiresAtMs: 5, failedLine: 0xffff, available: 0n, codes: [] });
  const badState = Buffer.from(f);
  badState.writeUInt8(9, 16 + 8);
  assert.throws(() => codec.decodeResponse(framed(badState).frame), { message: 'reserve response: state is 9, not a HoldState' });
  const farTime = Buffer.from(f);
  farTime.writeBigInt64LE(1n << 60n, 16 + 9);
  assert.throws(() => codec.decodeResponse(framed(farTime).frame), /reserve response: expires_at_ms is \d+, beyond a safe JS integer/);
});

test('responses: a list count larger than the body fails at the end, without allocating for it', () => {
  const f = codec.encodeResponse('SKU_LIST', 1, 0, { skus: [] });
  f.writeUInt32LE(0xffffffff, 16);
  assert.throws(() => codec.decodeResponse(framed(f).frame), /sku_list response: sku 0 sku is cut short/);
});

test('responses: status >= 64 always carries ErrorResp, and opcode 0 is a connection error', () => {
  const f = codec.encodeResponse(0, 0, 66, { message: 'too many connections (3); try again later' });
  assert.deepEqual(codec.decodeResponse(framed(f).frame), { op: undefined, status: 66, error: 'too many connections (3); try again later' });
  const noFlag = Buffer.from(codec.encodeResponse('PING', 1, 0, {}));
  noFlag.writeUInt8(0, 3);
  assert.throws(() => codec.decodeResponse(framed(noFlag).frame), /response flag missing/);
});

test('u64 values round-trip beyond 2^53', () => {
  const big = (1n << 64n) - 1n;
  const f = codec.encodeResponse('OUTBOX_STATUS', 1, 0, { headSeq: big, ackedSeq: 1n << 53n, firstSeq: 0n });
  assert.deepEqual(codec.decodeResponse(framed(f).frame).body, { headSeq: big, ackedSeq: 1n << 53n, firstSeq: 0n });
});
