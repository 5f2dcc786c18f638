import type { ObjectStore } from '@nats-io/obj';
import type { ResolvedCutoff } from '../core/store/cutoff.js';
import { RestoreWindowError } from '../core/errors.js';
import { firstSettleSql, groupEndSql } from '../core/store/restore-sql.js';
import { approximateGroupKeys } from '../core/redis/tail-groups.js';
import { formatTsUs } from '../core/time.js';
import { baselineCheck, objectBytes } from './baseline-objects.js';
import type { EventStore, StoredBaseline } from '../core/store/event-store.js';

/**
 * The baseline a restore starts from, with its tail: the newest one at or before the cutoff whose dataset is exact
 * there. Group reads while a baseline was taken reach its RDB + tail only in part (Redis 7.0 replicates XREADGROUP
 * as XCLAIM … LASTID without entries-read, and a history read not at all), so the agent re-reads those streams
 * right after the marker: `state` events named SETTLE. Such a baseline serves cutoffs from the end of that group
 * on; earlier cutoffs start from the baseline before. A baseline whose tail shows group reads (core/tail-groups.ts)
 * and has no SETTLE (an agent that ended first) is not used.
 */
export async function settledBaseline(
  events: EventStore,
  objects: ObjectStore,
  node: string,
  cut: ResolvedCutoff,
): Promise<{ base: StoredBaseline; tail: Buffer }> {
  const all = [...cut.window.baselines].sort((a, b) => a - b);
  const candidates = all.filter((b) => b <= cut.baselineSeq).reverse();
  let refused: string | undefined;
  for (const seq of candidates) {
    const base = await events.baseline(node, cut.epoch, seq);
    const tail = await objectBytes(objects, base.tailObject, baselineCheck(node, cut.epoch, base, 'tail'));
    const next = all.find((b) => b > seq) ?? Number.MAX_SAFE_INTEGER;
    const settled = await settlePoint(events, node, cut.epoch, seq, next);
    if (settled) {
      if (settled.seq <= cut.seq) return { base, tail };
      refused ??= `the baseline at seq ${seq} was taken during consumer-group reads, which Redis replication carries only in part, and is exact from the agent's re-read of those streams on: seq ${settled.seq} (${formatTsUs(settled.tsUs)}); restore to that instant or later`;
      continue;
    }
    const groups = approximateGroupKeys(tail);
    if (groups.length === 0) return { base, tail };
    refused ??= `the baseline at seq ${seq} carried reads of ${groups.length} stream consumer group(s) that Redis replication does not carry exactly, and the agent has not re-read them (yet): restore to a later instant once it has, or to one before this baseline`;
  }
  throw new RestoreWindowError(
    `cannot restore node "${node}" exactly at seq ${cut.seq}: ${refused}, or before seq ${candidates[candidates.length - 1] ?? cut.baselineSeq} from an earlier window`,
  );
}

/**
 * The end of the SETTLE group after marker `afterSeq` (before the next baseline): where that baseline is exact from.
 */
async function settlePoint(
  events: EventStore,
  node: string,
  epoch: number,
  afterSeq: number,
  beforeSeq: number,
): Promise<{ seq: number; tsUs: number } | undefined> {
  const first = await events.query<{ s: string | number; t: string | number; n: string | number }>(
    firstSettleSql(node, epoch, afterSeq, beforeSeq),
  );
  if (Number(first[0]?.n ?? 0) === 0) return undefined;
  const end = await events.query<{ s: string | number; at: string | number }>(
    groupEndSql(node, epoch, Number(first[0]!.t), Number(first[0]!.s)),
  );
  return { seq: Number(end[0]!.s), tsUs: Number(end[0]!.at) };
}
