import { ANCHOR_CHANNEL } from '../../core/bus/baseline.js';
import { EventKind, REPLICATION_CLIENT, type FlashbackEvent } from '../../core/bus/event.js';
import { commandName, type CommandTable } from '../../core/redis/command-table.js';
import type { MonitorLine } from '../../core/redis/monitor-line.js';
import {
  ConsumerCreations,
  CREATES_CONSUMER,
  parseGroupRead,
  shiftBehind,
  txAt,
  writePosition,
} from './consumer-creations.js';

/** A write MONITOR showed between two anchors: who issued it, when, and its argv as issued. */
export interface IssuedWrite {
  tsUs: number;
  db: number;
  client: string;
  argv: Buffer[];
  name: string;
  firstKey: Buffer | undefined;
  /** A group read's group and consumer, once asked (null: not a well-formed one). */
  read?: { group: Buffer; consumer: Buffer; keys: Buffer[] } | null;
}

/** One output of the stream assembler, waiting for the MONITOR lines of its anchor interval. */
interface Pending {
  events: FlashbackEvent[];
  release: () => void;
  anchor: string | undefined;
  since: number;
}

/**
 * What a stream entry may stand for besides itself: the master rewrites relative expiries, SPOP, INCRBYFLOAT, blocked
 * and multi-key pops, group reads (docs/research/replication-stream-7.0.md §4). An entry is matched to a MONITOR write
 * with its argv, else to one of these names on the same first key.
 */
const ISSUED_AS: Record<string, readonly string[]> = {
  SET: ['SET', 'SETEX', 'PSETEX', 'GETSET', 'SETNX', 'INCRBYFLOAT', 'GETEX'],
  PEXPIREAT: ['EXPIRE', 'PEXPIRE', 'EXPIREAT', 'PEXPIREAT', 'GETEX', 'SET', 'RESTORE'],
  DEL: [
    'DEL',
    'UNLINK',
    'GETDEL',
    'SPOP',
    'EXPIRE',
    'PEXPIRE',
    'EXPIREAT',
    'PEXPIREAT',
    'GETEX',
    'SET',
    'SETEX',
    'PSETEX',
  ],
  SREM: ['SPOP'],
  XADD: ['XADD'],
  XCLAIM: ['XREADGROUP', 'XCLAIM', 'XAUTOCLAIM'],
  XGROUP: ['XREADGROUP', 'XGROUP'],
  XTRIM: ['XADD', 'XTRIM'],
  LPOP: ['BLPOP', 'LMPOP', 'BLMPOP'],
  RPOP: ['BRPOP', 'LMPOP', 'BLMPOP'],
  LMOVE: ['BLMOVE', 'RPOPLPUSH', 'BRPOPLPUSH'],
  ZPOPMIN: ['BZPOPMIN', 'ZMPOP', 'BZMPOP'],
  ZPOPMAX: ['BZPOPMAX', 'ZMPOP', 'BZMPOP'],
  PERSIST: ['GETEX'],
};

const ANCHOR = Buffer.from(ANCHOR_CHANNEL);

/** Scripts whose `[db lua]` lines belong to the client that issued them (command table names). */
const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

/**
 * Attribution (`--attribution monitor`): MONITOR runs beside the replication stream, and each stream entry gets the
 * client, µs time and argv of the write that caused it (`args` as issued, `replay` from the stream). The agent's
 * time anchors show in both (the stream's PUBLISH is MONITOR's `[db lua] "PUBLISH"` line), so the two are compared
 * one anchor interval at a time, in execution order. Matching is conservative: an entry takes a write only when
 * their argv are equal, or the write is one the master rewrites into that entry (ISSUED_AS) on the same key; an
 * entry left unmatched (an expiry, an eviction, a pop served later) keeps the replication client and takes the time
 * of the next matched entry, still an upper bound, so a time cutoff never falls where it is unknown.
 */
export class Attribution {
  /** Stream entries given a MONITOR write, and left unmatched. */
  attributed = 0;
  unattributed = 0;
  /** Outputs released without MONITOR lines (MONITOR late or gone). */
  timedOut = 0;
  /** Audit rows stored: writes that left no entry. */
  audited = 0;
  private current: IssuedWrite[] = [];
  private readonly intervals = new Map<string, IssuedWrite[]>();
  private readonly queue: Pending[] = [];
  private scriptClient = '';
  private live = false;
  private readonly consumers = new ConsumerCreations();
  /** Time of the last event released: no event after it is timed earlier. */
  private floorUs = 0;

  constructor(
    private readonly o: {
      table: CommandTable;
      /** Addresses of the agent's own connections: their lines are no one's writes. */
      ownClients: () => ReadonlySet<string>;
      /** How long an output waits for its MONITOR lines, ms. @default 1_000 */
      waitMs?: number;
      /**
       * Events were added to an output (consumers a group read created, below): the seqs after them moved up by `n`,
       * and the assembler's next seq must too.
       */
      onSeqsAdded?: (n: number) => void;
      /** Store the writes that left no entry as audit rows (`--audit-noops`). @default false */
      audit?: boolean;
      /**
       * The source creates consumers for reads and claims that deliver nothing, and does not replicate them (Redis
       * 7.2+, Valkey; consumer-watch.ts createsConsumersSilently): add them. Redis 7.0 creates none. @default false
       */
      consumerCreations?: boolean;
    },
  ) {}

  /** Events added for consumers group reads created without an entry. */
  get consumersAdded(): number {
    return this.consumers.added;
  }

  /** Outputs waiting for their MONITOR lines. */
  get waiting(): number {
    return this.queue.length;
  }

  /** MONITOR is connected: lines before this are gone, so the interval open now is not whole. */
  start(): void {
    this.live = true;
    this.current = [];
    this.intervals.clear();
    this.consumers.clear();
  }

  /** MONITOR is gone: nothing more will come; what waits is released as it is. */
  stop(): void {
    this.live = false;
    this.current = [];
    this.intervals.clear();
    this.drain(true);
  }

  /** One MONITOR line. */
  onLine(line: MonitorLine): void {
    const { argv } = line;
    // The table's own names: no string per line (this runs for every command the source executes).
    const spec = this.o.table.lookup(argv);
    if (line.client === 'lua') {
      if (spec?.name === 'publish' && argv.length === 3 && argv[1]!.equals(ANCHOR)) {
        this.intervals.set(argv[2]!.toString('latin1'), this.current);
        // MONITOR ahead of a stream that stopped: keep a bounded past.
        if (this.intervals.size > 10_000) this.intervals.delete(this.intervals.keys().next().value!);
        this.current = [];
        this.drain(false);
        return;
      }
    } else if (spec && SCRIPT_COMMANDS.has(spec.name)) {
      this.scriptClient = line.client;
      return;
    }
    if (!spec?.write || this.o.ownClients().has(line.client)) return;
    this.current.push({
      tsUs: line.tsUs,
      db: line.db,
      client: line.client === 'lua' ? this.scriptClient || 'lua' : line.client,
      argv,
      name: commandName(spec),
      firstKey: this.o.table.keys(argv, spec)[0],
    });
  }

  /**
   * An output of the assembler (events ending with their anchor, or none): `release` runs once its events are
   * attributed, in the order outputs came.
   */
  submit(events: FlashbackEvent[], release: () => void): void {
    const last = events[events.length - 1];
    const anchor =
      last?.kind === EventKind.Heartbeat && last.args.length === 3 ? last.args[2]!.toString('latin1') : undefined;
    // An anchor without entries waits too: its interval may hold a group read that created a consumer and no entry.
    const needs = this.live && anchor !== undefined;
    this.queue.push({ events, release, anchor: needs ? anchor : undefined, since: Date.now() });
    this.drain(false);
  }

  /** Releases everything that waits, as it is (an epoch ends: its publisher closes next). */
  releaseAll(): void {
    this.drain(true);
  }

  /** Releases outputs whose time has passed (MONITOR behind or silent); the agent calls it on a timer. */
  tick(): void {
    this.drain(false);
  }

  private drain(all: boolean): void {
    const waitMs = this.o.waitMs ?? 1_000;
    while (this.queue.length > 0) {
      const p = this.queue[0]!;
      let matched = false;
      if (p.anchor !== undefined && !all) {
        const writes = this.intervals.get(p.anchor);
        if (!writes) {
          if (Date.now() - p.since < waitMs) return;
          this.timedOut++;
        } else {
          // Intervals before this one no output asked for (an idle anchor not stored, one the stream did not take as
          // one) go with it: their group reads come along (they left no entry, so nothing else can match them).
          const carried: IssuedWrite[] = [];
          for (const [k, w] of this.intervals) {
            this.intervals.delete(k);
            if (k === p.anchor) break;
            for (const x of w) if (this.o.audit || CREATES_CONSUMER.has(x.name)) carried.push(x);
          }
          matched = true;
          const added = this.match(p.events, carried.length > 0 ? [...carried, ...writes] : writes);
          if (added > 0) {
            // The seqs of what waits behind it, and the assembler's next one, move up with them.
            shiftBehind(this.queue, added);
            this.o.onSeqsAdded?.(added);
          }
        }
      }
      this.queue.shift();
      // Matched outputs went through the consumer creations already; the others may still remove consumers.
      if (!matched) this.consumers.forget(p.events);
      const lastEvent = p.events[p.events.length - 1];
      if (lastEvent) this.floorUs = Math.max(this.floorUs, lastEvent.tsUs);
      p.release();
    }
  }

  /**
   * Gives the interval's entries their writes, then times: a tx its commit time, unmatched ones the next time. Adds
   * the consumers group reads created without an entry (ConsumerCreations); returns how many events it added.
   */
  private match(events: FlashbackEvent[], writes: IssuedWrite[]): number {
    let next = 0;
    let last: { w: IssuedWrite; tx: number } | undefined;
    /** Index of the last event each write was given to. */
    const eventOf = new Array<number | undefined>(writes.length);
    const times = new Array<number | undefined>(events.length);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      if (e.client !== REPLICATION_CLIENT || e.kind !== EventKind.Command) continue;
      // Equal argv may skip writes that left no entry (no-ops, refusals). A rewritten entry must be the very next
      // write: skipping to an earlier write on the same key could give it a time before it ran (an expiry's DEL
      // taking the time of the SET … PX that set the TTL).
      let found = -1;
      // A group read's entries come in one block (XCLAIM per entry delivered, then XGROUP SETID on 7.2+): the rest of
      // the block is the same read's, not the next read on that key (which may have delivered nothing).
      const sameRead = last?.w.name === 'XREADGROUP' && e.tx > 0 && e.tx === last.tx && rewritten(last.w, e);
      if (sameRead) found = -2;
      for (let j = next; j < writes.length && found === -1; j++) if (sameArgv(writes[j]!, e)) found = j;
      // Found by equal argv: what was issued is what the stream carries (no second comparison below).
      const issuedAsIs = found >= 0;
      if (found === -1 && next < writes.length && rewritten(writes[next]!, e)) found = next;
      let w: IssuedWrite | undefined;
      if (found >= 0) {
        w = writes[found]!;
        next = found + 1;
        eventOf[found] = i;
      } else if (sameRead || (last && e.tx > 0 && e.tx === last.tx && rewritten(last.w, e))) {
        w = last!.w; // SPOP 3: one block
        eventOf[next - 1] = i;
      }
      if (!w) {
        this.unattributed++;
        last = undefined;
        continue;
      }
      last = { w, tx: e.tx };
      this.attributed++;
      times[i] = w.tsUs;
      e.client = w.client;
      e.command = w.name;
      if (!issuedAsIs && !sameArgs(w.argv, e.replay)) e.args = w.argv;
    }
    const inserts = this.o.consumerCreations ? this.consumers.plan(events, writes, eventOf) : [];
    if (this.o.audit) {
      const planned = new Set(inserts.map((x) => x.write));
      for (let j = 0; j < writes.length; j++)
        if (eventOf[j] === undefined && !planned.has(j)) {
          const at = writePosition(events, eventOf, j);
          inserts.push({ at, tsUs: writes[j]!.tsUs, write: j, event: auditEvent(events, at, writes[j]!) });
          this.audited++;
        }
      inserts.sort((a, b) => a.at - b.at || a.write! - b.write!);
    }
    const added = this.consumers.splice(events, inserts, times);
    // A transaction commits at its last write; an unmatched entry ran by the next matched one, or by the anchor.
    const txTime = new Map<number, number>();
    events.forEach((e, i) => {
      if (e.tx > 0 && times[i] !== undefined) txTime.set(e.tx, Math.max(txTime.get(e.tx) ?? 0, times[i]!));
    });
    let upper = events[events.length - 1]!.tsUs;
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i]!;
      const t = e.tx > 0 && txTime.has(e.tx) ? txTime.get(e.tx)! : times[i];
      if (e.kind === EventKind.Heartbeat) continue;
      // Never before the previous output's last time: a carried group read may be older than that output's anchor.
      e.tsUs = Math.max(this.floorUs, Math.min(upper, t ?? upper));
      upper = e.tsUs;
    }
    return added;
  }
}

/** A write that left no entry, as an audit row: who, when, what; nothing to replay. */
function auditEvent(events: readonly FlashbackEvent[], at: number, w: IssuedWrite): FlashbackEvent {
  const model = events[0]!;
  return {
    node: model.node,
    epoch: model.epoch,
    seq: 0,
    tsUs: w.tsUs,
    db: w.db,
    client: w.client,
    kind: EventKind.Audit,
    command: w.name,
    keys: w.firstKey ? [w.firstKey] : [],
    args: w.argv,
    replay: [],
    tx: txAt(events, at),
  };
}

function sameArgs(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!sameBytes(a[i]!, b[i]!)) return false;
  return true;
}

/** Buffer.equals, with short values compared here: a native call costs more than a few bytes do (every write). */
function sameBytes(a: Buffer, b: Buffer): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  if (n > 32) return a.equals(b);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameArgv(w: IssuedWrite, e: FlashbackEvent): boolean {
  return w.db === e.db && sameArgs(w.argv, e.args);
}

function rewritten(w: IssuedWrite, e: FlashbackEvent): boolean {
  if (w.db !== e.db || !ISSUED_AS[e.command]?.includes(w.name)) return false;
  const k = e.keys[0];
  if (k === undefined || w.firstKey === undefined || !k.equals(w.firstKey)) return false;
  return w.name !== 'XREADGROUP' || sameReader(w, e);
}

/**
 * A group read's entries name its group (`XCLAIM key group consumer …`, `XGROUP SETID key group …`) and, for XCLAIM,
 * its consumer: an entry of another read on the key (a blocked read served now) is not this read's, which may have
 * delivered nothing and created its consumer (ConsumerCreations).
 */
function sameReader(w: IssuedWrite, e: FlashbackEvent): boolean {
  const read = (w.read ??= parseGroupRead(w.argv) ?? null);
  if (!read) return false;
  if (!e.args[2]?.equals(read.group)) return false;
  return e.command !== 'XCLAIM' || e.args[3]?.equals(read.consumer) === true;
}
