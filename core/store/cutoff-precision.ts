import { EventKind, REPLICATION_CLIENT } from '../bus/event.js';
import { formatTsUs } from '../time.js';
import type { ResolvedCutoff } from './cutoff.js';
import { sqlString, sqlUInt } from './sql-literal.js';
import type { QueryRunner, RestoreWindow } from './windows.js';

/*
 * Whether a `--to T` restore is provably the state at T. The cutoff applies every event up to seq s; let F be the
 * first event after s that changes data. The restored state is the source's state from the real instant of s up to
 * the real instant of F, so it is the state at T exactly when F provably ran after T:
 * - no F in the window: exact;
 * - F.ts ≤ T (left out although at or before T: a tx cut, times out of seq order): not exact;
 * - F from the replication stream without attribution: its ts is an upper bound, it ran after the anchor before it
 *   (lo); not provable when T > lo + 1 ms;
 * - F opens a MONITOR state group (a tx holding `state` events: a stretch of nondeterministic effects whose states
 *   the agent read at its end, every event stamped with the group's last command): its commands ran after s at
 *   instants not kept; not provable when T > ts(s) + 1 ms. (A MULTI that holds a SPOP looks the same: warned too.)
 * - otherwise (F's time is its own, µs from MONITOR): exact.
 */

/** Differences up to this are no warning: MONITOR times are µs, but the promise is 1 ms. */
const TOLERANCE_US = 1_000;

/** Kinds that change data (heartbeats and baseline markers replay as nothing). */
const CHANGES = [EventKind.Command, EventKind.State, EventKind.Expired, EventKind.Evicted];

interface EventFacts {
  seq: number;
  tsUs: number;
  client: string;
  command: string;
  tx: number;
}

/** SQL: the first data-changing event of window `w` after seq `after`. */
export function nextChangeSql(node: string, w: Pick<RestoreWindow, 'epoch' | 'toSeq'>, after: number): string {
  return `SELECT seq, ts_us, client, command, tx FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq > ${sqlUInt(after)} AND seq <= ${sqlUInt(w.toSeq)} AND kind IN (${CHANGES.map(sqlString).join(', ')}) ORDER BY seq LIMIT 1`;
}

/** SQL: the last time anchor (heartbeat or baseline marker) of window `w` before seq `before`. */
export function lastAnchorSql(node: string, w: Pick<RestoreWindow, 'epoch' | 'fromSeq'>, before: number): string {
  return `SELECT seq, ts_us FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq >= ${sqlUInt(w.fromSeq)} AND seq < ${sqlUInt(before)} AND kind IN (${sqlString(EventKind.Heartbeat)}, ${sqlString(EventKind.Baseline)}) ORDER BY seq DESC LIMIT 1`;
}

/** SQL: the first `state` event of tx `tx` (its first seq) in window `w`. */
export function groupStateSql(node: string, w: Pick<RestoreWindow, 'epoch' | 'toSeq'>, tx: number): string {
  return `SELECT seq FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq >= ${sqlUInt(tx)} AND seq <= ${sqlUInt(w.toSeq)} AND tx = ${sqlUInt(tx)} AND kind = ${sqlString(EventKind.State)} ORDER BY seq LIMIT 1`;
}

/**
 * Warnings for a `--to` cutoff whose restored state is not provably the state at the asked instant: asked and
 * resolved instants, the gap, why, and the way out. Empty for an exact one and for `--to-seq` / `--before-seq`.
 * Two or three small queries (LIMIT 1) on the store.
 */
export async function cutoffPrecision(db: QueryRunner, node: string, cut: ResolvedCutoff): Promise<string[]> {
  const asked = cut.askedTsUs;
  if (asked === undefined) return [];
  const rows = await db.query<Record<string, string | number>>(nextChangeSql(node, cut.window, cut.seq));
  const r = rows[0];
  if (!r) return [];
  const f: EventFacts = {
    seq: Number(r.seq),
    tsUs: Number(r.ts_us),
    client: String(r.client),
    command: String(r.command),
    tx: Number(r.tx),
  };
  const choose = `choose with --before-seq ${f.seq} (without it) or --to-seq ${f.seq} (with it${f.tx !== 0 ? ' and the rest of its tx' : ''})`;
  const head = (resolvedUs: number) =>
    `restore to ${formatTsUs(asked)} resolved to ${formatTsUs(resolvedUs)} (${gapMs(asked - resolvedUs)} ms earlier; cutoff epoch ${cut.epoch} seq ${cut.seq})`;
  const next = `the next change, seq ${f.seq} (${f.command})`;

  if (f.tsUs <= asked) {
    const why =
      f.tx !== 0 ? `its tx (from seq ${f.tx}) goes on past the asked instant` : 'its time is out of seq order';
    return [
      `${head(cut.tsUs)}: ${next} at ${formatTsUs(f.tsUs)} is at or before the asked instant but left out: ${why}; ${choose}`,
    ];
  }
  if (f.client === REPLICATION_CLIENT) {
    const anchors = await db.query<{ seq: string | number; ts_us: string | number }>(
      lastAnchorSql(node, cut.window, f.seq),
    );
    const lo = Math.max(Number(anchors[0]?.ts_us ?? cut.window.fromTsUs), cut.tsUs);
    if (asked <= lo + TOLERANCE_US) return [];
    return [
      `${head(lo)}: ${next} comes from the replication stream, which carries no time: it ran after the anchor at ${formatTsUs(lo)} and by ${formatTsUs(f.tsUs)}, so whether the state at the asked instant includes it is unknown; ${choose}; attribution (MONITOR beside the stream) or MONITOR capture gives each event its µs time`,
    ];
  }
  if (f.tx !== 0 && asked > cut.tsUs + TOLERANCE_US) {
    const states = await db.query<{ seq: string | number }>(groupStateSql(node, cut.window, f.tx));
    if (states.length === 0) return [];
    return [
      `${head(cut.tsUs)}: ${next} opens a group (tx ${f.tx}) of writes whose effects the agent read only at its end (SPOP, XADD *, served pops …), all stamped ${formatTsUs(f.tsUs)}: they ran after ${formatTsUs(cut.tsUs)} at instants not kept, so how many of them the state at the asked instant holds is unknown; ${choose}; capture from the replication stream has no such groups`,
    ];
  }
  return [];
}

function gapMs(us: number): string {
  return (us / 1000).toFixed(1);
}
