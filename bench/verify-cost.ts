/**
 * What the background restore check costs (issue 16, proven restorable): a source of K keys captured by a real agent,
 * E writes between two baselines, stored by a real sink; then, in one run and alternating, (a) a plain restore of that
 * stretch (the earlier baseline plus its events, spawned and stopped, as restore() does it for a job) and (b) the
 * check of the same stretch (the same restore, DEBUG DIGEST compared with the one the source recorded). Ratio = (b) /
 * (a). Then one event is forged and the check is timed on the mismatch path (a second restore of the later baseline
 * and a key-by-key comparison).
 * Run alone: `node --import tsx bench/verify-cost.ts [--quick]`.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { startAgent } from '../agent/index.js';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { silentLogger } from '../core/log.js';
import { encodeCommand } from '../core/redis/resp.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { openClickHouse } from '../core/store/clickhouse.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import { pendingStretches } from '../core/store/verifications.js';
import { restoreWindows } from '../core/store/windows.js';
import { clickHouseEventStore, restore, type RestoreDeps } from '../restorer/index.js';
import { verifyStretch } from '../restorer/verify-stretch.js';
import { startSink } from '../sink/index.js';
import { redisBenchmark, SOURCE_ARGS } from './capture-overhead.js';
import { median, pollUntil, round, runIfMain, spread, type BenchResult, type BenchSize } from './report.js';

export async function benchVerifyCost(size: BenchSize = 'full'): Promise<BenchResult> {
  const keys = size === 'quick' ? 20_000 : 100_000;
  const writes = size === 'quick' ? 100_000 : 400_000;
  const rounds = size === 'quick' ? 2 : 4;
  const [nats, clickhouse] = await Promise.all([startNatsServer(), startClickHouseServer()]);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'flashback-bench-verify-'));
  const store = await openClickHouse(clickhouse.url);
  const nc = await connectNats({ url: nats.url, name: 'bench-verify' });
  const redis = await startRedisServer({ args: SOURCE_ARGS, bin: process.env.FLASHBACK_BENCH_REDIS_BIN });
  let sink: Awaited<ReturnType<typeof startSink>> | undefined;
  try {
    await store.ensureSchema();
    sink = await startSink({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, logger: silentLogger });
    const objects = await ensureBaselineStore(nc);
    const r = new Redis(redis.url);
    await r.call('DEBUG', 'POPULATE', String(keys), 'key', '16');
    const node = `bench-${randomUUID().slice(0, 8)}`;
    const agent = await startAgent({
      redisUrl: redis.url,
      nodeId: node,
      natsUrl: nats.url,
      logger: silentLogger,
      baselineDigest: 'always',
    });
    let stretch;
    try {
      if (!(await pollUntil(() => agent.stats().baselines >= 1, 300_000))) throw new Error('no first baseline');
      const tests = ['set', 'hset', 'lpush', 'incr'];
      await redisBenchmark({
        port: redis.port,
        requests: Math.ceil(writes / tests.length),
        pipeline: 16,
        keyspace: keys,
        tests,
      });
      const b2 = await agent.baseline();
      // One write after the marker so the window reaches past it.
      await r.set('bench:after', '1');
      if (!(await agent.flush(120_000))) throw new Error('the agent could not publish everything');
      const ok = await pollUntil(
        async () => {
          const ws = await restoreWindows(store, node);
          return ws.some((w) => w.baselines.includes(b2.seq) && w.toSeq > b2.seq);
        },
        600_000,
        200,
      );
      if (!ok) throw new Error(`baseline ${b2.seq} and the events before it were not stored in time`);
      stretch = (await pendingStretches(store, node)).find((s) => s.toSeq === b2.seq);
      if (!stretch) throw new Error('no stretch to check (did the second baseline record a digest?)');
    } finally {
      await agent.close();
      r.disconnect();
    }

    const deps: RestoreDeps = {
      events: clickHouseEventStore(store, store.client),
      objects,
      instancesDir: workDir,
    };
    const plain: number[] = [];
    const check: number[] = [];
    let result = '';
    const timePlain = async () => {
      const t = Date.now();
      const rep = await restore(deps, {
        node,
        epoch: stretch.epoch,
        toSeq: stretch.toSeq,
        fromBaselineSeq: stretch.fromSeq,
        spawn: {},
      });
      plain.push((Date.now() - t) / 1000);
      if (rep.pid) await stopPid(rep.pid);
      if (rep.dir) await rm(rep.dir, { recursive: true, force: true });
    };
    const timeCheck = async () => {
      const t = Date.now();
      result = (await verifyStretch(deps, stretch)).row.result;
      check.push((Date.now() - t) / 1000);
    };
    // A warm-up of each (ClickHouse and page caches), then rounds in alternating order, so neither side always runs
    // on the caches the other just filled.
    await timePlain();
    await timeCheck();
    plain.length = 0;
    check.length = 0;
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        await timePlain();
        await timeCheck();
      } else {
        await timeCheck();
        await timePlain();
      }
    }
    // The mismatch path: one forged event in the stretch.
    const [row] = await store.query<Record<string, string | number>>(
      `SELECT * FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(stretch.epoch)} AND seq > ${sqlUInt(stretch.fromSeq)} AND seq < ${sqlUInt(stretch.toSeq)} AND command = 'SET' ORDER BY seq DESC LIMIT 1`,
    );
    let mismatch: { seconds: number; result: string; differing: number } | undefined;
    if (row) {
      const replay = encodeCommand([Buffer.from('SET'), Buffer.from(String(row.key)), Buffer.from('forged')]);
      await store.insertEvents([{ ...row, replay: replay.toString('base64') } as never]);
      await pollUntil(
        async () => {
          await store.command('OPTIMIZE TABLE flashback.events FINAL');
          const rows = await store.query<{ replay: string }>(
            `SELECT replay FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(stretch.epoch)} AND seq = ${sqlUInt(Number(row.seq))}`,
          );
          return rows.length === 1 && rows[0]!.replay === replay.toString('base64');
        },
        120_000,
        500,
      );
      const t = Date.now();
      const c = await verifyStretch(deps, stretch);
      mismatch = { seconds: (Date.now() - t) / 1000, result: c.row.result, differing: c.row.keys_differing };
    }
    const events = stretch.toSeq - stretch.fromSeq;
    return {
      name: 'verify-cost: background restore check of one stretch vs a plain restore of it',
      rows: [
        {
          keys,
          'events in stretch': events,
          'plain restore s': spread(plain),
          'check s (match)': spread(check),
          'ratio check / plain': round(median(check) / median(plain)),
          result,
          'check s (mismatch path)': mismatch ? round(mismatch.seconds) : '–',
          'ratio mismatch / plain': mismatch ? round(mismatch.seconds / median(plain)) : '–',
          'mismatch found': mismatch ? `${mismatch.result}, ${mismatch.differing} key` : '–',
        },
      ],
      notes: [
        `one warm-up of each, then ${rounds} rounds in alternating order of a plain restore (restore() of the earlier baseline + the stretch into a spawned server, stopped) and the check of the same stretch; median (min–max).`,
        'The match path is the plain restore plus the comparison of DEBUG DIGEST with the recorded one (restore() computes the digest either way), so its ratio is about 1.',
        'The mismatch path (one forged SET) adds a restore of the later baseline on its own and a key-by-key comparison (DEBUG DIGEST-VALUE + PEXPIRETIME of every key on both).',
      ],
    };
  } finally {
    await sink?.close().catch(() => undefined);
    await nc.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    await redis.stop().catch(() => undefined);
    await Promise.all([nats.stop(), clickhouse.stop()]);
    await rm(workDir, { recursive: true, force: true });
  }
}

await runIfMain(import.meta.url, benchVerifyCost);
