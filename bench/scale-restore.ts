/**
 * Restore time through the Distributed tables (2 shards) vs one ClickHouse server, for bench/scale.ts: two nodes'
 * histories captured once (two replication agents, one NATS) and stored twice, by two sinks on durables of their own:
 * one into a single clickhouse-server (plain tables), one into two shard servers (Distributed tables sharded by node,
 * the layout of the "ClickHouse shards" part). The node names are picked so that one node's rows sit on the shard of the
 * server the restorer queries and the other's on the other shard. Each node is then restored to the instant of its last
 * event (`restore()` with `to`, --spawn) from each store, rounds interleaved; the digests must agree.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startAgent, type Agent } from '../agent/index.js';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import type { RestoreProgress } from '../core/bus/restore-report.js';
import { silentLogger } from '../core/log.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startClickHouseShards } from '../core/servers/clickhouse-shards.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { startSink, type Sink } from '../sink/index.js';
import { redisBenchmark } from './capture-overhead.js';
import { median, pollUntil, round, spread, type BenchRow } from './report.js';

const TESTS = ['set', 'hset', 'lpush', 'incr'];

/** One timed restore: total and the ClickHouse-bound phases (resolve, events query + incr write), seconds. */
interface Timed {
  seconds: number;
  resolve: number;
  events: number;
  eventsReplayed: number;
  digest: string;
}

/** A captured node: its id, epoch, last seq, the time of that seq (µs), and the shard (1-based) its rows are on. */
interface Node {
  id: string;
  epoch: number;
  lastSeq: number;
  lastTsUs: number;
  shard: number;
}

/** Distinct seqs of `node`'s epoch up to `lastSeq` in `store`. */
async function storedSeqs(store: Store, node: string, epoch: number, lastSeq: number): Promise<number> {
  const r = await store.query<{ n: string | number }>(
    `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq <= ${sqlUInt(lastSeq)}`,
  );
  return Number(r[0]?.n ?? 0);
}

/** One restore of `node` to `toUs` from `store`, with --spawn; the server is stopped and its files removed after. */
async function timedRestore(
  store: Store,
  objects: Awaited<ReturnType<typeof ensureBaselineStore>>,
  node: string,
  toUs: number,
  workDir: string,
): Promise<Timed> {
  const instancesDir = await mkdtemp(path.join(workDir, 'instances-'));
  const marks: { phase: string; at: bigint }[] = [];
  const onProgress = (p: RestoreProgress) => {
    if (marks.at(-1)?.phase !== p.phase) marks.push({ phase: p.phase, at: process.hrtime.bigint() });
  };
  const t0 = process.hrtime.bigint();
  const report = await restore(
    { events: clickHouseEventStore(store, store.client), objects, instancesDir },
    { node, to: toUs, spawn: {} },
    onProgress,
  );
  const end = process.hrtime.bigint();
  try {
    const phase = (name: string) => {
      let s = 0;
      for (let i = 0; i < marks.length; i++)
        if (marks[i]!.phase === name) s += Number((marks[i + 1]?.at ?? end) - marks[i]!.at) / 1e9;
      return s;
    };
    return {
      seconds: Number(end - t0) / 1e9,
      resolve: phase('resolve'),
      events: phase('events'),
      eventsReplayed: report.eventsReplayed,
      digest: report.digest,
    };
  } finally {
    if (report.pid) await stopPid(report.pid);
    if (report.dir) await rm(report.dir, { recursive: true, force: true });
    await rm(instancesDir, { recursive: true, force: true });
  }
}

/**
 * Captures two nodes of `eventsPerNode` writes each into both stores and restores each node `rounds` times from each.
 * Rows: per node, the single server (baseline) and the Distributed tables.
 */
export async function restoreThroughShards(o: {
  eventsPerNode: number;
  rounds: number;
  sourceArgs: string[];
}): Promise<{ rows: BenchRow[]; notes: string[] }> {
  const [nats, single, shards, ...redis] = await Promise.all([
    startNatsServer(),
    startClickHouseServer(),
    startClickHouseShards({ shards: 2 }),
    startRedisServer({ args: o.sourceArgs }),
    startRedisServer({ args: o.sourceArgs }),
  ]);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'flashback-bench-scale-restore-'));
  const stores: Store[] = [];
  const sinks: Sink[] = [];
  const agents: Agent[] = [];
  let nc: NatsConnection | undefined;
  try {
    const local = await openClickHouse(single.url);
    stores.push(local);
    await local.ensureSchema();
    for (const s of shards.servers) {
      const st = await openClickHouse(s!.url);
      stores.push(st);
      for (const q of shardedSchemaStatements(st.version, shards.cluster)) await st.command(q);
    }
    // The restorer reads the Distributed tables through shard 1's server.
    const distributed = stores[1]!;
    // Node ids whose rows go to shard 1 and to shard 2 (Distributed: cityHash64(node) % 2, shard 1 first).
    const ids: string[] = [];
    for (const want of [0, 1])
      for (let i = 0; ; i++) {
        const id = `bench-restore-${i}`;
        const r = await local.query<{ s: string | number }>(`SELECT cityHash64(${sqlString(id)}) % 2 AS s`);
        if (Number(r[0]?.s) === want && !ids.includes(id)) {
          ids.push(id);
          break;
        }
      }
    nc = await connectNats({ url: nats.url, name: 'bench scale restore' });
    const objects = await ensureBaselineStore(nc);
    for (const [durable, url] of [
      ['bench-local', single.url],
      ['bench-sharded', shards.servers[0]!.url],
    ] as const)
      sinks.push(
        await startSink({
          natsUrl: nats.url,
          clickhouseUrl: url,
          durable,
          retentionIntervalMs: 0,
          logger: silentLogger,
        }),
      );
    for (const [i, r] of redis.entries())
      agents.push(
        await startAgent({
          redisUrl: r.url,
          nodeId: ids[i]!,
          natsUrl: nats.url,
          logger: silentLogger,
          source: 'replication',
        }),
      );
    if (!(await pollUntil(() => agents.every((a) => a.stats().baselines >= 1), 120_000)))
      throw new Error('the agents stored no baseline within 120 s');
    const perTest = Math.ceil(o.eventsPerNode / TESTS.length);
    const t0 = Date.now();
    await Promise.all(
      redis.map((r) =>
        redisBenchmark({ port: r.port, requests: perTest, pipeline: 16, keyspace: 100_000, tests: TESTS }),
      ),
    );
    const nodes: Node[] = [];
    for (const [i, a] of agents.entries()) {
      if (!(await pollUntil(() => a.stats().eventsCaptured >= perTest * TESTS.length, 300_000)))
        throw new Error(`agent ${ids[i]} captured ${a.stats().eventsCaptured} of ${perTest * TESTS.length} writes`);
      if (!(await a.flush(120_000))) throw new Error(`agent ${ids[i]} could not publish within 120 s`);
      const s = a.stats();
      if (s.epochs > 1) throw new Error(`agent ${ids[i]} ended an epoch while capturing`);
      nodes.push({ id: ids[i]!, epoch: s.epoch, lastSeq: s.lastSeq, lastTsUs: 0, shard: 0 });
    }
    for (const a of agents.splice(0)) await a.close();
    for (const n of nodes)
      for (const st of [local, distributed])
        if (!(await pollUntil(async () => (await storedSeqs(st, n.id, n.epoch, n.lastSeq)) >= n.lastSeq, 600_000, 200)))
          throw new Error(`a store did not receive all ${n.lastSeq} events of ${n.id} within 600 s`);
    const captureS = (Date.now() - t0) / 1000;
    for (const s of sinks.splice(0)) await s.close();
    for (const n of nodes) {
      const ts = async (st: Store) =>
        Number(
          (
            await st.query<{ t: string | number }>(
              `SELECT max(ts_us) AS t FROM flashback.events WHERE node = ${sqlString(n.id)} AND epoch = ${sqlUInt(n.epoch)} AND seq = ${sqlUInt(n.lastSeq)}`,
            )
          )[0]?.t,
        );
      n.lastTsUs = await ts(local);
      if ((await ts(distributed)) !== n.lastTsUs) throw new Error(`the two stores disagree on ${n.id}'s last event`);
      for (const [i, st] of stores.slice(1).entries()) {
        const c = await st.query<{ n: string | number }>(
          `SELECT count() AS n FROM flashback.events_local WHERE node = ${sqlString(n.id)}`,
        );
        if (Number(c[0]?.n) > 0) n.shard = i + 1;
      }
    }

    // Rounds interleaved, the order of the two stores alternating, so drift on the shared box hits both alike.
    const times = new Map<string, Timed[]>();
    const key = (n: Node, where: 'local' | 'distributed') => `${n.id} ${where}`;
    for (let r = 0; r < o.rounds; r++)
      for (const n of nodes)
        for (const where of r % 2 === 0 ? (['local', 'distributed'] as const) : (['distributed', 'local'] as const)) {
          const t = await timedRestore(where === 'local' ? local : distributed, objects, n.id, n.lastTsUs, workDir);
          times.set(key(n, where), [...(times.get(key(n, where)) ?? []), t]);
        }

    const rows: BenchRow[] = [];
    const digests: string[] = [];
    for (const n of nodes) {
      const l = times.get(key(n, 'local'))!;
      const d = times.get(key(n, 'distributed'))!;
      const lMed = median(l.map((t) => t.seconds));
      const dMed = median(d.map((t) => t.seconds));
      const same = new Set([...l, ...d].map((t) => t.digest)).size === 1;
      digests.push(`${n.id} ${same ? 'same digest from both stores, every round' : 'DIGESTS DIFFER'}`);
      const on =
        n.shard === 1 ? 'rows on shard 1, the server queried' : `rows on shard ${n.shard}, not the server queried`;
      const ms = (ts: Timed[], f: (t: Timed) => number) =>
        spread(
          ts.map((t) => f(t) * 1000),
          0,
        );
      const phases = (ts: Timed[]) =>
        `resolve ${ms(ts, (t) => t.resolve)} ms, events query + incr write ${ms(ts, (t) => t.events)} ms`;
      rows.push(
        {
          what: `${n.id} (${on}): one server, plain tables (baseline)`,
          'events/s': Math.round(l[0]!.eventsReplayed / lMed),
          'vs baseline': 1,
          detail: `restore() to its last event, --spawn: ${ms(l, (t) => t.seconds)} ms, median (min–max) of ${l.length}; ${phases(l)}`,
        },
        {
          what: `${n.id} (${on}): Distributed tables, 2 shards`,
          'events/s': Math.round(d[0]!.eventsReplayed / dMed),
          'vs baseline': round(lMed / dMed),
          detail: `${ms(d, (t) => t.seconds)} ms, median (min–max) of ${d.length}; time distributed ÷ local ${round(dMed / lMed)}; ${phases(d)}`,
        },
      );
    }
    return {
      rows,
      notes: [
        `restore through shards: ${nodes.length} nodes, ${nodes.map((n) => `${n.id} seqs 1–${n.lastSeq.toLocaleString('en-US')}`).join(', ')}, written by redis-benchmark -P 16 -r 100000 -t ${TESTS.join(',')}, captured once and stored by two sinks (durables of their own) into one clickhouse-server and into 2 shard servers (capture + both stores: ${round(captureS, 1)} s); restore() with to = the node's last event, --spawn, through shard 1's server; ${digests.join('; ')}`,
      ],
    };
  } finally {
    for (const a of agents) await a.close().catch(() => undefined);
    for (const s of sinks) await s.close().catch(() => undefined);
    for (const s of stores) await s.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await Promise.all([nats.stop(), single.stop(), shards.stop(), ...redis.map((r) => r.stop())]);
    await rm(workDir, { recursive: true, force: true });
  }
}
