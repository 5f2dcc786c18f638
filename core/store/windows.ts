import { clickHouseCodeOf } from './clickhouse.js';
import { sqlString, sqlUInt } from './sql-literal.js';

/** ClickHouse's UNKNOWN_TABLE. */
const UNKNOWN_TABLE = 60;

/** What windows need from the store: a query returning JSON rows. */
export interface QueryRunner {
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
}

/** A span of one epoch that can be restored: every instant from its baseline to its last contiguous event. */
export interface RestoreWindow {
  node: string;
  epoch: number;
  /** Baseline that opens the window (its marker seq and time). */
  fromSeq: number;
  fromTsUs: number;
  /** Last event with no hole between it and the baseline. */
  toSeq: number;
  toTsUs: number;
  /** Baselines inside the window (marker seqs, ascending). */
  baselines: number[];
  /**
   * Events in the window a restore server could not load: restores past one skip it and warn; `--before-seq` of one is
   * its state just before.
   */
  broken: BrokenEvent[];
}

/** An event a restore server could not load (flashback.broken_events). */
export interface BrokenEvent {
  seq: number;
  tsUs: number;
  command: string;
  /** argv, readable and shortened. */
  args: string;
  /** What the restore server said. */
  reason: string;
}

/** SQL: a node's broken events. */
export function brokenSql(node: string): string {
  return `SELECT epoch, seq, any(ts_us) AS ts_us, any(command) AS command, any(args) AS args, any(reason) AS reason FROM flashback.broken_events WHERE node = ${sqlString(node)} GROUP BY epoch, seq ORDER BY epoch, seq`;
}

/** Per-epoch facts about the stored history of a node. */
export interface EpochSummary {
  epoch: number;
  firstSeq: number;
  lastSeq: number;
  events: number;
  firstTsUs: number;
  lastTsUs: number;
  /** Seqs after which one or more events are missing (a hole follows each), ascending. */
  holesAfter: number[];
}

/** SQL: per-epoch counts of a node (18.16 and current both accept it). */
export function epochSummarySql(node: string): string {
  return `SELECT epoch, min(seq) AS first_seq, max(seq) AS last_seq, uniqExact(seq) AS events, min(ts_us) AS first_ts, max(ts_us) AS last_ts
FROM flashback.events WHERE node = ${sqlString(node)} GROUP BY epoch ORDER BY epoch`;
}

/**
 * SQL: seqs of an epoch that are not followed by the next seq (each is the last event before a hole, or the last
 * event).
 */
export function holeSql(node: string, epoch: number): string {
  const where = `node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)}`;
  return `SELECT DISTINCT seq FROM flashback.events WHERE ${where} AND (seq + 1) NOT IN (SELECT seq FROM flashback.events WHERE ${where}) ORDER BY seq`;
}

/** SQL: a node's baselines, oldest first. */
export function baselinesSql(node: string): string {
  return `SELECT epoch, seq, ts_us FROM flashback.baselines WHERE node = ${sqlString(node)} GROUP BY epoch, seq, ts_us ORDER BY epoch, seq`;
}

/** SQL: the time of given events. */
export function eventTimesSql(node: string, epoch: number, seqs: number[]): string {
  return `SELECT seq, any(ts_us) AS ts_us, any(tx) AS tx_id FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq IN (${seqs.map((x) => sqlUInt(x)).join(', ') || '0'}) GROUP BY seq`;
}

/** SQL: every node that has captured events. */
export function nodesSql(): string {
  return `SELECT node, count() AS events, max(ts_us) AS last_ts, max(epoch) AS last_epoch FROM flashback.events GROUP BY node ORDER BY node`;
}

/** Reads the epochs of a node, with their holes. */
export async function epochSummaries(db: QueryRunner, node: string): Promise<EpochSummary[]> {
  const rows = await db.query<Record<string, string | number>>(epochSummarySql(node));
  const out: EpochSummary[] = [];
  for (const r of rows) {
    const s: EpochSummary = {
      epoch: Number(r.epoch),
      firstSeq: Number(r.first_seq),
      lastSeq: Number(r.last_seq),
      events: Number(r.events),
      firstTsUs: Number(r.first_ts),
      lastTsUs: Number(r.last_ts),
      holesAfter: [],
    };
    const complete = s.events === s.lastSeq - s.firstSeq + 1;
    if (!complete) {
      const holes = await db.query<{ seq: string | number }>(holeSql(node, s.epoch));
      s.holesAfter = holes.map((h) => Number(h.seq)).filter((seq) => seq !== s.lastSeq);
    }
    out.push(s);
  }
  return out;
}

/**
 * A node's restorable windows: per epoch, from each baseline to the last
 * event before the next hole; baselines in the same contiguous run share one
 * window. Nothing is restorable across a hole or before an epoch's first baseline.
 */
export async function restoreWindows(db: QueryRunner, node: string): Promise<RestoreWindow[]> {
  const [epochs, baselineRows, brokenRows] = await Promise.all([
    epochSummaries(db, node),
    db.query<Record<string, string | number>>(baselinesSql(node)),
    // A store whose schema predates flashback.broken_events has none; any other failure is the caller's to see.
    db.query<Record<string, string | number>>(brokenSql(node)).catch((err: unknown) => {
      if (clickHouseCodeOf(err) !== UNKNOWN_TABLE) throw err;
      return [];
    }),
  ]);
  const byEpoch = new Map<number, { seq: number; tsUs: number }[]>();
  for (const b of baselineRows) {
    const e = Number(b.epoch);
    if (!byEpoch.has(e)) byEpoch.set(e, []);
    byEpoch.get(e)!.push({ seq: Number(b.seq), tsUs: Number(b.ts_us) });
  }
  const windows: RestoreWindow[] = [];
  for (const ep of epochs) {
    const bases = byEpoch.get(ep.epoch) ?? [];
    const ends: number[] = [];
    let current: RestoreWindow | undefined;
    for (const b of bases) {
      // The baseline holds the dataset up to its marker: only contiguity from the marker on matters.
      if (b.seq < ep.firstSeq || b.seq > ep.lastSeq) continue;
      const end = ep.holesAfter.find((h) => h >= b.seq) ?? ep.lastSeq;
      if (current && current.toSeq === end) {
        current.baselines.push(b.seq);
        continue;
      }
      current = {
        node,
        epoch: ep.epoch,
        fromSeq: b.seq,
        fromTsUs: b.tsUs,
        toSeq: end,
        toTsUs: 0,
        baselines: [b.seq],
        broken: [],
      };
      windows.push(current);
      ends.push(end);
    }
    if (ends.length > 0) {
      const ws = windows.filter((w) => w.epoch === ep.epoch);
      const facts = async (seqs: number[]) => {
        const rows = await db.query<{ seq: string | number; ts_us: string | number; tx_id: string | number }>(
          eventTimesSql(node, ep.epoch, seqs),
        );
        return new Map(rows.map((r) => [Number(r.seq), { tsUs: Number(r.ts_us), tx: Number(r.tx_id) }]));
      };
      const atEnd = await facts(ends);
      // A window must not end inside a transaction whose rest is not stored (yet): end it before that transaction.
      const cut = ws.filter((w) => (atEnd.get(w.toSeq)?.tx ?? 0) !== 0);
      for (const w of cut) w.toSeq = atEnd.get(w.toSeq)!.tx - 1;
      const before =
        cut.length > 0 ? await facts(cut.map((w) => w.toSeq)) : new Map<number, { tsUs: number; tx: number }>();
      for (const w of ws) w.toTsUs = (before.get(w.toSeq) ?? atEnd.get(w.toSeq))?.tsUs ?? ep.lastTsUs;
    }
  }
  for (const r of brokenRows) {
    const seq = Number(r.seq);
    const w = windows.find((x) => x.epoch === Number(r.epoch) && x.fromSeq < seq && seq <= x.toSeq);
    w?.broken.push({
      seq,
      tsUs: Number(r.ts_us),
      command: String(r.command),
      args: String(r.args),
      reason: String(r.reason),
    });
  }
  // A transaction cut before its baseline leaves nothing restorable in that window.
  return windows.filter((w) => w.toSeq >= w.fromSeq);
}
