// The replicated recipe: one shard of two ClickHouse 18.16 replicas (ReplicatedReplacingMergeTree through Debian's
// ZooKeeper) behind the Distributed tables. Under write load one replica is killed (-9): capture and sink go on, a
// restore while it is down is exact, and once back it holds every row; nothing lost, no hole, one epoch.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { silentLogger } from '../core/log.js';
import { startClickHouseShards, type ClickHouseShards } from '../core/servers/clickhouse-shards.js';
import type { NatsServerProcess } from '../core/servers/nats-server.js';
import { stopPid, type ServerProcess } from '../core/servers/server-process.js';
import { startZooKeeper } from '../core/servers/zookeeper-server.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { startSink, type Sink } from '../sink/index.js';
import { testNats } from './helpers/servers.js';
import { startSource, syncedSource, waitFor, waitForEvents, type Source } from './helpers/stack.js';
import { writeLoad } from './helpers/write-load.js';

let zookeeper: ServerProcess;
let replicas: ClickHouseShards;
let nats: NatsServerProcess;
/** The store on replica 1, which the sink writes through and which stays up. */
let store: Store;
let sink: Sink;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;

before(async () => {
  [zookeeper, nats] = await Promise.all([startZooKeeper(), testNats()]);
  replicas = await startClickHouseShards({
    shards: 1,
    replicas: 2,
    zookeeper: { host: zookeeper.host, port: zookeeper.port },
  });
  for (const s of replicas.servers) {
    const st = await openClickHouse(s.url);
    for (const q of shardedSchemaStatements(st.version, replicas.cluster, { replicated: true })) await st.command(q);
    await st.close();
  }
  store = await openClickHouse(replicas.servers[0]!.url);
  // One replica per shard is retention's shard list: its drops reach the other replica through ZooKeeper.
  sink = await startSink({
    natsUrl: nats.url,
    clickhouseUrl: store.url,
    clickhouseShardUrls: [replicas.servers[0]!.url],
    logger: silentLogger,
    flushIntervalMs: 50,
  });
  nc = await connectNats({ url: nats.url, name: 'clickhouse-replicas-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-replicas-'));
});
after(async () => {
  await sink?.close();
  await nc?.close();
  await store?.close();
  await replicas?.stop();
  await Promise.all([zookeeper?.stop(), nats?.stop()]);
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

async function stored(node: string): Promise<number> {
  const rows = await store.query<{ n: number }>(
    `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(node)}`,
  );
  return Number(rows[0]?.n ?? 0);
}

async function progress(node: string, more: number, what: string): Promise<void> {
  const from = await stored(node);
  await waitForEvents({ store }, node, from + more, 60_000).catch((err: unknown) => {
    throw new Error(`capture did not go on ${what}: ${String(err)}`);
  });
}

/** Restores the last stored seq and compares its digest with the source's (writer paused). */
async function restoreMatches(src: Source, what: string): Promise<number> {
  const r = new Redis(src.redis.url);
  try {
    const digest = String(await r.call('DEBUG', 'DIGEST'));
    const seq = await syncedSource({ store }, src);
    const report = await restore(
      { events: clickHouseEventStore(store, store.client), objects, instancesDir },
      { node: src.node, toSeq: seq, spawn: {} },
    );
    try {
      const restored = new Redis(report.url!);
      try {
        assert.equal(String(await restored.call('DEBUG', 'DIGEST')), digest, `restore ${what}`);
      } finally {
        restored.disconnect();
      }
    } finally {
      if (report.pid) await stopPid(report.pid);
    }
    return seq;
  } finally {
    r.disconnect();
  }
}

test('kill one ClickHouse replica under write load: capture and restores go on; back, it holds every row', async () => {
  const src = await startSource({ nats }, [], { source: 'replication' });
  const load = writeLoad(src.redis.url);
  try {
    const epoch = src.agent.stats().epoch;
    await progress(src.node, 2_000, 'before the kill');
    await replicas.kill(1);
    await progress(src.node, 3_000, 'with replica 2 killed');
    const release = await load.pause();
    await restoreMatches(src, 'with replica 2 down');
    release();
    await progress(src.node, 1_000, 'after the restore');
    const back = await replicas.restart(1);
    await progress(src.node, 2_000, 'after replica 2 came back');
    await load.stop();
    const last = await restoreMatches(src, 'at the end');

    // Replica 2 fetches what it missed from replica 1 (ZooKeeper's replication log).
    const other = await openClickHouse(back.url);
    try {
      await waitFor(
        'replica 2 to hold every event',
        async () => {
          await other.command('SYSTEM SYNC REPLICA flashback.events_local');
          const [r] = await other.query<{ u: number }>(
            `SELECT uniqExact(seq) AS u FROM flashback.events_local WHERE node = ${sqlString(src.node)}`,
          );
          return Number(r?.u) >= last ? true : undefined;
        },
        60_000,
      );
      // Up to the last restore's seq: the idle agent goes on storing a heartbeat a second, and the two replicas are
      // read one after the other.
      const facts = async (s: Store) => {
        await s.command('OPTIMIZE TABLE flashback.events_local FINAL');
        const [r] = await s.query<{ n: number; u: number; lo: number; hi: number; e: number }>(
          `SELECT count() AS n, uniqExact(seq) AS u, min(seq) AS lo, max(seq) AS hi, uniqExact(epoch) AS e FROM flashback.events_local WHERE node = ${sqlString(src.node)} AND seq <= ${last}`,
        );
        return { n: Number(r!.n), u: Number(r!.u), lo: Number(r!.lo), hi: Number(r!.hi), e: Number(r!.e) };
      };
      const [a, b] = [await facts(store), await facts(other)];
      assert.deepEqual(b, a, 'both replicas hold the same rows');
      assert.equal(a.lo, 1);
      assert.equal(a.u, a.hi, 'no hole');
      assert.equal(a.n, a.hi, 'no duplicate row once merged');
      assert.equal(a.e, 1, 'one epoch');
      assert.equal(src.agent.stats().epoch, epoch);
    } finally {
      await other.close();
    }
  } finally {
    await load.stop().catch(() => undefined);
    await src.close();
  }
});
