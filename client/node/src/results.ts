// Business outcomes (status < 64) as values: one discriminated union per operation, listing
// exactly the statuses section 7.4 gives it. Any other status below 64 is a
// StockdRefusedError (section 8: treat an unknown one as a refusal).
import type * as m from './codec/messages';
import { statusName, StatusName } from './codec/ops';
import { StockdRefusedError } from './errors';

export type HoldView = m.HoldView;
export type SkuView = m.SkuView;

export type ReserveResult =
  | {
      status: 'OK';
      /** The idempotency key sent (yours or the one generated); '' if none. */
      key: string;
      holdId: bigint;
      /** HELD, or COMMITTED for a buy now (`ttlMs: 0`). */
      state: m.HoldState;
      /** The hold's deadline; 0 for a buy now. */
      expiresAtMs: number;
      /** The fewest units left among the request's SKUs. */
      available: bigint;
      /** Codes taken from code-pool SKUs. */
      codes: m.SkuCode[];
    }
  | {
      status: 'SOLD_OUT' | 'LIMIT_EXCEEDED' | 'NOT_FOUND' | 'SALE_NOT_OPEN' | 'SALE_CLOSED';
      key: string;
      /** Index (from 0) of the first line refused. */
      failedLine: number;
      /** SOLD_OUT: units left of that SKU; LIMIT_EXCEEDED: the user's allowance left. */
      available: bigint;
    }
  | { status: 'KEY_CONFLICT'; key: string };

export type ClaimResult =
  | { status: 'OK'; key: string; orderId: bigint; code: string; available: bigint }
  | {
      status: 'SOLD_OUT' | 'LIMIT_EXCEEDED' | 'SALE_NOT_OPEN' | 'SALE_CLOSED';
      key: string;
      available: bigint;
    }
  | { status: 'NOT_FOUND' | 'KEY_CONFLICT'; key: string };

/** COMMIT and RELEASE: the hold as it is after the request, whatever the status. */
/**
 * `resent`: ALREADY_DONE answered a resend the client made after a lost connection, and the
 * hold is in the state this call asked for: done by this call's first send, or by another
 * request (a commit has no key to tell them apart). Without it, ALREADY_DONE is another
 * request's doing.
 */
export type HoldChangeResult =
  | { status: 'OK' | 'HOLD_EXPIRED'; hold: HoldView }
  | { status: 'ALREADY_DONE'; hold: HoldView; resent?: true }
  | { status: 'NOT_FOUND' };

export type HoldGetResult = { status: 'OK'; hold: HoldView } | { status: 'NOT_FOUND' };
/** SKU_GET and SALE_CLOSE. */
export type SkuResult = { status: 'OK'; sku: SkuView } | { status: 'NOT_FOUND' };
/** SKU_SET: BELOW_COMMITTED carries the SKU unchanged. */
export type SkuSetResult = { status: 'OK' | 'BELOW_COMMITTED'; sku: SkuView };
export type RestockResult = { status: 'OK' | 'BELOW_COMMITTED'; sku: SkuView } | { status: 'NOT_FOUND' };
export type CodesLoadResult =
  | { status: 'OK'; sku: SkuView }
  | { status: 'DUPLICATE_CODE'; sku: SkuView; duplicate: string }
  | { status: 'NOT_FOUND' };

// The statuses each operation may answer (section 7.4).
const RESERVE_OK = ['OK', 'SOLD_OUT', 'LIMIT_EXCEEDED', 'NOT_FOUND', 'SALE_NOT_OPEN', 'SALE_CLOSED', 'KEY_CONFLICT'] as const;
const CLAIM_OK = RESERVE_OK;
const HOLD_CHANGE_OK = ['OK', 'HOLD_EXPIRED', 'ALREADY_DONE', 'NOT_FOUND'] as const;
const FOUND_OR_NOT = ['OK', 'NOT_FOUND'] as const;
const SKU_SET_OK = ['OK', 'BELOW_COMMITTED'] as const;
const RESTOCK_OK = ['OK', 'BELOW_COMMITTED', 'NOT_FOUND'] as const;
const CODES_LOAD_OK = ['OK', 'DUPLICATE_CODE', 'NOT_FOUND'] as const;
const ONLY_OK = ['OK'] as const;

/** The status's name if the operation may answer it, else a StockdRefusedError. */
function expect<S extends StatusName>(op: string, status: number, allowed: readonly S[]): S {
  const name = statusName(status) as S;
  if (!allowed.includes(name)) throw new StockdRefusedError(status, op);
  return name;
}

export function reserveResult(status: number, r: m.ReserveResp, key: string): ReserveResult {
  const s = expect('reserve', status, RESERVE_OK);
  if (s === 'OK') {
    const { holdId, state, expiresAtMs, available, codes } = r;
    return { status: s, key, holdId, state, expiresAtMs, available, codes };
  }
  if (s === 'KEY_CONFLICT') return { status: s, key };
  return { status: s, key, failedLine: r.failedLine, available: r.available };
}

export function claimResult(status: number, r: m.ClaimResp, key: string): ClaimResult {
  const s = expect('claim', status, CLAIM_OK);
  if (s === 'OK') return { status: s, key, orderId: r.orderId, code: r.code, available: r.available };
  if (s === 'NOT_FOUND' || s === 'KEY_CONFLICT') return { status: s, key };
  return { status: s, key, available: r.available };
}

/** `resentFor`: the state the call asks for, when the client resent it (else undefined). */
export function holdChangeResult(op: string, status: number, hold: HoldView, resentFor?: HoldView['state']): HoldChangeResult {
  const s = expect(op, status, HOLD_CHANGE_OK);
  if (s === 'NOT_FOUND') return { status: s };
  if (s === 'ALREADY_DONE' && resentFor !== undefined && hold.state === resentFor) return { status: s, hold, resent: true };
  return { status: s, hold };
}

export function holdGetResult(status: number, hold: HoldView): HoldGetResult {
  const s = expect('hold_get', status, FOUND_OR_NOT);
  return s === 'NOT_FOUND' ? { status: s } : { status: s, hold };
}

export function skuResult(op: string, status: number, sku: SkuView): SkuResult {
  const s = expect(op, status, FOUND_OR_NOT);
  return s === 'NOT_FOUND' ? { status: s } : { status: s, sku };
}

export function skuSetResult(status: number, sku: SkuView): SkuSetResult {
  return { status: expect('sku_set', status, SKU_SET_OK), sku };
}

export function restockResult(status: number, sku: SkuView): RestockResult {
  const s = expect('restock', status, RESTOCK_OK);
  return s === 'NOT_FOUND' ? { status: s } : { status: s, sku };
}

export function codesLoadResult(status: number, r: m.CodesLoadResp): CodesLoadResult {
  const s = expect('codes_load', status, CODES_LOAD_OK);
  if (s === 'NOT_FOUND') return { status: s };
  if (s === 'DUPLICATE_CODE') return { status: s, sku: r.sku, duplicate: r.duplicate };
  return { status: s, sku: r.sku };
}

/** Operations whose only business outcome is OK. */
export function onlyOk(op: string, status: number): void {
  expect(op, status, ONLY_OK);
}
