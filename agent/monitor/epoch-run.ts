import type { JetStreamClient } from '@nats-io/jetstream';
import { MARKER_CHANNEL } from '../../core/bus/baseline.js';
import type { FlashbackEvent } from '../../core/bus/event.js';
import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { MonitorParser } from '../../core/redis/monitor-parser.js';
import { EventAssembler, type UncertainExpiry } from './event-assembler.js';
import { ExpiryCorrector } from './expiry-corrector.js';
import type { CaptureMetrics } from '../metrics.js';
import { MonitorSource } from './monitor-source.js';
import { FIELD_TTL_CHANGE_PATTERN, parseServerChange, SERVER_CHANGE_PATTERNS } from './notifications.js';
import { EventPublisher } from '../publisher.js';
import type { Source } from '../source.js';
import { StateCapture } from './state-capture.js';

/** One epoch's moving parts: a new set is built whenever continuity is lost. */
export interface EpochRun {
  epoch: number;
  publisher: EventPublisher;
  assembler: EventAssembler;
  corrector: ExpiryCorrector;
  states: StateCapture;
  /** The MONITOR connection: undefined until it is open. */
  monitor: MonitorSource | undefined;
  /** Server time of the newest MONITOR line read, µs. */
  lastTsUs: number;
  ended: boolean;
  /** A MONITOR line of our master link was seen: the node is a replica now, nothing more of this epoch is read. */
  demoted: boolean;
}

/** What an epoch's pipeline is built from, and how it reaches the agent. */
export interface EpochOptions {
  epoch: number;
  /** The node the epoch captures, as followed when it starts. */
  source: Source;
  node: string;
  js: JetStreamClient;
  logger: Logger;
  /** Bytes waiting for NATS before the epoch ends. */
  maxQueuedBytes: number;
  /** Bytes of events the state capture may hold (the agent's MONITOR output limit). */
  maxMonitorOutputBytes: number;
  metrics: CaptureMetrics;
  /** Continuity is lost: ends this epoch and starts the next. */
  restart: (reason: string) => void;
  /** A baseline's marker was emitted. */
  onMarker: (ev: FlashbackEvent) => void;
  /** Asks Redis for a MONITOR line soon: it proves a script's end or a server event's time. */
  probe: () => void;
  /** The agent is closing: a MONITOR connection that ends then is no lost continuity. */
  isClosed: () => boolean;
}

/**
 * Builds an epoch's pipeline, from its end to its head (the order events leave it): publisher ← expiry corrector ←
 * state capture ← assembler. MONITOR is not read yet: see {@link startEpochMonitor}.
 */
export function createEpochRun(o: EpochOptions): EpochRun {
  const { epoch, source, logger, metrics, restart } = o;
  const publisher = new EventPublisher(o.js, {
    node: o.node,
    epoch,
    maxQueuedBytes: o.maxQueuedBytes,
    logger,
    onOverflow: () => restart('publish backlog overflow: NATS too slow or unreachable'),
  });
  // The assembler notes which expiries may be late; the corrector, a stage after it, settles them.
  const uncertainExpiry = new WeakMap<FlashbackEvent, UncertainExpiry>();
  const corrector = new ExpiryCorrector({
    conn: source.probe,
    uncertain: uncertainExpiry,
    out: (events) => publisher.enqueue(events),
    logger,
  });
  const states = new StateCapture({
    conn: source.state,
    table: source.table,
    out: (events) => corrector.process(events),
    onFailure: (reason) => restart(`state capture failed (${reason}): what follows cannot be proven exact`),
    logger,
    maxHeldBytes: o.maxMonitorOutputBytes,
  });
  const assembler = new EventAssembler({
    node: o.node,
    epoch,
    table: source.table,
    ownClients: new Set([source.controlAddr, source.probeAddr, source.stateAddr]),
    stateClient: source.stateAddr,
    watchedClients: states.watched,
    onWatchedLine: (client) => states.onClientLine(client),
    markerChannel: MARKER_CHANNEL,
    emit: (events) => {
      metrics.eventsEmitted(events.length);
      states.process(events);
    },
    onMarker: o.onMarker,
    onOwnLine: (line) => (line.client === source.stateAddr ? states.ownLine(line) : corrector.ownLine(line)),
    uncertainExpiry,
  });
  return {
    epoch,
    publisher,
    assembler,
    corrector,
    states,
    monitor: undefined,
    lastTsUs: 0,
    ended: false,
    demoted: false,
  };
}

/** Opens the epoch's MONITOR connection and feeds what it reads, parsed, to the run's assembler. */
export function startEpochMonitor(run: EpochRun, o: EpochOptions): Promise<MonitorSource> {
  const { source, metrics, restart } = o;
  const parser = new MonitorParser(
    (line) => {
      if (run.ended || run.demoted) return;
      // In cluster mode a line from another node's address is our master link's: a failover demoted this node.
      // Its lines are the new master's writes, which the new master's epoch captures: this epoch ends before them.
      if (source.cluster?.peers.has(line.client)) {
        run.demoted = true;
        restart(`the node was demoted to a replica (failover): MONITOR shows its master link ${line.client}`);
        return;
      }
      run.lastTsUs = line.tsUs;
      run.assembler.push(line);
    },
    (items) => {
      const change = parseServerChange(items);
      if (!change) return;
      metrics.serverChanges++;
      run.assembler.pushServerEvent(change);
    },
  );
  const handlers = {
    onData: (chunk: Buffer) => {
      metrics.bytesRead += chunk.length;
      if (run.ended) return;
      try {
        parser.push(chunk);
      } catch (err) {
        restart(`cannot read the MONITOR stream: ${describeError(err)}`);
        return;
      }
      if (run.lastTsUs > 0) metrics.lag.add((Date.now() * 1000 - source.skewUs - run.lastTsUs) / 1000);
      // A script's end and a server event's time are both proven by the next line: make one come soon.
      if (run.assembler.pendingScript || run.assembler.pendingServerEvents) o.probe();
    },
    onClose: (err: Error | undefined) => {
      if (err && !run.ended && !o.isClosed()) restart(`MONITOR connection lost: ${err.message}`);
    },
  };
  const patterns = source.fieldTtls ? [...SERVER_CHANGE_PATTERNS, FIELD_TTL_CHANGE_PATTERN] : SERVER_CHANGE_PATTERNS;
  return MonitorSource.start(source.target, handlers, source.notify ? patterns : []);
}
