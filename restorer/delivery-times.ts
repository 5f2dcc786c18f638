import type { Redis } from 'ioredis';
import { streamDeliveriesSql } from '../core/store/restore-sql.js';
import { decodeCommand } from '../core/redis/resp.js';
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

/**
 * The last delivery of each (key, group, entry id) of a stretch. Not by db: SWAPDB and MOVE carry a stream to another
 * db with its groups (the key's name stays; a RENAME or COPY since is not followed).
 */
export type Deliveries = Map<string, { key: Buffer; group: Buffer; id: Buffer; timeMs: number }>;

/** More than this many deliveries in one restore: older ones keep the frozen instant (the report says so). */
const MAX_DELIVERIES = 1_000_000;

/**
 * The replicated deliveries of the epoch up to the cutoff, keyed by db, key, group and id, the latest of each (the
 * baseline's tail replays deliveries before its marker too; an entry's last delivery is what its time must be).
 */
export async function readDeliveries(
  events: Pick<EventStore, 'query'>,
  node: string,
  epoch: number,
  afterSeq: number,
  toSeq: number,
): Promise<{ deliveries: Deliveries; truncated: boolean }> {
  const rows = await events.query<{ replay: string }>(
    streamDeliveriesSql(node, epoch, afterSeq, toSeq, MAX_DELIVERIES + 1),
  );
  const deliveries: Deliveries = new Map();
  for (const row of rows.slice(0, MAX_DELIVERIES)) {
    const argv = decodeCommand(Buffer.from(row.replay, 'base64'));
    const d = replicatedDelivery(argv);
    if (!d) continue;
    const k = deliveryKey(d.key, d.group, d.id);
    if (deliveries.has(k)) continue; // newest first: a later delivery of this entry is already there
    deliveries.set(k, d);
  }
  return { deliveries, truncated: rows.length > MAX_DELIVERIES };
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

function deliveryKey(key: Buffer, group: Buffer, id: Buffer): string {
  return `${key.toString('base64')}\0${group.toString('base64')}\0${id.toString('base64')}`;
}

/**
 * Sets each delivery's time again on `r` (a real-clock server holding the restore) for the entries still pending,
 * in whichever db the stream is now: `XCLAIM key group <its owner> 0 id TIME ms RETRYCOUNT <its count> JUSTID` keeps
 * owner and count. Returns how many were set. An entry acknowledged since, or a group destroyed, is skipped.
 */
export async function setDeliveryTimes(r: Redis, deliveries: Deliveries, dbs: Iterable<number>): Promise<number> {
  const byKey = new Map<string, { key: Buffer; group: Buffer; id: Buffer; timeMs: number }[]>();
  for (const d of deliveries.values()) {
    const k = d.key.toString('base64');
    const list = byKey.get(k);
    if (list) list.push(d);
    else byKey.set(k, [d]);
  }
  let set = 0;
  for (const db of dbs) {
    await r.select(db);
    for (const [k, list] of byKey) {
      const key = Buffer.from(k, 'base64');
      if (String(await r.callBuffer('TYPE', key)) !== 'stream') continue;
      for (const d of list) {
        let pending: unknown;
        try {
          pending = await r.callBuffer('XPENDING', key, d.group, d.id, d.id, 1);
        } catch {
          continue; // no such group (any more)
        }
        const entry = Array.isArray(pending) ? (pending[0] as unknown[] | undefined) : undefined;
        if (!entry || !Buffer.isBuffer(entry[0]) || !entry[0].equals(d.id)) continue;
        await r.callBuffer(
          'XCLAIM',
          key,
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
    }
  }
  return set;
}
