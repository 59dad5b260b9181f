// One row per opcode (section 7) and the status codes (section 8).
import * as m from './messages';
import { Infer, Type } from './schema';

function op<Req, Resp>(code: number, msg: string, req: Type<Req>, resp: Type<Resp>) {
  return { code, msg, req, resp };
}

export const OPS = {
  HELLO: op(0x01, 'hello', m.HelloReq, m.HelloResp),
  PING: op(0x02, 'ping', m.Empty, m.Empty),
  RESERVE: op(0x10, 'reserve', m.ReserveReq, m.ReserveResp),
  COMMIT: op(0x11, 'commit', m.HoldReq, m.HoldView),
  RELEASE: op(0x12, 'release', m.HoldReq, m.HoldView),
  CLAIM: op(0x13, 'claim', m.ClaimReq, m.ClaimResp),
  HOLD_GET: op(0x14, 'hold_get', m.HoldReq, m.HoldView),
  SKU_GET: op(0x20, 'sku_get', m.SkuReq, m.SkuView),
  SKU_LIST: op(0x21, 'sku_list', m.SkuListReq, m.SkuListResp),
  STATS: op(0x22, 'stats', m.Empty, m.StatsResp),
  SKU_SET: op(0x30, 'sku_set', m.SkuSetReq, m.SkuView),
  RESTOCK: op(0x31, 'restock', m.RestockReq, m.SkuView),
  CODES_LOAD: op(0x32, 'codes_load', m.CodesLoadReq, m.CodesLoadResp),
  SALE_CLOSE: op(0x33, 'sale_close', m.SkuReq, m.SkuView),
  OUTBOX_READ: op(0x40, 'outbox_read', m.OutboxReadReq, m.OutboxReadResp),
  OUTBOX_ACK: op(0x41, 'outbox_ack', m.OutboxAckReq, m.OutboxStatusResp),
  OUTBOX_STATUS: op(0x42, 'outbox_status', m.Empty, m.OutboxStatusResp),
};

export type OpName = keyof typeof OPS;
export type ReqOf<K extends OpName> = Infer<(typeof OPS)[K]['req']>;
export type RespOf<K extends OpName> = Infer<(typeof OPS)[K]['resp']>;

const BY_CODE = new Map<number, OpName>(
  (Object.keys(OPS) as OpName[]).map((name) => [OPS[name].code, name]),
);
/** The operation of an opcode, or undefined for an unknown one (and 0, connection errors). */
export const opByCode = (code: number): OpName | undefined => BY_CODE.get(code);

export const STATUS = {
  OK: 0,
  SOLD_OUT: 1,
  LIMIT_EXCEEDED: 2,
  NOT_FOUND: 3,
  SALE_NOT_OPEN: 4,
  SALE_CLOSED: 5,
  HOLD_EXPIRED: 6,
  ALREADY_DONE: 7,
  KEY_CONFLICT: 8,
  DUPLICATE_CODE: 9,
  BELOW_COMMITTED: 10,
  BAD_REQUEST: 64,
  UNAUTHORIZED: 65,
  BUSY: 66,
  STORAGE_UNAVAILABLE: 67,
  UNKNOWN_OPCODE: 68,
  UNSUPPORTED_VERSION: 69,
  FRAME_TOO_LARGE: 70,
  INTERNAL: 71,
  TOO_MANY_HOLDS: 72,
} as const;
export type StatusName = keyof typeof STATUS;

/** Statuses from here up are errors with an ErrorResp body (section 8). */
export const FIRST_ERROR_STATUS = 64;

const STATUS_NAMES = new Map<number, StatusName>(
  (Object.keys(STATUS) as StatusName[]).map((n) => [STATUS[n], n]),
);
/** "SOLD_OUT", or "STATUS_42" for a code this client does not know. */
export const statusName = (code: number): string => STATUS_NAMES.get(code) ?? `STATUS_${code}`;
