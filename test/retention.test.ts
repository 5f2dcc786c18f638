// Retention with real clickhouse-server and nats-server: old day partitions and superseded baselines (rows and objects)
// go, the baseline the horizon needs and everything after it stay restorable.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { ConfigError } from '../core/errors.js';
import { applyRetention } from '../sink/retention.js';
import { startSink } from '../sink/index.js';
import { sqlString } from '../core/store/sql-literal.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { restoreWindows } from '../core/store/windows.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { baselineToRow, eventToRow } from '../sink/rows.js';
import { rdbsAfter } from './helpers/rdb-steps.js';
import { testClickHouse, testNats } from './helpers/servers.js';
import { waitFor } from './helpers/stack.js';

const DAY_MS = 86_400_000;
const NODE = 'retention-node:6379';
let clickhouse: ServerProcess;
let nats: ServerProcess;
let store: Store;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawnedPids: number[] = [];

before(async () => {
  [clickhouse, nats] = await Promise.all([testClickHouse(), testNats()]);
  store = await openClickHouse(clickhouse.url);
  await store.ensureSchema();
  nc = await connectNats({ url: nats.url, name: 'retention-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-retention-'));
});
after(async () => {
  for (const pid of spawnedPids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await nc?.close();
  await store?.close();
  await Promise.all([clickhouse?.stop(), nats?.stop()]);
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

test('old partitions and superseded baselines go; the baseline at the horizon and everything after it stay restorable', async () => {
  const nowMs = Date.now();
  const epoch = nowMs - 11 * DAY_MS;
  const retentionMs = 4 * DAY_MS;
  // Three baselines: 10 and 6 days ago (both before the 4-day horizon) and 1 day ago.
  const at = [nowMs - 10 * DAY_MS, nowMs - 6 * DAY_MS, nowMs - 1 * DAY_MS].map((ms) => ms * 1_000);
  const rdbs = await rdbsAfter([[['k0', 'zero']], [['k1', 'a']], [['k2', 'b']]]);
  const B = (s: string) => Buffer.from(s);
  const marker = (seq: number, tsUs: number): FlashbackEvent => ({
    node: NODE,
    epoch,
    seq,
    tsUs,
    db: 0,
    client: 'agent',
    kind: 'baseline',
    command: 'BASELINE',
    keys: [],
    args: [B('PUBLISH'), B('__flashback__:marker'), B(`m${seq}`)],
    replay: [],
    tx: 0,
  });
  const set = (seq: number, tsUs: number, k: string, v: string): FlashbackEvent => {
    const args = [B('SET'), B(k), B(v)];
    return {
      node: NODE,
      epoch,
      seq,
      tsUs,
      db: 0,
      client: '127.0.0.1:5000',
      kind: 'command',
      command: 'SET',
      keys: [args[1]!],
      args,
      replay: args,
      tx: 0,
    };
  };
  // Each baseline's RDB holds the events before its marker.
  const events = [
    marker(1, at[0]!),
    set(2, at[0]! + 1_000_000, 'k1', 'a'),
    marker(3, at[1]!),
    set(4, at[1]! + 1_000_000, 'k2', 'b'),
    marker(5, at[2]!),
    set(6, at[2]! + 1_000_000, 'k3', 'c'),
  ];
  await store.insertEvents(events.map(eventToRow));
  const baselines = [1, 3, 5].map((seq, i) => ({
    node: NODE,
    epoch,
    seq,
    tsUs: at[i]!,
    markerId: `m${seq}`,
    rdbObject: `retention/${epoch}/m${seq}.rdb`,
    tailObject: `retention/${epoch}/m${seq}.tail`,
    rdbBytes: rdbs[i]!.length,
    tailBytes: 0,
    keys: i + 1,
    digest: '',
  }));
  for (const [i, b] of baselines.entries()) {
    await objects.putBlob({ name: b.rdbObject }, rdbs[i]!);
    await objects.putBlob({ name: b.tailObject }, new Uint8Array(0));
  }
  await store.insertBaselines(baselines.map(baselineToRow));

  const windowsBefore = await restoreWindows(store, NODE);
  assert.deepEqual(
    windowsBefore.map((w) => [w.fromSeq, w.toSeq]),
    [[1, 6]],
  );
  const partitions = async () =>
    (
      await store.query<{ partition: string }>(
        `SELECT DISTINCT partition FROM system.parts WHERE database = 'flashback' AND table = 'events' AND active ORDER BY partition`,
      )
    ).map((p) => p.partition);
  const day = (tsUs: number) => new Date(tsUs / 1_000).toISOString().slice(0, 10);
  // 18.16 names a toDate partition 'YYYY-MM-DD' (the test server runs in UTC), as retention assumes.
  assert.deepEqual(await partitions(), at.map(day));

  const result = await applyRetention({ store, objects, retentionMs, nowMs });
  assert.deepEqual(result.keepFromTsUs, { [NODE]: at[1] });
  assert.deepEqual(result.droppedPartitions, [day(at[0]!)]);
  assert.equal(result.deletedBaselines, 1);
  assert.deepEqual([result.deletedObjects, result.failed, result.heldObjects], [2, [], []]);

  assert.deepEqual(await partitions(), [day(at[1]!), day(at[2]!)]);
  const seqs = await store.query<{ seq: number }>(
    `SELECT seq FROM flashback.events WHERE node = ${sqlString(NODE)} ORDER BY seq`,
  );
  assert.deepEqual(
    seqs.map((x) => Number(x.seq)),
    [3, 4, 5, 6],
    'events of the dropped day are gone, the rest stay',
  );
  // ALTER … DELETE is a mutation: it completes in the background.
  await waitFor('the superseded baseline row deleted', async () => {
    const rows = await store.query<{ seq: number }>(
      `SELECT seq FROM flashback.baselines WHERE node = ${sqlString(NODE)} ORDER BY seq`,
    );
    return rows.length === 2 ? rows.map((x) => Number(x.seq)) : undefined;
  }).then((kept) => assert.deepEqual(kept, [3, 5]));
  assert.equal(await objects.get(baselines[0]!.rdbObject), null, 'the old RDB object is deleted');
  assert.equal(await objects.get(baselines[0]!.tailObject), null, 'the old tail object is deleted');
  assert.equal((await objects.info(baselines[0]!.rdbObject))?.deleted ?? true, true);
  for (const b of baselines.slice(1)) {
    assert.equal((await objects.info(b.rdbObject))?.deleted, false, `${b.rdbObject} kept`);
    assert.equal((await objects.info(b.tailObject))?.deleted, false, `${b.tailObject} kept`);
  }

  const windows = await restoreWindows(store, NODE);
  assert.deepEqual(
    windows.map((w) => [w.fromSeq, w.fromTsUs, w.toSeq]),
    [[3, at[1], 6]],
    'the window now starts at the kept baseline',
  );

  const deps = { events: clickHouseEventStore(store, store.client), objects, instancesDir };
  const dataset = async (to: number): Promise<Record<string, string>> => {
    const report = await restore(deps, { node: NODE, to, spawn: {} });
    if (report.pid) spawnedPids.push(report.pid);
    const r = new Redis(report.url!);
    try {
      const keys = (await r.keys('*')).sort();
      const values = keys.length > 0 ? await r.mget(...keys) : [];
      return Object.fromEntries(keys.map((k, i) => [k, values[i]!]));
    } finally {
      r.disconnect();
      if (report.pid) process.kill(report.pid, 'SIGTERM');
    }
  };
  assert.deepEqual(
    await dataset(windows[0]!.fromTsUs),
    { k0: 'zero', k1: 'a' },
    'restore to the window start: the kept baseline',
  );
  assert.deepEqual(
    await dataset(at[2]! + 1_000_000),
    { k0: 'zero', k1: 'a', k2: 'b', k3: 'c' },
    'restore to the last event',
  );
  await assert.rejects(
    restore(deps, { node: NODE, to: at[0]! + 1_000_000, spawn: {} }),
    /window/i,
    'a time before the kept baseline is no longer restorable',
  );

  // A second pass with nothing new past the horizon changes nothing.
  const again = await applyRetention({ store, objects, retentionMs, nowMs });
  assert.deepEqual(again, {
    keepFromTsUs: { [NODE]: at[1] },
    droppedPartitions: [],
    deletedBaselines: 0,
    deletedObjects: 0,
    failed: [],
    heldObjects: [],
  });
});

test('one server: the sink refuses --clickhouse-shards, and --retention-interval 0 runs no pass', async () => {
  await assert.rejects(
    startSink({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, clickhouseShardUrls: [clickhouse.url] }),
    (err: Error) =>
      err instanceof ConfigError &&
      /--clickhouse-shards is for the sharded layout, but flashback\.events on .* is a ReplacingMergeTree table/.test(
        err.message,
      ),
  );
  await assert.rejects(
    startSink({
      natsUrl: nats.url,
      clickhouseUrl: clickhouse.url,
      clickhouseShardUrls: [clickhouse.url],
      retentionIntervalMs: 0,
    }),
    (err: Error) => err instanceof ConfigError && /--retention-interval 0 turns off/.test(err.message),
  );
  // An old day partition that a pass would drop stays while the sink runs without passes.
  const old = Date.now() - 30 * DAY_MS;
  const node = `retention-off-${randomUUID()}`;
  await store.insertEvents([
    eventToRow({
      node,
      epoch: old,
      seq: 1,
      tsUs: old * 1_000,
      db: 0,
      client: '127.0.0.1:5000',
      kind: 'command',
      command: 'SET',
      keys: [Buffer.from('k')],
      args: [Buffer.from('SET'), Buffer.from('k'), Buffer.from('v')],
      replay: [Buffer.from('SET'), Buffer.from('k'), Buffer.from('v')],
      tx: 0,
    }),
  ]);
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const sink = await startSink({
    natsUrl: nats.url,
    clickhouseUrl: clickhouse.url,
    retentionMs: DAY_MS,
    retentionIntervalMs: 0,
    logger,
  });
  try {
    const started = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'sink started');
    assert.equal(started?.retention, 'off');
  } finally {
    await sink.close();
  }
  assert.ok(!lines.some((l) => l.includes('retention applied')), 'no pass ran');
  const rows = await store.query<{ n: number }>(
    `SELECT count() AS n FROM flashback.events WHERE node = ${sqlString(node)}`,
  );
  assert.deepEqual(rows, [{ n: 1 }]);
});
