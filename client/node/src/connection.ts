// One connection to stockd: dial (TCP or TLS), HELLO, then many requests in flight, answered
// in order and matched by request id (section 5). Writes made in one turn of the event loop go
// out as one socket write. A frame from the server that breaks the protocol fails the call it answers with a
// StockdProtocolError and kills the connection; the pool decides what happens to the rest. A
// request not yet written is never answered here, nor failed by such a frame: it goes to the
// next connection.
//
// Lifecycle: connecting -> hello -> ready -> (draining) -> dead. `dead` is reached once, by
// `die()`, which reports the unanswered calls to the pool exactly once.
import type * as net from 'net';
import type { Call, Carrier } from './call';
import * as codec from './codec';
import { dial, socketError, TlsOptions } from './dial';
import { serverError, StockdConnectionError, StockdError, StockdProtocolError, StockdTimeoutError, StockdTlsError } from './errors';

export interface ConnectionOptions {
  host: string;
  port: number;
  /** The HELLO frame (helloFrame()), made once by the client: every connection sends it. */
  hello: Buffer;
  /** Deadline of one dial: TCP, TLS and HELLO; also of a graceful close (drain). */
  connectTimeoutMs: number;
  keepAlive: boolean;
  tls?: TlsOptions;
}

export interface ConnectionEvents {
  ready(conn: Connection): void;
  /** A request slot freed up (an answer arrived). */
  capacity(conn: Connection): void;
  /** Once. `unanswered` are the live calls it carried; `written` tells if they reached the socket. */
  dead(conn: Connection, err: StockdError, unanswered: Array<{ call: Call; written: boolean }>): void;
}

interface Entry {
  id: number;
  opcode: number;
  /** null for the connection's own requests (keep-alive PING). */
  call: Call | null;
  /** The encoded request; its request id is stamped when it is written (flush). */
  frame: Buffer;
  written: boolean;
  /** The call had been written on an earlier connection: this is a resend. */
  resend: boolean;
  answered: boolean;
}

type State = 'connecting' | 'hello' | 'ready' | 'draining' | 'dead';

const HELLO_ID = 1;

/** The HELLO frame of these settings; throws CodecError for one that HELLO cannot carry. */
export function helloFrame(role: codec.Role, token: string, clientName: string): Buffer {
  const body = { version: codec.PROTOCOL_VERSION, role, token, clientName };
  // A copy: a view would keep the codec's whole slab alive with the client.
  return Buffer.from(codec.encodeRequest('HELLO', HELLO_ID, body));
}

/**
 * Connections with frames to write, flushed together once per turn of the event loop: one
 * setImmediate for all of them (every client in the process), not one per connection.
 */
let toFlush: Connection[] = [];
function flushAll(): void {
  const conns = toFlush;
  toFlush = [];
  for (let i = 0; i < conns.length; i++) conns[i].flush();
}

export class Connection implements Carrier {
  state: State = 'connecting';
  hello: codec.HelloResp | undefined;
  /** Unset when dial() threw. */
  private socket: net.Socket | undefined;
  private readonly reader = new codec.FrameReader();
  private readonly inflight: Entry[] = [];
  private unflushed: Entry[] = [];
  private nextId = HELLO_ID + 1;
  private lastSendMs = Date.now();
  private connectTimer: NodeJS.Timeout | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  /** The waiting OUTBOX_READ in flight, if any: nothing else is sent until it is answered. */
  private longPoll: Entry | undefined;
  /**
   * Requests it can take now without passing the server's inflight_max: inflightMax minus
   * the requests in flight while ready, 0 otherwise and while a long poll waits.
   */
  free = 0;

  /** Ready with nothing in flight: no connection has more room. */
  get idle(): boolean {
    return this.state === 'ready' && this.free === this.hello!.inflightMax;
  }

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {}

  get address(): string {
    return `${this.opts.host}:${this.opts.port}`;
  }

  open(): void {
    const { host, port, tls } = this.opts;
    let socket: net.Socket;
    try {
      socket = dial(host, port, tls, () => this.sayHello(), (chunk) => this.onData(chunk));
    } catch (e) {
      // A setting net or tls refuses outright (a key that is not PEM) fails this dial like
      // a refused one, once the pool's turn that called open() is over. A TLS setting will
      // fail every dial, so it is a StockdTlsError: calls fail at once, not at their deadline.
      const msg = `connection to ${this.address} failed: ${(e as Error).message}`;
      const err = tls ? new StockdTlsError(msg, { cause: e }) : new StockdConnectionError(msg, { cause: e });
      process.nextTick(() => this.die(err));
      return;
    }
    this.socket = socket;
    this.connectTimer = setTimeout(() => {
      this.die(new StockdConnectionError(`connect to ${this.address} took over ${this.opts.connectTimeoutMs} ms`));
    }, this.opts.connectTimeoutMs);
    socket.on('error', (e) => this.die(socketError(this.address, e, tls !== undefined)));
    // The server half-closes when it stops (section 9) or after an error frame: no answer
    // can follow, so the connection is over.
    socket.on('end', () => this.die(new StockdConnectionError(`${this.address} closed the connection`)));
    socket.on('close', () => this.die(new StockdConnectionError(`connection to ${this.address} closed`)));
  }

  private sayHello(): void {
    this.state = 'hello';
    const frame = this.opts.hello;
    this.inflight.push({ id: HELLO_ID, opcode: codec.OPS.HELLO.code, call: null, frame, written: true, resend: false, answered: false });
    this.socket!.write(frame);
  }

  /** Precondition: `free > 0`, frame within `hello.frameBytesMax`. */
  send(call: Call): void {
    this.enqueue(call, call.frame);
  }

  private enqueue(call: Call | null, frame: Buffer): void {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? HELLO_ID + 1 : this.nextId + 1;
    const e: Entry = { id, opcode: frame.readUInt16LE(8), call, frame, written: false, resend: call?.sent ?? false, answered: false };
    this.inflight.push(e);
    this.free--;
    this.unflushed.push(e);
    if (call) call.carrier = this;
    if (call?.holdsBack) {
      // A call placed behind it would wait for the long poll, and time out (section 5).
      this.longPoll = e;
      this.free = 0;
    }
    // After the loop's I/O callbacks, not after this one (nextTick): the requests that a turn's
    // events make (HTTP requests, a batch of answers) share one write. A syscall per event was
    // a large part of a busy client's CPU.
    if (this.unflushed.length === 1 && toFlush.push(this) === 1) setImmediate(flushAll);
  }

  /**
   * Every frame queued in this turn goes out in one write (automatic pipelining). A call that
   * settled before its frame left (aborted in the same turn) is not sent at all, so that its
   * error's `outcomeUnknown` (false: never sent) stays true to the facts.
   *
   * write() returning false (a server that stops reading) needs no wait here: a connection
   * takes at most inflight_max requests, each counted until its answer (a timed-out one too),
   * so its socket never buffers more than that many frames; further calls wait in the pool's
   * queue, which maxQueued caps, and a connection stuck that way is closed one timeout after
   * a deadline passes in it (abandoned()).
   */
  flush(): void {
    if (this.state === 'dead' || this.unflushed.length === 0) return;
    const entries = this.unflushed;
    this.unflushed = [];
    let bytes = 0;
    let dropped = 0;
    for (const e of entries) {
      if (e.call?.settled) {
        this.forget(e);
        dropped++;
      } else bytes += e.frame.length;
    }
    if (dropped > 0) {
      this.endIfDrained();
      this.events.capacity(this);
    }
    if (bytes === 0) return;
    this.lastSendMs = Date.now();
    if (dropped === 0 && entries.length === 1) {
      // One frame (one call in flight per connection): written as it is, its request id
      // stamped in place. A frame is on one connection at a time; a retry stamps its new id.
      const e = entries[0];
      e.written = true;
      if (e.call) e.call.sent = true;
      e.frame.writeUInt32LE(e.id, 12);
      this.socket!.write(e.frame);
      return;
    }
    // One buffer, each frame copied in and stamped with its request id.
    const out = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (const e of entries) {
      if (e.answered) continue; // forgotten above
      e.written = true;
      if (e.call) e.call.sent = true;
      e.frame.copy(out, at);
      out.writeUInt32LE(e.id, at + 12);
      at += e.frame.length;
    }
    this.socket!.write(out);
  }

  /** Takes a never-written request off the books (no answer will come for it). */
  private forget(e: Entry): void {
    e.answered = true; // ends its stale check too
    this.inflight.splice(this.inflight.lastIndexOf(e), 1);
    this.freed(e);
    if (e.call) e.call.carrier = undefined;
  }

  /** `e` left the books (answered or forgotten): its slot is free, and all of them if it was the long poll. */
  private freed(e: Entry): void {
    if (this.state !== 'ready') return;
    if (e === this.longPoll) {
      this.longPoll = undefined;
      this.free = this.hello!.inflightMax - this.inflight.length;
    } else if (this.longPoll === undefined) this.free++;
  }

  /**
   * The caller stopped waiting (deadline or abort). The request keeps its place: its answer
   * will come in order and is dropped. If it does not come within one more timeout the server
   * is presumed stuck, and the connection is closed so that the calls behind it can move on.
   */
  abandoned(call: Call): void {
    const e = this.inflight.find((x) => x.call === call); // rare: a linear search will do
    if (!e || this.state === 'dead') return;
    const graceMs = Math.max(1000, call.timeoutMs);
    setTimeout(() => {
      if (!e.answered) {
        const msg = `${call.op} unanswered ${graceMs} ms past its deadline; connection to ${this.address} presumed stuck`;
        this.die(new StockdTimeoutError(msg));
      }
    }, graceMs).unref();
  }

  /**
   * Graceful close: no new requests; half-close once every answer is in. What is still in
   * flight has no caller waiting (a keep-alive PING, late answers), so an answer that does
   * not come within connectTimeoutMs, or a server that does not close, no longer holds it open.
   */
  drain(): void {
    if (this.state === 'dead') return;
    if (this.state !== 'ready') return this.die(new StockdConnectionError('client closed'));
    this.state = 'draining';
    this.free = 0;
    const ms = this.opts.connectTimeoutMs;
    this.drainTimer = setTimeout(() => this.die(new StockdConnectionError(`close of ${this.address} took over ${ms} ms`)), ms);
    this.drainTimer.unref();
    this.endIfDrained();
  }

  private endIfDrained(): void {
    if (this.state === 'draining' && this.inflight.length === 0) this.socket!.end();
  }

  /** Closes now; unanswered calls are reported to the pool. */
  die(err: StockdError): void {
    if (this.state === 'dead') return;
    this.state = 'dead';
    this.free = 0;
    clearTimeout(this.connectTimer);
    clearInterval(this.keepAliveTimer);
    clearTimeout(this.drainTimer);
    this.socket?.destroy();
    const unanswered = this.inflight
      .filter((e) => e.call && !e.call.settled)
      .map((e) => ({ call: e.call as Call, written: e.written }));
    for (const e of this.inflight) if (e.call) e.call.carrier = undefined;
    this.inflight.length = 0;
    this.unflushed = [];
    this.events.dead(this, err, unanswered);
  }

  /** `chunk` may be reused once this returns: a partial frame is copied out (`retain`). */
  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
    while (this.state !== 'dead') {
      const limit = this.hello?.frameBytesMax ?? codec.FRAME_BYTES_MAX_DEFAULT;
      const r = this.reader.next(limit);
      if (r.kind === 'more') return this.reader.retain();
      if (r.kind === 'invalid') return this.protocolError(`server sent an unframeable response: ${r.reason}`);
      this.onFrame(r.frame);
    }
  }

  private protocolError(msg: string): void {
    const err = new StockdProtocolError(`${this.address}: ${msg}`);
    // The bad bytes stand for the answer of the oldest written request. One not yet written
    // here was not answered: die() hands it to the pool, which sends it on the next connection.
    const head = this.inflight[0]?.written ? this.inflight.shift() : undefined;
    const call = head?.call;
    // Written (here or on an earlier connection), it may have been applied before its answer
    // came garbled, as when a connection is lost: its own error says so (the pool and the
    // 'error' event get `err`).
    if (call && call.sent && call.changesState) call.fail(new StockdProtocolError(err.message, { outcomeUnknown: true }));
    else call?.fail(err);
    this.die(err);
  }

  private onFrame(frame: codec.Frame): void {
    const h = frame.header;
    let answer: codec.DecodedResponse;
    try {
      answer = codec.decodeResponse(frame);
    } catch (e) {
      return this.undecodable(h, (e as Error).message);
    }
    if (h.opcode === 0 && 'error' in answer) return this.connectionErrorFrame(h, answer.error);
    const head = this.inflight[0];
    // Requests are written in order: with the oldest one not yet written, none is. An answer
    // with the id it will get is not its answer (it would resolve a call never sent).
    if (!head?.written) return this.protocolError(`answer (opcode ${h.opcode}, id ${h.requestId}) with no request outstanding`);
    if (h.requestId !== head.id || h.opcode !== head.opcode) {
      const got = `opcode ${h.opcode} id ${h.requestId}`;
      return this.protocolError(`answer out of order: got ${got}, expected opcode ${head.opcode} id ${head.id}`);
    }
    this.inflight.shift();
    head.answered = true;
    if (head.call) head.call.carrier = undefined;
    if (this.state === 'hello') return this.onHello(answer);
    this.freed(head);
    if ('error' in answer) head.call?.failAnswer(answer.status, answer.error);
    else head.call?.resolve(answer);
    this.endIfDrained();
    this.events.capacity(this);
  }

  /**
   * A whole frame, the answer the oldest request waits for, whose body this client cannot
   * decode (a SKU id that is not UTF-8, a time past 2^53: the server stores any bytes and any
   * i64): that call fails, and the connection, still in step, carries on. Anything else
   * undecodable is a protocol error that ends the connection.
   */
  private undecodable(h: codec.FrameHeader, why: string): void {
    const head = this.inflight[0];
    if (this.state !== 'ready' || !head?.written || h.requestId !== head.id || h.opcode !== head.opcode) {
      return this.protocolError(`bad response: ${why}`);
    }
    this.inflight.shift();
    head.answered = true;
    const call = head.call;
    if (call) call.carrier = undefined;
    this.freed(head);
    // Answered: applied or not, as the server said, but what it said cannot be read.
    if (call) {
      const unknown = call.changesState;
      const tail = unknown ? '; the outcome is unknown' : '';
      call.fail(new StockdProtocolError(`${this.address}: undecodable answer to ${call.op}: ${why}${tail}`, { outcomeUnknown: unknown }));
    }
    this.endIfDrained();
    this.events.capacity(this);
  }

  /** Opcode 0: the server cannot go on with this connection (section 6) and closes it. */
  private connectionErrorFrame(h: codec.FrameHeader, message: string): void {
    const err = serverError(h.status, message);
    const head = this.inflight[0];
    // A FRAME_TOO_LARGE names the request it could not frame: that one gets the error (if it
    // was written; one not yet written goes to the next connection with the rest).
    if (head?.written && h.requestId === head.id && h.status === codec.STATUS.FRAME_TOO_LARGE) {
      this.inflight.shift();
      // Not run here; but a resend may have been applied the first time.
      if (head.resend) head.call?.failShared(err);
      else head.call?.fail(err);
    }
    this.die(this.state === 'hello' ? err : new StockdConnectionError(`${this.address} closed the connection: ${err.message}`, { cause: err }));
  }

  private onHello(answer: codec.DecodedResponse): void {
    if ('error' in answer) return this.die(serverError(answer.status, answer.error));
    const hello = answer.body as codec.HelloResp;
    if (answer.status !== codec.STATUS.OK) return this.protocolError(`HELLO answered ${codec.statusName(answer.status)}`);
    if (hello.frameBytesMax < codec.FRAME_BYTES_MAX_MIN) {
      return this.protocolError(`hello: frame_bytes_max ${hello.frameBytesMax} is below ${codec.FRAME_BYTES_MAX_MIN}`);
    }
    if (hello.version !== codec.PROTOCOL_VERSION) return this.protocolError(`hello: server speaks version ${hello.version}`);
    if (hello.inflightMax < 1) return this.protocolError('hello: inflight_max is 0');
    clearTimeout(this.connectTimer);
    this.hello = hello;
    this.state = 'ready';
    this.free = hello.inflightMax - this.inflight.length;
    this.startKeepAlive(hello.idleTimeoutMs);
    this.events.ready(this);
  }

  /**
   * A PING when quiet for a third of the server's idle timeout (section 4, step 5). Unanswered
   * for as long again, and at least connectTimeoutMs (a PING's answer waits for the group
   * commit in progress, as every answer does: a slow disk must not end a healthy connection),
   * the connection is presumed dead (a server host that lost power, a middlebox that dropped
   * the flow: no reset comes) and ended, so that a quiet client's next calls do not go to it and
   * time out one by one. The verdict waits for the loop's next read (setImmediate): after a
   * stall of this process the answer may be in the socket, unread.
   */
  private startKeepAlive(idleMs: number): void {
    if (!this.opts.keepAlive || idleMs === 0) return;
    const every = Math.max(100, Math.floor(idleMs / 3));
    const deadlineMs = Math.max(1000, every, this.opts.connectTimeoutMs);
    let ping: Entry | undefined;
    let sentMs = 0;
    this.keepAliveTimer = setInterval(() => {
      if (this.state !== 'ready') return; // a draining connection's own timer ends it
      if (ping !== undefined && !ping.answered) {
        if (Date.now() - sentMs >= deadlineMs) {
          const stuck = ping;
          setImmediate(() => {
            if (!stuck.answered && this.state === 'ready') {
              this.die(new StockdTimeoutError(`keep-alive PING unanswered for ${deadlineMs} ms; connection to ${this.address} presumed dead`));
            }
          });
        }
        return;
      }
      ping = undefined;
      const quiet = Date.now() - this.lastSendMs >= every;
      if (this.state === 'ready' && quiet && this.inflight.length === 0) {
        this.enqueue(null, codec.encodeRequest('PING', 0, {}));
        ping = this.inflight[this.inflight.length - 1];
        sentMs = Date.now();
      }
    }, Math.min(every, Math.max(100, Math.floor(deadlineMs / 4))));
    this.keepAliveTimer.unref();
  }
}
