import type { ObjectStore } from '@nats-io/obj';
import { ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { describeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import {
  deleteOldBaselinesSql,
  dropEventPartitionSql,
  dropMarksPartitionSql,
  dropRatesPartitionSql,
  dropSeqsPartitionSql,
  eventNodesSql,
  eventPartitionsSql,
  neededBaselinesSql,
  oldBaselinesSql,
  partitionDaySql,
} from '../core/store/retention-sql.js';

/** What retention needs from the store. */
export interface RetentionStore {
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  command(sql: string): Promise<void>;
}

/** What one retention pass did. */
export interface RetentionResult {
  /** Oldest instant that stays restorable (µs), per node: the horizon or the newest baseline at or before it. */
  keepFromTsUs: Record<string, number>;
  droppedPartitions: string[];
  deletedBaselines: number;
}

/**
 * One retention pass (DESIGN.md, Storage; issue: Retention). History older
 * than `retentionMs` goes, but never in a way that leaves a window pointing
 * at a deleted baseline or a baseline without its events: for each node the
 * newest baseline at or before the horizon is kept with everything after it,
 * so the earliest window start moves forward whole. Events leave by whole
 * day partitions (every ClickHouse version can drop one), and only days
 * older than every node's kept baseline.
 */
export async function applyRetention(o: {
  store: RetentionStore;
  objects?: ObjectStore;
  retentionMs: number;
  nowMs?: number;
  logger?: Logger;
}): Promise<RetentionResult> {
  const { store, objects, retentionMs, nowMs = Date.now(), logger = silentLogger } = o;
  const horizonUs = Math.max(0, Math.round((nowMs - retentionMs) * 1000));
  const needed = await store.query<{ node: string; keep_us: number | string }>(neededBaselinesSql(horizonUs));
  const keepFromTsUs: Record<string, number> = {};
  for (const n of needed) keepFromTsUs[n.node] = Number(n.keep_us);
  // Nodes with no baseline at or before the horizon keep everything from the horizon on.
  const nodes = await store.query<{ node: string }>(eventNodesSql());
  for (const n of nodes) keepFromTsUs[n.node] ??= horizonUs;
  const keepAllFrom = Math.min(horizonUs, ...Object.values(keepFromTsUs));
  // Partitions are toDate(time) in the server's time zone: ask the server which day that instant falls on.
  const [day] = await store.query<{ day: string }>(partitionDaySql(Math.floor(keepAllFrom / 1_000_000)));
  // No answer drops nothing: every 'YYYY-MM-DD' sorts after ''.
  const keepDay = day?.day ?? '';

  const droppedPartitions: string[] = [];
  const parts = await store.query<{ partition: string }>(eventPartitionsSql());
  for (const p of parts) {
    const day = p.partition.replace(/'/g, '');
    if (day < keepDay) {
      await store.command(dropEventPartitionSql(day));
      await store.command(dropRatesPartitionSql(day));
      await store.command(dropMarksPartitionSql(day));
      await store.command(dropSeqsPartitionSql(day));
      droppedPartitions.push(day);
    }
  }

  let deletedBaselines = 0;
  for (const [node, keepUs] of Object.entries(keepFromTsUs)) {
    const old = await store.query<{
      rdb_object: string;
      tail_object: string;
      seq: number | string;
      epoch: number | string;
    }>(oldBaselinesSql(node, keepUs));
    if (old.length === 0) continue;
    // Rows first: a restore never picks a baseline whose objects are going.
    await store.command(deleteOldBaselinesSql(node, keepUs));
    for (const b of old) {
      await objects?.delete(b.rdb_object).catch(() => undefined);
      await objects?.delete(b.tail_object).catch(() => undefined);
    }
    deletedBaselines += old.length;
  }
  if (droppedPartitions.length > 0 || deletedBaselines > 0) {
    const horizon = new Date(horizonUs / 1000).toISOString();
    logger.info({ horizon, droppedPartitions, deletedBaselines }, 'retention applied');
  }
  return { keepFromTsUs, droppedPartitions, deletedBaselines };
}

/** Options of {@link scheduleRetention}. */
export interface RetentionScheduleOptions {
  nc: NatsConnection;
  store: RetentionStore;
  /** History kept, ms. */
  retentionMs: number;
  /** How often a pass runs, ms (also once at start). */
  intervalMs: number;
  logger: Logger;
}

/** Retention passes of a running sink, one at a time. */
export interface RetentionSchedule {
  /** Starts no more passes; resolves when the pass in progress, if any, has ended. Idempotent. */
  close(): Promise<void>;
}

/** Runs {@link applyRetention} now and every `intervalMs`; a failed pass is logged and tried again next time. */
export function scheduleRetention(o: RetentionScheduleOptions): RetentionSchedule {
  const { nc, store, retentionMs, intervalMs, logger } = o;
  const pass = async (): Promise<void> => {
    try {
      const objects = await ensureBaselineStore(nc);
      await applyRetention({ store, objects, retentionMs, logger });
    } catch (err) {
      logger.warn({ err: describeError(err) }, 'retention pass failed; will try again');
    }
  };
  let running = pass();
  const timer = setInterval(() => {
    running = running.then(pass);
  }, intervalMs);
  timer.unref();
  return {
    close: () => {
      clearInterval(timer);
      return running;
    },
  };
}
