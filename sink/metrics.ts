import { Histogram, Registry } from 'prom-client';
import { describeError } from '../core/errors.js';
import { snapshotCounter, snapshotGauge, type Sample } from '../core/metrics/snapshot.js';

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
  /** Messages of a batch format newer than this sink reads, left in the stream (counted per delivery). */
  newerVersionMessages: number;
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

/** Window of the events-per-second rate, ms. */
const RATE_WINDOW_MS = 10_000;

/** What the stages of a sink report: counters they update in place, whether inserts succeed, the last error. */
export class SinkMetrics {
  /** Counters, updated in place by the stages. */
  readonly stats: SinkStats = {
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
    newerVersionMessages: 0,
    joinedBatches: 0,
    partBatchesHandedBack: 0,
    heldPartBytes: 0,
    eventsPerSecond: 0,
  };
  /** False while inserts fail. */
  clickhouseOk = true;
  /** The last insert, pull or decode error, described. */
  lastError: string | undefined;
  /** Duration of every successful insert, seconds. */
  readonly insertSeconds = new Histogram({
    name: 'flashback_sink_insert_duration_seconds',
    help: 'Duration of successful ClickHouse inserts (one per batch)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [],
  });
  private registry: Registry | undefined;
  private rateWindowStartMs = Date.now();
  private rateWindowEvents = 0;

  /** Keeps `err` as the last error; returns its description for the log line. */
  recordError(err: unknown): string {
    return (this.lastError = describeError(err));
  }

  /** Health as `GET /health` serves it. */
  health(natsConnected: boolean, closing: boolean): SinkHealth {
    const { clickhouseOk, lastError } = this;
    const { lagMessages, lastInsertMs } = this.stats;
    const ok = natsConnected && clickhouseOk && !closing;
    return { ok, natsConnected, clickhouseOk, lagMessages, lastInsertMs, lastError };
  }

  /** Records a successful insert that took `ms`. */
  insertDone(ms: number): void {
    this.stats.lastInsertDurationMs = ms;
    this.stats.lastInsertMs = Date.now();
    this.insertSeconds.observe(ms / 1000);
  }

  /** The sink's Prometheus registry (GET /metrics); `natsConnected` is read at each scrape. */
  prometheus(natsConnected: () => boolean): Registry {
    this.registry ??= sinkRegistry(this, natsConnected);
    return this.registry;
  }

  /**
   * Every 10 s closes the events-per-second window and calls `refresh` (for readings that go stale, like the lag).
   * Returns the function that stops it.
   */
  sampleEvery10s(refresh: () => void): () => void {
    const timer = setInterval(() => {
      const now = Date.now();
      const events = this.stats.events - this.rateWindowEvents;
      this.stats.eventsPerSecond = Math.round((events * 1_000) / Math.max(1, now - this.rateWindowStartMs));
      this.rateWindowStartMs = now;
      this.rateWindowEvents = this.stats.events;
      refresh();
    }, RATE_WINDOW_MS);
    timer.unref();
    return () => clearInterval(timer);
  }
}

/** The sink's metrics: counters for what it moved, the stream backlog it has not read yet, insert durations. */
function sinkRegistry(m: SinkMetrics, natsConnected: () => boolean): Registry {
  const registry = new Registry();
  registry.registerMetric(m.insertSeconds);
  const value = (f: () => number) => (): Sample<never>[] => [[{}, f()]];
  const counter = (name: string, help: string, f: (s: SinkStats) => number) =>
    snapshotCounter(registry, { name, help, labelNames: [], read: value(() => f(m.stats)) });
  const gauge = (name: string, help: string, f: () => number) =>
    snapshotGauge(registry, { name, help, labelNames: [], read: value(f) });
  counter('flashback_sink_events_total', 'Events read from JetStream', (s) => s.events);
  counter('flashback_sink_baselines_total', 'Baseline records read from JetStream', (s) => s.baselines);
  counter('flashback_sink_messages_total', 'JetStream messages acknowledged', (s) => s.messages);
  counter('flashback_sink_bytes_total', 'Message bytes acknowledged', (s) => s.bytes);
  counter('flashback_sink_inserts_total', 'Successful ClickHouse inserts', (s) => s.batches);
  counter('flashback_sink_rows_inserted_total', 'Rows ClickHouse accepted (events and baselines)', (s) => s.inserted);
  counter('flashback_sink_insert_failures_total', 'Failed ClickHouse inserts (retried)', (s) => s.insertFailures);
  counter('flashback_sink_poison_messages_total', 'Undecodable messages terminated', (s) => s.poisonMessages);
  counter(
    'flashback_sink_newer_format_messages_total',
    'Deliveries of messages of a newer batch format, left in the stream (upgrade the sink)',
    (s) => s.newerVersionMessages,
  );
  counter('flashback_sink_joined_batches_total', 'Split batches whose parts were joined', (s) => s.joinedBatches);
  counter(
    'flashback_sink_part_batches_handed_back_total',
    'Incomplete split batches handed back for redelivery',
    (s) => s.partBatchesHandedBack,
  );
  gauge(
    'flashback_sink_pending_messages',
    'Messages in the stream not yet delivered to the sink (num_pending)',
    () => m.stats.lagMessages,
  );
  gauge(
    'flashback_sink_held_part_bytes',
    'Bytes of split-batch parts waiting for the rest of their batch',
    () => m.stats.heldPartBytes,
  );
  gauge(
    'flashback_sink_last_insert_timestamp_seconds',
    'When the last successful insert ended, Unix seconds (0 before the first)',
    () => m.stats.lastInsertMs / 1_000,
  );
  gauge('flashback_sink_clickhouse_ok', '0 while inserts fail, else 1', () => (m.clickhouseOk ? 1 : 0));
  gauge('flashback_sink_nats_connected', '1 while connected to NATS', () => (natsConnected() ? 1 : 0));
  return registry;
}
