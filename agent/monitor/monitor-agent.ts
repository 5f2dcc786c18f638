import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import { HEARTBEAT_MESSAGE, type BaselineRecord } from '../../core/bus/baseline.js';
import { describeError } from '../../core/errors.js';
import type { Registry } from 'prom-client';
import type { Logger } from '../../core/log.js';
import { redisAddress } from '../../core/redis/redis-url.js';
import type { Agent } from '../agent.js';
import { BaselineScheduler } from '../baseline-scheduler.js';
import { CaptureMetrics, commonStats, type AgentStats } from '../metrics.js';
import { agentHealth, type AgentHealth } from '../readiness.js';
import { monitorOverload, readClientOutputBytes } from '../overload.js';
import { closeSource, restoreSourceSettings, type Source } from '../source.js';
import { demotionReason, ensureMasterSource } from '../source-failover.js';
import { readRole } from '../source-role.js';
import { createEpochRun, startEpochMonitor, type EpochOptions, type EpochRun } from './epoch-run.js';

/**
 * The agent in monitor mode (`--source monitor`): MONITOR + keyspace notifications per epoch (agent/monitor/), with
 * baselines by a second replication link; a new epoch whenever continuity is lost.
 */
/** What an agent runs with besides its source: the connections to NATS and the options, defaults applied. */
export interface CaptureSettings {
  node: string;
  nc: NatsConnection;
  js: JetStreamClient;
  store: ObjectStore;
  logger: Logger;
  baselineIntervalMs: number;
  baselineEveryEvents: number;
  baselineDigest: 'auto' | 'always' | 'never';
  maxMonitorOutputBytes: number;
  maxQueuedBytes: number;
  metricsIntervalMs: number;
  heartbeatIntervalMs: number;
}

export class CaptureAgent implements Agent {
  readonly node: string;
  private run: EpochRun | undefined;
  private epochs = 0;
  private closed = false;
  private closers: (() => Promise<void>)[] = [];
  private metricsTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private probeInFlight = false;
  private restarting: Promise<void> | undefined;
  private readonly counters = new CaptureMetrics();
  private readonly baselines: BaselineScheduler;

  /** `source` is replaced when the agent follows its shard's new master (a failover): see followMaster. */
  constructor(
    private source: Source,
    private readonly o: CaptureSettings,
  ) {
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
      currentSource: () => this.source,
      eventsCaptured: () => this.counters.eventsCaptured,
    });
  }

  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  async start(): Promise<void> {
    await this.startEpoch('capture started');
    this.metricsTimer = setInterval(() => void this.sample(), this.o.metricsIntervalMs);
    this.metricsTimer.unref();
    this.baselines.start();
    const { heartbeatIntervalMs } = this.o;
    this.heartbeatTimer = setInterval(
      () => {
        if (Date.now() - this.counters.lastEventAt >= heartbeatIntervalMs) this.heartbeat();
      },
      Math.max(10, Math.floor(heartbeatIntervalMs / 2)),
    );
    this.heartbeatTimer.unref();
  }

  /**
   * ECHOes the heartbeat; its MONITOR line becomes a heartbeat event. On a cluster master the role is read first: a
   * heartbeat proves the epoch's history complete up to its instant, which stops being true once a failover has
   * demoted the node (the new master's writes reach it later, if at all).
   */
  heartbeat(): void {
    const { control, cluster, role } = this.source;
    if (!cluster || role !== 'master') {
      control.call(['ECHO', HEARTBEAT_MESSAGE]).catch(() => undefined);
      return;
    }
    const run = this.run;
    readRole(control)
      .then((now) =>
        now.role === 'master' && this.run === run && !run?.ended && !run?.demoted
          ? control.call(['ECHO', HEARTBEAT_MESSAGE])
          : undefined,
      )
      .catch(() => undefined);
  }

  private async startEpoch(reason: string): Promise<void> {
    const { o } = this;
    const options: EpochOptions = {
      epoch: Math.max(Date.now(), (this.run?.epoch ?? 0) + 1),
      source: this.source,
      node: o.node,
      js: o.js,
      logger: o.logger,
      maxQueuedBytes: o.maxQueuedBytes,
      maxMonitorOutputBytes: o.maxMonitorOutputBytes,
      metrics: this.counters,
      restart: (why) => void this.restartEpoch(why),
      onMarker: (ev) => this.baselines.onMarker(ev),
      probe: () => this.probe(),
      isClosed: () => this.closed,
    };
    const run = createEpochRun(options);
    this.run = run;
    this.epochs++;
    run.monitor = await startEpochMonitor(run, options);
    o.logger.info({ epoch: run.epoch, reason }, 'epoch started');
    this.baselines.epochStarted(run);
  }

  /** Sends an ECHO whose MONITOR line proves a running script has ended (lua lines carry no end marker). */
  private probe(): void {
    if (this.probeInFlight) return;
    this.probeInFlight = true;
    this.source.control.call(['ECHO', 'flashback-probe']).then(
      () => (this.probeInFlight = false),
      () => (this.probeInFlight = false),
    );
  }

  private async restartEpoch(reason: string): Promise<void> {
    if (this.closed || this.restarting) return;
    const old = this.run;
    if (!old || old.ended) return;
    const { logger } = this.o;
    this.restarting = (async () => {
      old.ended = true;
      this.counters.epochEnded(reason);
      old.monitor?.close();
      old.assembler.emitServerEvents(Date.now() * 1000 - this.source.skewUs);
      old.states.releaseAll();
      old.corrector.release();
      if (old.monitor)
        await this.source.control.call(['CLIENT', 'KILL', 'ID', old.monitor.clientId]).catch(() => undefined);
      logger.warn(
        { epoch: old.epoch, lastSeq: old.assembler.lastSeq, reason },
        'continuity lost: ending the epoch; a new epoch with a new baseline follows',
      );
      // What the old epoch captured is still valid history: publish it.
      void old.publisher.close(60_000).then((ok) => {
        if (!ok)
          logger.error(
            { epoch: old.epoch },
            'could not publish the end of the epoch: its window ends before the last captured event',
          );
      });
      let delay = 200;
      while (!this.closed) {
        try {
          await this.followMaster();
          await this.startEpoch(reason);
          return;
        } catch (err) {
          logger.warn({ err: describeError(err), retryInMs: delay }, 'cannot restart capture; retrying');
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(10_000, delay * 2);
        }
      }
    })().finally(() => (this.restarting = undefined));
    return this.restarting;
  }

  /** Before a new epoch: the source is the master of the shard again, reconnected if need be (ensureMasterSource). */
  private async followMaster(): Promise<void> {
    const previous = this.source;
    const { maxMonitorOutputBytes, logger } = this.o;
    this.source = await ensureMasterSource(previous, { maxMonitorOutputBytes, logger });
    if (this.source.target !== previous.target) this.counters.failovers++;
  }

  baseline(): Promise<BaselineRecord> {
    return this.baselines.take();
  }

  /** Every metrics interval: rolls the rates, takes a baseline by count, ends the epoch on demotion or overload. */
  private async sample(): Promise<void> {
    const run = this.run;
    if (!run || this.closed) return;
    this.counters.roll();
    this.baselines.takeIfDue();
    if (await this.endIfDemoted(run)) return;
    await this.endIfOverloaded(run);
  }

  private async endIfDemoted(run: EpochRun): Promise<boolean> {
    if (this.source.role !== 'master') return false;
    const reason = await demotionReason(this.source);
    if (reason === undefined || this.run !== run || run.ended) return false;
    void this.restartEpoch(reason);
    return true;
  }

  private async endIfOverloaded(run: EpochRun): Promise<void> {
    if (!run.monitor) return;
    try {
      const bytes = await readClientOutputBytes(this.source.control, run.monitor.clientId);
      const previousBytes = this.counters.recordMonitorOutput(bytes);
      const reason = monitorOverload({ bytes, previousBytes, limitBytes: this.o.maxMonitorOutputBytes });
      if (reason !== undefined) void this.restartEpoch(reason);
    } catch {
      // The control connection is gone: the MONITOR close handler restarts the epoch.
    }
  }

  stats(): AgentStats {
    const { run, counters, baselines } = this;
    return {
      ...commonStats({
        node: this.node,
        epoch: run?.epoch ?? 0,
        epochs: this.epochs,
        connected: !!run && !run.ended,
        lastSeq: run?.assembler.lastSeq ?? 0,
        publisher: run?.publisher,
        counters,
        baselines,
        redis: redisAddress(this.source.target),
      }),
      source: 'monitor',
      expiryCorrected: run?.corrector.corrected ?? 0,
      expiryConfirmed: run?.corrector.confirmed ?? 0,
      expiryUncorrectable: run?.corrector.uncorrectable ?? 0,
      stateProbes: run?.states.probesSent ?? 0,
      statesCaptured: run?.states.statesCaptured ?? 0,
      xaddIdsResolved: run?.states.idsResolved ?? 0,
      heldForState: run?.states.heldEvents ?? 0,
    };
  }

  health(): AgentHealth {
    return agentHealth(this.stats(), this.closed);
  }

  metrics(): Registry {
    return this.counters.prometheus(() => this.stats());
  }

  async flush(timeoutMs = 30_000): Promise<boolean> {
    const run = this.run;
    if (!run) return true;
    if (run.assembler.pendingServerEvents) {
      // Their time is the next line's: ask for one, and wait a little for it.
      this.probe();
      const deadline = Date.now() + 1_000;
      while (run.assembler.pendingServerEvents && !run.ended && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      run.assembler.emitServerEvents(Date.now() * 1000 - this.source.skewUs);
    }
    run.assembler.flush();
    await run.states.drain();
    await run.corrector.drain();
    return run.publisher.flush(timeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.restarting;
    clearInterval(this.metricsTimer);
    this.baselines.close();
    clearInterval(this.heartbeatTimer);
    const run = this.run;
    if (run && !run.ended && run.monitor) {
      // A last heartbeat after what is held: a window then reaches the end of a final state group (a group that is
      // the last stored event cannot be told from one whose rest never came, so no window would reach it).
      await Promise.race([run.states.drain(), new Promise((r) => setTimeout(r, 5_000))]);
      if (run.states.heldEvents === 0) {
        const before = run.assembler.lastSeq;
        this.heartbeat();
        const deadline = Date.now() + 2_000;
        while (run.assembler.lastSeq <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      }
    }
    const { logger } = this.o;
    if (run) {
      run.ended = true;
      run.monitor?.close();
      run.assembler.flush();
      run.assembler.emitServerEvents(Date.now() * 1000 - this.source.skewUs);
      run.states.releaseAll();
      run.corrector.release();
      const ok = await run.publisher.close(30_000);
      if (!ok)
        logger.error(
          { epoch: run.epoch, backlogBytes: run.publisher.backlogBytes },
          'shutdown: not everything captured reached JetStream',
        );
    }
    for (const c of this.closers) await c().catch(() => undefined);
    await restoreSourceSettings(this.source, logger);
    closeSource(this.source);
    await this.o.nc.drain().catch(() => undefined);
    logger.info(this.stats(), 'agent stopped');
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
