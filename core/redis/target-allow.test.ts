// The restore target allow-list: entry forms, ports, names resolved to addresses, and refusals naming the entry.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, ErrorCode, FlashbackError } from '../errors.js';
import { assertTargetAllowed, parseTargetAllow } from './target-allow.js';

test('the default allows loopback only, on any port', async () => {
  const a = parseTargetAllow(undefined);
  assert.equal(await a.allows('127.0.0.1', 6379), true);
  assert.equal(await a.allows('127.9.9.9', 1), true);
  assert.equal(await a.allows('::1', 6379), true);
  assert.equal(await a.allows('[::1]', 6379), true);
  assert.equal(await a.allows('::ffff:127.0.0.1', 6379), true);
  assert.equal(await a.allows('localhost', 6379), true);
  assert.equal(await a.allows('10.0.0.5', 6379), false);
  assert.equal(await a.allows('::ffff:10.0.0.5', 6379), false);
  assert.equal(await a.allows('no-such-host.invalid', 6379), false);
});

test('IPs, CIDRs, names and ports', async () => {
  const a = parseTargetAllow('10.0.0.0/8:6379, 192.168.1.7, [fe80::1]:7000, Redis.Internal, cache.local:6380');
  assert.equal(await a.allows('10.1.2.3', 6379), true);
  assert.equal(await a.allows('10.1.2.3', 6380), false);
  assert.equal(await a.allows('192.168.1.7', 1), true);
  assert.equal(await a.allows('192.168.1.8', 1), false);
  assert.equal(await a.allows('fe80::1', 7000), true);
  assert.equal(await a.allows('fe80::1', 7001), false);
  assert.equal(await a.allows('redis.internal', 1), true);
  assert.equal(await a.allows('cache.local', 6380), true);
  assert.equal(await a.allows('cache.local', 6379), false);
  assert.equal(await a.allows('127.0.0.1', 6379), false);
  assert.equal(await parseTargetAllow('*').allows('203.0.113.9', 1), true);
});

test('a bad entry is a ConfigError naming it', () => {
  for (const bad of ['10.0.0.0/33', 'a b', '1.2.3.4:0', '::1/200', 'x:99999', '']) {
    assert.throws(
      () => parseTargetAllow(bad),
      (e: unknown) => e instanceof ConfigError && e.message.includes('--target-allow'),
      bad,
    );
  }
});

test('a refused target names the redacted URL and the list, never the password', async () => {
  await assert.rejects(
    assertTargetAllowed('redis://u:s3cret@10.9.9.9:6379/0', parseTargetAllow(undefined)),
    (e: unknown) =>
      e instanceof FlashbackError &&
      e.code === ErrorCode.Forbidden &&
      e.message.includes('redis://u:***@10.9.9.9:6379/0') &&
      e.message.includes('127.0.0.0/8, ::1') &&
      !e.message.includes('s3cret'),
  );
  await assertTargetAllowed('redis://:pw@127.0.0.1:6390', parseTargetAllow(undefined));
});
