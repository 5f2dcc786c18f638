import type { CommandSpec, CommandTable } from '../../core/redis/command-table.js';
import { HEARTBEAT_MESSAGE } from '../../core/bus/baseline.js';
import { EventKind, type FlashbackEvent } from '../../core/bus/event.js';
import type { MonitorLine } from '../../core/redis/monitor-line.js';
import { FIELD_EXPIRED_SCRIPT, normalizeArgv, relativeExpiryIndex } from './normalize.js';
import { SETTLE_PROBE_SCRIPT } from './probe-scripts.js';

/** A state probe's script that marks a baseline's re-read (its events are named SETTLE). */
const SETTLE_SCRIPT = Buffer.from(SETTLE_PROBE_SCRIPT);

/** Options of an {@link EventAssembler}. */
export interface AssemblerOptions {
  /** Capture source id written on every event. */
  node: string;
  /** Epoch written on every event. */
  epoch: number;
  /** The source server's command table: decides writes, keys and normalization. */
  table: CommandTable;
  /** Clients whose lines are ours (agent control connection `ip:port`): never emitted, except the marker below. */
  ownClients: ReadonlySet<string>;
  /**
   * PUBLISH on this channel from an own client is a baseline marker → one event of kind 'baseline' (args = the
   * PUBLISH argv, command 'PUBLISH', replay = [] — nothing to apply). The agent sends it inside its own MULTI, so
   * it is atomic with what the agent read there; the marker is emitted alone (tx 0) all the same.
   */
  markerChannel: string;
  /** Called with each complete group: a single event, or a whole transaction / script, in seq order. */
  emit: (events: FlashbackEvent[]) => void;
  /** Called after a marker event was emitted, so the agent learns its seq. */
  onMarker?: (event: FlashbackEvent) => void;
  /** Called with every other line of an own client (the agent's probes), in stream order. */
  onOwnLine?: (line: MonitorLine) => void;
  /**
   * The own client whose EVAL lines are state probes: each becomes one placeholder `state` event per key, emitted as
   * one group.
   */
  stateClient?: string;
  /** Clients whose next line someone waits for (possibly blocked clients): `onWatchedLine` is called with it first. */
  watchedClients?: ReadonlySet<string>;
  onWatchedLine?: (client: string) => void;
  /**
   * Where events whose absolute expiry may be late are noted: shared with the ExpiryCorrector that settles them.
   * @default a new map
   */
  uncertainExpiry?: WeakMap<FlashbackEvent, UncertainExpiry>;
}

/**
 * An absolute expiry derived from a relative one: `replay[at]`, possibly up to `slackMs` ms later than the source's.
 */
export interface UncertainExpiry {
  at: number;
  slackMs: number;
}

/** A server-side change seen through a keyspace notification (not in MONITOR). */
export interface ServerEvent {
  kind: 'expired' | 'evicted' | 'hexpired';
  db: number;
  key: Buffer;
}

interface Pending {
  line: MonitorLine;
  spec: CommandSpec;
  /** Time of the line before this one (any client): the command cannot have started before it. */
  prevTsUs: number;
}

const SCRIPT_CALLS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);
const DEL = Buffer.from('DEL');
const EVAL = Buffer.from('EVAL');
const ONE = Buffer.from('1');
const HEARTBEAT = Buffer.from(HEARTBEAT_MESSAGE);

/**
 * Turns MONITOR lines into the ordered, gapless event stream of one epoch:
 * writes only, transactions and scripts as one group each. Synchronous and
 * allocation-light: it runs once per MONITOR line.
 *
 * What MONITOR shows (checked on 7.0.15, test/event-assembler.test.ts):
 * - MULTI when called; the queued commands only at EXEC time, together and
 *   uninterrupted, then EXEC. DISCARD shows MULTI, DISCARD. A transaction
 *   aborted by WATCH or EXECABORT shows MULTI, EXEC with nothing between.
 * - EVAL/FCALL before the script runs, then one `lua` line per redis.call
 *   (reads too). The script's end has no line of its own: the next non-lua
 *   line proves it; until then `pendingScript` is true and the agent sends a
 *   probe.
 * - No-op and failed writes (SET NX that lost, WRONGTYPE) look exactly like
 *   successful ones. They are emitted: replaying them reproduces the same
 *   no-op or failure, since they fail or do nothing in the same state.
 */
export class EventAssembler {
  private seq = 0;
  private readonly multis = new Map<string, Pending[]>();
  /** Client whose EXEC output is arriving (it has queued writes shown); its lines are contiguous. */
  private execClient: string | undefined;
  /** Client whose script runs inside its MULTI: `lua` lines go to that transaction. */
  private scriptInMulti: string | undefined;
  /** A script outside MULTI whose lines are still arriving. */
  /**
   * A running script's lines. `startPrevTsUs`: the line before it began — Redis freezes time for a script, so a
   * relative expiry in any of its lines counts from no earlier than that (the uncertainty every line carries).
   */
  private script: { lines: Pending[]; tsUs: number; startPrevTsUs: number } | undefined;
  private unknown = 0;
  private heldServer: ServerEvent[] = [];

  constructor(private readonly o: AssemblerOptions) {
    this.uncertainExpiry = o.uncertainExpiry ?? new WeakMap();
  }

  /** True while a script's lines may still arrive; a line from any client (e.g. an ECHO probe) ends it. */
  get pendingScript(): boolean {
    return this.script !== undefined;
  }

  /** Seq of the last emitted event (0 before the first). */
  get lastSeq(): number {
    return this.seq;
  }

  /** Lines of commands the server's table does not know (module commands loaded later): not emitted. */
  get unknownCommands(): number {
    return this.unknown;
  }

  /** True while server events wait for the next line (their position is known, their time is that line's). */
  get pendingServerEvents(): boolean {
    return this.heldServer.length > 0;
  }

  /** Feeds one MONITOR line, in stream order. */
  push(line: MonitorLine): void {
    if (this.heldServer.length > 0) this.emitServerEvents(line.tsUs);
    const prevTsUs = this.lastLineTsUs;
    this.lastLineTsUs = line.tsUs;
    const { client } = line;
    if (client === 'lua') {
      this.pushLua(line, prevTsUs);
      return;
    }
    // Any non-lua line proves a running script has ended.
    if (this.script) this.flush();
    this.scriptInMulti = undefined;
    if (this.execClient !== undefined && this.execClient !== client) this.abandonMulti(this.execClient);
    // Only now: what ran before this line (a script just flushed may have served this client) is out first.
    if (this.o.watchedClients !== undefined && this.o.watchedClients.size > 0 && this.o.watchedClients.has(client))
      this.o.onWatchedLine?.(client);

    if (this.o.ownClients.has(client)) {
      this.ownLine(line);
      return;
    }
    const spec = this.o.table.lookup(line.argv);
    if (!spec) {
      this.unknown++;
      return;
    }
    const name = spec.name;
    const queued = this.multis.get(client);
    if (queued) {
      if (name === 'exec') {
        this.multis.delete(client);
        this.execClient = undefined;
        if (queued.length > 0) this.emitGroup(queued, line.tsUs, true);
      } else if (name === 'discard' || name === 'reset') {
        this.multis.delete(client);
        this.execClient = undefined;
      } else if (SCRIPT_CALLS.has(name)) {
        this.scriptInMulti = client;
        this.execClient = client;
      } else if (spec.write) {
        // Time is frozen for EXEC as for a script: every line's lower bound is the group's first.
        queued.push({ line, spec, prevTsUs: queued[0]?.prevTsUs ?? prevTsUs });
        this.execClient = client;
      }
      return;
    }
    if (name === 'multi') {
      this.multis.set(client, []);
    } else if (SCRIPT_CALLS.has(name)) {
      this.script = { lines: [], tsUs: line.tsUs, startPrevTsUs: prevTsUs };
    } else if (spec.write) {
      this.emitGroup([{ line, spec, prevTsUs }], line.tsUs, false);
    }
  }

  /** Emits a pending script (its end was proven by a later line, or the agent is closing). */
  flush(): void {
    const s = this.script;
    if (!s) return;
    this.script = undefined;
    if (s.lines.length > 0) this.emitGroup(s.lines, s.tsUs, true);
  }

  /**
   * An expiration or eviction from a keyevent notification read on the MONITOR socket itself (RESP3 push), so it
   * sits exactly where the server made it: before the line of the command that expired or evicted the key (the
   * server deletes it first, then runs and shows the command), or between commands for active expiry. It replays as
   * DEL at that position. Its time is unknown, only bounded by the lines around it: it is held until the next line
   * and takes that line's time, which keeps times in seq order and never precedes the deletion. Inside a transaction
   * or script it lands before the whole group: Redis freezes time for EXEC and scripts, so no key of the group can
   * have expired after its first command.
   */
  pushServerEvent(e: ServerEvent): void {
    this.heldServer.push(e);
  }

  /** Emits held server events with `tsUs` (the line after them; at close, the agent's clock mapped to the server's). */
  emitServerEvents(tsUs: number): void {
    const held = this.heldServer;
    if (held.length === 0) return;
    this.heldServer = [];
    const at = Math.max(tsUs, this.lastLineTsUs);
    for (const e of held) {
      this.o.emit([
        {
          node: this.o.node,
          epoch: this.o.epoch,
          seq: ++this.seq,
          tsUs: at,
          db: e.db,
          client: 'agent',
          kind: e.kind === 'evicted' ? EventKind.Evicted : EventKind.Expired,
          command: e.kind,
          keys: [e.key],
          args: [e.key],
          // Field expirations do not name their fields: those whose TTL had passed by then go (Redis deletes every
          // field it finds expired; a later one was logically gone as well).
          replay:
            e.kind === 'hexpired'
              ? [EVAL, FIELD_EXPIRED_SCRIPT, ONE, e.key, Buffer.from(String(Math.floor(at / 1000)))]
              : [DEL, e.key],
          tx: 0,
        },
      ]);
    }
  }

  private pushLua(line: MonitorLine, prevTsUs: number): void {
    const spec = this.o.table.lookup(line.argv);
    if (!spec) {
      this.unknown++;
      return;
    }
    const owner = this.scriptInMulti;
    if (owner !== undefined) {
      const queued = this.multis.get(owner);
      if (spec.write) queued?.push({ line, spec, prevTsUs: queued[0]?.prevTsUs ?? prevTsUs });
      return;
    }
    // lua lines without their EVAL (MONITOR attached mid-script) still form one script.
    this.script ??= { lines: [], tsUs: line.tsUs, startPrevTsUs: prevTsUs };
    this.script.tsUs = line.tsUs;
    if (spec.write) this.script.lines.push({ line, spec, prevTsUs: this.script.startPrevTsUs });
  }

  /** Events whose replay holds an absolute expiry derived from a relative one that may be a few ms late. */
  readonly uncertainExpiry: WeakMap<FlashbackEvent, UncertainExpiry>;
  private lastLineTsUs = 0;

  private ownLine(line: MonitorLine): void {
    const { argv } = line;
    if (line.client === this.o.stateClient && argv[0]!.toString('latin1').toLowerCase() === 'eval') {
      this.emitStatePlaceholders(line);
      return;
    }
    if (argv.length === 2 && argv[1]!.equals(HEARTBEAT) && argv[0]!.toString('latin1').toLowerCase() === 'echo') {
      this.o.emit([this.ownEvent(line, EventKind.Heartbeat, 'ECHO')]);
      return;
    }
    if (
      argv.length !== 3 ||
      this.o.table.lookup(argv)?.name !== 'publish' ||
      argv[1]!.toString('latin1') !== this.o.markerChannel
    ) {
      this.o.onOwnLine?.(line);
      return;
    }
    const event = this.ownEvent(line, EventKind.Baseline, 'PUBLISH');
    this.o.emit([event]);
    this.o.onMarker?.(event);
  }

  /** One `state` event per key of a state probe (EVAL script n k1 … kn), at its line; the agent fills in the replay. */
  private emitStatePlaceholders(line: MonitorLine): void {
    const n = Number(line.argv[2]?.toString('latin1'));
    const settle = line.argv[1]?.equals(SETTLE_SCRIPT) === true;
    const events: FlashbackEvent[] = [];
    for (let i = 0; i < n; i++) {
      const key = line.argv[3 + i]!;
      events.push({
        node: this.o.node,
        epoch: this.o.epoch,
        seq: ++this.seq,
        tsUs: line.tsUs,
        db: line.db,
        client: 'agent',
        kind: EventKind.State,
        command: settle ? 'SETTLE' : 'STATE',
        keys: [key],
        args: [key],
        replay: [],
        tx: 0,
      });
    }
    if (events.length > 0) this.o.emit(events);
  }

  /** An event of the agent's own (marker, heartbeat): a position in the stream that replays as nothing. */
  private ownEvent(line: MonitorLine, kind: EventKind, command: string): FlashbackEvent {
    return {
      node: this.o.node,
      epoch: this.o.epoch,
      seq: ++this.seq,
      tsUs: line.tsUs,
      db: line.db,
      client: line.client,
      kind,
      command,
      keys: [],
      args: line.argv,
      replay: [],
      tx: 0,
    };
  }

  /**
   * The client's queued lines were not followed by its EXEC: it left MULTI in a
   * way MONITOR does not show (disconnect, then its ip:port reused). They ran as
   * plain commands.
   */
  private abandonMulti(client: string): void {
    const queued = this.multis.get(client) ?? [];
    this.multis.delete(client);
    this.execClient = undefined;
    for (const p of queued) this.emitGroup([p], p.line.tsUs, false);
  }

  private emitGroup(group: Pending[], tsUs: number, atomic: boolean): void {
    const first = this.seq + 1;
    const events: FlashbackEvent[] = new Array(group.length);
    for (let i = 0; i < group.length; i++) {
      const { line, spec } = group[i]!;
      const argv = line.argv;
      events[i] = {
        node: this.o.node,
        epoch: this.o.epoch,
        seq: ++this.seq,
        tsUs,
        db: line.db,
        client: line.client,
        kind: EventKind.Command,
        command: argv[0]!.toString('latin1').toUpperCase(),
        keys: this.o.table.keys(argv, spec),
        args: argv,
        // Each line's own time: a relative expiry counts from when that command ran.
        replay: normalizeArgv(argv, line.tsUs, spec),
        tx: atomic ? first : 0,
      };
      // MONITOR stamps a line just after its command ran; the command started after the previous line. When those
      // two instants lie in different milliseconds, the source's expiry may be up to that many ms earlier than
      // computed (1 ms on a normal server; more when the server itself was slow between the two lines).
      const p = group[i]!;
      const slackMs = Math.floor(line.tsUs / 1000) - Math.floor(p.prevTsUs / 1000);
      if (slackMs > 0) {
        const at = relativeExpiryIndex(spec, argv, events[i]!.replay);
        if (at >= 0) this.uncertainExpiry.set(events[i]!, { at, slackMs });
      }
    }
    this.o.emit(events);
  }
}
