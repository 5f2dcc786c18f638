import { EventKind, type FlashbackEvent } from '../../core/bus/event.js';
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

/** Known consumers kept at most; past it the set starts over (an event too many, never one too few). */
const MAX_KNOWN = 100_000;

/**
 * Redis 7.2+ and Valkey do not replicate the consumer a group read (`XREADGROUP`) creates when it delivers nothing
 * (a blocked read, a read at the end of the stream): a replica, and a replay of the stream, lacks it. MONITOR shows
 * the read: attribution adds one event per stream and consumer such a read named, replayed as
 * {@link CREATE_CONSUMER_SCRIPT}, where the read ran among the interval's entries. Consumers already added are
 * remembered until an entry that could remove them, so a polling consumer costs one event, not one per poll.
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
   * Inserts the consumers `writes`' group reads created without an entry into `events` (and their times into
   * `times`, index for index); `eventOf[j]` is the index of the last event write j was given to. Renumbers the
   * output's seqs (its first seq stays) and returns how many events it added.
   */
  insert(
    events: FlashbackEvent[],
    writes: readonly IssuedWrite[],
    eventOf: readonly (number | undefined)[],
    times: (number | undefined)[],
  ): number {
    // Keys an entry of this output may have taken consumers from (anywhere in it: before or after the read).
    const touched = new Set<string>();
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
    const inserts: { at: number; event: FlashbackEvent; tsUs: number }[] = [];
    for (let j = 0; j < writes.length; j++) {
      const w = writes[j]!;
      if (w.name !== 'XREADGROUP' || eventOf[j] !== undefined) continue;
      const read = parseGroupRead(w.argv);
      if (!read) continue;
      const who = `${read.group.toString('latin1')}\0${read.consumer.toString('latin1')}`;
      for (const key of read.keys) {
        const where = `${w.db}\0${key.toString('latin1')}`;
        let seen = this.known.get(where);
        if (seen?.has(who)) continue;
        if (!touched.has(where)) {
          if (!seen) this.known.set(where, (seen = new Set()));
          seen.add(who);
          this.size++;
        }
        const at = this.position(events, eventOf, j);
        inserts.push({ at, tsUs: w.tsUs, event: this.event(events, at, w, key, read.group, read.consumer) });
      }
    }
    if (inserts.length === 0) return 0;
    const first = events[0]!.seq;
    // Back to front, so earlier positions stay valid; equal positions keep the reads' order.
    for (let i = inserts.length - 1; i >= 0; i--) {
      const { at, event, tsUs } = inserts[i]!;
      events.splice(at, 0, event);
      times.splice(at, 0, tsUs);
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

  /**
   * Where write j ran among the events: after the event of the last write before it that left one; else before the
   * event of the first write after it; else before the anchor. Never ahead of the epoch's marker.
   */
  private position(events: readonly FlashbackEvent[], eventOf: readonly (number | undefined)[], j: number): number {
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

  private event(
    events: readonly FlashbackEvent[],
    at: number,
    w: IssuedWrite,
    key: Buffer,
    group: Buffer,
    consumer: Buffer,
  ): FlashbackEvent {
    const before = events[at - 1];
    const after = events[at];
    // Between two entries of one MULTI … EXEC block, it ran inside it.
    const tx = before && after && before.tx > 0 && before.tx === after.tx ? before.tx : 0;
    const model = events[0]!;
    return {
      node: model.node,
      epoch: model.epoch,
      seq: 0,
      tsUs: w.tsUs,
      db: w.db,
      client: w.client,
      kind: EventKind.Command,
      command: 'XREADGROUP',
      keys: [key],
      args: w.argv,
      replay: [EVAL, SCRIPT, ONE, key, group, consumer],
      tx,
    };
  }
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
