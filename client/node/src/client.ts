// StockdClient: every operation of docs/protocol.md as a promise. Business outcomes come back
// as values (results.ts); errors reject (errors.ts). Transport, retries and pooling are the
// pool's (pool.ts); this file only shapes requests and answers.
import { EventEmitter } from 'events';
import { Answer, Call, CallOptions } from './call';
import * as codec from './codec';
import { helloFrame } from './connection';
import type { TlsOptions } from './dial';
import { serverError, StockdProtocolError } from './errors';
import { Pool, ReconnectOptions } from './pool';
import * as res from './results';
import { uuidv7 } from './uuid';

export interface StockdClientOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 7070. */
  port?: number;
  /** Default 'buyer'. */
  role?: codec.Role;
  /** The role's token (--client-token, --admin-token, --outbox-token), at most 256 bytes; default ''. */
  token?: string;
  /** Sent in HELLO for the server's logs, at most 128 bytes; default 'stockd-node'. */
  clientName?: string;
  /** Connections in the pool; default 1. */
  connections?: number;
  /**
   * Calls that may wait in the client for a request slot (beyond the server's inflight_max per
   * connection); a new call past it rejects at once with StockdQueueFullError, unsent. Default
   * 10000.
   */
  maxQueued?: number;
  /** Default deadline of every call, retries included (1..2147483647 ms); default 5000. */
  timeoutMs?: number;
  /** Deadline of one dial: TCP, TLS and HELLO, and of a close's last answers; default 5000. */
  connectTimeoutMs?: number;
  /** Redial backoff (each 1..2147483647 ms); default 50 ms doubling to 2000 ms, with jitter. */
  reconnect?: ReconnectOptions;
  /** PING a quiet connection before the server's idle timeout closes it; default true. */
  keepAlive?: boolean;
  /** Speak TLS (section 1). */
  tls?: TlsOptions;
}

/** A u64 as the caller may hold it: bigint, safe non-negative integer, or decimal string. */
export type U64Input = bigint | number | string;

export interface ReserveInput {
  user: string;
  lines: Array<{ sku: string; qty: number }>;
  /** How long the hold lasts (1..86400000); 0 buys at once. */
  ttlMs: number;
  /** Idempotency key; omitted: a fresh UUIDv7; '' sends none (then a lost answer is not retried). */
  key?: string;
}

export interface SkuSetInput {
  sku: string;
  /** Only the fields given are changed (they make SKU_SET's mask); 0 removes a window end. */
  total?: U64Input;
  perUserLimit?: number;
  opensAtMs?: number;
  closesAtMs?: number;
}

/** The server checks long-poll deadlines once a second. */
const LONG_POLL_SLACK_MS = 1000;

/**
 * Far above what waits in a spike (a queue forms only once every connection has inflight_max,
 * 1024 by default, in flight); far below what a sale day's rate piles up within a 5 s deadline
 * while stockd is down (20,000 calls/s: 100,000 calls of ~1 KB each, a reserve's promise,
 * timer and frame).
 */
const MAX_QUEUED_DEFAULT = 10_000;

/** Node runs a timer of more (or of NaN) after 1 ms: every call would time out at once. */
const TIMER_MS_MAX = 2 ** 31 - 1;

function checkMs(name: string, v: number): number {
  if (typeof v !== 'number' || !(v >= 1 && v <= TIMER_MS_MAX)) {
    throw new RangeError(`${name} must be a number of ms from 1 to ${TIMER_MS_MAX}, got ${String(v)}`);
  }
  return v;
}

type Shape = { retrySafe: boolean; changesState: boolean; extraMs?: number; holdsBack?: boolean };
const READ: Shape = { retrySafe: true, changesState: false };
const SAFE_WRITE: Shape = { retrySafe: true, changesState: true };
const UNSAFE_WRITE: Shape = { retrySafe: false, changesState: true };

function u64(op: string, field: string, v: U64Input): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) return BigInt(v);
  throw serverError(codec.STATUS.BAD_REQUEST, `${op}: ${field} must be a u64 (bigint, safe integer or decimal string), got ${String(v)}`, true);
}

function i64(op: string, field: string, v: bigint | number): bigint {
  if (typeof v === 'bigint') return v;
  if (Number.isSafeInteger(v)) return BigInt(v);
  throw serverError(codec.STATUS.BAD_REQUEST, `${op}: ${field} must be a bigint or safe integer, got ${String(v)}`, true);
}

// Answers to results; `key` is the idempotency key the request carried.
const decodeReserve = (a: Answer, key: string) => res.reserveResult(a.status, a.body as codec.ReserveResp, key);
const decodeClaim = (a: Answer, key: string) => res.claimResult(a.status, a.body as codec.ClaimResp, key);
const decodeCommit = (a: Answer, _key: string, resent: boolean) =>
  res.holdChangeResult('commit', a.status, a.body as codec.HoldView, resent ? 'COMMITTED' : undefined);
const decodeRelease = (a: Answer, _key: string, resent: boolean) =>
  res.holdChangeResult('release', a.status, a.body as codec.HoldView, resent ? 'RELEASED' : undefined);

/**
 * Events: 'connect' ({address, hello}), 'reconnecting' ({address, attempt, delayMs, error}),
 * 'error' (StockdError; emitted only while someone listens, so an unlistened client never
 * throws from an event), 'close'.
 */
export class StockdClient extends EventEmitter {
  private readonly pool: Pool;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;

  constructor(options: StockdClientOptions = {}) {
    super();
    // Settings are checked here, where a throw reaches the caller: at a dial, in a socket's
    // event, one would crash the process or leave calls waiting for a connection that never comes.
    const connections = options.connections ?? 1;
    if (!Number.isInteger(connections) || connections < 1) throw new RangeError('connections must be an integer >= 1');
    const maxQueued = options.maxQueued ?? MAX_QUEUED_DEFAULT;
    // Not 0: every call made before the first HELLO would fail. Not Infinity: the point is a bound.
    if (!Number.isSafeInteger(maxQueued) || maxQueued < 1) throw new RangeError(`maxQueued must be an integer >= 1, got ${String(maxQueued)}`);
    const host = options.host ?? '127.0.0.1';
    if (typeof host !== 'string' || host === '') throw new RangeError(`host must be a non-empty string, got ${String(host)}`);
    const port = options.port ?? 7070;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`port must be an integer from 1 to 65535, got ${String(port)}`);
    this.timeoutMs = checkMs('timeoutMs', options.timeoutMs ?? 5000);
    this.connectTimeoutMs = checkMs('connectTimeoutMs', options.connectTimeoutMs ?? 5000);
    const minDelayMs = checkMs('reconnect.minDelayMs', options.reconnect?.minDelayMs ?? 50);
    const maxDelayMs = checkMs('reconnect.maxDelayMs', options.reconnect?.maxDelayMs ?? 2000);
    let hello: Buffer;
    try {
      hello = helloFrame(options.role ?? 'buyer', options.token ?? '', options.clientName ?? 'stockd-node');
    } catch (e) {
      if (e instanceof codec.CodecError) throw new RangeError(`role, token or clientName does not fit HELLO: ${e.message}`);
      throw e;
    }
    this.pool = new Pool(
      {
        host,
        port,
        hello,
        connectTimeoutMs: this.connectTimeoutMs,
        keepAlive: options.keepAlive ?? true,
        tls: options.tls,
        connections,
        reconnect: { minDelayMs, maxDelayMs },
        maxQueued,
      },
      this,
    );
  }

  /** The limits of the server's latest HelloResp (frame_bytes_max, inflight_max, idle timeout). */
  get serverLimits(): codec.HelloResp | undefined {
    return this.pool.hello;
  }

  /** Dials now (calls dial by themselves); resolves once one connection said HELLO. */
  connect(timeoutMs = this.connectTimeoutMs): Promise<void> {
    try {
      return this.pool.whenReady(checkMs('timeoutMs', timeoutMs));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Takes no new calls, waits for the accepted ones (each within its deadline), closes. */
  close(): Promise<void> {
    return this.pool.close();
  }

  /** Closes at once; unsettled calls reject with StockdConnectionError. */
  destroy(reason = 'client destroyed'): void {
    this.pool.destroy(reason);
  }

  /** Throws a local StockdBadRequestError for a request that does not encode. */
  private send<K extends codec.OpName>(op: K, body: codec.ReqOf<K>, shape: Shape, o?: CallOptions): Promise<Answer> {
    return this.start(op, body, shape, o, undefined);
  }

  /**
   * The call's promise, resolved with `decode(answer)`: one promise per call, no await in
   * between (the hot operations use this directly; the others await `send`). `key` is a
   * reserve's or claim's idempotency key.
   */
  private start<K extends codec.OpName, T>(
    op: K,
    body: codec.ReqOf<K>,
    shape: Shape,
    o: CallOptions | undefined,
    decode: ((a: Answer, key: string, resent: boolean) => T) | undefined,
    key = '',
  ): Promise<T> {
    const full = this.pool.queueFull(op);
    if (full) return Promise.reject(full);
    let frame: Buffer;
    try {
      frame = codec.encodeRequest(op, 0, body);
    } catch (e) {
      if (e instanceof codec.CodecError) throw serverError(codec.STATUS.BAD_REQUEST, e.message, true);
      throw e;
    }
    const callMs = o?.timeoutMs === undefined ? this.timeoutMs : checkMs('timeoutMs', o.timeoutMs);
    // A long poll's wait on top of the largest deadline still fits a timer (held at its cap).
    const timeoutMs = Math.min(TIMER_MS_MAX, callMs + (shape.extraMs ?? 0));
    const { retrySafe, changesState, holdsBack } = shape;
    const call = new Call<T>({ op, frame, retrySafe, changesState, holdsBack, timeoutMs, signal: o?.signal, decode, key }, this.pool);
    this.pool.submit(call);
    return call.promise;
  }

  // Buyer (and admin) operations.

  // The four operations of a sale's hot path are not `async`: their promise is the call's own
  // (see start()); a request that does not encode still rejects, never throws.

  /** All lines or none. Resent on a new connection with the same key if the answer is lost. */
  reserve(input: ReserveInput, o?: CallOptions): Promise<res.ReserveResult> {
    try {
      const key = input.key ?? uuidv7();
      const body = { user: input.user, key, ttlMs: input.ttlMs, lines: input.lines };
      return this.start('RESERVE', body, key ? SAFE_WRITE : UNSAFE_WRITE, o, decodeReserve, key);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  claim(input: { sku: string; user: string; key?: string }, o?: CallOptions): Promise<res.ClaimResult> {
    try {
      const key = input.key ?? uuidv7();
      const body = { sku: input.sku, user: input.user, key };
      return this.start('CLAIM', body, key ? SAFE_WRITE : UNSAFE_WRITE, o, decodeClaim, key);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** A buyer must name the hold's user; admin may pass '' to reach any hold. */
  commit(input: { holdId: U64Input; user: string }, o?: CallOptions): Promise<res.HoldChangeResult> {
    try {
      const body = { holdId: u64('commit', 'hold_id', input.holdId), user: input.user };
      return this.start('COMMIT', body, SAFE_WRITE, o, decodeCommit);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  release(input: { holdId: U64Input; user: string }, o?: CallOptions): Promise<res.HoldChangeResult> {
    try {
      const body = { holdId: u64('release', 'hold_id', input.holdId), user: input.user };
      return this.start('RELEASE', body, SAFE_WRITE, o, decodeRelease);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async holdGet(input: { holdId: U64Input; user?: string }, o?: CallOptions): Promise<res.HoldGetResult> {
    const a = await this.send('HOLD_GET', { holdId: u64('hold_get', 'hold_id', input.holdId), user: input.user ?? '' }, READ, o);
    return res.holdGetResult(a.status, a.body as codec.HoldView);
  }

  async skuGet(sku: string, o?: CallOptions): Promise<res.SkuResult> {
    const a = await this.send('SKU_GET', { sku }, READ, o);
    return res.skuResult('sku_get', a.status, a.body as codec.SkuView);
  }

  /** One page: SKUs after `after` in byte order; an empty page is the end. */
  async skuList(input: { after?: string; limit?: number } = {}, o?: CallOptions): Promise<codec.SkuView[]> {
    const a = await this.send('SKU_LIST', { after: input.after ?? '', limit: input.limit ?? 1000 }, READ, o);
    res.onlyOk('sku_list', a.status);
    return (a.body as codec.Infer<typeof codec.SkuListResp>).skus;
  }

  /** Every SKU after `after`, page by page (each page one SKU_LIST with its own deadline). */
  async *skus(input: { after?: string; pageSize?: number } = {}, o?: CallOptions): AsyncGenerator<codec.SkuView> {
    let after = input.after ?? '';
    for (;;) {
      const page = await this.skuList({ after, limit: input.pageSize ?? 1000 }, o);
      if (page.length === 0) return;
      const last = page[page.length - 1].sku;
      // A page that ends at or before `after` would be asked for again and again.
      if (Buffer.compare(Buffer.from(last), Buffer.from(after)) <= 0) {
        throw new StockdProtocolError(`sku_list: the page after ${JSON.stringify(after)} ends at ${JSON.stringify(last)}, not past it`);
      }
      yield* page;
      after = last;
    }
  }

  async stats(o?: CallOptions): Promise<codec.Stat[]> {
    const a = await this.send('STATS', {}, READ, o);
    res.onlyOk('stats', a.status);
    return (a.body as codec.Infer<typeof codec.StatsResp>).stats;
  }

  async ping(o?: CallOptions): Promise<void> {
    const a = await this.send('PING', {}, READ, o);
    res.onlyOk('ping', a.status);
  }

  // Admin operations. SKU_SET, RESTOCK and CODES_LOAD are never resent once written: a lost
  // answer is a StockdConnectionError with `outcomeUnknown`.

  async skuSet(input: SkuSetInput, o?: CallOptions): Promise<res.SkuSetResult> {
    const mask =
      (input.total !== undefined ? codec.SET_TOTAL : 0) |
      (input.perUserLimit !== undefined ? codec.SET_PER_USER_LIMIT : 0) |
      (input.opensAtMs !== undefined ? codec.SET_OPENS_AT : 0) |
      (input.closesAtMs !== undefined ? codec.SET_CLOSES_AT : 0);
    const body = {
      sku: input.sku,
      mask,
      total: input.total === undefined ? 0n : u64('sku_set', 'total', input.total),
      perUserLimit: input.perUserLimit ?? 0,
      opensAtMs: input.opensAtMs ?? 0,
      closesAtMs: input.closesAtMs ?? 0,
    };
    const a = await this.send('SKU_SET', body, UNSAFE_WRITE, o);
    return res.skuSetResult(a.status, a.body as codec.SkuView);
  }

  async restock(input: { sku: string; delta: bigint | number }, o?: CallOptions): Promise<res.RestockResult> {
    const a = await this.send('RESTOCK', { sku: input.sku, delta: i64('restock', 'delta', input.delta) }, UNSAFE_WRITE, o);
    return res.restockResult(a.status, a.body as codec.SkuView);
  }

  async codesLoad(input: { sku: string; codes: string[] }, o?: CallOptions): Promise<res.CodesLoadResult> {
    const a = await this.send('CODES_LOAD', { sku: input.sku, codes: input.codes }, UNSAFE_WRITE, o);
    return res.codesLoadResult(a.status, a.body as codec.CodesLoadResp);
  }

  /** Closes the sale for good. Resent after a lost answer: closing a closed SKU answers OK. */
  async saleClose(sku: string, o?: CallOptions): Promise<res.SkuResult> {
    const a = await this.send('SALE_CLOSE', { sku }, SAFE_WRITE, o);
    return res.skuResult('sale_close', a.status, a.body as codec.SkuView);
  }

  // Outbox operations (outbox role, or admin).

  /**
   * Long poll: the deadline is `timeoutMs` plus `waitMs` plus a second, as the server checks
   * its long-poll deadlines once a second (section 7.4).
   */
  async outboxRead(
    input: { afterSeq: U64Input; maxRecords?: number; waitMs?: number },
    o?: CallOptions,
  ): Promise<codec.OutboxReadResp> {
    const waitMs = input.waitMs ?? 0;
    const body = { afterSeq: u64('outbox_read', 'after_seq', input.afterSeq), maxRecords: input.maxRecords ?? 1000, waitMs };
    const longPoll = waitMs > 0;
    const a = await this.send('OUTBOX_READ', body, { ...READ, extraMs: longPoll ? waitMs + LONG_POLL_SLACK_MS : 0, holdsBack: longPoll }, o);
    res.onlyOk('outbox_read', a.status);
    return a.body as codec.OutboxReadResp;
  }

  /** Resent after a lost answer: acked_seq never goes down, so a repeat changes nothing. */
  async outboxAck(uptoSeq: U64Input, o?: CallOptions): Promise<codec.OutboxStatusResp> {
    const a = await this.send('OUTBOX_ACK', { uptoSeq: u64('outbox_ack', 'upto_seq', uptoSeq) }, SAFE_WRITE, o);
    res.onlyOk('outbox_ack', a.status);
    return a.body as codec.OutboxStatusResp;
  }

  async outboxStatus(o?: CallOptions): Promise<codec.OutboxStatusResp> {
    const a = await this.send('OUTBOX_STATUS', {}, READ, o);
    res.onlyOk('outbox_status', a.status);
    return a.body as codec.OutboxStatusResp;
  }
}
