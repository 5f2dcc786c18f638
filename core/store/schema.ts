import { marksSchemaStatements, ratesSchemaStatements, seqsSchemaStatements } from './timeline-sql.js';

/**
 * ClickHouse schema of flashback (DESIGN.md, Storage). The DDL is
 * version-aware: ClickHouse 18.16 rejects LowCardinality (without an
 * experimental setting), CODEC and table TTL, so it gets plain types; current
 * servers get the compact ones. Queries are written once, for both.
 * No table TTL on any version: retention drops whole day partitions.
 */

/** Database holding every flashback table. */
export const DATABASE = 'flashback';
export const EVENTS_TABLE = `${DATABASE}.events`;
export const BASELINES_TABLE = `${DATABASE}.baselines`;
export const EPOCHS_TABLE = `${DATABASE}.epochs`;
export const BROKEN_EVENTS_TABLE = `${DATABASE}.broken_events`;
export const VERIFICATIONS_TABLE = `${DATABASE}.verifications`;

/** A row of `flashback.events` as inserted (JSONEachRow). UInt64 columns are numbers: seq and ts_us stay below 2^53. */
export interface EventRow {
  node: string;
  epoch: number;
  seq: number;
  ts_us: number;
  /** Unix seconds (DateTime). */
  time: number;
  db: number;
  client: string;
  kind: string;
  command: string;
  /** First key, readable (for `WHERE key = 'userprofile'`); '' when the event has none. */
  key: string;
  /** Keys, readable (binary bytes escaped). */
  keys: string[];
  /** argv as issued, readable. */
  args: string[];
  /** Base64 of the RESP encoding of the replay argv: the exact bytes; '' for markers. */
  replay: string;
  tx: number;
}

/** A row of `flashback.baselines`. */
export interface BaselineRow {
  node: string;
  epoch: number;
  seq: number;
  ts_us: number;
  /** Unix seconds (DateTime). */
  time: number;
  marker: string;
  rdb_object: string;
  tail_object: string;
  rdb_bytes: number;
  tail_bytes: number;
  keys: number;
  digest: string;
  /** JSON of the baseline's SourceInfo (core/baseline.ts); '' when the agent did not record it. */
  source?: string;
  /** SHA-256 of the RDB object as its agent wrote it (64 hex digits); '' when the agent did not record it. */
  rdb_sha256?: string;
  /** SHA-256 of the tail object, as `rdb_sha256`. */
  tail_sha256?: string;
}

/**
 * A row of `flashback.broken_events`: an event a restore server could not load (it aborted, or refused the AOF),
 * recorded by the restore that found it. Later restores skip it and say so; windows show it.
 */
export interface BrokenEventRow {
  node: string;
  epoch: number;
  seq: number;
  ts_us: number;
  command: string;
  /** argv as issued, readable and shortened. */
  args: string;
  /** What the restore server said (its log line). */
  reason: string;
  /** When a restore found it, µs. */
  found_us: number;
}

/**
 * A row of `flashback.verifications`: one background check of the stretch between two consecutive baselines of an
 * epoch (restorer/verify-stretch.ts). The newest check of a stretch (by `checked_us`) is its state.
 */
export interface VerificationRow {
  node: string;
  epoch: number;
  /** Marker seq of the baseline the check restored from. */
  from_seq: number;
  /** Marker seq of the next baseline, whose recorded digest the replay must reach. */
  to_seq: number;
  from_ts_us: number;
  to_ts_us: number;
  /** `match`, `mismatch`, or `unverifiable` (the check cannot be made: `detail` says why). */
  result: string;
  /** DEBUG DIGEST the source recorded at `to_seq`. */
  source_digest: string;
  /** DEBUG DIGEST of the restore of from_seq + the events up to to_seq ('' when none was made). */
  restored_digest: string;
  /** Readable name of the first differing key of a mismatch ('' otherwise). */
  first_key: string;
  /** Differing keys found (a mismatch), or keys only excused by a TTL that passed before the check (a match). */
  keys_differing: number;
  detail: string;
  /** Events replayed. */
  events: number;
  seconds: number;
  /** When the check finished, µs. */
  checked_us: number;
}

/** A row of `flashback.epochs`. */
export interface EpochRow {
  node: string;
  epoch: number;
  started_us: number;
  reason: string;
}

/** Version features the DDL depends on. */
export interface SchemaFeatures {
  /** LowCardinality(String) without an experimental setting. */
  lowCardinality: boolean;
  /** Column compression codecs `CODEC(…)`. */
  codecs: boolean;
}

/** Major and minor of a `SELECT version()` answer (`18.16.1`, `26.7.2.1`); [0, 0] when unparsable. */
export function parseVersion(version: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * What a server of this version accepts. Both features exist since 19.x;
 * from 20.1 on they are stable, which is the line we draw. Anything older,
 * or an unparsable version, gets the plain 18.16 schema.
 */
export function schemaFeatures(version: string): SchemaFeatures {
  const [major] = parseVersion(version);
  const modern = major >= 20;
  return { lowCardinality: modern, codecs: modern };
}

/** The DDL for a server of `version` (from `SELECT version()`); every statement is idempotent (IF NOT EXISTS). */
export function schemaStatements(version: string): string[] {
  const f = schemaFeatures(version);
  const dict = f.lowCardinality ? 'LowCardinality(String)' : 'String';
  const delta = f.codecs ? ' CODEC(Delta, ZSTD)' : '';
  const zstd = f.codecs ? ' CODEC(ZSTD)' : '';
  return [
    `CREATE DATABASE IF NOT EXISTS ${DATABASE}`,
    `CREATE TABLE IF NOT EXISTS ${EVENTS_TABLE} (
  node ${dict},
  epoch UInt64,
  seq UInt64${delta},
  ts_us UInt64${delta},
  time DateTime,
  db UInt16,
  client ${dict},
  kind ${dict},
  command ${dict},
  key String,
  keys Array(String),
  args Array(String)${zstd},
  replay String${zstd},
  tx UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (node, epoch, seq)`,
    `CREATE TABLE IF NOT EXISTS ${BASELINES_TABLE} (
  node ${dict},
  epoch UInt64,
  seq UInt64,
  ts_us UInt64,
  time DateTime,
  marker String,
  rdb_object String,
  tail_object String,
  rdb_bytes UInt64,
  tail_bytes UInt64,
  keys UInt64,
  digest String,
  source String,
  rdb_sha256 String,
  tail_sha256 String
) ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (node, epoch, seq)`,
    `CREATE TABLE IF NOT EXISTS ${EPOCHS_TABLE} (
  node ${dict},
  epoch UInt64,
  started_us UInt64,
  reason String
) ENGINE = ReplacingMergeTree()
ORDER BY (node, epoch)`,
    `CREATE TABLE IF NOT EXISTS ${BROKEN_EVENTS_TABLE} (
  node String,
  epoch UInt64,
  seq UInt64,
  ts_us UInt64,
  command String,
  args String,
  reason String,
  found_us UInt64
) ENGINE = ReplacingMergeTree()
ORDER BY (node, epoch, seq)`,
    `CREATE TABLE IF NOT EXISTS ${VERIFICATIONS_TABLE} (
  node String,
  epoch UInt64,
  from_seq UInt64,
  to_seq UInt64,
  from_ts_us UInt64,
  to_ts_us UInt64,
  result String,
  source_digest String,
  restored_digest String,
  first_key String,
  keys_differing UInt64,
  detail String,
  events UInt64,
  seconds Float64,
  checked_us UInt64
) ENGINE = ReplacingMergeTree(checked_us)
ORDER BY (node, epoch, from_seq, to_seq)`,
    ...ratesSchemaStatements(dict),
    ...marksSchemaStatements(dict),
    ...seqsSchemaStatements(dict),
  ];
}

/**
 * Columns added after a table's first release: `ensureSchema` adds each one a table lacks. 18.16 has no
 * `ADD COLUMN IF NOT EXISTS`, so the columns are looked up in system.columns first. On the sharded layout
 * (core/store/sharded-schema.ts) the sink does not add them: an ALTER of one server's Distributed table leaves every
 * shard's `<table>_local` without the column; the operator runs {@link addedColumnSql} on each server.
 */
export const ADDED_COLUMNS: readonly { table: string; column: string; type: string }[] = [
  { table: 'baselines', column: 'source', type: "String DEFAULT ''" },
  { table: 'baselines', column: 'rdb_sha256', type: "String DEFAULT ''" },
  { table: 'baselines', column: 'tail_sha256', type: "String DEFAULT ''" },
];

/** SQL: add one of {@link ADDED_COLUMNS} to `table` (a name in the flashback database: `baselines`, `baselines_local`). */
export function addedColumnSql(table: string, c: { column: string; type: string }): string {
  return `ALTER TABLE ${DATABASE}.${table} ADD COLUMN ${c.column} ${c.type}`;
}

/** SQL: flashback's Distributed tables (the sharded layout), by name. */
export function distributedTablesSql(): string {
  return `SELECT name FROM system.tables WHERE database = '${DATABASE}' AND engine = 'Distributed'`;
}

/** SQL: the columns of flashback's tables (for {@link ADDED_COLUMNS}). */
export function columnsSql(): string {
  return `SELECT table, name FROM system.columns WHERE database = '${DATABASE}'`;
}

/** The query that picks the schema variant. */
export function versionSql(): string {
  return 'SELECT version() AS version';
}
