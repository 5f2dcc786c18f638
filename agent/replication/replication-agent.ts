import { randomUUID } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import { baselineObjectName, baselineSubject, sha256OfDigest, type BaselineRecord } from '../../core/bus/baseline.js';
import { EventKind, type FlashbackEvent } from '../../core/bus/event.js';
import { translateNatsError } from '../../core/bus/nats.js';
import { describeError } from '../../core/errors.js';
import type { Registry } from 'prom-client';
import type { Logger } from '../../core/log.js';
import { CommandTable } from '../../core/redis/command-table.js';
import { keysInInfo } from '../../core/redis/keyspace-info.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../../core/redis/redis-url.js';
import type { Agent } from '../agent.js';
import { clientAddr, clockSkewUs } from '../source.js';
import { MonitorParser } from '../../core/redis/monitor-parser.js';
import { MonitorSource } from '../monitor/monitor-source.js';
import { Attribution } from './attribution.js';
import { ConsumerWatch, createsConsumersSilently } from './consumer-watch.js';
import { BaselineScheduler } from '../baseline-scheduler.js';
import { readLastBaseline } from '../last-baseline.js';
import { CaptureMetrics, commonStats, type AgentStats } from '../metrics.js';
import { agentHealth, type AgentHealth } from '../readiness.js';
import { readClientOutputBytes } from '../overload.js';
import { EventPublisher } from '../publisher.js';
import { readSourceInfo } from '../source-role.js';
import { AnchorDriver } from './anchors.js';
import { ensureBacklog, readReplicaClient, readReplicationOffset } from './backlog.js';
import { ReplicaLink, type ReplicationPosition } from './replica-link.js';
import { readResumePoint, type ResumePoint } from './resume.js';
import { StreamAssembler } from './stream-assembler.js';

/** What a replication-mode agent runs with (agent/agent.ts fills it in). */
export interface ReplicationAgentSettings {
  node: string;
  target: RedisTarget;
  control: RawRedis;
  nc: NatsConnection;
  js: JetStreamClient;
  store: ObjectStore;
  logger: Logger;
  baselineIntervalMs: number;
  baselineEveryEvents: number;
  baselineDigest: 'auto' | 'always' | 'never';
  maxQueuedBytes: number;
  metricsIntervalMs: number;
  heartbeatIntervalMs: number;
  /** Raise the source's repl-backlog-size to at least this, bytes. */
  minBacklogBytes: number;
  /** `monitor`: MONITOR beside the stream gives each event its client, µs time and argv as issued. */
  attribution: 'monitor' | 'off';
  /** With attribution: writes that left no entry are stored as audit rows. */
  auditNoops?: boolean;
  /** Attribution's MONITOR output buffer at the source above which attribution stops (the source comes first). */
  maxMonitorOutputBytes: number;
}

/** One epoch: a replication history followed from one full resync (or resumed from JetStream) until it breaks. */
interface ReplicationRun {
  epoch: number;
  publisher: EventPublisher;
  assembler: StreamAssembler;
  ended: boolean;
  /** Where this run's stream stands: its replid and the offset after the last entry read. */
  replid: string;
  offset: number;
  /** Offset after the last output the assembler emitted: the stream bytes an output came from are the difference. */
  emittedOffset: number;
  /** The run is ending: its last batch says so, and no restart continues it. */
  ending?: boolean;
  /** Events the agent inserted in this epoch before this process, and its insert counters when the run began. */
  insertedBase: number;
  insertedAtStart: number;
  /** The full resync's baseline, until its record is published. */
  resync?: {
    markerId: string;
    offset: number;
    keys: number;
    rdbBytes?: number;
    /** SHA-256 of the stored RDB and (empty) tail objects, hex, as the writer computed them. */
    rdbSha256?: string;
    tailSha256?: string;
    marker?: FlashbackEvent;
  };
}

/**
 * The agent as a replica of its node (`--source replication`): events are the replication stream's entries, in
 * stream order, timed by anchors (agent/replication/anchors.ts). It acknowledges to the master only what JetStream
 * has stored, and after a restart or a dropped link it continues the same epoch with `PSYNC <replid> <offset+1>`.
 */
export class ReplicationAgent implements Agent {
  readonly node: string;
  private run: ReplicationRun | undefined;
  private link: ReplicaLink | undefined;
  private anchors: AnchorDriver | undefined;
  private table!: CommandTable;
  private skewUs = 0;
  private epochs = 0;
  private closed = false;
  private closers: (() => Promise<void>)[] = [];
  private metricsTimer: NodeJS.Timeout | undefined;
  private reconnecting = false;
  private readonly counters = new CaptureMetrics();
  private readonly baselines: BaselineScheduler;
  private monitorOutputBytes = 0;
  private masterOffset = 0;
  private pausedForBacklog = false;
  private attribution: Attribution | undefined;
  private consumerWatch: ConsumerWatch | undefined;
  private monitor: MonitorSource | undefined;
  private readonly ownClients = new Set<string>();

  constructor(private readonly o: ReplicationAgentSettings) {
    this.node = o.node;
    this.baselines = new BaselineScheduler({
      node: o.node,
      js: o.js,
      store: o.store,
      logger: o.logger,
      digest: o.baselineDigest,
      intervalMs: o.baselineIntervalMs,
      everyEvents: o.baselineEveryEvents,
      currentRun: () => this.run,
      currentSource: () => ({ target: o.target, control: o.control }),
      eventsCaptured: () => this.counters.eventsCaptured,
    });
  }

  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  /** Checks what the mode needs of the source, then links up: resumes the last epoch when JetStream says where. */
  async start(): Promise<void> {
    try {
      await this.startCapture();
    } catch (err) {
      this.anchors?.close();
      this.monitor?.close();
      throw err;
    }
  }

  private async startCapture(): Promise<void> {
    const { control, target, logger } = this.o;
    this.table = await CommandTable.load(control);
    this.skewUs = await clockSkewUs(control);
    // Rights and scripts checked once here; the anchors themselves go from their own thread (AnchorDriver).
    const check = await RawRedis.connect(target, { clientName: 'flashback-anchor' });
    try {
      await AnchorDriver.check(check);
    } finally {
      check.close();
    }
    await ensureBacklog(control, this.o.minBacklogBytes, logger);
    this.ownClients.add(await clientAddr(control));
    const silentConsumers = createsConsumersSilently(await readSourceInfo(control));
    if (this.o.attribution === 'monitor') {
      this.attribution = new Attribution({
        consumerCreations: silentConsumers,
        table: this.table,
        ownClients: () => this.ownClients,
        audit: this.o.auditNoops,
        onSeqsAdded: (n) => {
          if (this.run) this.run.assembler.lastSeq += n;
        },
      });
      await this.startMonitor();
    } else if (silentConsumers) {
      this.consumerWatch = new ConsumerWatch({
        target,
        control,
        logger,
        onSeqsAdded: (n) => {
          if (this.run) this.run.assembler.lastSeq += n;
        },
      });
      await this.consumerWatch.start();
    }
    let resume = await readResumePoint(this.o.nc, this.node);
    if (resume?.cannotContinue) {
      logger.warn(
        { epoch: resume.epoch, seq: resume.seq, reason: resume.cannotContinue },
        'the last epoch cannot go on: a new epoch starts with a full resync',
      );
      resume = undefined;
    }
    this.anchors = await AnchorDriver.open({
      target,
      idleIntervalMs: this.o.heartbeatIntervalMs,
      onConnected: (addr) => this.ownClients.add(addr),
      onFailure: (err) => {
        logger.error({ err: describeError(err) }, 'time anchor failed; reconnecting the replication link');
        this.dropLink(err);
      },
    });
    await this.connect(resume);
    this.anchors.start();
    this.metricsTimer = setInterval(() => void this.sample(), this.o.metricsIntervalMs);
    this.metricsTimer.unref();
    this.baselines.start();
  }

  /** Opens the link: continuing `from` when given, else from the current run, else with a full resync. */
  private connect(resume?: ResumePoint): Promise<void> {
    const { logger, target } = this.o;
    const current =
      this.run && !this.run.ended && this.run.replid !== ''
        ? { replid: this.run.replid, offset: this.run.offset }
        : undefined;
    const from: ReplicationPosition | undefined = current ?? resume?.position;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const ready = (): void => {
        if (!settled) {
          settled = true;
          resolve();
        }
      };
      const link = ReplicaLink.open({
        target,
        from,
        clientName: 'flashback-replica',
        logger,
        handlers: {
          onFullResync: (at) => {
            this.newEpoch(
              at,
              from !== undefined ? 'the master could not continue the old stream (full resync)' : 'capture started',
            );
            ready();
          },
          writeRdb: (rdb) => this.writeResyncRdb(rdb),
          onRdbStored: () => void this.publishResyncBaseline(),
          onContinue: (at) => {
            if (!current && resume) this.resumeEpoch(resume);
            // A promoted master names its new replid; the offsets go on.
            if (this.run) this.run.replid = at.replid;
            logger.info(
              { epoch: this.run?.epoch, replid: at.replid, offset: at.offset },
              'replication stream continued',
            );
            ready();
          },
          onCommand: (argv, endOffset) => {
            this.counters.bytesRead = link.streamBytes;
            const run = this.run;
            if (run) {
              run.offset = endOffset;
              run.assembler.push(argv, endOffset);
            }
          },
          ackOffset: () => this.run?.publisher.durablePosition?.offset ?? 0,
          onClose: (err) => {
            if (!settled) {
              settled = true;
              reject(err);
              return;
            }
            this.dropLink(err);
          },
        },
      });
      this.link = link;
      // A new link reads until the JetStream backlog says otherwise.
      this.pausedForBacklog = false;
    });
  }

  /** A full resync: the epoch (if any) ends, a new one starts with the RDB as its first baseline. */
  private newEpoch(at: ReplicationPosition, reason: string): void {
    const old = this.run;
    if (old && !old.ended) this.endRun(old, reason);
    const epoch = Math.max(Date.now(), (old?.epoch ?? 0) + 1);
    const run = this.buildRun(at, epoch, 0, 0);
    const markerId = randomUUID();
    run.resync = { markerId, offset: at.offset, keys: 0 };
    this.run = run;
    this.epochs++;
    run.assembler.startWithMarker(markerId);
    // Keys at the fork, near enough: INFO keyspace right after +FULLRESYNC (the record's keys are informational).
    void this.o.control.call(['INFO', 'keyspace']).then(
      (info) => run.resync && (run.resync.keys = keysInInfo(Buffer.isBuffer(info) ? info.toString('latin1') : '')),
      () => undefined,
    );
    this.o.logger.info({ epoch, replid: at.replid, offset: at.offset, reason }, 'epoch started (full resync)');
  }

  /** A restarted agent continues the epoch JetStream ends with. */
  private resumeEpoch(r: ResumePoint): void {
    this.run = this.buildRun(r.position, r.epoch, r.seq, r.tsUs);
    this.epochs++;
    this.o.logger.info({ epoch: r.epoch, seq: r.seq, offset: r.position.offset }, 'epoch resumed after a restart');
    // Its baseline was stored by the process before this one: ready as soon as its record is read.
    void readLastBaseline(this.o.nc, this.node)
      .then((record) => record && this.baselines.known(record))
      .catch((err: unknown) =>
        this.o.logger.warn(
          { err: describeError(err) },
          'cannot read the last baseline record; ready after the next baseline',
        ),
      );
  }

  private buildRun(at: ReplicationPosition, epoch: number, lastSeq: number, lastAnchorUs: number): ReplicationRun {
    const db = at.db ?? 0;
    const { node, logger } = this.o;
    const publisher = new EventPublisher(this.o.js, {
      node,
      epoch,
      startSeq: lastSeq,
      maxQueuedBytes: this.o.maxQueuedBytes,
      logger,
      onOverflow: () => this.dropLink(new Error('publish backlog overflow: NATS too slow or unreachable'), true),
    });
    const run: ReplicationRun = {
      epoch,
      publisher,
      ended: false,
      replid: at.replid,
      offset: at.offset,
      emittedOffset: at.offset,
      insertedBase: at.inserted ?? 0,
      insertedAtStart: this.insertedNow(),
      assembler: new StreamAssembler({
        node,
        epoch,
        table: this.table,
        lastSeq,
        lastAnchorUs,
        db,
        heartbeatIntervalUs: this.o.heartbeatIntervalMs * 1000,
        serverNowUs: () => Date.now() * 1000 - this.skewUs,
        wantAnchor: () => this.anchors?.request(),
        emit: (events, endOffset, db) => {
          if (events.length > 0) {
            this.counters.eventsEmitted(events.length);
            const last = events[events.length - 1]!;
            this.counters.lag.add((Date.now() * 1000 - this.skewUs - last.tsUs) / 1000);
          }
          const position: ReplicationPosition = { replid: run.replid, offset: endOffset, db, ended: run.ending };
          // The stream bytes the events came from (and their fixed fields): what the batch is sized by.
          const bytes = Math.max(0, endOffset - run.emittedOffset) + 16 * events.length;
          run.emittedOffset = endOffset;
          const publish = () => {
            // Counted once this output's own inserts are done (they happen just before its release, in order).
            const inserted = run.insertedBase + this.insertedNow() - run.insertedAtStart;
            if (inserted > 0) position.inserted = inserted;
            publisher.enqueue(events, position, bytes);
            this.throttle();
            // Markers once their seqs are final (attribution may add events before them); only those an anchor
            // timed: an epoch's closing output proves nothing after it.
            if (events[events.length - 1]?.kind === EventKind.Heartbeat)
              for (const e of events) if (e.kind === EventKind.Baseline) this.onMarker(run, e);
          };
          if (this.attribution) this.attribution.submit(events, publish);
          else if (this.consumerWatch) this.consumerWatch.submit(events, publish, endOffset);
          else publish();
        },
      }),
    };
    return run;
  }

  /**
   * Attribution's MONITOR connection. If it fails or falls behind, attribution stops (events keep their anchor times
   * and the replication client) and is tried again a little later: capture itself never depends on it.
   */
  private async startMonitor(): Promise<void> {
    const attribution = this.attribution!;
    const parser = new MonitorParser((line) => attribution.onLine(line));
    const monitor = await MonitorSource.start(this.o.target, {
      onData: (chunk) => {
        try {
          parser.push(chunk);
        } catch (err) {
          this.stopAttribution(`cannot read MONITOR: ${describeError(err)}`);
        }
      },
      onClose: (err) => {
        if (err && this.monitor === monitor) this.stopAttribution(`MONITOR connection lost: ${err.message}`);
      },
    });
    this.monitor = monitor;
    attribution.start();
  }

  private stopAttribution(reason: string): void {
    const monitor = this.monitor;
    if (!monitor) return;
    this.monitor = undefined;
    monitor.close();
    this.attribution?.stop();
    this.o.logger.warn({ reason }, 'attribution paused: events keep anchor times until MONITOR is back');
    const retry = setTimeout(() => {
      if (!this.closed && !this.monitor)
        this.startMonitor().catch((err: unknown) => this.stopAttribution(describeError(err)));
    }, 10_000);
    retry.unref();
  }

  /** Events inserted into outputs since the agent started (attribution's consumers and audit rows, the watch's). */
  private insertedNow(): number {
    return (
      (this.attribution?.consumersAdded ?? 0) +
      (this.attribution?.audited ?? 0) +
      (this.consumerWatch?.creations.added ?? 0)
    );
  }

  /** Reading pauses while JetStream is behind: Redis buffers for us (its `replica` output-buffer class) meanwhile. */
  private throttle(): void {
    const backlog = this.run?.publisher.backlogBytes ?? 0;
    if (!this.pausedForBacklog && backlog > this.o.maxQueuedBytes / 2) {
      this.pausedForBacklog = true;
      this.link?.pause();
    } else if (this.pausedForBacklog && backlog < this.o.maxQueuedBytes / 4) {
      this.pausedForBacklog = false;
      this.link?.resume();
    }
  }

  private onMarker(run: ReplicationRun, ev: FlashbackEvent): void {
    if (run.resync && ev.seq === 1 && !run.resync.marker) {
      run.resync.marker = ev;
      return;
    }
    this.baselines.onMarker(ev);
  }

  private async writeResyncRdb(rdb: ReadableStream<Uint8Array>): Promise<void> {
    const run = this.run!;
    const resync = run.resync!;
    const names = baselineObjectName(this.node, run.epoch, resync.markerId);
    const metadata = { node: this.node, epoch: String(run.epoch), markerId: resync.markerId };
    try {
      const info = await this.o.store.put(
        { name: names.rdb, description: `RDB of the full resync of ${this.node} epoch ${run.epoch}`, metadata },
        rdb,
      );
      const tail = await this.o.store.putBlob(
        { name: names.tail, description: `empty tail of ${this.node} epoch ${run.epoch}`, metadata },
        new Uint8Array(0),
      );
      resync.rdbBytes = info.size;
      resync.rdbSha256 = sha256OfDigest(info.digest);
      resync.tailSha256 = sha256OfDigest(tail.digest);
    } catch (cause) {
      throw translateNatsError(cause, `object store (RDB ${names.rdb})`);
    }
  }

  /** Once the RDB is stored and the marker event has its seq: the epoch's first baseline is published. */
  private async publishResyncBaseline(): Promise<void> {
    const run = this.run;
    const resync = run?.resync;
    if (!run || !resync) return;
    const { logger, js, control } = this.o;
    try {
      const rdbBytes = resync.rdbBytes ?? 0;
      const deadline = Date.now() + 30_000;
      while (!resync.marker && !run.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      if (!resync.marker) throw new Error('the first time anchor after the full resync never arrived');
      const names = baselineObjectName(this.node, run.epoch, resync.markerId);
      const record: BaselineRecord = {
        node: this.node,
        epoch: run.epoch,
        seq: resync.marker.seq,
        tsUs: resync.marker.tsUs,
        markerId: resync.markerId,
        rdbObject: names.rdb,
        tailObject: names.tail,
        rdbBytes,
        tailBytes: 0,
        keys: resync.keys,
        digest: '',
        source: await readSourceInfo(control),
        rdbSha256: resync.rdbSha256,
        tailSha256: resync.tailSha256,
      };
      await run.publisher.flush();
      await js.publish(baselineSubject(this.node), JSON.stringify(record), {
        msgID: `baseline:${this.node}:${run.epoch}:${record.seq}`,
      });
      run.resync = undefined;
      this.baselines.recorded(record);
      logger.info(
        { epoch: run.epoch, seq: record.seq, rdbBytes, offset: resync.offset },
        'baseline stored (full resync)',
      );
    } catch (err) {
      this.baselines.failed(err);
      logger.error({ epoch: run.epoch, err: describeError(err) }, 'the full resync baseline failed; resyncing again');
      this.dropLink(err as Error, true);
    }
  }

  /** The link broke: reconnect with backoff, continuing the stream (or, with `fresh`, with a new full resync). */
  private dropLink(err: Error, fresh = false): void {
    if (this.closed || this.reconnecting) return;
    this.reconnecting = true;
    this.link?.close();
    const { logger } = this.o;
    if (fresh && this.run) this.endRun(this.run, err.message);
    logger.warn({ err: describeError(err), offset: this.link?.offset }, 'replication link lost; reconnecting');
    void (async () => {
      let delay = 100;
      while (!this.closed) {
        try {
          await this.connect();
          break;
        } catch (e) {
          logger.warn({ err: describeError(e), retryInMs: delay }, 'cannot reconnect the replication link; retrying');
          // Unref'd: a closed agent must not be kept alive by its backoff (the loop ends at the next turn).
          await new Promise((r) => setTimeout(r, delay).unref());
          delay = Math.min(10_000, delay * 2);
        }
      }
      this.reconnecting = false;
    })();
  }

  /** Ends an epoch: what waits for an anchor gets the server's time now (a later bound), all is published. */
  private endRun(run: ReplicationRun, reason: string): void {
    run.ended = true;
    this.counters.epochEnded(reason);
    // The old stream's position, never the new link's: a restart must not continue this epoch from there.
    run.ending = true;
    run.assembler.closeWith(Date.now() * 1000 - this.skewUs, run.offset);
    // What waits for MONITOR lines belongs to this epoch's publisher, which closes now.
    this.attribution?.releaseAll();
    this.consumerWatch?.releaseAll();
    this.o.logger.warn({ epoch: run.epoch, lastSeq: run.assembler.lastSeq, reason }, 'epoch ended');
    void run.publisher.close(60_000).then((ok) => {
      if (!ok) this.o.logger.error({ epoch: run.epoch }, 'could not publish the end of the epoch');
    });
  }

  private async sample(): Promise<void> {
    if (this.closed) return;
    this.counters.roll();
    this.baselines.takeIfDue();
    this.throttle();
    // Before any await on the control connection: outputs waiting past their time go out even if it is gone.
    this.attribution?.tick();
    this.consumerWatch?.tick();
    try {
      const { control } = this.o;
      this.masterOffset = await readReplicationOffset(control);
      const replica = await readReplicaClient(control, 'flashback-replica');
      if (replica) this.counters.recordMonitorOutput(replica.outputBytes);
      if (this.monitor) {
        const bytes = await readClientOutputBytes(control, this.monitor.clientId);
        this.monitorOutputBytes = bytes;
        if (bytes > this.o.maxMonitorOutputBytes)
          this.stopAttribution(`Redis buffers ${bytes} bytes of MONITOR output for attribution`);
      }
    } catch {
      // the control connection is gone; the link's own close handler reconnects
    }
  }

  baseline(): Promise<BaselineRecord> {
    return this.baselines.take();
  }

  stats(): AgentStats {
    const { run, counters, baselines } = this;
    return {
      ...commonStats({
        node: this.node,
        epoch: run?.epoch ?? 0,
        epochs: this.epochs,
        connected: !!run && !run.ended && !this.reconnecting,
        lastSeq: run?.assembler.lastSeq ?? 0,
        publisher: run?.publisher,
        counters,
        baselines,
        redis: redisAddress(this.o.target),
      }),
      heldForState: run?.assembler.heldEvents ?? 0,
      source: 'replication',
      replicationOffset: this.link?.offset ?? 0,
      replicationLagBytes: Math.max(0, this.masterOffset - (this.link?.offset ?? 0)),
      durableOffset: run?.publisher.durablePosition?.offset ?? 0,
      anchorsSent: this.anchors?.sent ?? 0,
      attribution: this.attribution ? (this.monitor ? 'monitor' : 'paused') : 'off',
      attributed: this.attribution?.attributed ?? 0,
      audited: this.attribution?.audited ?? 0,
      unattributed: this.attribution?.unattributed ?? 0,
      attributionMonitorOutputBytes: this.monitorOutputBytes,
      consumerWatch: this.consumerWatch ? (this.consumerWatch.active ? 'on' : 'paused') : 'off',
      consumersAdded: (this.attribution?.consumersAdded ?? 0) + (this.consumerWatch?.creations.added ?? 0),
    };
  }

  health(): AgentHealth {
    return agentHealth(this.stats(), this.closed);
  }

  metrics(): Registry {
    return this.counters.prometheus(() => this.stats());
  }

  /** Publishes everything read so far: an anchor times what waits, then JetStream acknowledges it all. */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    const run = this.run;
    if (!run) return true;
    const deadline = Date.now() + timeoutMs;
    if (run.assembler.heldEvents > 0) {
      this.anchors?.request();
      while (run.assembler.heldEvents > 0 && !run.ended && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 2));
    }
    while ((this.attribution?.waiting ?? 0) + (this.consumerWatch?.waiting ?? 0) > 0 && Date.now() < deadline) {
      this.attribution?.tick();
      this.consumerWatch?.tick();
      await new Promise((r) => setTimeout(r, 2));
    }
    return run.publisher.flush(Math.max(1, deadline - Date.now()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush(10_000).catch(() => false);
    this.closed = true;
    clearInterval(this.metricsTimer);
    this.baselines.close();
    this.anchors?.close();
    this.link?.close();
    const monitor = this.monitor;
    this.monitor = undefined;
    monitor?.close();
    this.attribution?.stop();
    await this.consumerWatch?.close();
    const run = this.run;
    if (run && !run.ended) {
      run.ended = true;
      const ok = await run.publisher.close(30_000);
      if (!ok)
        this.o.logger.error(
          { epoch: run.epoch, backlogBytes: run.publisher.backlogBytes },
          'shutdown: not everything captured reached JetStream',
        );
    }
    for (const c of this.closers) await c().catch(() => undefined);
    this.o.control.close();
    await this.o.nc.drain().catch(() => undefined);
    this.o.logger.info(this.stats(), 'agent stopped');
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
