// Two ClickHouse 18.16 shards behind Distributed tables sharded by node: two captured nodes land on two shards, each is
// restored exactly (by seq and by time) through the distributed tables of either server, and windows, history, the
// timeline's per-second counts and users' SQL (subqueries included) read across shards.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { startAgent } from '../agent/index.js';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { silentLogger } from '../core/log.js';
import { startClickHouseShards, type ClickHouseShards } from '../core/servers/clickhouse-shards.js';
import type { NatsServerProcess } from '../core/servers/nats-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { keyHistory } from '../core/store/key-history.js';
import { shardedSchemaFile, shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { sqlString } from '../core/store/sql-literal.js';
import { writeRates } from '../core/store/timeline.js';
import { restoreWindows } from '../core/store/windows.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { startSink, type Sink } from '../sink/index.js';
import { testNats, testRedis } from './helpers/servers.js';
import { serverTimeUs, SOURCE_ARGS, syncedSource, waitForWindow, type Source } from './helpers/stack.js';

let shards: ClickHouseShards;
let nats: NatsServerProcess;
/** Stores on shard 1 and shard 2; each reads and writes the whole cluster through the Distributed tables. */
let stores: Store[];
let sink: Sink;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;

before(async () => {
  [shards, nats] = await Promise.all([startClickHouseShards({ shards: 2 }), testNats()]);
  stores = await Promise.all(shards.servers.map((s) => openClickHouse(s.url)));
  for (const s of stores) for (const q of shardedSchemaStatements(s.version, shards.cluster)) await s.command(q);
  // The sink's own ensureSchema finds every table there (Distributed under the usual names) and changes nothing.
  sink = await startSink({
    natsUrl: nats.url,
    clickhouseUrl: shards.servers[0]!.url,
    // Retention drops old history on each shard (test/retention-shards.test.ts); here it finds nothing old.
    clickhouseShardUrls: shards.servers.map((s) => s.url),
    logger: silentLogger,
    flushIntervalMs: 50,
  });
  nc = await connectNats({ url: nats.url, name: 'clickhouse-shards-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-shards-'));
});
after(async () => {
  await sink?.close();
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

async function capture(node: string): Promise<Source> {
  const redis = await testRedis(SOURCE_ARGS);
  const agent = await startAgent({
    redisUrl: redis.url,
    nodeId: node,
    natsUrl: nats.url,
    logger: silentLogger,
    baselineDigest: 'always',
    source: 'replication',
  });
  return {
    redis,
    agent,
    node,
    async close() {
      await agent.close();
      await redis.stop();
    },
  };
}

async function restoredDigest(store: Store, req: { node: string; toSeq?: number; to?: number }): Promise<string> {
  const report = await restore(
    { events: clickHouseEventStore(store, store.client), objects, instancesDir },
    {
      ...req,
      spawn: {},
    },
  );
  try {
    const r = new Redis(report.url!);
    try {
      return String(await r.call('DEBUG', 'DIGEST'));
    } finally {
      r.disconnect();
    }
  } finally {
    if (report.pid) await stopPid(report.pid);
  }
}

test('two nodes on two shards: each restored exactly through the distributed tables; reads span both shards', async () => {
  const nodes = [await nodeOnShard(1, 'shard-a'), await nodeOnShard(2, 'shard-b')];
  const sources = await Promise.all(nodes.map((n) => capture(n)));
  try {
    const facts: { seq: number; digest: string; atUs: number }[] = [];
    for (const [i, src] of sources.entries()) {
      const r = new Redis(src.redis.url);
      try {
        await r.set('userprofile', `user of ${src.node}`);
        await r.hset('h', 'a', String(i), 'b', 'x');
        await r.rpush('list', 'x', 'y', 'z');
        await r.zadd('z', 1, 'one', 2, 'two');
        await r.set('ttl', 'v', 'EX', 1000);
        await r.sadd('s', 'p', 'q', 'r');
        await r.spop('s');
        const seq = await syncedSource({ store: stores[0]! }, src);
        const digest = String(await r.call('DEBUG', 'DIGEST'));
        const atUs = await serverTimeUs(r);
        await r.set('after', 'x');
        await r.del('userprofile');
        await syncedSource({ store: stores[0]! }, src);
        facts.push({ seq, digest, atUs });
      } finally {
        r.disconnect();
      }
    }

    // Each node's rows are on its own shard only, events and baselines alike.
    for (const [i, s] of stores.entries()) {
      for (const table of ['events_local', 'baselines_local']) {
        const rows = await s.query<{ node: string }>(`SELECT DISTINCT node FROM flashback.${table} ORDER BY node`);
        assert.deepEqual(
          rows.map((r) => r.node),
          [nodes[i]],
          `shard ${i + 1} ${table}`,
        );
      }
    }

    for (const [i, src] of sources.entries()) {
      // Through the server that holds the node's rows, and through the other one.
      for (const store of stores) {
        await waitForWindow({ store }, src.node, facts[i]!.atUs);
        assert.equal(await restoredDigest(store, { node: src.node, toSeq: facts[i]!.seq }), facts[i]!.digest);
        assert.equal(await restoredDigest(store, { node: src.node, to: facts[i]!.atUs }), facts[i]!.digest);
      }
    }

    const other = stores[1]!;
    // Windows of both nodes, read on shard 2.
    for (const n of nodes) assert.ok((await restoreWindows(other, n)).length >= 1, `windows of ${n}`);
    // History of a key: every node's events, newest first.
    const history = await keyHistory(other, { key: 'userprofile', limit: 100 });
    assert.deepEqual([...new Set(history.map((e) => e.node))].sort(), [...nodes].sort());
    assert.deepEqual(
      history.filter((e) => e.node === nodes[0]).map((e) => e.command),
      ['DEL', 'SET'],
    );
    // The timeline's per-second counts (a materialized view per shard) add up across shards.
    const nowUs = Date.now() * 1000;
    const rates = await writeRates(other, { fromUs: nowUs - 600e6, toUs: nowUs + 60e6 }, 100);
    assert.deepEqual(rates.nodes.map((n) => n.node).sort(), [...nodes].sort());
    // Users' SQL, a subquery over the distributed table included (distributed_product_mode from the profile).
    const sql = await other.readOnlySql(
      `SELECT node, count() AS n FROM flashback.events WHERE command = 'SET' AND key IN (SELECT key FROM flashback.events WHERE command = 'DEL') GROUP BY node ORDER BY node`,
    );
    assert.deepEqual(
      sql.rows.map((r) => r[0]),
      [...nodes].sort(),
    );
  } finally {
    for (const s of sources) await s.close();
  }
});

test('deploy/clickhouse/sharded/schema-*.sql are the DDL the code makes', () => {
  for (const [file, label, version, replicated] of [
    ['schema-18.16.sql', '18.16', '18.16.1', false],
    ['schema-current.sql', '20.1 and later', '24.8.1', false],
    ['schema-replicated-18.16.sql', '18.16', '18.16.1', true],
    ['schema-replicated-current.sql', '20.1 and later', '24.8.1', true],
  ] as const)
    assert.equal(
      readFileSync(path.join('deploy/clickhouse/sharded', file), 'utf8'),
      shardedSchemaFile(label, version, { replicated }),
      `${file} is stale: write shardedSchemaFile('${label}', '${version}', { replicated: ${replicated} }) (core/store/sharded-schema.ts) to it`,
    );
});
