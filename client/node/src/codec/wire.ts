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
  /** `s` as UTF-8, `byteLength` bytes (from `utf8Length`). */
  utf8(s: string, byteLength: number): void {
    const at = this.room(byteLength);
    if (byteLength === s.length) {
      // As many bytes as UTF-16 units: ASCII. Ids and keys are short and usually ASCII, and
      // for them a loop beats the native call.
      for (let i = 0; i < byteLength; i++) this.buf[at + i] = s.charCodeAt(i);
    } else {
      this.buf.write(s, at, byteLength, 'utf8');
    }
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
    return this.buf.readBigUInt64LE(this.take(8, path));
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
  /** "Nothing after the last field" (section 3). */
  expectEnd(): void {
    if (this.left !== 0) throw new CodecError(`${this.msg}: trailing ${this.left} bytes after body`);
  }
}
