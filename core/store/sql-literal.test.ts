// sqlString/sqlUInt: literal shapes, rejection of bad numbers, and exact byte round-trip of tricky strings through chdb
// (current ClickHouse).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { query } from 'chdb';
import { sqlString, sqlStringArray, sqlUInt } from './sql-literal.js';
import { ErrorCode, InputError } from '../errors.js';

/** Strings that break naive quoting. */
const TRICKY_STRINGS: readonly string[] = [
  '',
  'plain',
  "it's",
  "''",
  '\\',
  'ends with backslash\\',
  "\\'",
  "'); DROP TABLE flashback.events; --",
  'a\u0000b',
  '\n\r\t\b\f\u0007\u000b\u001b\u007f',
  '\\x41 is not A',
  '\\0',
  'line1\nline2',
  'é ü 中文 🎉',
  '\u0080\u00ff',
  Array.from({ length: 128 }, (_, i) => String.fromCharCode(i)).join(''),
  '?',
  '{param:String}',
  '`"',
];

test('sqlString quotes plain text as is and escapes backslash, quote and control characters', () => {
  assert.equal(sqlString('userprofile'), "'userprofile'");
  assert.equal(sqlString("it's"), "'it\\'s'");
  assert.equal(sqlString('a\\b'), "'a\\\\b'");
  assert.equal(sqlString('a\u0000b\n\u007f'), "'a\\x00b\\x0a\\x7f'");
  assert.equal(sqlString('é'), "'é'");
  assert.equal(sqlStringArray(['a', "b'"]), "['a', 'b\\'']");
  assert.equal(sqlStringArray([]), '[]');
});

test('sqlString output is one line of printable text', () => {
  for (const s of TRICKY_STRINGS) assert.doesNotMatch(sqlString(s), /[\x00-\x1f\x7f]/);
});

test('sqlUInt accepts non-negative integers up to 2^64-1 and rejects the rest with InputError', () => {
  assert.equal(sqlUInt(0), '0');
  assert.equal(sqlUInt(48_213), '48213');
  assert.equal(sqlUInt(Number.MAX_SAFE_INTEGER), '9007199254740991');
  assert.equal(sqlUInt(2n ** 64n - 1n), '18446744073709551615');
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 1, -1n, 2n ** 64n]) {
    assert.throws(
      () => sqlUInt(bad, 'seq'),
      (err: unknown) => err instanceof InputError && err.code === ErrorCode.BadInput && /^seq /.test(err.message),
      `sqlUInt(${String(bad)})`,
    );
  }
});

test('tricky strings round-trip byte for byte through chdb', () => {
  const select = TRICKY_STRINGS.map((s, i) => `hex(${sqlString(s)}) AS h${i}`).join(', ');
  const row = JSON.parse(query(`SELECT ${select}`, 'JSONEachRow')) as Record<string, string>;
  TRICKY_STRINGS.forEach((s, i) =>
    assert.equal(row[`h${i}`], Buffer.from(s, 'utf8').toString('hex').toUpperCase(), JSON.stringify(s)),
  );
  const arr = JSON.parse(
    query(`SELECT arrayMap(x -> hex(x), ${sqlStringArray(TRICKY_STRINGS)}) AS a`, 'JSONEachRow'),
  ) as { a: string[] };
  assert.deepEqual(
    arr.a,
    TRICKY_STRINGS.map((s) => Buffer.from(s, 'utf8').toString('hex').toUpperCase()),
  );
  const n = JSON.parse(
    query(
      `SELECT toString(${sqlUInt(2n ** 64n - 1n)}) AS n, toTypeName(${sqlUInt(2n ** 64n - 1n)}) AS t`,
      'JSONEachRow',
    ),
  ) as { n: string; t: string };
  assert.deepEqual(n, { n: '18446744073709551615', t: 'UInt64' });
});
