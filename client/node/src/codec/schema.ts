// Field types from which every message of docs/protocol.md is described once (messages.ts):
// each type both encodes and decodes, so the two directions cannot disagree, and each checks
// its own limits both ways with an error that names the field.
import { Path, Reader, utf8Length, Writer } from './wire';

/** `path` names the field in errors; null while not tracked (see Path). */
export interface Type<T> {
  enc(w: Writer, v: T, path: Path): void;
  dec(r: Reader, path: Path): T;
}
export type Infer<X> = X extends Type<infer T> ? T : never;

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

interface Range {
  min?: number;
  max?: number;
}

/** Why `v` is not an integer in [lo, hi], or null. */
function rangeProblem(v: number, lo: number, hi: number): string | null {
  if (typeof v !== 'number' || !Number.isInteger(v)) return `must be an integer, got ${String(v)}`;
  if (v < lo) return `is ${v}, must be at least ${lo}`;
  if (v > hi) return `is ${v}, max ${hi}`;
  return null;
}

function uint(bytes: 1 | 2 | 4, range: Range = {}): Type<number> {
  const lo = range.min ?? 0;
  const hi = range.max ?? 2 ** (8 * bytes) - 1;
  const read = bytes === 1 ? 'u8' : bytes === 2 ? 'u16' : 'u32';
  return {
    enc(w, v, path) {
      const problem = rangeProblem(v, lo, hi);
      if (problem !== null) w.fail(path, problem);
      w[read](v);
    },
    dec(r, path) {
      const v = r[read](path);
      const problem = rangeProblem(v, lo, hi);
      if (problem !== null) r.fail(path, problem);
      return v;
    },
  };
}
export const u8 = (range?: Range) => uint(1, range);
export const u16 = (range?: Range) => uint(2, range);
export const u32 = (range?: Range) => uint(4, range);

/** u64 as bigint: ids, sequence numbers and unit counts can pass 2^53. */
export function u64(min = 0n): Type<bigint> {
  return {
    enc(w, v, path) {
      if (typeof v !== 'bigint') w.fail(path, `must be a bigint, got ${typeof v}`);
      if (v < min) w.fail(path, `is ${v}, must be at least ${min}`);
      if (v > U64_MAX) w.fail(path, `is ${v}, over the u64 range`);
      w.u64(v);
    },
    dec(r, path) {
      const v = r.u64(path);
      if (v < min) r.fail(path, `is ${v}, must be at least ${min}`);
      return v;
    },
  };
}

/** i64 as bigint (RESTOCK's delta). */
export function i64(): Type<bigint> {
  return {
    enc(w, v, path) {
      if (typeof v !== 'bigint') w.fail(path, `must be a bigint, got ${typeof v}`);
      if (v < I64_MIN || v > I64_MAX) w.fail(path, `is ${v}, outside the i64 range`);
      w.i64(v);
    },
    dec: (r, path) => r.i64(path),
  };
}

/**
 * i64 milliseconds as a JS number. Times up to year 287396 fit in 2^53; a time that does not
 * is refused both ways rather than rounded (a rounded deadline would be a wrong answer).
 */
export function timeMs(): Type<number> {
  return {
    enc(w, v, path) {
      if (!Number.isSafeInteger(v)) w.fail(path, `must be a safe integer, got ${String(v)}`);
      w.i64Number(v);
    },
    dec(r, path) {
      const v = r.i64Number(path);
      if (v === undefined) return r.fail(path, `is ${r.lastI64()}, beyond a safe JS integer`);
      return v;
    },
  };
}

/**
 * `str`: u16 length then UTF-8 bytes; `max` in bytes (section 3). `exact`: bytes that are not
 * UTF-8 fail the decode instead of being replaced (an id that must round-trip).
 */
export function str(max: number, opts: { nonEmpty?: boolean; exact?: boolean } = {}): Type<string> {
  return {
    enc(w, v, path) {
      if (typeof v !== 'string') w.fail(path, `must be a string, got ${typeof v}`);
      if (opts.nonEmpty && v.length === 0) w.fail(path, 'is empty');
      // A string of more UTF-16 units than `max` has more bytes too: refused before writing.
      if (v.length > max) w.fail(path, `is ${utf8Length(v)} bytes, max ${max}`);
      const n = w.str(v);
      if (n > max) w.fail(path, `is ${n} bytes, max ${max}`);
    },
    dec(r, path) {
      const n = r.u16(path);
      if (opts.nonEmpty && n === 0) r.fail(path, 'is empty');
      if (n > max) r.fail(path, `is ${n} bytes, max ${max}`);
      return opts.exact ? r.utf8Exact(n, path) : r.utf8(n, path);
    },
  };
}

/** A u8 enum read as names; a value outside `names` is invalid both ways. */
export function enumU8<N extends string>(what: string, names: Record<number, N>): Type<N> {
  const codes = new Map<string, number>(Object.entries(names).map(([k, n]) => [n, Number(k)]));
  return {
    enc(w, v, path) {
      const code = codes.get(v);
      if (code === undefined) return w.fail(path, `is ${String(v)}, not a ${what}`);
      w.u8(code);
    },
    dec(r, path) {
      const code = r.u8(path);
      const name = names[code];
      if (name === undefined) return r.fail(path, `is ${code}, not a ${what}`);
      return name;
    },
  };
}

/** `list16<T>` / `list32<T>`; items are named `label N` in errors, counted from 0. */
function list<T>(countBytes: 2 | 4, item: Type<T>, label: string, range: Range): Type<T[]> {
  const lo = range.min ?? 0;
  const hi = range.max ?? (countBytes === 2 ? 0xffff : U32_MAX);
  return {
    enc(w, v, path) {
      if (!Array.isArray(v)) w.fail(path, 'must be an array');
      if (v.length < lo) w.fail(path, `has ${v.length} items, must have at least ${lo}`);
      if (v.length > hi) w.fail(path, `has ${v.length} items, max ${hi}`);
      if (countBytes === 2) w.u16(v.length);
      else w.u32(v.length);
      for (let i = 0; i < v.length; i++) item.enc(w, v[i], path === null ? null : `${label} ${i}`);
    },
    dec(r, path) {
      const n = countBytes === 2 ? r.u16(path) : r.u32(path);
      if (n < lo) r.fail(path, `has ${n} items, must have at least ${lo}`);
      if (n > hi) r.fail(path, `has ${n} items, max ${hi}`);
      // Every item takes at least one byte, so a lying count fails at the body's end, after at
      // most body_len iterations: no allocation is sized from the count.
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(item.dec(r, path === null ? null : `${label} ${i}`));
      return out;
    },
  };
}
export const list16 = <T>(item: Type<T>, label: string, range: Range = {}) =>
  list(2, item, label, range);
export const list32 = <T>(item: Type<T>, label: string, range: Range = {}) =>
  list(4, item, label, range);

type Fields = Record<string, Type<any>>;
export type Struct<F extends Fields> = { [K in keyof F]: Infer<F[K]> };

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

/**
 * Fields in wire order (object key order); the JS name is the spec's name in camelCase and
 * errors use the spec's snake_case name ("ttl_ms"), prefixed by the parent's path if any.
 *
 * Each struct's enc and dec are generated once, as straight-line code over its own fields
 * (`new Function` over the field list above, nothing from outside): a loop over the fields
 * read and wrote properties by a key that changed every turn and called every field's type
 * from one place, which V8 could not specialise (a third of a RESERVE's encode and decode).
 * The decoded object is one literal, so every message of a type has the same shape.
 */
export function struct<F extends Fields>(fields: F): Type<Struct<F>> {
  const keys = Object.keys(fields);
  const names = keys.map(snake);
  const types = keys.map((k) => fields[k]);
  const join = (path: string, i: number) => (path ? `${path} ${names[i]}` : names[i]);
  const field = (i: number) => `t${i}`;
  const sub = (i: number) => `path === null ? null : join(path, ${i})`;
  const prop = (k: string) => JSON.stringify(k);
  const src = `
    ${keys.length > 0 ? `const ${keys.map((_, i) => `${field(i)} = types[${i}]`).join(', ')};` : ''}
    return {
      enc(w, v, path) {
        if (typeof v !== 'object' || v === null) w.fail(path || 'body', 'must be an object');
        ${keys.map((k, i) => `${field(i)}.enc(w, v[${prop(k)}], ${sub(i)});`).join('\n        ')}
      },
      dec(r, path) {
        return { ${keys.map((k, i) => `${prop(k)}: ${field(i)}.dec(r, ${sub(i)})`).join(', ')} };
      },
    };`;
  return new Function('types', 'join', src)(types, join) as Type<Struct<F>>;
}
