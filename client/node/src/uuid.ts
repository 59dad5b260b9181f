// UUIDv7 (RFC 9562): 48-bit Unix ms, then random bits. Used as the idempotency key of a
// RESERVE or CLAIM made without one: unique per purchase attempt, and sorted by time, which
// keeps the server's key index and logs readable.
import { randomFillSync } from 'crypto';

export function uuidv7(nowMs = Date.now()): string {
  const b = randomFillSync(Buffer.alloc(16));
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f); // version 7
  b[8] = 0x80 | (b[8] & 0x3f); // variant 10
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
