// UUIDv7 (RFC 9562): 48-bit Unix ms, then random bits. Used as the idempotency key of a
// RESERVE or CLAIM made without one: unique per purchase attempt, and sorted by time, which
// keeps the server's key index and logs readable.
import { randomFillSync } from 'crypto';

// Random bytes are drawn from the kernel 4000 at a time: one getrandom() per 400 keys instead
// of one per key (as crypto.randomUUID() does), which was a fifth of a busy client's CPU.
const RANDOM_BYTES = 10; // per key: the 80 bits after the timestamp (6 of them fixed below)
const POOL_BYTES = 400 * RANDOM_BYTES;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;

/** The text form is written here, then made a string in one go. */
const text = Buffer.from('00000000-0000-7000-8000-000000000000', 'latin1');
const DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where each of the 16 bytes goes in the text form (two hex digits each). */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
/** The millisecond whose digits `text` holds (they change at most once per ms). */
let textMs = -1;

export function uuidv7(nowMs = Date.now()): string {
  if (nowMs !== textMs) {
    textMs = nowMs;
    // 48 bits, big-endian: bytes 0-5 of the UUID.
    const hi = Math.floor(nowMs / 0x1_0000_0000);
    const lo = nowMs >>> 0;
    hex(0, (hi >>> 8) & 0xff);
    hex(1, hi & 0xff);
    hex(2, lo >>> 24);
    hex(3, (lo >>> 16) & 0xff);
    hex(4, (lo >>> 8) & 0xff);
    hex(5, lo & 0xff);
  }
  if (poolAt === POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const r = poolAt;
  poolAt += RANDOM_BYTES;
  hex(6, 0x70 | (pool[r] & 0x0f)); // version 7
  hex(7, pool[r + 1]);
  hex(8, 0x80 | (pool[r + 2] & 0x3f)); // variant 10
  for (let i = 9; i < 16; i++) hex(i, pool[r + i - 6]);
  return text.toString('latin1');
}

/** Byte `i` of the UUID as two hex digits in `text`. */
function hex(i: number, b: number): void {
  text[AT[i]] = DIGITS[b >> 4];
  text[AT[i] + 1] = DIGITS[b & 15];
}
