import type { ObjectStore } from '@nats-io/obj';
import { ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { describeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import {
  deleteBaselinesSql,
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

/** What retention needs from a ClickHouse server. */
export interface RetentionStore {
  /** The server's URL for logs, password hidden (Store.url). */
  readonly url: string;
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  command(sql: string): Promise<void>;
}

/** Options of {@link applyRetention}. */
export interface RetentionOptions {
  /** The store the reads go through: one server, or any server of the sharded layout (its Distributed tables). */
  store: RetentionStore;
  /**
   * Sharded layout (docs/scale.md): one server of each shard. The drops run on each one's `flashback.<table>_local`
   * (a Distributed table has no partitions and takes no mutations). With replicas, one replica per shard is enough:
   * DROP PARTITION and ALTER DELETE of a Replicated…MergeTree reach the shard's other replicas through ZooKeeper.
   * @default none: the drops run on `store`'s own tables
   */
  shards?: readonly RetentionStore[];
  /** The baseline object store; without it no object is deleted. */
  objects?: ObjectStore;
  /** History kept, ms. */
  retentionMs: number;
  /** The pass's "now", epoch ms. @default Date.now() */
  nowMs?: number;
  /** Objects an earlier pass held back ({@link RetentionResult.heldObjects}): deleted with this pass's. @default none */
  heldObjects?: readonly string[];
  /** @default silent */
  logger?: Logger;
}

/** What one retention pass did. */
export interface RetentionResult {
  /** Oldest instant that stays restorable (µs), per node: the horizon or the newest baseline at or before it. */
  keepFromTsUs: Record<string, number>;
  /** Days (`YYYY-MM-DD`) dropped, on each server that had them, oldest first. */
  droppedPartitions: string[];
  /** Baseline rows deleted (each once, whatever its unmerged copies). */
  deletedBaselines: number;
  /** Objects deleted from the baseline store, this pass's and those held back by earlier ones. */
  deletedObjects: number;
  /** Servers (URL, password hidden) whose drops failed; when there is one, no object is deleted this pass. */
  failed: string[];
  /** Objects whose baseline rows were deleted but which are still in the store: pass them to the next pass. */
  heldObjects: string[];
}

/** Rows, or nodes, per statement: keeps each statement far below max_query_size (256 KiB) with long node ids. */
const PER_STATEMENT = 200;

interface OldBaseline {
  node: string;
  epoch: number;
  seq: number;
  rdb_object: string;
  tail_object: string;
}

/** What one server holds that goes: read on every server before anything is dropped on any. */
interface Plan {
  server: RetentionStore;
  days: string[];
  old: OldBaseline[];
}

/**
 * One retention pass (DESIGN.md, Storage; issue: Retention). History older
 * than `retentionMs` goes, but never in a way that leaves a window pointing
 * at a deleted baseline or a baseline without its events: for each node the
 * newest baseline at or before the horizon is kept with everything after it,
 * so the earliest window start moves forward whole. Events leave by whole
 * day partitions (every ClickHouse version can drop one), and only days
 * older than every node's kept baseline.
 *
 * On the sharded layout each shard server drops its own partitions and rows. The pass first asks every server what
 * it would drop, so a server that does not answer stops the pass with nothing changed anywhere. A server whose drops
 * then fail does not stop the others, but the pass deletes no object: the objects of the rows other servers deleted
 * are handed back as `heldObjects` for the next pass, and the failed server's rows are found again by it.
 */
export async function applyRetention(o: RetentionOptions): Promise<RetentionResult> {
  const { store, objects, retentionMs, nowMs = Date.now(), logger = silentLogger } = o;
  const local = o.shards !== undefined;
  const servers = o.shards ?? [store];
  const horizonUs = Math.max(0, Math.round((nowMs - retentionMs) * 1000));
  const needed = await store.query<{ node: string; keep_us: number | string }>(neededBaselinesSql(horizonUs));
  const keepFromTsUs: Record<string, number> = {};
  for (const n of needed) keepFromTsUs[n.node] = Number(n.keep_us);
  // Nodes with no baseline at or before the horizon keep everything from the horizon on.
  const nodes = await store.query<{ node: string }>(eventNodesSql());
  for (const n of nodes) keepFromTsUs[n.node] ??= horizonUs;
  const keepAllFrom = Math.min(horizonUs, ...Object.values(keepFromTsUs));

  const plans: Plan[] = [];
  for (const server of servers) {
    // Partitions are toDate(time) in the server's time zone: ask the server which day that instant falls on.
    const [day] = await server.query<{ day: string }>(partitionDaySql(Math.floor(keepAllFrom / 1_000_000)));
    // No answer drops nothing: every 'YYYY-MM-DD' sorts after ''.
    const keepDay = day?.day ?? '';
    const parts = await server.query<{ partition: string }>(eventPartitionsSql({ local }));
    const days = parts.map((p) => p.partition.replace(/'/g, '')).filter((d) => d < keepDay);
    const old: OldBaseline[] = [];
    for (const keep of chunks(Object.entries(keepFromTsUs))) {
      const rows = await server.query<Record<keyof OldBaseline, string | number>>(
        oldBaselinesSql(Object.fromEntries(keep), { local }),
      );
      for (const r of rows)
        old.push({
          node: String(r.node),
          epoch: Number(r.epoch),
          seq: Number(r.seq),
          rdb_object: String(r.rdb_object),
          tail_object: String(r.tail_object),
        });
    }
    plans.push({ server, days, old });
  }

  const dropped = new Set<string>();
  const failed: string[] = [];
  let deletedBaselines = 0;
  const gone: OldBaseline[] = [];
  for (const { server, days, old } of plans) {
    try {
      for (const day of days) {
        await server.command(dropEventPartitionSql(day, { local }));
        await server.command(dropRatesPartitionSql(day, { local }));
        await server.command(dropMarksPartitionSql(day, { local }));
        await server.command(dropSeqsPartitionSql(day, { local }));
        dropped.add(day);
      }
      // Rows before objects: a restore never picks a baseline whose objects are going.
      // Each chunk's objects are doomed once its rows are: a later chunk failing must not orphan them.
      for (const rows of chunks(old)) {
        await server.command(deleteBaselinesSql(rows, { local }));
        deletedBaselines += rows.length;
        gone.push(...rows);
      }
    } catch (err) {
      failed.push(server.url);
      logger.warn(
        { server: server.url, err: describeError(err) },
        'retention: dropping old history failed on this server; no baseline object is deleted this pass',
      );
    }
  }

  const doomed = [...new Set([...(o.heldObjects ?? []), ...gone.flatMap((b) => [b.rdb_object, b.tail_object])])];
  const heldObjects: string[] = [];
  let deletedObjects = 0;
  if (objects && failed.length > 0) {
    heldObjects.push(...doomed.filter((name) => name !== ''));
  } else if (objects) {
    for (const name of doomed) {
      if (name === '') continue;
      try {
        // A name that is not there (deleted already) is no error: only a failing NATS holds it back.
        await objects.delete(name);
        deletedObjects++;
      } catch (err) {
        heldObjects.push(name);
        logger.warn({ object: name, err: describeError(err) }, 'retention: deleting a baseline object failed');
      }
    }
  }
  const droppedPartitions = [...dropped].sort();
  if (droppedPartitions.length > 0 || deletedBaselines > 0 || deletedObjects > 0 || heldObjects.length > 0) {
    const horizon = new Date(horizonUs / 1000).toISOString();
    const shards = local ? servers.length : undefined;
    logger.info(
      { horizon, shards, droppedPartitions, deletedBaselines, deletedObjects, heldObjects: heldObjects.length },
      'retention applied',
    );
  }
  return { keepFromTsUs, droppedPartitions, deletedBaselines, deletedObjects, failed, heldObjects };
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += PER_STATEMENT) out.push(items.slice(i, i + PER_STATEMENT));
  return out;
}

/** Options of {@link scheduleRetention}. */
export interface RetentionScheduleOptions {
  nc: NatsConnection;
  store: RetentionStore;
  /** Sharded layout: one server of each shard (see {@link RetentionOptions.shards}). @default none */
  shards?: readonly RetentionStore[];
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

/**
 * Runs {@link applyRetention} now and every `intervalMs`; a failed pass is logged and tried again next time, and the
 * objects a pass held back go to the next one (held in memory: a sink stopped meanwhile leaves them in the bucket).
 */
export function scheduleRetention(o: RetentionScheduleOptions): RetentionSchedule {
  const { nc, store, shards, retentionMs, intervalMs, logger } = o;
  let heldObjects: string[] = [];
  const pass = async (): Promise<void> => {
    try {
      const objects = await ensureBaselineStore(nc);
      const result = await applyRetention({ store, shards, objects, retentionMs, heldObjects, logger });
      heldObjects = result.heldObjects;
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
