// Every server line of the support matrix, as source and as restore server (deploy/install-versions.sh installs
// them): the differential check in both capture modes on Valkey 8.0 and Redis 8.0 (Redis 7.0: differential.test.ts),
// the restore, baseline and hard-case suites again on each, hash-field TTLs restored exactly on Redis 8.0, and a
// Redis 8 history refused by a 7.0-only restorer.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { findExecutable, stopPid } from '../core/servers/server-process.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../restorer/index.js';
import { discoverServerBinaries, type ServerBinary } from '../restorer/server-binaries.js';
import { rawStreamId, setPayloadDeliveryTimes } from '../restorer/stream-payload.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { runDifferential } from './helpers/differential.js';
import { TEST_REDIS_BIN_ENV } from './helpers/servers.js';
import {
  serverTimeUs,
  startSource,
  startStack,
  syncedSource,
  waitFor,
  waitForWindow,
  type Stack,
} from './helpers/stack.js';

/** The lines every run must have: a missing one fails the run (installed by deploy/install-versions.sh). */
const MATRIX = [
  { server: 'redis', line: '7.0' },
  { server: 'valkey', line: '8.0' },
  { server: 'redis', line: '8.0' },
] as const;

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
let servers: ServerBinary[] = [];
const spawned: number[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'versions-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-versions-'));
  servers = await discoverServerBinaries();
});
after(async () => {
  for (const pid of spawned) await stopPid(pid).catch(() => undefined);
  await nc?.close();
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

/** The installed binary of a line of the matrix; fails naming the installer when it is missing. */
function serverOf(server: string, line: string): ServerBinary {
  const found = servers.find((s) => s.server === server && s.version.startsWith(`${line}.`));
  assert.ok(
    found,
    `${server} ${line} is not installed (found: ${servers.map((s) => `${s.server} ${s.version}`).join(', ')}); run: sudo bash deploy/install-versions.sh`,
  );
  return found;
}

const deps = () => ({ events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir });

test('every server line of the support matrix is installed and says its version', () => {
  for (const m of MATRIX) serverOf(m.server, m.line);
});

for (const m of MATRIX.filter((x) => x.line !== '7.0')) {
  for (const source of ['replication', 'monitor'] as const) {
    test(`${m.server} ${m.line}, ${source} capture: every recorded moment restores exactly, by seq and by time`, async () => {
      const bin = serverOf(m.server, m.line).bin;
      const result = await runDifferential(stack, {
        seed: 0x7e5 + m.line.length + (source === 'monitor' ? 1 : 0),
        points: 3,
        opsPerPoint: [100, 250],
        prefillOps: 150,
        source,
        bin,
      });
      assert.equal(result.restores, 6);
      assert.deepEqual(result.failures, []);
    });
  }
}

/** Suites that run again with their sources on each other line (they start sources through test/helpers). */
const SUITES = ['test/restore-e2e.test.ts', 'test/baseline.test.ts', 'test/hard-cases.test.ts'];

/** The suites run again as a test runner of their own with their sources on `bin`: its TAP output and exit code. */
async function suitesOn(bin: string): Promise<{ code: number; out: string }> {
  // A test run in a test: without NODE_TEST_CONTEXT the inner runner reports as a top-level one (TAP on stdout).
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  return promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=tap', ...SUITES],
    { env: { ...env, [TEST_REDIS_BIN_ENV]: bin }, maxBuffer: 64 * 2 ** 20, timeout: 20 * 60_000 },
  ).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code?: number; stdout?: string }) => ({ code: e.code ?? -1, out: e.stdout ?? '' }),
  );
}

// One line after the other: this file runs beside the rest of the suite (test/run.sh), two runners are enough load.
test('valkey 8.0 and redis 8.0: the restore, baseline and hard-case suites pass with their sources on each', async () => {
  const lines = MATRIX.filter((x) => x.line !== '7.0');
  const runs: { code: number; out: string }[] = [];
  for (const m of lines) runs.push(await suitesOn(serverOf(m.server, m.line).bin));
  runs.forEach((run, i) => {
    const what = `${lines[i]!.server} ${lines[i]!.line}: ${run.out.slice(-4000)}`;
    const failed = run.out.split('\n').filter((l) => /^\s*not ok /.test(l));
    assert.deepEqual(failed, [], what);
    assert.equal(run.code, 0, what);
    assert.match(run.out, /^# pass [1-9]\d*$/m, what);
    assert.match(run.out, /^# fail 0$/m, what);
  });
});

/** Each hash key's fields: value and HPEXPIRETIME (-1 without a TTL). */
async function fieldState(r: Redis, keys: string[]): Promise<Record<string, Record<string, [string, number]>>> {
  const out: Record<string, Record<string, [string, number]>> = {};
  for (const k of keys) {
    const all = (await r.hgetall(k)) as Record<string, string>;
    const names = Object.keys(all).sort();
    const ttls =
      names.length > 0 ? ((await r.call('HPEXPIRETIME', k, 'FIELDS', names.length, ...names)) as number[]) : [];
    out[k] = Object.fromEntries(names.map((n, i) => [n, [all[n]!, Number(ttls[i])]]));
  }
  return out;
}

for (const source of ['replication', 'monitor'] as const) {
  test(`redis 8.0, ${source} capture: hash-field TTLs come back exactly (expired, long, persisted, HSETEX, HGETEX, HGETDEL), and shifted by --keep-ttl-relative`, async () => {
    const redis8 = serverOf('redis', '8.0');
    const src = await startSource(stack, [], { source, bin: redis8.bin });
    const r = new Redis(src.redis.url);
    try {
      if (source === 'monitor') await src.agent.baseline();
      await r.hset('hf', 'short', '1', 'long', '2', 'persisted', '3', 'gone', '4', 'plain', '5', 'again', '6');
      await r.call('HPEXPIRE', 'hf', 300, 'FIELDS', 2, 'short', 'again');
      await r.call('HEXPIRE', 'hf', 3600, 'FIELDS', 1, 'long');
      // A short TTL that passes before the restore, persisted while it ran: the restore must keep the field.
      await r.call('HPEXPIRE', 'hf', 700, 'FIELDS', 1, 'persisted');
      await r.call('HPERSIST', 'hf', 'FIELDS', 1, 'persisted');
      await r.call('HEXPIREAT', 'hf', Math.floor(Date.now() / 1000) + 7200, 'NX', 'FIELDS', 1, 'plain');
      await r.call('HSETEX', 'hs', 'EX', 3600, 'FIELDS', 2, 'a', '1', 'b', '2');
      await r.call('HGETEX', 'hs', 'PX', 5_400_000, 'FIELDS', 1, 'a');
      await r.call('HGETEX', 'hs', 'PERSIST', 'FIELDS', 1, 'b');
      await r.call('HSETEX', 'hs2', 'PX', 200, 'FIELDS', 1, 'x', '1');
      await r.call('HGETDEL', 'hf', 'FIELDS', 1, 'gone');
      // A field given a TTL already past: deleted at once.
      await r.hset('hp', 'p', '1', 'q', '2');
      await r.call('HPEXPIREAT', 'hp', Date.now() - 1000, 'FIELDS', 1, 'p');
      // After the short TTLs pass: the source sees them gone (HSETNX sets anew, hs2 is gone with its last field).
      await waitFor('the short field TTLs passed at the source', async () =>
        (await r.hexists('hf', 'short')) === 0 && (await r.exists('hs2')) === 0 ? true : undefined,
      );
      // Set anew after its TTL passed: MONITOR capture places the field's expiration by its hexpired notification.
      await r.hsetnx('hf', 'again', 'set-after-expiry');
      const keys = ['hf', 'hs', 'hs2', 'hp'];
      const want = await fieldState(r, keys);
      assert.deepEqual(Object.keys(want.hf!), ['again', 'long', 'persisted', 'plain']);
      assert.equal(want.hf!.again![0], 'set-after-expiry');
      assert.equal(want.hf!.persisted![1], -1);
      assert.deepEqual(want.hs2, {});
      assert.deepEqual(Object.keys(want.hp!), ['q']);
      const seq = await syncedSource(stack, src);
      // The instant once every write is in the history: in replication mode an anchor then lies between the last
      // write and it, so the time restore is exact however late the agent read (how close anchors follow writes is
      // burst-instants' and the benchmark's question, not this test's).
      const atUs = await serverTimeUs(r);
      await waitForWindow(stack, src.node, atUs);

      const restored = async (req: Omit<RestoreRequest, 'node' | 'spawn'>) => {
        const report = await restore(deps(), { node: src.node, spawn: {}, ...req } as RestoreRequest);
        if (report.pid) spawned.push(report.pid);
        assert.equal(report.server, `redis ${redis8.version}`);
        const c = new Redis(report.url!);
        try {
          return { state: await fieldState(c, keys), report, nowMs: Date.now() };
        } finally {
          c.disconnect();
          if (report.pid) await stopPid(report.pid);
        }
      };
      // Restores are later than the short TTLs: the persisted field must not be lost to them.
      for (const req of [{ toSeq: seq }, { to: atUs }]) {
        const got = await restored(req);
        assert.deepEqual(got.state, want, `restore ${JSON.stringify(req)}: ${JSON.stringify(got.report.warnings)}`);
      }
      // --keep-ttl-relative: every field TTL moves by the same shift as key TTLs (restore time − instant).
      const shifted = await restored({ to: atUs, keepTtlRelative: true });
      const shift = (want.hf!.long![1] as number) - 0;
      const moved = (shifted.state.hf!.long![1] as number) - shift;
      assert.ok(moved > 0, `the long field's TTL moved by ${moved} ms`);
      for (const k of keys)
        for (const [f, [v, t]] of Object.entries(want[k]!)) {
          const [gv, gt] = shifted.state[k]![f]!;
          assert.equal(gv, v);
          assert.equal(t < 0 ? gt : gt - t, t < 0 ? t : moved, `field ${k}.${f} (source TTL ${t}, restored ${gt})`);
        }
    } finally {
      r.disconnect();
      await src.close();
    }
  });
}

for (const m of MATRIX)
  test(`${m.server} ${m.line}: delivery times set inside a stream's DUMP payload restore exactly, deleted entries included`, async () => {
    const server = await startRedisServer({ bin: serverOf(m.server, m.line).bin });
    const r = new Redis(server.url);
    try {
      // Groups made out of name order (the payload holds them sorted), one named like an integer (an int-encoded
      // string), one long (LZF); long values (LZF listpacks); 100 entries pending in one group (a 2-byte PEL count).
      const names = ['zeta', '1234', 'g'.repeat(40), 'alpha'];
      for (const g of names) await r.call('XGROUP', 'CREATE', 's', g, '0', 'MKSTREAM');
      for (let i = 0; i < 120; i++) await r.xadd('s', '*', 'field', `value ${i} ${'x'.repeat(60)}`);
      await r.call('XREADGROUP', 'GROUP', 'zeta', 'c1', 'COUNT', 100, 'STREAMS', 's', '>');
      await r.call('XREADGROUP', 'GROUP', 'alpha', 'c2', 'COUNT', 3, 'STREAMS', 's', '>');
      await r.call('XREADGROUP', 'GROUP', '1234', 'c3', 'COUNT', 2, 'STREAMS', 's', '>');
      await r.call('XREADGROUP', 'GROUP', 'g'.repeat(40), 'c4', 'COUNT', 1, 'STREAMS', 's', '>');
      const ids = ((await r.call('XRANGE', 's', '-', '+')) as [string, string[]][]).map(([id]) => id);
      await r.call('XDEL', 's', ids[1]!); // pending in zeta, alpha and 1234
      await r.pexpire('s', 3_600_000);
      const before = await pendingOf(r, 's');
      const groupsSorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const t1 = Date.now() - 50_000;
      const t2 = Date.now() - 40_000;
      const times = new Map([
        [
          groupsSorted.indexOf('zeta'),
          new Map([
            [rawStreamId(ids[1]!), t1],
            [rawStreamId(ids[99]!), t2],
          ]),
        ],
        [
          groupsSorted.indexOf('1234'),
          new Map([
            [rawStreamId(ids[1]!), t2],
            [rawStreamId(ids[110]!), t1],
          ]),
        ],
      ]);
      const payload = (await r.callBuffer('DUMP', 's')) as Buffer;
      const patched = setPayloadDeliveryTimes(payload, times);
      assert.ok(patched, `the ${m.server} ${m.line} stream payload (type ${payload[0]}) is a layout known here`);
      assert.equal(patched.set, 3, 'three of the four are pending (ids[110] was never delivered in 1234)');
      const expireAt = Number(await r.call('PEXPIRETIME', 's'));
      await r.callBuffer('RESTORE', 's', expireAt, patched.payload, 'REPLACE', 'ABSTTL');
      assert.equal(Number(await r.call('PEXPIRETIME', 's')), expireAt);
      const want = (before as [string, unknown[][]][]).map(([name, pending]) => [
        name,
        pending.map(([id, owner, time, count]) => {
          if (name === 'zeta' && id === ids[1]) return [id, owner, t1, count];
          if (name === 'zeta' && id === ids[99]) return [id, owner, t2, count];
          if (name === '1234' && id === ids[1]) return [id, owner, t2, count];
          return [id, owner, time, count];
        }),
      ]);
      assert.deepEqual(await pendingOf(r, 's'), want);
      const zeta = want.find(([name]) => name === 'zeta') as [string, unknown[]];
      assert.equal(zeta[1].length, 100, 'zeta keeps its 100 pending, the deleted one among them');
    } finally {
      r.disconnect();
      await server.stop();
    }
  });

/** Each pending entry of a group: id, owner, delivery time (ms), delivery count (XINFO STREAM FULL). */
async function pendingOf(r: Redis, key: string): Promise<unknown[]> {
  // COUNT 0: every pending entry (FULL lists 10 per group by default).
  const full = (await r.call('XINFO', 'STREAM', key, 'FULL', 'COUNT', 0)) as unknown[];
  const groups = full[full.indexOf('groups') + 1] as unknown[][];
  return groups.map((g) => [g[g.indexOf('name') + 1], g[g.indexOf('pending') + 1]]);
}

for (const source of ['replication', 'monitor'] as const) {
  test(`redis 8.0, ${source} capture: consumer-group delivery times survive a restore on the source clock (field TTLs in the history)`, async () => {
    const redis8 = serverOf('redis', '8.0');
    const src = await startSource(stack, [], { source, bin: redis8.bin });
    const r = new Redis(src.redis.url);
    try {
      if (source === 'monitor') await src.agent.baseline();
      // A field TTL in the history: the restore loads on a clock frozen before the baseline (restorer/source-clock.ts).
      await r.hset('h', 'f', '1');
      await r.call('HPEXPIRE', 'h', 3_600_000, 'FIELDS', 1, 'f');
      await r.call('XGROUP', 'CREATE', 's', 'g', '$', 'MKSTREAM');
      for (let i = 0; i < 4; i++) await r.xadd('s', '*', 'n', String(i));
      await r.call('XREADGROUP', 'GROUP', 'g', 'c1', 'COUNT', 3, 'STREAMS', 's', '>');
      const [first] = (await r.call('XRANGE', 's', '-', '+', 'COUNT', 1)) as [string, string[]][];
      await r.call('XACK', 's', 'g', first![0]);
      await r.call('XREADGROUP', 'GROUP', 'g', 'c2', 'COUNT', 1, 'STREAMS', 's', '>');
      // The same name and entry ids in db 1, delivered at another time (a client's XCLAIM … TIME): each db keeps its
      // own times (a soak found a delivery in one db setting the time of the same entry in the other).
      const ids = ((await r.call('XRANGE', 's', '-', '+')) as [string, string[]][]).map(([id]) => id);
      await r.select(1);
      await r.call('XGROUP', 'CREATE', 's', 'g', '0', 'MKSTREAM');
      for (const id of ids) await r.xadd('s', id, 'n', 'db1');
      await r.call('XREADGROUP', 'GROUP', 'g', 'c9', 'COUNT', 2, 'STREAMS', 's', '>');
      await r.call('XCLAIM', 's', 'g', 'c9', 0, ids[1]!, 'TIME', Date.now() - 60_000);
      await r.select(0);
      // Moved to another db and back: the entries are found where the stream is now.
      await r.call('SWAPDB', 0, 1);
      await r.call('SWAPDB', 0, 1);
      // A pending entry deleted from its stream stays pending, with its time (XCLAIM could not set it: it would drop it).
      const deleted = ids[ids.length - 1]!;
      await r.call('XDEL', 's', deleted);
      const want = await pendingOf(r, 's');
      assert.equal(((want[0] as unknown[])[1] as unknown[]).length, 3, 'three entries pending, one of them deleted');
      await r.select(1);
      const want1 = await pendingOf(r, 's');
      await r.select(0);
      const seq = await syncedSource(stack, src);
      const report = await restore(deps(), { node: src.node, toSeq: seq, spawn: {} } as RestoreRequest);
      if (report.pid) spawned.push(report.pid);
      const c = new Redis(report.url!);
      try {
        // The deleted entry's time too (set inside the stream's DUMP payload: restorer/stream-payload.ts).
        assert.deepEqual(await pendingOf(c, 's'), want);
        // Moved to a real-clock server, it is persistent when reported: its first AOF written (until then Redis
        // ignores SIGTERM, "Writing initial AOF, can't exit", and a stop ended in SIGKILL after 10 s).
        const persistence = String(await c.call('INFO', 'persistence'));
        assert.match(persistence, /^aof_enabled:1\r?$/m);
        assert.match(persistence, /^aof_rewrite_in_progress:0\r?$/m);
        assert.match(persistence, /^aof_rewrite_scheduled:0\r?$/m);
        assert.ok(
          !report.warnings.some((w) => /deleted from/.test(w)),
          `no entry keeps the load's time: ${JSON.stringify(report.warnings)}`,
        );
        await c.select(1);
        assert.deepEqual(await pendingOf(c, 's'), want1, 'db 1 keeps its own delivery times');
      } finally {
        c.disconnect();
        if (report.pid) await stopPid(report.pid);
      }
    } finally {
      r.disconnect();
      await src.close();
    }
  });
}

/** Each group's consumers with their pending counts (XINFO STREAM FULL), by group. */
async function consumersOf(r: Redis, key: string): Promise<unknown[]> {
  const full = (await r.call('XINFO', 'STREAM', key, 'FULL')) as unknown[];
  const groups = full[full.indexOf('groups') + 1] as unknown[][];
  return groups.map((g) => [
    g[g.indexOf('name') + 1],
    (g[g.indexOf('consumers') + 1] as unknown[][])
      .map((c) => [c[c.indexOf('name') + 1], c[c.indexOf('pel-count') + 1]])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
  ]);
}

for (const m of MATRIX.filter((x) => x.line !== '7.0'))
  for (const attribution of ['monitor', 'off'] as const) {
    test(`${m.server} ${m.line}, replication capture, attribution ${attribution}: consumers a group read created without delivering come back, at every cutoff`, async () => {
      const src = await startSource(stack, [], {
        source: 'replication',
        attribution,
        bin: serverOf(m.server, m.line).bin,
      });
      if (attribution === 'off') assert.equal(src.agent.stats().consumerWatch, 'on', 'the consumer watch runs');
      const r = new Redis(src.redis.url);
      const blocker = new Redis(src.redis.url);
      try {
        await r.call('XGROUP', 'CREATE', 's', 'g', '$', 'MKSTREAM');
        await r.call('XGROUP', 'CREATE', 't', 'g', '$', 'MKSTREAM');
        await r.xadd('s', '*', 'n', '1');
        await r.call('XREADGROUP', 'GROUP', 'g', 'reader', 'COUNT', 1, 'STREAMS', 's', '>');
        // Nothing left to deliver: on Redis 7.2+ and Valkey the stream carries no trace of these consumers.
        await r.call('XREADGROUP', 'GROUP', 'g', 'idle', 'STREAMS', 's', 't', '>', '>');
        await r.call('XREADGROUP', 'GROUP', 'g', 'idle', 'STREAMS', 's', '>');
        await blocker.call('XREADGROUP', 'GROUP', 'g', 'blocked', 'BLOCK', 50, 'STREAMS', 't', '>');
        await r.multi().call('XREADGROUP', 'GROUP', 'g', 'in-tx', 'STREAMS', 's', '>').set('k', 'v').exec();
        // Claims of nothing create their consumer too.
        await r.call('XCLAIM', 's', 'g', 'claimer', 0, '1-0');
        await r.call('XAUTOCLAIM', 't', 'g', 'auto', 0, '0-0');
        // Refused (no such group): no consumer anywhere, and the replay must not fail on it.
        await assert.rejects(r.call('XREADGROUP', 'GROUP', 'nogroup', 'x', 'STREAMS', 's', '>'), /NOGROUP/);
        const want1 = [await consumersOf(r, 's'), await consumersOf(r, 't')];
        // Stored up to here first: without attribution a time cutoff resolves to the last anchor before it.
        await syncedSource(stack, src);
        const t1 = await serverTimeUs(r);
        // Deleted, then created again by the same empty read: it must come back the second time too.
        await r.call('XGROUP', 'DELCONSUMER', 's', 'g', 'idle');
        await r.call('XGROUP', 'DELCONSUMER', 's', 'g', 'in-tx');
        const want2 = [await consumersOf(r, 's'), await consumersOf(r, 't')];
        await syncedSource(stack, src);
        const t2 = await serverTimeUs(r);
        await r.call('XREADGROUP', 'GROUP', 'g', 'idle', 'STREAMS', 's', '>');
        const want3 = [await consumersOf(r, 's'), await consumersOf(r, 't')];
        assert.deepEqual(
          want2[0],
          [
            [
              'g',
              [
                ['claimer', 0],
                ['reader', 1],
              ],
            ],
          ],
          'claimer and reader left on s',
        );
        const seq = await syncedSource(stack, src);
        const cases: [string, Partial<RestoreRequest>, unknown[]][] = [
          ['at the instant before the deletes', { to: t1 }, want1],
          ['after the deletes', { to: t2 }, want2],
          ['at the end', { toSeq: seq }, want3],
        ];
        for (const [what, cutoff, want] of cases) {
          const report = await restore(deps(), { node: src.node, ...cutoff, spawn: {} } as RestoreRequest);
          if (report.pid) spawned.push(report.pid);
          const c = new Redis(report.url!);
          try {
            assert.deepEqual([await consumersOf(c, 's'), await consumersOf(c, 't')], want, what);
          } finally {
            c.disconnect();
            if (report.pid) await stopPid(report.pid);
          }
        }
      } finally {
        r.disconnect();
        blocker.disconnect();
        await src.close();
      }
    });
  }

test('a Redis 8 history with only Redis 7.0 to restore with is refused before any work, naming the line needed', async () => {
  const redis8 = serverOf('redis', '8.0');
  const src = await startSource(stack, [], { source: 'replication', bin: redis8.bin });
  const r = new Redis(src.redis.url);
  try {
    await r.set('k', 'v');
    const seq = await syncedSource(stack, src);
    const only70 = { ...deps(), redisBins: [findExecutable('redis-server')!], discoverServers: false };
    await assert.rejects(
      restore(only70, { node: src.node, toSeq: seq, spawn: {} }),
      /comes from redis 8\.0\.\d+; restoring it needs Redis 8\.0 or a newer line of Redis, and the restore servers here are: redis 7\.0\.\d+/,
    );
    // A 7.0 --target for it is refused too, before anything is written.
    const target = await startSource(stack, [], { source: 'monitor' });
    try {
      await assert.rejects(
        restore(deps(), { node: src.node, toSeq: seq, target: target.redis.url }),
        /runs redis 7\.0\.\d+; this history comes from redis 8\.0\.\d+ .*restore into a redis server of that line or newer/,
      );
    } finally {
      await target.close();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});
