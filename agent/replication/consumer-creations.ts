import { EventKind, REPLICATION_CLIENT, type FlashbackEvent } from '../../core/bus/event.js';
import type { IssuedWrite } from './attribution.js';

/**
 * `XGROUP CREATECONSUMER` where the group exists, nothing otherwise (a read refused with NOGROUP, a group destroyed
 * since): a replay never fails on it. An existing consumer is left as it is.
 */
export const CREATE_CONSUMER_SCRIPT =
  "local r = redis.pcall('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[2]) " +
  "if type(r) == 'table' and r.err then return 0 end return r";

const EVAL = Buffer.from('EVAL');
const SCRIPT = Buffer.from(CREATE_CONSUMER_SCRIPT);
const ONE = Buffer.from('1');

/** Stream entries that leave a stream's consumers as they are: others on its key make it forget them. */
const KEEPS = new Set([
  'XADD',
  'XREADGROUP',
  'XCLAIM',
  'XACK',
  'XTRIM',
  'XDEL',
  'XSETID',
  'XAUTOCLAIM',
  'PEXPIREAT',
  'PERSIST',
]);

/** A consumer of a stream's group. */
export interface FoundConsumer {
  db: number;
  key: Buffer;
  group: Buffer;
  consumer: Buffer;
}

/** An event to splice into an output: at `at` of the original array, with its time and the write it came from. */
export interface Insert {
  at: number;
  event: FlashbackEvent;
  tsUs?: number;
  write?: number;
}

const XGROUP = Buffer.from('XGROUP');
const CREATECONSUMER = Buffer.from('CREATECONSUMER');

/** Known consumers kept at most; past it the set starts over (an event too many, never one too few). */
const MAX_KNOWN = 100_000;

/**
 * Redis 7.2+ and Valkey do not replicate the consumer a group read (`XREADGROUP`) creates when it delivers nothing (a
 * blocked read, a read at the end of the stream), nor one an `XCLAIM`/`XAUTOCLAIM` of nothing creates: a replica, and
 * a replay of the stream, lacks it. MONITOR shows the command: attribution adds one event per stream and consumer it
 * named, replayed as {@link CREATE_CONSUMER_SCRIPT}, where the command ran among the interval's entries (the consumer
 * watch adds those it finds, consumer-watch.ts). Consumers already added are remembered until an entry that could
 * remove them, so a polling consumer costs one event, not one per poll.
 */
export class ConsumerCreations {
  /** Events added since the agent started. */
  added = 0;
  /** Consumers added, by db and key: `db\0key` → `group\0consumer`. */
  private readonly known = new Map<string, Set<string>>();
  private size = 0;

  clear(): void {
    this.known.clear();
    this.size = 0;
  }

  /**
   * The consumers `writes`' commands created without an entry, as events to insert into `events` where each command
   * ran (`eventOf[j]`: the index of the last event write j was given to); `write` is the command's index. Splice them
   * in with {@link splice}.
   */
  plan(events: FlashbackEvent[], writes: readonly IssuedWrite[], eventOf: readonly (number | undefined)[]): Insert[] {
    const touched = this.forget(
      events,
      writes.some((w) => CREATES_CONSUMER.has(w.name)),
    );
    const inserts: Insert[] = [];
    for (let j = 0; j < writes.length; j++) {
      const w = writes[j]!;
      const read = consumerNamed(w.name, w.argv);
      if (!read) continue;
      for (const key of read.keys) {
        if (!this.take(w.db, key, read.group, read.consumer, touched)) continue;
        const own = eventOf[j];
        const at = own !== undefined ? own + 1 : writePosition(events, eventOf, j);
        const event = this.event(events, at, { db: w.db, key, group: read.group, consumer: read.consumer });
        event.client = w.client;
        event.command = w.name;
        event.args = w.argv;
        event.tsUs = w.tsUs;
        inserts.push({ at, event, tsUs: w.tsUs, write: j });
      }
    }
    return inserts;
  }

  /** {@link plan}, spliced in: returns how many events it added. */
  insert(
    events: FlashbackEvent[],
    writes: readonly IssuedWrite[],
    eventOf: readonly (number | undefined)[],
    times: (number | undefined)[],
  ): number {
    return this.splice(events, this.plan(events, writes, eventOf), times);
  }

  /**
   * Inserts consumers found on the source after a keyspace notification (ConsumerWatch, attribution off) into the
   * output of the anchor interval the notification came in: right after the output's last entry on that stream (its
   * group may have been made there), else first (never ahead of the epoch's marker). All carry the anchor's time, as
   * everything in the output does. Renumbers like {@link insert}.
   */
  insertInInterval(events: FlashbackEvent[], found: readonly FoundConsumer[]): number {
    const touched = this.forget(events, found.length > 0);
    const inserts: Insert[] = [];
    const once = new Set<string>();
    for (const c of found) {
      const id = `${c.db}\0${c.key.toString('latin1')}\0${c.group.toString('latin1')}\0${c.consumer.toString('latin1')}`;
      if (once.has(id)) continue;
      once.add(id);
      if (!this.take(c.db, c.key, c.group, c.consumer, touched)) continue;
      let at = events[0]?.kind === EventKind.Baseline ? 1 : 0;
      for (let i = events.length - 1; i >= at; i--) {
        const e = events[i]!;
        if (e.kind === EventKind.Command && e.db === c.db && e.keys.some((k) => k.equals(c.key))) {
          at = i + 1;
          break;
        }
      }
      const event = this.event(events, at, c);
      event.command = 'XGROUP';
      event.args = [XGROUP, CREATECONSUMER, c.key, c.group, c.consumer];
      event.tsUs = events[events.length - 1]!.tsUs;
      inserts.push({ at, event });
    }
    // splice() wants positions in order.
    inserts.sort((a, b) => a.at - b.at);
    return this.splice(events, inserts);
  }

  /**
   * Forgets the consumers of keys an entry of this output may have removed them from (before or after a read). Every
   * output goes through it: insert() and insertBeforeAnchor() call it, the stages call it for outputs they pass on.
   */
  forget(events: readonly FlashbackEvent[], wantTouched = false): Set<string> {
    const touched = new Set<string>();
    // Nothing known and no consumer to add here: nothing to do (no string per event on the hot path of a source
    // whose clients create no consumers).
    if (this.size === 0 && !wantTouched) return touched;
    for (const e of events) {
      if (e.kind !== EventKind.Command || KEEPS.has(e.command)) continue;
      if (e.keys.length === 0) this.clear(); // FLUSHALL, FLUSHDB, SWAPDB: any key
      for (const k of e.keys) touched.add(`${e.db}\0${k.toString('latin1')}`);
    }
    for (const k of touched) {
      this.size -= this.known.get(k)?.size ?? 0;
      this.known.delete(k);
    }
    if (this.size > MAX_KNOWN) this.clear();
    return touched;
  }

  /** Whether this consumer must be added; remembered unless an entry of the output touched its key. */
  private take(db: number, key: Buffer, group: Buffer, consumer: Buffer, touched: ReadonlySet<string>): boolean {
    const where = `${db}\0${key.toString('latin1')}`;
    const who = `${group.toString('latin1')}\0${consumer.toString('latin1')}`;
    let seen = this.known.get(where);
    if (seen?.has(who)) return false;
    if (!touched.has(where)) {
      if (!seen) this.known.set(where, (seen = new Set()));
      seen.add(who);
      this.size++;
    }
    return true;
  }

  /**
   * Splices `inserts` in (positions in the original array, in order), renumbers the output's seqs (its first seq
   * stays) and tx ids; `times` (index for index with `events`) takes their times. Returns how many.
   */
  splice(events: FlashbackEvent[], inserts: readonly Insert[], times?: (number | undefined)[]): number {
    if (inserts.length === 0) return 0;
    const first = events[0]!.seq;
    // Back to front, so earlier positions stay valid; equal positions keep their order.
    for (let i = inserts.length - 1; i >= 0; i--) {
      const { at, event, tsUs } = inserts[i]!;
      events.splice(at, 0, event);
      times?.splice(at, 0, tsUs);
    }
    const moved = new Map<number, number>();
    events.forEach((e, i) => {
      if (e.seq !== 0) moved.set(e.seq, first + i);
      e.seq = first + i;
    });
    for (const e of events) if (e.tx > 0) e.tx = moved.get(e.tx) ?? e.tx;
    this.added += inserts.length;
    return inserts.length;
  }

  private event(events: readonly FlashbackEvent[], at: number, c: FoundConsumer): FlashbackEvent {
    const tx = txAt(events, at);
    const model = events[0]!;
    return {
      node: model.node,
      epoch: model.epoch,
      seq: 0,
      tsUs: 0,
      db: c.db,
      client: REPLICATION_CLIENT,
      kind: EventKind.Command,
      command: 'XGROUP',
      keys: [c.key],
      args: [],
      replay: [EVAL, SCRIPT, ONE, c.key, c.group, c.consumer],
      tx,
    };
  }
}

/**
 * Events were added to the first of `outputs` (queued, in seq order): the seqs and tx ids of the ones behind it move
 * up by `n` (the caller then moves the assembler's next seq).
 */
export function shiftBehind(outputs: readonly { events: FlashbackEvent[] }[], n: number): void {
  for (let i = 1; i < outputs.length; i++)
    for (const e of outputs[i]!.events) {
      e.seq += n;
      if (e.tx > 0) e.tx += n;
    }
}

/** The tx of an event inserted at `at`: between two entries of one MULTI … EXEC block, it ran inside it. */
export function txAt(events: readonly FlashbackEvent[], at: number): number {
  const before = events[at - 1];
  const after = events[at];
  return before && after && before.tx > 0 && before.tx === after.tx ? before.tx : 0;
}

/**
 * Where write j ran among the events: after the event of the last write before it that left one; else before the
 * event of the first write after it; else before the anchor. Never ahead of the epoch's marker.
 */
export function writePosition(
  events: readonly FlashbackEvent[],
  eventOf: readonly (number | undefined)[],
  j: number,
): number {
  let at: number | undefined;
  for (let k = j - 1; k >= 0 && at === undefined; k--) if (eventOf[k] !== undefined) at = eventOf[k]! + 1;
  for (let k = j + 1; k < eventOf.length && at === undefined; k++) if (eventOf[k] !== undefined) at = eventOf[k]!;
  if (at === undefined) {
    at = events.length;
    if (events[at - 1]?.kind === EventKind.Heartbeat) at--;
  }
  if (at === 0 && events[0]?.kind === EventKind.Baseline) at = 1;
  return at;
}

/** Commands that create their consumer whether or not they deliver or claim anything (Redis 7.2+, Valkey). */
export const CREATES_CONSUMER = new Set(['XREADGROUP', 'XCLAIM', 'XAUTOCLAIM']);

/**
 * The group, consumer and stream keys of a command that creates its consumer: a group read, or `XCLAIM`/`XAUTOCLAIM
 * key group consumer …` (checked on Redis 8.0.2 and Valkey 8.0.1: a claim of nothing creates it too, and a replica
 * never gets it).
 */
export function consumerNamed(
  name: string,
  argv: readonly Buffer[],
): { group: Buffer; consumer: Buffer; keys: Buffer[] } | undefined {
  if (name === 'XREADGROUP') return parseGroupRead(argv);
  if ((name === 'XCLAIM' || name === 'XAUTOCLAIM') && argv.length >= 4)
    return { group: argv[2]!, consumer: argv[3]!, keys: [argv[1]!] };
  return undefined;
}

/** `XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS k… id…` → its group, consumer and stream keys. */
export function parseGroupRead(
  argv: readonly Buffer[],
): { group: Buffer; consumer: Buffer; keys: Buffer[] } | undefined {
  let group: Buffer | undefined;
  let consumer: Buffer | undefined;
  for (let i = 1; i < argv.length; i++) {
    const opt = argv[i]!.toString('latin1').toUpperCase();
    if (opt === 'GROUP' && i + 2 < argv.length) {
      group = argv[i + 1];
      consumer = argv[i + 2];
      i += 2;
    } else if (opt === 'COUNT' || opt === 'BLOCK') i++;
    else if (opt === 'STREAMS') {
      const rest = argv.slice(i + 1);
      if (!group || !consumer || rest.length === 0 || rest.length % 2 !== 0) return undefined;
      return { group, consumer, keys: rest.slice(0, rest.length / 2) };
    } else if (opt !== 'NOACK') return undefined;
  }
  return undefined;
}
