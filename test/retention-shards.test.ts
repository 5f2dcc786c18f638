// Retention on two ClickHouse 18.16 shards behind Distributed tables (issue 17): old day partitions and superseded
// baselines go from every shard's local tables, kept baselines, their objects and restores stay; a shard whose drops
// fail holds every object back until a pass succeeds on all; with replicas, drops given to one reach the other; the sink
// and `flashback sink` check --clickhouse-shards.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import { pino } from 'pino';
import yargs from 'yargs';
import { builder as sinkBuilder, sinkOptionsFrom } from '../cli/commands/sink.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { ConfigError } from '../core/errors.js';
import { CLICKHOUSE_API_USER, CLICKHOUSE_SQL_USER } from '../core/servers/clickhouse-server.js';
import { startClickHouseShards, type ClickHouseShards } from '../core/servers/clickhouse-shards.js';
import { startZooKeeper } from '../core/servers/zookeeper-server.js';
import type { NatsServerProcess } from '../core/servers/nats-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { sqlString } from '../core/store/sql-literal.js';
import { restoreWindows } from '../core/store/windows.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { startSink } from '../sink/index.js';
import { applyRetention, type RetentionResult } from '../sink/retention.js';
import { openRetentionShards } from '../sink/retention-shards.js';
import { baselineToRow, eventToRow } from '../sink/rows.js';
import { cli } from './helpers/cli.js';
import { rdbsAfter } from './helpers/rdb-steps.js';
import { testClickHouse, testNats } from './helpers/servers.js';
import { waitFor } from './helpers/stack.js';

const DAY_MS = 86_400_000;
const RETENTION_MS = 4 * DAY_MS;
const USERS = { adminPassword: `admin-${randomUUID()}`, apiPassword: `api-${randomUUID()}`, sqlPassword: 'sql-pw' };
const LOCAL_TABLES = ['events_local', 'event_rates_local', 'event_marks_local', 'event_seqs_local', 'baselines_local'];

let shards: ClickHouseShards;
let nats: NatsServerProcess;
/** An admin store on each shard; each reads the whole cluster through the Distributed tables. */
let stores: Store[];
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
/** RDBs of a real redis-server after each baseline's writes: k0; k0 k1; k0 k1 k2. */
let rdbs: Buffer[];

before(async () => {
  [shards, nats] = await Promise.all([startClickHouseShards({ shards: 2, users: USERS }), testNats()]);
  stores = await Promise.all(shards.servers.map((s) => openClickHouse(s.url, { password: USERS.adminPassword })));
  for (const s of stores) for (const q of shardedSchemaStatements(s.version, shards.cluster)) await s.command(q);
  nc = await connectNats({ url: nats.url, name: 'retention-shards-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-retention-shards-'));
  rdbs = await rdbsAfter([[['k0', 'zero']], [['k1', 'a']], [['k2', 'b']]]);
});
after(async () => {
  await nc?.close();
  for (const s of stores ?? []) await s.close();
  await Promise.all([shards?.stop(), nats?.stop()]);
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

/** A node id whose rows the Distributed tables put on shard `shard` (1-based): cityHash64(node) % 2 picks it. */
async function nodeOnShard(shard: number, prefix: string): Promise<string> {
  for (let i = 0; ; i++) {
    const node = `${prefix}-${i}`;
    const [r] = await stores[0]!.query<{ s: number }>(`SELECT cityHash64(${sqlString(node)}) % 2 AS s`);
    if (Number(r!.s) + 1 === shard) return node;
  }
}

/** Every local table of every shard emptied, so each test sees only its own days. */
async function clearShards(): Promise<void> {
  for (const s of stores) for (const t of LOCAL_TABLES) await s.command(`TRUNCATE TABLE flashback.${t}`);
}

const B = (s: string) => Buffer.from(s);

/**
 * A node's history through the Distributed tables: baselines 10, 6 and 1 day(s) before `nowMs` (each RDB holding the
 * events before its marker), a SET after each, and a FLUSHDB of db 1 on the oldest day (a timeline mark).
 */
async function writeHistory(node: string, nowMs: number, via: Store = stores[0]!) {
  const epoch = nowMs - 11 * DAY_MS;
  const at = [nowMs - 10 * DAY_MS, nowMs - 6 * DAY_MS, nowMs - 1 * DAY_MS].map((ms) => ms * 1_000);
  const base = { node, epoch, db: 0, client: '127.0.0.1:5000', tx: 0 };
  const marker = (seq: number, tsUs: number): FlashbackEvent => ({
    ...base,
    seq,
    tsUs,
    client: 'agent',
    kind: 'baseline',
    command: 'BASELINE',
    keys: [],
    args: [B('PUBLISH'), B('__flashback__:marker'), B(`m${seq}`)],
    replay: [],
  });
  const set = (seq: number, tsUs: number, k: string, v: string): FlashbackEvent => {
    const args = [B('SET'), B(k), B(v)];
    return { ...base, seq, tsUs, kind: 'command', command: 'SET', keys: [args[1]!], args, replay: args };
  };
  const flushdb: FlashbackEvent = {
    ...base,
    seq: 3,
    tsUs: at[0]! + 2_000_000,
    db: 1,
    kind: 'command',
    command: 'FLUSHDB',
    keys: [],
    args: [B('FLUSHDB')],
    replay: [B('FLUSHDB')],
  };
  const events = [
    marker(1, at[0]!),
    set(2, at[0]! + 1_000_000, 'k1', 'a'),
    flushdb,
    marker(4, at[1]!),
    set(5, at[1]! + 1_000_000, 'k2', 'b'),
    marker(6, at[2]!),
    set(7, at[2]! + 1_000_000, 'k3', 'c'),
  ];
  await via.insertEvents(events.map(eventToRow));
  const baselines = [1, 4, 6].map((seq, i) => ({
    node,
    epoch,
    seq,
    tsUs: at[i]!,
    markerId: `m${seq}`,
    rdbObject: `${node}/${epoch}/m${seq}.rdb`,
    tailObject: `${node}/${epoch}/m${seq}.tail`,
    rdbBytes: rdbs[i]!.length,
    tailBytes: 0,
    keys: i + 1,
    digest: '',
  }));
  for (const [i, b] of baselines.entries()) {
    await objects.putBlob({ name: b.rdbObject }, rdbs[i]!);
    await objects.putBlob({ name: b.tailObject }, new Uint8Array(0));
  }
  await via.insertBaselines(baselines.map(baselineToRow));
  return { at, baselines };
}

const day = (tsUs: number) => new Date(tsUs / 1_000).toISOString().slice(0, 10);

/** Active day partitions of a local table on one shard. */
async function partitions(s: Store, table: string): Promise<string[]> {
  const rows = await s.query<{ partition: string }>(
    `SELECT DISTINCT partition FROM system.parts WHERE database = 'flashback' AND table = ${sqlString(table)} AND active ORDER BY partition`,
  );
  return rows.map((p) => p.partition);
}

/** Each server's partitions of the four day-partitioned tables retention drops. */
async function shardDays(servers: readonly Store[] = stores): Promise<Record<string, string[]>[]> {
  return Promise.all(
    servers.map(async (s) =>
      Object.fromEntries(
        await Promise.all(
          ['events_local', 'event_rates_local', 'event_marks_local', 'event_seqs_local'].map(
            async (t) => [t, await partitions(s, t)] as const,
          ),
        ),
      ),
    ),
  );
}

/** Seqs of a node's baseline rows in one shard's local table, once its mutations are done. */
async function localBaselineSeqs(s: Store, node: string, expected: number): Promise<number[]> {
  return waitFor(`${expected} baseline rows of ${node} on ${s.url}`, async () => {
    const rows = await s.query<{ seq: number }>(
      `SELECT seq FROM flashback.baselines_local WHERE node = ${sqlString(node)} ORDER BY seq`,
    );
    return rows.length === expected ? rows.map((r) => Number(r.seq)) : undefined;
  });
}

async function exists(name: string): Promise<boolean> {
  const info = await objects.info(name);
  return info !== null && !info.deleted;
}

/** The partitions {@link shardDays} gives for events on days `tsUs`, timeline marks on days `marks`. */
const tableDays = (tsUs: number[], marks: number[]) => ({
  events_local: tsUs.map(day),
  event_rates_local: tsUs.map(day),
  event_marks_local: marks.map(day),
  event_seqs_local: tsUs.map(day),
});

test("old day partitions and superseded baselines go from every shard's local tables; kept baselines, their objects and restores stay", async () => {
  await clearShards();
  const nowMs = Date.now();
  const id = randomUUID().slice(0, 8);
  // Two nodes on shard 1, one on shard 2.
  const nodes = [
    await nodeOnShard(1, `ret-a-${id}`),
    await nodeOnShard(2, `ret-b-${id}`),
    await nodeOnShard(1, `ret-c-${id}`),
  ];
  const histories = [];
  for (const n of nodes) histories.push(await writeHistory(n, nowMs));
  const { at } = histories[0]!;
  const placed = await Promise.all(
    stores.map(async (s) =>
      (await s.query<{ node: string }>('SELECT DISTINCT node FROM flashback.events_local ORDER BY node')).map(
        (r) => r.node,
      ),
    ),
  );
  assert.deepEqual(placed, [[nodes[0], nodes[2]].sort(), [nodes[1]]], 'nodes on both shards');
  // The oldest day holds the FLUSHDB, the only timeline mark.
  assert.deepEqual(await shardDays(), [tableDays(at, [at[0]!]), tableDays(at, [at[0]!])]);

  const result = await applyRetention({ store: stores[0]!, shards: stores, objects, retentionMs: RETENTION_MS, nowMs });
  assert.deepEqual(result, {
    keepFromTsUs: Object.fromEntries(nodes.map((n) => [n, at[1]])),
    droppedPartitions: [day(at[0]!)],
    deletedBaselines: 3,
    deletedObjects: 6,
    failed: [],
    heldObjects: [],
  } satisfies RetentionResult);

  const kept = tableDays([at[1]!, at[2]!], []);
  assert.deepEqual(await shardDays(), [kept, kept], 'the old day is gone from each local table of both shards');
  // ALTER … DELETE is a mutation: it completes in the background.
  for (const [i, n] of nodes.entries())
    assert.deepEqual(await localBaselineSeqs(stores[i === 1 ? 1 : 0]!, n, 2), [4, 6], `baselines of ${n}`);
  for (const { baselines } of histories) {
    assert.equal(await exists(baselines[0]!.rdbObject), false, `${baselines[0]!.rdbObject} deleted`);
    assert.equal(await exists(baselines[0]!.tailObject), false, `${baselines[0]!.tailObject} deleted`);
    for (const b of baselines.slice(1)) {
      assert.equal(await exists(b.rdbObject), true, `${b.rdbObject} kept`);
      assert.equal(await exists(b.tailObject), true, `${b.tailObject} kept`);
    }
  }

  // Through the Distributed tables of either server: what is left, the windows, and restores.
  for (const n of nodes) {
    const seqs = await stores[1]!.query<{ seq: number }>(
      `SELECT seq FROM flashback.events WHERE node = ${sqlString(n)} ORDER BY seq`,
    );
    assert.deepEqual(
      seqs.map((x) => Number(x.seq)),
      [4, 5, 6, 7],
    );
    const windows = await restoreWindows(stores[1]!, n);
    assert.deepEqual(
      windows.map((w) => [w.fromSeq, w.fromTsUs, w.toSeq]),
      [[4, at[1], 7]],
      `the window of ${n} starts at its kept baseline`,
    );
  }
  const deps = { events: clickHouseEventStore(stores[0]!, stores[0]!.client), objects, instancesDir };
  const dataset = async (node: string, to: number): Promise<Record<string, string>> => {
    const report = await restore(deps, { node, to, spawn: {} });
    try {
      const r = new Redis(report.url!);
      try {
        const keys = (await r.keys('*')).sort();
        const values = keys.length > 0 ? await r.mget(...keys) : [];
        return Object.fromEntries(keys.map((k, i) => [k, values[i]!]));
      } finally {
        r.disconnect();
      }
    } finally {
      if (report.pid) await stopPid(report.pid);
    }
  };
  for (const n of [nodes[0]!, nodes[1]!]) {
    assert.deepEqual(await dataset(n, at[1]!), { k0: 'zero', k1: 'a' }, `${n} at its window start`);
    assert.deepEqual(
      await dataset(n, at[2]! + 1_000_000),
      { k0: 'zero', k1: 'a', k2: 'b', k3: 'c' },
      `${n} at its last event`,
    );
    await assert.rejects(
      restore(deps, { node: n, to: at[0]! + 1_000_000, spawn: {} }),
      /window/i,
      'a time before the kept baseline is no longer restorable',
    );
  }

  const again = await applyRetention({ store: stores[1]!, shards: stores, objects, retentionMs: RETENTION_MS, nowMs });
  assert.deepEqual(
    [again.droppedPartitions, again.deletedBaselines, again.deletedObjects, again.failed, again.heldObjects],
    [[], 0, 0, [], []],
    'a second pass finds nothing more',
  );
});

test('a shard that cannot answer stops the pass with nothing dropped; one whose drops fail holds every object back until a pass succeeds on all', async () => {
  await clearShards();
  const nowMs = Date.now();
  const id = randomUUID().slice(0, 8);
  const [a, b] = [await nodeOnShard(1, `hold-a-${id}`), await nodeOnShard(2, `hold-b-${id}`)];
  const ha = await writeHistory(a, nowMs);
  const hb = await writeHistory(b, nowMs);
  const { at } = ha;
  const all = [...ha.baselines, ...hb.baselines].flatMap((x) => [x.rdbObject, x.tailObject]);
  const shard2 = shards.servers[1]!.url;

  // Shard 2 through a user that may not change settings: its reads fail (the store sends distributed_product_mode).
  const sqlUser = await openClickHouse(shard2, { user: CLICKHOUSE_SQL_USER, password: USERS.sqlPassword });
  try {
    await assert.rejects(
      applyRetention({ store: stores[0]!, shards: [stores[0]!, sqlUser], objects, retentionMs: RETENTION_MS, nowMs }),
      /readonly/i,
    );
  } finally {
    await sqlUser.close();
  }
  assert.deepEqual(
    await shardDays(),
    [tableDays(at, [at[0]!]), tableDays(at, [at[0]!])],
    'nothing dropped on either shard',
  );
  assert.deepEqual(await localBaselineSeqs(stores[0]!, a, 3), [1, 4, 6]);
  for (const name of all) assert.equal(await exists(name), true, `${name} kept`);

  // Shard 2 through a read-only user: it answers, then refuses the drops. Shard 1 drops its part.
  const apiUser = await openClickHouse(shard2, { user: CLICKHOUSE_API_USER, password: USERS.apiPassword });
  let first: RetentionResult;
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  try {
    first = await applyRetention({
      store: stores[0]!,
      shards: [stores[0]!, apiUser],
      objects,
      retentionMs: RETENTION_MS,
      nowMs,
      logger,
    });
    assert.deepEqual(first.failed, [apiUser.url]);
  } finally {
    await apiUser.close();
  }
  const oldA = [ha.baselines[0]!.rdbObject, ha.baselines[0]!.tailObject];
  assert.deepEqual(
    [first.droppedPartitions, first.deletedBaselines, first.deletedObjects, first.heldObjects],
    [[day(at[0]!)], 1, 0, oldA],
  );
  const warned = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 40);
  assert.equal(warned?.server, apiUser.url);
  assert.match(String(warned?.msg), /no baseline object is deleted this pass/);
  assert.ok(!lines.some((l) => l.includes(USERS.apiPassword) || l.includes(USERS.adminPassword)), 'no password logged');
  const kept = tableDays([at[1]!, at[2]!], []);
  assert.deepEqual(await shardDays(), [kept, tableDays(at, [at[0]!])], 'shard 1 dropped its old day, shard 2 kept it');
  assert.deepEqual(await localBaselineSeqs(stores[0]!, a, 2), [4, 6]);
  assert.deepEqual(await localBaselineSeqs(stores[1]!, b, 3), [1, 4, 6]);
  for (const name of all) assert.equal(await exists(name), true, `${name} still there: a shard failed`);

  // The next pass, on both shards, with what the first held back.
  const second = await applyRetention({
    store: stores[1]!,
    shards: stores,
    objects,
    retentionMs: RETENTION_MS,
    nowMs,
    heldObjects: first.heldObjects,
  });
  assert.deepEqual(
    [second.droppedPartitions, second.deletedBaselines, second.deletedObjects, second.failed, second.heldObjects],
    [[day(at[0]!)], 1, 4, [], []],
  );
  assert.deepEqual(await shardDays(), [kept, kept]);
  assert.deepEqual(await localBaselineSeqs(stores[1]!, b, 2), [4, 6]);
  for (const h of [ha, hb])
    for (const [i, x] of h.baselines.entries())
      for (const name of [x.rdbObject, x.tailObject]) assert.equal(await exists(name), i > 0, name);
});

test('replicated recipe: the drops on one replica of a shard reach the other through ZooKeeper; one replica per shard is the list', async () => {
  const zookeeper = await startZooKeeper();
  const replicas = await startClickHouseShards({
    shards: 1,
    replicas: 2,
    zookeeper: { host: zookeeper.host, port: zookeeper.port },
  });
  const both = await Promise.all(replicas.servers.map((s) => openClickHouse(s.url)));
  try {
    for (const s of both)
      for (const q of shardedSchemaStatements(s.version, replicas.cluster, { replicated: true })) await s.command(q);
    const [r1, r2] = both as [Store, Store];
    await assert.rejects(
      openRetentionShards({ store: r1, clickhouseUrl: r1.url, urls: replicas.servers.map((s) => s.url) }),
      /--clickhouse-shards names 2 server\(s\), but cluster "flashback" has 1 shards/,
    );
    const listed = await openRetentionShards({ store: r1, clickhouseUrl: r1.url, urls: [replicas.servers[1]!.url] });
    assert.deepEqual(
      listed?.map((s) => s.url),
      [r2.url],
    );
    for (const s of listed ?? []) await s.close();

    const nowMs = Date.now();
    const node = `replicated-${randomUUID().slice(0, 8)}`;
    const { at, baselines } = await writeHistory(node, nowMs, r1);
    const full = tableDays(at, [at[0]!]);
    // Replica 2 fetches the parts replica 1 took.
    await waitFor('replica 2 holding every row', async () => {
      const [n] = await r2.query<{ n: number }>('SELECT count() AS n FROM flashback.baselines_local');
      return Number(n!.n) === 3 && JSON.stringify(await shardDays([r2])) === JSON.stringify([full]) ? true : undefined;
    });

    const result = await applyRetention({ store: r2, shards: [r1], objects, retentionMs: RETENTION_MS, nowMs });
    assert.deepEqual(
      [result.droppedPartitions, result.deletedBaselines, result.deletedObjects, result.failed],
      [[day(at[0]!)], 1, 2, []],
    );
    const kept = JSON.stringify([tableDays([at[1]!, at[2]!], [])]);
    await waitFor('the old day gone on replica 2 too', async () =>
      JSON.stringify(await shardDays([r2])) === kept ? true : undefined,
    );
    assert.deepEqual(await shardDays([r1]), JSON.parse(kept));
    for (const s of both) assert.deepEqual(await localBaselineSeqs(s, node, 2), [4, 6], `baselines on ${s.url}`);
    assert.equal(await exists(baselines[0]!.rdbObject), false);
    assert.equal(await exists(baselines[1]!.rdbObject), true);
  } finally {
    for (const s of both) await s.close();
    await replicas.stop();
    await zookeeper.stop();
  }
});

test('the sink checks --clickhouse-shards against the cluster: missing, too few, one shard twice, a server without the local tables, a malformed URL', async () => {
  const main = shards.servers[0]!.url.replace('//', `//default:${USERS.adminPassword}@`);
  const [url1, url2] = shards.servers.map((s) => s.url) as [string, string];
  const refused = async (clickhouseShardUrls: string[], pattern: RegExp) => {
    const err = await startSink({ natsUrl: nats.url, clickhouseUrl: main, clickhouseShardUrls }).then(
      async (sink) => {
        await sink.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    assert.ok(err instanceof ConfigError, `ConfigError for ${JSON.stringify(clickhouseShardUrls)}: ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes(USERS.adminPassword), 'no password in the message');
  };
  await refused(
    [],
    /flashback\.events on .* is Distributed over cluster "flashback" \(2 shards\).*--clickhouse-shards http:\/\/shard1:8123,http:\/\/shard2:8123/,
  );
  await refused([url1], /--clickhouse-shards names 1 server\(s\), but cluster "flashback" has 2 shards/);
  await refused([url2, url2], /--clickhouse-shards: .* and .* are both shard 2 of cluster "flashback"/);
  await refused([url1, 'localhost:8123'], /--clickhouse-shards: ClickHouse URL "localhost:8123" is not HTTP/);
  const plain = await testClickHouse();
  try {
    // Without credentials of its own a shard URL logs in as --clickhouse does, which this server refuses.
    await refused([url1, plain.url], /--clickhouse-shards: ClickHouse at .* as default refused the login/);
    await refused(
      [url1, plain.url.replace('//', '//default@')],
      /--clickhouse-shards: .* has no flashback\.events_local, .*flashback\.baselines_local; each URL must be a shard server/,
    );
  } finally {
    await plain.stop();
  }

  // Retention off: no shard list needed. In order, with credentials from --clickhouse: the sink starts.
  const off = await startSink({ natsUrl: nats.url, clickhouseUrl: main, retentionIntervalMs: 0 });
  await off.close();
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const sink = await startSink({
    natsUrl: nats.url,
    clickhouseUrl: main,
    clickhouseShardUrls: [url2, url1],
    retentionMs: 30 * DAY_MS,
    logger,
  });
  await sink.close();
  const started = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'sink started');
  assert.deepEqual(started?.retentionShards, [`${url1} as default`, `${url2} as default`], 'in shard order');
  assert.ok(!lines.some((l) => l.includes(USERS.adminPassword)), 'no password logged');
});

test('flashback sink: --retention, --retention-interval and --clickhouse-shards reach the sink; a wrong shard list is one clear line', async () => {
  const parse = (args: string[]) => sinkOptionsFrom(sinkBuilder(yargs()).parseSync(args) as never);
  const o = parse([
    '--retention',
    '3d',
    '--retention-interval',
    '10m',
    '--clickhouse-shards',
    ' http://s1:8123, http://s2:8123 ,',
  ]);
  assert.deepEqual(
    [o.retentionMs, o.retentionIntervalMs, o.clickhouseShardUrls],
    [3 * DAY_MS, 600_000, ['http://s1:8123', 'http://s2:8123']],
  );
  const defaults = parse([]);
  assert.deepEqual(
    [defaults.retentionMs, defaults.retentionIntervalMs, defaults.clickhouseShardUrls],
    [7 * DAY_MS, 3_600_000, []],
  );
  assert.throws(() => parse(['--retention', 'soon']), /--retention "soon" is not a duration/);

  const main = shards.servers[0]!.url.replace('//', `//default:${USERS.adminPassword}@`);
  const r = await cli([
    'sink',
    '--nats',
    nats.url,
    '--clickhouse',
    main,
    '--clickhouse-shards',
    shards.servers[1]!.url,
    '--retention',
    '2d',
  ]);
  assert.notEqual(r.code, 0);
  const out = r.stderr.trim().split('\n');
  assert.equal(out.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(out[0]!, /^flashback: --clickhouse-shards names 1 server\(s\), but cluster "flashback" has 2 shards/);
  assert.ok(!(r.stdout + r.stderr).includes(USERS.adminPassword), 'no password printed');
  const bad = await cli(['sink', '--retention-interval', 'often']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--retention-interval "often" is not a duration/);
});
