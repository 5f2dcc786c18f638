// Cutoff time parsing to exact µs (ISO with/without zone, SQL form, epoch s/ms/µs, DST edges) and formatTsUs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, InputError } from './errors.js';
import { formatTsUs, parseCutoffTime, parseRelativeTime } from './time.js';

const T = 1_785_788_890_000_000; // 2026-08-03T20:28:10Z in µs

/** Runs `fn` with the process in time zone `tz` (Node re-reads TZ when it is assigned). */
function inZone<R>(tz: string, fn: () => R): R {
  const before = process.env.TZ;
  process.env.TZ = tz;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.TZ;
    else process.env.TZ = before;
  }
}

test('ISO 8601 with a zone, to the microsecond', () => {
  assert.equal(parseCutoffTime('2026-08-03T20:28:10Z'), T);
  assert.equal(parseCutoffTime('2026-08-03t20:28:10z'), T);
  assert.equal(parseCutoffTime('2026-08-04T04:28:10+08:00'), T);
  assert.equal(parseCutoffTime('2026-08-04T04:28:10+0800'), T);
  assert.equal(parseCutoffTime('2026-08-03T15:28:10-05'), T);
  assert.equal(parseCutoffTime('2026-08-03T20:28:10.123456Z'), T + 123_456);
  assert.equal(parseCutoffTime('2026-08-03T20:28:10.5Z'), T + 500_000);
  assert.equal(parseCutoffTime('2026-08-03T20:28:10,000001Z'), T + 1);
  // Beyond µs: floor, so `ts_us <= T` keeps its meaning.
  assert.equal(parseCutoffTime('2026-08-03T20:28:10.123456999Z'), T + 123_456);
  assert.equal(parseCutoffTime('2026-08-03T20:28Z'), T - 10_000_000);
});

test('SQL form "YYYY-MM-DD HH:MM:SS[.ffffff]" with and without a zone', () => {
  assert.equal(parseCutoffTime('2026-08-03 20:28:10Z'), T);
  assert.equal(parseCutoffTime('  2026-08-03 20:28:10.000007 +00:00 '), T + 7);
  inZone('UTC', () => assert.equal(parseCutoffTime('2026-08-03 20:28:10.999999'), T + 999_999));
});

test('without a zone is local time', () => {
  inZone('Asia/Shanghai', () => {
    assert.equal(parseCutoffTime('2026-08-04 04:28:10'), T);
    assert.equal(parseCutoffTime('2026-08-04T04:28:10.25'), T + 250_000);
  });
  inZone('America/New_York', () => assert.equal(parseCutoffTime('2026-08-03 16:28:10'), T));
});

test('local times in a DST gap or overlap are refused with the way out', () => {
  inZone('Europe/Berlin', () => {
    // 2026-03-29 02:30 does not exist in Berlin; 2026-10-25 02:30 happens twice.
    assert.throws(
      () => parseCutoffTime('2026-03-29 02:30:00'),
      (e: unknown) =>
        e instanceof InputError &&
        e.code === ErrorCode.BadTime &&
        /does not exist/.test(e.message) &&
        /\+02:00/.test(e.message),
    );
    assert.throws(
      () => parseCutoffTime('2026-10-25 02:30:00'),
      (e: unknown) =>
        e instanceof InputError &&
        /happens twice/.test(e.message) &&
        e.message.includes('2026-10-25T00:30:00.000Z or 2026-10-25T01:30:00.000Z'),
    );
    assert.equal(parseCutoffTime('2026-10-25 02:30:00+01:00'), Date.UTC(2026, 9, 25, 1, 30) * 1000);
    assert.equal(parseCutoffTime('2026-10-25 03:30:00'), Date.UTC(2026, 9, 25, 2, 30) * 1000);
  });
});

test('epoch seconds, milliseconds and microseconds by magnitude', () => {
  assert.equal(parseCutoffTime('1785788890'), T);
  assert.equal(parseCutoffTime('1785788890.5'), T + 500_000);
  assert.equal(parseCutoffTime('1785788890.1234567'), T + 123_456);
  assert.equal(parseCutoffTime('1785788890123'), T + 123_000);
  assert.equal(parseCutoffTime('1785788890123.456'), T + 123_456);
  assert.equal(parseCutoffTime('1785788890123456'), T + 123_456);
  assert.equal(parseCutoffTime('0'), 0);
});

test('anything else is BAD_TIME quoting the input and listing the forms', () => {
  for (const bad of [
    '',
    'yesterday',
    '2026-08-03',
    '2026-13-01 00:00:00',
    '2026-02-29 10:00:00',
    '2026-08-03 24:00:00',
    '2026-08-03 20:61:00',
    '2026-08-03 20:28:60',
    '2026-08-03T20:28:10+25:00',
    '-5',
    '1e9',
    '1785788890123456.5',
    '99999999999999999',
    '1969-12-31T23:59:59Z',
  ]) {
    assert.throws(
      () => parseCutoffTime(bad),
      (e: unknown) =>
        e instanceof InputError &&
        e.code === ErrorCode.BadTime &&
        e.message.startsWith(`time "${bad}"`) &&
        e.message.includes('epoch seconds') &&
        e.message.includes('2026-08-03T20:28:10Z'),
      bad,
    );
  }
});

test('formatTsUs prints 6 fraction digits in UTC and round-trips', () => {
  assert.equal(formatTsUs(T), '2026-08-03T20:28:10.000000Z');
  assert.equal(formatTsUs(T + 123_456), '2026-08-03T20:28:10.123456Z');
  assert.equal(formatTsUs(T + 7), '2026-08-03T20:28:10.000007Z');
  assert.equal(formatTsUs(0), '1970-01-01T00:00:00.000000Z');
  for (const us of [T, T + 1, T + 999_999, 1]) assert.equal(parseCutoffTime(formatTsUs(us)), us);
  assert.throws(() => formatTsUs(1.5), InputError);
});

test('relative instants count back from now: -5m, now-90s, now, "10 minutes ago", "1h30m ago"', () => {
  const now = T;
  assert.equal(parseCutoffTime('-5m', now), T - 300_000_000);
  assert.equal(parseCutoffTime('now-90s', now), T - 90_000_000);
  assert.equal(parseCutoffTime('now - 90s', now), T - 90_000_000);
  assert.equal(parseCutoffTime('NOW', now), T);
  assert.equal(parseCutoffTime('10 minutes ago', now), T - 600_000_000);
  assert.equal(parseCutoffTime('1 minute ago', now), T - 60_000_000);
  assert.equal(parseCutoffTime('1h30m ago', now), T - 5_400_000_000);
  assert.equal(parseCutoffTime('1 hour 30 minutes ago', now), T - 5_400_000_000);
  assert.equal(parseCutoffTime('-1.5h', now), T - 5_400_000_000);
  assert.equal(parseCutoffTime('-250ms', now), T - 250_000);
  assert.equal(parseCutoffTime('2 days ago', now), T - 2 * 86_400_000_000);
  assert.equal(parseCutoffTime('-1w', now), T - 604_800_000_000);
  assert.equal(parseRelativeTime('2026-08-03T20:28:10Z', now), undefined);
  assert.equal(parseRelativeTime('1785788890', now), undefined);
  // No unit, an unknown unit or trailing words are not guessed.
  for (const bad of ['-5', 'now-5', '5 ago', '-5 parsecs', 'now+5m', '10 minutes ago please', '-5m5']) {
    assert.throws(() => parseCutoffTime(bad, now), InputError, bad);
  }
  assert.throws(() => parseCutoffTime('-60000w', now), /before 1970/);
  // Without nowUs: the wall clock.
  const before = Date.now() * 1000;
  const got = parseCutoffTime('-1s');
  assert.ok(got >= before - 1_000_000 && got <= Date.now() * 1000 - 1_000_000, `${got}`);
});
