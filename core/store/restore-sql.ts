import { sqlString, sqlUInt } from './sql-literal.js';

/*
 * Queries a restore asks of the stored history besides the replay stream (core/store/event-store.ts): where a
 * baseline taken during consumer-group reads is exact from, and which replayed commands lack the state the source
 * reached. Every one runs on ClickHouse 18.16 and current releases (test/schema-chdb.test.ts).
 */

function epochWhere(node: string, epoch: number): string {
  return `node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)}`;
}

/**
 * SQL: the first `SETTLE` event between two markers — its seq `s`, its tx `t`, and how many there are `n`.
 * Aliases differ from the column names: 18.16 would read `seq` in WHERE as the aggregate.
 */
export function firstSettleSql(node: string, epoch: number, afterSeq: number, beforeSeq: number): string {
  return `SELECT min(seq) AS s, argMin(tx, seq) AS t, count() AS n FROM flashback.events WHERE ${epochWhere(node, epoch)} AND seq > ${sqlUInt(afterSeq)} AND seq < ${sqlUInt(beforeSeq)} AND command = 'SETTLE'`;
}

/** SQL: the last seq `s` and its time `at` of a group: tx `tx`, or the single event `seq` when tx is 0. */
export function groupEndSql(node: string, epoch: number, tx: number, seq: number): string {
  const group = tx === 0 ? `seq = ${sqlUInt(seq)}` : `tx = ${sqlUInt(tx)}`;
  return `SELECT max(seq) AS s, argMax(ts_us, seq) AS at FROM flashback.events WHERE ${epochWhere(node, epoch)} AND ${group}`;
}

/**
 * Commands of (afterSeq, toSeq] that no captured state follows in their group. An epoch captured from the replication
 * stream (it has ANCHOR heartbeats) has none: its replays are the master's effects, never a command to re-run.
 */
function unstatedWhere(node: string, epoch: number, afterSeq: number, toSeq: number): string {
  const where = epochWhere(node, epoch);
  return (
    `${where} AND seq > ${sqlUInt(afterSeq)} AND seq <= ${sqlUInt(toSeq)} AND kind = 'command' ` +
    `AND (SELECT count() FROM flashback.events WHERE ${where} AND kind = 'heartbeat' AND command = 'ANCHOR') = 0 ` +
    `AND (tx = 0 OR tx NOT IN (SELECT tx FROM flashback.events WHERE ${where} AND kind = 'state' AND length(replay) > 0 AND tx != 0))`
  );
}

/**
 * SQL: per command name `command`, how many `n` replayed commands (XADD aside) lack the state their group should hold.
 */
export function unstatedCommandsSql(node: string, epoch: number, afterSeq: number, toSeq: number): string {
  return `SELECT command, count() AS n FROM flashback.events WHERE ${unstatedWhere(node, epoch, afterSeq, toSeq)} AND command != 'XADD' GROUP BY command ORDER BY command`;
}

/** SQL: the replay (base64 RESP) of XADDs issued with a generated id that lack a captured state, at most 100 000. */
export function unstatedXaddsSql(node: string, epoch: number, afterSeq: number, toSeq: number): string {
  return `SELECT replay FROM flashback.events WHERE ${unstatedWhere(node, epoch, afterSeq, toSeq)} AND command = 'XADD' AND arrayExists(a -> a = '*' OR a LIKE '%-*', args) LIMIT 100000`;
}

/** Scripts and functions: their effects are stored under the command that ran them (with attribution, MONITOR mode). */
const SCRIPT_COMMANDS = ['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO'] as const;

/**
 * Commands that can give a hash field a TTL or carry one (a RESTORE payload, a script's effects in MONITOR mode): a
 * history with none of them, on a baseline without field TTLs, replays the same on any clock.
 */
export const FIELD_TTL_COMMANDS = [
  'HEXPIRE',
  'HPEXPIRE',
  'HEXPIREAT',
  'HPEXPIREAT',
  'HPERSIST',
  'HSETEX',
  'HGETEX',
  'RESTORE',
  'RESTORE-ASKING',
  ...SCRIPT_COMMANDS,
] as const;

/** SQL: `n` > 0 when (afterSeq, toSeq] holds a command of {@link FIELD_TTL_COMMANDS} (case as stored or not). */
export function fieldTtlCommandsSql(node: string, epoch: number, afterSeq: number, toSeq: number): string {
  const names = FIELD_TTL_COMMANDS.map((c) => sqlString(c)).join(', ');
  return `SELECT count() AS n FROM flashback.events WHERE ${epochWhere(node, epoch)} AND seq > ${sqlUInt(afterSeq)} AND seq <= ${sqlUInt(toSeq)} AND upper(command) IN (${names})`;
}

/**
 * SQL: the replicated `XCLAIM`s (every delivery of a consumer group: XREADGROUP, XCLAIM and XAUTOCLAIM reach the
 * stream as `XCLAIM … TIME <ms> RETRYCOUNT <n> FORCE JUSTID LASTID <id>`) of a stretch, and the writes that carry a
 * stream to another db or name or drop it (SWAPDB, MOVE, RENAME, COPY, DEL, RESTORE, FLUSH…), with their db and
 * `replay`, newest first (restorer/delivery-times.ts). With attribution an event's command is the client's
 * (XREADGROUP, a script's): the replay says what each is.
 */
export function streamDeliveriesSql(
  node: string,
  epoch: number,
  afterSeq: number,
  toSeq: number,
  limit: number,
): string {
  const names = DELIVERY_COMMANDS.map((c) => sqlString(c)).join(', ');
  return (
    `SELECT seq, db, replay FROM flashback.events WHERE ${epochWhere(node, epoch)} AND seq > ${sqlUInt(afterSeq)} ` +
    `AND seq <= ${sqlUInt(toSeq)} AND kind = 'command' AND command IN (${names}) ORDER BY seq DESC LIMIT ${sqlUInt(limit)}`
  );
}

/** Commands (as stored: the client's with attribution) whose replay may be a delivery or move, copy or drop a stream. */
const DELIVERY_COMMANDS = [
  'XCLAIM',
  'XREADGROUP',
  'XAUTOCLAIM',
  ...SCRIPT_COMMANDS,
  'SWAPDB',
  'MOVE',
  'RENAME',
  'RENAMENX',
  'COPY',
  'DEL',
  'UNLINK',
  'RESTORE',
  'FLUSHDB',
  'FLUSHALL',
];
