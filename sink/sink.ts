import { setTimeout as delay } from 'node:timers/promises';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, type Consumer, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { openClickHouse, type Store } from '../core/clickhouse.js';
import { describeError, isRetryable } from '../core/errors.js';
import { decodeBatch } from '../core/event-codec.js';
import { startHealthServer, type Metric } from '../core/health-server.js';
import { silentLogger, type Logger } from '../core/log.js';
import { connectNats, ensureEventStream, EVENT_STREAM, natsJetStreamManager, SINK_DURABLE, translateNatsError, type NatsConnection } from '../core/nats.js';
import type { BaselineRow, EventRow } from '../core/schema.js';
import { baselineToRow, eventToRow, parseBaselineRecord } from './rows.js';

/** Options of {@link startSink}. */
export interface SinkOptions {
  /** NATS server(s) with JetStream. */
  natsUrl: string;
  /** ClickHouse HTTP URL, `http://[user:password@]host:port`. */
  clickhouseUrl: string;
  /** Rows gathered (over many messages) before an insert. @default 50_000 */
  maxBatchRows?: number;
  /** A partial batch is inserted after this long, ms: bounds the delay until events are queryable. @default 500 */
  flushIntervalMs?: number;
  /** Messages one pull asks for (each holds up to ~2_000 events / 512 KiB). @default 256 */
  maxPullMessages?: number;
  /** How long one pull waits for messages, ms (≥ 1_000); close() waits at most this long for the pull in hand. @default 1_000 */
  pullExpiresMs?: number;
  /** Durable consumer name; one per sink group (sinks sharing it share the work). @default SINK_DURABLE */
  durable?: string;
  /** Time JetStream waits for an ack before redelivering, ms; held messages are kept alive with `working()`. @default 30_000 */
  ackWaitMs?: number;
  /** First delay after a failed insert, ms; doubles up to `maxRetryDelayMs`. @default 250 */
  retryDelayMs?: number;
  /** Longest delay between insert retries, ms. @default 10_000 */
  maxRetryDelayMs?: number;
  /** Serve GET /health and /metrics on 127.0.0.1:healthPort. @default no health server */
  healthPort?: number;
  /** @default silent */
  logger?: Logger;
}

/** Counters of a running sink. */
export interface SinkStats {
  /** Events decoded from the stream. */
  events: number;
  /** Baseline records read from the stream. */
  baselines: number;
  /** JetStream messages acknowledged. */
  messages: number;
  /** Message bytes acknowledged. */
  bytes: number;
  /** Successful inserts (one per flush). */
  batches: number;
  /** Rows ClickHouse accepted (events + baselines). */
  inserted: number;
  /** Wall-clock time of the last successful insert, ms since the epoch; 0 before the first. */
  lastInsertMs: number;
  /** How long the last successful insert took, ms. */
  lastInsertDurationMs: number;
  /** Messages in the stream not yet delivered to this consumer (num_pending). */
  lagMessages: number;
  /** Inserts that failed and were retried. */
  insertFailures: number;
  /** Messages that could not be decoded and were terminated (never redelivered). */
  poisonMessages: number;
  /** Events per second over the last completed 10 s window. */
  eventsPerSecond: number;
}

/** Health of a running sink. */
export interface SinkHealth {
  ok: boolean;
  natsConnected: boolean;
  /** False while inserts fail. */
  clickhouseOk: boolean;
  lagMessages: number;
  lastInsertMs: number;
  lastError?: string;
  [k: string]: unknown;
}

/** A running sink: JetStream → ClickHouse. */
export interface Sink {
  stats(): SinkStats;
  health(): SinkHealth;
  /** Port of the health server, when one was asked for. */
  readonly healthPort?: number;
  /** Stops pulling (waits for the pull in hand), inserts and acknowledges every message received, closes connections. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Batch {
  msgs: JsMsg[];
  events: EventRow[];
  baselines: BaselineRow[];
  bytes: number;
}

const newBatch = (): Batch => ({ msgs: [], events: [], baselines: [], bytes: 0 });

/**
 * Starts the sink: a durable pull consumer on FLASHBACK_EVENTS whose messages
 * become rows of flashback.events (event batches) and flashback.baselines
 * (baseline records). Rows of many messages are inserted together; messages
 * are acknowledged only after ClickHouse accepted their rows. Redelivery is
 * harmless: the tables are ReplacingMergeTree on (node, epoch, seq).
 */
export async function startSink(o: SinkOptions): Promise<Sink> {
  const {
    natsUrl,
    clickhouseUrl,
    maxBatchRows = 50_000,
    flushIntervalMs = 500,
    maxPullMessages = 256,
    pullExpiresMs = 1_000,
    durable = SINK_DURABLE,
    ackWaitMs = 30_000,
    retryDelayMs = 250,
    maxRetryDelayMs = 10_000,
    healthPort,
    logger = silentLogger,
  } = o;

  const store = await openClickHouse(clickhouseUrl);
  let nc: NatsConnection;
  try {
    await store.ensureSchema();
    nc = await connectNats({ url: natsUrl, name: `flashback-sink ${durable}`, logger });
  } catch (err) {
    await store.close();
    throw err;
  }

  const ensureConsumer = async () => {
    const jsm = await natsJetStreamManager(nc);
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: ackWaitMs * 1_000_000,
      max_ack_pending: Math.max(1_000, maxPullMessages * 4),
      description: 'flashback sink: JetStream → ClickHouse',
    };
    try {
      try {
        await jsm.consumers.info(EVENT_STREAM, durable);
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.ConsumerNotFound) throw err;
        await jsm.consumers.add(EVENT_STREAM, config);
        return;
      }
      await jsm.consumers.update(EVENT_STREAM, durable, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending, description: config.description });
    } catch (cause) {
      throw translateNatsError(cause, `consumer ${durable} of stream ${EVENT_STREAM}`);
    }
  };

  try {
    await ensureEventStream(nc);
    await ensureConsumer();
  } catch (err) {
    await nc.close();
    await store.close();
    throw err;
  }
  const js = jetstream(nc);

  const stats: SinkStats = {
    events: 0,
    baselines: 0,
    messages: 0,
    bytes: 0,
    batches: 0,
    inserted: 0,
    lastInsertMs: 0,
    lastInsertDurationMs: 0,
    lagMessages: 0,
    insertFailures: 0,
    poisonMessages: 0,
    eventsPerSecond: 0,
  };
  let clickhouseOk = true;
  let lastError: string | undefined;
  let closing = false;
  let batch = newBatch();
  let flushing: Promise<void> = Promise.resolve();

  const insertBatch = async (b: Batch): Promise<void> => {
    let eventsDone = b.events.length === 0;
    let baselinesDone = b.baselines.length === 0;
    for (let attempt = 0; ; attempt++) {
      const started = Date.now();
      try {
        if (!eventsDone) {
          await store.insertEvents(b.events);
          eventsDone = true;
        }
        if (!baselinesDone) {
          await store.insertBaselines(b.baselines);
          baselinesDone = true;
        }
        stats.lastInsertDurationMs = Date.now() - started;
        stats.lastInsertMs = Date.now();
        clickhouseOk = true;
        return;
      } catch (err) {
        stats.insertFailures++;
        clickhouseOk = false;
        lastError = describeError(err);
        if (closing && attempt >= 2) {
          // Shutting down with ClickHouse failing: hand the messages back rather than hang.
          for (const m of b.msgs) m.nak();
          logger.error({ err: lastError, messages: b.msgs.length }, 'insert failed while closing; messages handed back for redelivery');
          throw err;
        }
        const wait = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** Math.min(attempt, 16));
        logger.error({ err: lastError, retryable: isRetryable(err), attempt: attempt + 1, retryInMs: wait, rows: b.events.length + b.baselines.length }, 'ClickHouse insert failed; retrying');
        // Keep our messages (this batch and the one gathered meanwhile) while we retry, so JetStream does not redeliver them.
        for (const m of b.msgs) m.working();
        for (const m of batch.msgs) m.working();
        await delay(wait);
      }
    }
  };

  const doFlush = async (): Promise<void> => {
    if (batch.msgs.length === 0) return;
    const b = batch;
    batch = newBatch();
    try {
      await insertBatch(b);
    } catch {
      return;
    }
    for (const m of b.msgs) m.ack();
    stats.batches++;
    stats.inserted += b.events.length + b.baselines.length;
    stats.messages += b.msgs.length;
    stats.bytes += b.bytes;
    logger.debug({ events: b.events.length, baselines: b.baselines.length, messages: b.msgs.length, ms: stats.lastInsertDurationMs }, 'batch inserted');
  };
  let queuedFlushes = 0;
  const flush = (): Promise<void> => {
    queuedFlushes++;
    return (flushing = flushing.then(doFlush).finally(() => queuedFlushes--));
  };

  const handle = (m: JsMsg): void => {
    try {
      if (m.subject.startsWith('flashback.baselines.')) {
        batch.baselines.push(baselineToRow(parseBaselineRecord(m.data)));
        stats.baselines++;
      } else {
        const { events } = decodeBatch(m.data);
        for (const e of events) batch.events.push(eventToRow(e));
        stats.events += events.length;
      }
    } catch (err) {
      // A message we cannot read never will be: stop its redelivery, keep it in the stream for inspection.
      stats.poisonMessages++;
      lastError = describeError(err);
      logger.error({ err: lastError, subject: m.subject, streamSeq: m.seq }, `message ${m.seq} of ${EVENT_STREAM} cannot be decoded; terminated (it stays in the stream)`);
      m.term();
      return;
    }
    batch.msgs.push(m);
    batch.bytes += m.data.length;
    stats.lagMessages = m.info.pending;
  };

  const watchStatus = async (pulled: ConsumerMessages) => {
    for await (const st of pulled.status()) {
      if (st.type === 'heartbeats_missed') logger.warn({ count: st.count }, 'JetStream heartbeats missed; pulling again');
      else if (st.type === 'consumer_not_found' || st.type === 'consumer_deleted' || st.type === 'stream_not_found') logger.warn({ status: st.type, durable }, 'sink consumer or stream is gone; it is created again');
    }
  };

  // fetch, not consume: a consume() stopped mid-pull drops the messages still in flight, and JetStream
  // hands them out again only after ack_wait; a fetch ends by itself within pullExpiresMs, so close()
  // waits for it and finishes every message it brought.
  const consumeLoop = async () => {
    let consumer: Consumer | undefined;
    for (let attempt = 0; !closing; ) {
      try {
        consumer ??= await js.consumers.get(EVENT_STREAM, durable);
        const pulled = await consumer.fetch({ max_messages: maxPullMessages, expires: pullExpiresMs });
        void watchStatus(pulled).catch(() => {});
        for await (const m of pulled) {
          handle(m);
          if (batch.events.length + batch.baselines.length >= maxBatchRows) {
            // Decode the next batch while this one is inserted; at most two batches in memory.
            await flushing;
            void flush();
          }
        }
        attempt = 0;
      } catch (err) {
        consumer = undefined;
        if (closing) break;
        const wait = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** Math.min(attempt++, 16));
        lastError = describeError(err);
        logger.error({ err: lastError, retryInMs: wait }, 'pulling from JetStream failed; retrying');
        if (/consumer not found|stream not found|consumer deleted/i.test(String((err as Error)?.message))) {
          await ensureEventStream(nc)
            .then(ensureConsumer)
            .catch((e: unknown) => logger.error({ err: describeError(e) }, 'could not create the event stream or the sink consumer'));
        }
        await delay(wait);
      }
    }
  };

  const timer = setInterval(() => {
    if (batch.msgs.length > 0 && queuedFlushes === 0) void flush();
  }, flushIntervalMs);

  let rateWindowStart = Date.now();
  let rateWindowEvents = 0;
  const slowTimer = setInterval(() => {
    const now = Date.now();
    stats.eventsPerSecond = Math.round(((stats.events - rateWindowEvents) * 1_000) / Math.max(1, now - rateWindowStart));
    rateWindowStart = now;
    rateWindowEvents = stats.events;
    // Between messages the lag from msg.info goes stale; ask the server now and then.
    if (!closing) {
      js.consumers
        .get(EVENT_STREAM, durable)
        .then((c) => c.info(true))
        .then((info) => {
          stats.lagMessages = info.num_pending;
        })
        .catch(() => {});
    }
  }, 10_000);
  slowTimer.unref();

  const loop = consumeLoop();

  const health = (): SinkHealth => {
    const natsConnected = !nc.isClosed() && nc.info !== undefined;
    return { ok: natsConnected && clickhouseOk && !closing, natsConnected, clickhouseOk, lagMessages: stats.lagMessages, lastInsertMs: stats.lastInsertMs, lastError };
  };
  const metrics = (): Metric[] => [
    { name: 'flashback_sink_events_total', help: 'Events read from JetStream', type: 'counter', value: stats.events },
    { name: 'flashback_sink_rows_inserted_total', help: 'Rows ClickHouse accepted', type: 'counter', value: stats.inserted },
    { name: 'flashback_sink_batches_total', help: 'Inserts into ClickHouse', type: 'counter', value: stats.batches },
    { name: 'flashback_sink_bytes_total', help: 'Message bytes acknowledged', type: 'counter', value: stats.bytes },
    { name: 'flashback_sink_insert_failures_total', help: 'Failed ClickHouse inserts (retried)', type: 'counter', value: stats.insertFailures },
    { name: 'flashback_sink_poison_messages_total', help: 'Undecodable messages terminated', type: 'counter', value: stats.poisonMessages },
    { name: 'flashback_sink_lag_messages', help: 'Messages not yet delivered to the sink', type: 'gauge', value: stats.lagMessages },
    { name: 'flashback_sink_events_per_second', help: 'Events per second over the last 10 s', type: 'gauge', value: stats.eventsPerSecond },
    { name: 'flashback_sink_last_insert_duration_ms', help: 'Duration of the last insert', type: 'gauge', value: stats.lastInsertDurationMs },
    { name: 'flashback_sink_last_insert_timestamp_seconds', help: 'Time of the last successful insert', type: 'gauge', value: stats.lastInsertMs / 1_000 },
  ];

  let healthServer: { port: number; close(): Promise<void> } | undefined;
  if (healthPort !== undefined) {
    try {
      healthServer = await startHealthServer(healthPort, { health, metrics });
    } catch (err) {
      closing = true;
      clearInterval(timer);
      clearInterval(slowTimer);
      await loop;
      await nc.close();
      await store.close();
      throw err;
    }
  }
  logger.info({ stream: EVENT_STREAM, durable, clickhouse: store.url, clickhouseVersion: store.version, maxBatchRows, flushIntervalMs }, 'sink started');

  let closed: Promise<void> | undefined;
  const doClose = async () => {
    closing = true;
    clearInterval(timer);
    clearInterval(slowTimer);
    await loop;
    await flush();
    await healthServer?.close();
    try {
      // Acks are fire-and-forget: make sure they left before the connection goes.
      await nc.flush();
    } catch {
      // already disconnected: unacked messages are redelivered, which is harmless
    }
    await nc.close();
    await store.close();
    logger.info({ ...stats }, 'sink stopped');
  };
  const close = () => (closed ??= doClose());
  return {
    stats: () => ({ ...stats }),
    health,
    healthPort: healthServer?.port,
    close,
    [Symbol.asyncDispose]: close,
  };
}
