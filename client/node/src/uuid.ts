// UUIDv7 (RFC 9562): 48-bit Unix ms, then random bits. Used as the idempotency key of a
// RESERVE or CLAIM made without one: unique per purchase attempt, and sorted by time, which
// keeps the server's key index and logs readable.
import { randomFillSync } from 'crypto';

// Random bytes are drawn from the kernel 4 KiB at a time: one getrandom() per 256 keys instead
// of one per key (as crypto.randomUUID() does), which was a fifth of a busy client's CPU.
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;

/** The text form is written here, then made a string in one go. */
const text = Buffer.from('00000000-0000-7000-8000-000000000000', 'latin1');
const DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where each of the 16 bytes goes in the text form (two hex digits each). */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

export function uuidv7(nowMs = Date.now()): string {
  if (poolAt === POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const b = pool.subarray(poolAt, (poolAt += 16));
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f); // version 7
  b[8] = 0x80 | (b[8] & 0x3f); // variant 10
  for (let i = 0; i < 16; i++) {
    text[AT[i]] = DIGITS[b[i] >> 4];
    text[AT[i] + 1] = DIGITS[b[i] & 15];
  }
  return text.toString('latin1');
}
