// Frames (section 2): the 16-byte header, framing of a byte stream with the header checks in
// the spec's order, and whole request/response frames built from the messages of ops.ts.
import { ErrorResp } from './messages';
import { FIRST_ERROR_STATUS, OPS, OpName, opByCode, ReqOf, RespOf, STATUS } from './ops';
import { Type } from './schema';
import { CodecError, Path, Reader, Writer } from './wire';

export const HEADER_BYTES = 16;
export const MAGIC = 0x4b53;
export const PROTOCOL_VERSION = 1;
export const FLAG_RESPONSE = 0x01;
/** Default and floor of the server's `frame_bytes_max` (section 6). */
export const FRAME_BYTES_MAX_DEFAULT = 1_048_576;
export const FRAME_BYTES_MAX_MIN = 65_536;

export interface FrameHeader {
  magic: number;
  version: number;
  flags: number;
  bodyLen: number;
  opcode: number;
  status: number;
  requestId: number;
}

export interface Frame {
  header: FrameHeader;
  body: Buffer;
}

/** What `decodeFrame` found at the start of a buffer. */
export type Framed =
  | { kind: 'frame'; frame: Frame; size: number }
  | { kind: 'more' }
  | { kind: 'invalid'; status: number; reason: string };

const hex4 = (v: number) => '0x' + v.toString(16).toUpperCase().padStart(4, '0');

/** Section 2's steps 1-7, in that order; `frameBytesMax` counts the header too. */
export function decodeFrame(buf: Buffer, frameBytesMax: number, start = 0): Framed {
  if (buf.length - start < HEADER_BYTES) return { kind: 'more' };
  const magic = buf.readUInt16LE(start);
  if (magic !== MAGIC) {
    return { kind: 'invalid', status: STATUS.BAD_REQUEST, reason: `bad magic ${hex4(magic)}, expected ${hex4(MAGIC)}` };
  }
  const version = buf.readUInt8(start + 2);
  if (version !== PROTOCOL_VERSION) {
    const reason = `unsupported protocol version ${version}, expected ${PROTOCOL_VERSION}`;
    return { kind: 'invalid', status: STATUS.UNSUPPORTED_VERSION, reason };
  }
  const flags = buf.readUInt8(start + 3);
  if ((flags & ~FLAG_RESPONSE) !== 0) {
    const bits = '0x' + (flags & ~FLAG_RESPONSE).toString(16).toUpperCase().padStart(2, '0');
    return { kind: 'invalid', status: STATUS.BAD_REQUEST, reason: `unknown flag bits ${bits} (only 0x01 is defined)` };
  }
  const bodyLen = buf.readUInt32LE(start + 4);
  const size = HEADER_BYTES + bodyLen;
  if (size > frameBytesMax) {
    const reason = `frame of ${size} bytes exceeds frame_bytes_max ${frameBytesMax}`;
    return { kind: 'invalid', status: STATUS.FRAME_TOO_LARGE, reason };
  }
  if (buf.length - start < size) return { kind: 'more' };
  const header: FrameHeader = {
    magic,
    version,
    flags,
    bodyLen,
    opcode: buf.readUInt16LE(start + 8),
    status: buf.readUInt16LE(start + 10),
    requestId: buf.readUInt32LE(start + 12),
  };
  return { kind: 'frame', frame: { header, body: buf.subarray(start + HEADER_BYTES, start + size) }, size };
}

/**
 * Frames from a byte stream that arrives in chunks of any size. It keeps at most one partial
 * frame (bounded by the limit, which `decodeFrame` applies from the header alone).
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Where the next frame starts in `buf`. */
  private at = 0;
  /** `buf` is this reader's own copy (not a chunk its caller may reuse). */
  private owned = true;

  push(chunk: Buffer): void {
    if (this.at === this.buf.length) {
      this.buf = chunk;
      this.owned = false;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.at), chunk]);
      this.owned = true;
    }
    this.at = 0;
  }

  /**
   * The next whole frame, 'more', or 'invalid' (after which the stream cannot be framed). A
   * frame's body is a view of the pushed chunk: valid until the chunk is reused (see `retain`).
   */
  next(frameBytesMax: number): Framed {
    const r = decodeFrame(this.buf, frameBytesMax, this.at);
    if (r.kind === 'frame') this.at += r.size;
    return r;
  }

  /**
   * Copies the bytes not yet framed out of the last chunk pushed, for a caller that reuses its
   * chunks (a socket reading into one buffer): call it before the chunk is overwritten.
   */
  retain(): void {
    if (this.owned || this.at === this.buf.length) return;
    this.buf = Buffer.from(this.buf.subarray(this.at));
    this.at = 0;
    this.owned = true;
  }

  get buffered(): number {
    return this.buf.length - this.at;
  }
}

/** Encoding is synchronous and never re-entered, so one writer serves every frame. */
const scratch = new Writer('');

function encode<T>(type: Type<T>, msg: string, body: T, flags: number, opcode: number, status: number, id: number): Buffer {
  try {
    encodeInto(scratch, type, msg, body, flags, opcode, status, id, null);
  } catch (e) {
    if (e instanceof CodecError) encodeInto(scratch, type, msg, body, flags, opcode, status, id, ''); // names the field
    throw e;
  }
  scratch.patchU32(4, scratch.length - HEADER_BYTES);
  return scratch.finish();
}

function encodeInto<T>(w: Writer, type: Type<T>, msg: string, body: T, flags: number, opcode: number, status: number, id: number, path: Path): void {
  w.reset(msg);
  w.u16(MAGIC);
  w.u8(PROTOCOL_VERSION);
  w.u8(flags);
  w.u32(0); // body_len, patched by encode()
  w.u16(opcode);
  w.u16(status);
  w.u32(id >>> 0);
  type.enc(w, body, path);
}

export function encodeRequest<K extends OpName>(op: K, requestId: number, body: ReqOf<K>): Buffer {
  const o = OPS[op];
  return encode(o.req as Type<ReqOf<K>>, o.msg, body, 0, o.code, 0, requestId);
}

/** A response; a status >= 64 takes `{message}` (ErrorResp), whatever the operation. */
export function encodeResponse<K extends OpName>(
  op: K | 0,
  requestId: number,
  status: number,
  body: RespOf<K> | { message: string },
): Buffer {
  const code = op === 0 ? 0 : OPS[op].code;
  if (status >= FIRST_ERROR_STATUS || op === 0) {
    return encode(ErrorResp, 'error', body as { message: string }, FLAG_RESPONSE, code, status, requestId);
  }
  const o = OPS[op];
  return encode(o.resp as Type<RespOf<K>>, `${o.msg} response`, body as RespOf<K>, FLAG_RESPONSE, code, status, requestId);
}

function decodeBody<T>(type: Type<T>, msg: string, body: Buffer): T {
  try {
    return decodeWith(type, msg, body, null);
  } catch (e) {
    if (e instanceof CodecError) decodeWith(type, msg, body, ''); // again, naming the field
    throw e;
  }
}

function decodeWith<T>(type: Type<T>, msg: string, body: Buffer, path: Path): T {
  const r = new Reader(body, msg);
  const v = type.dec(r, path);
  r.expectEnd();
  return v;
}

const RESPONSE_MSG = new Map(Object.values(OPS).map((o) => [o.code, `${o.msg} response`]));

/** A request frame's operation and body; throws CodecError (unknown opcode, bad body). */
export function decodeRequest(frame: Frame): { op: OpName; body: unknown } {
  const op = opByCode(frame.header.opcode);
  if (op === undefined) throw new CodecError(`unknown opcode ${hex4(frame.header.opcode)}`);
  if (frame.header.flags & FLAG_RESPONSE) throw new CodecError(`${OPS[op].msg}: response flag set in a request`);
  return { op, body: decodeBody(OPS[op].req, OPS[op].msg, frame.body) };
}

export type DecodedResponse =
  | { op: OpName | undefined; status: number; error: string }
  | { op: OpName; status: number; body: unknown };

/**
 * A response frame's body: the ErrorResp message for a status >= 64 (or for opcode 0, a
 * connection error), else the operation's response message. Throws CodecError.
 */
export function decodeResponse(frame: Frame): DecodedResponse {
  const { opcode, status, flags } = frame.header;
  const op = opByCode(opcode);
  if (!(flags & FLAG_RESPONSE)) throw new CodecError(`response flag missing (opcode ${hex4(opcode)})`);
  if (status >= FIRST_ERROR_STATUS || op === undefined) {
    if (status < FIRST_ERROR_STATUS) {
      throw new CodecError(`status ${status} below 64 on opcode ${hex4(opcode)}, which has no response body`);
    }
    return { op, status, error: decodeBody(ErrorResp, 'error', frame.body).message };
  }
  return { op, status, body: decodeBody(OPS[op].resp, RESPONSE_MSG.get(opcode) as string, frame.body) };
}
