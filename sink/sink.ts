import type { Registry } from 'prom-client';
import {
  connectNats,
  ensureEventStream,
  EVENT_STREAM,
  SINK_DURABLE,
  type NatsAuthOptions,
  type NatsConnection,
} from '../core/bus/nats.js';
import { startHealthServer } from '../core/health-server.js';
import { ConfigError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { openClickHouse, type ClickHouseAuth, type Store } from '../core/store/clickhouse.js';
import { startBatcher } from './batcher.js';
import { ensureSinkConsumer, startConsumer } from './consumer.js';
import { holdParts } from './held-parts.js';
import { messageReader } from './message-reader.js';
import { SinkMetrics, type SinkHealth, type SinkStats } from './metrics.js';
import { scheduleRetention } from './retention.js';
import { openRetentionShards } from './retention-shards.js';

/** Options of {@link startSink}. */
export interface SinkOptions {
  /** NATS server(s) with JetStream. */
  natsUrl: string;
  /** ClickHouse HTTP URL, `http://[user:password@]host:port`. */
  clickhouseUrl: string;
  /** NATS credentials and TLS (docs/security.md). @default none */
  natsAuth?: NatsAuthOptions;
  /** ClickHouse user and password; override any in the URL. @default the URL's */
  clickhouseAuth?: ClickHouseAuth;
  /** Rows gathered (over many messages) before an insert. @default 50_000 */
  maxBatchRows?: number;
  /** Message bytes gathered before an insert (big values fill few rows). @default 64 MiB */
  maxBatchBytes?: number;
  /**
   * Bytes of part messages (core/bus/event-parts.ts) held while their batch is incomplete; over it the oldest
   * incomplete batch is handed back (nak, redelivered after `ackWaitMs`) with an error log. @default 256 MiB
   */
  maxHeldPartBytes?: number;
  /**
   * An incomplete split batch is handed back (nak, error log) after waiting this long for its other parts, ms.
   * @default 300_000
   */
  partTimeoutMs?: number;
  /** A partial batch is inserted after this long, ms: bounds the delay until events are queryable. @default 500 */
  flushIntervalMs?: number;
  /** Messages one pull asks for (each holds up to ~2_000 events / 512 KiB). @default 256 */
  maxPullMessages?: number;
  /**
   * How long one pull waits for messages, ms (≥ 1_000); close() waits at most this long for the pull in hand.
   * @default 1_000
   */
  pullExpiresMs?: number;
  /** Durable consumer name; one per sink group (sinks sharing it share the work). @default SINK_DURABLE */
  durable?: string;
  /**
   * Time JetStream waits for an ack before redelivering, ms; held messages are kept alive with `working()`.
   * @default 30_000
   */
  ackWaitMs?: number;
  /** First delay after a failed insert, ms; doubles up to `maxRetryDelayMs`. @default 250 */
  retryDelayMs?: number;
  /** Longest delay between insert retries, ms. @default 10_000 */
  maxRetryDelayMs?: number;
  /** Serve GET /health and /metrics on healthHost:healthPort. @default no health server */
  healthPort?: number;
  /** Address the health port binds to (`0.0.0.0` for a Prometheus on another machine). @default '127.0.0.1' */
  healthHost?: string;
  /**
   * History kept, ms: the stream's max age, and a retention pass (sink/retention.ts) that drops old day partitions
   * and baselines, keeping whole windows. @default 7 days
   */
  retentionMs?: number;
  /**
   * How often the retention pass runs, ms (also once at start); 0 runs none (the stream's max age still applies).
   * At most 2_147_483_647 (a timer's limit). @default 3_600_000
   */
  retentionIntervalMs?: number;
  /**
   * Sharded layout (docs/scale.md): the HTTP URL of one server of each shard (any replica), where retention drops old
   * history from the `_local` tables. Required there while retention runs, refused on a single server; checked at start
   * against the cluster's shards. Credentials: those of `clickhouseAuth`, else a URL's own, else `clickhouseUrl`'s.
   * @default none
   */
  clickhouseShardUrls?: readonly string[];
  /** @default silent */
  logger?: Logger;
}

/** A running sink: JetStream → ClickHouse. */
export interface Sink {
  stats(): SinkStats;
  health(): SinkHealth;
  /** The sink's Prometheus metrics (its /metrics serves them; `flashback up` adds them to the API's). */
  metrics(): Registry;
  /** Port of the health server, when one was asked for. */
  readonly healthPort?: number;
  /**
   * Stops pulling (waits for the pull in hand), inserts and acknowledges every message received, closes connections.
   * Idempotent.
   */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts the sink: a durable pull consumer on FLASHBACK_EVENTS whose messages
 * become rows of flashback.events (event batches) and flashback.baselines
 * (baseline records). Rows of many messages are inserted together; messages
 * are acknowledged only after ClickHouse accepted their rows. Redelivery is
 * harmless: the tables are ReplacingMergeTree on (node, epoch, seq).
 *
 * Stages: the consumer (sink/consumer.ts) pulls; the message reader (sink/message-reader.ts) turns messages into
 * rows, holding split-batch parts (sink/held-parts.ts); the batcher (sink/batcher.ts) inserts and acknowledges;
 * retention (sink/retention.ts) runs beside them; sink/metrics.ts keeps what they report.
 */
export async function startSink(o: SinkOptions): Promise<Sink> {
  const {
    natsUrl,
    clickhouseUrl,
    maxBatchRows = 50_000,
    maxBatchBytes = 64 * 1024 * 1024,
    maxHeldPartBytes = 256 * 1024 * 1024,
    partTimeoutMs = 300_000,
    flushIntervalMs = 500,
    maxPullMessages = 256,
    pullExpiresMs = 1_000,
    durable = SINK_DURABLE,
    ackWaitMs = 30_000,
    retryDelayMs = 250,
    maxRetryDelayMs = 10_000,
    healthPort,
    healthHost,
    retentionMs = 7 * 86_400_000,
    retentionIntervalMs = 3_600_000,
    clickhouseShardUrls = [],
    logger = silentLogger,
  } = o;
  if (!Number.isSafeInteger(retentionIntervalMs) || retentionIntervalMs < 0 || retentionIntervalMs > 2_147_483_647)
    throw new ConfigError(
      `--retention-interval ${retentionIntervalMs} ms is out of range; use 0 (no retention passes) up to 24 days`,
    );
  const retentionOn = retentionIntervalMs > 0;
  if (!retentionOn && clickhouseShardUrls.length > 0)
    throw new ConfigError(
      '--clickhouse-shards serves only the retention pass, which --retention-interval 0 turns off; drop one of them',
    );
  const metrics = new SinkMetrics();
  // Aborted once, when close() begins: the stages stop taking new work, then close() drains them in order.
  const closing = new AbortController();
  let nc: NatsConnection | undefined;
  const natsConnected = (): boolean => nc !== undefined && !nc.isClosed() && nc.info !== undefined;
  const health = (): SinkHealth => metrics.health(natsConnected(), closing.signal.aborted);
  const registry = metrics.prometheus(natsConnected);

  // Nothing runs before the health server is up, so a failed start has only connections to close.
  const store = await openClickHouse(clickhouseUrl, { ...o.clickhouseAuth });
  let healthServer: { port: number; close(): Promise<void> } | undefined;
  let shards: Store[] | undefined;
  try {
    await store.ensureSchema();
    if (retentionOn)
      shards = await openRetentionShards({
        store,
        clickhouseUrl,
        auth: o.clickhouseAuth,
        urls: clickhouseShardUrls,
      });
    nc = await connectNats({ url: natsUrl, name: `flashback-sink ${durable}`, logger, auth: o.natsAuth });
    await ensureEventStream(nc, { maxAgeMs: retentionMs });
    await ensureSinkConsumer(nc, { durable, ackWaitMs, maxPullMessages });
    if (healthPort !== undefined) {
      healthServer = await startHealthServer(healthPort, { health, metrics: () => [registry] }, healthHost);
    }
  } catch (err) {
    await nc?.close();
    for (const s of shards ?? []) await s.close();
    await store.close();
    throw err;
  }
  const bus = nc; // narrowed, for the closures below

  const { signal } = closing;
  const batcher = startBatcher({
    store,
    metrics,
    logger,
    maxBatchRows,
    maxBatchBytes,
    flushIntervalMs,
    retryDelayMs,
    maxRetryDelayMs,
    signal,
  });
  const parts = holdParts({ metrics, logger, maxHeldPartBytes, partTimeoutMs, ackWaitMs });
  const read = messageReader({ batcher, parts, metrics, logger });
  const consumer = startConsumer({
    nc: bus,
    durable,
    ackWaitMs,
    maxPullMessages,
    pullExpiresMs,
    retentionMs,
    retryDelayMs,
    maxRetryDelayMs,
    metrics,
    logger,
    signal,
    onMessage: (m) => {
      read(m);
      return batcher.flushIfFull();
    },
  });
  // Between messages the lag from msg.info goes stale; ask the server now and then.
  const stopSampling = metrics.sampleEvery10s(() => consumer.refreshLag());
  const retention = retentionOn
    ? scheduleRetention({ nc: bus, store, shards, retentionMs, intervalMs: retentionIntervalMs, logger })
    : undefined;
  const clickhouse = { clickhouse: store.url, clickhouseVersion: store.version };
  const retentionLog = retentionOn
    ? { retentionMs, retentionIntervalMs, retentionShards: shards?.map((s) => s.url) }
    : { retentionMs, retention: 'off' };
  logger.info(
    { stream: EVENT_STREAM, durable, ...clickhouse, maxBatchRows, flushIntervalMs, ...retentionLog },
    'sink started',
  );

  const shutDown = async (): Promise<void> => {
    closing.abort();
    stopSampling();
    await retention?.close();
    await consumer.close();
    await batcher.close();
    // Incomplete split batches go back to the stream for the next sink; held until now so the drain could join them.
    parts.close();
    await healthServer?.close();
    try {
      // Acks are fire-and-forget: make sure they left before the connection goes.
      await bus.flush();
    } catch {
      // already disconnected: unacked messages are redelivered, which is harmless
    }
    await bus.close();
    for (const s of shards ?? []) await s.close();
    await store.close();
    logger.info({ ...metrics.stats }, 'sink stopped');
  };
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= shutDown());
  return {
    stats: () => ({ ...metrics.stats }),
    health,
    metrics: () => registry,
    healthPort: healthServer?.port,
    close,
    [Symbol.asyncDispose]: close,
  };
}
