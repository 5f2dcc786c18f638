import { formatTsUs, parseCutoffTime } from '../time.js';
import { sqlString, sqlUInt } from './sql-literal.js';
import type { QueryRunner } from './windows.js';

/** Filters of a key's history; times as an operator types them (see parseCutoffTime). */
export interface HistoryQuery {
  /** Capture source id. @default every node */
  node?: string;
  /** Key as stored: readable, binary bytes escaped. Matches any key the event touches. @default every key */
  key?: string;
  /** Events at or after this time. @default no lower bound */
  since?: string;
  /** Events at or before this time. @default no upper bound */
  until?: string;
  /** At most this many events. @default 100 */
  limit?: number;
}

/**
 * One event of a history, readable (fields as in FlashbackEvent, core/bus/event.ts; bytes escaped as stored):
 * what `GET /events` answers (EventSchema in api/schemas.ts) and `flashback history` prints.
 */
export interface HistoryEvent {
  /** Capture source id. */
  node: string;
  /** Id of one continuous capture run. */
  epoch: number;
  /** 1, 2, 3 … within the epoch. */
  seq: number;
  /** Redis server time of the command, µs since 1970. */
  tsUs: number;
  /** tsUs as ISO 8601 with microseconds. */
  time: string;
  /** Logical database the command ran in. */
  db: number;
  /** `ip:port`, `lua`, `unix:/path` or `agent`. */
  client: string;
  /** Event kind (`command`, `expired` …; see EVENT_KINDS). */
  kind: string;
  /** Upper-case command name as issued; for server-side events the event name. */
  command: string;
  /** Keys the command touches. */
  keys: string[];
  /** argv as issued. */
  args: string[];
  /** Seq of the first event of the transaction or script this belongs to; 0 if none. */
  tx: number;
}

/**
 * SQL of a history, newest first. Duplicate rows that ReplacingMergeTree has
 * not merged yet are collapsed with LIMIT 1 BY (18.16 and current accept it).
 * @throws InputError (BAD_TIME) for a malformed since/until.
 */
export function historySql(q: HistoryQuery): string {
  const where: string[] = [];
  if (q.node !== undefined) where.push(`node = ${sqlString(q.node)}`);
  if (q.key !== undefined) where.push(`(key = ${sqlString(q.key)} OR has(keys, ${sqlString(q.key)}))`);
  if (q.since !== undefined) where.push(`ts_us >= ${sqlUInt(parseCutoffTime(q.since))}`);
  if (q.until !== undefined) where.push(`ts_us <= ${sqlUInt(parseCutoffTime(q.until))}`);
  const limit = q.limit ?? 100;
  const filter = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
  return `SELECT node, epoch, seq, ts_us, db, client, kind, command, keys, args, tx FROM flashback.events${filter}
ORDER BY ts_us DESC, seq DESC LIMIT 1 BY node, epoch, seq LIMIT ${sqlUInt(limit)}`;
}

/** A history, newest first: what `GET /events` and `flashback history` show. */
export async function keyHistory(db: QueryRunner, q: HistoryQuery): Promise<HistoryEvent[]> {
  const rows = await db.query<Record<string, unknown>>(historySql(q));
  return rows.map((r) => ({
    node: String(r.node),
    epoch: Number(r.epoch),
    seq: Number(r.seq),
    tsUs: Number(r.ts_us),
    time: formatTsUs(Number(r.ts_us)),
    db: Number(r.db),
    client: String(r.client),
    kind: String(r.kind),
    command: String(r.command),
    keys: (r.keys as string[]) ?? [],
    args: (r.args as string[]) ?? [],
    tx: Number(r.tx),
  }));
}
