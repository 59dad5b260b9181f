// Errors: transport failures and statuses >= 64. Business outcomes (status < 64) are never
// errors; they are the values of each operation's result union (results.ts).
import { statusName, STATUS } from './codec/ops';

export class StockdError extends Error {
  override name = 'StockdError';
  /** Stable name of the kind: 'CONNECTION', 'TIMEOUT', 'BAD_REQUEST', ... */
  readonly code: string;
  /**
   * True when the request may or may not have been applied: it was written, it changes state,
   * and no answer came. Find out before trying again (HOLD_GET, SKU_GET, or a keyed repeat).
   */
  outcomeUnknown = false;
  /**
   * Set when `outcomeUnknown` on the error of a `reserve` or `claim` that carried a key (its
   * own, or the one the client made): resend the same request with this key to learn the
   * outcome; a new key could buy twice.
   */
  idempotencyKey: string | undefined = undefined;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The connection failed or was lost; the request was not answered. */
export class StockdConnectionError extends StockdError {
  override name = 'StockdConnectionError';
  constructor(message: string, options?: { cause?: unknown; outcomeUnknown?: boolean }) {
    super('CONNECTION', message, options);
    this.outcomeUnknown = options?.outcomeUnknown ?? false;
  }
}

/**
 * TLS refused a certificate: the server's (not from the CA given, or not for the host name
 * dialled) or ours (the server wants one from its --tls-client-ca). Redialling will not fix
 * it, so calls fail at once with it until a connection succeeds.
 */
export class StockdTlsError extends StockdConnectionError {
  override name = 'StockdTlsError';
  override readonly code = 'TLS';
}

/**
 * The client's queue of calls waiting for a request slot is full (`maxQueued`): stockd is slow
 * or down and calls arrive faster than it answers. The request was never sent, so it had no
 * effect and is safe to retry (later, or after shedding load); `outcomeUnknown` is false.
 */
export class StockdQueueFullError extends StockdError {
  override name = 'StockdQueueFullError';
  /** The client refused the call itself and sent nothing (as StockdServerError's `local`). */
  readonly local = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super('QUEUE_FULL', message, options);
  }
}

/** The call's deadline (`timeoutMs`) passed before its answer. */
export class StockdTimeoutError extends StockdError {
  override name = 'StockdTimeoutError';
  constructor(message: string, options?: { cause?: unknown; outcomeUnknown?: boolean }) {
    super('TIMEOUT', message, options);
    this.outcomeUnknown = options?.outcomeUnknown ?? false;
  }
}

/** The call's AbortSignal fired before its answer. */
export class StockdAbortError extends StockdError {
  override name = 'AbortError';
  constructor(message: string, options?: { cause?: unknown; outcomeUnknown?: boolean }) {
    super('ABORTED', message, options);
    this.outcomeUnknown = options?.outcomeUnknown ?? false;
  }
}

/**
 * The server sent bytes that break docs/protocol.md (the connection was closed), or SKU_LIST
 * pages that do not move past `after` (skus()). `outcomeUnknown` when the garbled answer was
 * to a request that changes state: it may have been applied.
 */
export class StockdProtocolError extends StockdError {
  override name = 'StockdProtocolError';
  constructor(message: string, options?: { cause?: unknown; outcomeUnknown?: boolean }) {
    super('PROTOCOL', message, options);
    this.outcomeUnknown = options?.outcomeUnknown ?? false;
  }
}

/** A status >= 64 from the server, with its ErrorResp message (for humans, not parsing). */
export class StockdServerError extends StockdError {
  override name = 'StockdServerError';
  /**
   * @param status the wire status
   * @param serverMessage ErrorResp.message; for errors found before sending (`local`), ours
   * @param local true when the client refused the request itself and sent nothing
   */
  constructor(
    readonly status: number,
    readonly serverMessage: string,
    readonly local = false,
  ) {
    super(statusName(status), `${statusName(status)}: ${serverMessage}`);
  }
}

/** 64: the request does not decode or breaks a rule of section 7.2. Never retried. */
export class StockdBadRequestError extends StockdServerError {
  override name = 'StockdBadRequestError';
}
/** 65: refused HELLO (wrong token, disabled role) or an operation outside the role. */
export class StockdUnauthorizedError extends StockdServerError {
  override name = 'StockdUnauthorizedError';
}
/** 66: the server is over a limit (its live holds, connections, failed HELLOs); retry later. */
export class StockdBusyError extends StockdServerError {
  override name = 'StockdBusyError';
}
/**
 * 72: a hold (RESERVE with ttlMs > 0) by a user who already has the server's maximum of live
 * holds (`--user-holds-max`); nothing was reserved. The buyer's own doing (HTTP's 429): it
 * passes once that user commits or releases a hold, not by retrying later. A StockdBusyError
 * too, as servers before status 72 answered BUSY.
 */
export class StockdTooManyHoldsError extends StockdBusyError {
  override name = 'StockdTooManyHoldsError';
}
/** 67: the store failed and nothing was applied; or the server has no outbox. */
export class StockdStorageError extends StockdServerError {
  override name = 'StockdStorageError';
}
/** 68: the server does not know the opcode. */
export class StockdUnknownOpcodeError extends StockdServerError {
  override name = 'StockdUnknownOpcodeError';
}
/** 69: the server does not speak protocol version 1. */
export class StockdUnsupportedVersionError extends StockdServerError {
  override name = 'StockdUnsupportedVersionError';
}
/** 70: a frame over `frame_bytes_max`; `local` when the client refused to send it. */
export class StockdFrameTooLargeError extends StockdServerError {
  override name = 'StockdFrameTooLargeError';
}
/** 71: a server bug; the request may or may not have been applied. */
export class StockdInternalError extends StockdServerError {
  override name = 'StockdInternalError';
  override outcomeUnknown = true;
}

/**
 * A status below 64 that the spec does not give to this operation (an unknown one, or e.g.
 * SOLD_OUT for STATS). Section 8 says to treat it as a refusal: nothing to retry blindly.
 */
export class StockdRefusedError extends StockdError {
  override name = 'StockdRefusedError';
  constructor(
    readonly status: number,
    op: string,
  ) {
    super('REFUSED', `${op} refused with ${statusName(status)}, an answer the protocol does not list for it`);
  }
}

const BY_STATUS: Record<number, typeof StockdServerError> = {
  [STATUS.BAD_REQUEST]: StockdBadRequestError,
  [STATUS.UNAUTHORIZED]: StockdUnauthorizedError,
  [STATUS.BUSY]: StockdBusyError,
  [STATUS.STORAGE_UNAVAILABLE]: StockdStorageError,
  [STATUS.UNKNOWN_OPCODE]: StockdUnknownOpcodeError,
  [STATUS.UNSUPPORTED_VERSION]: StockdUnsupportedVersionError,
  [STATUS.FRAME_TOO_LARGE]: StockdFrameTooLargeError,
  [STATUS.INTERNAL]: StockdInternalError,
  [STATUS.TOO_MANY_HOLDS]: StockdTooManyHoldsError,
};

/** The error for a status >= 64 (an unknown one is a plain StockdServerError). */
export function serverError(status: number, message: string, local = false): StockdServerError {
  const Kind = BY_STATUS[status] ?? StockdServerError;
  return new Kind(status, message, local);
}

type MessageCtor = new (message: string, options: { cause?: unknown; outcomeUnknown?: boolean }) => StockdError;

/**
 * A new error of `shared`'s class and code, for one of the calls that a failure of the whole
 * pool fails (destroy(), a refused HELLO while calls wait to be resent): each call gets its
 * own, so that `outcomeUnknown` (and the `idempotencyKey` Call.fail sets) are that call's.
 * `op` and `outcomeUnknown` are the call's; `shared` is the cause.
 */
export function errorForCall(shared: StockdError, op: string, outcomeUnknown: boolean): StockdError {
  const tail = outcomeUnknown ? `; ${op} had been sent, so its outcome is unknown` : '';
  let e: StockdError;
  if (shared instanceof StockdServerError) {
    e = serverError(shared.status, shared.serverMessage, shared.local);
    e.message += tail;
    Object.defineProperty(e, 'cause', { value: shared, writable: true, configurable: true });
  } else if (shared instanceof StockdRefusedError) {
    e = new StockdRefusedError(shared.status, op);
    e.message = shared.message + tail;
    Object.defineProperty(e, 'cause', { value: shared, writable: true, configurable: true });
  } else {
    // Every other class is made from (message, options).
    e = new (shared.constructor as MessageCtor)(shared.message + tail, { cause: shared, outcomeUnknown });
  }
  e.outcomeUnknown = outcomeUnknown;
  return e;
}
