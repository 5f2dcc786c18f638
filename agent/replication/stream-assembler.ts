import { ANCHOR_CHANNEL, MARKER_CHANNEL } from '../../core/bus/baseline.js';
import { ANCHOR_COMMAND, EventKind, REPLICATION_CLIENT, type FlashbackEvent } from '../../core/bus/event.js';
import { ProtocolError } from '../../core/errors.js';
import { commandName, type CommandSpec, type CommandTable } from '../../core/redis/command-table.js';
import { groupReadReplay } from './group-read-replay.js';

/** Options of a {@link StreamAssembler}. */
export interface StreamAssemblerOptions {
  node: string;
  epoch: number;
  table: CommandTable;
  /** Last seq already published in this epoch (0 for a new one). */
  lastSeq: number;
  /** Time of the last anchor already published (µs), so times never go back across a resume. */
  lastAnchorUs?: number;
  /** Database the stream has selected where it starts (a continued stream does not repeat its SELECT). @default 0 */
  db?: number;
  /** Stores an idle anchor as a heartbeat event when the previous stored one is this old, µs. @default 1_000_000 */
  heartbeatIntervalUs?: number;
  /**
   * Whole runs of events (each ending with its anchor), the master offset the stream is at after them, and the db it
   * has selected there.
   */
  emit: (events: FlashbackEvent[], endOffset: number, db: number) => void;
  /** Stream entries wait for a time anchor: ask for one. */
  wantAnchor: () => void;
  /** The server's clock now, µs (agent clock less the measured skew). */
  serverNowUs: () => number;
}

const MARKER = Buffer.from(MARKER_CHANNEL);
const ANCHOR = Buffer.from(ANCHOR_CHANNEL);

/**
 * Turns replication-stream entries into events, in stream order. The stream carries effects, already normalized by
 * the master (absolute expiries, SREM for SPOP, ids for `XADD *`, DEL for expiries and evictions, a script's writes
 * in MULTI … EXEC), but no time: entries wait here until the agent's next time anchor (a PUBLISH of the server's
 * TIME on ANCHOR_CHANNEL, agent/replication/anchors.ts) and get its time, an upper bound of theirs. The anchor is
 * stored after them as an ANCHOR heartbeat event, their lower bound: a time cutoff resolves to an anchor, so it never
 * splits entries it cannot place.
 */
export class StreamAssembler {
  lastSeq: number;
  /** Stream entries read (all kinds). */
  entries = 0;
  /** Messages on the anchor channel that were no anchor (not a time, or a time in the future). */
  forgedAnchors = 0;
  private db = 0;
  private held: FlashbackEvent[] = [];
  /** For each held event, the index in `held` of the first event of its MULTI … EXEC block, or -1 (no object each). */
  private heldTx: number[] = [];
  /** Index in `held` of the open MULTI's first event, or -1 outside one; undefined when no MULTI is open. */
  private txOpen: number | undefined;
  private heldOffset = -1;
  private lastAnchorUs: number;
  private lastStoredAnchorUs = 0;
  private readonly heartbeatIntervalUs: number;

  constructor(private readonly o: StreamAssemblerOptions) {
    this.lastSeq = o.lastSeq;
    this.db = o.db ?? 0;
    this.lastAnchorUs = o.lastAnchorUs ?? 0;
    this.heartbeatIntervalUs = o.heartbeatIntervalUs ?? 1_000_000;
  }

  /** Events waiting for an anchor. */
  get heldEvents(): number {
    return this.held.length;
  }

  /** A full resync's RDB starts the epoch: its marker is the first event, timed by the first anchor. */
  startWithMarker(markerId: string): void {
    const payload = Buffer.from(JSON.stringify({ markerId, node: this.o.node, epoch: this.o.epoch }));
    this.hold(this.ownEvent(EventKind.Baseline, 'PUBLISH', [Buffer.from('PUBLISH'), MARKER, payload]));
    this.o.wantAnchor();
  }

  /** One stream entry and the master offset after it. */
  push(argv: Buffer[], endOffset: number): void {
    this.entries++;
    // The table's own name (no string per entry: this runs for every write of the source).
    const spec = this.o.table.lookup(argv);
    const name = spec ? spec.name : argv[0]!.toString('latin1').toLowerCase();
    switch (name) {
      case 'ping':
      case 'replconf':
        break;
      case 'select':
        this.db = parseDb(argv);
        break;
      case 'multi':
        this.txOpen = -1;
        break;
      case 'exec':
        this.txOpen = undefined;
        break;
      case 'publish':
        if (argv.length === 3 && argv[1]!.equals(ANCHOR) && this.txOpen === undefined) {
          const t = parseAnchor(argv[2]!);
          // Anyone allowed to PUBLISH could send one: a time that is no time, or later than the server's clock now,
          // is no anchor of ours (ACL: only the agent's user should reach the channel, docs/security.md).
          if (t !== undefined && t <= this.o.serverNowUs() + 5_000_000) {
            this.heldOffset = endOffset;
            this.anchor(t, argv);
            return;
          }
          this.forgedAnchors++;
        }
        if (argv.length === 3 && argv[1]!.equals(MARKER)) this.hold(this.ownEvent(EventKind.Baseline, 'PUBLISH', argv));
        // Other messages change no data.
        break;
      default:
        this.hold(this.commandEvent(argv, spec));
    }
    this.heldOffset = endOffset;
    if (this.held.length === 0) {
      // Nothing waits for a time: the position is kept as soon as what came before is.
      if (this.txOpen === undefined) this.o.emit([], endOffset, this.db);
    } else {
      // Asked on every entry that leaves something waiting, not only the first: under load the next anchor then runs
      // right after the one in flight (about a millisecond later), not once this reader has caught up with the stream
      // (its lag), which is what bounds an entry's time. Cheap: the request is one atomic load when already asked.
      this.o.wantAnchor();
    }
  }

  /**
   * The epoch ends (the link cannot continue): what waits for an anchor gets `tsUs`, the server's time now, which is
   * later than all of it; no anchor event follows, since nothing proves the history complete up to then.
   */
  closeWith(tsUs: number, endOffset: number): void {
    // Half a MULTI block never ran as far as the history is concerned: the epoch ends before it.
    if (this.txOpen !== undefined) {
      if (this.txOpen >= 0) {
        this.held.length = this.txOpen;
        this.heldTx.length = this.txOpen;
      }
      this.txOpen = undefined;
    }
    if (this.held.length === 0) return;
    const events = this.time(Math.max(tsUs, this.lastAnchorUs));
    this.o.emit(events, endOffset, this.db);
  }

  private hold(event: FlashbackEvent): void {
    let txStart = -1;
    if (this.txOpen !== undefined) {
      if (this.txOpen === -1) this.txOpen = this.held.length;
      txStart = this.txOpen;
    }
    this.held.push(event);
    this.heldTx.push(txStart);
  }

  /** An anchor: everything held happened before `tsUs`; it gets seqs and that time, the anchor follows. */
  private anchor(tsUs: number, argv: Buffer[]): void {
    const t = Math.max(tsUs, this.lastAnchorUs);
    this.lastAnchorUs = t;
    const out = this.time(t);
    const hadEvents = out.length > 0;
    if (hadEvents || t - this.lastStoredAnchorUs >= this.heartbeatIntervalUs) {
      const a = this.ownEvent(EventKind.Heartbeat, ANCHOR_COMMAND, argv);
      a.seq = ++this.lastSeq;
      a.tsUs = t;
      out.push(a);
      this.lastStoredAnchorUs = t;
    }
    this.o.emit(out, this.heldOffset, this.db);
  }

  /** Gives the held events their seqs (tx = the first seq of their MULTI block) and time `t`; empties `held`. */
  private time(t: number): FlashbackEvent[] {
    const out = this.held;
    const txs = this.heldTx;
    for (let i = 0; i < out.length; i++) {
      const event = out[i]!;
      event.seq = ++this.lastSeq;
      event.tsUs = t;
      const txStart = txs[i]!;
      // A block's first event is earlier in `out` and already has its seq.
      if (txStart >= 0) event.tx = txStart === i ? event.seq : out[txStart]!.seq;
    }
    this.held = [];
    this.heldTx = [];
    return out;
  }

  private commandEvent(argv: Buffer[], spec: CommandSpec | undefined): FlashbackEvent {
    return {
      node: this.o.node,
      epoch: this.o.epoch,
      seq: 0,
      tsUs: 0,
      db: this.db,
      client: REPLICATION_CLIENT,
      kind: EventKind.Command,
      command: spec ? commandName(spec) : argv[0]!.toString('latin1').toUpperCase(),
      keys: spec ? this.o.table.keys(argv, spec) : [],
      args: argv,
      replay: groupReadReplay(argv),
      tx: 0,
    };
  }

  private ownEvent(kind: EventKind, command: string, argv: Buffer[]): FlashbackEvent {
    return {
      node: this.o.node,
      epoch: this.o.epoch,
      seq: 0,
      tsUs: 0,
      db: this.db,
      client: 'agent',
      kind,
      command,
      keys: [],
      args: argv,
      replay: [],
      tx: 0,
    };
  }
}

function parseDb(argv: Buffer[]): number {
  const n = Number(argv[1]?.toString('latin1'));
  if (!Number.isSafeInteger(n) || n < 0)
    throw new ProtocolError(`the replication stream selected database "${argv[1]?.toString('latin1')}"`);
  return n;
}

/** `sec.usec` (usec zero-padded to 6 digits) → µs; undefined when it is not that. */
export function parseAnchor(payload: Buffer): number | undefined {
  const m = /^(\d{1,12})\.(\d{6})$/.exec(payload.toString('latin1', 0, 24));
  return m ? Number(m[1]) * 1_000_000 + Number(m[2]) : undefined;
}
