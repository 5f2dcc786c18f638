import { setTimeout as delay } from 'node:timers/promises';
import type { JsMsg } from '@nats-io/jetstream';
import { isRetryable } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Store } from '../core/store/clickhouse.js';
import type { BaselineRow, EventRow } from '../core/store/schema.js';
import type { SinkMetrics } from './metrics.js';

/** Options of {@link startBatcher}. */
export interface BatcherOptions {
  store: Pick<Store, 'insertEvents' | 'insertBaselines'>;
  metrics: SinkMetrics;
  logger: Logger;
  /** Rows gathered before an insert. */
  maxBatchRows: number;
  /** Message bytes gathered before an insert. */
  maxBatchBytes: number;
  /** A partial batch is inserted after this long, ms. */
  flushIntervalMs: number;
  /** First delay after a failed insert, ms; doubles up to `maxRetryDelayMs`. */
  retryDelayMs: number;
  /** Longest delay between insert retries, ms. */
  maxRetryDelayMs: number;
  /** Aborted when the sink starts closing: the timer stops; a failing insert gives up after three attempts. */
  signal: AbortSignal;
}

/** Gathers the rows of many messages and inserts them together; acknowledges the messages once ClickHouse took them. */
export interface Batcher {
  /** Adds the event rows that `msgs` carried (`bytes` of message data). */
  addEvents(msgs: readonly JsMsg[], rows: readonly EventRow[], bytes: number): void;
  /** Adds the baseline row that `m` carried. */
  addBaseline(m: JsMsg, row: BaselineRow): void;
  /**
   * When the batch is full, waits for the insert in progress and starts inserting this one, so the next batch is
   * decoded while this one is inserted (at most two in memory); undefined when there is room.
   */
  flushIfFull(): Promise<void> | undefined;
  /** Inserts and acknowledges what it holds (after any insert in progress); call once the messages stopped coming. */
  close(): Promise<void>;
}

interface Batch {
  msgs: JsMsg[];
  events: EventRow[];
  baselines: BaselineRow[];
  bytes: number;
}

const newBatch = (): Batch => ({ msgs: [], events: [], baselines: [], bytes: 0 });

/** Starts a batcher with its flush timer. */
export function startBatcher(o: BatcherOptions): Batcher {
  const { store, metrics, logger, maxBatchRows, maxBatchBytes, flushIntervalMs, retryDelayMs, maxRetryDelayMs } = o;
  const { signal } = o;
  const { stats } = metrics;
  let batch = newBatch();
  let flushing: Promise<void> = Promise.resolve();
  let queuedFlushes = 0;

  const insert = async (b: Batch): Promise<void> => {
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
        metrics.insertDone(Date.now() - started);
        metrics.clickhouseOk = true;
        return;
      } catch (err) {
        stats.insertFailures++;
        metrics.clickhouseOk = false;
        const described = metrics.recordError(err);
        if (signal.aborted && attempt >= 2) {
          // Shutting down with ClickHouse failing: hand the messages back rather than hang.
          for (const m of b.msgs) m.nak();
          logger.error(
            { err: described, messages: b.msgs.length },
            'insert failed while closing; messages handed back for redelivery',
          );
          throw err;
        }
        const wait = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** Math.min(attempt, 16));
        const rows = b.events.length + b.baselines.length;
        logger.error(
          { err: described, retryable: isRetryable(err), attempt: attempt + 1, retryInMs: wait, rows },
          'ClickHouse insert failed; retrying',
        );
        // Keep our messages (this batch and the one gathered meanwhile) while we retry, so JetStream does not
        // redeliver them.
        for (const m of b.msgs) m.working();
        for (const m of batch.msgs) m.working();
        await delay(wait);
      }
    }
  };

  const insertAndAck = async (): Promise<void> => {
    if (batch.msgs.length === 0) return;
    const b = batch;
    batch = newBatch();
    try {
      await insert(b);
    } catch {
      return;
    }
    for (const m of b.msgs) m.ack();
    stats.batches++;
    stats.inserted += b.events.length + b.baselines.length;
    stats.messages += b.msgs.length;
    stats.bytes += b.bytes;
    const { events, baselines, msgs } = b;
    const fields = { events: events.length, baselines: baselines.length, messages: msgs.length };
    logger.debug({ ...fields, ms: stats.lastInsertDurationMs }, 'batch inserted');
  };

  // One insert at a time, in the order asked.
  const flush = (): Promise<void> => {
    queuedFlushes++;
    return (flushing = flushing.then(insertAndAck).finally(() => queuedFlushes--));
  };

  const timer = setInterval(() => {
    if (batch.msgs.length > 0 && queuedFlushes === 0) void flush();
  }, flushIntervalMs);
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });

  return {
    addEvents(msgs, rows, bytes) {
      for (const r of rows) batch.events.push(r);
      for (const m of msgs) batch.msgs.push(m);
      batch.bytes += bytes;
    },
    addBaseline(m, row) {
      batch.baselines.push(row);
      batch.msgs.push(m);
      batch.bytes += m.data.length;
    },
    flushIfFull() {
      if (batch.events.length + batch.baselines.length < maxBatchRows && batch.bytes < maxBatchBytes) return undefined;
      return flushing.then(() => void flush());
    },
    close() {
      clearInterval(timer);
      return flush();
    },
  };
}
