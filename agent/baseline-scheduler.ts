import type { JetStreamClient } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { baselineSubject, type BaselineRecord } from '../core/bus/baseline.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { keysInInfo } from '../core/redis/keyspace-info.js';
import type { RawRedis } from '../core/redis/raw-redis.js';
import { takeBaseline } from './baseline.js';
import { BaselineMarkers } from './baseline-markers.js';
import type { DbKey } from '../core/redis/tail-groups.js';
import type { RedisTarget } from '../core/redis/redis-url.js';

/** What a baseline needs of the epoch it is taken in (a MONITOR epoch, or a replication one). */
export interface BaselineRun {
  epoch: number;
  ended: boolean;
  publisher: { flush(): Promise<boolean> };
  /** MONITOR mode: consumer-group reads near the marker are read again after it (agent/monitor/state-capture.ts). */
  states?: { trackGroupReads(): void; takeGroupReads(): DbKey[]; recapture(keys: DbKey[]): void };
}

/** Options of a {@link BaselineScheduler}. */
export interface BaselineSchedulerOptions {
  node: string;
  js: JetStreamClient;
  store: ObjectStore;
  logger: Logger;
  /** Record DEBUG DIGEST: 'auto' = when the dataset has ≤ 100 000 keys (it blocks Redis O(N)). */
  digest: 'auto' | 'always' | 'never';
  /** Take a baseline this often, ms. */
  intervalMs: number;
  /** Also take one after this many events (0 = never by count). */
  everyEvents: number;
  /** The epoch running now. */
  currentRun: () => BaselineRun | undefined;
  /** The node followed now (another after a failover). */
  currentSource: () => { target: RedisTarget; control: RawRedis };
  /** Events captured so far, all epochs. */
  eventsCaptured: () => number;
  /** First wait before a failed baseline is tried again, ms; it doubles per failure. @default 2_000 */
  retryMinMs?: number;
  /** Longest wait between attempts after failures, ms (capped by `intervalMs`). @default 300_000 (5 min) */
  retryMaxMs?: number;
}

/**
 * Takes the agent's baselines: one at each epoch start, then by interval and by event count; one at a time. A failed
 * baseline is tried again with backoff (2 s doubling up to 5 min), not at the next interval: until one succeeds the
 * epoch has no restorable window, and the agent's /health says so.
 */
export class BaselineScheduler {
  /** Baselines stored. */
  count = 0;
  lastSeq = 0;
  /** Epoch of the last stored baseline. */
  lastEpoch = 0;
  /** When the last baseline was stored, ms since the Unix epoch; 0 before the first. */
  lastAtMs = 0;
  /** Baselines that failed, all epochs. */
  failures = 0;
  /** Why the last attempt failed, until one succeeds. */
  lastError: string | undefined;
  /** When the retry after a failure is due, ms since the Unix epoch. */
  nextAttemptAtMs: number | undefined;
  private consecutiveFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly markers = new BaselineMarkers();
  private running: Promise<BaselineRecord> | undefined;
  private eventsAtLast = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: BaselineSchedulerOptions) {}

  /** Starts the interval timer. */
  start(): void {
    this.timer = setInterval(() => void this.take().catch(() => undefined), this.o.intervalMs);
    this.timer.unref();
  }

  /** Stops the interval and retry timers; a baseline already running goes on. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.nextAttemptAtMs = undefined;
  }

  /** A baseline marker event from the assembler. */
  onMarker(ev: FlashbackEvent): void {
    this.markers.onMarker(ev);
  }

  /** Takes a baseline now, or joins the one running; resolves with its record once stored and published. */
  take(): Promise<BaselineRecord> {
    this.running ??= this.takeOne().finally(() => (this.running = undefined));
    return this.running;
  }

  /** A baseline stored by someone else (a full resync's RDB in replication mode) counts as the last one. */
  recorded(record: BaselineRecord): void {
    this.count++;
    this.lastSeq = record.seq;
    this.lastEpoch = record.epoch;
    this.eventsAtLast = this.o.eventsCaptured();
    this.succeeded();
  }

  /**
   * A baseline of the epoch running now, stored before this process started (a restarted agent resumed the epoch):
   * the epoch is restorable from it. Not counted as stored by this process.
   */
  known(record: BaselineRecord): void {
    const run = this.o.currentRun();
    if (!run || run.epoch !== record.epoch || this.lastEpoch === record.epoch) return;
    this.lastSeq = record.seq;
    this.lastEpoch = record.epoch;
    this.lastAtMs = Math.round(record.tsUs / 1000);
  }

  /** A baseline that failed elsewhere (a full resync's RDB in replication mode): counted, the caller retries it. */
  failed(err: unknown): void {
    this.failures++;
    this.lastError = describeError(err);
  }

  private succeeded(): void {
    this.lastAtMs = Date.now();
    this.consecutiveFailures = 0;
    this.lastError = undefined;
    this.nextAttemptAtMs = undefined;
    clearTimeout(this.retryTimer);
  }

  /** After a failure: the next attempt waits 2 s, 4 s, 8 s … up to retryMaxMs (never longer than the interval). */
  private scheduleRetry(): number {
    const { retryMinMs = 2_000, retryMaxMs = 300_000, intervalMs } = this.o;
    const delay = Math.min(retryMinMs * 2 ** Math.min(20, this.consecutiveFailures - 1), retryMaxMs, intervalMs);
    clearTimeout(this.retryTimer);
    this.nextAttemptAtMs = Date.now() + delay;
    this.retryTimer = setTimeout(() => {
      this.nextAttemptAtMs = undefined;
      if (!this.closed) void this.take().catch(() => undefined);
    }, delay);
    this.retryTimer.unref();
    return delay;
  }

  /** Takes a baseline when `everyEvents` events were captured since the last one. */
  takeIfDue(): void {
    const { everyEvents } = this.o;
    if (everyEvents > 0 && this.o.eventsCaptured() - this.eventsAtLast >= everyEvents)
      void this.take().catch(() => undefined);
  }

  /**
   * The first baseline of an epoch starts its restorable window. One still running belongs to the previous epoch
   * (it will fail: its marker cannot land in this one): ours is taken after it.
   */
  epochStarted(run: BaselineRun): void {
    const previous = this.running;
    if (!previous) {
      void this.take().catch(() => undefined);
      return;
    }
    void previous
      .catch(() => undefined)
      .then(() => (this.o.currentRun() === run && !run.ended && this.lastEpoch !== run.epoch ? this.take() : undefined))
      .catch(() => undefined);
  }

  private async takeOne(): Promise<BaselineRecord> {
    const { node, js, logger } = this.o;
    const source = this.o.currentSource();
    const run = this.o.currentRun()!;
    const epoch = run.epoch;
    const started = Date.now();
    let digest = this.o.digest === 'always';
    if (this.o.digest === 'auto') digest = (await countKeys(source.control)) <= 100_000;
    // Group reads from here to the marker may reach the baseline only in part (Redis 7.0 replication): noted, re-read.
    run.states?.trackGroupReads();
    try {
      const { record: partial, approximateGroups } = await takeBaseline({
        target: source.target,
        control: source.control,
        store: this.o.store,
        node,
        epoch,
        digest,
        logger,
      });
      const marker = await this.markers.wait(partial.markerId, epoch);
      // Their state, read now, lands right after the marker (SETTLE events): the baseline is exact from there on.
      const states = run.states;
      const groups = states ? [...approximateGroups, ...states.takeGroupReads()] : [];
      const reread = new Map(groups.map((k) => [`${k.db}:${k.key.toString('hex')}`, k]));
      if (states && reread.size > 0 && this.o.currentRun() === run && !run.ended) {
        states.recapture([...reread.values()]);
        logger.info(
          { epoch, seq: marker.seq, streams: reread.size },
          'consumer-group reads while the baseline was taken: those streams are read again after the marker',
        );
      }
      const record: BaselineRecord = { ...partial, seq: marker.seq, tsUs: marker.tsUs };
      // The marker is an event like any other: make sure it is in the stream before the record that points at it.
      await run.publisher.flush();
      await js.publish(baselineSubject(node), JSON.stringify(record), {
        msgID: `baseline:${node}:${epoch}:${record.seq}`,
      });
      this.count++;
      this.lastSeq = record.seq;
      this.lastEpoch = epoch;
      this.eventsAtLast = this.o.eventsCaptured();
      this.succeeded();
      const { rdbBytes, tailBytes, keys } = record;
      const ms = Date.now() - started;
      logger.info(
        { epoch, seq: record.seq, rdbBytes, tailBytes, keys, digest: record.digest || undefined, ms },
        'baseline stored',
      );
      return record;
    } catch (err) {
      run.states?.takeGroupReads();
      this.failures++;
      this.consecutiveFailures++;
      this.lastError = describeError(err);
      if (this.closed) throw err;
      const retryInMs = this.scheduleRetry();
      logger.error(
        { epoch, err: this.lastError, failures: this.consecutiveFailures, retryInMs },
        `baseline failed; retrying in ${Math.round(retryInMs / 1000)} s`,
      );
      throw err;
    }
  }
}

async function countKeys(control: RawRedis): Promise<number> {
  const info = await control.call(['INFO', 'keyspace']);
  return keysInInfo(Buffer.isBuffer(info) ? info.toString('latin1') : String(info));
}
