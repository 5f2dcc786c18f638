import { ErrorCode, InputError } from '../errors.js';
import { sqlString, sqlUInt } from './sql-literal.js';

/*
 * The timeline page's queries (api/routes/timeline.ts): write rates in time buckets and the dangerous events of a
 * range. Written once for ClickHouse 18.16 and current releases (test/timeline-sql.test.ts runs them on both).
 */

/** Event kinds counted as writes: what changed the data (not markers, heartbeats or captured key states). */
export const WRITE_KINDS = ['command', 'expired', 'evicted'] as const;

/** Bucket widths the rate chart uses, µs: 1 ms … 1 day, each a "round" step a person reads at a glance. */
export const BUCKET_STEPS_US: readonly number[] = [
  1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 15e6, 3e7, 6e7, 12e7, 3e8, 6e8, 9e8, 18e8, 36e8,
  72e8, 108e8, 216e8, 432e8, 864e8,
];

/** The smallest step of {@link BUCKET_STEPS_US} that cuts [fromUs, toUs) into at most `maxBuckets` buckets. */
export function pickBucketUs(fromUs: number, toUs: number, maxBuckets: number): number {
  const span = Math.max(1, toUs - fromUs);
  return BUCKET_STEPS_US.find((s) => Math.ceil(span / s) <= maxBuckets) ?? BUCKET_STEPS_US.at(-1)!;
}

/** A time range [fromUs, toUs) in µs, checked: from before to, both non-negative safe integers. */
export interface TimeRange {
  fromUs: number;
  toUs: number;
  /**
   * The seqs the range holds, per node and epoch (from {@link seqSpansSql}): queries of the events then read only
   * those parts of the sorting key instead of the range's whole days. @default not known: the days are read
   */
  seqSpans?: readonly SeqSpan[];
}

/** Seqs lo…hi of one epoch of a node. */
export interface SeqSpan {
  node: string;
  epoch: number;
  lo: number;
  hi: number;
}

/** Per node, epoch and second, the lowest and highest seq: kept by a materialized view (seqsSchemaStatements). */
export const SEQS_TABLE = 'flashback.event_seqs';
const SEQS_VIEW = 'flashback.event_seqs_mv';

/**
 * DDL of the seqs per second (part of schemaStatements): a MergeTree with a row per node, epoch, second and insert
 * (readers take min/max), a fill from the stored events while its view does not exist yet, then the view.
 */
export function seqsSchemaStatements(dict: string): string[] {
  const select = 'SELECT node, epoch, time AS second, min(seq) AS lo, max(seq) AS hi FROM flashback.events';
  return [
    `CREATE TABLE IF NOT EXISTS ${SEQS_TABLE} (
  node ${dict},
  epoch UInt64,
  second DateTime,
  lo UInt64,
  hi UInt64
) ENGINE = MergeTree()
PARTITION BY toDate(second)
ORDER BY (node, epoch, second)`,
    `INSERT INTO ${SEQS_TABLE} (node, epoch, second, lo, hi) ${select} WHERE (SELECT count() FROM system.tables WHERE database = 'flashback' AND name = 'event_seqs_mv') = 0 GROUP BY node, epoch, second`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${SEQS_VIEW} TO ${SEQS_TABLE} AS ${select} GROUP BY node, epoch, second`,
  ];
}

/** SQL: the seqs of a range per node and epoch (rows: node, epoch, lo, hi), whole seconds around it. */
export function seqSpansSql(r: TimeRange, node?: string): string {
  checkRange(r);
  const terms = [
    `second >= toDateTime(${sqlUInt(Math.floor(r.fromUs / 1e6))})`,
    `second <= toDateTime(${sqlUInt(Math.floor((r.toUs - 1) / 1e6))})`,
  ];
  if (node !== undefined) terms.unshift(`node = ${sqlString(node)}`);
  return `SELECT node, epoch, min(lo) AS lo, max(hi) AS hi FROM ${SEQS_TABLE} WHERE ${terms.join(' AND ')} GROUP BY node, epoch ORDER BY node, epoch`;
}

function checkRange({ fromUs, toUs }: TimeRange): void {
  sqlUInt(fromUs, 'from');
  sqlUInt(toUs, 'to');
  if (toUs <= fromUs)
    throw new InputError(ErrorCode.BadInput, `the range ends (${toUs} µs) before it starts (${fromUs} µs); swap them`);
}

/**
 * WHERE terms of a range: `time` (the partition key's column, so whole days are skipped by their minmax index) and
 * `ts_us` (the exact bound).
 */
function rangeWhere(r: TimeRange, node?: string): string {
  checkRange(r);
  const terms = [
    `time >= toDateTime(${sqlUInt(Math.floor(r.fromUs / 1e6))})`,
    `time <= toDateTime(${sqlUInt(Math.floor((r.toUs - 1) / 1e6))})`,
  ];
  if (node !== undefined) terms.unshift(`node = ${sqlString(node)}`);
  if (r.seqSpans !== undefined)
    terms.push(
      r.seqSpans.length === 0
        ? '0 = 1'
        : `(${r.seqSpans.map((s) => `(node = ${sqlString(s.node)} AND epoch = ${sqlUInt(s.epoch)} AND seq >= ${sqlUInt(s.lo)} AND seq <= ${sqlUInt(s.hi)})`).join(' OR ')})`,
    );
  // PREWHERE: the exact bound is read first, the other columns only for the rows in range (the sorting key is
  // (node, epoch, seq), so a range inside a day partition is otherwise found by reading every column of the day,
  // unless seqSpans narrow it to the key's parts).
  return `PREWHERE ts_us >= ${sqlUInt(r.fromUs)} AND ts_us < ${sqlUInt(r.toUs)} WHERE ${terms.join(' AND ')}`;
}

/**
 * SQL: writes per bucket of `bucketUs` in a range, per node (rows: node, b = bucket index from fromUs, n = writes).
 * Empty buckets have no row. Unmerged duplicate rows (a redelivered batch) are counted twice: exact counts would need
 * uniqExact(seq) per bucket, which costs several times as much on a day of 100 M events.
 */
export function rateSql(r: TimeRange, bucketUs: number, node?: string): string {
  const b = sqlUInt(bucketUs, 'bucket');
  if (bucketUs < 1) throw new InputError(ErrorCode.BadInput, 'the bucket width must be at least 1 µs');
  return `SELECT node, intDiv(ts_us - ${sqlUInt(r.fromUs)}, ${b}) AS b, count() AS n FROM flashback.events
${rangeWhere(r, node)} AND kind IN (${WRITE_KINDS.map((k) => sqlString(k)).join(', ')})
GROUP BY node, b ORDER BY node, b`;
}

/** Writes per node and second, kept by a materialized view as events are inserted: the chart's source at ≥ 1 s. */
export const RATES_TABLE = 'flashback.event_rates';
const RATES_VIEW = 'flashback.event_rates_mv';

/**
 * DDL of the per-second write counts (part of schemaStatements, run by ensureSchema): the table (SummingMergeTree,
 * day partitions like events), a fill from the events already stored, run only while the view does not exist yet
 * (the first start after an upgrade; nothing on a new store), then the view that counts every insert from then on.
 * @param dict the node column's type (LowCardinality(String) where the server has it)
 */
export function ratesSchemaStatements(dict: string): string[] {
  const writes = `kind IN (${WRITE_KINDS.map((k) => sqlString(k)).join(', ')})`;
  const select = `SELECT node, time AS second, count() AS n FROM flashback.events WHERE ${writes}`;
  return [
    `CREATE TABLE IF NOT EXISTS ${RATES_TABLE} (
  node ${dict},
  second DateTime,
  n UInt64
) ENGINE = SummingMergeTree(n)
PARTITION BY toDate(second)
ORDER BY (node, second)`,
    `INSERT INTO ${RATES_TABLE} (node, second, n) ${select} AND (SELECT count() FROM system.tables WHERE database = 'flashback' AND name = 'event_rates_mv') = 0 GROUP BY node, second`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${RATES_VIEW} TO ${RATES_TABLE} AS ${select} GROUP BY node, second`,
  ];
}

/**
 * SQL: like {@link rateSql} from the per-second counts, for buckets of whole seconds over a range of whole buckets
 * (writeRates aligns it): reads 86 400 rows per node and day instead of every event.
 */
export function rateFromSecondsSql(r: TimeRange, bucketUs: number, node?: string): string {
  checkRange(r);
  if (bucketUs % 1e6 !== 0 || r.fromUs % 1e6 !== 0 || r.toUs % 1e6 !== 0)
    throw new InputError(ErrorCode.BadInput, 'per-second counts need whole-second buckets and bounds');
  const fromS = r.fromUs / 1e6;
  const terms = [`second >= toDateTime(${sqlUInt(fromS)})`, `second < toDateTime(${sqlUInt(r.toUs / 1e6)})`];
  if (node !== undefined) terms.unshift(`node = ${sqlString(node)}`);
  return `SELECT node, intDiv(toUInt64(second) - ${sqlUInt(fromS)}, ${sqlUInt(bucketUs / 1e6, 'bucket')}) AS b, sum(n) AS n FROM ${RATES_TABLE}
WHERE ${terms.join(' AND ')}
GROUP BY node, b ORDER BY node, b`;
}

/** Commands that are dangerous whatever their arguments. */
export const FLUSH_COMMANDS = ['FLUSHALL', 'FLUSHDB', 'SWAPDB'] as const;
/** Commands that delete the keys they name. */
export const DELETE_COMMANDS = ['DEL', 'UNLINK'] as const;

/** DEL/UNLINK of at least this many keys are kept in the marks table; a smaller `manyKeys` reads the events. */
export const MARKS_MIN_KEYS = 10;
/** Dangerous single events, kept by a materialized view as events are inserted: a day's marks without a scan. */
export const MARKS_TABLE = 'flashback.event_marks';
const MARKS_VIEW = 'flashback.event_marks_mv';

const list = (xs: readonly string[]) => xs.map((x) => sqlString(x)).join(', ');
const dangerous = (manyKeys: number) =>
  `(command IN (${list(FLUSH_COMMANDS)}) OR (command IN (${list(DELETE_COMMANDS)}) AND length(keys) >= ${sqlUInt(manyKeys, 'manyKeys')}) OR command = 'RENAME')`;

/**
 * DDL of the marks table (part of schemaStatements): the table, a fill from the stored events while its view does not
 * exist yet (as {@link ratesSchemaStatements}), then the view.
 */
export function marksSchemaStatements(dict: string): string[] {
  const columns = 'node, epoch, seq, ts_us, time, db, client, command, keys, args, tx';
  const select = `SELECT ${columns} FROM flashback.events WHERE kind = 'command' AND ${dangerous(MARKS_MIN_KEYS)}`;
  return [
    `CREATE TABLE IF NOT EXISTS ${MARKS_TABLE} (
  node ${dict},
  epoch UInt64,
  seq UInt64,
  ts_us UInt64,
  time DateTime,
  db UInt16,
  client String,
  command String,
  keys Array(String),
  args Array(String),
  tx UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (node, epoch, seq)`,
    `INSERT INTO ${MARKS_TABLE} (${columns}) ${select} AND (SELECT count() FROM system.tables WHERE database = 'flashback' AND name = 'event_marks_mv') = 0`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${MARKS_VIEW} TO ${MARKS_TABLE} AS ${select}`,
  ];
}

/**
 * SQL: single events of a range that are dangerous by themselves or need a closer look: FLUSHALL, FLUSHDB, SWAPDB,
 * DEL/UNLINK of at least `manyKeys` keys, and RENAME (over an existing key or not: {@link renameTargetSql} tells).
 * From the marks table when it holds them all (`manyKeys` ≥ MARKS_MIN_KEYS, `fromMarks`), else from the events.
 * Duplicates collapse with LIMIT 1 BY. (Aliases must not reuse a column's name: ClickHouse uses them in WHERE.)
 */
export function dangerousEventsSql(
  r: TimeRange,
  manyKeys: number,
  limit: number,
  node?: string,
  fromMarks = manyKeys >= MARKS_MIN_KEYS,
): string {
  if (fromMarks && manyKeys < MARKS_MIN_KEYS)
    throw new InputError(ErrorCode.BadInput, `the marks table holds deletes of ${MARKS_MIN_KEYS} keys or more only`);
  return `SELECT node, epoch, seq, ts_us, db, client, command, length(keys) AS nkeys, arraySlice(keys, 1, 3) AS first_keys, arraySlice(args, 1, 6) AS first_args, tx
FROM ${fromMarks ? MARKS_TABLE : 'flashback.events'}
${rangeWhere(r, node)}${fromMarks ? '' : " AND kind = 'command'"} AND ${dangerous(manyKeys)}
ORDER BY ts_us, seq LIMIT 1 BY node, epoch, seq LIMIT ${sqlUInt(limit, 'limit')}`;
}

/**
 * SQL: transactions and scripts of a range that wrote at least `manyKeys` distinct keys (rows: node, epoch, tx = seq of
 * its first event; first_ts, first_db, first_client, first_command of its first event; commands; nkeys; events).
 */
export function bigTxSql(r: TimeRange, manyKeys: number, limit: number, node?: string): string {
  return `SELECT node, epoch, tx, min(ts_us) AS first_ts, argMin(db, seq) AS first_db, argMin(client, seq) AS first_client, argMin(command, seq) AS first_command, groupUniqArray(command) AS commands, uniqExactArray(keys) AS nkeys, count() AS events
FROM flashback.events
${rangeWhere(r, node)} AND kind = 'command' AND tx != 0
GROUP BY node, epoch, tx HAVING nkeys >= ${sqlUInt(manyKeys, 'manyKeys')}
ORDER BY first_ts LIMIT ${sqlUInt(limit, 'limit')}`;
}

/**
 * SQL: the last event before `seq` (same node, epoch, db) that touched `key`, and whether a FLUSHALL/FLUSHDB came
 * after it: tells whether a RENAME onto `key` at `seq` replaced an existing key. A key that only the baseline holds has
 * no event: such a RENAME is not known to overwrite.
 */
export function renameTargetSql(node: string, epoch: number, db: number, seq: number, key: string): string {
  const where = `node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq < ${sqlUInt(seq)}`;
  return `SELECT seq, kind, command, keys FROM flashback.events
WHERE ${where} AND ((db = ${sqlUInt(db)} AND (key = ${sqlString(key)} OR has(keys, ${sqlString(key)}))) OR command IN ('FLUSHALL', 'FLUSHDB', 'SWAPDB'))
ORDER BY seq DESC LIMIT 1`;
}

/** Type families of the commands that create or overwrite a key's value; a name not listed is '' (no type). */
export const COMMAND_TYPES: Readonly<Record<string, string>> = Object.fromEntries(
  (
    [
      ['string', 'SET SETEX PSETEX SETNX GETSET GETEX APPEND SETRANGE INCR INCRBY DECR DECRBY INCRBYFLOAT MSET MSETNX'],
      ['hash', 'HSET HSETNX HMSET HINCRBY HINCRBYFLOAT HSETEX HGETEX'],
      ['list', 'LPUSH RPUSH LPUSHX RPUSHX LINSERT LSET'],
      ['set', 'SADD SMOVE'],
      ['zset', 'ZADD ZINCRBY'],
      ['stream', 'XADD XGROUP'],
      ['del', 'DEL UNLINK GETDEL EXPIRED EVICTED'],
    ] as const
  ).flatMap(([type, commands]) => commands.split(' ').map((c) => [c, type])),
);

/**
 * SQL: the keys of a range written with commands of two or more types (rows: node, epoch, db, key, h = [(seq, type,
 * ts_us)] in seq order); typeChanges() finds the changes in them. Only the range's own writes count: a key whose
 * earlier type lies before the range shows no change.
 */
export function typeMixSql(r: TimeRange, limit: number, node?: string): string {
  const names = Object.keys(COMMAND_TYPES);
  const fam = `transform(command, [${names.map((n) => sqlString(n)).join(', ')}], [${names.map((n) => sqlString(COMMAND_TYPES[n]!)).join(', ')}], '')`;
  return `SELECT node, epoch, db, key, arraySort(x -> x.1, groupArray((seq, fam, ts_us, command))) AS h FROM (
SELECT node, epoch, db, key, seq, ts_us, command, ${fam} AS fam FROM flashback.events
${rangeWhere(r, node)} AND kind IN (${WRITE_KINDS.map((k) => sqlString(k)).join(', ')}) AND key != ''
) WHERE fam != ''
GROUP BY node, epoch, db, key HAVING uniqExactIf(fam, fam != 'del') > 1
ORDER BY node, epoch, db, key LIMIT ${sqlUInt(limit, 'limit')}`;
}

/** One write of a key's history as typeMixSql gives it. */
export type TypedWrite = [seq: number, type: string, tsUs: number, command: string];

/** The only commands of COMMAND_TYPES that replace a key of another type; any other fails with WRONGTYPE. */
export const OVERWRITING_COMMANDS: ReadonlySet<string> = new Set(['SET', 'SETEX', 'PSETEX', 'MSET']);

/**
 * The writes of a key that gave it another type than it had (no delete in between): each is a type change. A write of
 * another type by a command that cannot replace a key (HSET on a string) failed at the source, though MONITOR shows
 * it: it changes nothing.
 */
export function typeChanges(history: readonly TypedWrite[]): { seq: number; tsUs: number; from: string; to: string }[] {
  const out = [];
  let current = '';
  for (const [seq, type, tsUs, command] of history) {
    if (type === 'del') current = '';
    else if (current === '' || current === type) current = type;
    else if (OVERWRITING_COMMANDS.has(String(command).toUpperCase())) {
      out.push({ seq: Number(seq), tsUs: Number(tsUs), from: current, to: type });
      current = type;
    }
  }
  return out;
}

/** SQL: the first stored event after `seq` of an epoch (where a hole ends). */
export function nextEventSql(node: string, epoch: number, seq: number): string {
  return `SELECT min(seq) AS next_seq, argMin(ts_us, seq) AS next_ts FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq > ${sqlUInt(seq)}`;
}

/** SQL: client, command and args of given events of an epoch (rows: seq, client, command, args; by seq). */
export function eventsWhoSql(node: string, epoch: number, seqs: readonly number[]): string {
  return `SELECT seq, any(client) AS who, any(command) AS what, any(args) AS argv FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq IN (${seqs.map((x) => sqlUInt(x)).join(', ') || '0'}) GROUP BY seq ORDER BY seq`;
}
