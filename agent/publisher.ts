import type { JetStreamClient } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { BatchWriter } from '../core/bus/event-codec.js';
import {
  BATCH_HEADER,
  formatPart,
  maxPartBytes,
  PART_HEADER,
  partMessageId,
  splitBody,
  type PartPosition,
} from '../core/bus/event-parts.js';
import { eventSubject, messageId, type FlashbackEvent } from '../core/bus/event.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import type { ReplicationPosition } from './replication/replica-link.js';

/**
 * Header of every message of a replication-mode batch: `<epoch> <last seq> <replid> <offset> <last ts µs> <db> [i<n>]
 * [end]` (`i<n>`: events the agent added to the stream's own so far in the epoch, ReplicationPosition.inserted),
 * where the master's replication stream stands after the batch's events. A restarted agent asks
 * `PSYNC <replid> <offset+1>` and goes on with seq + 1 (agent/replication/resume.ts).
 */
export const POSITION_HEADER = 'Flashback-Position';

/**
 * Header of a replication-mode message: the newest position all of whose events were acknowledged when it was sent
 * (same format as POSITION_HEADER, never `end`). A restart resumes there, not at the last stored message's own
 * position: pipelined publishes may be stored out of order (a NATS leader change) or one may fail while a later one
 * lands, and the last stored message then says nothing about the ones before it (agent/replication/resume.ts).
 */
export const DURABLE_HEADER = 'Flashback-Durable';

/** Options of the batched JetStream publisher. */
export interface PublisherOptions {
  node: string;
  epoch: number;
  /** Events per message. @default 2_000 */
  batchMaxEvents?: number;
  /** Encoded bytes per batch; a larger event is a batch of its own. @default 512 KiB */
  batchMaxBytes?: number;
  /**
   * Largest message the server takes, bytes; a batch body above it (less header room) goes as parts
   * (core/event-parts.ts).
   * @default the connection's max_payload, read at each batch (1 MiB when unknown)
   */
  maxPayloadBytes?: number;
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
  /** Last seq of the epoch already in the stream (a resumed epoch goes on after it). @default 0 */
  startSeq?: number;
  logger?: Logger;
}

interface Batch {
  firstSeq: number;
  lastSeq: number;
  lastTsUs: number;
  events: number;
  /** Encoded size of the whole batch. */
  bytes: number;
  /** Messages of the batch not yet acknowledged. */
  unacked: number;
  /** Replication position the stream is at after the batch's events (replication mode). */
  position?: ReplicationPosition;
}

/** One JetStream message: a whole batch, or one part of a batch too large for one message. */
interface Message {
  batch: Batch;
  body: Buffer;
  part?: PartPosition;
}

/**
 * Turns events into JetStream messages: consecutive events of one epoch per
 * message (Nats-Msg-Id = node:epoch:firstSeq-lastSeq, so a retried message is
 * deduplicated by the server), many messages in flight, bounded bytes. A
 * batch larger than the server's max payload goes as part messages
 * (core/event-parts.ts) that the sink joins.
 * `enqueue` never blocks: the MONITOR reader must never wait for NATS.
 */
export class EventPublisher {
  private readonly o: Required<Omit<PublisherOptions, 'logger' | 'maxPayloadBytes' | 'startSeq'>> & {
    logger: Logger;
    maxPayloadBytes?: number;
  };
  private readonly subject: string;
  /** The batch being filled: its events are encoded as they come (core/bus/event-codec.ts). */
  private readonly pending: BatchWriter;
  private pendingFirstSeq = 0;
  private pendingLastSeq = 0;
  private pendingLastTsUs = 0;
  private pendingPosition: ReplicationPosition | undefined;
  /** Sealed batches in seq order until acknowledged (so the durable position only moves over a gapless prefix). */
  private readonly sealed: Batch[] = [];
  /** Positions by the last seq enqueued before them, oldest first. */
  private readonly positions: { seq: number; tsUs: number; position: ReplicationPosition }[] = [];
  private lastEnqueuedSeq: number;
  private lastEnqueuedTsUs = 0;
  /** {@link durablePosition} with the seq and time of its last event. */
  private durable: { seq: number; tsUs: number; position: ReplicationPosition } | undefined;
  /** Every event up to this seq is acknowledged. */
  ackedPrefixSeq: number;
  /** Newest replication position all of whose events are acknowledged: what the agent REPLCONF ACKs. */
  durablePosition: ReplicationPosition | undefined;
  private readonly queue: Message[] = [];
  private queuedBytes = 0;
  private inFlightBytes = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private overflowed = false;
  private closed = false;
  private retryDelayMs = 0;
  private idleWaiters: (() => void)[] = [];
  /** Batches sent as parts because they exceeded one message. */
  splitBatches = 0;
  /** Events acknowledged by JetStream. */
  ackedEvents = 0;
  ackedBytes = 0;
  /** Messages acknowledged (a split batch counts each part). */
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
    this.o = {
      ...options,
      batchMaxEvents,
      batchMaxBytes,
      flushIntervalMs,
      maxInFlightBytes,
      maxQueuedBytes,
      ackTimeoutMs,
      logger,
    };
    this.subject = eventSubject(options.node);
    this.pending = new BatchWriter(options.node, options.epoch);
    this.lastEnqueuedSeq = options.startSeq ?? 0;
    this.ackedPrefixSeq = this.lastEnqueuedSeq;
  }

  /** Bytes waiting (not yet sent) plus bytes in flight. */
  get backlogBytes(): number {
    return this.queuedBytes + this.inFlightBytes + this.pending.bytes;
  }

  /**
   * Adds events (in seq order). Never blocks. With a `position` (replication mode) the call's events go into one batch
   * (parts if large), so a batch ends where the stream stands at a known offset; it may hold no events. `bytes`:
   * about what the events take (the stream bytes they came from), instead of adding up their arguments.
   */
  enqueue(events: FlashbackEvent[], position?: ReplicationPosition, bytes?: number): void {
    if (this.closed || this.overflowed) return;
    if (position) {
      this.enqueueWhole(events, position, bytes);
      return;
    }
    for (const e of events) {
      // A big event does not drag the small ones before it into its (split) message.
      if (this.pending.count > 0 && this.pending.bytes + approxSize(e) > this.o.batchMaxBytes) this.seal();
      this.add(e);
      if (this.pending.count >= this.o.batchMaxEvents || this.pending.bytes >= this.o.batchMaxBytes) this.seal();
    }
    if (this.pending.count > 0 && !this.timer) this.timer = setTimeout(() => this.seal(), this.o.flushIntervalMs);
  }

  private enqueueWhole(events: FlashbackEvent[], position: ReplicationPosition, bytes: number | undefined): void {
    let size = bytes ?? 0;
    if (bytes === undefined) for (const e of events) size += approxSize(e);
    if (events.length > 0) {
      if (this.pending.count > 0 && this.pending.bytes + size > this.o.batchMaxBytes) this.seal();
      for (const e of events) this.add(e);
      this.lastEnqueuedSeq = events[events.length - 1]!.seq;
      this.lastEnqueuedTsUs = events[events.length - 1]!.tsUs;
    }
    this.positions.push({ seq: this.lastEnqueuedSeq, tsUs: this.lastEnqueuedTsUs, position });
    if (this.pending.count > 0) this.pendingPosition = position;
    else this.advanceDurable();
    if (this.pending.count >= this.o.batchMaxEvents || this.pending.bytes >= this.o.batchMaxBytes) this.seal();
    if (this.pending.count > 0 && !this.timer) this.timer = setTimeout(() => this.seal(), this.o.flushIntervalMs);
  }

  private add(e: FlashbackEvent): void {
    if (this.pending.count === 0) this.pendingFirstSeq = e.seq;
    this.pending.add(e);
    this.pendingLastSeq = e.seq;
    this.pendingLastTsUs = e.tsUs;
  }

  /** Moves the durable position to the newest one whose events are all acknowledged. */
  private advanceDurable(): void {
    while (this.sealed.length > 0 && this.sealed[0]!.unacked === 0) this.ackedPrefixSeq = this.sealed.shift()!.lastSeq;
    if (this.sealed.length === 0 && this.pending.count === 0) this.ackedPrefixSeq = this.lastEnqueuedSeq;
    while (this.positions.length > 0 && this.positions[0]!.seq <= this.ackedPrefixSeq) {
      this.durable = this.positions.shift()!;
      this.durablePosition = this.durable.position;
    }
  }

  private seal(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pending.count === 0) return;
    const count = this.pending.count;
    const body = this.pending.finish();
    const bodies = splitBody(body, maxPartBytes(this.maxPayloadBytes()));
    const batch: Batch = {
      firstSeq: this.pendingFirstSeq,
      lastSeq: this.pendingLastSeq,
      lastTsUs: this.pendingLastTsUs,
      events: count,
      bytes: body.length,
      unacked: bodies.length,
      position: this.pendingPosition,
    };
    this.pendingPosition = undefined;
    this.sealed.push(batch);
    if (bodies.length === 1) this.queue.push({ batch, body });
    else {
      this.splitBatches++;
      bodies.forEach((b, i) => this.queue.push({ batch, body: b, part: { index: i + 1, count: bodies.length } }));
    }
    this.queuedBytes += body.length;
    if (this.queuedBytes + this.inFlightBytes > this.o.maxQueuedBytes && !this.overflowed) {
      this.overflowed = true;
      this.o.logger.error(
        { queuedBytes: this.queuedBytes, maxQueuedBytes: this.o.maxQueuedBytes },
        'publish backlog over its bound: ending the epoch',
      );
      this.o.onOverflow(this.queuedBytes);
      return;
    }
    this.pump();
  }

  private maxPayloadBytes(): number {
    if (this.o.maxPayloadBytes !== undefined) return this.o.maxPayloadBytes;
    // JetStreamClient's implementation keeps its connection as `nc` (not in the interface); the server's
    // limit can change with a reconnect, so it is read per batch.
    const nc = (this.js as { nc?: NatsConnection }).nc;
    return nc?.info?.max_payload ?? 1024 * 1024;
  }

  private pump(): void {
    if (this.retryDelayMs > 0) return;
    while (
      this.queue.length > 0 &&
      (this.inFlight === 0 || this.inFlightBytes + this.queue[0]!.body.length <= this.o.maxInFlightBytes)
    ) {
      const msg = this.queue.shift()!;
      this.queuedBytes -= msg.body.length;
      this.inFlightBytes += msg.body.length;
      this.inFlight++;
      this.send(msg);
    }
    if (this.queue.length === 0 && this.inFlight === 0 && this.pending.count === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private send(msg: Message): void {
    const { batch, part } = msg;
    // The last seq too: a restart re-publishes from its durable position (agent/replication/resume.ts) in batches
    // that may start where a stored one did but end elsewhere; with the first seq alone JetStream would drop such a
    // batch as a duplicate and lose the events past the stored one's end.
    const batchId = `${messageId(this.o.node, this.o.epoch, batch.firstSeq)}-${batch.lastSeq}`;
    let opts: Parameters<JetStreamClient['publish']>[2] = { msgID: batchId, timeout: this.o.ackTimeoutMs };
    if (part || batch.position) {
      const h = headers();
      if (part) {
        h.set(PART_HEADER, formatPart(part));
        h.set(BATCH_HEADER, batchId);
        opts.msgID = partMessageId(batchId, part.index);
      }
      if (batch.position)
        h.set(
          POSITION_HEADER,
          `${this.o.epoch} ${batch.lastSeq} ${batch.position.replid} ${batch.position.offset} ${batch.lastTsUs} ${batch.position.db ?? 0}${insertedField(batch.position)}${batch.position.ended ? ' end' : ''}`,
        );
      const d = this.durable;
      if (batch.position && d)
        h.set(
          DURABLE_HEADER,
          `${this.o.epoch} ${d.seq} ${d.position.replid} ${d.position.offset} ${d.tsUs} ${d.position.db ?? 0}${insertedField(d.position)}`,
        );
      opts.headers = h;
    }
    this.js.publish(this.subject, msg.body, opts).then(
      () => {
        this.inFlight--;
        this.inFlightBytes -= msg.body.length;
        this.ackedMessages++;
        if (--batch.unacked === 0) {
          this.ackedEvents += batch.events;
          this.ackedBytes += batch.bytes;
          if (batch.lastSeq > this.lastAckedSeq) {
            this.lastAckedSeq = batch.lastSeq;
            this.lastAckedTsUs = batch.lastTsUs;
          }
          this.advanceDurable();
        }
        this.retryDelayMs = 0;
        this.pump();
      },
      (err: unknown) => {
        // Put it back in front and retry with backoff; the msgID makes a
        // message that did reach the stream a duplicate the server drops.
        this.inFlight--;
        this.inFlightBytes -= msg.body.length;
        this.queue.unshift(msg);
        this.queuedBytes += msg.body.length;
        this.publishErrors++;
        // Closed: the batch stays queued, unsent; close() already reported what was not acknowledged.
        if (this.closed) return;
        const delay = Math.min(5_000, Math.max(100, this.retryDelayMs * 2));
        if (this.retryDelayMs === 0 || delay !== this.retryDelayMs) {
          this.o.logger.warn(
            { err: (err as Error).message, retryInMs: delay, queuedBytes: this.queuedBytes },
            'JetStream publish failed; retrying',
          );
        }
        this.retryDelayMs = delay;
        setTimeout(() => {
          this.retryDelayMs = 0;
          this.pump();
        }, delay).unref();
      },
    );
  }

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
    if (this.timer) clearTimeout(this.timer);
    return ok;
  }
}

/** ` i<n>`: events the agent inserted in the epoch up to this position (ReplicationPosition.inserted), when any. */
function insertedField(p: ReplicationPosition): string {
  return p.inserted ? ` i${p.inserted}` : '';
}

/** Rough encoded size of an event, for batch sizing (the codec computes the exact one). */
function approxSize(e: FlashbackEvent): number {
  let n = 48 + e.client.length + e.command.length;
  for (const b of e.args) n += 4 + b.length;
  for (const b of e.keys) n += 4 + b.length;
  if (e.replay !== e.args) for (const b of e.replay) n += 4 + b.length;
  return n;
}
