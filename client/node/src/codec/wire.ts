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

export class Writer {
  private buf: Buffer;
  private len = 0;

  /** `msg` prefixes every error ("reserve: ..."). */
  constructor(
    public msg: string,
    initial = 256,
  ) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  /** Empties it for the next message, keeping its buffer (encoders reuse one writer). */
  reset(msg: string): void {
    this.msg = msg;
    this.len = 0;
  }

  fail(path: Path, problem: string): never {
    throw new CodecError(`${this.msg}: ${at(path)}${problem}`);
  }

  get length(): number {
    return this.len;
  }

  private room(n: number): number {
    if (this.len + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    const at = this.len;
    this.len += n;
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
  /** `s` as UTF-8, whose length the caller measured (Buffer.byteLength): no copy on the way. */
  utf8(s: string, byteLength: number): void {
    const at = this.room(byteLength);
    this.buf.write(s, at, byteLength, 'utf8');
  }
  /** Overwrites a u32 already written (the header's body_len, once the body is known). */
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v, at);
  }
  /** A copy of what was written, exactly `length` bytes. */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.len);
    this.buf.copy(out, 0, 0, this.len);
    return out;
  }
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
