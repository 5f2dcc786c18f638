import { formatTsUs } from '../time.js';
import { clickHouseCodeOf } from './clickhouse.js';
import {
  bigTxSql,
  dangerousEventsSql,
  eventsWhoSql,
  nextEventSql,
  pickBucketUs,
  rateFromSecondsSql,
  rateSql,
  seqSpansSql,
  renameTargetSql,
  typeChanges,
  typeMixSql,
  type TimeRange,
  type TypedWrite,
} from './timeline-sql.js';
import { baselinesSql, epochSummaries, eventTimesSql, restoreWindows, type QueryRunner } from './windows.js';

/** ClickHouse's UNKNOWN_TABLE. */
const UNKNOWN_TABLE = 60;

/** Writes per bucket of one node over a range. */
export interface RateSeries {
  node: string;
  /** Writes in bucket i = [fromUs + i·bucketUs, fromUs + (i+1)·bucketUs). */
  counts: number[];
}

/** Write rates of a range: what the timeline chart draws. */
export interface Rates {
  fromUs: number;
  toUs: number;
  bucketUs: number;
  nodes: RateSeries[];
}

/**
 * Writes per bucket of every node (or one) over `asked`, in at most `maxBuckets` round-width buckets; buckets of 1 s
 * or more are aligned to multiples of their width (the answer's fromUs/toUs say the range counted).
 */
export async function writeRates(db: QueryRunner, asked: TimeRange, maxBuckets: number, node?: string): Promise<Rates> {
  const bucketUs = pickBucketUs(asked.fromUs, asked.toUs, maxBuckets);
  type RateRow = { node: string; b: string | number; n: string | number };
  let range = asked;
  let rows: RateRow[] | undefined;
  if (bucketUs >= 1e6) {
    // Whole-second buckets come from the per-second counts, over the range widened to whole buckets.
    range = {
      fromUs: Math.floor(asked.fromUs / bucketUs) * bucketUs,
      toUs: Math.ceil(asked.toUs / bucketUs) * bucketUs,
    };
    rows = await db.query<RateRow>(rateFromSecondsSql(range, bucketUs, node)).catch((err: unknown) => {
      // A store the sink has not migrated yet has no per-second counts: count the events.
      if (clickHouseCodeOf(err) !== UNKNOWN_TABLE) throw err;
      return undefined;
    });
  }
  rows ??= await db.query<RateRow>(rateSql(await withSeqSpans(db, range, node), bucketUs, node));
  const buckets = Math.ceil((range.toUs - range.fromUs) / bucketUs);
  const byNode = new Map<string, number[]>();
  for (const r of rows) {
    let counts = byNode.get(r.node);
    if (!counts) byNode.set(r.node, (counts = new Array<number>(buckets).fill(0)));
    const b = Number(r.b);
    if (b < buckets) counts[b] = Number(r.n);
  }
  return { ...range, bucketUs, nodes: [...byNode].map(([n, counts]) => ({ node: n, counts })) };
}

/** Ranges up to this long are narrowed to their seqs first (a longer one reads its days anyway). */
const SEQ_SPANS_MAX_US = 6 * 3_600e6;

/**
 * The range with the seqs it holds (per node and epoch, from flashback.event_seqs), so queries of the events read
 * only those parts; the range as it is when it is long, spans many epochs, or the store has no seqs table yet.
 */
export async function withSeqSpans(db: QueryRunner, range: TimeRange, node?: string): Promise<TimeRange> {
  if (range.toUs - range.fromUs > SEQ_SPANS_MAX_US) return range;
  const rows = await db
    .query<{ node: string; epoch: number | string; lo: number | string; hi: number | string }>(seqSpansSql(range, node))
    .catch((err: unknown) => {
      if (clickHouseCodeOf(err) !== UNKNOWN_TABLE) throw err;
      return undefined;
    });
  if (rows === undefined || rows.length > 64) return range;
  return {
    ...range,
    seqSpans: rows.map((r) => ({ node: r.node, epoch: Number(r.epoch), lo: Number(r.lo), hi: Number(r.hi) })),
  };
}

/** What makes an event dangerous. */
export const MarkKind = {
  Flush: 'flush',
  SwapDb: 'swapdb',
  ManyKeysDeleted: 'mass-delete',
  BigTransaction: 'big-tx',
  RenameOver: 'rename-over',
  TypeChange: 'type-change',
} as const;
export type MarkKind = (typeof MarkKind)[keyof typeof MarkKind];

/** A dangerous event on the timeline: what, who, and where to restore to just before it. */
export interface DangerMark {
  kind: MarkKind;
  node: string;
  epoch: number;
  /** The event (for a transaction: its first event); `beforeSeq` of a restore to just before it. */
  seq: number;
  tsUs: number;
  time: string;
  db: number;
  /** `ip:port`, `lua`, `agent` … */
  client: string;
  command: string;
  /** Keys it touched (the first few), readable. */
  keys: string[];
  /** How many keys it touched. */
  keyCount: number;
  /** One line for people: what it did, arguments shortened. */
  summary: string;
}

/** Options of {@link dangerousEvents}. */
export interface DangerOptions {
  /** Only this node. @default every node */
  node?: string;
  /** A DEL/UNLINK, transaction or script touching at least this many keys is marked. @default 10 */
  manyKeys?: number;
  /** At most this many marks of each kind. @default 500 */
  limit?: number;
  /**
   * Type changes are looked for in ranges up to this long, µs (their query groups every write of the range by key).
   * @default 3_600_000_000 (one hour)
   */
  typeChangeMaxUs?: number;
}

/** Arguments as one shortened line: each at most 40 characters, the whole at most 160. */
export function shortArgs(args: readonly string[]): string {
  const line = args.map((a) => (a.length > 40 ? `${a.slice(0, 39)}…` : a)).join(' ');
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

type Row = Record<string, unknown>;
const num = (v: unknown) => Number(v);
const strs = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);

/** The dangerous events of a range, oldest first (see MarkKind; DESIGN.md, Interfaces: the timeline page). */
export async function dangerousEvents(db: QueryRunner, asked: TimeRange, o: DangerOptions = {}): Promise<DangerMark[]> {
  const { node, manyKeys = 10, limit = 500, typeChangeMaxUs = 3_600e6 } = o;
  const range = await withSeqSpans(db, asked, node);
  const withTypes = range.toUs - range.fromUs <= typeChangeMaxUs;
  const [single, txs, mixes] = await Promise.all([
    db.query<Row>(dangerousEventsSql(range, manyKeys, limit, node)).catch((err: unknown) => {
      // A store the sink has not migrated yet has no marks table: look in the events.
      if (clickHouseCodeOf(err) !== UNKNOWN_TABLE) throw err;
      return db.query<Row>(dangerousEventsSql(range, manyKeys, limit, node, false));
    }),
    db.query<Row>(bigTxSql(range, manyKeys, limit, node)),
    withTypes ? db.query<Row>(typeMixSql(range, limit, node)) : Promise.resolve([]),
  ]);
  const marks: DangerMark[] = [];
  const base = (r: Row) => ({
    node: String(r.node),
    epoch: num(r.epoch),
    seq: num(r.seq),
    tsUs: num(r.ts_us),
    time: formatTsUs(num(r.ts_us)),
    db: num(r.db),
    client: String(r.client),
    command: String(r.command),
    keys: strs(r.first_keys),
    keyCount: num(r.nkeys),
    summary: shortArgs(strs(r.first_args)),
  });
  for (const r of single) {
    const m = base(r);
    if (m.command === 'RENAME') {
      const [src, dst] = [m.keys[0] ?? '', m.keys[1] ?? ''];
      const last = (await db.query<Row>(renameTargetSql(m.node, m.epoch, m.db, m.seq, dst)))[0];
      const gone = ['DEL', 'UNLINK', 'GETDEL', 'FLUSHALL', 'FLUSHDB', 'SWAPDB', 'MOVE', 'EXPIRED', 'EVICTED'];
      const renamedAway = last && String(last.command) === 'RENAME' && strs(last.keys)[0] === dst;
      if (!last || gone.includes(String(last.command).toUpperCase()) || renamedAway) continue;
      marks.push({
        ...m,
        kind: MarkKind.RenameOver,
        summary: `${m.summary} (replaced "${dst}", last written by ${String(last.command)} at seq ${num(last.seq)}; "${src}" gone)`,
      });
    } else if (m.command === 'SWAPDB') marks.push({ ...m, kind: MarkKind.SwapDb });
    else if (m.command === 'FLUSHALL' || m.command === 'FLUSHDB')
      marks.push({
        ...m,
        kind: MarkKind.Flush,
        summary: m.command === 'FLUSHDB' ? `${m.summary} (db ${m.db})` : m.summary,
      });
    else marks.push({ ...m, kind: MarkKind.ManyKeysDeleted, summary: `${m.summary} (${m.keyCount} keys)` });
  }
  for (const r of txs) {
    const commands = strs(r.commands);
    marks.push({
      kind: MarkKind.BigTransaction,
      node: String(r.node),
      epoch: num(r.epoch),
      seq: num(r.tx),
      tsUs: num(r.first_ts),
      time: formatTsUs(num(r.first_ts)),
      db: num(r.first_db),
      client: String(r.first_client),
      command: String(r.first_command),
      keys: [],
      keyCount: num(r.nkeys),
      summary: `transaction/script of ${num(r.events)} writes to ${num(r.nkeys)} keys: ${commands.slice(0, 6).join(', ')}${commands.length > 6 ? ' …' : ''}`,
    });
  }
  for (const r of mixes) {
    const h = (r.h as unknown[][]).map(([s, t, u, c]) => [num(s), String(t), num(u), String(c)] as TypedWrite);
    for (const c of typeChanges(h))
      marks.push({
        kind: MarkKind.TypeChange,
        node: String(r.node),
        epoch: num(r.epoch),
        seq: c.seq,
        tsUs: c.tsUs,
        time: formatTsUs(c.tsUs),
        db: num(r.db),
        client: '',
        command: '',
        keys: [String(r.key)],
        keyCount: 1,
        summary: `"${String(r.key)}" went from ${c.from} to ${c.to}`,
      });
  }
  await fillWho(db, marks);
  return marks.sort((a, b) => a.tsUs - b.tsUs || a.seq - b.seq);
}

/** Type changes come from a grouped query without client or command: read them for those events. */
async function fillWho(db: QueryRunner, marks: DangerMark[]): Promise<void> {
  const missing = marks.filter((m) => m.command === '');
  const groups = new Map<string, DangerMark[]>();
  for (const m of missing) {
    const k = JSON.stringify([m.node, m.epoch]);
    groups.set(k, [...(groups.get(k) ?? []), m]);
  }
  for (const [k, ms] of groups) {
    const [node, epoch] = JSON.parse(k) as [string, number];
    const seqs = ms.map((m) => m.seq);
    const rows = await db.query<Row>(eventsWhoSql(node, epoch, seqs));
    const bySeq = new Map(rows.map((r) => [num(r.seq), r]));
    for (const m of ms) {
      const r = bySeq.get(m.seq);
      if (!r) continue;
      m.client = String(r.who);
      m.command = String(r.what);
      m.summary = `${m.summary}: ${shortArgs(strs(r.argv))}`;
    }
  }
}

/** A span of an epoch with missing events: nothing is restorable across it. */
export interface Hole {
  epoch: number;
  /** Last event before the hole. */
  afterSeq: number;
  fromTsUs: number;
  /** First event after it (0 and toTsUs = fromTsUs when none was stored yet). */
  nextSeq: number;
  toTsUs: number;
}

/** What the timeline draws behind a node's rate: restorable windows as bands, holes, baselines as ticks. */
export interface NodeSpans {
  node: string;
  windows: { epoch: number; fromSeq: number; fromTsUs: number; toSeq: number; toTsUs: number }[];
  baselines: { epoch: number; seq: number; tsUs: number }[];
  holes: Hole[];
}

/** A node's windows, baselines and holes (at most 100 holes per epoch). */
export async function nodeSpans(db: QueryRunner, node: string): Promise<NodeSpans> {
  const [windows, baselineRows, epochs] = await Promise.all([
    restoreWindows(db, node),
    db.query<Row>(baselinesSql(node)),
    epochSummaries(db, node),
  ]);
  const holes: Hole[] = [];
  for (const ep of epochs) {
    const after = ep.holesAfter.slice(0, 100);
    if (after.length === 0) continue;
    const times = new Map(
      (await db.query<Row>(eventTimesSql(node, ep.epoch, after))).map((r) => [num(r.seq), num(r.ts_us)]),
    );
    for (const seq of after) {
      const next = (await db.query<Row>(nextEventSql(node, ep.epoch, seq)))[0];
      const fromTsUs = times.get(seq) ?? 0;
      const nextSeq = num(next?.next_seq ?? 0);
      holes.push({
        epoch: ep.epoch,
        afterSeq: seq,
        fromTsUs,
        nextSeq,
        toTsUs: nextSeq > 0 ? num(next!.next_ts) : fromTsUs,
      });
    }
  }
  return {
    node,
    windows: windows.map((w) => ({
      epoch: w.epoch,
      fromSeq: w.fromSeq,
      fromTsUs: w.fromTsUs,
      toSeq: w.toSeq,
      toTsUs: w.toTsUs,
    })),
    baselines: baselineRows.map((b) => ({ epoch: num(b.epoch), seq: num(b.seq), tsUs: num(b.ts_us) })),
    holes,
  };
}
