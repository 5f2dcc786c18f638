import { DATABASE } from './schema.js';
import { sqlString, sqlUInt } from './sql-literal.js';

/*
 * Statements of the retention pass (sink/retention.ts): what history a node still needs, and the statements that
 * drop the rest. Every one runs on ClickHouse 18.16 and current releases (test/schema-chdb.test.ts,
 * test/sharded-schema-chdb.test.ts).
 *
 * The reads name `flashback.<table>` (one server's table, or the Distributed table of the sharded layout). The drops
 * take `{ local: true }` on the sharded layout: they run on each shard server against its `<table>_local`, since a
 * Distributed table has no partitions and takes no mutations.
 */

/** Where a drop runs: the single-server tables (`flashback.events`) or a shard's own (`flashback.events_local`). */
export interface RetentionTables {
  /** The shard's `<table>_local`. @default false */
  local?: boolean;
}

/** Tables retention drops from, as named on one server (without the `_local` of the sharded layout). */
export const RETENTION_TABLES = ['events', 'event_rates', 'event_marks', 'event_seqs', 'baselines'] as const;

function table(name: (typeof RETENTION_TABLES)[number], o: RetentionTables): string {
  return `${DATABASE}.${name}${o.local ? '_local' : ''}`;
}

/** SQL: per node `node`, the newest baseline `keep_us` at or before the horizon (the one restoring to it needs). */
export function neededBaselinesSql(horizonUs: number): string {
  return (
    `SELECT node, max(ts_us) AS keep_us FROM flashback.baselines WHERE ts_us <= ${sqlUInt(horizonUs)} ` +
    'GROUP BY node'
  );
}

/** SQL: every node `node` that has events. */
export function eventNodesSql(): string {
  return `SELECT DISTINCT node FROM flashback.events`;
}

/** SQL: day partitions `partition` of the events table of this server, oldest first. */
export function eventPartitionsSql(o: RetentionTables = {}): string {
  return (
    `SELECT DISTINCT partition FROM system.parts ` +
    `WHERE database = 'flashback' AND table = ${sqlString(o.local ? 'events_local' : 'events')} AND active ` +
    'ORDER BY partition'
  );
}

/** SQL: the day partition `day` (`YYYY-MM-DD`, server time zone) that an instant (epoch seconds) falls in. */
export function partitionDaySql(epochSeconds: number): string {
  return `SELECT toString(toDate(toDateTime(${sqlUInt(epochSeconds)}))) AS day`;
}

/** SQL: drops one day partition (`YYYY-MM-DD`) of the events table. */
export function dropEventPartitionSql(day: string, o: RetentionTables = {}): string {
  return `ALTER TABLE ${table('events', o)} DROP PARTITION ${sqlString(day)}`;
}

/** SQL: drops one day partition of the per-second write counts (the timeline's; same days as the events). */
export function dropRatesPartitionSql(day: string, o: RetentionTables = {}): string {
  return `ALTER TABLE ${table('event_rates', o)} DROP PARTITION ${sqlString(day)}`;
}

/** SQL: drops one day partition of the seqs per second kept for the timeline (same days as the events). */
export function dropSeqsPartitionSql(day: string, o: RetentionTables = {}): string {
  return `ALTER TABLE ${table('event_seqs', o)} DROP PARTITION ${sqlString(day)}`;
}

/** SQL: drops one day partition of the dangerous events kept for the timeline (same days as the events). */
export function dropMarksPartitionSql(day: string, o: RetentionTables = {}): string {
  return `ALTER TABLE ${table('event_marks', o)} DROP PARTITION ${sqlString(day)}`;
}

/**
 * SQL: the baselines older than their node's entry of `keepUs` (node → µs), with the object names they point at
 * (`node`, `epoch`, `seq`, `rdb_object`, `tail_object`; once each, however many unmerged copies there are).
 */
export function oldBaselinesSql(keepUs: Readonly<Record<string, number>>, o: RetentionTables = {}): string {
  return (
    `SELECT DISTINCT node, epoch, seq, rdb_object, tail_object FROM ${table('baselines', o)} ` +
    `WHERE ${oldBaselinesWhere(keepUs)} ORDER BY node, epoch, seq`
  );
}

/**
 * SQL: deletes the baselines `rows` name (every copy of each); the rows only, not their objects. Naming the rows a
 * read found, not a time, deletes no baseline whose objects that read did not see (one the sink inserted meanwhile).
 */
export function deleteBaselinesSql(
  rows: readonly { node: string; epoch: number; seq: number }[],
  o: RetentionTables = {},
): string {
  const terms = rows.map(
    (r) => `(node = ${sqlString(r.node)} AND epoch = ${sqlUInt(r.epoch)} AND seq = ${sqlUInt(r.seq)})`,
  );
  return `ALTER TABLE ${table('baselines', o)} DELETE WHERE ${terms.length === 0 ? '0' : terms.join(' OR ')}`;
}

function oldBaselinesWhere(keepUs: Readonly<Record<string, number>>): string {
  const terms = Object.entries(keepUs).map(([node, us]) => `(node = ${sqlString(node)} AND ts_us < ${sqlUInt(us)})`);
  return terms.length === 0 ? '0' : terms.join(' OR ');
}

/** SQL: `engine` and `engine_full` of flashback.events: `Distributed` on the sharded layout. */
export function eventsEngineSql(): string {
  return `SELECT engine, engine_full FROM system.tables WHERE database = 'flashback' AND name = 'events'`;
}

/** SQL: `shards`, the number of shards of cluster `cluster` in this server's `remote_servers` (0 if unknown). */
export function clusterShardCountSql(cluster: string): string {
  return `SELECT uniqExact(shard_num) AS shards FROM system.clusters WHERE cluster = ${sqlString(cluster)}`;
}

/** SQL: `shard_num` of the shard(s) of cluster `cluster` this server is a replica of (`is_local`), as it sees them. */
export function localShardSql(cluster: string): string {
  return (
    `SELECT DISTINCT shard_num FROM system.clusters WHERE cluster = ${sqlString(cluster)} AND is_local = 1 ` +
    'ORDER BY shard_num'
  );
}

/** SQL: `name` of each local table retention drops from that this server has, of {@link RETENTION_TABLES}. */
export function localRetentionTablesSql(): string {
  const names = RETENTION_TABLES.map((t) => sqlString(`${t}_local`)).join(', ');
  return `SELECT name FROM system.tables WHERE database = 'flashback' AND name IN (${names}) ORDER BY name`;
}
