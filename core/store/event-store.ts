import type { ClickHouseClient } from '@clickhouse/client';
import type { SourceInfo } from '../bus/baseline.js';
import { ErrorCode, FlashbackError } from '../errors.js';
import { clickHouseCodeOf } from './clickhouse.js';
import { BROKEN_EVENTS_TABLE, type BrokenEventRow } from './schema.js';
import { sqlString, sqlUInt } from './sql-literal.js';
import type { QueryRunner } from './windows.js';

/** A stored baseline, as the restorer needs it. */
export interface StoredBaseline {
  seq: number;
  tsUs: number;
  rdbObject: string;
  tailObject: string;
  rdbBytes: number;
  digest: string;
  /** The source server and its replay settings; undefined for baselines of older agents. */
  source?: SourceInfo;
  /** SHA-256 (hex) the agent published for the RDB object; '' for baselines of older agents (not checked). */
  rdbSha256: string;
  /** SHA-256 (hex) the agent published for the tail object; '' for baselines of older agents (not checked). */
  tailSha256: string;
}

/** One event to replay, as a restore's incr AOF needs it. */
export interface ReplayItem {
  /** Position in the event stream. */
  seq: number;
  /** Database the command runs in. */
  db: number;
  /**
   * Transaction / script id (seq of its first event); 0 for none. Consecutive items with the same non-zero id form one
   * MULTI/EXEC.
   */
  tx: number;
  /** RESP bytes of the replay command, exact. */
  resp: Buffer;
}

/** An event as the restore reads it: what the incr AOF needs, plus its time and kind. */
export interface StoredEvent extends ReplayItem {
  tsUs: number;
  kind: string;
}

/** What a restore reads from the history store. */
export interface EventStore extends QueryRunner {
  baseline(node: string, epoch: number, seq: number): Promise<StoredBaseline>;
  /** Events with afterSeq < seq ≤ toSeq, ascending by seq (a not-yet-merged duplicate may repeat a seq). */
  replayItems(node: string, epoch: number, afterSeq: number, toSeq: number): AsyncIterable<StoredEvent>;
  /**
   * Expirations stored after `afterSeq` with ts_us ≤ untilTsUs (late notifications of expirations before the cutoff).
   */
  expiredAfter(node: string, epoch: number, afterSeq: number, untilTsUs: number): Promise<StoredEvent[]>;
  /** Events with afterSeq < seq ≤ toSeq that a restore server could not load, ascending by seq. */
  brokenEvents(node: string, epoch: number, afterSeq: number, toSeq: number): Promise<BrokenEventRow[]>;
  /** Records an event a restore server could not load. */
  recordBroken(row: BrokenEventRow): Promise<void>;
}

/** SQL of the broken events of a span (JSONEachRow). */
export function brokenEventsSql(node: string, epoch: number, afterSeq: number, toSeq: number): string {
  return `SELECT node, epoch, seq, any(ts_us) AS ts_us, any(command) AS command, any(args) AS args, any(reason) AS reason, min(found_us) AS found_us FROM ${BROKEN_EVENTS_TABLE} WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq > ${sqlUInt(afterSeq)} AND seq <= ${sqlUInt(toSeq)} GROUP BY node, epoch, seq ORDER BY seq`;
}

/** SQL of the replay stream: TabSeparated, base64 has no tabs or newlines. */
export function replaySql(node: string, epoch: number, afterSeq: number, toSeq: number): string {
  return `SELECT seq, db, tx, ts_us, kind, replay FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq > ${sqlUInt(afterSeq)} AND seq <= ${sqlUInt(toSeq)} ORDER BY seq`;
}

/** SQL of expirations just after a cutoff (JSONEachRow). */
export function expiredAfterSql(node: string, epoch: number, afterSeq: number, untilTsUs: number): string {
  return `SELECT seq, db, tx, ts_us, replay FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq > ${sqlUInt(afterSeq)} AND kind = 'expired' AND ts_us <= ${sqlUInt(untilTsUs)} ORDER BY seq LIMIT 100000`;
}

/**
 * Columns of flashback.baselines a restore reads beyond the first release's, newest last: a store the sink has not
 * migrated yet (core/store/schema.ts ADDED_COLUMNS) is read with fewer.
 */
const BASELINE_ADDED = [['source'], ['source', 'rdb_sha256', 'tail_sha256']] as const;

/** SQL of one baseline (JSONEachRow); `added`: how many of the later column sets to read (all by default). */
export function baselineSql(node: string, epoch: number, seq: number, added: number = BASELINE_ADDED.length): string {
  const extra = added > 0 ? BASELINE_ADDED[added - 1]!.map((c) => `, ${c}`).join('') : '';
  return `SELECT seq, ts_us, rdb_object, tail_object, rdb_bytes, digest${extra} FROM flashback.baselines WHERE node = ${sqlString(node)} AND epoch = ${sqlUInt(epoch)} AND seq = ${sqlUInt(seq)} LIMIT 1`;
}

/** ClickHouse's UNKNOWN_IDENTIFIER (a column the table lacks) and UNKNOWN_TABLE. */
const UNKNOWN_IDENTIFIER = 47;
const UNKNOWN_TABLE = 60;

/** The history store on ClickHouse: queries through `runner`, the replay stream straight from the client. */
export function clickHouseEventStore(runner: QueryRunner, client: ClickHouseClient): EventStore {
  return {
    query: (sql) => runner.query(sql),
    async baseline(node, epoch, seq) {
      // A store whose sink has not added the later columns yet (ensureSchema runs at the sink's start): read without.
      let rows: Record<string, string | number>[] | undefined;
      for (let added: number = BASELINE_ADDED.length; rows === undefined; added--) {
        try {
          rows = await runner.query<Record<string, string | number>>(baselineSql(node, epoch, seq, added));
        } catch (err) {
          if (added === 0 || clickHouseCodeOf(err) !== UNKNOWN_IDENTIFIER) throw err;
        }
      }
      const r = rows[0];
      if (!r)
        throw new FlashbackError(
          ErrorCode.NotFound,
          `baseline seq ${seq} of node "${node}" epoch ${epoch} is not listed in flashback.baselines`,
        );
      return {
        seq: Number(r.seq),
        tsUs: Number(r.ts_us),
        rdbObject: String(r.rdb_object),
        tailObject: String(r.tail_object),
        rdbBytes: Number(r.rdb_bytes),
        digest: String(r.digest ?? ''),
        source: parseSource(String(r.source ?? '')),
        rdbSha256: String(r.rdb_sha256 ?? ''),
        tailSha256: String(r.tail_sha256 ?? ''),
      };
    },
    async brokenEvents(node, epoch, afterSeq, toSeq) {
      // A store made before flashback.broken_events has none.
      const rows = await runner
        .query<Record<string, string | number>>(brokenEventsSql(node, epoch, afterSeq, toSeq))
        .catch((err: unknown) => {
          if (clickHouseCodeOf(err) !== UNKNOWN_TABLE) throw err;
          return [];
        });
      return rows.map((r) => ({
        node: String(r.node),
        epoch: Number(r.epoch),
        seq: Number(r.seq),
        ts_us: Number(r.ts_us),
        command: String(r.command),
        args: String(r.args),
        reason: String(r.reason),
        found_us: Number(r.found_us),
      }));
    },
    async recordBroken(row) {
      await client.insert({ table: BROKEN_EVENTS_TABLE, values: [row], format: 'JSONEachRow' });
    },
    async expiredAfter(node, epoch, afterSeq, untilTsUs) {
      const rows = await runner.query<{ seq: number; db: number; tx: number; ts_us: number; replay: string }>(
        expiredAfterSql(node, epoch, afterSeq, untilTsUs),
      );
      return rows.map((r) => ({
        seq: Number(r.seq),
        db: Number(r.db),
        tx: Number(r.tx),
        tsUs: Number(r.ts_us),
        kind: 'expired',
        resp: Buffer.from(r.replay, 'base64'),
      }));
    },
    async *replayItems(node, epoch, afterSeq, toSeq) {
      if (toSeq <= afterSeq) return;
      const rs = await client.query({ query: replaySql(node, epoch, afterSeq, toSeq), format: 'TabSeparated' });
      for await (const rows of rs.stream()) {
        for (const row of rows as { text: string }[]) {
          const line = row.text;
          const t1 = line.indexOf('\t');
          const t2 = line.indexOf('\t', t1 + 1);
          const t3 = line.indexOf('\t', t2 + 1);
          const t4 = line.indexOf('\t', t3 + 1);
          const t5 = line.indexOf('\t', t4 + 1);
          yield {
            seq: Number(line.slice(0, t1)),
            db: Number(line.slice(t1 + 1, t2)),
            tx: Number(line.slice(t2 + 1, t3)),
            tsUs: Number(line.slice(t3 + 1, t4)),
            kind: line.slice(t4 + 1, t5),
            resp: Buffer.from(line.slice(t5 + 1), 'base64'),
          };
        }
      }
    },
  };
}

/** The `source` column: SourceInfo JSON, or '' (baselines of older agents). */
function parseSource(json: string): SourceInfo | undefined {
  if (json === '') return undefined;
  try {
    const v = JSON.parse(json) as SourceInfo;
    return typeof v === 'object' && v !== null && typeof v.config === 'object' && v.config !== null ? v : undefined;
  } catch {
    return undefined;
  }
}
