// The pool's queue of calls waiting for a request slot: a FIFO with O(1) push and shift, and
// removal of a call that settled while queued (its deadline, an abort) without a search. An
// array's shift() and splice() copy the whole array once it is large: with a server down and
// 100,000 calls queued, their timeouts took 9 s of the event loop (200,000: 28 s).
import type { Call } from './call';

export class CallQueue {
  private items: Call[] = [];
  private head = 0;
  private settledInside = 0; // settled calls still in items (skipped when they come up)

  /** Calls queued, settled ones not yet dropped included. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Unsettled calls queued: what `maxQueued` caps (settled ones are dropped as they come up). */
  get waiting(): number {
    return this.length - this.settledInside;
  }

  push(call: Call): void {
    this.items.push(call);
  }

  /** The next unsettled call, or undefined. */
  shift(): Call | undefined {
    while (this.head < this.items.length) {
      const call = this.items[this.head++];
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      if (!call.settled) return call;
      if (this.settledInside > 0) this.settledInside--;
    }
    return undefined;
  }

  /** Puts `calls` back at the front, in their order (resends go before anything queued). */
  unshift(calls: Call[]): void {
    if (calls.length === 0) return;
    this.items = calls.concat(this.items.slice(this.head));
    this.head = 0;
  }

  /** A queued call settled: it is dropped when it comes up, or when settled ones are many. */
  settledWhileQueued(): void {
    this.settledInside++;
    if (this.settledInside > 1024 && this.settledInside * 2 > this.length) {
      this.items = this.items.slice(this.head).filter((c) => !c.settled);
      this.head = 0;
      this.settledInside = 0;
    }
  }

  /** Empties the queue; returns the unsettled calls, in order. */
  takeAll(): Call[] {
    const out = this.items.slice(this.head).filter((c) => !c.settled);
    this.items = [];
    this.head = 0;
    this.settledInside = 0;
    return out;
  }
}
