import { ErrorCode, InputError } from './errors.js';

const ACCEPTED =
  'use ISO 8601 with a zone (2026-08-03T20:28:10Z, 2026-08-03T20:28:10.123456+08:00) or without one for local time ' +
  '(2026-08-03T20:28:10), "YYYY-MM-DD HH:MM:SS[.ffffff]" (local time, or add Z / +08:00), ' +
  'epoch seconds, milliseconds or microseconds (1785788890, 1785788890.5, 1785788890123, 1785788890123456), ' +
  "or relative to now (-5m, now-90s, now, '10 minutes ago', '1h30m ago')";

// Y-M-D, T or space, h:m[:s[.frac]], optional zone. Groups: 1 y, 2 mo, 3 d, 4 h, 5 mi, 6 s, 7 frac, 8 zone.
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$/;
const EPOCH = /^(\d+)(?:\.(\d+))?$/;
// A span: one or more <number><unit> parts, spaces allowed (`1h30m`, `10 minutes`, `1 hour 30 min`).
const SPAN_PART =
  /(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)(?![a-z])/gy;
const UNIT_US: Record<string, number> = {
  ms: 1_000,
  s: 1_000_000,
  m: 60_000_000,
  h: 3_600_000_000,
  d: 86_400_000_000,
  w: 604_800_000_000,
};

/** Epoch values below this are seconds (until year 5138), below {@link MS_LIMIT} milliseconds, else microseconds. */
const SECONDS_LIMIT = 1e11;
const MS_LIMIT = 1e14;

/**
 * Parses a cutoff time as an operator types it to µs since the Unix epoch (a safe integer).
 *
 * Fractions are kept to the microsecond, never rounded through JS `Date` (which has only ms); digits beyond µs are
 * dropped (floor), which keeps `--to T` exact: an event's integer `ts_us ≤ T` holds exactly when `ts_us ≤ floor(T)`.
 * A time without a zone is local time; one that the local zone skips (DST gap) or shows twice (DST overlap) is
 * refused with a hint to add an offset.
 * @throws InputError (BAD_TIME) quoting the input and listing the accepted forms.
 */
export function parseCutoffTime(text: string, nowUs: number = Date.now() * 1000): number {
  const s = text.trim();
  const relative = parseRelativeTime(s, nowUs);
  if (relative !== undefined) {
    if (relative < 0) throw badTime(text, 'it is before 1970');
    return relative;
  }
  const epoch = EPOCH.exec(s);
  if (epoch) return parseEpoch(text, epoch[1]!, epoch[2]);
  const m = DATE_TIME.exec(s);
  if (!m) throw badTime(text);
  const [, y, mo, d, h, mi, sec = '0', frac = '', zone] = m;
  const f = { y: Number(y), mo: Number(mo), d: Number(d), h: Number(h), mi: Number(mi), s: Number(sec) };
  if (f.mo < 1 || f.mo > 12 || f.d < 1 || f.d > daysInMonth(f.y, f.mo) || f.h > 23 || f.mi > 59 || f.s > 59) {
    throw badTime(text, 'a field is out of range');
  }
  const fracUs = Number(frac.slice(0, 6).padEnd(6, '0'));
  const wallMs = wallClockAsUtcMs(f);
  let ms: number;
  if (zone !== undefined) {
    ms = wallMs - zoneOffsetMinutes(text, zone) * 60_000;
  } else {
    ms = localToUtcMs(text, f, wallMs);
  }
  const us = ms * 1000 + fracUs;
  if (us < 0 || !Number.isSafeInteger(us)) throw badTime(text, 'it is before 1970 or too far in the future');
  return us;
}

/**
 * `now`, `now-90s`, `now - 1h30m`, `-5m`, `10 minutes ago`, `1h30m ago` → µs since the epoch, counted back from
 * `nowUs`; undefined when `text` is not a relative time. A span needs its unit: a bare `-5` stays an error rather than
 * guessing seconds or minutes.
 */
export function parseRelativeTime(text: string, nowUs: number = Date.now() * 1000): number | undefined {
  const s = text.trim().toLowerCase();
  if (s === 'now') return nowUs;
  let span: string | undefined;
  let m = /^now\s*-\s*(.+)$/.exec(s);
  if (m) span = m[1];
  else if ((m = /^-\s*(\d.*)$/.exec(s))) span = m[1];
  else if ((m = /^(\d.*?)\s+ago$/.exec(s))) span = m[1];
  if (span === undefined) return undefined;
  const us = parseSpanUs(span.trim());
  return us === undefined ? undefined : nowUs - us;
}

/** `1h30m`, `90s`, `10 minutes`, `1.5h` → µs; undefined unless the whole text is number-unit parts. */
function parseSpanUs(span: string): number | undefined {
  SPAN_PART.lastIndex = 0;
  let total = 0;
  let parts = 0;
  while (SPAN_PART.lastIndex < span.length) {
    const m = SPAN_PART.exec(span);
    if (!m) return undefined;
    const unit = m[2]!;
    total += Number(m[1]) * UNIT_US[unit === 'ms' || unit.startsWith('milli') ? 'ms' : unit[0]!]!;
    parts++;
    // Spaces between parts: `1 hour 30 minutes`.
    while (span[SPAN_PART.lastIndex] === ' ') SPAN_PART.lastIndex++;
  }
  return parts > 0 ? Math.round(total) : undefined;
}

/** `2026-08-03T20:28:10.123456Z`: µs since the epoch as ISO 8601 in UTC with 6 fraction digits. */
export function formatTsUs(us: number): string {
  if (!Number.isSafeInteger(us))
    throw new InputError(ErrorCode.BadTime, `timestamp ${us} µs is not a safe integer number of microseconds`);
  const ms = Math.floor(us / 1000);
  const subMs = us - ms * 1000;
  return new Date(ms).toISOString().replace(/Z$/, `${String(subMs).padStart(3, '0')}Z`);
}

function parseEpoch(text: string, intPart: string, frac: string | undefined): number {
  const n = Number(intPart);
  let us: number;
  if (n < SECONDS_LIMIT) {
    us = n * 1_000_000 + Number((frac ?? '').slice(0, 6).padEnd(6, '0'));
  } else if (n < MS_LIMIT) {
    us = n * 1000 + Number((frac ?? '').slice(0, 3).padEnd(3, '0'));
  } else {
    if (frac !== undefined) throw badTime(text, 'epoch microseconds take no fraction');
    us = n;
  }
  if (!Number.isSafeInteger(us)) throw badTime(text, 'it is too far in the future');
  return us;
}

interface WallClock {
  y: number;
  mo: number;
  d: number;
  h: number;
  mi: number;
  s: number;
}

function daysInMonth(y: number, mo: number): number {
  return new Date(Date.UTC(y, mo, 0)).getUTCDate();
}

function wallClockAsUtcMs(f: WallClock): number {
  const d = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0–99 to 1900–1999.
  d.setUTCFullYear(f.y, f.mo - 1, f.d);
  d.setUTCHours(f.h, f.mi, f.s, 0);
  return d.getTime();
}

function zoneOffsetMinutes(text: string, zone: string): number {
  if (zone === 'Z' || zone === 'z') return 0;
  const sign = zone[0] === '-' ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  const hh = Number(digits.slice(0, 2));
  const mm = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (hh > 23 || mm > 59) throw badTime(text, `zone offset "${zone}" is out of range`);
  return sign * (hh * 60 + mm);
}

/**
 * The instant the local zone shows as `f`. Tries every offset the zone uses within a day of it, so a DST gap
 * (no instant) and a DST overlap (two instants) are both detected instead of silently picked by `Date`.
 */
function localToUtcMs(text: string, f: WallClock, wallMs: number): number {
  const offsets = new Set<number>();
  for (const probe of [wallMs - 86_400_000, wallMs, wallMs + 86_400_000])
    offsets.add(new Date(probe).getTimezoneOffset());
  const instants = new Set<number>();
  for (const off of offsets) {
    const t = wallMs + off * 60_000;
    const d = new Date(t);
    if (
      d.getFullYear() === f.y &&
      d.getMonth() === f.mo - 1 &&
      d.getDate() === f.d &&
      d.getHours() === f.h &&
      d.getMinutes() === f.mi &&
      d.getSeconds() === f.s
    ) {
      instants.add(t);
    }
  }
  if (instants.size === 1) return [...instants][0]!;
  if (instants.size === 0)
    throw badTime(
      text,
      'that local time does not exist (the clock skips it for daylight saving); add a zone offset such as +02:00',
    );
  const shown = [...instants]
    .sort((a, b) => a - b)
    .map((t) => new Date(t).toISOString())
    .join(' or ');
  throw badTime(
    text,
    `that local time happens twice (daylight saving ends): ${shown}; add a zone offset such as +02:00`,
  );
}

function badTime(text: string, why?: string): InputError {
  return new InputError(
    ErrorCode.BadTime,
    `time "${text}" ${why ? `is not valid: ${why}` : 'is not a time we read'}; ${ACCEPTED}`,
  );
}
