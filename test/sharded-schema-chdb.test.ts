// The sharded layout on both ClickHouse lines: the shard DDL is accepted by 18.16 and by a current release (chdb); the
// code's queries through the Distributed tables of two 18.16 shards answer what the plain schema answers on the current
// release; on the current release every one of them passes analysis through Distributed tables (it then fails only
// for want of a shard to connect to: chdb serves no port).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Session } from 'chdb';
import type { FlashbackEvent } from '../core/bus/event.js';
import { clusterConfigXml, startClickHouseShards, type ClickHouseShards } from '../core/servers/clickhouse-shards.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { lastAtOrBeforeSql, txEndSql } from '../core/store/cutoff.js';
import { lastAnchorSql, nextChangeSql } from '../core/store/cutoff-precision.js';
import { baselineSql, replaySql } from '../core/store/event-store.js';
import { historySql } from '../core/store/key-history.js';
import { firstSettleSql, groupEndSql, unstatedCommandsSql } from '../core/store/restore-sql.js';
import {
  deleteBaselinesSql,
  dropEventPartitionSql,
  dropMarksPartitionSql,
  dropRatesPartitionSql,
  dropSeqsPartitionSql,
  eventPartitionsSql,
  localRetentionTablesSql,
  localShardSql,
  neededBaselinesSql,
  oldBaselinesSql,
  partitionDaySql,
} from '../core/store/retention-sql.js';
import { schemaStatements, versionSql } from '../core/store/schema.js';
import { shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { rateFromSecondsSql, rateSql } from '../core/store/timeline-sql.js';
import { baselinesSql, epochSummarySql, eventTimesSql, holeSql, nodesSql } from '../core/store/windows.js';
import { storeLayout } from '../sink/retention-shards.js';
import { baselineToRow, eventToRow } from '../sink/rows.js';

const NODES = ['n1', 'n3'];
const EPOCH = 1_754_252_890_000;
const T0 = EPOCH * 1_000;
const WINDOW = { epoch: EPOCH, fromSeq: 1, toSeq: 6 };

/** Per node: seqs 1–3 and 5–6 (a hole after 3), seq 6 in tx 5, seq 1 the baseline marker. */
function events(node: string): FlashbackEvent[] {
  return [1, 2, 3, 5, 6].map((seq) => {
    const args = [Buffer.from('SET'), Buffer.from(`k${seq}`), Buffer.from(`${node}-${seq}`)];
    return {
      node,
      epoch: EPOCH,
      seq,
      tsUs: T0 + seq * 1_000,
      db: 0,
      client: '127.0.0.1:5000',
      kind: seq === 1 ? 'baseline' : 'command',
      command: 'SET',
      keys: [args[1]!],
      args,
      replay: seq === 1 ? [] : args,
      tx: seq === 6 ? 5 : 0,
    };
  });
}
const EVENT_ROWS = NODES.flatMap((n) => events(n).map(eventToRow));
const BASELINE_ROWS = NODES.map((node) =>
  baselineToRow({
    node,
    epoch: EPOCH,
    seq: 1,
    tsUs: T0 + 1_000,
    markerId: 'm1',
    rdbObject: `${node}/m1.rdb`,
    tailObject: `${node}/m1.tail`,
    rdbBytes: 100,
    tailBytes: 5,
    keys: 3,
    digest: '00ff',
  }),
);

/** Queries of restores, windows, cutoffs, history, timeline and retention (subqueries included), per node. */
function queries(node: string): Record<string, string> {
  const range = { fromUs: T0, toUs: T0 + 10_000_000 };
  return {
    epochSummary: epochSummarySql(node),
    holes: holeSql(node, EPOCH),
    baselines: baselinesSql(node),
    eventTimes: eventTimesSql(node, EPOCH, [2, 5]),
    replay: replaySql(node, EPOCH, 1, 6),
    baseline: baselineSql(node, EPOCH, 1),
    firstSettle: firstSettleSql(node, EPOCH, 0, 10),
    groupEnd: groupEndSql(node, EPOCH, 5, 5),
    unstatedCommands: unstatedCommandsSql(node, EPOCH, 0, 10),
    lastAtOrBefore: lastAtOrBeforeSql(node, WINDOW, T0 + 6_000),
    txEnd: txEndSql(node, WINDOW, 5),
    nextChange: nextChangeSql(node, WINDOW, 1),
    lastAnchor: lastAnchorSql(node, WINDOW, 5),
    history: historySql({ node, key: 'k2', limit: 10 }),
    rates: rateSql(range, 1_000_000, node),
    ratesFromSeconds: rateFromSecondsSql(range, 1_000_000, node),
    nodes: nodesSql(),
    neededBaselines: neededBaselinesSql(T0 + 10_000),
  };
}

let shards: ClickHouseShards;
let stores: Store[];
let current: Session;
let currentDir: string;
let configDir: string;

function chdbRows(sql: string): Record<string, unknown>[] {
  const out = current.query(sql, 'JSONEachRow').trim();
  return out === '' ? [] : out.split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

before(async () => {
  shards = await startClickHouseShards({ shards: 2 });
  stores = await Promise.all(shards.servers.map((s) => openClickHouse(s.url)));
  for (const s of stores) for (const q of shardedSchemaStatements(s.version, shards.cluster)) await s.command(q);
  await stores[0]!.insertEvents(EVENT_ROWS);
  await stores[1]!.insertBaselines(BASELINE_ROWS);

  // The current release knows the cluster (a closed port: analysis runs, execution cannot reach a shard).
  configDir = mkdtempSync(path.join(os.tmpdir(), 'fb-chdb-cluster-'));
  const config = path.join(configDir, 'config.xml');
  writeFileSync(
    config,
    clusterConfigXml('flashback', [{ host: '127.0.0.1', tcpPort: 1 }]).replace(/<(\/?)yandex>/g, '<$1clickhouse>'),
  );
  currentDir = mkdtempSync(path.join(os.tmpdir(), 'fb-chdb-sharded-'));
  current = new Session(currentDir, { connectionArgs: [`--config-file=${config}`] });
});
after(async () => {
  current?.cleanup();
  for (const s of stores ?? []) await s.close();
  await shards?.stop();
  for (const d of [configDir, currentDir]) if (d) rmSync(d, { recursive: true, force: true });
});

test('each node on one shard; the queries through the Distributed tables of 18.16 shards answer as the plain schema does on the current release; the current release analyses each of them through Distributed tables', async () => {
  const version = String(chdbRows(versionSql())[0]!.version);
  // The shard DDL on the current release (twice: idempotent), then every query through its Distributed tables.
  for (let i = 0; i < 2; i++) for (const q of shardedSchemaStatements(version, 'flashback')) current.query(q);
  for (const [name, sql] of Object.entries(queries(NODES[0]!))) {
    assert.throws(
      () => current.query(`${sql} SETTINGS distributed_product_mode = 'local'`),
      (err: Error) => /\b(NETWORK_ERROR|ALL_CONNECTION_TRIES_FAILED|Connection refused)\b/.test(err.message),
      `${name} fails only at the network: ${sql}`,
    );
  }

  // The plain schema with the same rows on the current release: the reference answers.
  current.query('DROP DATABASE flashback');
  for (const q of schemaStatements(version)) current.query(q);
  const insert = (table: string, rows: object[]) =>
    current.query(`INSERT INTO ${table} FORMAT JSONEachRow\n${rows.map((r) => JSON.stringify(r)).join('\n')}`);
  insert('flashback.events', EVENT_ROWS);
  insert('flashback.baselines', BASELINE_ROWS);

  // Sharding by node: one node per shard here (cityHash64 of these two names differs in parity).
  const placed = await Promise.all(
    stores.map((s) => s.query<{ node: string }>('SELECT DISTINCT node FROM flashback.events_local ORDER BY node')),
  );
  assert.deepEqual(
    placed.map((rows) => rows.length),
    [1, 1],
    `each shard holds one node: ${JSON.stringify(placed)}`,
  );

  for (const node of NODES) {
    for (const [name, sql] of Object.entries(queries(node))) {
      const expected = chdbRows(sql);
      const norm = (rows: unknown[]) => (name === 'eventTimes' ? rows.map((r) => JSON.stringify(r)).sort() : rows);
      for (const [i, s] of stores.entries())
        assert.deepEqual(norm(await s.query(sql)), norm(expected), `${name} of ${node} through shard ${i + 1}: ${sql}`);
    }
  }
  assert.deepEqual(await stores[1]!.query(queries(NODES[0]!).holes!), [{ seq: 3 }, { seq: 6 }]);
});

test("retention on shards: 18.16 and the current release report the layout, the cluster and each server's shard; the drops on the _local tables run on both", async () => {
  const day = String((await stores[0]!.query<{ day: string }>(partitionDaySql(EPOCH / 1_000)))[0]!.day);
  const local = { local: true };
  const keep = Object.fromEntries(NODES.map((n) => [n, T0 + 10_000]));
  const drops = (d: string) => [
    dropEventPartitionSql(d, local),
    dropRatesPartitionSql(d, local),
    dropMarksPartitionSql(d, local),
    dropSeqsPartitionSql(d, local),
  ];
  const tables = ['baselines_local', 'event_marks_local', 'event_rates_local', 'event_seqs_local', 'events_local'];

  for (const [i, s] of stores.entries()) {
    assert.deepEqual(await storeLayout(s), { sharded: true, cluster: 'flashback', shards: 2 });
    assert.deepEqual(await s.query(localShardSql('flashback')), [{ shard_num: i + 1 }], `shard ${i + 1} knows itself`);
    assert.deepEqual(
      (await s.query<{ name: string }>(localRetentionTablesSql())).map((t) => t.name),
      tables,
    );
    // Each node's day and baseline sit on its own shard only; a day no shard has drops nothing (and is no error).
    const [node] = (await s.query<{ node: string }>('SELECT DISTINCT node FROM flashback.events_local')).map(
      (r) => r.node,
    );
    assert.deepEqual(await s.query(eventPartitionsSql(local)), [{ partition: day }]);
    assert.deepEqual(
      (await s.query<{ node: string; seq: number }>(oldBaselinesSql(keep, local))).map((b) => [b.node, b.seq]),
      [[node, 1]],
    );
    for (const sql of [...drops('2001-01-01'), deleteBaselinesSql([{ node: 'none', epoch: 1, seq: 1 }], local)])
      await s.command(sql);
  }

  // The current release: the shard DDL, rows in the local tables, then every retention statement on them.
  const version = String(chdbRows(versionSql())[0]!.version);
  current.query('DROP DATABASE IF EXISTS flashback');
  for (const q of shardedSchemaStatements(version, 'flashback')) current.query(q);
  const chdbStore = { url: 'chdb', query: async <T>(sql: string) => chdbRows(sql) as T[] };
  assert.deepEqual(await storeLayout(chdbStore), { sharded: true, cluster: 'flashback', shards: 1 });
  // chdb serves no port: it is no server of the cluster it knows.
  assert.deepEqual(chdbRows(localShardSql('flashback')), []);
  assert.deepEqual(
    chdbRows(localRetentionTablesSql()).map((t) => t.name),
    tables,
  );
  const insert = (table: string, rows: object[]) =>
    current.query(`INSERT INTO ${table} FORMAT JSONEachRow\n${rows.map((r) => JSON.stringify(r)).join('\n')}`);
  insert('flashback.events_local', EVENT_ROWS);
  insert('flashback.baselines_local', BASELINE_ROWS);
  assert.deepEqual(chdbRows(eventPartitionsSql(local)), [{ partition: day }]);
  const old = chdbRows(oldBaselinesSql(keep, local)) as { node: string; epoch: number; seq: number }[];
  assert.deepEqual(
    old.map((b) => [b.node, Number(b.seq)]),
    NODES.map((n) => [n, 1]),
  );
  for (const sql of [
    ...drops(day),
    deleteBaselinesSql(
      old.map((b) => ({ ...b, epoch: Number(b.epoch), seq: Number(b.seq) })),
      local,
    ),
  ])
    current.query(sql);
  assert.deepEqual(chdbRows(eventPartitionsSql(local)), []);
  for (const t of ['event_rates_local', 'event_seqs_local'])
    assert.deepEqual(chdbRows(`SELECT count() AS n FROM flashback.${t}`), [{ n: 0 }], `${t} emptied`);
});
