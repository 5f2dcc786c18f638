import type { Redis } from 'ioredis';
import { streamDeliveriesSql } from '../core/store/restore-sql.js';
import { decodeCommand } from '../core/redis/resp.js';
import { rawStreamId, setPayloadDeliveryTimes } from './stream-payload.js';
import type { EventStore } from '../core/store/event-store.js';

/*
 * Why a restore on the source's clock sets consumer-group delivery times again afterwards.
 *
 * A history with hash-field TTLs loads on a clock frozen before its baseline (restorer/source-clock.ts). Every delivery
 * reaches the replication stream as `XCLAIM … TIME <ms>`, and XCLAIM takes a delivery time later than the server's
 * clock as bogus and uses "now" instead (t_stream.c xclaimCommand): on the frozen clock every pending entry delivered
 * in the history got the frozen instant (seen in the soak on Redis 8.0.2: XPENDING times 2 s before the real ones).
 * Once the data is on a real-clock server (restorer/materialize.ts reloadOnRealClock) the last delivery time of each
 * entry still pending is set again, with its owner and count as they are.
 */

/** One entry's last delivery, in the db its stream is in at the cutoff. */
export interface Delivery {
  db: number;
  key: Buffer;
  group: Buffer;
  id: Buffer;
  timeMs: number;
}

/** The last delivery of each (db, key, group, entry id) at the cutoff. */
export type Deliveries = Delivery[];

/** More than this many rows in one restore: older deliveries keep the frozen instant (the report says so). */
const MAX_ROWS = 1_000_000;

/**
 * The replicated deliveries of the epoch up to the cutoff, the latest of each entry, in the db and under the name its
 * stream has at the cutoff: the history is read in order and SWAPDB, MOVE, RENAME and COPY carry a stream's
 * deliveries with it (its groups go along), DEL, RESTORE and FLUSH drop them (the baseline's tail replays deliveries
 * before its marker too, so the epoch is read from its start). Two streams of one name in two dbs keep theirs apart.
 */
export async function readDeliveries(
  events: Pick<EventStore, 'query'>,
  node: string,
  epoch: number,
  afterSeq: number,
  toSeq: number,
): Promise<{ deliveries: Deliveries; truncated: boolean }> {
  const rows = await events.query<{ seq: string | number; db: string | number; replay: string }>(
    streamDeliveriesSql(node, epoch, afterSeq, toSeq, MAX_ROWS + 1),
  );
  const tracker = new DeliveryTracker();
  // Newest first from the store (so a cut keeps the newest): applied oldest first.
  for (let i = Math.min(rows.length, MAX_ROWS) - 1; i >= 0; i--) {
    const row = rows[i]!;
    tracker.apply(Number(row.db), decodeCommand(Buffer.from(row.replay, 'base64')));
  }
  return { deliveries: tracker.deliveries(), truncated: rows.length > MAX_ROWS };
}

/**
 * Follows streams' deliveries through the writes that move them, in history order. A db's contents are a "slot" that
 * SWAPDB exchanges between two db numbers, so a swap costs two map writes whatever the db holds.
 */
export class DeliveryTracker {
  /** slot → key (base64) → `group\0id` (base64) → delivery. */
  private readonly slots = new Map<number, Map<string, Map<string, Delivery>>>();
  /** db → the slot it holds now (absent: its own number). */
  private readonly slotOfDb = new Map<number, number>();

  apply(db: number, replay: Buffer[]): void {
    const name = replay[0]?.toString('latin1').toUpperCase();
    const d = replicatedDelivery(replay);
    if (d) {
      const byId = this.streamOf(db, d.key, true)!;
      byId.set(`${d.group.toString('base64')}\0${d.id.toString('base64')}`, { db, ...d });
      return;
    }
    const arg = (i: number) => replay[i]?.toString('latin1') ?? '';
    switch (name) {
      case 'SWAPDB': {
        const a = Number(arg(1));
        const b = Number(arg(2));
        if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) return;
        const sa = this.slot(a);
        this.slotOfDb.set(a, this.slot(b));
        this.slotOfDb.set(b, sa);
        return;
      }
      case 'MOVE': {
        const to = Number(arg(2));
        if (replay.length < 3 || !Number.isSafeInteger(to)) return;
        this.carry(db, replay[1]!, to, replay[1]!, true);
        return;
      }
      case 'RENAME':
      case 'RENAMENX':
        if (replay.length >= 3) this.carry(db, replay[1]!, db, replay[2]!, true);
        return;
      case 'COPY': {
        if (replay.length < 3) return;
        let to = db;
        for (let i = 3; i + 1 < replay.length; i++) if (arg(i).toUpperCase() === 'DB') to = Number(arg(i + 1));
        if (Number.isSafeInteger(to)) this.carry(db, replay[1]!, to, replay[2]!, false);
        return;
      }
      case 'DEL':
      case 'UNLINK':
        for (const k of replay.slice(1)) this.slots.get(this.slot(db))?.delete(k.toString('base64'));
        return;
      case 'RESTORE':
        // The payload brings its own PEL, with its delivery times.
        if (replay.length >= 2) this.slots.get(this.slot(db))?.delete(replay[1]!.toString('base64'));
        return;
      case 'FLUSHDB':
        this.slots.delete(this.slot(db));
        return;
      case 'FLUSHALL':
        this.slots.clear();
        return;
      default:
        return;
    }
  }

  /** Every delivery kept, each with the db its stream is in now. */
  deliveries(): Deliveries {
    const dbOfSlot = new Map<number, number>();
    for (const [db, slot] of this.slotOfDb) dbOfSlot.set(slot, db);
    const out: Deliveries = [];
    for (const [slot, keys] of this.slots) {
      const db = dbOfSlot.get(slot) ?? slot;
      for (const byId of keys.values()) for (const d of byId.values()) out.push({ ...d, db });
    }
    return out;
  }

  private slot(db: number): number {
    return this.slotOfDb.get(db) ?? db;
  }

  /** The keys of the slot `db` holds now, made when missing. */
  private keysIn(db: number): Map<string, Map<string, Delivery>> {
    const slot = this.slot(db);
    let keys = this.slots.get(slot);
    if (!keys) this.slots.set(slot, (keys = new Map()));
    return keys;
  }

  private streamOf(db: number, key: Buffer, create: boolean): Map<string, Delivery> | undefined {
    const k = key.toString('base64');
    if (!create) return this.slots.get(this.slot(db))?.get(k);
    const keys = this.keysIn(db);
    let byId = keys.get(k);
    if (!byId) keys.set(k, (byId = new Map()));
    return byId;
  }

  /** A stream's deliveries go (or are copied) to `toKey` in `toDb`, replacing what was there. */
  private carry(db: number, key: Buffer, toDb: number, toKey: Buffer, remove: boolean): void {
    const from = this.streamOf(db, key, false);
    const toSlot = this.slots.get(this.slot(toDb));
    if (remove) this.slots.get(this.slot(db))?.delete(key.toString('base64'));
    if (!from) {
      toSlot?.delete(toKey.toString('base64'));
      return;
    }
    const copy = new Map<string, Delivery>();
    for (const [k, d] of from) copy.set(k, { ...d, key: toKey });
    this.keysIn(toDb).set(toKey.toString('base64'), copy);
  }
}

/**
 * `XCLAIM key group consumer min-idle id TIME ms … LASTID …` as Redis propagates a delivery (one id, a TIME, LASTID,
 * which clients do not send): its key, group, id and time; undefined for anything else (a client's own XCLAIM in
 * MONITOR mode replays with its state event after it).
 */
export function replicatedDelivery(
  replay: Buffer[],
): { key: Buffer; group: Buffer; id: Buffer; timeMs: number } | undefined {
  const argv = groupReadXclaim(replay) ?? replay;
  if (argv.length < 8 || argv[0]!.toString('latin1').toUpperCase() !== 'XCLAIM') return undefined;
  let timeMs: number | undefined;
  let lastId = false;
  for (let i = 6; i < argv.length; i++) {
    const opt = argv[i]!.toString('latin1').toUpperCase();
    if (opt === 'TIME' && i + 1 < argv.length) timeMs = Number(argv[++i]!.toString('latin1'));
    else if (opt === 'RETRYCOUNT' || opt === 'IDLE' || opt === 'LASTID') {
      if (opt === 'LASTID') lastId = true;
      i++;
    }
  }
  if (!lastId || timeMs === undefined || !Number.isSafeInteger(timeMs) || timeMs < 0) return undefined;
  return { key: argv[1]!, group: argv[2]!, id: argv[5]!, timeMs };
}

/**
 * The XCLAIM inside a group read's replay: the agent replays a replicated `XCLAIM … LASTID` as
 * `EVAL <script that runs it and fixes entries-read> 1 key group …` (agent/replication/group-read-replay.ts).
 */
function groupReadXclaim(argv: Buffer[]): Buffer[] | undefined {
  if (argv.length < 9 || argv[0]!.toString('latin1').toUpperCase() !== 'EVAL' || argv[2]!.toString('latin1') !== '1')
    return undefined;
  if (!argv[1]!.includes("redis.call('XCLAIM', key, unpack(ARGV))")) return undefined;
  return [Buffer.from('XCLAIM'), argv[3]!, ...argv.slice(4)];
}

/**
 * Sets each delivery's time again on `r` (a real-clock server holding the restore) for the entries still pending, in
 * the db its stream is in at the cutoff. Each stream is rewritten once: its DUMP with the times set in its groups'
 * pending lists, RESTORE … REPLACE with its expiry (restorer/stream-payload.ts). That reaches entries deleted from the
 * stream while pending too, and leaves owners, counts and the consumers' seen and active times as they are. A payload
 * of a layout not known there goes entry by entry: `XCLAIM key group <its owner> 0 id TIME ms RETRYCOUNT <its count>
 * JUSTID`, which cannot reach a deleted entry (it would drop it from the pending list: left as it is, counted in
 * `kept`, which the report states). An entry acknowledged since, or a group destroyed, is skipped.
 */
export async function setDeliveryTimes(r: Redis, deliveries: Deliveries): Promise<{ set: number; kept: number }> {
  // db → key (base64) → its deliveries
  const streams = new Map<number, Map<string, Delivery[]>>();
  for (const d of deliveries) {
    let keys = streams.get(d.db);
    if (!keys) streams.set(d.db, (keys = new Map()));
    const k = d.key.toString('base64');
    const list = keys.get(k);
    if (list) list.push(d);
    else keys.set(k, [d]);
  }
  let set = 0;
  let kept = 0;
  for (const [db, keys] of streams) {
    await r.select(db);
    for (const list of keys.values()) {
      const key = list[0]!.key;
      if (String(await r.callBuffer('TYPE', key)) !== 'stream') continue;
      const rewritten = await rewriteStream(r, key, list);
      if (rewritten !== undefined) {
        set += rewritten;
        continue;
      }
      const byClaims = await claimEach(r, list);
      set += byClaims.set;
      kept += byClaims.kept;
    }
  }
  return { set, kept };
}

/** DUMP, times set, RESTORE … REPLACE (expiry kept); how many were set, or undefined for a payload not known. */
async function rewriteStream(r: Redis, key: Buffer, list: Delivery[]): Promise<number | undefined> {
  const groups = (await r.callBuffer('XINFO', 'GROUPS', key)) as unknown[][];
  // The payload holds the groups in the order XINFO GROUPS lists them (its radix tree: sorted by name).
  const indexOf = new Map<string, number>();
  groups.forEach((g, i) => {
    for (let f = 0; f + 1 < g.length; f += 2)
      if (String(g[f]) === 'name' && Buffer.isBuffer(g[f + 1])) indexOf.set((g[f + 1] as Buffer).toString('base64'), i);
  });
  const times = new Map<number, Map<string, number>>();
  for (const d of list) {
    const g = indexOf.get(d.group.toString('base64'));
    if (g === undefined) continue; // group destroyed since
    let ids = times.get(g);
    if (!ids) times.set(g, (ids = new Map()));
    ids.set(rawStreamId(d.id.toString('latin1')), d.timeMs);
  }
  if (times.size === 0) return 0;
  const payload = (await r.callBuffer('DUMP', key)) as Buffer | null;
  if (!payload) return 0;
  const patched = setPayloadDeliveryTimes(payload, times);
  if (!patched) return undefined;
  if (patched.set === 0) return 0;
  const expireAt = Number(await r.call('PEXPIRETIME', key));
  if (expireAt > 0) await r.callBuffer('RESTORE', key, expireAt, patched.payload, 'REPLACE', 'ABSTTL');
  else await r.callBuffer('RESTORE', key, 0, patched.payload, 'REPLACE');
  return patched.set;
}

/** Entry by entry with XCLAIM (owner and count kept); an entry deleted from the stream is left as it is. */
async function claimEach(r: Redis, list: Delivery[]): Promise<{ set: number; kept: number }> {
  let set = 0;
  let kept = 0;
  for (const d of list) {
    let pending: unknown;
    try {
      pending = await r.callBuffer('XPENDING', d.key, d.group, d.id, d.id, 1);
    } catch {
      continue; // no such group (any more)
    }
    const entry = Array.isArray(pending) ? (pending[0] as unknown[] | undefined) : undefined;
    if (!entry || !Buffer.isBuffer(entry[0]) || !entry[0].equals(d.id)) continue;
    const inStream = await r.callBuffer('XRANGE', d.key, d.id, d.id, 'COUNT', 1);
    if (!Array.isArray(inStream) || inStream.length === 0) {
      kept++;
      continue;
    }
    await r.callBuffer(
      'XCLAIM',
      d.key,
      d.group,
      entry[1] as Buffer,
      0,
      d.id,
      'TIME',
      d.timeMs,
      'RETRYCOUNT',
      Number(entry[3]),
      'JUSTID',
    );
    set++;
  }
  return { set, kept };
}
