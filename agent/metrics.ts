import { Histogram, Registry } from 'prom-client';
import { snapshotCounter, snapshotGauge, type Sample } from '../core/metrics/snapshot.js';
import { LagTracker } from './lag-tracker.js';

/** Counters and gauges of a running agent. */
export interface AgentStats {
  node: string;
  epoch: number;
  epochs: number;
  connected: boolean;
  lastSeq: number;
  eventsCaptured: number;
  eventsPublished: number;
  bytesRead: number;
  bytesPublished: number;
  eventsPerSecond: number;
  /** MONITOR lag: agent clock − server timestamp of the newest line read, ms (p50/p99 over the last interval). */
  lagMsP50: number;
  lagMsP99: number;
  /** Server-side output buffer of our MONITOR client (CLIENT LIST omem), bytes. */
  monitorOutputBytes: number;
  maxMonitorOutputBytesSeen: number;
  /** Bytes captured but not yet acknowledged by JetStream. */
  publishBacklogBytes: number;
  baselines: number;
  lastBaselineSeq: number;
  serverChanges: number;
  /** Epoch of the last stored baseline. */
  lastBaselineEpoch: number;
  /** When the last baseline was stored (agent clock, ms since the Unix epoch); 0 before the first. */
  lastBaselineAtMs: number;
  /** Baselines that failed, all epochs. */
  baselineFailures: number;
  /** Why the last baseline failed, while no baseline has succeeded since. */
  lastBaselineError?: string;
  /** When the next baseline attempt after a failure is due (ms since the Unix epoch). */
  nextBaselineAttemptAtMs?: number;
  /** When the last event was emitted (agent clock, ms since the Unix epoch; heartbeats count). */
  lastEventAtMs: number;
  /** Epochs ended, by reason class ({@link epochEndReason}). */
  epochsEnded: Record<string, number>;
  /** The node captured now (`host:port`): it changes when the agent follows its shard's new master after a failover. */
  redis: string;
  /** Times the agent followed a new master. */
  failovers: number;
  /** Relative expiries whose millisecond MONITOR left uncertain: corrected by 1 ms, confirmed, or left as computed. */
  expiryCorrected: number;
  expiryConfirmed: number;
  expiryUncorrectable: number;
  /** State probes sent (nondeterministic writes, served-later pops) and key states captured by them. */
  stateProbes: number;
  statesCaptured: number;
  /** XADD generated ids read back from the source (no state needed). */
  xaddIdsResolved: number;
  /** Events held right now until their state is known (replication mode: until their time anchor). */
  heldForState: number;
  /** Where events come from. */
  source?: 'monitor' | 'replication';
  /** Replication mode: master offset read, bytes behind `master_repl_offset`, offset acknowledged as kept, anchors. */
  replicationOffset?: number;
  replicationLagBytes?: number;
  durableOffset?: number;
  anchorsSent?: number;
  /** Replication mode: attribution by MONITOR (`paused` while MONITOR is away), events given a write and not. */
  attribution?: 'monitor' | 'paused' | 'off';
  attributed?: number;
  unattributed?: number;
  /** Audit rows stored (`--audit-noops`): writes MONITOR showed that left no entry. */
  audited?: number;
  /** Server-side output buffer of attribution's MONITOR client, bytes. */
  attributionMonitorOutputBytes?: number;
  /**
   * Replication mode on Redis 7.2+/Valkey without attribution: the watch for consumers created by group reads that
   * delivered nothing (agent/replication/consumer-watch.ts); and events added for such consumers (either way).
   */
  consumerWatch?: 'on' | 'paused' | 'off';
  consumersAdded?: number;
}

/** What the baseline scheduler tells about baselines (agent/baseline-scheduler.ts). */
export interface BaselineFacts {
  count: number;
  lastSeq: number;
  lastEpoch: number;
  lastAtMs: number;
  failures: number;
  lastError?: string;
  nextAttemptAtMs?: number;
}

/** What both capture modes report the same way; the mode-specific counters start at 0 and each mode fills its own. */
export function commonStats(o: {
  node: string;
  epoch: number;
  epochs: number;
  connected: boolean;
  lastSeq: number;
  publisher: { ackedEvents: number; ackedBytes: number; backlogBytes: number } | undefined;
  counters: CaptureMetrics;
  baselines: BaselineFacts;
  redis: string;
}): AgentStats {
  const { counters, publisher, baselines } = o;
  return {
    node: o.node,
    epoch: o.epoch,
    epochs: o.epochs,
    connected: o.connected,
    lastSeq: o.lastSeq,
    eventsCaptured: counters.eventsCaptured,
    eventsPublished: publisher?.ackedEvents ?? 0,
    bytesRead: counters.bytesRead,
    bytesPublished: publisher?.ackedBytes ?? 0,
    eventsPerSecond: Math.round(counters.eventsPerSecond),
    lagMsP50: counters.lag.p50,
    lagMsP99: counters.lag.p99,
    monitorOutputBytes: counters.monitorOutputBytes,
    maxMonitorOutputBytesSeen: counters.maxMonitorOutputBytesSeen,
    publishBacklogBytes: publisher?.backlogBytes ?? 0,
    baselines: baselines.count,
    lastBaselineSeq: baselines.lastSeq,
    serverChanges: counters.serverChanges,
    lastBaselineEpoch: baselines.lastEpoch,
    lastBaselineAtMs: baselines.lastAtMs,
    baselineFailures: baselines.failures,
    lastBaselineError: baselines.lastError,
    nextBaselineAttemptAtMs: baselines.nextAttemptAtMs,
    lastEventAtMs: counters.lastEventAt,
    epochsEnded: Object.fromEntries(counters.epochsEnded),
    redis: o.redis,
    failovers: counters.failovers,
    expiryCorrected: 0,
    expiryConfirmed: 0,
    expiryUncorrectable: 0,
    stateProbes: 0,
    statesCaptured: 0,
    xaddIdsResolved: 0,
    heldForState: 0,
  };
}

/** What the agent counts across epochs: capture totals, the capture rate, MONITOR lag and output buffer. */
export class CaptureMetrics {
  eventsCaptured = 0;
  bytesRead = 0;
  serverChanges = 0;
  failovers = 0;
  /** When the last event was emitted (ms): the heartbeat fills the silence after it. */
  lastEventAt = Date.now();
  /** Agent lag, seconds: every sample, for the Prometheus histogram (the tracker keeps the JSON percentiles). */
  readonly lagSeconds = new Histogram({
    name: 'flashback_agent_lag_seconds',
    help: 'Agent clock minus the server time of the newest event emitted (monitor: MONITOR line time; replication: its time anchor)',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [],
  });
  readonly lag = new LagTracker(10_000, (ms) => this.lagSeconds.observe(Math.max(0, ms / 1000)));
  /** Epochs ended, by reason class. */
  readonly epochsEnded = new Map<string, number>();
  private registry: Registry | undefined;
  /** Server-side output buffer of our MONITOR client at the last sample, and the most seen, bytes. */
  monitorOutputBytes = 0;
  maxMonitorOutputBytesSeen = 0;
  private rate = { at: Date.now(), captured: 0, perSecond: 0 };

  /** Events per second over the last sampling interval. */
  get eventsPerSecond(): number {
    return this.rate.perSecond;
  }

  /** Counts one emitted group of events. */
  eventsEmitted(count: number): void {
    this.lastEventAt = Date.now();
    this.eventsCaptured += count;
  }

  /** Ends a sampling interval: the rate and the lag percentiles are computed over it. */
  roll(): void {
    const now = Date.now();
    const captured = this.eventsCaptured;
    const perSecond = ((captured - this.rate.captured) * 1000) / Math.max(1, now - this.rate.at);
    this.rate = { at: now, captured, perSecond };
    this.lag.roll();
  }

  /** An epoch ended (counted by the class of its reason). */
  epochEnded(reason: string): void {
    const k = epochEndReason(reason);
    this.epochsEnded.set(k, (this.epochsEnded.get(k) ?? 0) + 1);
  }

  /** The agent's Prometheus registry (made on first use; `stats` is read at each scrape). */
  prometheus(stats: () => AgentStats): Registry {
    this.registry ??= agentRegistry(stats, this.lagSeconds);
    return this.registry;
  }

  /** Records a sample of the MONITOR client's output buffer; returns the sample before it. */
  recordMonitorOutput(bytes: number): number {
    const previous = this.monitorOutputBytes;
    this.monitorOutputBytes = bytes;
    this.maxMonitorOutputBytesSeen = Math.max(this.maxMonitorOutputBytesSeen, bytes);
    return previous;
  }
}

/** Reason classes of an ended epoch (the `reason` label of `flashback_agent_epochs_ended_total`). */
export const EPOCH_END_REASONS = [
  'publish_backlog',
  'output_buffer',
  'failover',
  'connection_lost',
  'full_resync',
  'state_capture',
  'protocol',
  'other',
] as const;

/** The class of an epoch's end reason, from the agents' log text: a bounded label set for Prometheus. */
export function epochEndReason(reason: string): (typeof EPOCH_END_REASONS)[number] {
  if (/publish backlog/i.test(reason)) return 'publish_backlog';
  if (/output|buffers \d+ bytes/i.test(reason)) return 'output_buffer';
  if (/demoted|failover|replica now/i.test(reason)) return 'failover';
  if (/full resync|could not continue/i.test(reason)) return 'full_resync';
  if (/state capture/i.test(reason)) return 'state_capture';
  if (/lost|closed|ECONNRESET|ECONNREFUSED|reconnect/i.test(reason)) return 'connection_lost';
  if (/cannot read|protocol/i.test(reason)) return 'protocol';
  return 'other';
}

/**
 * The agent's metrics (GET /metrics), labelled `node`: what says whether the node can be restored (restorable, last
 * baseline and last event times, baseline failures, epochs ended by reason) and what says why not yet or soon not
 * (lag, the source's output buffer for our clients, the JetStream backlog). Times are Unix timestamps in seconds (the
 * Prometheus convention: an age is `time() - x`, exact whenever the scrape happens).
 */
function agentRegistry(stats: () => AgentStats, lagSeconds: Histogram): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ node: stats().node });
  registry.registerMetric(lagSeconds);
  // One snapshot per scrape, shared by every metric's collect.
  let snap: { at: number; s: AgentStats } | undefined;
  const read = (): AgentStats => {
    const now = Date.now();
    if (!snap || now - snap.at > 100) snap = { at: now, s: stats() };
    return snap.s;
  };
  const one = (f: (s: AgentStats) => number) => (): Sample<never>[] => [[{}, f(read())]];
  const gauge = (name: string, help: string, f: (s: AgentStats) => number) =>
    snapshotGauge(registry, { name, help, labelNames: [], read: one(f) });
  const counter = (name: string, help: string, f: (s: AgentStats) => number) =>
    snapshotCounter(registry, { name, help, labelNames: [], read: one(f) });

  gauge(
    'flashback_agent_restorable',
    '1 when the current epoch has a stored baseline and capture runs (a restorable window grows), else 0',
    (s) => (s.connected && s.lastBaselineAtMs > 0 && s.lastBaselineEpoch === s.epoch ? 1 : 0),
  );
  gauge('flashback_agent_connected', '1 while capture of the current epoch runs', (s) => (s.connected ? 1 : 0));
  gauge('flashback_agent_epoch', 'Id of the current epoch (ms since the Unix epoch when it started)', (s) => s.epoch);
  gauge('flashback_agent_last_seq', 'Last seq assigned in the current epoch', (s) => s.lastSeq);
  gauge(
    'flashback_agent_last_event_timestamp_seconds',
    'When the agent last emitted an event (heartbeats included), Unix seconds',
    (s) => s.lastEventAtMs / 1000,
  );
  gauge(
    'flashback_agent_last_baseline_timestamp_seconds',
    'When the last baseline was stored, Unix seconds (0 before the first)',
    (s) => s.lastBaselineAtMs / 1000,
  );
  counter('flashback_agent_baselines_total', 'Baselines stored', (s) => s.baselines);
  counter(
    'flashback_agent_baseline_failures_total',
    'Baselines that failed (each is retried with backoff)',
    (s) => s.baselineFailures,
  );
  snapshotCounter(registry, {
    name: 'flashback_agent_epochs_ended_total',
    help: 'Epochs ended (continuity lost: a new epoch and a new baseline follow), by reason class',
    labelNames: ['reason'],
    read: () => EPOCH_END_REASONS.map((reason): Sample<'reason'> => [{ reason }, read().epochsEnded[reason] ?? 0]),
  });
  counter('flashback_agent_events_captured_total', 'Events captured', (s) => s.eventsCaptured);
  counter('flashback_agent_events_published_total', 'Events acknowledged by JetStream', (s) => s.eventsPublished);
  counter(
    'flashback_agent_read_bytes_total',
    'Bytes read from the source (MONITOR or replication stream)',
    (s) => s.bytesRead,
  );
  counter('flashback_agent_published_bytes_total', 'Bytes acknowledged by JetStream', (s) => s.bytesPublished);
  gauge(
    'flashback_agent_publish_backlog_bytes',
    'Captured bytes not yet acknowledged by JetStream',
    (s) => s.publishBacklogBytes,
  );
  snapshotGauge(registry, {
    name: 'flashback_agent_source_output_buffer_bytes',
    help: 'Output buffer the source holds for our client (CLIENT LIST omem): monitor (MONITOR capture), replica (replication link), attribution (its MONITOR)',
    labelNames: ['client'],
    read: () => {
      const s = read();
      if (s.source !== 'replication') return [[{ client: 'monitor' }, s.monitorOutputBytes]];
      const out: Sample<'client'>[] = [[{ client: 'replica' }, s.monitorOutputBytes]];
      if (s.attribution !== 'off') out.push([{ client: 'attribution' }, s.attributionMonitorOutputBytes ?? 0]);
      return out;
    },
  });
  gauge(
    'flashback_agent_held_events',
    'Events held until their state (monitor) or time anchor (replication) is known',
    (s) => s.heldForState,
  );
  counter(
    'flashback_agent_state_probes_total',
    'State probes sent (nondeterministic writes, pops served to blocked clients)',
    (s) => s.stateProbes,
  );
  counter('flashback_agent_failovers_total', "Times the agent followed its shard's new master", (s) => s.failovers);
  snapshotGauge(registry, {
    name: 'flashback_agent_replication_lag_bytes',
    help: "Bytes of the source's replication stream not yet read (master_repl_offset minus ours); replication mode",
    labelNames: [],
    read: () => (read().source === 'replication' ? [[{}, read().replicationLagBytes ?? 0]] : []),
  });
  snapshotCounter(registry, {
    name: 'flashback_agent_time_anchors_total',
    help: 'Time anchors placed in the replication stream; replication mode',
    labelNames: [],
    read: () => (read().source === 'replication' ? [[{}, read().anchorsSent ?? 0]] : []),
  });
  snapshotCounter(registry, {
    name: 'flashback_agent_audit_rows_total',
    help: 'Audit rows stored (--audit-noops): writes MONITOR showed that changed nothing or were refused; replication mode',
    labelNames: [],
    read: () => (read().source === 'replication' ? [[{}, read().audited ?? 0]] : []),
  });
  snapshotCounter(registry, {
    name: 'flashback_agent_consumers_added_total',
    help: 'Events added for stream consumers a group read created without delivering (Redis 7.2+, Valkey); replication mode',
    labelNames: [],
    read: () => (read().source === 'replication' ? [[{}, read().consumersAdded ?? 0]] : []),
  });
  return registry;
}
