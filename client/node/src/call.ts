// One request from the caller's point of view: its encoded frame, its deadline and abort
// signal, whether it may be resent after a lost connection, and the promise the caller holds.
// A call settles exactly once; whatever happens to it afterwards (a late answer) is dropped.
import { STATUS, type OpName } from './codec/ops';
import { errorForCall, serverError, StockdAbortError, StockdError, StockdTimeoutError } from './errors';

export interface CallOptions {
  /** Deadline of this call in ms, from the moment it is made, retries included. */
  timeoutMs?: number;
  /** Aborts the call (rejects with StockdAbortError); a request already sent still runs. */
  signal?: AbortSignal;
}

/** The server's answer: status < 64 with the decoded response body. */
export interface Answer {
  status: number;
  body: unknown;
}

/** What a call tells its owners. */
export interface CallHooks {
  /** Deadline or abort while queued or in flight; returns the error that delayed it, if any. */
  expired(call: Call): Error | undefined;
  settled(call: Call): void;
}

/** The connection a call was written to, told when the caller stops waiting for it. */
export interface Carrier {
  abandoned(call: Call): void;
}

export interface CallSpec<T> {
  op: OpName;
  frame: Buffer;
  /** May be resent after a lost connection with the same bytes (section 9). */
  retrySafe: boolean;
  /** Changes state, so an unanswered send leaves the outcome unknown. */
  changesState: boolean;
  /**
   * A waiting OUTBOX_READ: the server runs nothing sent after it on its connection until it
   * is answered (section 5), so its connection takes no other call meanwhile.
   */
  holdsBack?: boolean;
  timeoutMs: number;
  signal?: AbortSignal;
  /**
   * Turns the answer into what the caller's promise resolves to (a result union); a throw
   * rejects it. Done here so that a call is one promise, settled once, with no await between
   * the answer and the caller.
   */
  decode?: (a: Answer, key: string, resent: boolean) => T;
  /**
   * A reserve's or claim's idempotency key ('' for none). Passed to `decode`, so that it need
   * not be a closure, and named by an error that leaves the outcome unknown.
   */
  key?: string;
}

const expireTimeout = (call: Call) => call.expireNow('timeout');

// `Call` alone (the pool's and connections' view) is a call of any result type.
export class Call<T = any> {
  readonly op: OpName;
  readonly frame: Buffer;
  readonly retrySafe: boolean;
  readonly changesState: boolean;
  readonly holdsBack: boolean;
  readonly timeoutMs: number;
  readonly promise: Promise<T>;
  settled = false;
  /** Written to some socket at least once (so it may have been applied). */
  sent = false;
  /** Written to a connection that was lost before its answer (and then resent). */
  lostOnce = false;
  /** Counted by the pool as live (accepted by `submit`, not yet settled). */
  accepted = false;
  /** The connection it is in flight on, if any. */
  carrier: Carrier | undefined;
  private resolveFn!: (v: T) => void;
  private rejectFn!: (e: Error) => void;
  private readonly decode: ((a: Answer, key: string, resent: boolean) => T) | undefined;
  private readonly key: string;
  private readonly timer: NodeJS.Timeout;
  private readonly signal: AbortSignal | undefined;
  private onAbort: (() => void) | undefined;

  constructor(
    spec: CallSpec<T>,
    private readonly hooks: CallHooks,
  ) {
    this.op = spec.op;
    this.frame = spec.frame;
    this.retrySafe = spec.retrySafe;
    this.changesState = spec.changesState;
    this.holdsBack = spec.holdsBack ?? false;
    this.timeoutMs = spec.timeoutMs;
    this.decode = spec.decode;
    this.key = spec.key ?? '';
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.timer = setTimeout(expireTimeout, spec.timeoutMs, this); // no closure per call
    this.signal = spec.signal;
    if (this.signal) {
      this.onAbort = () => this.expireNow('abort');
      this.signal.addEventListener('abort', this.onAbort, { once: true });
      if (this.signal.aborted) this.expireNow('abort');
    }
  }

  resolve(a: Answer): void {
    if (!this.finish()) return;
    if (this.decode === undefined) return this.resolveFn(a as T);
    let v: T;
    try {
      v = this.decode(a, this.key, this.lostOnce);
    } catch (e) {
      return this.rejectFn(e as Error);
    }
    this.resolveFn(v);
  }

  fail(e: Error): void {
    if (!this.finish()) return;
    // Errors that leave the outcome unknown are made for one call each: the key is this call's.
    if (this.key !== '' && e instanceof StockdError && e.outcomeUnknown) e.idempotencyKey = this.key;
    this.rejectFn(e);
  }

  /**
   * Fails this call with the server's error answer. After a lost send, STORAGE_UNAVAILABLE
   * answers the resend only: the server refuses every write while its store is failed, before
   * it looks the key up, so the first send may have been applied and the outcome is unknown.
   * (Other refusals come after the key was looked up, or for the request's own bytes.)
   */
  failAnswer(status: number, message: string): void {
    const e = serverError(status, message);
    if (this.lostOnce && this.changesState && status === STATUS.STORAGE_UNAVAILABLE) {
      e.outcomeUnknown = true;
      e.message += `; an earlier send of ${this.op} was lost, so its outcome is unknown`;
    }
    // A failed store may still replay the group if the server is killed before it recovers
    // (spec section 9): the key is what a caller who must know resends with.
    if (this.key !== '' && status === STATUS.STORAGE_UNAVAILABLE) e.idempotencyKey = this.key;
    this.fail(e);
  }

  /**
   * Fails this call with its own copy of `shared`, an error that fails many calls at once (a
   * destroy, a refused HELLO): outcome unknown when this call was sent (on this connection or
   * an earlier one) and changes state, whatever the shared error says.
   */
  failShared(shared: StockdError): void {
    if (!this.settled) this.fail(errorForCall(shared, this.op, this.sent && this.changesState));
  }

  private finish(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    this.hooks.settled(this);
    return true;
  }

  /** Deadline or abort: the caller stops waiting (internal). */
  expireNow(why: 'timeout' | 'abort'): void {
    if (this.settled) return;
    const cause = this.hooks.expired(this);
    const outcomeUnknown = this.sent && this.changesState;
    const tail = outcomeUnknown ? '; it was sent, so its outcome is unknown' : '';
    const because = cause ? ` (last error: ${cause.message})` : '';
    const err: StockdError =
      why === 'timeout'
        ? new StockdTimeoutError(`${this.op} got no answer within ${this.timeoutMs} ms${tail}${because}`, { cause, outcomeUnknown })
        : new StockdAbortError(`${this.op} aborted${tail}`, { cause: this.signal?.reason, outcomeUnknown });
    const carrier = this.carrier;
    this.fail(err);
    carrier?.abandoned(this);
  }
}
