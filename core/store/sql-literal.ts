import { ErrorCode, InputError } from '../errors.js';

/*
 * The one way values enter SQL text. ClickHouse 18.16 rejects server-side
 * query parameters, so every query is built from literals made here.
 */

const MAX_UINT64 = 2n ** 64n - 1n;

/**
 * A quoted ClickHouse string literal: `\` and `'` are backslash-escaped and
 * every control character (0x00–0x1F, 0x7F) becomes `\xHH`, so the literal
 * is one line of printable text whatever `s` holds. The server reads the
 * literal as the UTF-8 bytes of `s`.
 */
export function sqlString(s: string): string {
  // Fast path: most values (node ids, readable keys) need no escaping.
  if (!/[\\'\x00-\x1f\x7f]/.test(s)) return `'${s}'`;
  return `'${s.replace(/[\\'\x00-\x1f\x7f]/g, escapeChar)}'`;
}

function escapeChar(c: string): string {
  if (c === '\\') return '\\\\';
  if (c === "'") return "\\'";
  return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
}

/**
 * A UInt64 literal from a non-negative integer (a safe integer when a number,
 * at most 2^64−1 when a bigint); throws InputError otherwise.
 * @param what names the value in the error (`seq`, `--limit`).
 */
export function sqlUInt(n: number | bigint, what = 'value'): string {
  if (typeof n === 'bigint') {
    if (n >= 0n && n <= MAX_UINT64) return n.toString();
  } else if (Number.isSafeInteger(n) && n >= 0) {
    return String(n);
  }
  throw new InputError(
    ErrorCode.BadInput,
    `${what} ${String(n)} is not a non-negative integer; pass a whole number from 0 to ${typeof n === 'bigint' ? MAX_UINT64 : Number.MAX_SAFE_INTEGER}`,
  );
}

/** An `Array(String)` literal: `['a', 'b']`. */
export function sqlStringArray(values: readonly string[]): string {
  return `[${values.map(sqlString).join(', ')}]`;
}
