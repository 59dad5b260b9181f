// Every message of docs/protocol.md section 7, described once. Request types carry the
// "Request checks" column (non-empty ids, ranges); response types are checked for shape only
// (string limits, counts, enum values), as the spec says.
import { enumU8, i64, Infer, list16, list32, str, struct, timeMs, u16, u32, u64, u8 } from './schema';

// Limits of section 3 and 7.2, named once.
export const SKU_BYTES_MAX = 64;
export const USER_BYTES_MAX = 128;
export const KEY_BYTES_MAX = 128;
export const CODE_BYTES_MAX = 128;
export const TOKEN_BYTES_MAX = 256;
export const CLIENT_NAME_BYTES_MAX = 128;
export const STAT_NAME_BYTES_MAX = 128;
export const ERROR_MESSAGE_BYTES_MAX = 65535;
export const TTL_MS_MAX = 86_400_000;
export const RESERVE_LINES_MAX = 64;
export const SKU_LIST_LIMIT_MAX = 1000;
export const OUTBOX_RECORDS_MAX = 10_000;
export const OUTBOX_WAIT_MS_MAX = 30_000;
/** `ReserveResp.failed_line` when no line failed. */
export const NO_FAILED_LINE = 0xffff;
/** `SkuSetReq.mask` bits. */
export const SET_TOTAL = 0x01;
export const SET_PER_USER_LIMIT = 0x02;
export const SET_OPENS_AT = 0x04;
export const SET_CLOSES_AT = 0x08;
/** `SkuView.flags` bits. */
export const SKU_CLOSED = 0x01;
export const SKU_CODE_POOL = 0x02;

const NON_EMPTY = { nonEmpty: true };
// SKU ids are decoded exactly: one read wrong would be sent back as another id (SKU_LIST's
// `after`, a RESERVE line) and page over, or buy, the wrong SKU.
const sku = str(SKU_BYTES_MAX, { exact: true });
const skuReq = str(SKU_BYTES_MAX, { nonEmpty: true, exact: true });
const user = str(USER_BYTES_MAX);
const key = str(KEY_BYTES_MAX);

export const Role = enumU8('Role', { 1: 'buyer', 2: 'admin', 3: 'outbox' } as const);
export const HoldState = enumU8('HoldState', {
  0: 'NONE',
  1: 'HELD',
  2: 'COMMITTED',
  3: 'RELEASED',
  4: 'EXPIRED',
} as const);
export const OutboxKind = enumU8('OutboxKind', { 1: 'ORDER', 2: 'RELEASED', 3: 'EXPIRED' } as const);

// 7.1 Shared items.
export const Line = struct({ sku, qty: u32() });
const LineReq = struct({ sku: skuReq, qty: u32({ min: 1 }) });
export const SkuCode = struct({ sku, code: str(CODE_BYTES_MAX) });
export const SkuView = struct({
  sku,
  total: u64(),
  available: u64(),
  held: u64(),
  sold: u64(),
  perUserLimit: u32(),
  opensAtMs: timeMs(),
  closesAtMs: timeMs(),
  flags: u8(),
});
export const Stat = struct({ name: str(STAT_NAME_BYTES_MAX), value: u64() });
export const OutboxRecord = struct({
  seq: u64(),
  kind: OutboxKind,
  orderId: u64(),
  user,
  key,
  createdAtMs: timeMs(),
  atMs: timeMs(),
  lines: list16(Line, 'line'),
  codes: list16(SkuCode, 'code'),
});

// 7.2 Requests.
export const HelloReq = struct({
  version: u16(),
  role: Role,
  token: str(TOKEN_BYTES_MAX),
  clientName: str(CLIENT_NAME_BYTES_MAX),
});
export const Empty = struct({});
export const ReserveReq = struct({
  user: str(USER_BYTES_MAX, NON_EMPTY),
  key,
  ttlMs: u32({ max: TTL_MS_MAX }),
  lines: list16(LineReq, 'line', { min: 1, max: RESERVE_LINES_MAX }),
});
export const HoldReq = struct({ holdId: u64(1n), user });
export const ClaimReq = struct({ sku: skuReq, user: str(USER_BYTES_MAX, NON_EMPTY), key });
export const SkuReq = struct({ sku: skuReq });
export const SkuListReq = struct({ after: sku, limit: u32({ min: 1, max: SKU_LIST_LIMIT_MAX }) });
export const SkuSetReq = struct({
  sku: skuReq,
  mask: u8({ max: SET_TOTAL | SET_PER_USER_LIMIT | SET_OPENS_AT | SET_CLOSES_AT }),
  total: u64(),
  perUserLimit: u32(),
  opensAtMs: timeMs(),
  closesAtMs: timeMs(),
});
export const RestockReq = struct({ sku: skuReq, delta: i64() });
export const CodesLoadReq = struct({
  sku: skuReq,
  codes: list32(str(CODE_BYTES_MAX, NON_EMPTY), 'code', { min: 1 }),
});
export const OutboxReadReq = struct({
  afterSeq: u64(),
  maxRecords: u32({ min: 1, max: OUTBOX_RECORDS_MAX }),
  waitMs: u32({ max: OUTBOX_WAIT_MS_MAX }),
});
export const OutboxAckReq = struct({ uptoSeq: u64() });

// 7.3 Responses.
export const HelloResp = struct({
  version: u16(),
  frameBytesMax: u32(),
  inflightMax: u32(),
  idleTimeoutMs: u32(),
});
export const ReserveResp = struct({
  holdId: u64(),
  state: HoldState,
  expiresAtMs: timeMs(),
  failedLine: u16(),
  available: u64(),
  codes: list16(SkuCode, 'code'),
});
export const HoldView = struct({
  holdId: u64(),
  state: HoldState,
  user,
  key,
  createdAtMs: timeMs(),
  expiresAtMs: timeMs(),
  lines: list16(Line, 'line'),
  codes: list16(SkuCode, 'code'),
});
export const ClaimResp = struct({ orderId: u64(), code: str(CODE_BYTES_MAX), available: u64() });
export const SkuListResp = struct({ skus: list32(SkuView, 'sku') });
export const StatsResp = struct({ stats: list16(Stat, 'stat') });
export const CodesLoadResp = struct({ sku: SkuView, duplicate: str(CODE_BYTES_MAX) });
export const OutboxStatusResp = struct({ headSeq: u64(), ackedSeq: u64(), firstSeq: u64() });
export const OutboxReadResp = struct({
  headSeq: u64(),
  ackedSeq: u64(),
  firstSeq: u64(),
  records: list32(OutboxRecord, 'record'),
});
export const ErrorResp = struct({ message: str(ERROR_MESSAGE_BYTES_MAX) });

// Named interfaces of the decoded shapes (what editors show and users import).
export interface Line extends Infer<typeof Line> {}
export interface SkuCode extends Infer<typeof SkuCode> {}
export interface SkuView extends Infer<typeof SkuView> {}
export interface Stat extends Infer<typeof Stat> {}
export interface OutboxRecord extends Infer<typeof OutboxRecord> {}
export type HoldState = Infer<typeof HoldState>;
export type OutboxKind = Infer<typeof OutboxKind>;
export type Role = Infer<typeof Role>;
export interface HelloResp extends Infer<typeof HelloResp> {}
export interface ReserveResp extends Infer<typeof ReserveResp> {}
export interface HoldView extends Infer<typeof HoldView> {}
export interface ClaimResp extends Infer<typeof ClaimResp> {}
export interface CodesLoadResp extends Infer<typeof CodesLoadResp> {}
export interface OutboxReadResp extends Infer<typeof OutboxReadResp> {}
export interface OutboxStatusResp extends Infer<typeof OutboxStatusResp> {}
