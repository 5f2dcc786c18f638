import { ConfigError } from '../core/errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parses `500ms`, `30s`, `15m`, `1h`, `7d`, `2w` (or a bare number of ms) to milliseconds; throws ConfigError naming
 * the flag.
 */
export function parseDuration(text: string | number, flag: string): number {
  if (typeof text === 'number' && Number.isFinite(text) && text >= 0) return text;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(String(text));
  if (!m)
    throw new ConfigError(`${flag} "${text}" is not a duration; use a number with a unit: 500ms, 30s, 15m, 1h, 7d`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 'ms']!);
}

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Parses `0`, `512kb`, `64mb`, `1gb` (or a bare number of bytes; units as Redis writes them); ConfigError naming the flag. */
export function parseBytes(text: string | number, flag: string): number {
  if (typeof text === 'number' && Number.isSafeInteger(text) && text >= 0) return text;
  const m = /^\s*(\d+)\s*(b|kb|mb|gb)?\s*$/i.exec(String(text));
  if (!m) throw new ConfigError(`${flag} "${text}" is not a size; use bytes or a unit: 512kb, 64mb, 1gb`);
  return Number(m[1]) * BYTE_UNITS[(m[2] ?? 'b').toLowerCase()]!;
}
