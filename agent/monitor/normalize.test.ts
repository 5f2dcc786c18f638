// normalizeArgv without a server: each rewrite rule, identity when nothing changes, binary bytes kept (live checks:
// test/normalize.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CommandSpec } from '../../core/redis/command-table.js';
import { CONDITIONAL_EXPIRE_SCRIPT, DEL_IF_STRING_SCRIPT, normalizeArgv } from './normalize.js';

const spec = (name: string, write = true): CommandSpec => ({
  name,
  arity: -2,
  flags: new Set(write ? ['write'] : ['readonly']),
  tips: new Set(),
  write,
  blocking: false,
  nondeterministic: false,
  keySpecs: [],
  legacyKeys: { first: 1, last: 1, step: 1 },
});
const argv = (...a: (string | Buffer)[]) => a.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)));
const strs = (bs: Buffer[]) => bs.map((b) => b.toString('latin1'));
// 2026-01-01T00:00:00.123456Z: ms part 123, µs 456 dropped.
const TS_US = 1_767_225_600_123_456;
const NOW_MS = 1_767_225_600_123;
const norm = (name: string, ...a: string[]) => strs(normalizeArgv(argv(...a), TS_US, spec(name)));

test('returns the same array when nothing changes', () => {
  for (const [name, a] of [
    ['set', argv('SET', 'k', 'v')],
    ['set', argv('SET', 'k', 'v', 'PXAT', String(NOW_MS + 5000))],
    ['set', argv('SET', 'k', 'v', 'KEEPTTL')],
    ['hset', argv('HSET', 'h', 'f', 'v')],
    ['pexpireat', argv('PEXPIREAT', 'k', String(NOW_MS + 1))],
    ['getex', argv('GETEX', 'k', 'PERSIST')],
    ['restore', argv('RESTORE', 'k', '0', 'payload')],
    ['restore', argv('RESTORE', 'k', String(NOW_MS + 10), 'payload', 'ABSTTL')],
  ] as const) {
    assert.equal(normalizeArgv(a as Buffer[], TS_US, spec(name)), a, strs(a as Buffer[]).join(' '));
  }
  const get = argv('GET', 'k');
  assert.equal(normalizeArgv(get, TS_US, spec('get', false)), get);
  const unknown = argv('MODULE.CMD', 'k', 'EX', '10');
  assert.equal(normalizeArgv(unknown, TS_US, undefined), unknown);
});

test('SET EX/PX/EXAT become PXAT from the event time, other options kept in place', () => {
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EX', '10'), ['SET', 'k', 'v', 'PXAT', String(NOW_MS + 10_000)]);
  assert.deepEqual(norm('set', 'set', 'k', 'v', 'nx', 'px', '1500', 'get'), [
    'set',
    'k',
    'v',
    'nx',
    'PXAT',
    String(NOW_MS + 1500),
    'get',
  ]);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EXAT', '2000000000'), ['SET', 'k', 'v', 'PXAT', '2000000000000']);
});

test('SET with an expiry at or before now: DEL, nothing under NX, type-checked DEL under GET', () => {
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'PXAT', '1000'), ['DEL', 'k']);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'PXAT', String(NOW_MS)), ['DEL', 'k']);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'XX', 'EXAT', '1'), ['DEL', 'k']);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'NX', 'EXAT', '1'), []);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EXAT', '1', 'GET'), ['EVAL', DEL_IF_STRING_SCRIPT, '1', 'k']);
});

test('SET with an invalid or non-positive expiry failed at the source: nothing, or left as issued', () => {
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EX', '0'), []);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EX', '-5'), []);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EX', 'abc'), ['SET', 'k', 'v', 'EX', 'abc']);
  assert.deepEqual(norm('set', 'SET', 'k', 'v', 'EX', '10', 'PX', '10'), ['SET', 'k', 'v', 'EX', '10', 'PX', '10']);
});

test('SETEX/PSETEX become SET PXAT', () => {
  assert.deepEqual(norm('setex', 'SETEX', 'k', '10', 'v'), ['SET', 'k', 'v', 'PXAT', String(NOW_MS + 10_000)]);
  assert.deepEqual(norm('psetex', 'psetex', 'k', '250', 'v'), ['SET', 'k', 'v', 'PXAT', String(NOW_MS + 250)]);
  assert.deepEqual(norm('setex', 'SETEX', 'k', '0', 'v'), []);
});

test('GETEX: EX/PX become PXAT; a past EXAT/PXAT deletes only a string', () => {
  assert.deepEqual(norm('getex', 'GETEX', 'k', 'EX', '5'), ['GETEX', 'k', 'PXAT', String(NOW_MS + 5000)]);
  assert.deepEqual(norm('getex', 'GETEX', 'k', 'px', '5'), ['GETEX', 'k', 'PXAT', String(NOW_MS + 5)]);
  assert.deepEqual(norm('getex', 'GETEX', 'k', 'PXAT', '1000'), ['EVAL', DEL_IF_STRING_SCRIPT, '1', 'k']);
});

test('EXPIRE family becomes PEXPIREAT, keeping NX/XX/GT/LT', () => {
  assert.deepEqual(norm('expire', 'EXPIRE', 'k', '10'), ['PEXPIREAT', 'k', String(NOW_MS + 10_000)]);
  assert.deepEqual(norm('pexpire', 'PEXPIRE', 'k', '10', 'XX'), ['PEXPIREAT', 'k', String(NOW_MS + 10), 'XX']);
  assert.deepEqual(norm('expireat', 'EXPIREAT', 'k', '2000000000', 'gt'), ['PEXPIREAT', 'k', '2000000000000', 'gt']);
});

test('past EXPIRE: DEL when unconditional, an EVAL that DELs when the condition held', () => {
  assert.deepEqual(norm('expire', 'EXPIRE', 'k', '-1'), ['DEL', 'k']);
  assert.deepEqual(norm('expire', 'EXPIRE', 'k', '0'), ['DEL', 'k']);
  assert.deepEqual(norm('expireat', 'EXPIREAT', 'k', '1000'), ['DEL', 'k']);
  assert.deepEqual(norm('pexpireat', 'PEXPIREAT', 'k', '1000', 'NX'), [
    'EVAL',
    CONDITIONAL_EXPIRE_SCRIPT,
    '1',
    'k',
    '1000',
    'NX',
  ]);
  assert.deepEqual(norm('expire', 'EXPIRE', 'k', '-1', 'GT', 'LT'), [
    'EVAL',
    CONDITIONAL_EXPIRE_SCRIPT,
    '1',
    'k',
    String(NOW_MS - 1000),
    'GT',
    'LT',
  ]);
});

test('RESTORE with a relative ttl gets ABSTTL; a past one is DEL with REPLACE and nothing without', () => {
  assert.deepEqual(norm('restore', 'RESTORE', 'k', '5000', 'p', 'REPLACE', 'IDLETIME', '3'), [
    'RESTORE',
    'k',
    String(NOW_MS + 5000),
    'p',
    'REPLACE',
    'IDLETIME',
    '3',
    'ABSTTL',
  ]);
  assert.deepEqual(norm('restore', 'RESTORE', 'k', '1000', 'p', 'ABSTTL', 'REPLACE'), ['DEL', 'k']);
  assert.deepEqual(norm('restore', 'RESTORE', 'k', '1000', 'p', 'ABSTTL'), []);
});

test('binary keys and values are carried over byte for byte', () => {
  const key = Buffer.from([0x00, 0xff, 0x0d, 0x0a]);
  const value = Buffer.from([0x80, 0x81, 0x22]);
  const out = normalizeArgv([Buffer.from('SETEX'), key, Buffer.from('1'), value], TS_US, spec('setex'));
  assert.equal(out[1], key);
  assert.equal(out[2], value);
});

test('MIGRATE is never replayed: DEL of the moved keys, nothing with COPY', () => {
  assert.deepEqual(norm('migrate', 'MIGRATE', '10.0.0.5', '6379', 'k', '0', '5000'), ['DEL', 'k']);
  assert.deepEqual(
    norm('migrate', 'MIGRATE', '10.0.0.5', '6379', '', '0', '5000', 'REPLACE', 'AUTH', 'pw', 'KEYS', 'a', 'b'),
    ['DEL', 'a', 'b'],
  );
  assert.deepEqual(norm('migrate', 'MIGRATE', '10.0.0.5', '6379', '', '0', '5000', 'AUTH2', 'u', 'pw', 'KEYS', 'a'), [
    'DEL',
    'a',
  ]);
  assert.deepEqual(norm('migrate', 'MIGRATE', '10.0.0.5', '6379', 'k', '0', '5000', 'COPY'), []);
});

test('hash-field TTLs (Redis 7.4+) become absolute HPEXPIREAT / HSETEX … PXAT, as the replication stream has them', () => {
  const at = String(NOW_MS + 5000);
  assert.deepEqual(norm('hexpire', 'HEXPIRE', 'h', '5', 'FIELDS', '2', 'a', 'b'), [
    'HPEXPIREAT',
    'h',
    at,
    'FIELDS',
    '2',
    'a',
    'b',
  ]);
  assert.deepEqual(norm('hpexpire', 'hpexpire', 'h', '5000', 'GT', 'fields', '1', 'a'), [
    'HPEXPIREAT',
    'h',
    at,
    'GT',
    'FIELDS',
    '1',
    'a',
  ]);
  assert.deepEqual(norm('hexpireat', 'HEXPIREAT', 'h', String((NOW_MS + 5877) / 1000), 'FIELDS', '1', 'a'), [
    'HPEXPIREAT',
    'h',
    String(NOW_MS + 5877),
    'FIELDS',
    '1',
    'a',
  ]);
  assert.deepEqual(norm('hsetex', 'HSETEX', 'h', 'FNX', 'EX', '5', 'FIELDS', '1', 'f', 'v'), [
    'HSETEX',
    'h',
    'FNX',
    'PXAT',
    at,
    'FIELDS',
    '1',
    'f',
    'v',
  ]);
  assert.deepEqual(norm('hgetex', 'HGETEX', 'h', 'PX', '5000', 'FIELDS', '1', 'f'), [
    'HPEXPIREAT',
    'h',
    at,
    'FIELDS',
    '1',
    'f',
  ]);
  const same = argv('HGETEX', 'h', 'PERSIST', 'FIELDS', '1', 'f');
  assert.equal(normalizeArgv(same, TS_US, spec('hgetex')), same);
  const abs = argv('HPEXPIREAT', 'h', at, 'FIELDS', '1', 'f');
  assert.equal(normalizeArgv(abs, TS_US, spec('hpexpireat')), abs);
});

test('a field TTL already past is the HDEL the source did (a script where a condition decides)', () => {
  assert.deepEqual(norm('hexpire', 'HEXPIRE', 'h', '0', 'FIELDS', '2', 'a', 'b'), ['HDEL', 'h', 'a', 'b']);
  assert.deepEqual(norm('hpexpireat', 'HPEXPIREAT', 'h', '1000', 'FIELDS', '1', 'a'), ['HDEL', 'h', 'a']);
  assert.deepEqual(norm('hsetex', 'HSETEX', 'h', 'PXAT', '1000', 'FIELDS', '2', 'a', '1', 'b', '2'), [
    'HDEL',
    'h',
    'a',
    'b',
  ]);
  assert.deepEqual(norm('hgetex', 'HGETEX', 'h', 'EXAT', '1', 'FIELDS', '1', 'a'), ['HDEL', 'h', 'a']);
  const cond = norm('hpexpire', 'HPEXPIRE', 'h', '0', 'XX', 'FIELDS', '1', 'a');
  assert.equal(cond[0], 'EVAL');
  assert.deepEqual(cond.slice(2), ['1', 'h', String(NOW_MS), 'XX', '1', 'a']);
  assert.equal(norm('hsetex', 'HSETEX', 'h', 'FXX', 'PXAT', '1', 'FIELDS', '1', 'a', '1')[0], 'EVAL');
  // Refused at the source: nothing to replay, or replayed refused as issued.
  assert.deepEqual(norm('hsetex', 'HSETEX', 'h', 'EX', '0', 'FIELDS', '1', 'a', '1'), []);
  assert.deepEqual(norm('hexpire', 'HEXPIRE', 'h', '5', 'FIELDS', '3', 'a'), ['HEXPIRE', 'h', '5', 'FIELDS', '3', 'a']);
});
