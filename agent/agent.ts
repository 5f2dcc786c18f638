import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import { baselineSubject, HEARTBEAT_MESSAGE, MARKER_CHANNEL, type BaselineRecord } from '../core/bus/baseline.js';
import { CommandTable } from '../core/redis/command-table.js';
import { ConnectionError, describeError } from '../core/errors.js';
import { keysInInfo } from '../core/redis/keyspace-info.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { startHealthServer, type Metric } from '../core/health-server.js';
import { silentLogger, type Logger } from '../core/log.js';
import { MonitorParser } from '../core/redis/monitor-parser.js';
import { connectNats, ensureBaselineStore, ensureEventStream } from '../core/bus/nats.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl, redactedRedisUrl, redisAddress, type RedisTarget } from '../core/redis/redis-url.js';
import { RespError } from '../core/redis/resp.js';
import { takeBaseline } from './baseline.js';
import { EventAssembler } from './event-assembler.js';
import { LagTracker } from './lag-tracker.js';
import { MonitorSource } from './monitor-source.js';
import { ensureNotifyFlags, ensurePubsubOutputLimit, parseServerChange, SERVER_CHANGE_PATTERNS } from './notifications.js';
import { EventPublisher } from './publisher.js';
import { ExpiryCorrector } from './expiry-corrector.js';
import { StateCapture } from './state-capture.js';
import { clusterNodes, isClusterNode, peerAddresses, readRole, shardIds, shardMaster, type SourceRole } from './source-role.js';

/** Options of one capture agent (one per Redis node). */
export interface AgentOptions {
  /** Redis to capture: redis://[user:pass@]host:port or rediss://… */
  redisUrl: string;
  /** Capture source id. @default host:port of redisUrl */
  nodeId?: string;
  natsUrl: string;
  /** A baseline is taken at each epoch start and then this often. @default 3_600_000 (1 h) */
  baselineIntervalMs?: number;
  /** Also take a baseline after this many events (0 = never by count). @default 0 */
  baselineEveryEvents?: number;
  /** Record DEBUG DIGEST in each baseline: 'auto' = when the dataset has ≤ 100 000 keys (it blocks Redis O(N)). @default 'auto' */
  baselineDigest?: 'auto' | 'always' | 'never';
  /** Server-side output buffer of our MONITOR client above which, still growing a sample later, the epoch ends (protects the source). @default 64 MiB */
  maxMonitorOutputBytes?: number;
  /** Bytes waiting for NATS before the epoch ends. @default 256 MiB */
  maxQueuedBytes?: number;
  /** How often output buffer, lag and rates are sampled. @default 1_000 */
  metricsIntervalMs?: number;
  /** When Redis has been idle this long, the agent ECHOes a heartbeat so the restorable window reaches now. @default 1_000 */
  heartbeatIntervalMs?: number;
  /** Port for GET /health and /metrics; undefined = none. */
  healthPort?: number;
  /** Stream retention (max age). @default 7 days */
  retentionMs?: number;
  logger?: Logger;
}

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
  /** Events held right now until their state is known. */
  heldForState: number;
}

/** A running capture agent. */
export interface Agent {
  readonly node: string;
  stats(): AgentStats;
  health(): { ok: boolean } & AgentStats;
  /** Takes a baseline now; resolves with its record once stored and published. */
  baseline(): Promise<BaselineRecord>;
  /** Publishes everything captured so far (for tests and shutdown). */
  flush(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts capturing one Redis node. Fails fast with one clear error when Redis
 * or NATS cannot be reached at start; afterwards it reconnects with backoff
 * and starts a new epoch (with a new baseline) whenever continuity is lost.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const {
    baselineIntervalMs = 3_600_000,
    baselineEveryEvents = 0,
    baselineDigest = 'auto',
    maxMonitorOutputBytes = 64 * 1024 * 1024,
    maxQueuedBytes = 256 * 1024 * 1024,
    metricsIntervalMs = 1_000,
    heartbeatIntervalMs = 1_000,
    retentionMs,
    logger: rootLogger = silentLogger,
  } = options;
  const target = parseRedisUrl(options.redisUrl);
  const node = options.nodeId ?? redisAddress(target);
  const logger = rootLogger.child({ node });

  const control = await RawRedis.connect(target, { clientName: 'flashback-control' });
  let nc: NatsConnection | undefined;
  let source: Source | undefined;
  try {
    // Everything that can fail is checked before the source's configuration is touched.
    nc = await connectNats({ url: options.natsUrl, name: `flashback-agent ${node}`, logger });
    await ensureEventStream(nc, { maxAgeMs: retentionMs });
    const store = await ensureBaselineStore(nc);
    const js = jetstream(nc);
    source = await openSource(target, control, maxMonitorOutputBytes, logger);
    const agent = new CaptureAgent({
      ...source, node, nc, js, store, logger,
      baselineIntervalMs, baselineEveryEvents, baselineDigest, maxMonitorOutputBytes, maxQueuedBytes, metricsIntervalMs, heartbeatIntervalMs,
    });
    await agent.start();
    if (options.healthPort !== undefined) {
      const hs = await startHealthServer(options.healthPort, { health: () => agent.health(), metrics: () => agent.metrics() });
      agent.onClose(() => hs.close());
      logger.info({ port: hs.port }, 'health endpoint: GET /health, /metrics');
    }
    logger.info({ redis: redactedRedisUrl(target), nats: options.natsUrl, epoch: agent.stats().epoch }, 'capturing');
    return agent;
  } catch (err) {
    control.close();
    source?.probe.close();
    source?.state.close();
    await nc?.close().catch(() => undefined);
    throw err;
  }
}

/** The connections to one Redis node and what the agent learned from it: one set per node followed. */
interface Source {
  target: RedisTarget;
  table: CommandTable;
  control: RawRedis;
  controlAddr: string;
  /** Connection of the expiry corrector's PEXPIRETIME probes. */
  probe: RawRedis;
  probeAddr: string;
  /** Connection of the state probes (DUMP + PEXPIRETIME scripts): agent/state-capture.ts. */
  state: RawRedis;
  stateAddr: string;
  skewUs: number;
  notify: boolean;
  /** Role when the connections were opened: only a master that becomes a replica is followed to its new master. */
  role: SourceRole['role'];
  /** Cluster mode: every other node's `ip:port` (a MONITOR line from one is our master link's) and the shard's node ids. */
  cluster: { peers: Set<string>; shard: Set<string> } | undefined;
}

/** Opens the probe and state connections next to `control`, loads the command table and sets the notifications. */
async function openSource(target: RedisTarget, control: RawRedis, maxMonitorOutputBytes: number, logger: Logger): Promise<Source> {
  let probe: RawRedis | undefined;
  let state: RawRedis | undefined;
  try {
    const table = await CommandTable.load(control);
    const controlAddr = await clientAddr(control);
    probe = await RawRedis.connect(target, { clientName: 'flashback-expiry' });
    const probeAddr = await clientAddr(probe);
    state = await RawRedis.connect(target, { clientName: 'flashback-state' });
    const stateAddr = await clientAddr(state);
    const skewUs = await clockSkewUs(control);
    const { role } = await readRole(control);
    let cluster: Source['cluster'];
    if (await isClusterNode(control)) {
      const rows = await clusterNodes(control);
      const me = rows.find((r) => r.flags.includes('myself'));
      cluster = { peers: peerAddresses(rows), shard: me ? shardIds(rows, me.flags.includes('master') ? me.id : me.masterId) : new Set() };
    }
    const notify = await ensureNotifyFlags(control, logger);
    // One line of a large value is up to 4× its size, and Redis counts the allocation (a size class above it):
    // 8× our own overload limit lets a 64 MiB value of unprintable bytes through (measured: 4× stopped at ~56 MiB).
    if (notify.error === undefined) await ensurePubsubOutputLimit(control, 8 * maxMonitorOutputBytes, logger);
    return { target, table, control, controlAddr, probe, probeAddr, state, stateAddr, skewUs, notify: notify.error === undefined, role, cluster };
  } catch (err) {
    probe?.close();
    state?.close();
    throw err;
  }
}

async function clientAddr(conn: RawRedis): Promise<string> {
  const info = await conn.call(['CLIENT', 'INFO']);
  const text = Buffer.isBuffer(info) ? info.toString('latin1') : String(info);
  const m = /(?:^|\s)addr=(\S+)/.exec(text);
  if (!m) throw new Error(`cannot read our own client address from CLIENT INFO: ${text.slice(0, 120)}`);
  return m[1]!;
}

/** agent clock − server clock, µs (TIME), so lag is not skewed by clock differences. */
async function clockSkewUs(conn: RawRedis): Promise<number> {
  const before = Date.now() * 1000;
  const t = await conn.call(['TIME']);
  const after = Date.now() * 1000;
  if (!Array.isArray(t)) return 0;
  const server = Number(String(t[0])) * 1e6 + Number(String(t[1]));
  return (before + after) / 2 - server;
}

interface CaptureDeps extends Source {
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

/** One epoch's moving parts: a new set is built whenever continuity is lost. */
interface EpochRun {
  epoch: number;
  publisher: EventPublisher;
  assembler: EventAssembler;
  corrector: ExpiryCorrector;
  states: StateCapture;
  parser: MonitorParser;
  monitor: MonitorSource | undefined;
  lastTsUs: number;
  ended: boolean;
  /** A MONITOR line of our master link was seen: the node is a replica now, nothing more of this epoch is read. */
  demoted: boolean;
}

class CaptureAgent implements Agent {
  readonly node: string;
  private run: EpochRun | undefined;
  private epochs = 0;
  private closed = false;
  private closers: (() => Promise<void>)[] = [];
  private metricsTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastEventAt = Date.now();
  private baselineTimer: NodeJS.Timeout | undefined;
  private probeInFlight = false;
  private readonly lag = new LagTracker();
  private readonly markers = new Map<string, (ev: FlashbackEvent) => void>();
  private seenMarkers = new Map<string, FlashbackEvent>();
  private baselineRunning: Promise<BaselineRecord> | undefined;
  private eventsAtLastBaseline = 0;
  private totals = { captured: 0, published: 0, bytesRead: 0, bytesPublished: 0, baselines: 0, lastBaselineSeq: 0, lastBaselineEpoch: 0, serverChanges: 0, failovers: 0 };
  private rate = { at: Date.now(), captured: 0, perSecond: 0 };
  private omem = { now: 0, max: 0 };
  private restarting: Promise<void> | undefined;

  /** Replaced when the agent follows its shard's new master (a failover): see ensureSource. */
  constructor(private d: CaptureDeps) {
    this.node = d.node;
  }

  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  async start(): Promise<void> {
    await this.startEpoch('capture started');
    this.metricsTimer = setInterval(() => void this.sample(), this.d.metricsIntervalMs);
    this.metricsTimer.unref();
    this.baselineTimer = setInterval(() => void this.baseline().catch(() => undefined), this.d.baselineIntervalMs);
    this.baselineTimer.unref();
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastEventAt >= this.d.heartbeatIntervalMs) this.heartbeat();
    }, Math.max(10, Math.floor(this.d.heartbeatIntervalMs / 2)));
    this.heartbeatTimer.unref();
  }

  /**
   * ECHOes the heartbeat; its MONITOR line becomes a heartbeat event. On a cluster master the role is read first: a
   * heartbeat proves the epoch's history complete up to its instant, which stops being true once a failover has
   * demoted the node (the new master's writes reach it later, if at all).
   */
  heartbeat(): void {
    const { control, cluster } = this.d;
    if (!cluster || this.d.role !== 'master') {
      control.call(['ECHO', HEARTBEAT_MESSAGE]).catch(() => undefined);
      return;
    }
    const run = this.run;
    readRole(control)
      .then((role) => (role.role === 'master' && this.run === run && !run?.ended && !run?.demoted ? control.call(['ECHO', HEARTBEAT_MESSAGE]) : undefined))
      .catch(() => undefined);
  }

  private async startEpoch(reason: string): Promise<void> {
    const prev = this.run?.epoch ?? 0;
    const epoch = Math.max(Date.now(), prev + 1);
    const { d } = this;
    const publisher = new EventPublisher(d.js, {
      node: d.node,
      epoch,
      maxQueuedBytes: d.maxQueuedBytes,
      logger: d.logger,
      onOverflow: () => void this.restartEpoch('publish backlog overflow: NATS too slow or unreachable'),
    });
    const run: EpochRun = { epoch, publisher, assembler: undefined as never, corrector: undefined as never, states: undefined as never, parser: undefined as never, monitor: undefined, lastTsUs: 0, ended: false, demoted: false };
    run.states = new StateCapture({
      conn: d.state,
      table: d.table,
      out: (events) => run.corrector.process(events),
      onFailure: (reason) => void this.restartEpoch(`state capture failed (${reason}): what follows cannot be proven exact`),
      logger: d.logger,
      maxHeldBytes: d.maxMonitorOutputBytes,
    });
    run.assembler = new EventAssembler({
      node: d.node,
      epoch,
      table: d.table,
      ownClients: new Set([d.controlAddr, d.probeAddr, d.stateAddr]),
      stateClient: d.stateAddr,
      watchedClients: run.states.watched,
      onWatchedLine: (client) => run.states.onClientLine(client),
      markerChannel: MARKER_CHANNEL,
      emit: (events) => {
        this.lastEventAt = Date.now();
        this.totals.captured += events.length;
        run.states.process(events);
      },
      onMarker: (ev) => this.onMarker(ev),
      onOwnLine: (line) => (line.client === d.stateAddr ? run.states.ownLine(line) : run.corrector.ownLine(line)),
    });
    run.corrector = new ExpiryCorrector({
      conn: d.probe,
      uncertain: run.assembler.uncertainExpiry,
      out: (events) => publisher.enqueue(events),
      logger: d.logger,
    });
    run.parser = new MonitorParser(
      (line) => {
        if (run.ended || run.demoted) return;
        // In cluster mode a line from another node's address is our master link's: a failover demoted this node.
        // Its lines are the new master's writes, which the new master's epoch captures: this epoch ends before them.
        if (d.cluster?.peers.has(line.client)) {
          run.demoted = true;
          void this.restartEpoch(`the node was demoted to a replica (failover): MONITOR shows its master link ${line.client}`);
          return;
        }
        run.lastTsUs = line.tsUs;
        run.assembler.push(line);
      },
      (items) => {
        const change = parseServerChange(items);
        if (!change) return;
        this.totals.serverChanges++;
        run.assembler.pushServerEvent(change);
      },
    );
    this.run = run;
    this.epochs++;
    run.monitor = await MonitorSource.start(d.target, {
      onData: (chunk) => {
        this.totals.bytesRead += chunk.length;
        if (run.ended) return;
        try {
          run.parser.push(chunk);
        } catch (err) {
          void this.restartEpoch(`cannot read the MONITOR stream: ${describeError(err)}`);
          return;
        }
        if (run.lastTsUs > 0) this.lag.add((Date.now() * 1000 - d.skewUs - run.lastTsUs) / 1000);
        // A script's end and a server event's time are both proven by the next line: make one come soon.
        if (run.assembler.pendingScript || run.assembler.pendingServerEvents) this.probe();
      },
      onClose: (err) => {
        if (err && !run.ended && !this.closed) void this.restartEpoch(`MONITOR connection lost: ${err.message}`);
      },
    }, d.notify ? SERVER_CHANGE_PATTERNS : []);
    d.logger.info({ epoch, reason }, 'epoch started');
    // The first baseline of an epoch starts its restorable window. One still running belongs to the previous epoch
    // (it will fail: its marker cannot land in this one): take ours after it.
    const previous = this.baselineRunning;
    if (!previous) void this.baseline().catch(() => undefined);
    else void previous.catch(() => undefined).then(() => (this.run === run && !run.ended && this.totals.lastBaselineEpoch !== epoch ? this.baseline() : undefined)).catch(() => undefined);
  }

  /** Sends an ECHO whose MONITOR line proves a running script has ended (lua lines carry no end marker). */
  private probe(): void {
    if (this.probeInFlight) return;
    this.probeInFlight = true;
    this.d.control.call(['ECHO', 'flashback-probe']).then(
      () => (this.probeInFlight = false),
      () => (this.probeInFlight = false),
    );
  }

  private async restartEpoch(reason: string): Promise<void> {
    if (this.closed || this.restarting) return;
    const old = this.run;
    if (!old || old.ended) return;
    this.restarting = (async () => {
      old.ended = true;
      old.monitor?.close();
      old.assembler.emitServerEvents(Date.now() * 1000 - this.d.skewUs);
      old.states.releaseAll();
      old.corrector.release();
      if (old.monitor) await this.d.control.call(['CLIENT', 'KILL', 'ID', old.monitor.clientId]).catch(() => undefined);
      this.d.logger.warn({ epoch: old.epoch, lastSeq: old.assembler.lastSeq, reason }, 'continuity lost: ending the epoch; a new epoch with a new baseline follows');
      // What the old epoch captured is still valid history: publish it.
      void old.publisher.close(60_000).then((ok) => {
        if (!ok) this.d.logger.error({ epoch: old.epoch }, 'could not publish the end of the epoch: its window ends before the last captured event');
      });
      let delay = 200;
      while (!this.closed) {
        try {
          await this.ensureSource();
          await this.startEpoch(reason);
          return;
        } catch (err) {
          this.d.logger.warn({ err: describeError(err), retryInMs: delay }, 'cannot restart capture; retrying');
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(10_000, delay * 2);
        }
      }
    })().finally(() => (this.restarting = undefined));
    return this.restarting;
  }

  /**
   * Before a new epoch: makes sure the agent talks to the master of its shard. A master that became a replica (a
   * failover) is left for the master it follows now (in cluster mode, when the node cannot tell, the master its
   * shard's nodes name), under the same node id; connections that died are opened again. The new epoch's baseline
   * then starts a new window there; the old epoch's window stays restorable.
   */
  private async ensureSource(): Promise<void> {
    const { d } = this;
    const role = await readRole(d.control).catch(() => undefined);
    if (role !== undefined && (role.role === 'master' || d.role === 'slave')) return;
    let next: RedisTarget = d.target;
    if (role?.role === 'slave' || d.cluster) {
      const master = role?.master ?? (await this.findShardMaster());
      if (!master) throw new ConnectionError(`Redis ${redisAddress(d.target)} ${role ? 'is a replica now and names no master' : 'cannot be reached and no node of its shard names a master'}; waiting for the failover to settle`);
      if (master.host !== d.target.host || master.port !== d.target.port) next = { ...d.target, host: master.host, port: master.port };
    }
    const control = await RawRedis.connect(next, { clientName: 'flashback-control' }).catch((err: unknown) => {
      if (!d.cluster || next !== d.target) throw err;
      throw new ConnectionError(`${describeError(err)}; no other node of its shard is master yet: waiting for the cluster to fail over, or for the node to return`, { cause: err });
    });
    let source: Source;
    try {
      if (role?.role === 'slave' || next !== d.target) {
        const nextRole = await readRole(control);
        if (nextRole.role !== 'master') throw new ConnectionError(`Redis ${redisAddress(next)}, the master ${redisAddress(d.target)} follows now, is not a master yet; waiting for the failover to settle`);
      }
      source = await openSource(next, control, d.maxMonitorOutputBytes, d.logger);
    } catch (err) {
      control.close();
      throw err;
    }
    const old = d;
    this.d = { ...d, ...source };
    old.control.close();
    old.probe.close();
    old.state.close();
    if (next !== old.target) {
      this.totals.failovers++;
      d.logger.warn({ from: redisAddress(old.target), to: redisAddress(next) }, 'failover: following the new master of the shard under the same node id; a new epoch with a new baseline starts there');
    }
  }

  /** Cluster mode: the current master of our shard, as the nodes we know (ours and its peers) tell it. */
  private async findShardMaster(): Promise<{ host: string; port: number } | undefined> {
    const { cluster, target } = this.d;
    if (!cluster) return undefined;
    const candidates = [`${target.host}:${target.port}`, ...cluster.peers];
    for (const addr of candidates) {
      const colon = addr.lastIndexOf(':');
      let conn: RawRedis | undefined;
      try {
        conn = await RawRedis.connect({ ...target, host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) }, { clientName: 'flashback-control', timeoutMs: 2_000 });
        const m = shardMaster(await clusterNodes(conn), cluster.shard);
        if (m) return { host: m.host, port: m.port };
      } catch {
        // That node is down too, or no cluster node any more: ask the next.
      } finally {
        conn?.close();
      }
    }
    return undefined;
  }

  private onMarker(ev: FlashbackEvent): void {
    let markerId = '';
    try {
      markerId = String(JSON.parse(ev.args[2]?.toString('utf8') ?? '{}').markerId ?? '');
    } catch {
      return;
    }
    const waiter = this.markers.get(markerId);
    if (waiter) waiter(ev);
    else if (this.seenMarkers.size < 100) this.seenMarkers.set(markerId, ev);
  }

  /**
   * The marker's own event, from the epoch the baseline was taken in: a marker seen by another epoch's MONITOR
   * (the epoch restarted meanwhile) has no position in this one, so that baseline is dropped, never misplaced.
   */
  private markerEvent(markerId: string, epoch: number, timeoutMs = 30_000): Promise<FlashbackEvent> {
    const check = (ev: FlashbackEvent): FlashbackEvent => {
      if (ev.epoch !== epoch) throw new Error(`the baseline's marker arrived in epoch ${ev.epoch}, not ${epoch}: the epoch ended during the baseline`);
      return ev;
    };
    const seen = this.seenMarkers.get(markerId);
    if (seen) {
      this.seenMarkers.delete(markerId);
      return Promise.resolve().then(() => check(seen));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.markers.delete(markerId);
        reject(new Error(`the baseline's marker did not show in MONITOR within ${timeoutMs} ms (MONITOR reconnected?)`));
      }, timeoutMs);
      this.markers.set(markerId, (ev) => {
        clearTimeout(timer);
        this.markers.delete(markerId);
        try {
          resolve(check(ev));
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  baseline(): Promise<BaselineRecord> {
    if (!this.baselineRunning) {
      this.baselineRunning = this.takeOneBaseline().finally(() => (this.baselineRunning = undefined));
    }
    return this.baselineRunning;
  }

  private async takeOneBaseline(): Promise<BaselineRecord> {
    const { d } = this;
    const run = this.run!;
    const epoch = run.epoch;
    const started = Date.now();
    let digest = d.baselineDigest === 'always';
    if (d.baselineDigest === 'auto') digest = (await countKeys(d.control)) <= 100_000;
    // Group reads from here to the marker may reach the baseline only in part (Redis 7.0 replication): noted, re-read.
    run.states.trackGroupReads();
    try {
      const { record: partial, approximateGroups } = await takeBaseline({ target: d.target, control: d.control, store: d.store, node: d.node, epoch, digest, logger: d.logger });
      const marker = await this.markerEvent(partial.markerId, epoch);
      // Their state, read now, lands right after the marker (SETTLE events): the baseline is exact from there on.
      const reread = new Map([...approximateGroups, ...run.states.takeGroupReads()].map((k) => [`${k.db}:${k.key.toString('hex')}`, k]));
      if (reread.size > 0 && this.run === run && !run.ended) {
        run.states.recapture([...reread.values()]);
        d.logger.info({ epoch, seq: marker.seq, streams: reread.size }, 'consumer-group reads while the baseline was taken: those streams are read again after the marker');
      }
      const record: BaselineRecord = { ...partial, seq: marker.seq, tsUs: marker.tsUs };
      // The marker is an event like any other: make sure it is in the stream before the record that points at it.
      await run.publisher.flush();
      await d.js.publish(baselineSubject(d.node), JSON.stringify(record), { msgID: `baseline:${d.node}:${epoch}:${record.seq}` });
      this.totals.baselines++;
      this.totals.lastBaselineSeq = record.seq;
      this.totals.lastBaselineEpoch = epoch;
      this.eventsAtLastBaseline = this.totals.captured;
      d.logger.info({ epoch, seq: record.seq, rdbBytes: record.rdbBytes, tailBytes: record.tailBytes, keys: record.keys, digest: record.digest || undefined, ms: Date.now() - started }, 'baseline stored');
      return record;
    } catch (err) {
      run.states.takeGroupReads();
      d.logger.error({ epoch, err: describeError(err) }, 'baseline failed; will retry at the next interval');
      throw err;
    }
  }

  private async sample(): Promise<void> {
    const run = this.run;
    if (!run || this.closed) return;
    const now = Date.now();
    const captured = this.totals.captured;
    this.rate.perSecond = ((captured - this.rate.captured) * 1000) / Math.max(1, now - this.rate.at);
    this.rate = { at: now, captured, perSecond: this.rate.perSecond };
    this.lag.roll();
    if (this.d.baselineEveryEvents > 0 && captured - this.eventsAtLastBaseline >= this.d.baselineEveryEvents) void this.baseline().catch(() => undefined);
    if (this.d.role === 'master') {
      // A failover without writes shows no master-link line for a while (and none at all outside cluster mode).
      const role = await readRole(this.d.control).catch(() => undefined);
      if (role?.role === 'slave' && this.run === run && !run.ended) {
        void this.restartEpoch(`the node was demoted to a replica (failover)${role.master ? ` of ${role.master.host}:${role.master.port}` : ''}`);
        return;
      }
    }
    if (!run.monitor) return;
    try {
      const r = await this.d.control.call(['CLIENT', 'LIST', 'ID', run.monitor.clientId]);
      const text = Buffer.isBuffer(r) ? r.toString('latin1') : r instanceof RespError ? '' : String(r);
      const omem = Number(/(?:^|\s)omem=(\d+)/.exec(text)?.[1] ?? 0);
      const prev = this.omem.now;
      this.omem.now = omem;
      this.omem.max = Math.max(this.omem.max, omem);
      // One big value is one MONITOR line of up to 4× its size, held in one reply block until it is all sent:
      // over the limit, even for seconds, is not overload. Over it for a whole interval and still growing by a
      // quarter of the limit is. (Slower growth meets the server's own pubsub-class limits, which end the epoch.)
      if (omem > this.d.maxMonitorOutputBytes && prev > this.d.maxMonitorOutputBytes && omem - prev > this.d.maxMonitorOutputBytes / 4) {
        void this.restartEpoch(`Redis buffers ${omem} bytes of MONITOR output for us (limit ${this.d.maxMonitorOutputBytes}): the agent is too slow for this write rate`);
      }
    } catch {
      // The control connection is gone: the MONITOR close handler restarts the epoch.
    }
  }

  stats(): AgentStats {
    const run = this.run;
    return {
      node: this.node,
      epoch: run?.epoch ?? 0,
      epochs: this.epochs,
      connected: !!run && !run.ended,
      lastSeq: run?.assembler.lastSeq ?? 0,
      eventsCaptured: this.totals.captured,
      eventsPublished: run?.publisher.ackedEvents ?? 0,
      bytesRead: this.totals.bytesRead,
      bytesPublished: run?.publisher.ackedBytes ?? 0,
      eventsPerSecond: Math.round(this.rate.perSecond),
      lagMsP50: this.lag.p50,
      lagMsP99: this.lag.p99,
      monitorOutputBytes: this.omem.now,
      maxMonitorOutputBytesSeen: this.omem.max,
      publishBacklogBytes: run?.publisher.backlogBytes ?? 0,
      baselines: this.totals.baselines,
      lastBaselineSeq: this.totals.lastBaselineSeq,
      serverChanges: this.totals.serverChanges,
      lastBaselineEpoch: this.totals.lastBaselineEpoch,
      redis: redisAddress(this.d.target),
      failovers: this.totals.failovers,
      expiryCorrected: run?.corrector.corrected ?? 0,
      expiryConfirmed: run?.corrector.confirmed ?? 0,
      expiryUncorrectable: run?.corrector.uncorrectable ?? 0,
      stateProbes: run?.states.probesSent ?? 0,
      statesCaptured: run?.states.statesCaptured ?? 0,
      xaddIdsResolved: run?.states.idsResolved ?? 0,
      heldForState: run?.states.heldEvents ?? 0,
    };
  }

  health(): { ok: boolean } & AgentStats {
    const s = this.stats();
    return { ok: s.connected && !this.closed, ...s };
  }

  metrics(): Metric[] {
    const s = this.stats();
    const labels = { node: s.node };
    const g = (name: string, help: string, value: number, type: 'gauge' | 'counter' = 'gauge'): Metric => ({ name, help, type, value, labels });
    return [
      g('flashback_agent_events_captured_total', 'Events captured from MONITOR and notifications', s.eventsCaptured, 'counter'),
      g('flashback_agent_events_per_second', 'Capture rate over the last interval', s.eventsPerSecond),
      g('flashback_agent_monitor_bytes_read_total', 'Bytes read from MONITOR', s.bytesRead, 'counter'),
      g('flashback_agent_lag_ms_p99', 'MONITOR lag p99 (agent clock - server timestamp)', s.lagMsP99),
      g('flashback_agent_lag_ms_p50', 'MONITOR lag p50', s.lagMsP50),
      g('flashback_agent_monitor_output_buffer_bytes', 'Server-side output buffer of our MONITOR client (omem)', s.monitorOutputBytes),
      g('flashback_agent_publish_backlog_bytes', 'Captured bytes not yet acknowledged by JetStream', s.publishBacklogBytes),
      g('flashback_agent_epoch', 'Current epoch id', s.epoch),
      g('flashback_agent_last_seq', 'Last seq assigned', s.lastSeq),
      g('flashback_agent_baselines_total', 'Baselines stored', s.baselines, 'counter'),
      g('flashback_agent_state_probes_total', 'State probes sent (nondeterministic writes, pops served to blocked clients)', s.stateProbes, 'counter'),
      g('flashback_agent_held_for_state', 'Events held until their state is read', s.heldForState),
    ];
  }

  async flush(timeoutMs = 30_000): Promise<boolean> {
    const run = this.run;
    if (!run) return true;
    if (run.assembler.pendingServerEvents) {
      // Their time is the next line's: ask for one, and wait a little for it.
      this.probe();
      const deadline = Date.now() + 1_000;
      while (run.assembler.pendingServerEvents && !run.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      run.assembler.emitServerEvents(Date.now() * 1000 - this.d.skewUs);
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
    clearInterval(this.baselineTimer);
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
    if (run) {
      run.ended = true;
      run.monitor?.close();
      run.assembler.flush();
      run.assembler.emitServerEvents(Date.now() * 1000 - this.d.skewUs);
      run.states.releaseAll();
      run.corrector.release();
      const ok = await run.publisher.close(30_000);
      if (!ok) this.d.logger.error({ epoch: run.epoch, backlogBytes: run.publisher.backlogBytes }, 'shutdown: not everything captured reached JetStream');
    }
    for (const c of this.closers) await c().catch(() => undefined);
    this.d.control.close();
    this.d.probe.close();
    this.d.state.close();
    await this.d.nc.drain().catch(() => undefined);
    this.d.logger.info(this.stats(), 'agent stopped');
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function countKeys(control: RawRedis): Promise<number> {
  const info = await control.call(['INFO', 'keyspace']);
  return keysInInfo(Buffer.isBuffer(info) ? info.toString('latin1') : String(info));
}
