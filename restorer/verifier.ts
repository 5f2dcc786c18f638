import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import { describeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { VerificationMetrics } from '../core/metrics/verification.js';
import {
  describeStretch,
  nodeVerifications,
  pendingStretches,
  recordVerification,
  type PendingStretch,
} from '../core/store/verifications.js';
import { nodesSql } from '../core/store/windows.js';
import type { RestoreDeps } from './restore.js';
import { verifyStretch } from './verify-stretch.js';

/** Options of {@link startVerifier}. */
export interface VerifierOptions {
  /** What a restore needs (the verifier spawns its scratch servers in a temp dir of its own). */
  deps: RestoreDeps;
  /** Where checks are recorded (flashback.verifications). */
  client: ClickHouseClient;
  metrics: VerificationMetrics;
  /** Pause between rounds (a round checks every stretch waiting), ms. */
  intervalMs: number;
  /** True while a real restore job runs: no check starts then. */
  isBusy: () => boolean;
  /** Failed runs of one stretch before it is recorded `unverifiable`. @default 3 */
  maxAttempts?: number;
  /** How long close() waits for the check in hand, ms. @default 30_000 */
  closeTimeoutMs?: number;
  /** @default silent */
  logger?: Logger;
}

/** The background check loop of a restorer. */
export interface Verifier {
  /** Runs one round now (tests, and the first round at start); resolves when it is done. */
  round(): Promise<void>;
  /** Stops after the check in hand (or after closeTimeoutMs); removes the scratch dir. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the background check (issue 16, "proven restorable"): every `intervalMs`, for every node, each stretch
 * between two consecutive baselines whose later one recorded the source's DEBUG DIGEST is restored from the earlier
 * one and compared (restorer/verify-stretch.ts), one at a time, only while no restore job runs; the result goes to
 * flashback.verifications, the metrics and, for a mismatch, an error log line naming the first differing key.
 */
export async function startVerifier(o: VerifierOptions): Promise<Verifier> {
  const { client, metrics, intervalMs, isBusy, maxAttempts = 3, closeTimeoutMs = 30_000 } = o;
  const logger = o.logger ?? silentLogger;
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'flashback-verify-'));
  const deps: RestoreDeps = { ...o.deps, instancesDir: workDir, logger: silentLogger };
  const attempts = new Map<string, number>();
  const stop = new AbortController();
  let closing = false;
  let running: Promise<void> = Promise.resolve();

  const verifiedTo = new Map<string, number>();
  const markVerified = (node: string, toTsUs: number) => {
    const v = Math.max(verifiedTo.get(node) ?? 0, toTsUs / 1e6);
    verifiedTo.set(node, v);
    metrics.verifiedTo.set({ node }, v);
  };

  const check = async (s: PendingStretch): Promise<void> => {
    const id = `${s.node} ${s.epoch}:${s.fromSeq}-${s.toSeq}`;
    const t0 = Date.now();
    try {
      const { row, differing } = await verifyStretch(deps, s, logger);
      await recordVerification(client, row);
      attempts.delete(id);
      metrics.checks.inc({ node: s.node, result: row.result });
      metrics.seconds.observe((Date.now() - t0) / 1000);
      const where = { node: s.node, epoch: s.epoch, fromSeq: s.fromSeq, toSeq: s.toSeq, seconds: row.seconds };
      if (row.result === 'match') {
        markVerified(s.node, s.toTsUs);
        logger.info({ ...where, events: row.events, note: row.detail || undefined }, 'stretch verified');
      } else if (row.result === 'mismatch') {
        logger.error(
          {
            ...where,
            firstKey: row.first_key || undefined,
            keysDiffering: row.keys_differing,
            keys: differing.slice(0, 5).map((d) => ({ db: d.db, why: d.why })),
            sourceDigest: row.source_digest,
            restoredDigest: row.restored_digest,
          },
          `restore check MISMATCH on node "${s.node}" epoch ${s.epoch} ${describeStretch(s)}: ${row.detail}; restores inside this stretch are not proven exact (report this with the node and seqs)`,
        );
      } else {
        logger.warn({ ...where, reason: row.detail }, 'stretch cannot be verified');
      }
    } catch (err) {
      metrics.checks.inc({ node: s.node, result: 'error' });
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      logger.warn(
        { node: s.node, epoch: s.epoch, fromSeq: s.fromSeq, toSeq: s.toSeq, attempt: n, err: describeError(err) },
        n < maxAttempts ? 'stretch check failed; retried next round' : 'stretch check failed; given up',
      );
      if (n >= maxAttempts) {
        attempts.delete(id);
        await recordVerification(client, {
          node: s.node,
          epoch: s.epoch,
          from_seq: s.fromSeq,
          to_seq: s.toSeq,
          from_ts_us: s.fromTsUs,
          to_ts_us: s.toTsUs,
          result: 'unverifiable',
          source_digest: s.digest,
          restored_digest: '',
          first_key: '',
          keys_differing: 0,
          detail: `the check failed ${n} times; last: ${describeError(err)}`,
          events: 0,
          seconds: (Date.now() - t0) / 1000,
          checked_us: Date.now() * 1000,
        }).catch(() => undefined);
        metrics.checks.inc({ node: s.node, result: 'unverifiable' });
      }
    }
  };

  /** Waits while a restore job runs; false when closing. */
  const idle = async (): Promise<boolean> => {
    while (isBusy() && !closing) await delay(200, undefined, { signal: stop.signal }).catch(() => undefined);
    return !closing;
  };

  const doRound = async (): Promise<void> => {
    const nodes = (await deps.events.query<{ node: string }>(nodesSql())).map((n) => n.node);
    for (const node of nodes) {
      if (closing) return;
      const pending = await pendingStretches(deps.events, node);
      const done = await nodeVerifications(deps.events, node);
      if (pending.length > 0 || done.length > 0) metrics.seeNode(node);
      for (const c of done) if (c.result === 'match') markVerified(node, c.toTsUs);
      metrics.pending.set({ node }, pending.length);
      for (const s of pending) {
        if (!(await idle())) return;
        await check(s);
        metrics.pending.dec({ node });
      }
    }
  };

  const round = (): Promise<void> => {
    // One check at a time: a round asked for while one runs waits for it.
    running = running.then(doRound).catch((err: unknown) => {
      if (!closing) logger.warn({ err: describeError(err) }, 'restore check round failed; next round later');
    });
    return running;
  };

  const loop = (async () => {
    while (!closing) {
      await round();
      await delay(intervalMs, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  })();
  logger.info(
    { intervalMs, scratchDir: workDir },
    `background restore check every ${Math.round(intervalMs / 1000)} s (stretches between baselines with a digest)`,
  );

  let closed: Promise<void> | undefined;
  return {
    round,
    close() {
      return (closed ??= (async () => {
        closing = true;
        stop.abort();
        let timer: NodeJS.Timeout | undefined;
        const finished = await Promise.race([
          loop.then(() => true),
          new Promise<boolean>((res) => (timer = setTimeout(() => res(false), closeTimeoutMs))),
        ]);
        clearTimeout(timer);
        if (!finished)
          logger.warn(
            { scratchDir: workDir },
            'restore check still running at close; its scratch server may outlive us',
          );
        else await rm(workDir, { recursive: true, force: true });
      })());
    },
  };
}
