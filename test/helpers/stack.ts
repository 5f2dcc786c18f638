import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { startAgent, type Agent } from '../../agent/index.js';
import { openClickHouse, type Store } from '../../core/store/clickhouse.js';
import { silentLogger } from '../../core/log.js';
import { sqlString, sqlUInt } from '../../core/store/sql-literal.js';
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
  const sink = await startSink({
    natsUrl: nats.url,
    clickhouseUrl: clickhouse.url,
    logger: silentLogger,
    flushIntervalMs: 50,
  });
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
export async function startSource(
  stack: { nats: Pick<ServerProcess, 'url'> },
  args: string[] = [],
  options: {
    source?: 'replication' | 'monitor';
    attribution?: 'monitor' | 'off';
    /** With attribution: writes that left no entry are stored as audit rows. */
    auditNoops?: boolean;
    /** The source's server binary (the version tests run each installed line). @default redis-server on PATH */
    bin?: string;
  } = {},
): Promise<{ redis: ServerProcess; agent: Agent; node: string; close(): Promise<void> }> {
  const redis = await testRedis([...SOURCE_ARGS, ...args], options.bin);
  const node = `test-${randomUUID().slice(0, 8)}`;
  // FLASHBACK_TEST_AGENT_LOG=dir: each source's agent logs at debug level to dir/<node>.log (for chasing a soak
  // failure).
  const logDir = process.env.FLASHBACK_TEST_AGENT_LOG;
  const logger = logDir
    ? pino(
        { level: 'debug', base: { node } },
        pino.destination({ dest: path.join(logDir, `${node}.log`), mkdir: true, sync: false }),
      )
    : silentLogger;
  const agent = await startAgent({
    redisUrl: redis.url,
    nodeId: node,
    natsUrl: stack.nats.url,
    logger,
    baselineDigest: 'always',
    // Tests written for one capture mode say which; the others ran first against MONITOR capture.
    source: options.source ?? 'monitor',
    attribution: options.attribution,
    auditNoops: options.auditNoops,
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

/**
 * Waits until ClickHouse holds at least `count` distinct seqs of `node` (all epochs): a lower bound on what is stored,
 * not a sync point (markStoredEvent is).
 */
export async function waitForEvents(
  stack: Pick<Stack, 'store'>,
  node: string,
  count: number,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(
    `${count} events of ${node} in ClickHouse`,
    async () => {
      const r = await stack.store.query<{ n: string }>(
        `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(node)}`,
      );
      return Number(r[0]?.n ?? 0) >= count ? true : undefined;
    },
    timeoutMs,
  );
}

/** Waits until a restorable window of `node` covers `tsUs` (the agent's idle heartbeat extends windows to now). */
export async function waitForWindow(
  stack: Pick<Stack, 'store'>,
  node: string,
  tsUs: number,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(
    `a window of ${node} covering ${tsUs}`,
    async () => {
      const ws = await restoreWindows(stack.store, node);
      return ws.some((w) => w.fromTsUs <= tsUs && tsUs <= w.toTsUs) ? true : undefined;
    },
    timeoutMs,
  );
}

/** The source server's clock in µs (`TIME`): a cutoff taken from it follows every event it has timestamped. */
export async function serverTimeUs(r: { time(): Promise<[string, string] | (string | number)[]> }): Promise<number> {
  const [s, us] = await r.time();
  return Number(s) * 1_000_000 + Number(us);
}

/** A captured source as startSource returns it. */
export type Source = Awaited<ReturnType<typeof startSource>>;

/**
 * What a marker is written with: an ioredis connection (standalone or to one cluster node), or a Redis URL (a
 * connection is opened for it).
 */
export type MarkerClient = Redis | string;

/** A marker event as stored: its epoch and seq. */
export interface StoredMarker {
  key: string;
  epoch: number;
  seq: number;
}

/**
 * Writes a marker on a captured source and waits until its event is stored with every event before it in its epoch:
 * a fact about the history, unlike `agent.flush()`, which cannot know about MONITOR lines the server has not yet
 * delivered. The marker is `DEL __test_marker:<name>` (with a hash tag owned by the node if it is a cluster node), or,
 * for a replication-mode agent, `MULTI; SET …; DEL …; EXEC` (a DEL of a missing key is not replicated): it changes no
 * data, so digests, key lists and DBSIZE taken before or after it are the same; it adds one `DEL` command event (after
 * a `SET` of the same tx in replication mode) to the history. Returns the marker's epoch and seq (a restore cutoff that includes everything written
 * before the marker).
 */
export async function markStoredEvent(
  stack: Pick<Stack, 'store'>,
  node: string | { node: string } | { node: string; agent: Agent },
  redis: MarkerClient,
  name: string = randomUUID(),
  timeoutMs = 60_000,
): Promise<StoredMarker> {
  const nodeId = typeof node === 'string' ? node : node.node;
  const replication = typeof node === 'object' && 'agent' in node && node.agent.stats().source === 'replication';
  const conn = typeof redis === 'string' ? new Redis(redis, { lazyConnect: false, maxRetriesPerRequest: 3 }) : redis;
  let key: string | undefined;
  try {
    // A cluster node refuses (MOVED) a key of a slot it does not serve; a refused-by-redirect command never reaches
    // MONITOR.
    for (let i = 0; i < 200 && key === undefined; i++) {
      const k = i === 0 ? `__test_marker:${name}` : `__test_marker:{${name}.${i}}`;
      try {
        if (replication) {
          // The replication stream does not carry a DEL of a missing key: SET then DEL in one transaction, which
          // changes nothing either.
          const r = await conn.multi().set(k, '1').del(k).exec();
          const failed = r?.find(([err]) => err);
          if (failed) throw failed[0];
          if (!r) throw new Error(`the marker transaction on ${k} was aborted`);
        } else await conn.call('DEL', k);
        key = k;
      } catch (err) {
        if (!/^(MOVED|ASK) /.test(String((err as Error).message))) throw err;
      }
    }
  } finally {
    if (typeof redis === 'string') conn.disconnect();
  }
  if (key === undefined) throw new Error(`no marker key of ${nodeId} found that its server serves`);
  const k = key;
  return waitFor(
    `marker ${k} of ${nodeId} stored with every event before it`,
    async () => {
      const rows = await stack.store.query<{ epoch: number; seq: number }>(
        `SELECT epoch, seq FROM flashback.events WHERE node = ${sqlString(nodeId)} AND key = ${sqlString(k)} AND command = 'DEL' ORDER BY epoch DESC, seq DESC LIMIT 1`,
      );
      if (rows.length === 0) return undefined;
      const epoch = Number(rows[0]!.epoch);
      const seq = Number(rows[0]!.seq);
      // Seqs of an epoch run from 1: seq distinct seqs at or below the marker mean none before it is missing.
      const n = await stack.store.query<{ n: number }>(
        `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(nodeId)} AND epoch = ${sqlUInt(epoch)} AND seq <= ${sqlUInt(seq)}`,
      );
      return Number(n[0]?.n) >= seq ? { key: k, epoch, seq } : undefined;
    },
    timeoutMs,
  );
}

/** markStoredEvent, returning only the marker's seq. */
export async function markAndWait(
  stack: Pick<Stack, 'store'>,
  node: string | { node: string },
  redis: MarkerClient,
  name?: string,
  timeoutMs?: number,
): Promise<number> {
  return (await markStoredEvent(stack, node, redis, name, timeoutMs)).seq;
}

/** Waits until a restorable window of `node`'s `epoch` reaches `seq`. */
export async function waitForWindowSeq(
  stack: Pick<Stack, 'store'>,
  node: string,
  epoch: number,
  seq: number,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(
    `a window of epoch ${epoch} of ${node} reaching seq ${seq}`,
    async () =>
      (await restoreWindows(stack.store, node)).some((w) => w.epoch === epoch && w.toSeq >= seq) ? true : undefined,
    timeoutMs,
  );
}

/**
 * Waits until everything written to the source before this call, baselines included, is stored and restorable: writes a
 * marker (markStoredEvent: one `DEL` event that changes no data), waits for it and every event before it, and for a
 * window reaching it; returns its seq (the last stored seq).
 */
export async function syncedSource(
  stack: Pick<Stack, 'store'>,
  src: Source,
  redis: MarkerClient = src.redis.url,
): Promise<number> {
  const m = await markStoredEvent(stack, src, redis);
  await waitForWindowSeq(stack, src.node, m.epoch, m.seq);
  return m.seq;
}
