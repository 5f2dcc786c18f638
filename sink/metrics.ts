import { describeError } from '../core/errors.js';
import type { Metric } from '../core/health-server.js';

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
    joinedBatches: 0,
    partBatchesHandedBack: 0,
    heldPartBytes: 0,
    eventsPerSecond: 0,
  };
  /** False while inserts fail. */
  clickhouseOk = true;
  /** The last insert, pull or decode error, described. */
  lastError: string | undefined;
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

  /** Metrics as `GET /metrics` serves them. */
  metrics(): Metric[] {
    const s = this.stats;
    return [
      counter('flashback_sink_events_total', 'Events read from JetStream', s.events),
      counter('flashback_sink_rows_inserted_total', 'Rows ClickHouse accepted', s.inserted),
      counter('flashback_sink_batches_total', 'Inserts into ClickHouse', s.batches),
      counter('flashback_sink_bytes_total', 'Message bytes acknowledged', s.bytes),
      counter('flashback_sink_insert_failures_total', 'Failed ClickHouse inserts (retried)', s.insertFailures),
      counter('flashback_sink_poison_messages_total', 'Undecodable messages terminated', s.poisonMessages),
      gauge(
        'flashback_sink_held_part_bytes',
        'Bytes of split-batch parts waiting for the rest of their batch',
        s.heldPartBytes,
      ),
      counter(
        'flashback_sink_part_batches_handed_back_total',
        'Incomplete split batches handed back for redelivery',
        s.partBatchesHandedBack,
      ),
      gauge('flashback_sink_lag_messages', 'Messages not yet delivered to the sink', s.lagMessages),
      gauge('flashback_sink_events_per_second', 'Events per second over the last 10 s', s.eventsPerSecond),
      gauge('flashback_sink_last_insert_duration_ms', 'Duration of the last insert', s.lastInsertDurationMs),
      gauge(
        'flashback_sink_last_insert_timestamp_seconds',
        'Time of the last successful insert',
        s.lastInsertMs / 1_000,
      ),
    ];
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

function counter(name: string, help: string, value: number): Metric {
  return { name, help, type: 'counter', value };
}

function gauge(name: string, help: string, value: number): Metric {
  return { name, help, type: 'gauge', value };
}
