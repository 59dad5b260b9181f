// A few connections and one queue of calls waiting for a request slot. The pool dials, says
// HELLO, spreads calls over the connections with room (each at most the server's
// inflight_max), redials with capped exponential backoff and jitter, and decides what a lost
// connection means for each call it carried:
//   - never written, or safe to resend (keyed RESERVE/CLAIM, COMMIT, RELEASE, reads): back to
//     the front of the queue, for the next connection, within the call's own deadline;
//   - written and not safe (admin writes): StockdConnectionError, outcome unknown.
// At most `maxQueued` calls wait: a new call past it fails at once, unsent (StockdQueueFullError).
import type { EventEmitter } from 'events';
import { Call, CallHooks } from './call';
import { CallQueue } from './call-queue';
import * as codec from './codec';
import { Connection, ConnectionOptions } from './connection';
import {
  serverError,
  StockdConnectionError,
  StockdError,
  StockdQueueFullError,
  StockdTimeoutError,
  StockdTlsError,
  StockdUnauthorizedError,
  StockdUnsupportedVersionError,
} from './errors';

export interface ReconnectOptions {
  /** First redial delay; doubles per failed attempt. */
  minDelayMs?: number;
  /** Cap of the redial delay. */
  maxDelayMs?: number;
}

export interface PoolOptions extends ConnectionOptions {
  connections: number;
  reconnect: Required<ReconnectOptions>;
  /** Calls that may wait for a request slot; a new call past it fails at once, unsent. */
  maxQueued: number;
}

/** A connection that lived this long was a success: the next redial starts the backoff over. */
const STABLE_MS = 1000;

interface Slot {
  conn: Connection | undefined;
  /** Failed dials in a row: the redial's backoff. */
  attempt: number;
  /** When its connection said HELLO. */
  readyAtMs: number;
  timer: NodeJS.Timeout | undefined;
  /**
   * Set when a refused dial left no call waiting: the slot is not redialled until a call (or
   * connect()) needs it, and then not before this time (its backoff), so that an idle client
   * with a wrong token does not spend the server's per-address allowance of failed HELLOs.
   */
  parkedUntil: number | undefined;
}

export class Pool implements CallHooks {
  private readonly slots: Slot[];
  private readonly queue = new CallQueue();
  /**
   * Calls accepted and not settled. A count, not a Set of them: a Set that churns through a
   * call per request rehashes every few dozen, and V8 links each obsolete table to the next
   * (for live iterators), so one table that reached the old generation kept every later
   * table, and the calls in them, alive until a full GC: ~2 MB promoted per scavenge and
   * scavenges of 10+ ms at 50 x 1.
   */
  private live = 0;
  /** The connection that last had a request slot freed (where pump() looks first). */
  private lastAnswered: Connection | undefined;
  private started = false;
  private closing = false;
  private closed = false;
  private lastError: StockdError | undefined;
  /** A refused HELLO or certificate: calls fail at once with it until a connection succeeds. */
  private fatal: StockdError | undefined;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private drained: (() => void) | undefined;
  private closingDone: Promise<void> | undefined;

  constructor(
    private readonly opts: PoolOptions,
    private readonly emitter: EventEmitter,
  ) {
    this.slots = Array.from({ length: opts.connections }, () => ({ conn: undefined, attempt: 0, readyAtMs: 0, timer: undefined, parkedUntil: undefined }));
  }

  /** The limits the server gave the most recent HELLO. */
  hello: codec.HelloResp | undefined;

  get isClosing(): boolean {
    return this.closing || this.closed;
  }

  start(): void {
    if (this.started || this.isClosing) return;
    this.started = true;
    this.slots.forEach((s) => this.dial(s));
  }

  /** Resolves once a connection is ready; rejects on a refused HELLO or after `timeoutMs`. */
  whenReady(timeoutMs: number): Promise<void> {
    this.start();
    if (this.slots.some((s) => s.conn?.state === 'ready')) return Promise.resolve();
    if (this.isClosing) return Promise.reject(new StockdConnectionError('client is closed'));
    this.wakeParked();
    return new Promise((resolve, reject) => {
      const w = {
        resolve: () => (clearTimeout(t), resolve()),
        reject: (e: Error) => (clearTimeout(t), reject(e)),
      };
      const t = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((x) => x !== w);
        const why = this.lastError ? `: ${this.lastError.message}` : '';
        reject(new StockdTimeoutError(`no connection to ${this.opts.host}:${this.opts.port} within ${timeoutMs} ms${why}`, { cause: this.lastError }));
      }, timeoutMs);
      this.readyWaiters.push(w);
    });
  }

  submit(call: Call): void {
    if (call.settled) return;
    if (this.isClosing) return call.fail(new StockdConnectionError('client is closed'));
    // After a refusal, a call fails at once with it; unless a slot parked since then is due
    // for its redial: then the call waits for that dial's answer.
    if (this.fatal && !this.anyReady() && !this.wakeParked()) return call.failShared(this.fatal);
    const full = this.queueFull(call.op);
    if (full) return call.fail(full);
    call.accepted = true;
    this.live++;
    this.queue.push(call);
    this.start();
    this.pump();
  }

  /**
   * The error for a new call when `maxQueued` calls already wait: with stockd slow or down,
   * calls would pile up for as long as their deadlines (rate x timeout). The client asks before
   * it encodes the request: a refused call's frame would share the codec's slab with accepted
   * ones, and keep 64 KiB alive per queued call once refusals far outnumber them. Only new
   * calls are capped: resends go back to the front (onDead) whatever the count.
   */
  queueFull(op: string): StockdQueueFullError | undefined {
    const waiting = this.queue.waiting;
    if (waiting < this.opts.maxQueued || this.isClosing) return undefined; // closed: submit says so
    const why = this.lastError ? ` (last error: ${this.lastError.message})` : '';
    const msg = `${op} not sent: ${waiting} calls already wait for stockd (maxQueued ${this.opts.maxQueued}); safe to retry${why}`;
    return new StockdQueueFullError(msg, { cause: this.lastError });
  }

  // CallHooks
  expired(call: Call): Error | undefined {
    if (call.accepted && !call.carrier) this.queue.settledWhileQueued();
    return this.lastError;
  }
  settled(call: Call): void {
    if (!call.accepted) return;
    call.accepted = false;
    this.live--;
    if (this.closing && this.live === 0) this.drained?.();
  }

  private anyReady(): boolean {
    return this.slots.some((s) => s.conn?.state === 'ready');
  }

  /**
   * Moves queued calls to the connection with the most room, while any has room. An idle
   * connection has the most there is, so the search stops at the first one, and starts with
   * the connection that was answered last (usually idle: at 50 connections x 1 in flight, a
   * scan of the pool per call was 2% of the client's CPU).
   */
  private pump(): void {
    while (this.queue.length > 0) {
      let best = this.lastAnswered;
      if (best === undefined || !best.idle) {
        best = undefined;
        for (let i = 0; i < this.slots.length; i++) {
          const c = this.slots[i].conn;
          if (c === undefined || c.free <= (best?.free ?? 0)) continue;
          best = c;
          if (c.idle) break;
        }
      }
      if (!best) return;
      const call = this.queue.shift();
      if (call === undefined) return;
      const max = best.hello!.frameBytesMax;
      if (call.frame.length > max) {
        const msg = `${call.op} frame of ${call.frame.length} bytes exceeds the server's frame_bytes_max ${max}; not sent`;
        call.fail(serverError(codec.STATUS.FRAME_TOO_LARGE, msg, true));
        continue;
      }
      best.send(call);
    }
  }

  private dial(slot: Slot): void {
    slot.timer = undefined;
    const conn = new Connection(this.opts, {
      ready: (c) => this.onReady(slot, c),
      capacity: (c) => {
        this.lastAnswered = c;
        this.pump();
      },
      dead: (c, err, unanswered) => this.onDead(slot, c, err, unanswered),
    });
    slot.conn = conn;
    conn.open();
  }

  private onReady(slot: Slot, conn: Connection): void {
    slot.readyAtMs = Date.now();
    this.fatal = undefined;
    this.wakeParked();
    this.hello = conn.hello;
    this.emitter.emit('connect', { address: conn.address, hello: conn.hello });
    for (const w of this.readyWaiters.splice(0)) w.resolve();
    this.pump();
  }

  private onDead(slot: Slot, conn: Connection, err: StockdError, unanswered: Array<{ call: Call; written: boolean }>): void {
    slot.conn = undefined;
    if (this.lastAnswered === conn) this.lastAnswered = undefined;
    const wasReady = conn.hello !== undefined;
    const quiet = this.closing && this.queue.length === 0 && unanswered.length === 0;
    if (!quiet) {
      this.lastError = err;
      if (this.emitter.listenerCount('error') > 0) this.emitter.emit('error', err);
    }
    // Back to the front in their order: they were sent before anything still queued.
    const requeue: Call[] = [];
    for (const { call, written } of unanswered) {
      if (written) call.lostOnce = true;
      if (!this.closed && (!written || call.retrySafe)) requeue.push(call);
      else {
        // Sent on an earlier connection counts too: a resend waiting to be written here.
        const unknown = call.sent && call.changesState;
        const what = unknown ? '; the outcome is unknown' : '';
        const msg = `connection lost before the answer to ${call.op}${what} (${err.message})`;
        call.fail(new StockdConnectionError(msg, { cause: err, outcomeUnknown: unknown }));
      }
    }
    this.queue.unshift(requeue);
    const refusal = err instanceof StockdUnauthorizedError || err instanceof StockdUnsupportedVersionError;
    if (!wasReady && (refusal || err instanceof StockdTlsError)) {
      this.refused(err);
    }
    if (this.closed || (this.closing && this.live === 0)) return;
    // The backoff starts over only after a connection that lasted: one dropped right after its
    // HELLO (a crash loop, a proxy) counts as a failed attempt.
    if (wasReady && Date.now() - slot.readyAtMs >= STABLE_MS) slot.attempt = 0;
    const { minDelayMs, maxDelayMs } = this.opts.reconnect;
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(slot.attempt, 30));
    const delayMs = Math.round(cap / 2 + (Math.random() * cap) / 2);
    slot.attempt++;
    if (this.fatal !== undefined && this.live === 0 && this.readyWaiters.length === 0) {
      // Refused, and nobody waits (no call, no connect()): no redial until one needs it.
      slot.parkedUntil = Date.now() + delayMs;
      return;
    }
    this.emitter.emit('reconnecting', { address: conn.address, attempt: slot.attempt, delayMs, error: err });
    slot.timer = setTimeout(() => this.dial(slot), delayMs);
    // Redialling for nobody does not keep the process alive; a waiting call's deadline does.
    if (this.live === 0) slot.timer.unref();
    this.pump();
  }

  /**
   * Redials the slots parked after a refusal: now if their backoff delay has passed, else when
   * it does. Returns whether one dials now (a call can wait for its answer).
   */
  private wakeParked(): boolean {
    if (this.isClosing) return false;
    let now = false;
    for (const slot of this.slots) {
      if (slot.parkedUntil === undefined) continue;
      const delayMs = slot.parkedUntil - Date.now();
      slot.parkedUntil = undefined;
      if (delayMs <= 0) {
        now = true;
        this.dial(slot);
        continue;
      }
      const error = this.fatal ?? this.lastError;
      this.emitter.emit('reconnecting', { address: `${this.opts.host}:${this.opts.port}`, attempt: slot.attempt, delayMs, error });
      slot.timer = setTimeout(() => this.dial(slot), delayMs);
      if (this.live === 0) slot.timer.unref();
    }
    return now;
  }

  /** A refusal will come again: fail what waits instead of letting it time out. */
  private refused(err: StockdError): void {
    this.fatal = err;
    if (this.anyReady()) return;
    // Each its own error: a call resent after a lost connection may have been applied.
    for (const call of this.queue.takeAll()) call.failShared(err);
    for (const w of this.readyWaiters.splice(0)) w.reject(err);
  }

  /** Stops taking calls, lets the accepted ones finish (each within its deadline), then closes. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closingDone ??= (async () => {
      this.closing = true;
      for (const w of this.readyWaiters.splice(0)) w.reject(new StockdConnectionError('client closed'));
      if (this.live > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      if (!this.closed) this.shutdown(undefined);
    })();
    return this.closingDone;
  }

  /** Closes now: every unsettled call fails with StockdConnectionError. */
  destroy(reason: string): void {
    if (this.closed) return;
    this.closing = true;
    const err = new StockdConnectionError(reason);
    // Each its own error: a call waiting to be resent after a lost connection may have been applied.
    for (const call of this.queue.takeAll()) call.failShared(err);
    this.shutdown(err); // fails the calls in flight too, which ends a close() waiting on them
  }

  private shutdown(err: StockdConnectionError | undefined): void {
    this.closed = true;
    for (const s of this.slots) {
      clearTimeout(s.timer);
      if (err) s.conn?.die(err);
      else s.conn?.drain();
    }
    this.emitter.emit('close');
  }
}
