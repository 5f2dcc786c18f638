import { sqlString, sqlUInt } from './sql-literal.js';

/*
 * Statements of the retention pass (sink/retention.ts): what history a node still needs, and the statements that
 * drop the rest. Every one runs on ClickHouse 18.16 and current releases (test/schema-chdb.test.ts).
 */

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

/** SQL: day partitions `partition` of the events table, oldest first. */
export function eventPartitionsSql(): string {
  return (
    `SELECT DISTINCT partition FROM system.parts ` +
    `WHERE database = 'flashback' AND table = 'events' AND active ORDER BY partition`
  );
}

/** SQL: the day partition `day` (`YYYY-MM-DD`, server time zone) that an instant (epoch seconds) falls in. */
export function partitionDaySql(epochSeconds: number): string {
  return `SELECT toString(toDate(toDateTime(${sqlUInt(epochSeconds)}))) AS day`;
}

/** SQL: drops one day partition (`YYYY-MM-DD`) of the events table. */
export function dropEventPartitionSql(day: string): string {
  return `ALTER TABLE flashback.events DROP PARTITION ${sqlString(day)}`;
}

/** SQL: drops one day partition of the per-second write counts (the timeline's; same days as the events). */
export function dropRatesPartitionSql(day: string): string {
  return `ALTER TABLE flashback.event_rates DROP PARTITION ${sqlString(day)}`;
}

/** SQL: drops one day partition of the seqs per second kept for the timeline (same days as the events). */
export function dropSeqsPartitionSql(day: string): string {
  return `ALTER TABLE flashback.event_seqs DROP PARTITION ${sqlString(day)}`;
}

/** SQL: drops one day partition of the dangerous events kept for the timeline (same days as the events). */
export function dropMarksPartitionSql(day: string): string {
  return `ALTER TABLE flashback.event_marks DROP PARTITION ${sqlString(day)}`;
}

/** SQL: the baselines of a node older than `keepUs` (µs), with the object names they point at. */
export function oldBaselinesSql(node: string, keepUs: number): string {
  return `SELECT rdb_object, tail_object, seq, epoch FROM flashback.baselines WHERE ${oldBaselinesWhere(node, keepUs)}`;
}

/** SQL: deletes the baselines of a node older than `keepUs` (µs); the rows only, not their objects. */
export function deleteOldBaselinesSql(node: string, keepUs: number): string {
  return `ALTER TABLE flashback.baselines DELETE WHERE ${oldBaselinesWhere(node, keepUs)}`;
}

function oldBaselinesWhere(node: string, keepUs: number): string {
  return `node = ${sqlString(node)} AND ts_us < ${sqlUInt(keepUs)}`;
}
