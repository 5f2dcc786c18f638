// Baselines without pausing writes: PSYNC capture (disk and diskless RDB), marker MULTI, RDB + tail loaded as an AOF
// equal to the marker's digest, memory bound, refusals.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { takeBaseline, publishMarker } from '../agent/baseline.js';
import { keysInInfo } from '../core/redis/keyspace-info.js';
import { captureReplicationBaseline } from '../agent/replication/replication-client.js';
import { MARKER_CHANNEL } from '../core/bus/baseline.js';
import { ConfigError } from '../core/errors.js';
import { connectNats, ensureBaselineStore, type NatsConnection, type ObjectStore } from '../core/bus/nats.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl, type RedisTarget } from '../core/redis/redis-url.js';
import { RespError, type RespValue } from '../core/redis/resp.js';
import type { NatsServerProcess } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { testNats, testRedis, TEST_REDIS_BIN_ENV } from './helpers/servers.js';

let nats: NatsServerProcess;
let nc: NatsConnection;
let store: ObjectStore;

before(async () => {
  nats = await testNats();
  nc = await connectNats({ url: nats.url, name: 'baseline-test' });
  store = await ensureBaselineStore(nc);
});

after(async () => {
  await nc?.close();
  await nats?.stop();
});

/** Runs `fn` against a fresh redis-server, stopped afterwards whatever happens. */
async function withRedis<T>(
  args: readonly string[],
  fn: (server: ServerProcess, target: RedisTarget) => Promise<T>,
): Promise<T> {
  const server = await testRedis([...args]);
  try {
    return await fn(server, parseRedisUrl(server.url));
  } finally {
    await server.stop();
  }
}

async function ok(conn: RawRedis, argv: (string | Buffer | number)[]): Promise<RespValue> {
  const r = await conn.call(argv);
  if (r instanceof RespError) throw new Error(`${argv.slice(0, 2).join(' ')}: ${r.message}`);
  return r;
}

const bin = (...bytes: number[]) => Buffer.from(bytes);

/** Every data type, binary keys and values, a TTL, two dbs. */
async function preload(conn: RawRedis): Promise<void> {
  await ok(conn, ['SET', bin(0x00, 0xff, 0x0d, 0x0a, 0x22), bin(0x80, 0x00, 0x0a, 0xfe)]);
  await ok(conn, ['SET', 'str', 'hello']);
  await ok(conn, ['SET', 'ttl', 'v', 'EX', 3600]);
  await ok(conn, ['HSET', 'hash', 'f1', 'v1', bin(0xc3, 0x28), bin(0x00, 0x01)]);
  await ok(conn, ['RPUSH', 'list', 'a', bin(0xff, 0xfe), 'c']);
  await ok(conn, ['SADD', 'set', 'x', 'y', bin(0x00)]);
  await ok(conn, ['SADD', 'pops', ...Array.from({ length: 500 }, (_, i) => `m${i}`)]);
  await ok(conn, ['ZADD', 'zset', 1, 'one', 2.5, bin(0xe2, 0x82)]);
  await ok(conn, ['XADD', 'stream', '1-1', 'k', bin(0x01, 0x02)]);
  await ok(conn, ['PFADD', 'hll', 'a', 'b', 'c']);
  await ok(conn, ['SETBIT', 'bits', 1001, 1]);
  for (let i = 0; i < 2_000; i++) await ok(conn, ['SET', `bulk:${i}`, randomBytes(200)]);
  await ok(conn, ['SELECT', 1]);
  await ok(conn, ['SET', 'in-db1', bin(0x00, 0x0d)]);
  await ok(conn, ['SELECT', 0]);
}

/** Keeps writing (INCR/HSET/LPUSH, SET EX, SPOP, db 1) until stopped; `count` says how many rounds ran. */
function startWriter(target: RedisTarget): { count: () => number; stop: () => Promise<number> } {
  let stopped = false;
  let rounds = 0;
  const done = (async () => {
    const conn = await RawRedis.connect(target);
    try {
      while (!stopped) {
        const i = rounds;
        await ok(conn, ['INCR', 'counter']);
        await ok(conn, ['HSET', 'hash', `f${i % 50}`, bin(i & 0xff, 0x00, 0xff)]);
        await ok(conn, ['LPUSH', 'list', bin(0x0a, i & 0xff)]);
        await ok(conn, ['SET', `w:${i % 100}`, `v${i}`, 'EX', 3600]);
        if (i % 10 === 0) await ok(conn, ['SPOP', 'pops']);
        if (i % 7 === 0) {
          await ok(conn, ['SELECT', 1]);
          await ok(conn, ['INCR', 'db1-counter']);
          await ok(conn, ['SELECT', 0]);
        }
        rounds++;
      }
      return rounds;
    } finally {
      conn.close();
    }
  })();
  return {
    count: () => rounds,
    stop: async () => {
      stopped = true;
      return done;
    },
  };
}

/** Polls `cond` until true or the deadline passes. */
async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

/** A MONITOR connection collecting every line it sees. */
async function monitor(target: RedisTarget): Promise<{ text: () => string; close: () => void }> {
  const conn = await RawRedis.connect(target);
  assert.equal(await conn.call(['MONITOR']), 'OK');
  const chunks: Buffer[] = [conn.detach()];
  conn.socket.on('data', (c: Buffer) => chunks.push(c));
  return { text: () => Buffer.concat(chunks).toString('latin1'), close: () => conn.close() };
}

async function digestOf(conn: RawRedis): Promise<string> {
  return String(await ok(conn, ['DEBUG', 'DIGEST']));
}

async function keyCount(conn: RawRedis): Promise<number> {
  return keysInInfo(String(await ok(conn, ['INFO', 'keyspace'])));
}

/** Loads RDB + tail as a multi-part AOF dir in a fresh redis-server and hands it to `fn`. */
async function withRestored<T>(rdb: Uint8Array, tail: Uint8Array, fn: (conn: RawRedis) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flashback-baseline-restore-'));
  try {
    const aofDir = path.join(dir, 'appendonlydir');
    mkdirSync(aofDir);
    writeFileSync(path.join(aofDir, 'appendonly.aof.1.base.rdb'), rdb);
    writeFileSync(path.join(aofDir, 'appendonly.aof.1.incr.aof'), tail);
    writeFileSync(
      path.join(aofDir, 'appendonly.aof.manifest'),
      'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n',
    );
    const server = await startRedisServer({
      bin: process.env[TEST_REDIS_BIN_ENV],
      dir,
      args: ['--appendonly', 'yes', '--enable-debug-command', 'yes'],
    });
    try {
      const conn = await RawRedis.connect(parseRedisUrl(server.url));
      try {
        return await fn(conn);
      } finally {
        conn.close();
      }
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const framings = [
  {
    framing: 'diskless',
    label: 'diskless RDB framing',
    args: ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'],
  },
  { framing: 'disk', label: 'disk RDB framing', args: ['--repl-diskless-sync', 'no'] },
  // While it waits out the delay the master sends a bare "\n" every second before +FULLRESYNC.
  {
    framing: 'diskless',
    label: 'diskless RDB after a 1 s delay (newline keepalives)',
    args: ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '1'],
  },
] as const;

for (const { framing, label, args } of framings) {
  describe(`baseline with ${label}`, () => {
    test(
      'captureReplicationBaseline parses FULLRESYNC, streams the RDB and stops at the marker',
      { timeout: 120_000 },
      async () => {
        await withRedis(args, async (_server, target) => {
          const conn = await RawRedis.connect(target);
          const control = await RawRedis.connect(target);
          try {
            await preload(conn);
            const writer = startWriter(target);
            let stopped = false;
            try {
              await until('the writer to start', () => writer.count() > 10);
              let streamed = 0;
              let ackedOffset = -1;
              let firstAfterMarker = -1;
              let lastBeforeMarker = -1;
              let onRdbDoneFinished = false;
              const markerId = `m-${Date.now()}`;
              const captured = await captureReplicationBaseline({
                target,
                markerChannel: MARKER_CHANNEL,
                markerId,
                timeoutMs: 60_000,
                writeRdb: async (rdb) => {
                  for await (const chunk of rdb) streamed += chunk.byteLength;
                  // Writes made now are after the fork, so they must all land in the tail.
                  const seen = writer.count();
                  await until('writes after the RDB', () => writer.count() >= seen + 100);
                },
                onRdbDone: async () => {
                  // Our periodic REPLCONF ACKs reach the master and follow the stream: the offset it lists for us
                  // grows.
                  let first = -1;
                  await until('a growing ACKed offset in INFO replication', async () => {
                    const m = /slave0:.*state=online,offset=(\d+)/.exec(
                      String(await ok(conn, ['INFO', 'replication'])),
                    );
                    ackedOffset = Number(m?.[1] ?? -1);
                    if (first <= 0) first = ackedOffset;
                    return first > 0 && ackedOffset > first;
                  });
                  lastBeforeMarker = writer.count() - 1;
                  await publishMarker({ control, node: 'n1', epoch: 1, markerId, digest: false });
                  // Rounds from this index on start after the marker; keep onRdbDone pending while they run, so the
                  // marker surely reaches the stream first: the capture must still wait for onRdbDone.
                  firstAfterMarker = writer.count() + 1;
                  await until('writes after the marker', () => writer.count() >= firstAfterMarker + 50);
                  onRdbDoneFinished = true;
                },
              });
              const rounds = await writer.stop();
              stopped = true;
              const info = String(await ok(conn, ['INFO', 'replication']));
              assert.equal(captured.replid, /master_replid:([0-9a-f]{40})/.exec(info)?.[1]);
              const masterOffset = Number(/master_repl_offset:(\d+)/.exec(info)?.[1]);
              assert.ok(
                captured.offset >= 0 && captured.offset <= masterOffset,
                `offset ${captured.offset} within 0..${masterOffset}`,
              );
              assert.ok(
                ackedOffset > captured.offset && ackedOffset <= masterOffset,
                `ACKed offset ${ackedOffset} within ${captured.offset}..${masterOffset}`,
              );
              assert.equal(captured.framing, framing);
              assert.equal(captured.rdbBytes, streamed);
              assert.ok(captured.rdbBytes > 2_000 * 200, `RDB of ${captured.rdbBytes} bytes holds the preload`);
              assert.ok(captured.tailCommands >= 100, `tail has ${captured.tailCommands} commands`);
              assert.ok(rounds >= 100);
              const tail = captured.tail.toString('latin1');
              assert.doesNotMatch(tail, /\$4\r\nping\r\n/i, 'PING is not in the tail');
              assert.doesNotMatch(tail, /REPLCONF/i, 'REPLCONF is not in the tail');
              assert.ok(!tail.includes(markerId), 'the marker is not in the tail');
              assert.ok(onRdbDoneFinished, 'resolved only after onRdbDone');
              assert.ok(tail.includes(`\r\nv${lastBeforeMarker}\r\n`), 'a write just before the marker is in the tail');
              assert.ok(!tail.includes(`\r\nv${firstAfterMarker}\r\n`), 'a write after the marker is not in the tail');
              assert.match(tail, /^\*2\r\n\$6\r\nSELECT\r\n\$1\r\n[01]\r\n/, 'the tail starts with a SELECT');
              assert.match(tail, /\$6\r\nSELECT\r\n\$1\r\n1\r\n/, 'SELECT 1 is kept');
            } finally {
              if (!stopped) await writer.stop().catch(() => undefined);
            }
          } finally {
            conn.close();
            control.close();
          }
        });
      },
    );

    test(
      'takeBaseline under concurrent writes: stored RDB + tail loaded as an AOF has the marker digest',
      { timeout: 120_000 },
      async () => {
        await withRedis(args, async (_server, target) => {
          const conn = await RawRedis.connect(target);
          const control = await RawRedis.connect(target, { clientName: 'flashback-control' });
          const mon = await monitor(target);
          try {
            await preload(conn);
            const writer = startWriter(target);
            let record;
            try {
              await until('the writer to start', () => writer.count() > 10);
              record = (
                await takeBaseline({
                  target,
                  control,
                  store,
                  node: `n-${label.replace(/\W+/g, '-')}`,
                  epoch: 7,
                  digest: true,
                  timeoutMs: 60_000,
                })
              ).record;
              // At least one write after the marker, so the source's digest moves on (checked below).
              const seen = writer.count();
              await until('a write after the marker', () => writer.count() > seen);
            } finally {
              await writer.stop();
            }
            assert.equal(record.node, `n-${label.replace(/\W+/g, '-')}`);
            assert.equal(record.epoch, 7);
            assert.match(record.digest, /^[0-9a-f]{40}$/);
            assert.notEqual(record.digest, '0'.repeat(40));
            assert.ok(record.keys >= 2_000 + 12, `keys ${record.keys}`);

            // The marker PUBLISH is in MONITOR, from the control connection, with our payload.
            const controlAddr = `127.0.0.1:${control.socket.localPort}`;
            const payload = JSON.stringify({ markerId: record.markerId, node: record.node, epoch: 7 }).replace(
              /"/g,
              '\\"',
            );
            const expected = `[0 ${controlAddr}] "PUBLISH" "${MARKER_CHANNEL}" "${payload}"`;
            await until('the marker in MONITOR', () => mon.text().includes(expected));

            const rdbInfo = await store.info(record.rdbObject);
            assert.equal(rdbInfo?.size, record.rdbBytes, 'stored RDB size = rdbBytes');
            const tailInfo = await store.info(record.tailObject);
            assert.equal(tailInfo?.size, record.tailBytes);
            const rdb = await store.getBlob(record.rdbObject);
            const tail = await store.getBlob(record.tailObject);
            assert.ok(rdb && tail);
            assert.equal(rdb.length, record.rdbBytes);
            assert.equal(Buffer.from(rdb.subarray(0, 5)).toString('latin1'), 'REDIS');
            assert.equal(tail.length, record.tailBytes);
            // The record vouches for the objects (restores check it: docs/security.md).
            assert.equal(
              record.rdbSha256,
              createHash('sha256').update(rdb).digest('hex'),
              'rdbSha256 = SHA-256 of the RDB',
            );
            assert.equal(
              record.tailSha256,
              createHash('sha256').update(tail).digest('hex'),
              'tailSha256 = SHA-256 of the tail',
            );

            await withRestored(rdb, tail, async (restored) => {
              assert.equal(await digestOf(restored), record.digest, 'RDB + tail is exactly the dataset at the marker');
              assert.equal(await keyCount(restored), record.keys);
              assert.deepEqual(
                await restored.call(['GET', bin(0x00, 0xff, 0x0d, 0x0a, 0x22)]),
                bin(0x80, 0x00, 0x0a, 0xfe),
              );
            });
            // The source moved on after the marker: its digest now differs, so the equality above is not a coincidence.
            assert.notEqual(await digestOf(conn), record.digest);
          } finally {
            mon.close();
            conn.close();
            control.close();
          }
        });
      },
    );
  });
}

describe('baseline edge cases', () => {
  test('a 50 MB dataset is streamed without holding the RDB in memory', { timeout: 300_000 }, async () => {
    await withRedis(
      ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--rdbcompression', 'no'],
      async (_server, target) => {
        const control = await RawRedis.connect(target);
        try {
          await ok(control, ['DEBUG', 'POPULATE', 50_000, 'big', 1_024]);
          // Live memory, not garbage the collector has not reached yet: collect before each sample.
          v8.setFlagsFromString('--expose-gc');
          const gc = vm.runInNewContext('gc') as () => void;
          gc();
          const memBefore = process.memoryUsage();
          const live = (m: NodeJS.MemoryUsage) => m.heapUsed + m.arrayBuffers;
          let peakRss = memBefore.rss;
          let peakLive = live(memBefore);
          let samples = 0;
          const started = Date.now();
          const sampler = setInterval(() => {
            samples++;
            gc();
            const m = process.memoryUsage();
            peakRss = Math.max(peakRss, m.rss);
            peakLive = Math.max(peakLive, live(m));
          }, 20);
          let record;
          try {
            record = (
              await takeBaseline({ target, control, store, node: 'n-big', epoch: 1, digest: false, timeoutMs: 240_000 })
            ).record;
          } finally {
            clearInterval(sampler);
          }
          const mb = (n: number) => Math.round((n / 1_048_576) * 10) / 10;
          const rssGrowth = Math.max(peakRss, process.memoryUsage().rss) - memBefore.rss;
          const liveGrowth = peakLive - live(memBefore);
          console.log(
            `50 MB baseline: RDB ${mb(record.rdbBytes)} MiB, peak RSS growth ${mb(rssGrowth)} MiB, peak live heap+buffers growth ${mb(liveGrowth)} MiB (${samples} samples over ${Date.now() - started} ms)`,
          );
          assert.ok(record.rdbBytes > 50_000_000, `RDB of ${record.rdbBytes} bytes`);
          assert.equal((await store.info(record.rdbObject))?.size, record.rdbBytes);
          assert.equal(record.keys, 50_000);
          assert.ok(
            liveGrowth < record.rdbBytes / 4,
            `live heap + buffers grew ${mb(liveGrowth)} MiB for a ${mb(record.rdbBytes)} MiB RDB`,
          );
          assert.ok(rssGrowth < record.rdbBytes, `RSS grew ${mb(rssGrowth)} MiB for a ${mb(record.rdbBytes)} MiB RDB`);
          await store.delete(record.rdbObject);
        } finally {
          control.close();
        }
      },
    );
  });

  test('wrong password: a ConfigError that says AUTH was refused', { timeout: 60_000 }, async () => {
    await withRedis([], async (_server, target) => {
      const control = await RawRedis.connect(target);
      try {
        // Set after start: the launcher's readiness probe connects without a password.
        await ok(control, ['CONFIG', 'SET', 'requirepass', 'right-secret']);
        await assert.rejects(
          takeBaseline({
            target: { ...target, password: 'wrong' },
            control,
            store,
            node: 'n-auth',
            epoch: 1,
            digest: false,
            timeoutMs: 10_000,
          }),
          (err: Error) =>
            err instanceof ConfigError && /refused AUTH/.test(err.message) && /password/.test(err.message),
        );
      } finally {
        control.close();
      }
    });
  });

  test('a user without +psync: a ConfigError naming the ACL to grant', { timeout: 60_000 }, async () => {
    await withRedis([], async (_server, target) => {
      const admin = await RawRedis.connect(target);
      try {
        await ok(admin, ['ACL', 'SETUSER', 'nosync', 'on', '>pw', '~*', '&*', '+@all', '-psync', '-sync']);
        const limited = { ...target, username: 'nosync', password: 'pw' };
        await assert.rejects(
          captureReplicationBaseline({
            target: limited,
            markerChannel: MARKER_CHANNEL,
            markerId: 'x',
            writeRdb: async () => {},
            onRdbDone: async () => {},
            timeoutMs: 10_000,
          }),
          (err: Error) =>
            err instanceof ConfigError && /refused PSYNC: NOPERM/.test(err.message) && /\+psync/.test(err.message),
        );
      } finally {
        admin.close();
      }
    });
  });

  test(
    'DEBUG refused (enable-debug-command no): baseline without digest, marker still published',
    { timeout: 60_000 },
    async () => {
      await withRedis(['--enable-debug-command', 'no', '--repl-diskless-sync-delay', '0'], async (_server, target) => {
        const control = await RawRedis.connect(target);
        try {
          await preload(control);
          const { record } = await takeBaseline({
            target,
            control,
            store,
            node: 'n-nodebug',
            epoch: 1,
            digest: true,
            timeoutMs: 30_000,
          });
          assert.equal(record.digest, '');
          assert.equal(record.keys, await keyCount(control));
          assert.ok(record.rdbBytes > 0);
        } finally {
          control.close();
        }
      });
    },
  );

  test(
    'no RDB within the timeout (master still in its diskless delay): a ConnectionError naming the timeout',
    { timeout: 60_000 },
    async () => {
      await withRedis(['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '30'], async (_server, target) => {
        await assert.rejects(
          captureReplicationBaseline({
            target,
            markerChannel: MARKER_CHANNEL,
            markerId: 'x',
            writeRdb: async () => {},
            onRdbDone: async () => {},
            timeoutMs: 500,
          }),
          (err: Error) =>
            err.name === 'ConnectionError' &&
            /did not finish within 500 ms \(stopped in phase reply\)/.test(err.message),
        );
      });
    },
  );

  test(
    'master gone mid-transfer: a ConnectionError saying the link closed while sending the RDB',
    { timeout: 60_000 },
    async () => {
      await withRedis(
        ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--rdbcompression', 'no'],
        async (_server, target) => {
          const admin = await RawRedis.connect(target);
          try {
            await ok(admin, ['DEBUG', 'POPULATE', 20_000, 'k', 1_024]);
            const err = await captureReplicationBaseline({
              target,
              markerChannel: MARKER_CHANNEL,
              markerId: 'x',
              timeoutMs: 30_000,
              rdbHighWaterMarkBytes: 64 * 1024,
              writeRdb: async (rdb) => {
                const reader = rdb.getReader();
                await reader.read();
                // Our reader stalls, so the master blocks on us mid-RDB; then the link is killed.
                await ok(admin, ['CLIENT', 'KILL', 'TYPE', 'replica']);
                await reader.read().catch(() => undefined);
                for (;;) if ((await reader.read()).done) break;
              },
              onRdbDone: async () => {},
            }).then(
              () => undefined,
              (e: Error) => e,
            );
            assert.ok(err, 'the capture must fail');
            assert.equal(err.name, 'ConnectionError');
            assert.match(err.message, /closed the replication link while sending the RDB/);
          } finally {
            admin.close();
          }
        },
      );
    },
  );
});
