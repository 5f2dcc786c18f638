import type { ClickHouseClient } from '@clickhouse/client';
import { formatTsUs } from '../time.js';
import { clickHouseCodeOf } from './clickhouse.js';
import { VERIFICATIONS_TABLE, type VerificationRow } from './schema.js';
import { sqlString, sqlUInt } from './sql-literal.js';
import { baselinesSql, restoreWindows, type QueryRunner, type RestoreWindow } from './windows.js';

/** ClickHouse's UNKNOWN_TABLE: a store whose schema predates flashback.verifications. */
const UNKNOWN_TABLE = 60;

/** Outcome of a stretch's check. */
export type VerificationResult = 'match' | 'mismatch' | 'unverifiable';

/** The stretch between two consecutive baselines of one window, and what its newest check found. */
export interface VerifiedStretch {
  epoch: number;
  /** Marker seq of the baseline the check restored from. */
  fromSeq: number;
  /** Marker seq of the next baseline, whose recorded digest the replay reached (or not). */
  toSeq: number;
  fromTsUs: number;
  toTsUs: number;
  result: VerificationResult;
  /** A mismatch: the first differing key, readable (as in flashback.events' `key`). */
  firstKey?: string;
  /** Keys differing (a mismatch), or only excused by a TTL that passed before the check (a match). */
  keysDiffering: number;
  detail: string;
  checkedUs: number;
}

/** A restorable window with the checks of its stretches. */
export type WindowWithChecks = RestoreWindow & { verified: VerifiedStretch[] };

/** A stretch no check has recorded yet: B1 → B2 of one window, B2 with a recorded digest. */
export interface PendingStretch {
  node: string;
  epoch: number;
  fromSeq: number;
  toSeq: number;
  fromTsUs: number;
  toTsUs: number;
  /** DEBUG DIGEST the source recorded at `toSeq`. */
  digest: string;
}

/**
 * SQL: the newest check of each stretch of a node. Aliases differ from column names: 18.16 would resolve a column
 * inside another aggregate to a same-named alias (error 184).
 */
export function verificationsSql(node: string): string {
  return `SELECT epoch, from_seq, to_seq, any(from_ts_us) AS f_ts, any(to_ts_us) AS t_ts, argMax(result, checked_us) AS res, argMax(first_key, checked_us) AS fk, argMax(keys_differing, checked_us) AS kd, argMax(detail, checked_us) AS det, max(checked_us) AS at_us FROM ${VERIFICATIONS_TABLE} WHERE node = ${sqlString(node)} GROUP BY epoch, from_seq, to_seq ORDER BY epoch, from_seq, to_seq`;
}

/** SQL: a node's baselines that recorded a digest, oldest first. */
export function digestBaselinesSql(node: string): string {
  return `SELECT epoch, seq, any(digest) AS dg FROM flashback.baselines WHERE node = ${sqlString(node)} AND digest != '' GROUP BY epoch, seq ORDER BY epoch, seq`;
}

/** SQL: of the events afterSeq < seq ≤ toSeq whose first key is one of `keys` (readable), the key that comes first. */
export function firstEventOfKeysSql(
  node: string,
  epoch: number,
  afterSeq: number,
  toSeq: number,
  keys: string[],
): string {
  return `SELECT key, min(seq) AS first_seq FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq > ${sqlUInt(afterSeq)} AND seq <= ${sqlUInt(toSeq)} AND key IN (${keys.map((k) => sqlString(k)).join(', ') || "''"}) GROUP BY key ORDER BY first_seq, key LIMIT 1`;
}

/** The newest check of each stretch of a node, oldest stretch first; none on a store made before the table. */
export async function nodeVerifications(db: QueryRunner, node: string): Promise<VerifiedStretch[]> {
  const rows = await db.query<Record<string, string | number>>(verificationsSql(node)).catch((err: unknown) => {
    if (clickHouseCodeOf(err) !== UNKNOWN_TABLE) throw err;
    return [];
  });
  return rows.map((r) => ({
    epoch: Number(r.epoch),
    fromSeq: Number(r.from_seq),
    toSeq: Number(r.to_seq),
    fromTsUs: Number(r.f_ts),
    toTsUs: Number(r.t_ts),
    result: String(r.res) as VerificationResult,
    ...(String(r.fk) !== '' ? { firstKey: String(r.fk) } : {}),
    keysDiffering: Number(r.kd),
    detail: String(r.det),
    checkedUs: Number(r.at_us),
  }));
}

/** Each window with the checks of the stretches inside it (between two of its baselines). */
export async function withVerifications(
  db: QueryRunner,
  node: string,
  windows: RestoreWindow[],
): Promise<WindowWithChecks[]> {
  const checks = windows.length > 0 ? await nodeVerifications(db, node) : [];
  return windows.map((w) => ({
    ...w,
    verified: checks.filter(
      (c) => c.epoch === w.epoch && w.baselines.includes(c.fromSeq) && w.baselines.includes(c.toSeq),
    ),
  }));
}

/**
 * The stretches of a node that can be checked and have no check recorded: every two consecutive baselines B1 < B2
 * of one window (no hole between them) where B2 recorded the source's DEBUG DIGEST. Oldest first.
 */
export async function pendingStretches(db: QueryRunner, node: string): Promise<PendingStretch[]> {
  const windows = await restoreWindows(db, node);
  if (windows.every((w) => w.baselines.length < 2)) return [];
  const [digests, done] = await Promise.all([
    db.query<{ epoch: string | number; seq: string | number; dg: string }>(digestBaselinesSql(node)),
    nodeVerifications(db, node),
  ]);
  const digestOf = new Map(digests.map((d) => [`${Number(d.epoch)}:${Number(d.seq)}`, d.dg]));
  const checked = new Set(done.map((c) => `${c.epoch}:${c.fromSeq}:${c.toSeq}`));
  const times = await db.query<{ epoch: string | number; seq: string | number; ts_us: string | number }>(
    baselinesSql(node),
  );
  const timeOf = new Map(times.map((t) => [`${Number(t.epoch)}:${Number(t.seq)}`, Number(t.ts_us)]));
  const out: PendingStretch[] = [];
  for (const w of windows) {
    const bs = [...w.baselines].sort((a, b) => a - b);
    for (let i = 0; i + 1 < bs.length; i++) {
      const [from, to] = [bs[i]!, bs[i + 1]!];
      const digest = digestOf.get(`${w.epoch}:${to}`);
      if (!digest || checked.has(`${w.epoch}:${from}:${to}`)) continue;
      out.push({
        node,
        epoch: w.epoch,
        fromSeq: from,
        toSeq: to,
        fromTsUs: timeOf.get(`${w.epoch}:${from}`) ?? 0,
        toTsUs: timeOf.get(`${w.epoch}:${to}`) ?? 0,
        digest,
      });
    }
  }
  return out;
}

/** Stores one check (the newest row of a stretch is its state). */
export async function recordVerification(client: ClickHouseClient, row: VerificationRow): Promise<void> {
  await client.insert({ table: VERIFICATIONS_TABLE, values: [row], format: 'JSONEachRow' });
}

/** A check as the API and `flashback windows --json` show it: times readable, no epoch (the window's). */
export interface VerifiedStretchJson {
  fromSeq: number;
  toSeq: number;
  from: string;
  to: string;
  result: VerificationResult;
  firstKey?: string;
  keysDiffering: number;
  detail: string;
  checkedAt: string;
}

/** {@link VerifiedStretch} → {@link VerifiedStretchJson}. */
export function verifiedJson(v: VerifiedStretch): VerifiedStretchJson {
  const { epoch: _epoch, fromTsUs, toTsUs, checkedUs, ...rest } = v;
  return { ...rest, from: formatTsUs(fromTsUs), to: formatTsUs(toTsUs), checkedAt: formatTsUs(checkedUs) };
}

/** A stretch for people: `seq 5–80 (2026-08-03 20:27:09 – 20:29:09)`. */
export function describeStretch(s: Pick<VerifiedStretch, 'fromSeq' | 'toSeq' | 'fromTsUs' | 'toTsUs'>): string {
  return `seq ${s.fromSeq}–${s.toSeq} (${formatTsUs(s.fromTsUs)} – ${formatTsUs(s.toTsUs)})`;
}
