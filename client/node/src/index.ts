// stockd-client: the Node.js client of stockd (docs/protocol.md, version 1).
export { StockdClient } from './client';
export type { ReserveInput, SkuSetInput, StockdClientOptions, U64Input } from './client';
export type { CallOptions } from './call';
export type { TlsOptions } from './dial';
export type { ReconnectOptions } from './pool';
export type {
  ClaimResult,
  CodesLoadResult,
  HoldChangeResult,
  HoldGetResult,
  HoldView,
  ReserveResult,
  RestockResult,
  SkuResult,
  SkuSetResult,
  SkuView,
} from './results';
export type {
  HelloResp,
  HoldState,
  Line,
  OutboxKind,
  OutboxReadResp,
  OutboxRecord,
  OutboxStatusResp,
  Role,
  SkuCode,
  Stat,
} from './codec/messages';
export * from './errors';
export { uuidv7 } from './uuid';
export * as codec from './codec';
