// Server launchers: real redis-server, nats-server and clickhouse-server start, answer, stop and leave nothing behind.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createClient } from '@clickhouse/client';
import { ConfigError } from '../core/errors.js';
import { freePort } from '../core/servers/free-port.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { isPidAlive, retryOnPortInUse, ServerStartError, stopPid } from '../core/servers/server-process.js';
import { testClickHouse, testNats, testRedis } from './helpers/servers.js';

test('freePort returns a port that can be bound on loopback', async () => {
  const port = await freePort();
  assert.ok(port > 1024 && port < 65_536);
  const server = net.createServer();
  await new Promise<void>((resolve, reject) =>
    server.once('error', reject).listen({ host: '127.0.0.1', port }, resolve),
  );
  await new Promise((resolve) => server.close(resolve));
});

test('redis-server: PING, binary SET/GET, default and overriding args, stop removes the process and the temp dir', async () => {
  const redis = await testRedis(['--appendonly', 'yes']);
  let client: Redis | undefined;
  try {
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.ok(isPidAlive(redis.pid));
    client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client.connect();
    assert.equal(await client.ping(), 'PONG');
    const value = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80]);
    assert.equal(await client.set(Buffer.from('k\x00'), value), 'OK');
    assert.deepEqual(await client.getBuffer(Buffer.from('k\x00')), value);
    const config = (await client.call(
      'CONFIG',
      'GET',
      'appendonly',
      'save',
      'dir',
      'enable-debug-command',
    )) as string[];
    const got = Object.fromEntries(config.flatMap((v, i) => (i % 2 === 0 ? [[v, config[i + 1]]] : [])));
    assert.deepEqual(got, { appendonly: 'yes', save: '', dir: redis.dir, 'enable-debug-command': 'local' });
    const digests = (await client.call('DEBUG', 'DIGEST-VALUE', 'k\x00')) as string[];
    assert.match(digests[0], /^[0-9a-f]{40}$/);
    assert.ok(existsSync(redis.logFile));
  } finally {
    client?.disconnect();
    await redis.stop();
  }
  assert.equal(isPidAlive(redis.pid), false);
  assert.equal(existsSync(redis.dir), false);
  await redis.stop(); // idempotent
});

test('redis-server: a port another redis-server holds fails with the log tail (never mistaken for ours); a picked port is retried', async () => {
  await using other = await testRedis();
  const err = await startRedisServer({ port: other.port }).then(
    () => assert.fail('started on a taken port'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ServerStartError);
  assert.equal(err.portInUse, true);
  assert.match(
    err.message,
    new RegExp(`redis-server on 127\\.0\\.0\\.1:${other.port} .*exited with code 1 before it was ready`),
  );
  assert.match(err.logTail, /Address already in use/);

  let calls = 0;
  const result = await retryOnPortInUse(async () => {
    calls++;
    if (calls < 3) throw new ServerStartError('taken', { logTail: 'bind: Address already in use' });
    return 'started';
  }, true);
  assert.deepEqual({ result, calls }, { result: 'started', calls: 3 });
  await assert.rejects(
    retryOnPortInUse(async () => {
      throw new ServerStartError('taken', { logTail: 'bind: address already in use' });
    }, false),
    (e: unknown) => e instanceof ServerStartError && e.portInUse,
  );
});

test('redis-server: bad args reject with the log tail and leave no dir; a missing binary is a ConfigError', async () => {
  await assert.rejects(startRedisServer({ args: ['--no-such-directive', 'x'] }), (e: unknown) => {
    assert.ok(e instanceof ServerStartError);
    assert.equal(e.portInUse, false);
    assert.match(e.message, /exited with code 1 before it was ready; last lines of its log:\n[\s\S]*Bad directive/);
    const dir = /\(dir ([^)]+)\)/.exec(e.message)?.[1];
    assert.ok(dir !== undefined && dir.startsWith(path.join(os.tmpdir(), 'flashback-redis-')));
    assert.equal(existsSync(dir), false);
    return true;
  });
  await assert.rejects(startRedisServer({ bin: '/nonexistent/redis-server' }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /"\/nonexistent\/redis-server" is not an executable file; .*deploy\/install-servers\.sh/);
    return true;
  });
});

test('redis-server: a detached server outlives the process that started it and is stopped by pid', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flashback-detached-'));
  try {
    const launcher = path.join(dir, 'launch.mjs');
    const redisDir = path.join(dir, 'redis');
    const module = pathToFileURL(path.resolve(import.meta.dirname, '../core/servers/redis-server.ts')).href;
    writeFileSync(
      launcher,
      `import { mkdirSync } from 'node:fs';
       import { startRedisServer } from ${JSON.stringify(module)};
       mkdirSync(${JSON.stringify(redisDir)});
       const s = await startRedisServer({ detached: true, dir: ${JSON.stringify(redisDir)} });
       process.stdout.write(JSON.stringify({ pid: s.pid, url: s.url }));\n`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', launcher], {
      cwd: path.resolve(import.meta.dirname, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errOut = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (errOut += b));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, errOut);
    const { pid, url } = JSON.parse(out) as { pid: number; url: string };
    try {
      assert.equal(isPidAlive(child.pid!), false);
      assert.ok(isPidAlive(pid));
      const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
      await client.connect();
      try {
        assert.equal(await client.set('survivor', 'yes'), 'OK');
        assert.equal(await client.get('survivor'), 'yes');
        assert.equal(Number((await client.info('server')).match(/process_id:(\d+)/)?.[1]), pid);
      } finally {
        client.disconnect();
      }
    } finally {
      await stopPid(pid);
    }
    assert.equal(isPidAlive(pid), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nats-server: JetStream account info over a real connection; stop removes the process and the temp dir', async () => {
  const nats = await testNats();
  try {
    assert.equal(nats.url, `nats://127.0.0.1:${nats.port}`);
    assert.notEqual(nats.monitorPort, nats.port);
    const nc = await connect({ servers: nats.url, reconnect: false });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.getAccountInfo();
      assert.equal(info.streams, 0);
      assert.equal(info.consumers, 0);
    } finally {
      await nc.close();
    }
    const health = await fetch(`${nats.monitorUrl}/healthz?js-enabled-only=true`);
    assert.deepEqual(await health.json(), { status: 'ok' });
  } finally {
    await nats.stop();
  }
  assert.equal(isPidAlive(nats.pid), false);
  assert.equal(existsSync(nats.dir), false);
});

test('clickhouse-server: SELECT version() over HTTP with @clickhouse/client; stop removes the process and the temp dir', async () => {
  const ch = await testClickHouse();
  try {
    assert.equal(ch.url, `http://127.0.0.1:${ch.port}`);
    assert.notEqual(ch.tcpPort, ch.port);
    assert.match(ch.version ?? '', /^\d+\.\d+/);
    const client = createClient({ url: ch.url });
    try {
      const rows = await (
        await client.query({ query: 'SELECT version() AS version, timezone() AS tz', format: 'JSONEachRow' })
      ).json<{ version: string; tz: string }>();
      assert.equal(rows.length, 1);
      assert.equal(rows[0].version, ch.version);
      assert.match(rows[0].tz, /UTC$/);
    } finally {
      await client.close();
    }
  } finally {
    await ch.stop();
  }
  assert.equal(isPidAlive(ch.pid), false);
  assert.equal(existsSync(ch.dir), false);
});

test('await using stops every server at the end of the block', async () => {
  let pids: number[];
  {
    await using redis = await testRedis();
    await using nats = await testNats();
    pids = [redis.pid, nats.pid];
    assert.deepEqual(pids.map(isPidAlive), [true, true]);
  }
  assert.deepEqual(pids.map(isPidAlive), [false, false]);
});
