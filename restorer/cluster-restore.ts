import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolveCutoff } from '../core/store/cutoff.js';
import { ErrorCode, FlashbackError, InputError } from '../core/errors.js';
import { readableBytes } from '../core/redis/escape.js';
import { silentLogger } from '../core/log.js';
import type { RestoreJobRequest } from '../core/bus/restore-jobs.js';
import type { ClusterRestoreReport, RestoreProgress, RestoreReport } from '../core/bus/restore-report.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { compareVersions, serverBinaries, type ServerBinary } from './server-binaries.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { formatTsUs, parseCutoffTime } from '../core/time.js';
import { openKeyTarget, shownUrl, type KeyTarget } from './key-target.js';
import {
  assertDbsFit,
  copyKeys,
  KeyConflictError,
  prepareTarget,
  saveRdb,
  TargetNotEmptyError,
} from './materialize.js';
import { restore, type RestoreDeps, type RestoreDestination } from './restore.js';

/** A cluster-wide restore: several nodes at one instant into one destination. */
export interface ClusterRestoreRequest extends RestoreDestination {
  /** The nodes (e.g. every master of a Redis Cluster, one agent each); their key sets at `to` must be disjoint. */
  nodes: string[];
  /** The instant, for every node: text as an operator types it, or µs. Seqs are per node, so there is no seq form. */
  to: string | number;
  /** Keep only keys matching one of these Redis glob patterns. */
  keys?: string[];
  /** Keep only this logical database (a Cluster target takes db 0 only). */
  db?: number;
  /** Shift every expiry by (restore time − cutoff). */
  keepTtlRelative?: boolean;
  /**
   * Node restores running at once (each reads its history and loads a scratch server); the copies run one by one.
   * @default 2
   */
  concurrency?: number;
}

export type { ClusterRestoreReport };

/**
 * Restores every node of `req.nodes` at the same instant and puts the union into one destination: a new
 * instance (`spawn`), an existing standalone server or Redis Cluster (`target`: each key goes to the master
 * serving its slot), or an RDB file.
 *
 * First each node is restored exactly as {@link restore} does it (baseline RDB + events up to the instant, loaded
 * by redis-server) into an RDB file of its own; only when every node succeeded is anything written. Then each RDB
 * is loaded by a scratch server and copied with DUMP / RESTORE … ABSTTL, without REPLACE: a key held by two nodes
 * fails the restore (a Cluster's masters hold disjoint slots, so a conflict means the nodes are not one cluster's
 * masters at that instant).
 *
 * Every node's cutoff is resolved before any work, so an unknown node or an instant outside some node's windows
 * fails at once, naming that node; a non-empty target is refused then too, unless `flush`.
 */
export async function clusterRestore(
  deps: RestoreDeps,
  req: ClusterRestoreRequest,
  onProgress: (p: RestoreProgress) => void = () => {},
): Promise<ClusterRestoreReport> {
  const logger = deps.logger ?? silentLogger;
  const started = Date.now();
  const { nodes, concurrency = 2 } = req;
  if (!Array.isArray(nodes) || nodes.length === 0)
    throw new InputError(
      ErrorCode.BadInput,
      'name the nodes to restore: --node A --node B … (flashback windows lists them)',
    );
  const dup = nodes.find((n, i) => nodes.indexOf(n) !== i);
  if (dup !== undefined) throw new InputError(ErrorCode.BadInput, `node "${dup}" is named twice; name each node once`);
  const dests = [req.spawn !== undefined, req.target !== undefined, req.rdb !== undefined].filter(Boolean).length;
  if (dests !== 1)
    throw new InputError(ErrorCode.BadInput, 'give exactly one destination: --spawn, --target URL or --rdb FILE');
  if (req.flush && req.target === undefined) throw new InputError(ErrorCode.BadInput, '--flush goes with --target');
  if (req.to === undefined)
    throw new InputError(
      ErrorCode.BadInput,
      'a restore of several nodes needs --to TIME: one instant for every node (a seq belongs to one node)',
    );
  const askedUs = typeof req.to === 'number' ? req.to : parseCutoffTime(req.to);
  onProgress({ phase: 'resolve', events: 0, totalEvents: 0 });

  let target: KeyTarget | undefined;
  let scratchRoot: string | undefined;
  let dest: ServerProcess | undefined;
  const keepDest = req.spawn !== undefined;
  try {
    if (req.target !== undefined) {
      // Refuse before any work: nothing is ever written to a non-empty target without --flush.
      const t = await openKeyTarget(req.target, '--target');
      try {
        const present = await t.countKeys();
        if (present > 0 && !req.flush) {
          throw new TargetNotEmptyError(
            `${t.cluster ? 'restore target Redis Cluster' : 'restore target'} ${t.shown} is not empty (${present} keys); restore into an empty instance, or add --flush to empty it first`,
            present,
          );
        }
        if (t.cluster && req.db !== undefined && req.db !== 0) {
          throw new InputError(
            ErrorCode.BadInput,
            `restore target ${t.shown} is a Redis Cluster, which has db 0 only; --db ${req.db} cannot go there`,
          );
        }
      } finally {
        t.close();
      }
    }
    // Every node's cutoff first: an unknown node or an instant outside a node's windows fails before any work.
    const cuts = [];
    for (const node of nodes) cuts.push(await resolveCutoff(deps.events, node, { to: askedUs }));
    const totalEvents = cuts.reduce((n, c) => n + Math.max(0, c.seq - c.baselineSeq), 0);
    const done = cuts.map(() => 0);
    const progress = (phase: RestoreProgress['phase']) =>
      onProgress({ phase, events: done.reduce((a, b) => a + b, 0), totalEvents });
    logger.info(
      {
        nodes,
        asked: formatTsUs(askedUs),
        cutoffs: cuts.map((c, i) => ({ node: nodes[i], epoch: c.epoch, seq: c.seq })),
      },
      'cluster restore resolved',
    );

    // 1. Every node into an RDB file of its own, `concurrency` at a time; nothing is written anywhere until all
    // succeeded.
    scratchRoot = await mkdtemp(path.join(os.tmpdir(), 'flashback-cluster-restore-'));
    const root = scratchRoot;
    const parts: RestoreReport[] = new Array(nodes.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < nodes.length; i = next++) {
        await mkdir(path.join(root, String(i)));
        const report = await restore(
          deps,
          {
            node: nodes[i]!,
            to: askedUs,
            rdb: path.join(root, String(i), NODE_RDB),
            keys: req.keys,
            db: req.db,
            keepTtlRelative: req.keepTtlRelative,
          },
          (p) => {
            done[i] = p.events;
            progress(p.phase);
          },
        );
        const { rdb: _rdb, ...part } = report;
        parts[i] = part;
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, nodes.length)) }, worker));

    // 2. The destination, then each node's keys copied into it from a scratch server on its RDB. Both run the newest
    // server any node's restore needed: it reads every node's RDB.
    progress('copy');
    const bin = await newestServerOf(parts, deps.redisBins, deps.discoverServers);
    if (req.spawn !== undefined) {
      const dir = path.join(
        deps.instancesDir ?? path.join(os.tmpdir(), 'flashback-instances'),
        `cluster-${askedUs}-${Date.now()}`,
      );
      await mkdir(dir, { recursive: true });
      // Appendonly like a single-node spawned instance: the restored data survives a restart of the instance.
      dest = await startRedisServer({ bin, dir, port: req.spawn.port, detached: true, args: ['--appendonly', 'yes'] });
    } else if (req.rdb !== undefined) {
      await mkdir(path.join(root, 'merged'));
      dest = await startRedisServer({ bin, dir: path.join(root, 'merged') });
    }
    target = await openKeyTarget(dest?.url ?? req.target!, '--target');
    if (target.cluster && req.db !== 0) {
      // Every node's data must fit before --flush empties anything or a first node is copied.
      for (let i = 0; i < nodes.length; i++) {
        await using scratch = await startRedisServer({
          bin,
          dir: path.join(root, String(i)),
          args: ['--dbfilename', NODE_RDB],
        });
        await assertDbsFit(scratch.url, target).catch((err: unknown) => {
          throw err instanceof FlashbackError
            ? new FlashbackError(err.code, `node "${nodes[i]}": ${err.message}`, { cause: err })
            : err;
        });
      }
    }
    await prepareTarget(target, req.flush ?? false);
    for (let i = 0; i < nodes.length; i++)
      await copyNode(path.join(root, String(i)), nodes, i, askedUs, target, req.target !== undefined, bin);

    progress('verify');
    const summary = await target.summary();
    const report: ClusterRestoreReport = {
      nodes,
      cutoff: { tsUs: askedUs, time: formatTsUs(askedUs) },
      parts,
      keys: summary.reduce((a, s) => a + s.keys, 0),
      ...(target.cluster ? { masters: summary } : { digest: summary[0]!.digest }),
      warnings: parts.flatMap((p) => p.warnings.map((w) => `node ${p.node}: ${w}`)),
      seconds: 0,
    };
    if (req.target !== undefined) report.url = shownUrl(req.target);
    else if (req.rdb !== undefined) {
      await saveRdb(dest!.url, dest!.dir, req.rdb);
      report.rdb = path.resolve(req.rdb);
    } else {
      report.url = dest!.url;
      report.pid = dest!.pid;
      report.dir = dest!.dir;
    }
    report.seconds = Math.round((Date.now() - started) / 10) / 100;
    logger.info({ nodes, keys: report.keys, seconds: report.seconds, url: report.url }, 'cluster restore done');
    return report;
  } catch (err) {
    if (dest && keepDest) {
      await dest.stop().catch(() => undefined);
      await rm(dest.dir, { recursive: true, force: true });
    }
    throw err;
  } finally {
    target?.close();
    if (dest && !keepDest) await dest.stop().catch(() => undefined);
    if (scratchRoot) await rm(scratchRoot, { recursive: true, force: true });
  }
}

/** The binary of the newest server that loaded one of `parts` (undefined: redis-server on PATH). */
async function newestServerOf(
  parts: RestoreReport[],
  named: string[] | undefined,
  discover: boolean | undefined,
): Promise<string | undefined> {
  const bins = await serverBinaries(named, discover);
  let best: ServerBinary | undefined;
  for (const p of parts) {
    const b = bins.find((x) => `${x.server} ${x.version}` === p.server);
    if (b && (!best || compareVersions(b.version, best.version) > 0)) best = b;
  }
  return best?.bin;
}

/** File name of each node's restored RDB in its scratch dir. */
const NODE_RDB = 'node.rdb';

/**
 * Copies node `i`'s keys (the RDB in `dir`) into `target` without REPLACE, through a scratch server on that RDB.
 * A key already there came from an earlier node: the error names the key and those nodes, and, for an operator's
 * target (`kept`), what it holds now.
 */
async function copyNode(
  dir: string,
  nodes: string[],
  i: number,
  askedUs: number,
  target: KeyTarget,
  kept: boolean,
  bin: string | undefined,
): Promise<void> {
  const node = nodes[i]!;
  const scratch = await startRedisServer({ bin, dir, args: ['--dbfilename', NODE_RDB] });
  try {
    await copyKeys(scratch.url, target, { replace: false });
  } catch (err) {
    const before = nodes.slice(0, i).map((n) => `"${n}"`);
    const partly =
      kept && i > 0
        ? `; ${target.shown} now holds the keys of node${i === 1 ? '' : 's'} ${before.join(', ')} and part of "${node}"'s`
        : '';
    if (err instanceof KeyConflictError) {
      const holders = i === 1 ? `node ${before[0]}` : `one of the nodes ${before.join(', ')}`;
      throw new FlashbackError(
        ErrorCode.BadInput,
        `key "${readableBytes(err.key)}" in db ${err.db} of node "${node}" at ${formatTsUs(askedUs)} is also held by ${holders}: the nodes' data overlap, so they cannot go into one instance (a Redis Cluster's masters never share a key); restore the nodes one by one${partly}`,
        { cause: err },
      );
    }
    if (err instanceof FlashbackError && i > 0)
      throw new FlashbackError(err.code, `node "${node}": ${err.message}${partly}`, { cause: err });
    throw err;
  } finally {
    await scratch.stop();
  }
}

/**
 * Runs one restore job request: {@link clusterRestore} when it names `nodes`, {@link restore} for one `node`.
 */
export async function runRestoreRequest(
  deps: RestoreDeps,
  req: RestoreJobRequest,
  onProgress: (p: RestoreProgress) => void = () => {},
): Promise<RestoreReport | ClusterRestoreReport> {
  const { node, nodes, to, ...rest } = req;
  if (nodes !== undefined) {
    if (node !== undefined) throw new InputError(ErrorCode.BadInput, 'give exactly one of node and nodes');
    if (rest.toSeq !== undefined || rest.beforeSeq !== undefined || rest.epoch !== undefined) {
      throw new InputError(
        ErrorCode.BadInput,
        'a restore of several nodes takes --to TIME only: a seq belongs to one node',
      );
    }
    return clusterRestore(
      deps,
      {
        nodes,
        to: to!,
        spawn: rest.spawn,
        target: rest.target,
        flush: rest.flush,
        rdb: rest.rdb,
        keys: rest.keys,
        db: rest.db,
        keepTtlRelative: rest.keepTtlRelative,
      },
      onProgress,
    );
  }
  if (node === undefined)
    throw new InputError(ErrorCode.BadInput, 'name the node to restore (node) or the nodes (nodes)');
  return restore(deps, { ...rest, node, to }, onProgress);
}

/** Whether a report is a cluster-wide one. */
export function isClusterReport(r: RestoreReport | ClusterRestoreReport): r is ClusterRestoreReport {
  return Array.isArray((r as ClusterRestoreReport).nodes);
}
