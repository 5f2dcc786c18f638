// Which restore server a baseline loads with: same server family, the source's line or newer, the closest first;
// none → refused naming the version needed. And how a server's INFO names it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canRestore, compareVersions, pickServerBinary, type ServerBinary } from './server-binaries.js';
import { serverInInfo } from '../core/redis/server-info.js';

const redis70: ServerBinary = { bin: '/usr/bin/redis-server', server: 'redis', version: '7.0.15' };
const redis74: ServerBinary = { bin: '/opt/redis-7.4.2/bin/redis-server', server: 'redis', version: '7.4.2' };
const redis80: ServerBinary = { bin: '/opt/redis-8.0.2/bin/redis-server', server: 'redis', version: '8.0.2' };
const valkey8: ServerBinary = { bin: '/usr/bin/valkey-server', server: 'valkey', version: '8.0.1' };
const all = [redis70, valkey8, redis80, redis74];

test('versions compare numerically, part by part', () => {
  assert.ok(compareVersions('7.10.0', '7.9.9') > 0);
  assert.ok(compareVersions('8.0.2', '8.0.10') < 0);
  assert.equal(compareVersions('7.0', '7.0.0'), 0);
});

test('a Redis history loads on its own release first, then its line, then the next newer line', () => {
  assert.equal(pickServerBinary(all, { server: 'redis', version: '7.0.15' }, 'b').bin, redis70.bin);
  // A later 7.0 patch release than any installed: the 7.0 line runs its commands and reads its RDB.
  assert.equal(pickServerBinary(all, { server: 'redis', version: '7.0.99' }, 'b').bin, redis70.bin);
  assert.equal(pickServerBinary(all, { server: 'redis', version: '7.2.4' }, 'b').bin, redis74.bin);
  assert.equal(pickServerBinary(all, { server: 'redis', version: '8.0.2' }, 'b').bin, redis80.bin);
});

test('a Valkey history loads only on Valkey, a Redis one never on Valkey', () => {
  assert.equal(pickServerBinary(all, { server: 'valkey', version: '8.0.1' }, 'b').bin, valkey8.bin);
  assert.equal(canRestore(valkey8, { server: 'redis', version: '7.0.15' }), false);
  assert.throws(
    () => pickServerBinary([redis70, redis80], { server: 'valkey', version: '8.0.1' }, 'the baseline of n1'),
    /the baseline of n1 comes from valkey 8\.0\.1; restoring it needs Valkey 8\.0 or a newer line of Valkey, and the restore servers here are: redis 7\.0\.15 \(\/usr\/bin\/redis-server\), redis 8\.0\.2 .*--redis-bin PATH or FLASHBACK_REDIS_BINS/,
  );
});

test('a newer source than every restore server is refused, naming the line it needs', () => {
  assert.throws(
    () => pickServerBinary([redis70, valkey8], { server: 'redis', version: '8.0.2' }, 'the baseline of n2'),
    /comes from redis 8\.0\.2; restoring it needs Redis 8\.0 or a newer line of Redis/,
  );
});

test('without a recorded source the first server that reads the RDB format is used', () => {
  assert.equal(pickServerBinary(all, undefined, 'b').bin, redis70.bin);
  assert.equal(pickServerBinary(all, undefined, 'b', 12).bin, redis80.bin);
  assert.throws(() => pickServerBinary([redis70], undefined, 'b', 12), /needs a server that reads RDB format 12/);
  assert.throws(() => pickServerBinary([], undefined, 'b'), /no redis-server found for the restore/);
});

test('INFO server names Valkey by server_name, Redis by redis_version', () => {
  assert.deepEqual(serverInInfo('# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n'), {
    server: 'valkey',
    version: '8.0.1',
  });
  assert.deepEqual(serverInInfo('# Server\r\nredis_version:8.0.2\r\nredis_git_sha1:00000000\r\n'), {
    server: 'redis',
    version: '8.0.2',
  });
});
