// Which restores load on the source's clock: only where hash-field TTLs can be in the data (both servers have them,
// and the baseline holds some, is not known not to, or the history replays a command that may set one).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { hasFieldTtls, sourceClock } from './source-clock.js';

const redis80 = { server: 'redis', version: '8.0.2' };
const redis70 = { server: 'redis', version: '7.0.15' };
const at = Date.UTC(2026, 11, 7, 13, 0, 5, 500) * 1000;

test('field TTLs exist on Redis 7.4+ and Valkey 9+', () => {
  assert.equal(hasFieldTtls({ server: 'redis', version: '7.4.0' }), true);
  assert.equal(hasFieldTtls(redis70), false);
  assert.equal(hasFieldTtls({ server: 'valkey', version: '8.0.1' }), false);
  assert.equal(hasFieldTtls({ server: 'valkey', version: '9.0.0' }), true);
});

test('the real clock where no field TTL can be in the data', () => {
  assert.deepEqual(sourceClock(redis70, redis70, at, true), {});
  assert.deepEqual(sourceClock(redis80, redis70, at, true), {});
  assert.deepEqual(sourceClock(redis80, { ...redis80, fieldTtlKeys: 0 }, at, false), {});
});

test("the source's clock, frozen a second before the baseline, where field TTLs may be in the data", () => {
  const lib = [
    '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  ].some((p) => existsSync(p));
  for (const [source, history] of [
    [{ ...redis80, fieldTtlKeys: 0 }, true],
    [{ ...redis80, fieldTtlKeys: 2 }, false],
    [redis80, false],
  ] as const) {
    const c = sourceClock(redis80, source, at, history, { PATH: '/usr/bin' });
    if (lib) {
      assert.equal(c.env?.FAKETIME, '2026-12-07 13:00:04');
      assert.equal(c.env?.FAKETIME_DONT_FAKE_MONOTONIC, '1');
      assert.match(c.env?.LD_PRELOAD ?? '', /libfaketime\.so\.1$/);
      assert.equal(c.env?.PATH, '/usr/bin');
      assert.equal(c.warning, undefined);
    } else {
      assert.equal(c.env, undefined);
      assert.match(c.warning ?? '', /install Debian package faketime/);
    }
  }
});
