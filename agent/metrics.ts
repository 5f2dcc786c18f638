import type { Metric } from '../core/health-server.js';
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
  /** Server-side output buffer of attribution's MONITOR client, bytes. */
  attributionMonitorOutputBytes?: number;
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
  baselines: { count: number; lastSeq: number; lastEpoch: number };
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
  readonly lag = new LagTracker();
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

  /** Records a sample of the MONITOR client's output buffer; returns the sample before it. */
  recordMonitorOutput(bytes: number): number {
    const previous = this.monitorOutputBytes;
    this.monitorOutputBytes = bytes;
    this.maxMonitorOutputBytesSeen = Math.max(this.maxMonitorOutputBytesSeen, bytes);
    return previous;
  }
}

/** The agent's stats as Prometheus metrics (GET /metrics). */
export function prometheusMetrics(s: AgentStats): Metric[] {
  const labels = { node: s.node };
  const g = (name: string, help: string, value: number, type: 'gauge' | 'counter' = 'gauge'): Metric => ({
    name,
    help,
    type,
    value,
    labels,
  });
  return [
    g(
      'flashback_agent_events_captured_total',
      'Events captured from MONITOR and notifications',
      s.eventsCaptured,
      'counter',
    ),
    g('flashback_agent_events_per_second', 'Capture rate over the last interval', s.eventsPerSecond),
    g('flashback_agent_monitor_bytes_read_total', 'Bytes read from MONITOR', s.bytesRead, 'counter'),
    g('flashback_agent_lag_ms_p99', 'MONITOR lag p99 (agent clock - server timestamp)', s.lagMsP99),
    g('flashback_agent_lag_ms_p50', 'MONITOR lag p50', s.lagMsP50),
    g(
      'flashback_agent_monitor_output_buffer_bytes',
      'Server-side output buffer of our MONITOR client (omem)',
      s.monitorOutputBytes,
    ),
    g(
      'flashback_agent_publish_backlog_bytes',
      'Captured bytes not yet acknowledged by JetStream',
      s.publishBacklogBytes,
    ),
    g('flashback_agent_epoch', 'Current epoch id', s.epoch),
    g('flashback_agent_last_seq', 'Last seq assigned', s.lastSeq),
    g('flashback_agent_baselines_total', 'Baselines stored', s.baselines, 'counter'),
    g(
      'flashback_agent_state_probes_total',
      'State probes sent (nondeterministic writes, pops served to blocked clients)',
      s.stateProbes,
      'counter',
    ),
    g(
      'flashback_agent_held_for_state',
      'Events held until their state (monitor) or time anchor (replication) is known',
      s.heldForState,
    ),
    ...(s.source === 'replication'
      ? [
          g(
            'flashback_agent_replication_lag_bytes',
            "Bytes of the source's replication stream not yet read (master_repl_offset - our offset)",
            s.replicationLagBytes ?? 0,
          ),
          g(
            'flashback_agent_replication_acked_offset',
            'Replication offset acknowledged to the source (everything before it is in JetStream)',
            s.durableOffset ?? 0,
          ),
          g(
            'flashback_agent_time_anchors_total',
            'Time anchors placed in the replication stream',
            s.anchorsSent ?? 0,
            'counter',
          ),
        ]
      : []),
  ];
}
