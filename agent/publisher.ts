import type { JetStreamClient } from '@nats-io/jetstream';
import { encodeBatch } from '../core/event-codec.js';
import { eventSubject, messageId, type FlashbackEvent } from '../core/event.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';

/** Options of the batched JetStream publisher. */
export interface PublisherOptions {
  node: string;
  epoch: number;
  /** Events per message. @default 2_000 */
  batchMaxEvents?: number;
  /** Encoded bytes per message (stays under NATS's 1 MB max_payload). @default 512 KiB */
  batchMaxBytes?: number;
  /** A partial batch is sealed after this long, bounding capture-to-stream latency. @default 5 */
  flushIntervalMs?: number;
  /** Bytes published but not yet acknowledged. @default 8 MiB */
  maxInFlightBytes?: number;
  /** Bytes waiting to be published (NATS slow or down) before the epoch must end. @default 256 MiB */
  maxQueuedBytes?: number;
  /** Per-publish ack timeout. @default 5_000 */
  ackTimeoutMs?: number;
  /** Called once when the queue overflows: continuity is lost, the agent ends the epoch. */
  onOverflow: (queuedBytes: number) => void;
  logger?: Logger;
}

interface Batch {
  firstSeq: number;
  lastSeq: number;
  lastTsUs: number;
  body: Buffer;
  events: number;
}

/**
 * Turns events into JetStream messages: consecutive events of one epoch per
 * message (Nats-Msg-Id = node:epoch:firstSeq, so a retried message is
 * deduplicated by the server), many messages in flight, bounded bytes.
 * `enqueue` never blocks: the MONITOR reader must never wait for NATS.
 */
export class EventPublisher {
  private readonly o: Required<Omit<PublisherOptions, 'logger'>> & { logger: Logger };
  private readonly subject: string;
  private pending: FlashbackEvent[] = [];
  private pendingBytes = 0;
  private readonly queue: Batch[] = [];
  private queuedBytes = 0;
  private inFlightBytes = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private overflowed = false;
  private closed = false;
  private retryDelayMs = 0;
  private idleWaiters: (() => void)[] = [];
  /** Events acknowledged by JetStream. */
  ackedEvents = 0;
  ackedBytes = 0;
  ackedMessages = 0;
  /** Highest seq acknowledged (acks may arrive out of order; this is the max). */
  lastAckedSeq = 0;
  /** Server time (µs) of the newest acknowledged event, for lag. */
  lastAckedTsUs = 0;
  publishErrors = 0;

  constructor(
    private readonly js: JetStreamClient,
    options: PublisherOptions,
  ) {
    const {
      batchMaxEvents = 2_000,
      batchMaxBytes = 512 * 1024,
      flushIntervalMs = 5,
      maxInFlightBytes = 8 * 1024 * 1024,
      maxQueuedBytes = 256 * 1024 * 1024,
      ackTimeoutMs = 5_000,
      logger = silentLogger,
    } = options;
    this.o = { ...options, batchMaxEvents, batchMaxBytes, flushIntervalMs, maxInFlightBytes, maxQueuedBytes, ackTimeoutMs, logger };
    this.subject = eventSubject(options.node);
  }

  /** Bytes waiting (not yet sent) plus bytes in flight. */
  get backlogBytes(): number {
    return this.queuedBytes + this.inFlightBytes + this.pendingBytes;
  }

  /** Adds events (in seq order). Never blocks. */
  enqueue(events: FlashbackEvent[]): void {
    if (this.closed || this.overflowed) return;
    for (const e of events) {
      this.pending.push(e);
      this.pendingBytes += approxSize(e);
      if (this.pending.length >= this.o.batchMaxEvents || this.pendingBytes >= this.o.batchMaxBytes) this.seal();
    }
    if (this.pending.length > 0 && !this.timer) this.timer = setTimeout(() => this.seal(), this.o.flushIntervalMs);
  }

  private seal(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    const body = encodeBatch({ node: this.o.node, epoch: this.o.epoch, events });
    const first = events[0]!;
    const last = events[events.length - 1]!;
    this.queue.push({ firstSeq: first.seq, lastSeq: last.seq, lastTsUs: last.tsUs, body, events: events.length });
    this.queuedBytes += body.length;
    if (this.queuedBytes + this.inFlightBytes > this.o.maxQueuedBytes && !this.overflowed) {
      this.overflowed = true;
      this.o.logger.error({ queuedBytes: this.queuedBytes, maxQueuedBytes: this.o.maxQueuedBytes }, 'publish backlog over its bound: ending the epoch');
      this.o.onOverflow(this.queuedBytes);
      return;
    }
    this.pump();
  }

  private pump(): void {
    if (this.retryDelayMs > 0) return;
    while (this.queue.length > 0 && (this.inFlight === 0 || this.inFlightBytes + this.queue[0]!.body.length <= this.o.maxInFlightBytes)) {
      const batch = this.queue.shift()!;
      this.queuedBytes -= batch.body.length;
      this.inFlightBytes += batch.body.length;
      this.inFlight++;
      this.send(batch);
    }
    if (this.queue.length === 0 && this.inFlight === 0 && this.pending.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private send(batch: Batch): void {
    const msgID = messageId(this.o.node, this.o.epoch, batch.firstSeq);
    this.js.publish(this.subject, batch.body, { msgID, timeout: this.o.ackTimeoutMs }).then(
      () => {
        this.inFlight--;
        this.inFlightBytes -= batch.body.length;
        this.ackedEvents += batch.events;
        this.ackedBytes += batch.body.length;
        this.ackedMessages++;
        if (batch.lastSeq > this.lastAckedSeq) {
          this.lastAckedSeq = batch.lastSeq;
          this.lastAckedTsUs = batch.lastTsUs;
        }
        this.retryDelayMs = 0;
        this.pump();
      },
      (err: unknown) => {
        // Put it back in front and retry with backoff; the msgID makes a
        // message that did reach the stream a duplicate the server drops.
        this.inFlight--;
        this.inFlightBytes -= batch.body.length;
        this.queue.unshift(batch);
        this.queuedBytes += batch.body.length;
        this.publishErrors++;
        if (this.closed && this.abandon) return this.pump();
        const delay = Math.min(5_000, Math.max(100, this.retryDelayMs * 2));
        if (this.retryDelayMs === 0 || delay !== this.retryDelayMs) {
          this.o.logger.warn({ err: (err as Error).message, retryInMs: delay, queuedBytes: this.queuedBytes }, 'JetStream publish failed; retrying');
        }
        this.retryDelayMs = delay;
        setTimeout(() => {
          this.retryDelayMs = 0;
          this.pump();
        }, delay).unref();
      },
    );
  }

  private abandon = false;

  /** Seals the partial batch and resolves when everything is acknowledged (or `timeoutMs` passes: then false). */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    this.seal();
    if (this.queue.length === 0 && this.inFlight === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true))),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** Stops accepting events; flushes what it holds within `timeoutMs`. Returns whether all was acknowledged. */
  async close(timeoutMs = 30_000): Promise<boolean> {
    const ok = await this.flush(timeoutMs);
    this.closed = true;
    this.abandon = true;
    if (this.timer) clearTimeout(this.timer);
    return ok;
  }
}

/** Rough encoded size of an event, for batch sizing (the codec computes the exact one). */
function approxSize(e: FlashbackEvent): number {
  let n = 48 + e.client.length + e.command.length;
  for (const b of e.args) n += 4 + b.length;
  for (const b of e.keys) n += 4 + b.length;
  if (e.replay !== e.args) for (const b of e.replay) n += 4 + b.length;
  return n;
}
