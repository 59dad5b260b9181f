// The flash-sale HTTP API on stockd. stockd decides every sale and makes it durable before it
// answers; this app only checks input, names the user from the session, and maps answers to
// HTTP. Orders reach PostgreSQL through the stockd-outbox sidecar, never from here.
'use strict';
const crypto = require('node:crypto');
const express = require('express');
const {
  StockdBadRequestError,
  StockdBusyError,
  StockdConnectionError,
  StockdQueueFullError,
  StockdStorageError,
  StockdTimeoutError,
  StockdTooManyHoldsError,
  uuidv7,
} = require('stockd-client');

/**
 * HTTP status of each business refusal (docs/protocol.md, section 8). A reused
 * Idempotency-Key is a 422, as the IETF's Idempotency-Key draft has it; a sale not open yet is
 * a 403 like a closed one (425 Too Early is for TLS early data, RFC 8470, and a client may
 * resend on it at once).
 */
const HTTP_STATUS = {
  SOLD_OUT: 409,
  LIMIT_EXCEEDED: 409,
  ALREADY_DONE: 409,
  KEY_CONFLICT: 422,
  NOT_FOUND: 404,
  HOLD_EXPIRED: 410,
  SALE_NOT_OPEN: 403,
  SALE_CLOSED: 403,
};

/** stockd errors that mean "not now": the browser may retry (with the same Idempotency-Key). */
const UNAVAILABLE = [StockdConnectionError, StockdTimeoutError, StockdBusyError, StockdStorageError, StockdQueueFullError];

// Limits of docs/protocol.md section 3, checked here so that a bad request is a 400 at once.
const SKU_BYTES_MAX = 64;
const USER_BYTES_MAX = 128;
const KEY_BYTES_MAX = 128;
const QTY_MAX = 1000;

class HttpError extends Error {
  constructor(status, error, message) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

const badRequest = (message) => new HttpError(400, 'BAD_REQUEST', message);

function text(value, what, bytesMax) {
  if (typeof value !== 'string' || value === '') throw badRequest(`${what} must be a non-empty string`);
  if (Buffer.byteLength(value) > bytesMax) throw badRequest(`${what} is over ${bytesMax} bytes`);
  return value;
}

/**
 * The signed-in user. X-User-Id stands in for real authentication: in production this comes
 * from your session (a cookie or a verified token), never from the request body.
 */
function userOf(req) {
  const user = req.get('X-User-Id');
  if (!user) throw new HttpError(401, 'UNAUTHENTICATED', 'sign in first (X-User-Id header)');
  return text(user, 'X-User-Id', USER_BYTES_MAX);
}

/**
 * The browser's Idempotency-Key, or a new one (a UUIDv7). Kept in `res.locals` so that a 503
 * can hand it back: the browser retries with it and cannot buy twice. stockd's keys are global
 * to the server, so the key stockd gets is the user's own (a hash of user and key): another
 * user sending the same key makes a request of their own, and can neither block this one with
 * KEY_CONFLICT nor learn that the key was used.
 */
function keyOf(req, res, user) {
  const key = req.get('Idempotency-Key');
  res.locals.key = key === undefined ? uuidv7() : text(key, 'Idempotency-Key', KEY_BYTES_MAX);
  res.set('Idempotency-Key', res.locals.key);
  return crypto.createHash('sha256').update(`${user}\n${res.locals.key}`).digest('hex');
}

function holdIdOf(body) {
  const id = body?.holdId;
  if (typeof id !== 'string' || !/^[1-9][0-9]{0,19}$/.test(id)) throw badRequest('holdId must be a decimal string');
  return id;
}

/** A u64 for JSON: a number while exact, else a decimal string. */
const num = (v) => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : String(v));

function refuse(res, status, extra = {}) {
  res.status(HTTP_STATUS[status] ?? 409).json({ error: status, ...extra });
}

function holdJson(hold) {
  return {
    id: String(hold.holdId),
    state: hold.state,
    lines: hold.lines,
    codes: hold.codes.map((c) => c.code),
  };
}

/**
 * The Express app. `stockd` is a connected StockdClient (buyer role); `holdTtlMs` is how long a
 * hold lasts before checkout.
 */
function createApp(stockd, { holdTtlMs = 10 * 60_000 } = {}) {
  // A hold lasts 1 ms to 24 h (docs/protocol.md, RESERVE ttl_ms); 0 would buy at once.
  if (!Number.isInteger(holdTtlMs) || holdTtlMs < 1 || holdTtlMs > 86_400_000) {
    throw new RangeError(`holdTtlMs must be an integer from 1 to 86400000 ms, got ${holdTtlMs}`);
  }
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false); // answers to buyers are never cached
  app.use(express.json({ limit: '4kb' }));

  // Buy now (an order at once), or hold (units set aside until checkout, cancel or expiry).
  app.post('/api/buy', async (req, res) => {
    const user = userOf(req);
    const { sku, qty = 1, mode = 'now' } = req.body ?? {};
    text(sku, 'sku', SKU_BYTES_MAX);
    if (!Number.isInteger(qty) || qty < 1 || qty > QTY_MAX) throw badRequest(`qty must be an integer 1..${QTY_MAX}`);
    if (mode !== 'now' && mode !== 'hold') throw badRequest("mode must be 'now' or 'hold'");
    const ttlMs = mode === 'hold' ? holdTtlMs : 0;
    const key = keyOf(req, res, user);
    let r;
    try {
      r = await stockd.reserve({ user, key, ttlMs, lines: [{ sku, qty }] });
    } catch (err) {
      // A buyer at stockd's cap of live holds per user (TOO_MANY_HOLDS, --user-holds-max) frees
      // one by checking out or cancelling (or when one expires): a 429 without Retry-After, as
      // no wait is known to help. The server's own cap stays a BUSY: a 503.
      if (err instanceof StockdTooManyHoldsError) {
        throw new HttpError(429, 'TOO_MANY_HOLDS', 'you have the most holds allowed at once; check out or cancel one first');
      }
      throw err;
    }
    if (r.status !== 'OK') {
      return refuse(res, r.status, r.status === 'KEY_CONFLICT' ? {} : { available: num(r.available) });
    }
    const codes = r.codes.map((c) => c.code);
    if (mode === 'now') return res.status(201).json({ orderId: String(r.holdId), sku, qty, codes });
    const expiresAt = new Date(r.expiresAtMs).toISOString();
    res.status(201).json({ holdId: String(r.holdId), sku, qty, codes, expiresAt });
  });

  // The hold becomes an order. The user is the session's: another user's hold is a 404. A
  // retry (a double click, a retry after a 503) finds the hold already sold: the same 200.
  app.post('/api/checkout', async (req, res) => {
    const user = userOf(req);
    const r = await stockd.commit({ holdId: holdIdOf(req.body), user });
    const done = r.status === 'OK' || (r.status === 'ALREADY_DONE' && r.hold.state === 'COMMITTED');
    if (done) return res.json({ orderId: String(r.hold.holdId), order: holdJson(r.hold) });
    refuse(res, r.status, r.status === 'NOT_FOUND' ? {} : { hold: holdJson(r.hold) });
  });

  // The hold's units go back on sale (a retry finds them back: the same 200).
  app.post('/api/cancel', async (req, res) => {
    const user = userOf(req);
    const r = await stockd.release({ holdId: holdIdOf(req.body), user });
    const done = r.status === 'OK' || (r.status === 'ALREADY_DONE' && r.hold.state === 'RELEASED');
    if (done) return res.json({ hold: holdJson(r.hold) });
    refuse(res, r.status, r.status === 'NOT_FOUND' ? {} : { hold: holdJson(r.hold) });
  });

  // One unique code (a gift card, a ticket) from a code-pool SKU.
  app.post('/api/claim', async (req, res) => {
    const user = userOf(req);
    const sku = text(req.body?.sku, 'sku', SKU_BYTES_MAX);
    const r = await stockd.claim({ sku, user, key: keyOf(req, res, user) });
    if (r.status !== 'OK') return refuse(res, r.status, 'available' in r ? { available: num(r.available) } : {});
    res.status(201).json({ orderId: String(r.orderId), sku, code: r.code });
  });

  app.get('/api/stock/:sku', async (req, res) => {
    const r = await stockd.skuGet(text(req.params.sku, 'sku', SKU_BYTES_MAX));
    if (r.status !== 'OK') return refuse(res, r.status);
    const s = r.sku;
    res.json({
      sku: s.sku,
      total: num(s.total),
      available: num(s.available),
      held: num(s.held),
      sold: num(s.sold),
      perUserLimit: s.perUserLimit,
      opensAt: s.opensAtMs ? new Date(s.opensAtMs).toISOString() : null,
      closesAt: s.closesAtMs ? new Date(s.closesAtMs).toISOString() : null,
      closed: (s.flags & 0x01) !== 0,
    });
  });

  app.use((req, res) => res.status(404).json({ error: 'NO_ROUTE', message: `no ${req.method} ${req.path}` }));

  // Every error becomes JSON with a stable `error` code; stack traces stay in the server's log.
  app.use((err, req, res, _next) => {
    if (err instanceof HttpError) return res.status(err.status).json({ error: err.error, message: err.message });
    if (err.type === 'entity.parse.failed') return res.status(400).json({ error: 'BAD_REQUEST', message: 'body is not valid JSON' });
    if (err.type === 'entity.too.large') return res.status(413).json({ error: 'TOO_LARGE', message: 'body too large' });
    if (err.type === 'request.aborted') return; // the client went away: nobody to answer
    // Other refusals of Express and its body parser (a bad URL encoding, a charset or encoding
    // it does not take) keep their 4xx.
    const status = err.status ?? err.statusCode;
    if (Number.isInteger(status) && status >= 400 && status < 500) {
      return res.status(status).json({ error: 'BAD_REQUEST', message: err.expose ? err.message : 'bad request' });
    }
    if (err instanceof StockdBadRequestError) return res.status(400).json({ error: 'BAD_REQUEST', message: err.serverMessage });
    if (UNAVAILABLE.some((Kind) => err instanceof Kind)) {
      // A buy whose answer was lost may have happened: a retry with the same key tells.
      res.set('Retry-After', '1');
      const message = 'stock service unavailable; retry later with the same Idempotency-Key';
      return res.status(503).json({ error: 'UNAVAILABLE', message, key: res.locals.key });
    }
    console.error(`${req.method} ${req.path}:`, err);
    res.status(500).json({ error: 'INTERNAL', message: 'internal error' });
  });
  return app;
}

module.exports = { createApp, HTTP_STATUS };
