import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pino } from 'pino';
import { startAgent, type Agent } from '../../agent/index.js';
import { openClickHouse, type Store } from '../../core/store/clickhouse.js';
import { silentLogger } from '../../core/log.js';
import { sqlString } from '../../core/store/sql-literal.js';
import { restoreWindows } from '../../core/store/windows.js';
import type { ServerProcess } from '../../core/servers/server-process.js';
import { startSink, type Sink } from '../../sink/index.js';
import { testClickHouse, testNats, testRedis } from './servers.js';

/** Redis args every captured test source gets: DEBUG DIGEST allowed, baselines start at once. */
export const SOURCE_ARGS = ['--enable-debug-command', 'yes', '--repl-diskless-sync-delay', '0'];

/** Real servers + sink for a test file: one ClickHouse and NATS, shared; sources and agents per test. */
export interface Stack {
  nats: ServerProcess;
  clickhouse: ServerProcess;
  store: Store;
  sink: Sink;
  close(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const [nats, clickhouse] = await Promise.all([testNats(), testClickHouse()]);
  const store = await openClickHouse(clickhouse.url);
  await store.ensureSchema();
  const sink = await startSink({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, logger: silentLogger, flushIntervalMs: 50 });
  const stack: Stack = {
    nats,
    clickhouse,
    store,
    sink,
    async close() {
      // stack.sink: a test may have replaced the sink it started with.
      await stack.sink.close();
      await store.close();
      await Promise.all([nats.stop(), clickhouse.stop()]);
    },
  };
  return stack;
}

/** A captured source: a fresh redis-server and an agent on it with a random node id. */
export async function startSource(stack: Stack, args: string[] = []): Promise<{ redis: ServerProcess; agent: Agent; node: string; close(): Promise<void> }> {
  const redis = await testRedis([...SOURCE_ARGS, ...args]);
  const node = `test-${randomUUID().slice(0, 8)}`;
  // FLASHBACK_TEST_AGENT_LOG=dir: each source's agent logs at debug level to dir/<node>.log (for chasing a soak failure).
  const logDir = process.env.FLASHBACK_TEST_AGENT_LOG;
  const logger = logDir ? pino({ level: 'debug', base: { node } }, pino.destination({ dest: path.join(logDir, `${node}.log`), mkdir: true, sync: false })) : silentLogger;
  const agent = await startAgent({ redisUrl: redis.url, nodeId: node, natsUrl: stack.nats.url, logger, baselineDigest: 'always' });
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

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until ClickHouse holds `count` events of `node` (after the agent flushed). */
export async function waitForEvents(stack: Stack, node: string, count: number, timeoutMs = 20_000): Promise<void> {
  await waitFor(`${count} events of ${node} in ClickHouse`, async () => {
    const r = await stack.store.query<{ n: string }>(`SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(node)}`);
    return Number(r[0]?.n ?? 0) >= count ? true : undefined;
  }, timeoutMs);
}

/** Waits until a restorable window of `node` covers `tsUs` (the agent's idle heartbeat extends windows to now). */
export async function waitForWindow(stack: Stack, node: string, tsUs: number, timeoutMs = 20_000): Promise<void> {
  await waitFor(`a window of ${node} covering ${tsUs}`, async () => {
    const ws = await restoreWindows(stack.store, node);
    return ws.some((w) => w.fromTsUs <= tsUs && tsUs <= w.toTsUs) ? true : undefined;
  }, timeoutMs);
}

/** The source server's clock in µs (`TIME`): a cutoff taken from it follows every event it has timestamped. */
export async function serverTimeUs(r: { time(): Promise<[string, string] | (string | number)[]> }): Promise<number> {
  const [s, us] = await r.time();
  return Number(s) * 1_000_000 + Number(us);
}

/** A captured source as startSource returns it. */
export type Source = Awaited<ReturnType<typeof startSource>>;

/** Waits until everything the agent captured, baselines included, is stored and restorable; returns its last seq. */
export async function syncedSource(stack: Stack, src: Source): Promise<number> {
  if (!(await src.agent.flush())) throw new Error(`the agent of ${src.node} did not publish everything`);
  const last = src.agent.stats().lastSeq;
  await waitForEvents(stack, src.node, last);
  await waitFor(`a window of ${src.node} reaching seq ${last}`, async () => ((await restoreWindows(stack.store, src.node)).some((w) => w.toSeq >= last) ? true : undefined));
  return last;
}
