// Every test vector of docs/protocol.md section 10: framed, decoded, re-encoded byte for byte,
// and framed again when split at every byte.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { codec } = require('../dist');
const { readVectors } = require('./helpers/vectors');

const vectors = readVectors();
const T0 = 1767225600000;

function decode(bytes) {
  const r = codec.decodeFrame(bytes, codec.FRAME_BYTES_MAX_DEFAULT);
  assert.equal(r.kind, 'frame', JSON.stringify(r));
  assert.equal(r.size, bytes.length, 'one frame, nothing after it');
  const h = r.frame.header;
  const isResponse = (h.flags & codec.FLAG_RESPONSE) !== 0;
  return { h, isResponse, msg: isResponse ? codec.decodeResponse(r.frame) : codec.decodeRequest(r.frame) };
}

function reencode({ h, isResponse, msg }) {
  if (!isResponse) return codec.encodeRequest(msg.op, h.requestId, msg.body);
  if ('error' in msg) return codec.encodeResponse(msg.op ?? 0, h.requestId, msg.status, { message: msg.error });
  return codec.encodeResponse(msg.op, h.requestId, msg.status, msg.body);
}

test('the document has vectors', () => {
  assert.ok(vectors.length >= 20, `only ${vectors.length} vectors found`);
});

for (const v of vectors) {
  test(`vector ${v.name}: decodes and re-encodes byte for byte`, () => {
    const d = decode(v.bytes);
    assert.deepEqual(reencode(d).toString('hex'), v.bytes.toString('hex'));
  });

  test(`vector ${v.name}: framed the same when split at every byte`, () => {
    for (let cut = 0; cut <= v.bytes.length; cut++) {
      const reader = new codec.FrameReader();
      reader.push(v.bytes.subarray(0, cut));
      const first = reader.next(codec.FRAME_BYTES_MAX_DEFAULT);
      if (cut < v.bytes.length) {
        assert.equal(first.kind, 'more', `cut at ${cut}`);
        reader.push(v.bytes.subarray(cut));
      }
      const r = cut < v.bytes.length ? reader.next(codec.FRAME_BYTES_MAX_DEFAULT) : first;
      assert.equal(r.kind, 'frame', `cut at ${cut}`);
      assert.equal(Buffer.concat([v.bytes.subarray(0, 16), r.frame.body]).toString('hex'), v.bytes.toString('hex'));
      assert.equal(reader.buffered, 0);
    }
  });
}

// The values the document states for some vectors, so that a decoder that reads every field
// wrong but symmetrically cannot pass.
const expected = {
  hello_request: { op: 'HELLO', body: { version: 1, role: 'buyer', token: 's3cret', clientName: 'web-1' } },
  hello_response: { op: 'HELLO', status: 0, body: { version: 1, frameBytesMax: 1048576, inflightMax: 256, idleTimeoutMs: 300000 } },
  reserve_request: {
    op: 'RESERVE',
    body: { user: 'u42', key: 'k-9f1', ttlMs: 600000, lines: [{ sku: 'TSHIRT-M', qty: 2 }, { sku: 'MUG', qty: 1 }] },
  },
  reserve_response_ok: {
    op: 'RESERVE',
    status: 0,
    body: { holdId: 1001n, state: 'HELD', expiresAtMs: T0 + 600000, failedLine: 0xffff, available: 497n, codes: [] },
  },
  reserve_response_sold_out: {
    op: 'RESERVE',
    status: 1,
    body: { holdId: 0n, state: 'NONE', expiresAtMs: 0, failedLine: 0, available: 1n, codes: [] },
  },
  commit_request: { op: 'COMMIT', body: { holdId: 1001n, user: 'u42' } },
  commit_response: {
    op: 'COMMIT',
    status: 0,
    body: {
      holdId: 1001n, state: 'COMMITTED', user: 'u42', key: 'k-9f1', createdAtMs: T0, expiresAtMs: T0 + 600000,
      lines: [{ sku: 'TSHIRT-M', qty: 2 }, { sku: 'MUG', qty: 1 }], codes: [{ sku: 'MUG', code: 'MUG-7Q2X' }],
    },
  },
  claim_request: { op: 'CLAIM', body: { sku: 'GIFT-25', user: 'u42', key: 'c-1' } },
  claim_response: { op: 'CLAIM', status: 0, body: { orderId: 1002n, code: 'GC-AAAA-0001', available: 499n } },
  sku_set_request: {
    op: 'SKU_SET',
    body: { sku: 'TSHIRT-M', mask: 7, total: 500n, perUserLimit: 2, opensAtMs: T0, closesAtMs: 0 },
  },
  sku_get_response: {
    op: 'SKU_GET',
    status: 0,
    body: { sku: 'TSHIRT-M', total: 500n, available: 497n, held: 1n, sold: 2n, perUserLimit: 2, opensAtMs: T0, closesAtMs: 0, flags: 0 },
  },
  stats_response: { op: 'STATS', status: 0, body: { stats: [{ name: 'connections', value: 3n }, { name: 'reserves_ok', value: 1042n }] } },
  error_bad_request: { op: 'RESERVE', status: 64, error: 'reserve: line 1 sku is empty' },
  error_frame_too_large: { op: undefined, status: 70, error: 'frame of 2097168 bytes exceeds frame_bytes_max 1048576' },
  outbox_read_request: { op: 'OUTBOX_READ', body: { afterSeq: 41n, maxRecords: 100, waitMs: 5000 } },
  outbox_ack_response: { op: 'OUTBOX_ACK', status: 0, body: { headSeq: 42n, ackedSeq: 42n, firstSeq: 1n } },
};

test('stated values of the vectors', () => {
  const byName = new Map(vectors.map((v) => [v.name, v]));
  for (const [name, want] of Object.entries(expected)) {
    assert.ok(byName.has(name), `vector ${name} is missing from the document`);
    const { msg } = decode(byName.get(name).bytes);
    assert.deepEqual({ ...msg }, want, name);
  }
});

test('outbox_read_response record', () => {
  const v = vectors.find((x) => x.name === 'outbox_read_response');
  const { msg } = decode(v.bytes);
  assert.deepEqual(msg.body.records[0], {
    seq: 42n, kind: 'ORDER', orderId: 1001n, user: 'u42', key: 'k-9f1', createdAtMs: T0, atMs: T0 + 60000,
    lines: [{ sku: 'TSHIRT-M', qty: 2 }, { sku: 'MUG', qty: 1 }], codes: [{ sku: 'MUG', code: 'MUG-7Q2X' }],
  });
  assert.deepEqual([msg.body.headSeq, msg.body.ackedSeq, msg.body.firstSeq], [42n, 41n, 1n]);
});
