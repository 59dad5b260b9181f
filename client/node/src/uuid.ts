// UUIDv7 (RFC 9562): 48-bit Unix ms, then random bits. Used as the idempotency key of a
// RESERVE or CLAIM made without one: unique per purchase attempt, and sorted by time, which
// keeps the server's key index and logs readable.
import { randomFillSync } from 'crypto';

// Random bytes are drawn from the kernel 4 KiB at a time: one getrandom() per 256 keys instead
// of one per key (as crypto.randomUUID() does), which was a fifth of a busy client's CPU.
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function uuidv7(nowMs = Date.now()): string {
  if (poolAt === POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const b = pool.subarray(poolAt, (poolAt += 16));
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f); // version 7
  b[8] = 0x80 | (b[8] & 0x3f); // variant 10
  let s = '';
  for (let i = 0; i < 16; i++) {
    s += HEX[b[i]];
    if (i === 3 || i === 5 || i === 7 || i === 9) s += '-';
  }
  return s;
}
