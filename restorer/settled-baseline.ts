import type { ObjectStore } from '@nats-io/obj';
import type { ResolvedCutoff } from '../core/cutoff.js';
import { ErrorCode, FlashbackError, RestoreWindowError } from '../core/errors.js';
import { readableBytes } from '../core/escape.js';
import { sqlString, sqlUInt } from '../core/sql-literal.js';
import { approximateGroupKeys, type DbKey } from '../core/tail-groups.js';
import { formatTsUs } from '../core/time.js';
import type { EventStore, StoredBaseline } from './event-store.js';

/**
 * The baseline a restore starts from, with its tail: the newest one at or before the cutoff whose dataset is exact
 * there. A tail that carried consumer-group reads (core/tail-groups.ts) leaves those streams' entries-read
 * approximate until the agent's re-read of them, stored as `state` events just after the marker: such a baseline
 * serves cutoffs from the last of those on; earlier cutoffs fall back to the baseline before it.
 */
export async function settledBaseline(events: EventStore, objects: ObjectStore, node: string, cut: ResolvedCutoff): Promise<{ base: StoredBaseline; tail: Buffer }> {
  const candidates = cut.window.baselines.filter((b) => b <= cut.baselineSeq).sort((a, b) => b - a);
  let refused: string | undefined;
  for (const seq of candidates) {
    const base = await events.baseline(node, cut.epoch, seq);
    const tail = await objectBytes(objects, base.tailObject);
    const groups = approximateGroupKeys(tail);
    if (groups.length === 0) return { base, tail };
    const settled = await settledAt(events, node, cut.epoch, seq, groups);
    if (settled !== undefined && settled.seq <= cut.seq) return { base, tail };
    refused ??=
      `the baseline at seq ${seq} carried reads of ${groups.length} stream consumer group(s) that Redis replication does not carry exactly (entries-read), ` +
      (settled
        ? `and the agent re-read them at seq ${settled.seq} (${formatTsUs(settled.tsUs)}): restore to that instant or later`
        : 'and the agent has not re-read them (yet): restore to a later instant once it has, or to one before this baseline');
  }
  throw new RestoreWindowError(`cannot restore node "${node}" exactly at seq ${cut.seq}: ${refused}, or before seq ${candidates[candidates.length - 1] ?? cut.baselineSeq} from an earlier window`);
}

/** Where every one of `keys` has a `state` event after the marker: the last of their first ones. */
async function settledAt(events: EventStore, node: string, epoch: number, afterSeq: number, keys: DbKey[]): Promise<{ seq: number; tsUs: number } | undefined> {
  const names = [...new Set(keys.map((k) => readableBytes(k.key)))];
  // Aliases differ from the column names: 18.16 would read `seq` in WHERE as the aggregate.
  const rows = await events.query<{ d: number; k: string; first: string | number; at: string | number }>(
    `SELECT db AS d, key AS k, min(seq) AS first, argMin(ts_us, seq) AS at FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} ` +
      `AND kind = 'state' AND seq > ${sqlUInt(afterSeq)} AND key IN (${names.map(sqlString).join(', ')}) GROUP BY db, key`,
  );
  const first = new Map(rows.map((r) => [`${Number(r.d)}:${r.k}`, { seq: Number(r.first), tsUs: Number(r.at) }]));
  let last: { seq: number; tsUs: number } | undefined;
  for (const k of keys) {
    const f = first.get(`${k.db}:${readableBytes(k.key)}`);
    if (!f) return undefined;
    if (!last || f.seq > last.seq) last = f;
  }
  return last;
}

async function objectBytes(objects: ObjectStore, name: string): Promise<Buffer> {
  const b = await objects.getBlob(name);
  if (!b) throw new FlashbackError(ErrorCode.NotFound, `baseline object "${name}" is missing from the object store (deleted by retention?)`);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
