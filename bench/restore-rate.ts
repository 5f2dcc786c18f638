/**
 * Restore rate, on history captured by a real agent and stored by a real sink:
 * (i) replay: restore() of M events on an empty baseline → events/s, against
 *     redis-server loading an AOF of the same commands (the restore's own incr
 *     file, copied) in the same run;
 * (ii) seconds to restore a baseline of K keys plus E events to the end,
 *     against redis-server loading the same base RDB + incr AOF.
 * Phases of restore() are timed from its progress callback.
 * Run alone: `node --import tsx bench/restore-rate.ts [--quick]`.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, linkSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { startAgent } from '../agent/index.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { silentLogger } from '../core/log.js';
import { connectNats, ensureBaselineStore, type NatsConnection, type ObjectStore } from '../core/bus/nats.js';
import type { RestoreProgress } from '../core/bus/restore-report.js';
import { RespReader } from '../core/redis/resp.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import { AOF_DIR_NAME, createAofDir } from '../restorer/aof-dir.js';
import { loadAofDir } from '../restorer/materialize.js';
import { clickHouseEventStore, restore, type RestoreReport } from '../restorer/index.js';
import { startSink, type Sink } from '../sink/index.js';
import { redisBenchmark, SOURCE_ARGS } from './capture-overhead.js';
import {
  pollUntil,
  round,
  runIfMain,
  secondsSince,
  type BenchResult,
  type BenchRow,
  type BenchSize,
} from './report.js';

const BASE_FILE = 'appendonly.aof.1.base.rdb';
const INCR_FILE = 'appendonly.aof.1.incr.aof';
const TESTS = ['set', 'hset', 'lpush', 'incr'];

/** Servers, sink and clients one restore-rate run shares. */
interface Env {
  natsUrl: string;
  nc: NatsConnection;
  objects: ObjectStore;
  store: Store;
  sink: Sink;
  workDir: string;
}

/** A history captured end to end: node, epoch, and the last seq stored in ClickHouse. */
interface Captured {
  node: string;
  epoch: number;
  lastSeq: number;
  keysAtBaseline: number;
  captureS: number;
}

/**
 * Starts a source (filled with `populateKeys` keys by DEBUG POPULATE before capture starts, so they are in the
 * baseline), captures `events` writes of redis-benchmark through an agent, and waits until ClickHouse holds them.
 */
async function capture(env: Env, populateKeys: number, events: number): Promise<Captured> {
  const redis = await startRedisServer({ args: SOURCE_ARGS, bin: process.env.FLASHBACK_BENCH_REDIS_BIN });
  const node = `bench-${randomUUID().slice(0, 8)}`;
  try {
    if (populateKeys > 0) {
      const r = new Redis(redis.url);
      try {
        await r.call('DEBUG', 'POPULATE', String(populateKeys), 'key', '16');
      } finally {
        r.disconnect();
      }
    }
    const agent = await startAgent({ redisUrl: redis.url, nodeId: node, natsUrl: env.natsUrl, logger: silentLogger });
    let epoch: number;
    let lastSeq: number;
    const t0 = process.hrtime.bigint();
    try {
      if (!(await pollUntil(() => agent.stats().baselines >= 1, 300_000)))
        throw new Error(`the agent stored no baseline of ${populateKeys} keys within 300 s`);
      const before = agent.stats().eventsCaptured;
      // Random keys out of the populated ones (or 100 000 on an empty source), so writes overwrite baseline keys.
      const perTest = Math.ceil(events / TESTS.length);
      await redisBenchmark({
        port: redis.port,
        requests: perTest,
        pipeline: 16,
        keyspace: Math.max(populateKeys, 100_000),
        tests: TESTS,
      });
      const want = perTest * TESTS.length;
      if (!(await pollUntil(() => agent.stats().eventsCaptured - before >= want, 300_000)))
        throw new Error(`the agent captured ${agent.stats().eventsCaptured - before} of ${want} writes within 300 s`);
      if (!(await agent.flush(120_000)))
        throw new Error('the agent could not publish everything to JetStream within 120 s');
      const s = agent.stats();
      if (s.epochs > 1)
        throw new Error(
          `the agent ended an epoch while capturing (${s.epochs} epochs): the restore would not span the whole load`,
        );
      epoch = s.epoch;
      lastSeq = s.lastSeq;
    } finally {
      await agent.close();
    }
    const stored = await pollUntil(
      async () => {
        const r = await env.store.query<{ n: string | number }>(
          `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq <= ${sqlUInt(lastSeq)}`,
        );
        return Number(r[0]?.n ?? 0) >= lastSeq;
      },
      600_000,
      200,
    );
    if (!stored) throw new Error(`ClickHouse did not receive all ${lastSeq} events of ${node} within 600 s`);
    return { node, epoch, lastSeq, keysAtBaseline: populateKeys, captureS: secondsSince(t0) };
  } finally {
    await redis.stop();
  }
}

/** One timed restore and its phases (s), plus a copy of the AOF dir it loaded. */
interface TimedRestore {
  report: RestoreReport;
  seconds: number;
  phases: Record<string, number>;
  /** The restore's base RDB (if it had one) and incr file as it loaded them, hard-linked into a dir of their own. */
  copyDir: string;
  /** The restored instance started an automatic AOF rewrite (its log says so) before we stopped it. */
  rewroteAof: boolean;
  incrBytes: number;
  baseBytes: number;
}

async function timedRestore(env: Env, c: Captured, hasBase: boolean): Promise<TimedRestore> {
  const instancesDir = await mkdtemp(path.join(env.workDir, 'instances-'));
  const copyDir = await mkdtemp(path.join(env.workDir, 'aof-copy-'));
  const paths = await createAofDir(copyDir, { base: hasBase });
  const marks: { phase: string; at: bigint }[] = [];
  const onProgress = (p: RestoreProgress) => {
    if (marks.at(-1)?.phase === p.phase) return;
    if (p.phase === 'load') {
      // The files are complete and redis-server is not started yet: link them (O(1)) before the server can
      // rewrite its AOF — a spawned instance does so on its own when the incr file is large.
      const dirs = readdirSync(instancesDir);
      if (dirs.length !== 1) throw new Error(`expected one restore dir in ${instancesDir}, found ${dirs.length}`);
      const from = path.join(instancesDir, dirs[0]!, AOF_DIR_NAME);
      rmSyncQuiet(paths.incrPath);
      linkSync(path.join(from, INCR_FILE), paths.incrPath);
      if (hasBase) linkSync(path.join(from, BASE_FILE), paths.baseRdbPath);
    }
    marks.push({ phase: p.phase, at: process.hrtime.bigint() });
  };
  const t0 = process.hrtime.bigint();
  const report = await restore(
    { events: clickHouseEventStore(env.store, env.store.client), objects: env.objects, instancesDir },
    { node: c.node, toSeq: c.lastSeq, spawn: {} },
    onProgress,
  );
  const end = process.hrtime.bigint();
  try {
    const phases: Record<string, number> = {};
    for (let i = 0; i < marks.length; i++) {
      const until = marks[i + 1]?.at ?? end;
      phases[marks[i]!.phase] = (phases[marks[i]!.phase] ?? 0) + Number(until - marks[i]!.at) / 1e9;
    }
    const log = await readFile(path.join(report.dir!, 'redis.log'), 'utf8').catch(() => '');
    const rewroteAof = /Background append only file rewriting started/.test(log);
    const incrBytes = (await stat(paths.incrPath)).size;
    const baseBytes = hasBase ? (await stat(paths.baseRdbPath)).size : 0;
    return { report, seconds: Number(end - t0) / 1e9, phases, copyDir, incrBytes, baseBytes, rewroteAof };
  } finally {
    if (report.pid) await stopPid(report.pid);
    if (report.dir) await rm(report.dir, { recursive: true, force: true });
    await rm(instancesDir, { recursive: true, force: true });
  }
}

function rmSyncQuiet(file: string): void {
  rmSync(file, { force: true });
}

/** Commands in a RESP file (each top-level array is one). */
async function countCommands(file: string): Promise<number> {
  const reader = new RespReader();
  let n = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    reader.push(chunk as Buffer);
    while (reader.read() !== undefined) n++;
  }
  return n;
}

/** redis-server started on an AOF dir, timed from spawn to `loading:0`; also the server's own "loaded" figure. */
async function timedLoad(dir: string): Promise<{ seconds: number; serverSeconds: number; keys: number }> {
  const t0 = process.hrtime.bigint();
  const server = await loadAofDir(dir, { bin: process.env.FLASHBACK_BENCH_REDIS_BIN });
  const seconds = secondsSince(t0);
  try {
    const log = await readFile(server.logFile, 'utf8');
    // Redis 7.0 logs each part ("from base file …", "from incr file …") and then the total ("from append only file").
    const serverSeconds = Number(/DB loaded from append only file: ([\d.]+) seconds/.exec(log)?.[1] ?? Number.NaN);
    const r = new Redis(server.url);
    try {
      return { seconds, serverSeconds, keys: Number(await r.dbsize()) };
    } finally {
      r.disconnect();
    }
  } finally {
    await server.stop();
  }
}

/** Sizes per run size: M events for (i); K keys and E events for (ii). */
const SIZES: Record<BenchSize, { replayEvents: number; baselineKeys: number; events: number }> = {
  quick: { replayEvents: 100_000, baselineKeys: 100_000, events: 100_000 },
  full: { replayEvents: 1_000_000, baselineKeys: 1_000_000, events: 1_000_000 },
};

function phaseCells(t: TimedRestore): BenchRow {
  const p = (name: string) => round(t.phases[name] ?? 0, 2);
  return {
    'resolve s': p('resolve'),
    'base RDB + tail s': p('baseline'),
    'events query + incr write s': p('events'),
    'load s': p('load'),
    'verify (digest, expiry scan, count) s': p('verify'),
  };
}

/** Runs both restore benchmarks; rows: each restore with its phases, and the AOF-load baseline of the same files. */
export async function benchRestoreRate(size: BenchSize = 'full'): Promise<BenchResult> {
  const { replayEvents, baselineKeys, events } = SIZES[size];
  const [nats, clickhouse] = await Promise.all([startNatsServer(), startClickHouseServer()]);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'flashback-bench-restore-'));
  let nc: NatsConnection | undefined;
  let store: Store | undefined;
  let sink: Sink | undefined;
  try {
    store = await openClickHouse(clickhouse.url);
    await store.ensureSchema();
    nc = await connectNats({ url: nats.url, name: 'bench restore-rate' });
    const objects = await ensureBaselineStore(nc);
    sink = await startSink({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, logger: silentLogger });
    const env: Env = { natsUrl: nats.url, nc, objects, store, sink, workDir };
    const rows: BenchRow[] = [];
    const notes: string[] = [];

    // (i) replay rate: M events on an empty baseline.
    const c1 = await capture(env, 0, replayEvents);
    const r1 = await timedRestore(env, c1, true);
    const cmds1 = await countCommands(path.join(r1.copyDir, AOF_DIR_NAME, INCR_FILE));
    const load1 = await timedLoad(r1.copyDir);
    const restoreRate = r1.report.eventsReplayed / r1.seconds;
    const loadRate = cmds1 / load1.seconds;
    rows.push(
      {
        measurement: `(i) restore() of ${r1.report.eventsReplayed.toLocaleString('en-US')} events, empty baseline`,
        seconds: round(r1.seconds, 2),
        rate: `${Math.round(restoreRate).toLocaleString('en-US')} events/s`,
        'ratio vs AOF load': round(restoreRate / loadRate, 2),
        ...phaseCells(r1),
      },
      {
        measurement: `(i) baseline: redis-server loads the same incr AOF (${cmds1.toLocaleString('en-US')} commands, ${(r1.incrBytes / 1e6).toFixed(1)} MB)`,
        seconds: round(load1.seconds, 2),
        rate: `${Math.round(loadRate).toLocaleString('en-US')} cmd/s (server log: ${Math.round(cmds1 / load1.serverSeconds).toLocaleString('en-US')})`,
        'ratio vs AOF load': 1,
      },
    );
    notes.push(
      `(i) history written by redis-benchmark -P 16 -c 50 -r 100000 -t ${TESTS.join(',')} on a source an agent captured; capture + sink until queryable: ${round(c1.captureS, 1)} s.`,
    );
    await rm(r1.copyDir, { recursive: true, force: true });

    // (ii) K keys in the baseline, E events after it, restored to the end.
    const c2 = await capture(env, baselineKeys, events);
    const r2 = await timedRestore(env, c2, true);
    const load2 = await timedLoad(r2.copyDir);
    rows.push(
      {
        measurement: `(ii) restore() of ${baselineKeys.toLocaleString('en-US')} baseline keys + ${r2.report.eventsReplayed.toLocaleString('en-US')} events → ${r2.report.keys.toLocaleString('en-US')} keys`,
        seconds: round(r2.seconds, 2),
        rate: `${Math.round(r2.report.eventsReplayed / r2.seconds).toLocaleString('en-US')} events/s`,
        'ratio vs AOF load': round(load2.seconds / r2.seconds, 2),
        ...phaseCells(r2),
      },
      {
        measurement: `(ii) baseline: redis-server loads the same base RDB (${(r2.baseBytes / 1e6).toFixed(1)} MB) + incr AOF (${(r2.incrBytes / 1e6).toFixed(1)} MB) → ${load2.keys.toLocaleString('en-US')} keys`,
        seconds: round(load2.seconds, 2),
        rate: `server log: ${round(load2.serverSeconds, 2)} s`,
        'ratio vs AOF load': 1,
      },
    );
    notes.push(
      `(ii) source filled with DEBUG POPULATE ${baselineKeys} key 16 before the agent started (so the keys are in its first baseline), then redis-benchmark -P 16 -r ${baselineKeys} wrote ${events.toLocaleString('en-US')} events; capture + sink until queryable: ${round(c2.captureS, 1)} s.`,
      '"ratio vs AOF load" is restore speed / load speed (< 1: the restore is slower than redis-server loading the finished files). Load times are spawn → `loading:0` polled every 50 ms, as the restore itself loads.',
      'restore() is timed end to end with --spawn: resolve cutoff, write base RDB from the object store, stream events from ClickHouse into the incr file, load, then DEBUG DIGEST, a SCAN of every key (expires due keys) and INFO keyspace.',
    );
    notes.push(
      `The spawned instance started an automatic AOF rewrite (its log: "Background append only file rewriting started") within the restore: (i) ${r1.rewroteAof ? 'yes' : 'no'}, (ii) ${r2.rewroteAof ? 'yes' : 'no'}. The baselines load hard links of the files the restore wrote, taken before its server started.`,
    );
    await rm(r2.copyDir, { recursive: true, force: true });
    return { name: 'Restore rate (restore() to the last event, --spawn)', rows, notes };
  } finally {
    await sink?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await Promise.all([nats.stop(), clickhouse.stop()]);
    await rm(workDir, { recursive: true, force: true });
  }
}

await runIfMain(import.meta.url, benchRestoreRate);
