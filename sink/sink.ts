import { setTimeout as delay } from 'node:timers/promises';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, type Consumer, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { describeError, isRetryable, ProtocolError } from '../core/errors.js';
import { decodeBatch } from '../core/bus/event-codec.js';
import { BATCH_HEADER, PART_HEADER, PartCollector, parsePart, type HeldBatch } from '../core/bus/event-parts.js';
import { startHealthServer, type Metric } from '../core/health-server.js';
import { silentLogger, type Logger } from '../core/log.js';
import { connectNats, ensureBaselineStore, ensureEventStream, EVENT_STREAM, natsJetStreamManager, SINK_DURABLE, translateNatsError, type NatsConnection } from '../core/bus/nats.js';
import type { BaselineRow, EventRow } from '../core/store/schema.js';
import { applyRetention } from './retention.js';
import { baselineToRow, eventToRow, parseBaselineRecord } from './rows.js';

/** Options of {@link startSink}. */
export interface SinkOptions {
  /** NATS server(s) with JetStream. */
  natsUrl: string;
  /** ClickHouse HTTP URL, `http://[user:password@]host:port`. */
  clickhouseUrl: string;
  /** Rows gathered (over many messages) before an insert. @default 50_000 */
  maxBatchRows?: number;
  /** Message bytes gathered before an insert (big values fill few rows). @default 64 MiB */
  maxBatchBytes?: number;
  /**
   * Bytes of part messages (core/event-parts.ts) held while their batch is incomplete; over it the oldest incomplete
   * batch is handed back (nak, redelivered after `ackWaitMs`) with an error log. @default 256 MiB
   */
  maxHeldPartBytes?: number;
  /** An incomplete split batch is handed back (nak, error log) after waiting this long for its other parts, ms. @default 300_000 */
  partTimeoutMs?: number;
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
  /**
   * History kept, ms: the stream's max age, and a retention pass (core/retention.ts) that drops old day partitions
   * and baselines, keeping whole windows. @default 7 days
   */
  retentionMs?: number;
  /** How often the retention pass runs, ms (also once at start). @default 3_600_000 */
  retentionIntervalMs?: number;
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
  /** Split batches whose parts were joined. */
  joinedBatches: number;
  /** Incomplete split batches handed back (held too long or over `maxHeldPartBytes`). */
  partBatchesHandedBack: number;
  /** Bytes of part messages held now, waiting for the rest of their batch. */
  heldPartBytes: number;
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
    retentionMs = 7 * 86_400_000,
    retentionIntervalMs = 3_600_000,
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
    await ensureEventStream(nc, { maxAgeMs: retentionMs });
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
    joinedBatches: 0,
    partBatchesHandedBack: 0,
    heldPartBytes: 0,
    eventsPerSecond: 0,
  };
  const parts = new PartCollector<JsMsg>();
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

  const handBack = (h: HeldBatch<JsMsg>, why: string): void => {
    stats.partBatchesHandedBack++;
    logger.error(
      { batch: h.batchId, partsReceived: h.received, parts: h.count, heldBytes: h.bytes, heldMs: Date.now() - h.sinceMs },
      `split batch ${h.batchId} is incomplete (${h.received} of ${h.count} parts) and ${why}; its parts are handed back for redelivery (raise maxHeldPartBytes/partTimeoutMs if batches are this large or slow)`,
    );
    for (const m of h.parts) m?.nak(ackWaitMs);
    stats.heldPartBytes = parts.heldBytes;
  };

  const poison = (msgs: JsMsg[], err: unknown): void => {
    // A message we cannot read never will be: stop its redelivery, keep it in the stream for inspection.
    stats.poisonMessages += msgs.length;
    lastError = describeError(err);
    for (const m of msgs) {
      logger.error({ err: lastError, subject: m.subject, streamSeq: m.seq }, `message ${m.seq} of ${EVENT_STREAM} cannot be decoded; terminated (it stays in the stream)`);
      m.term();
    }
  };

  /** A part message: held until its batch is whole; then the batch's rows and every part go into the insert batch. */
  const handlePart = (m: JsMsg, partHeader: string): void => {
    let joined;
    try {
      const batchId = m.headers?.get(BATCH_HEADER) ?? '';
      if (batchId === '') throw new ProtocolError(`part message has ${PART_HEADER} but no ${BATCH_HEADER} header; was it published by a flashback agent?`);
      joined = parts.add(batchId, parsePart(partHeader), m);
    } catch (err) {
      return poison([m], err);
    }
    if (!joined) {
      while (parts.heldBytes > maxHeldPartBytes) handBack(parts.evictOldest()!, `its parts held exceed maxHeldPartBytes (${maxHeldPartBytes} bytes)`);
      stats.heldPartBytes = parts.heldBytes;
      return;
    }
    stats.heldPartBytes = parts.heldBytes;
    let events;
    try {
      ({ events } = decodeBatch(joined.body));
    } catch (err) {
      return poison(joined.msgs, err);
    }
    for (const e of events) batch.events.push(eventToRow(e));
    stats.events += events.length;
    stats.joinedBatches++;
    batch.msgs.push(...joined.msgs);
    batch.bytes += joined.body.length;
  };

  const handle = (m: JsMsg): void => {
    stats.lagMessages = m.info.pending;
    const partHeader = m.headers?.get(PART_HEADER) ?? '';
    if (partHeader !== '') return handlePart(m, partHeader);
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
      return poison([m], err);
    }
    batch.msgs.push(m);
    batch.bytes += m.data.length;
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
          if (batch.events.length + batch.baselines.length >= maxBatchRows || batch.bytes >= maxBatchBytes) {
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
          await ensureEventStream(nc, { maxAgeMs: retentionMs })
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

  // Parts waiting for the rest of their batch are kept from redelivery, up to partTimeoutMs.
  const partTimer = setInterval(() => {
    for (const h of parts.takeOlderThan(Date.now() - partTimeoutMs)) handBack(h, `waited over partTimeoutMs (${partTimeoutMs} ms) for the rest`);
    for (const m of parts.messages()) m.working();
  }, Math.max(100, Math.min(ackWaitMs / 3, partTimeoutMs / 2)));
  partTimer.unref();

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

  const retention = async () => {
    try {
      const objects = await ensureBaselineStore(nc);
      await applyRetention({ store, objects, retentionMs, logger });
    } catch (err) {
      logger.warn({ err: describeError(err) }, 'retention pass failed; will try again');
    }
  };
  let retentionRun: Promise<void> = retention();
  const retentionTimer = setInterval(() => {
    retentionRun = retentionRun.then(retention);
  }, retentionIntervalMs);
  retentionTimer.unref();

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
    { name: 'flashback_sink_held_part_bytes', help: 'Bytes of split-batch parts waiting for the rest of their batch', type: 'gauge', value: stats.heldPartBytes },
    { name: 'flashback_sink_part_batches_handed_back_total', help: 'Incomplete split batches handed back for redelivery', type: 'counter', value: stats.partBatchesHandedBack },
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
      clearInterval(partTimer);
      clearInterval(slowTimer);
      clearInterval(retentionTimer);
      await retentionRun;
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
    clearInterval(retentionTimer);
    await retentionRun;
    await loop;
    await flush();
    clearInterval(partTimer);
    // Incomplete split batches go back to the stream for the next sink.
    for (const h of parts.takeAll()) for (const m of h.parts) m?.nak();
    stats.heldPartBytes = 0;
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
