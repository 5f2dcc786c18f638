import { ErrorCode, InputError, RestoreWindowError } from '../errors.js';
import { sqlString, sqlUInt } from './sql-literal.js';
import { formatTsUs, parseCutoffTime } from '../time.js';
import { nodesSql, restoreWindows, type QueryRunner, type RestoreWindow } from './windows.js';

/** Where a restore stops: exactly one of the three. */
export interface CutoffSpec {
  /** Include every event with ts_us ≤ this instant (text as an operator types it, or µs). */
  to?: string | number;
  /** Include events up to this seq (the whole transaction it belongs to). */
  toSeq?: number;
  /** Include events before this seq (and before its whole transaction). */
  beforeSeq?: number;
  /** Epoch the seq belongs to; default: the newest window that contains it. */
  epoch?: number;
}

/** A resolved cutoff: the last event to apply and the baseline to start from. */
export interface ResolvedCutoff {
  window: RestoreWindow;
  epoch: number;
  /** Last seq applied (a baseline marker seq when nothing follows it). */
  seq: number;
  /** Time of that last event (µs), or the asked instant for --to. */
  tsUs: number;
  /** The instant asked for with --to, µs. */
  askedTsUs?: number;
  /** Baseline marker seq used. */
  baselineSeq: number;
}

function describeWindows(ws: RestoreWindow[]): string {
  if (ws.length === 0) return 'none yet (no baseline stored: is the agent running?)';
  return ws
    .map((w) => `${formatTsUs(w.fromTsUs)} – ${formatTsUs(w.toTsUs)} (epoch ${w.epoch}, seq ${w.fromSeq}–${w.toSeq})`)
    .join('; ');
}

/** Resolves a cutoff spec against a node's windows; every failure names the windows. */
export async function resolveCutoff(db: QueryRunner, node: string, spec: CutoffSpec): Promise<ResolvedCutoff> {
  const given = [spec.to !== undefined, spec.toSeq !== undefined, spec.beforeSeq !== undefined].filter(Boolean).length;
  if (given !== 1)
    throw new InputError(ErrorCode.BadInput, 'give exactly one cutoff: --to TIME, --to-seq N or --before-seq N');
  // Validate the input before asking the store anything.
  const askedTo = spec.to === undefined ? undefined : typeof spec.to === 'number' ? spec.to : parseCutoffTime(spec.to);
  const windows = await restoreWindows(db, node);
  if (windows.length === 0) {
    const nodes = await db.query<{ node: string }>(nodesSql());
    if (!nodes.some((n) => n.node === node)) {
      const known = nodes.map((n) => `"${n.node}"`).join(', ') || 'none';
      throw new InputError(ErrorCode.UnknownNode, `no events captured for node "${node}"; known nodes: ${known}`);
    }
    throw new RestoreWindowError(
      `node "${node}" has no restorable window yet: no baseline has been stored (the agent takes one when it starts)`,
    );
  }
  const list = describeWindows(windows);
  if (spec.to !== undefined) {
    const t = askedTo!;
    const w = [...windows].reverse().find((x) => x.fromTsUs <= t && t <= x.toTsUs);
    if (!w)
      throw new RestoreWindowError(`no restorable window of node "${node}" covers ${formatTsUs(t)}; windows: ${list}`);
    const rows = await db.query<{ last_seq: string | number; last_ts: string | number; last_tx: string | number }>(
      lastAtOrBeforeSql(node, w, t),
    );
    let seq = Math.max(w.fromSeq, Number(rows[0]?.last_seq ?? w.fromSeq));
    let tsUs = Number(rows[0]?.last_ts ?? w.fromTsUs);
    // A cutoff never splits a tx: one whose events do not share one time (not written so by the agent today) and that
    // goes on past T is left out whole, back to the newest baseline marker inside it (its RDB is the true state there).
    const tx = seq === Number(rows[0]?.last_seq) ? Number(rows[0]?.last_tx ?? 0) : 0;
    if (tx !== 0) {
      const end = await db.query<{ tx_end: string | number }>(txEndSql(node, w, tx));
      if (Number(end[0]?.tx_end ?? 0) > seq) {
        const marker = w.baselines.filter((b) => b >= tx && b <= seq).pop();
        seq = Math.max(marker ?? tx - 1, w.fromSeq);
        const at = await db.query<{ at_us: string | number }>(
          `SELECT any(ts_us) AS at_us FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq = ${sqlUInt(seq)}`,
        );
        tsUs = Number(at[0]?.at_us ?? w.fromTsUs);
      }
    }
    return { window: w, epoch: w.epoch, seq, tsUs, askedTsUs: t, baselineSeq: pickBaseline(w, seq) };
  }
  const n = (spec.toSeq ?? spec.beforeSeq)!;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InputError(ErrorCode.BadInput, `seq must be a positive integer, got ${n}`);
  const holding = windows.filter(
    (x) =>
      (spec.epoch === undefined || x.epoch === spec.epoch) &&
      x.fromSeq <= n &&
      n <= x.toSeq + (spec.beforeSeq !== undefined ? 1 : 0),
  );
  // Seqs restart at 1 in every epoch: a bare seq held by two epochs names two different events.
  const epochs = [...new Set(holding.map((x) => x.epoch))];
  if (spec.epoch === undefined && epochs.length > 1) {
    throw new InputError(
      ErrorCode.BadInput,
      `seq ${n} of node "${node}" exists in ${epochs.length} epochs; add --epoch (one of ${epochs.join(', ')}); windows: ${list}`,
    );
  }
  const w = holding[holding.length - 1];
  if (!w)
    throw new RestoreWindowError(
      `no restorable window of node "${node}" holds seq ${n}${spec.epoch !== undefined ? ` in epoch ${spec.epoch}` : ''}; windows: ${list}`,
    );
  const txRows = await db.query<{ tx_id: string | number }>(
    `SELECT any(tx) AS tx_id FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq = ${sqlUInt(Math.min(n, w.toSeq))}`,
  );
  const tx = Number(txRows[0]?.tx_id ?? 0);
  let seq: number;
  if (spec.toSeq !== undefined) {
    if (tx === 0) seq = n;
    else {
      const end = await db.query<{ last_seq: string | number }>(
        `SELECT max(seq) AS last_seq FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND tx = ${sqlUInt(tx)}`,
      );
      seq = Number(end[0]?.last_seq ?? n);
    }
  } else {
    seq = (tx === 0 || n > w.toSeq ? n : tx) - 1;
    if (seq < w.fromSeq - 1) {
      throw new RestoreWindowError(
        `seq ${n} is the first event after the baseline at seq ${w.fromSeq} or earlier: nothing before it is restorable in epoch ${w.epoch}; windows: ${list}`,
      );
    }
  }
  const ts = await db.query<{ at_us: string | number }>(
    `SELECT any(ts_us) AS at_us FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq = ${sqlUInt(seq)}`,
  );
  return { window: w, epoch: w.epoch, seq, tsUs: Number(ts[0]?.at_us ?? 0), baselineSeq: pickBaseline(w, seq) };
}

/**
 * SQL: the last event of window `w` at or before `t` (µs): its seq, the latest time and its tx. Aliases must not
 * shadow columns: 18.16 resolves `seq` in WHERE to the alias (error 184, aggregate in WHERE).
 */
export function lastAtOrBeforeSql(
  node: string,
  w: Pick<RestoreWindow, 'epoch' | 'fromSeq' | 'toSeq'>,
  t: number,
): string {
  return `SELECT max(seq) AS last_seq, max(ts_us) AS last_ts, argMax(tx, seq) AS last_tx FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq >= ${sqlUInt(w.fromSeq)} AND seq <= ${sqlUInt(w.toSeq)} AND ts_us <= ${sqlUInt(t)}`;
}

/** SQL: the last seq of tx `tx` (its first seq) inside window `w`. */
export function txEndSql(node: string, w: Pick<RestoreWindow, 'epoch' | 'toSeq'>, tx: number): string {
  return `SELECT max(seq) AS tx_end FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(w.epoch)} AND seq >= ${sqlUInt(tx)} AND seq <= ${sqlUInt(w.toSeq)} AND tx = ${sqlUInt(tx)}`;
}

/** The newest baseline that holds nothing after the cutoff: marker b holds events < b. */
function pickBaseline(w: RestoreWindow, seq: number): number {
  let best = w.baselines[0]!;
  for (const b of w.baselines) if (b <= seq + 1) best = b;
  return best;
}
