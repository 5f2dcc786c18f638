import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { BaselineRecord } from '../core/bus/baseline.js';
import type { Registry } from 'prom-client';
import { startHealthServer } from '../core/health-server.js';
import { silentLogger, type Logger } from '../core/log.js';
import { openBaselineWriter } from '../core/bus/baseline-writer.js';
import { connectNats, ensureEventStream, type NatsAuthOptions } from '../core/bus/nats.js';
import { ConfigError } from '../core/errors.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl, redactedRedisUrl, redisAddress, type RedisTarget } from '../core/redis/redis-url.js';
import type { AgentStats } from './metrics.js';
import type { AgentHealth } from './readiness.js';
import { CaptureAgent } from './monitor/monitor-agent.js';
import { ReplicationAgent } from './replication/replication-agent.js';
import { openSource, type Source } from './source.js';
import { isClusterNode, readSourceInfo } from './source-role.js';
import { checkSourceVersion } from './source-version.js';

export type { AgentStats } from './metrics.js';
export type { AgentHealth } from './readiness.js';

/** Options of one capture agent (one per Redis node). */
export interface AgentOptions {
  /** Redis to capture: redis://[user:pass@]host:port or rediss://… */
  redisUrl: string;
  /** Capture source id. @default host:port of redisUrl */
  nodeId?: string;
  natsUrl: string;
  /** NATS credentials and TLS (docs/security.md). @default none */
  natsAuth?: NatsAuthOptions;
  /** A baseline is taken at each epoch start and then this often. @default 3_600_000 (1 h) */
  baselineIntervalMs?: number;
  /** Also take a baseline after this many events (0 = never by count). @default 0 */
  baselineEveryEvents?: number;
  /**
   * Record DEBUG DIGEST in each baseline: 'auto' = when the dataset has ≤ 100 000 keys (it blocks Redis O(N)). @default
   * 'auto'
   */
  baselineDigest?: 'auto' | 'always' | 'never';
  /**
   * Server-side output buffer of our MONITOR client above which, still growing a sample later, the epoch ends (protects
   * the source). @default 64 MiB
   */
  maxMonitorOutputBytes?: number;
  /** Bytes waiting for NATS before the epoch ends. @default 256 MiB */
  maxQueuedBytes?: number;
  /** How often output buffer, lag and rates are sampled. @default 1_000 */
  metricsIntervalMs?: number;
  /**
   * When Redis has been idle this long, the agent ECHOes a heartbeat so the restorable window reaches now. @default
   * 1_000
   */
  heartbeatIntervalMs?: number;
  /** Port for GET /health (200 only once the node has a restorable window) and /metrics; undefined = none. */
  healthPort?: number;
  /** Address the health port binds to; `0.0.0.0` lets a Prometheus on another machine scrape it. @default '127.0.0.1' */
  healthHost?: string;
  /** Stream retention (max age). @default 7 days */
  retentionMs?: number;
  /**
   * Where events come from: `replication` = the agent is a replica of its node (exact effects, replica-class cost,
   * resumes after a restart); `monitor` = MONITOR and keyspace notifications, for servers that refuse PSYNC. A
   * cluster node is captured by MONITOR for now (PUBLISH, which carries the time anchors, does not reach a cluster
   * node's replication stream). @default 'replication'
   */
  source?: 'replication' | 'monitor';
  /** Replication mode: raise the source's repl-backlog-size to at least this. @default 64 MiB */
  minBacklogBytes?: number;
  /**
   * Replication mode: `monitor` runs MONITOR beside the stream so each event gets its client, µs time and argv as
   * issued (MONITOR's cost on the source); `off` keeps replica-class cost, events timed by anchors. @default 'off'
   */
  attribution?: 'monitor' | 'off';
  /**
   * With `attribution: 'monitor'`: each write MONITOR shows that left nothing in the replication stream (it changed
   * nothing, or the server refused it) is stored as an audit row (kind `audit`) that restores skip. @default false
   */
  auditNoops?: boolean;
  logger?: Logger;
}

/** A running capture agent. */
export interface Agent {
  readonly node: string;
  stats(): AgentStats;
  /** Ready (`ok`) only when the current epoch has a baseline and capture runs; `reason` says why not. */
  health(): AgentHealth;
  /** The agent's Prometheus metrics, labelled with its node. */
  metrics(): Registry;
  /** Port of the health server, when one was asked for. */
  healthPort?: number;
  /** Takes a baseline now; resolves with its record once stored and published. */
  baseline(): Promise<BaselineRecord>;
  /** Publishes everything captured so far (for tests and shutdown). */
  flush(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts capturing one Redis node. Fails fast with one clear error when Redis
 * or NATS cannot be reached at start; afterwards it reconnects with backoff
 * and starts a new epoch (with a new baseline) whenever continuity is lost.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const {
    baselineIntervalMs = 3_600_000,
    baselineEveryEvents = 0,
    baselineDigest = 'auto',
    maxMonitorOutputBytes = 64 * 1024 * 1024,
    maxQueuedBytes = 256 * 1024 * 1024,
    metricsIntervalMs = 1_000,
    heartbeatIntervalMs = 1_000,
    retentionMs,
    logger: rootLogger = silentLogger,
  } = options;
  const target = parseRedisUrl(options.redisUrl);
  if (options.auditNoops && (options.attribution !== 'monitor' || (options.source ?? 'replication') !== 'replication'))
    throw new ConfigError(
      '--audit-noops needs --source replication --attribution monitor: audit rows are the writes MONITOR shows that left nothing in the replication stream',
    );
  const node = options.nodeId ?? redisAddress(target);
  const logger = rootLogger.child({ node });

  const control = await RawRedis.connect(target, { clientName: 'flashback-control' });
  let nc: NatsConnection | undefined;
  let source: Source | undefined;
  try {
    // Everything that can fail is checked before the source's configuration is touched.
    checkSourceVersion(await readSourceInfo(control), `Redis ${redisAddress(target)}`, logger);
    nc = await connectNats({ url: options.natsUrl, name: `flashback-agent ${node}`, logger, auth: options.natsAuth });
    await ensureEventStream(nc, { maxAgeMs: retentionMs });
    // Writes only: a server with permissions refuses agents every read of the bucket (core/bus/baseline-writer.ts).
    const store = await openBaselineWriter(nc);
    const js = jetstream(nc);
    const settings = {
      node,
      nc,
      js,
      store,
      logger,
      baselineIntervalMs,
      baselineEveryEvents,
      baselineDigest,
      maxMonitorOutputBytes,
      maxQueuedBytes,
      metricsIntervalMs,
      heartbeatIntervalMs,
    };
    if ((options.source ?? 'replication') === 'replication') {
      if (!(await isClusterNode(control))) {
        const agent = new ReplicationAgent({
          ...settings,
          target,
          control,
          minBacklogBytes: options.minBacklogBytes ?? 64 * 1024 * 1024,
          attribution: options.attribution ?? 'off',
          auditNoops: options.auditNoops,
        });
        await agent.start();
        return withHealth(agent, options, logger, { target, natsUrl: options.natsUrl });
      }
      logger.warn(
        {},
        'a cluster node: capturing with MONITOR (its replication stream does not carry the PUBLISH time anchors)',
      );
    }
    source = await openSource({ target, control, maxMonitorOutputBytes, logger });
    const agent = new CaptureAgent(source, settings);
    await agent.start();
    return withHealth(agent, options, logger, { target, natsUrl: options.natsUrl });
  } catch (err) {
    control.close();
    source?.probe.close();
    source?.state.close();
    await nc?.close().catch(() => undefined);
    throw err;
  }
}

/** Serves GET /health and /metrics for a started agent when a port is given, and logs that capture runs. */
async function withHealth<A extends Agent & HealthSource>(
  agent: A,
  options: Pick<AgentOptions, 'healthPort' | 'healthHost'>,
  logger: Logger,
  o: { target: RedisTarget; natsUrl: string },
): Promise<A> {
  if (options.healthPort !== undefined) {
    const host = options.healthHost ?? '127.0.0.1';
    const hs = await startHealthServer(
      options.healthPort,
      { health: () => agent.health(), metrics: () => [agent.metrics()] },
      host,
    ).catch(async (err: unknown) => {
      await agent.close();
      throw err;
    });
    agent.onClose(() => hs.close());
    agent.healthPort = hs.port;
    logger.info({ host, port: hs.port }, 'health endpoint: GET /health, /metrics');
  }
  const s = agent.stats();
  logger.info(
    { redis: redactedRedisUrl(o.target), nats: o.natsUrl, epoch: s.epoch, source: s.source ?? 'monitor' },
    'capturing',
  );
  return agent;
}

/** What withHealth needs of an agent besides {@link Agent}. */
interface HealthSource {
  onClose(fn: () => Promise<void>): void;
}
