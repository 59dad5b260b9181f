// Little-endian primitives of docs/protocol.md section 3: a growable Writer and a bounded
// Reader. Both throw CodecError with a message that names the message and the field, worded
// like the server's reasons ("reserve: ttl_ms is 90000000, max 86400000").

/** A body that does not encode or decode; `message` names the message and the field. */
export class CodecError extends Error {
  override name = 'CodecError';
}

/**
 * Where a field is, for error messages ("line 1 sku"), or null while nobody asked: encoders
 * and decoders run first without building paths, and only a message that fails is run again
 * with them (the codec is deterministic, so it fails at the same field).
 */
export type Path = string | null;

const at = (path: Path) => (path === null ? '' : `${path} `);

/** Messages are written one after another into slabs of this size (a larger one grows alone). */
const SLAB_BYTES = 64 * 1024;

/**
 * Writes messages one after another into a slab and hands each out as a view of it (`finish`):
 * no copy, one small object per message. A slab is freed once no message written in it is
 * referenced. Encoders reuse one writer: `reset` starts the next message.
 */
export class Writer {
  private buf: Buffer;
  /** The current message is `buf[start, end)`. */
  private start = 0;
  private end = 0;

  /** `msg` prefixes every error ("reserve: ..."). */
  constructor(public msg: string) {
    this.buf = Buffer.allocUnsafe(SLAB_BYTES);
  }

  /** Starts the next message (dropping an unfinished one). */
  reset(msg: string): void {
    this.msg = msg;
    this.end = this.start;
  }

  fail(path: Path, problem: string): never {
    throw new CodecError(`${this.msg}: ${at(path)}${problem}`);
  }

  get length(): number {
    return this.end - this.start;
  }

  /** Where the next `n` bytes go (absolute in `buf`); moves to a new slab when they do not fit. */
  private room(n: number): number {
    if (this.end + n > this.buf.length) {
      const written = this.end - this.start;
      const fresh = Buffer.allocUnsafe(Math.max(SLAB_BYTES, 2 * (written + n)));
      this.buf.copy(fresh, 0, this.start, this.end);
      this.buf = fresh;
      this.start = 0;
      this.end = written;
    }
    const at = this.end;
    this.end += n;
    return at;
  }

  // `room()` first: it may replace `buf`, so the write must read `buf` after it.
  u8(v: number): void {
    const at = this.room(1);
    this.buf.writeUInt8(v, at);
  }
  u16(v: number): void {
    const at = this.room(2);
    this.buf.writeUInt16LE(v, at);
  }
  u32(v: number): void {
    const at = this.room(4);
    this.buf.writeUInt32LE(v, at);
  }
  u64(v: bigint): void {
    const at = this.room(8);
    this.buf.writeBigUInt64LE(v, at);
  }
  i64(v: bigint): void {
    const at = this.room(8);
    this.buf.writeBigInt64LE(v, at);
  }
  bytes(b: Uint8Array): void {
    const at = this.room(b.length);
    this.buf.set(b, at);
  }
  /**
   * A `str` field: u16 byte length, then `s` as UTF-8; returns the byte length. ASCII (ids,
   * keys) is written in one pass that also measures it; the first other unit sends the string
   * to Buffer.write. The caller checks the length afterwards, and fails the message if it is
   * over its limit (a length over 0xffff is never one of those, so its u16 may wrap).
   */
  str(s: string): number {
    const len = s.length;
    const at = this.room(2 + len);
    const buf = this.buf;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return this.strUtf8(s, at);
      buf[at + 2 + i] = c;
    }
    buf[at] = len & 0xff;
    buf[at + 1] = (len >>> 8) & 0xff;
    return len;
  }
  private strUtf8(s: string, at: number): number {
    this.end = at; // take back the room guessed for ASCII
    const n = Buffer.byteLength(s, 'utf8');
    const to = this.room(2 + n);
    this.buf[to] = n & 0xff;
    this.buf[to + 1] = (n >>> 8) & 0xff;
    this.buf.write(s, to + 2, n, 'utf8');
    return n;
  }
  /** An i64 given as a safe integer (no BigInt). */
  i64Number(v: number): void {
    const at = this.room(8);
    const lo = v % 0x1_0000_0000;
    const hi = (v - lo) / 0x1_0000_0000;
    // lo is in (-2^32, 2^32): as u32 bits, borrowing from hi when negative.
    this.buf.writeUInt32LE(lo < 0 ? lo + 0x1_0000_0000 : lo, at);
    this.buf.writeInt32LE(lo < 0 ? hi - 1 : hi, at + 4);
  }
  /** Overwrites a u32 of the current message (the header's body_len, once the body is known). */
  patchU32(offset: number, v: number): void {
    this.buf.writeUInt32LE(v, this.start + offset);
  }
  /** The message written since `reset`, exactly `length` bytes: a view its writer never writes again. */
  finish(): Buffer {
    const out = this.buf.subarray(this.start, this.end);
    this.start = this.end;
    return out;
  }
}

/** Bytes of `s` in UTF-8; without a native call when it is ASCII (any other unit takes 2 or more). */
export function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, 'utf8');
  return s.length;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

export class Reader {
  private at: number;

  /** Reads `buf[start, end)`; `msg` prefixes every error ("reserve: ..."). */
  constructor(
    private readonly buf: Buffer,
    readonly msg: string,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.at = start;
  }

  get left(): number {
    return this.end - this.at;
  }

  fail(path: Path, problem: string): never {
    throw new CodecError(`${this.msg}: ${at(path)}${problem}`);
  }

  private take(n: number, path: Path): number {
    if (this.left < n) this.fail(path, `is cut short (needs ${n} bytes, ${this.left} left)`);
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(path: Path): number {
    return this.buf.readUInt8(this.take(1, path));
  }
  u16(path: Path): number {
    return this.buf.readUInt16LE(this.take(2, path));
  }
  u32(path: Path): number {
    return this.buf.readUInt32LE(this.take(4, path));
  }
  u64(path: Path): bigint {
    const at = this.take(8, path);
    const hi = this.buf.readUInt32LE(at + 4);
    // Below 2^53 one exact double makes the bigint (Buffer's reader makes three).
    if (hi < 0x20_0000) return BigInt(hi * 0x1_0000_0000 + this.buf.readUInt32LE(at));
    return this.buf.readBigUInt64LE(at);
  }
  /** An i64 as a number when it is a safe integer, else undefined (the caller says why). */
  i64Number(path: Path): number | undefined {
    const at = this.take(8, path);
    const hi = this.buf.readInt32LE(at + 4);
    if (hi < -0x20_0000 || hi >= 0x20_0000) return undefined;
    const v = hi * 0x1_0000_0000 + this.buf.readUInt32LE(at); // exact: |v| <= 2^53
    return Number.isSafeInteger(v) ? v : undefined;
  }
  /** Re-reads the 8 bytes just read by i64Number (for its error message). */
  lastI64(): bigint {
    return this.buf.readBigInt64LE(this.at - 8);
  }
  i64(path: Path): bigint {
    return this.buf.readBigInt64LE(this.take(8, path));
  }
  bytes(n: number, path: Path): Buffer {
    const at = this.take(n, path);
    return this.buf.subarray(at, at + n);
  }
  /** `n` bytes read as UTF-8. */
  utf8(n: number, path: Path): string {
    const at = this.take(n, path);
    return this.buf.toString('utf8', at, at + n);
  }
  /**
   * `n` bytes that must be valid UTF-8: an id that the caller sends back (a SKU_LIST `after`)
   * must encode to the same bytes, which a byte replaced by U+FFFD does not.
   */
  utf8Exact(n: number, path: Path): string {
    const at = this.take(n, path);
    for (let i = at; i < at + n; i++) {
      if (this.buf[i] > 0x7f) {
        try {
          return STRICT_UTF8.decode(this.buf.subarray(at, at + n));
        } catch {
          return this.fail(path, 'is not valid UTF-8');
        }
      }
    }
    return this.buf.toString('latin1', at, at + n); // ASCII
  }
  /** "Nothing after the last field" (section 3). */
  expectEnd(): void {
    if (this.left !== 0) throw new CodecError(`${this.msg}: trailing ${this.left} bytes after body`);
  }
}
