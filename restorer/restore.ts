import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ObjectStore } from '@nats-io/obj';
import { CaptureGapError, ErrorCode, FlashbackError, RestoreWindowError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { formatTsUs } from '../core/time.js';
import { CommandTable } from '../core/redis/command-table.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { decodeCommand } from '../core/redis/resp.js';
import { autoIdIndex } from '../core/redis/xadd.js';
import { fieldTtlCommandsSql, unstatedCommandsSql, unstatedXaddsSql } from '../core/store/restore-sql.js';
import { createAofDir, writeBaseRdb } from './aof-dir.js';
import { assertLoadable, rdbVersionRead, type ServerBuild } from './rdb-version.js';
import { canRestore, pickServerBinary, serverBinaries, type ServerBinary } from './server-binaries.js';
import { resolveCutoff, type CutoffSpec, type ResolvedCutoff } from '../core/store/cutoff.js';
import { cutoffPrecision } from '../core/store/cutoff-precision.js';
import { IncrWriter } from './incr-writer.js';
import { applyKeyFilter } from './key-filter.js';
import { LazyExpiryReorder } from './lazy-expiry.js';
import { settledBaseline } from './settled-baseline.js';
import { hasFieldTtls, sourceClock } from './source-clock.js';
import { readDeliveries, setDeliveryTimes } from './delivery-times.js';
import { baselineCheck, mismatchOr, objectStream } from './baseline-objects.js';
import {
  AofLoadError,
  copyToTarget,
  countKeys,
  digest,
  expireDueKeys,
  keepTtlRelativeScript,
  loadAofDir,
  reloadOnRealClock,
  saveRdb,
  TargetNotEmptyError,
  withRedis,
} from './materialize.js';
import { openKeyTarget, shownUrl } from './key-target.js';
import { guardRefusable } from './refusal-guard.js';
import { brokenWarnings, explainLoadFailure } from './load-failure.js';
import { replayConfig } from './replay-config.js';
import type { EventStore, StoredEvent } from '../core/store/event-store.js';
import type { RestoreProgress, RestoreReport } from '../core/bus/restore-report.js';

/** Where the restored dataset goes: exactly one. */
export interface RestoreDestination {
  /** Start a new redis-server holding the data; it keeps running after the restore. */
  spawn?: { port?: number };
  /** Copy into this existing, empty Redis (DUMP / RESTORE … ABSTTL). */
  target?: string;
  /** Empty a non-empty target first. */
  flush?: boolean;
  /** Write an RDB file here. */
  rdb?: string;
}

export interface RestoreRequest extends CutoffSpec, RestoreDestination {
  node: string;
  /** Keep only keys matching one of these Redis glob patterns (key-subset restore). */
  keys?: string[];
  /** Keep only this logical database. */
  db?: number;
  /** Shift every expiry by (restore time − cutoff) instead of keeping absolute expiries. */
  keepTtlRelative?: boolean;
  /**
   * Start from this baseline (its marker seq, in the cutoff's window, at or before the cutoff) instead of the newest
   * one: the background check replays a whole stretch between two baselines (restorer/verify-stretch.ts).
   */
  fromBaselineSeq?: number;
}

export type { RestoreProgress, RestoreReport };

export interface RestoreDeps {
  events: EventStore;
  objects: ObjectStore;
  /** Where spawned instances keep their files. @default <tmp>/flashback-instances */
  instancesDir?: string;
  /**
   * Restore servers besides the discovered ones (redis-server/valkey-server on PATH, /opt/{redis,valkey}-<v>/bin)
   * and FLASHBACK_REDIS_BINS; each baseline loads with the closest one that can read it (restorer/server-binaries.ts).
   * @default []
   */
  redisBins?: string[];
  /** Also use the installed servers found (false: only `redisBins` and FLASHBACK_REDIS_BINS). @default true */
  discoverServers?: boolean;
  logger?: Logger;
}

/**
 * One restore: resolve cutoff → pick baseline → write a multi-part AOF
 * directory (base = baseline RDB, incr = tail + events) → let redis-server
 * load it (DESIGN.md, Restore) → hand it over (spawn, target or RDB) → verify.
 */
export async function restore(
  deps: RestoreDeps,
  req: RestoreRequest,
  onProgress: (p: RestoreProgress) => void = () => {},
): Promise<RestoreReport> {
  const logger = deps.logger ?? silentLogger;
  const started = Date.now();
  const dests = [req.spawn !== undefined, req.target !== undefined, req.rdb !== undefined].filter(Boolean).length;
  if (dests !== 1)
    throw new FlashbackError(ErrorCode.BadInput, 'give exactly one destination: --spawn, --target URL or --rdb FILE');
  onProgress({ phase: 'resolve', events: 0, totalEvents: 0 });
  if (req.target !== undefined && !req.flush) {
    // Refuse before any work: nothing is ever written to a non-empty target without --flush.
    const keys = await countKeys(req.target);
    if (keys > 0)
      throw new TargetNotEmptyError(
        `target ${shownUrl(req.target)} is not empty (${keys} keys); restore into an empty instance, or add --flush to empty it first`,
        keys,
      );
  }
  const resolved = await resolveCutoff(deps.events, req.node, req);
  if (req.fromBaselineSeq !== undefined) {
    if (!resolved.window.baselines.includes(req.fromBaselineSeq) || req.fromBaselineSeq > resolved.seq)
      throw new RestoreWindowError(
        `baseline seq ${req.fromBaselineSeq} is not a baseline of node "${req.node}" epoch ${resolved.epoch} at or before seq ${resolved.seq} in one window; baselines there: ${resolved.window.baselines.join(', ')}`,
      );
    resolved.baselineSeq = req.fromBaselineSeq;
  }
  const { base, tail } = await settledBaseline(deps.events, deps.objects, req.node, resolved);
  if (req.fromBaselineSeq !== undefined && base.seq !== req.fromBaselineSeq)
    throw new RestoreWindowError(
      `baseline seq ${req.fromBaselineSeq} of node "${req.node}" is not exact up to seq ${resolved.seq} (consumer-group reads while it was taken); an earlier baseline would be used`,
    );
  const cut = { ...resolved, baselineSeq: base.seq };
  // Before any work: the restore server is one that can read the baseline's RDB and run its history (the source's
  // own server and line, or a newer line); none → refused, naming the version needed.
  const what = `the baseline of ${req.node} at epoch ${cut.epoch} seq ${base.seq}`;
  const build = pickServerBinary(await serverBinaries(deps.redisBins, deps.discoverServers), base.source, what);
  assertLoadable({ restore: build, source: base.source, what });
  if (req.target !== undefined) await assertTargetFits(req.target, build, base.source);
  const totalEvents = Math.max(0, cut.seq - cut.baselineSeq);
  logger.info(
    { node: req.node, epoch: cut.epoch, cutoffSeq: cut.seq, baselineSeq: cut.baselineSeq, totalEvents },
    'restore resolved',
  );

  const keep = req.spawn !== undefined;
  const dir = keep
    ? path.join(
        deps.instancesDir ?? path.join(os.tmpdir(), 'flashback-instances'),
        `${sanitize(req.node)}-${cut.epoch}-${cut.seq}-${Date.now()}`,
      )
    : await mkdtemp(path.join(os.tmpdir(), 'flashback-restore-'));
  await mkdir(dir, { recursive: true });
  let server: ServerProcess | undefined;
  let keepFiles = false;
  try {
    const files = await createAofDir(dir);
    onProgress({ phase: 'baseline', events: 0, totalEvents });
    // The RDB is hashed as it is written: one that does not match its record fails here, before anything loads.
    const rdbCheck = baselineCheck(req.node, cut.epoch, base, 'RDB');
    const rdb = await objectStream(deps.objects, base.rdbObject, rdbCheck);
    const checkRdb = (rdbVersion: number) => assertLoadable({ restore: build, rdbVersion, source: base.source, what });
    const baseBytes = (
      await writeBaseRdb(files.baseRdbPath, rdb, checkRdb).catch(async (err: unknown) => {
        throw await mismatchOr(err, deps.objects, base.rdbObject, rdbCheck);
      })
    ).bytes;
    const incr = new IncrWriter(createWriteStream(files.incrPath));
    await incr.writeTail(tail);
    let replayed = 0;
    let expect = cut.baselineSeq + 1;
    const reorder = new LazyExpiryReorder((item) => incr.write(item));
    let lastTsUs = 0;
    const broken = await deps.events.brokenEvents(req.node, cut.epoch, cut.baselineSeq, cut.seq);
    const skip = new Set(broken.map((b) => b.seq));
    for await (const item of deps.events.replayItems(req.node, cut.epoch, cut.baselineSeq, cut.seq)) {
      if (item.seq < expect) continue; // a duplicate row not merged yet
      if (item.seq !== expect)
        throw new CaptureGapError(
          `events ${expect}–${item.seq - 1} of node "${req.node}" epoch ${cut.epoch} are missing: nothing is restored across a hole`,
        );
      expect++;
      lastTsUs = item.tsUs;
      if (item.resp.length > 0 && !skip.has(item.seq)) {
        item.resp = replayBytes(item);
        await reorder.push(item);
      }
      replayed++;
      if ((replayed & 0x3fff) === 0) onProgress({ phase: 'events', events: replayed, totalEvents });
    }
    for (const late of await deps.events.expiredAfter(req.node, cut.epoch, cut.seq, lastTsUs + 2_000_000))
      reorder.lookahead(late);
    await reorder.end();
    if (expect !== cut.seq + 1 && cut.seq > cut.baselineSeq)
      throw new CaptureGapError(
        `events ${expect}–${cut.seq} of node "${req.node}" epoch ${cut.epoch} are missing: nothing is restored across a hole`,
      );
    const shiftMs = req.keepTtlRelative ? Math.max(0, Math.round(Date.now() - (cut.askedTsUs ?? cut.tsUs) / 1000)) : 0;
    if (shiftMs > 0) await incr.writeRaw(keepTtlRelativeScript(shiftMs, hasFieldTtls(build)));
    await incr.end();
    onProgress({ phase: 'events', events: replayed, totalEvents });

    onProgress({ phase: 'load', events: replayed, totalEvents });
    const settings = replayConfig(base.source, cut.baselineSeq);
    // Hash-field TTLs replay on the source's clock (restorer/source-clock.ts).
    const clock = sourceClock(
      build,
      base.source,
      base.tsUs,
      hasFieldTtls(build) && (await replaysFieldTtls(deps.events, req.node, cut)),
    );
    try {
      server = await loadAofDir(dir, {
        port: req.spawn?.port,
        detached: keep,
        args: settings.args,
        bin: build.bin,
        env: clock.env,
      });
    } catch (err) {
      if (!(err instanceof AofLoadError)) throw err;
      keepFiles = true;
      throw await explainLoadFailure({
        events: deps.events,
        node: req.node,
        cut,
        dir,
        err,
        logger,
        write: replayBytes,
        skip,
        incr: { path: files.incrPath, tailBytes: tail.length, baseBytes },
        source: base.source,
        bin: build.bin,
      });
    }
    onProgress({ phase: 'verify', events: replayed, totalEvents });
    const subset = (req.keys?.length ?? 0) > 0 || req.db !== undefined;
    const droppedKeys = subset ? await applyKeyFilter(server.url, { patterns: req.keys, db: req.db }) : 0;
    const restoredDigest = await digest(server.url);
    // The source's baseline digest covers the whole dataset: comparable only for a full restore.
    const atBaseline = cut.seq <= cut.baselineSeq && !subset;
    const verified: RestoreReport['verified'] =
      atBaseline && base.digest !== '' && base.digest === restoredDigest ? 'match' : 'unchecked';
    if (atBaseline && base.digest !== '' && base.digest !== restoredDigest) {
      throw new FlashbackError(
        ErrorCode.Internal,
        `restored digest ${restoredDigest} differs from the source's digest ${base.digest} recorded at baseline seq ${cut.baselineSeq}: the restore is not exact; report this with the node and seq`,
      );
    }
    const warnings = [
      // A --to cutoff whose state is not provably the state at the asked instant says so (asked, resolved, why).
      ...(await cutoffPrecision(deps.events, req.node, cut)),
      ...settings.warnings,
      ...(clock.warning ? [clock.warning] : []),
      ...brokenWarnings(broken),
      // Said, not silent: a record without hashes (an older agent, or a store whose baselines table lacks the columns:
      // a sharded one altered by hand only in part) restores unchecked.
      ...(base.rdbSha256 === ''
        ? [
            `the baseline's record (epoch ${cut.epoch} seq ${base.seq}) carries no SHA-256 of its objects, so they were not checked against it (an agent before the check, or flashback.baselines without rdb_sha256/tail_sha256 on the server read: docs/security.md)`,
          ]
        : []),
      ...(await exactnessWarnings(deps.events, server.url, req.node, cut.epoch, cut.baselineSeq, cut.seq)),
    ];
    // Digest and warnings above are of the data as loaded (at the cutoff); a source-clock load now moves to a
    // real-clock server, which drops what expired since.
    let expiredOnLoad = 0;
    if (clock.env) {
      const reloaded = await reloadOnRealClock(server, { detached: keep, args: settings.args, bin: build.bin });
      server = reloaded.server;
      expiredOnLoad = reloaded.expiredOnLoad;
      // Deliveries the frozen clock took as "now" get their times back (restorer/delivery-times.ts).
      const { deliveries, truncated } = await readDeliveries(deps.events, req.node, cut.epoch, 0, cut.seq);
      const { kept } = await withRedis(server.url, (r) => setDeliveryTimes(r, deliveries));
      if (kept > 0)
        warnings.push(
          `${kept} pending consumer-group entr${kept === 1 ? 'y' : 'ies'} deleted from ${kept === 1 ? 'its stream keeps' : 'their streams keep'} the time the restore loaded ${kept === 1 ? 'it' : 'them'} at, not ${kept === 1 ? 'its' : 'their'} delivery time: ${kept === 1 ? 'its stream has' : 'their streams have'} a DUMP layout this restorer cannot rewrite, and XCLAIM would drop a deleted entry from the pending list; a history with hash-field TTLs loads on the source's clock (docs/exactness.md)`,
        );
      if (truncated)
        warnings.push(
          'more than 1 000 000 consumer-group deliveries in this epoch: pending entries delivered before the newest million keep the time the restore loaded them at, not their delivery time',
        );
    }
    const expiredAtRestore = (await expireDueKeys(server.url)) + expiredOnLoad;
    const keys = await countKeys(server.url);
    const report: RestoreReport = {
      node: req.node,
      epoch: cut.epoch,
      cutoff: {
        seq: cut.seq,
        tsUs: cut.tsUs,
        time: formatTsUs(cut.tsUs),
        asked: cut.askedTsUs !== undefined ? formatTsUs(cut.askedTsUs) : undefined,
      },
      baseline: {
        seq: cut.baselineSeq,
        tsUs: base.tsUs,
        time: formatTsUs(base.tsUs),
        rdbBytes: base.rdbBytes,
        digest: base.digest,
      },
      eventsReplayed: replayed,
      keys,
      ...(subset ? { droppedKeys } : {}),
      expiredAtRestore,
      digest: restoredDigest,
      verified,
      warnings,
      server: `${build.server} ${build.version}`,
      seconds: 0,
    };
    if (req.target !== undefined) {
      onProgress({ phase: 'copy', events: replayed, totalEvents });
      await copyToTarget(server.url, req.target, { flush: req.flush });
      report.url = shownUrl(req.target);
    } else if (req.rdb !== undefined) {
      await saveRdb(server.url, dir, req.rdb);
      report.rdb = path.resolve(req.rdb);
    } else {
      report.url = server.url;
      report.pid = server.pid;
      report.dir = dir;
    }
    report.seconds = Math.round((Date.now() - started) / 10) / 100;
    return report;
  } catch (err) {
    if (server && keep) await server.stop().catch(() => undefined);
    if (keep && !keepFiles) await rm(dir, { recursive: true, force: true });
    throw err;
  } finally {
    if (!keep) {
      await server?.stop().catch(() => undefined);
      if (!keepFiles) await rm(dir, { recursive: true, force: true });
    }
  }
}

/**
 * An existing target must take what the restore server DUMPs (RESTORE refuses a payload of a newer RDB format) and
 * run the source's commands later: the source's server, its line or newer. Checked before any work.
 */
async function assertTargetFits(
  url: string,
  restoreServer: ServerBinary,
  source: ServerBuild | undefined,
): Promise<void> {
  const t = await openKeyTarget(url, '--target');
  let target: ServerBuild;
  try {
    target = await t.build();
  } finally {
    t.close();
  }
  if (canRestore(target, source ?? restoreServer, rdbVersionRead(restoreServer))) return;
  const from = source ? `${source.server} ${source.version}` : `${restoreServer.server} ${restoreServer.version}`;
  throw new FlashbackError(
    ErrorCode.BadInput,
    `restore target ${t.shown} runs ${target.server} ${target.version}; this history comes from ${from} and its keys are written in the RDB format of ${restoreServer.server} ${restoreServer.version}: restore into a ${source?.server ?? restoreServer.server} server of that line or newer, or use --spawn`,
  );
}

/** Whether the events after the baseline up to the cutoff hold a command that may set a hash-field TTL. */
async function replaysFieldTtls(events: EventStore, node: string, cut: ResolvedCutoff & { baselineSeq: number }) {
  if (cut.seq <= cut.baselineSeq) return false;
  const [row] = await events.query<{ n: number | string }>(
    fieldTtlCommandsSql(node, cut.epoch, cut.baselineSeq, cut.seq),
  );
  return Number(row?.n ?? 0) > 0;
}

/** What the restore writes for an event: a captured command the source may have refused goes through the guard. */
function replayBytes(item: StoredEvent): Buffer {
  return item.kind === 'command' ? guardRefusable(item.resp) : item.resp;
}

function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export type { ResolvedCutoff };

/**
 * Names the replayed commands whose effect may differ on replay: nondeterministic writes (SPOP, XADD * …, by the
 * restored server's own command table) that no captured state follows in their group. The agent captures that state
 * (agent/monitor/state-capture.ts); a command without it comes from an epoch whose state probe failed.
 */
async function exactnessWarnings(
  events: EventStore,
  url: string,
  node: string,
  epoch: number,
  afterSeq: number,
  toSeq: number,
): Promise<string[]> {
  if (toSeq <= afterSeq) return [];
  const rows = await events.query<{ command: string; n: number | string }>(
    unstatedCommandsSql(node, epoch, afterSeq, toSeq),
  );
  // XADD is deterministic unless its replay still asks for a generated id (the agent writes the source's id in).
  const xadds = await events.query<{ replay: string }>(unstatedXaddsSql(node, epoch, afterSeq, toSeq));
  const generated = xadds.filter((x) => autoIdIndex(decodeCommand(Buffer.from(x.replay, 'base64'))) >= 0).length;
  const random: string[] = [];
  if (rows.length > 0) {
    const conn = await RawRedis.connect(parseRedisUrl(url));
    try {
      const table = await CommandTable.load(conn);
      for (const r of rows) {
        const spec = table.lookup([Buffer.from(r.command)]);
        if ((spec?.nondeterministic && spec.write) || r.command === 'XREADGROUP')
          random.push(`${r.command} ×${Number(r.n)}`);
      }
    } finally {
      conn.close();
    }
  }
  if (generated > 0) random.push(`XADD ×${generated}`);
  if (random.length === 0) return [];
  return [
    `replayed as issued without the state the source reached (its capture failed), their result may differ: ${random.join(', ')}`,
  ];
}
