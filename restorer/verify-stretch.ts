import { rm } from 'node:fs/promises';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { readableBytes } from '../core/redis/escape.js';
import { stopPid } from '../core/servers/server-process.js';
import type { VerificationRow } from '../core/store/schema.js';
import { firstEventOfKeysSql, type PendingStretch } from '../core/store/verifications.js';
import { diffInstances, type KeyDifference } from './key-diff.js';
import { restore, type RestoreDeps, type RestoreReport } from './restore.js';

/** A finished check: the row to store, and the first differing keys of a mismatch (for the log). */
export interface StretchCheck {
  row: VerificationRow;
  differing: KeyDifference[];
}

/** Codes that say the stretch itself cannot be checked (no retry will change it). */
const UNVERIFIABLE: readonly string[] = [ErrorCode.OutsideWindow, ErrorCode.CaptureGap];

/**
 * Checks one stretch: restores the baseline at `fromSeq` plus every event up to the marker at `toSeq` into a scratch
 * server and compares its DEBUG DIGEST with the one the source recorded at `toSeq`. Equal: `match`. Not equal: the
 * baseline at `toSeq` is restored on its own too and the two are compared key by key (value digest and expiry); a
 * difference the passing of a TTL does not explain is a `mismatch` naming the first differing key (the one whose first
 * event in the stretch comes first). Throws when the check could not run (ClickHouse, NATS, a server that would not
 * start); a stretch that cannot be checked at all is `unverifiable`.
 */
export async function verifyStretch(
  deps: RestoreDeps,
  s: PendingStretch,
  logger: Logger = silentLogger,
): Promise<StretchCheck> {
  const started = Date.now();
  const base = {
    node: s.node,
    epoch: s.epoch,
    from_seq: s.fromSeq,
    to_seq: s.toSeq,
    from_ts_us: s.fromTsUs,
    to_ts_us: s.toTsUs,
    source_digest: s.digest,
  };
  const finish = (r: Omit<VerificationRow, keyof typeof base | 'seconds' | 'checked_us'>, d: KeyDifference[] = []) => ({
    row: { ...base, ...r, seconds: (Date.now() - started) / 1000, checked_us: Date.now() * 1000 },
    differing: d,
  });
  const quiet = { ...deps, logger: logger.child({ check: `${s.node} ${s.epoch}:${s.fromSeq}-${s.toSeq}` }) };
  let replay: RestoreReport;
  try {
    replay = await restore(quiet, {
      node: s.node,
      epoch: s.epoch,
      toSeq: s.toSeq,
      fromBaselineSeq: s.fromSeq,
      spawn: {},
    });
  } catch (err) {
    if (err instanceof FlashbackError && UNVERIFIABLE.includes(err.code))
      return finish({
        result: 'unverifiable',
        restored_digest: '',
        first_key: '',
        keys_differing: 0,
        detail: describeError(err),
        events: 0,
      });
    throw err;
  }
  try {
    const skipped = replay.warnings.filter((w) => /broken|could not load/i.test(w));
    if (replay.digest === s.digest)
      return finish({
        result: 'match',
        restored_digest: replay.digest,
        first_key: '',
        keys_differing: 0,
        detail: '',
        events: replay.eventsReplayed,
      });
    // The reference: the baseline at toSeq on its own (a key pattern keeps restore() from failing on its digest).
    const reference = await restore(quiet, {
      node: s.node,
      epoch: s.epoch,
      toSeq: s.toSeq,
      fromBaselineSeq: s.toSeq,
      keys: ['*'],
      spawn: {},
    });
    try {
      const diff = await diffInstances(replay.url!, reference.url!);
      const refNote =
        reference.digest === s.digest
          ? `the baseline at seq ${s.toSeq} restored on its own has the recorded digest`
          : `the baseline at seq ${s.toSeq} restored on its own has digest ${reference.digest}, not the recorded one either`;
      if (diff.differingCount === 0 && diff.excused > 0)
        return finish({
          result: 'match',
          restored_digest: replay.digest,
          first_key: '',
          keys_differing: diff.excused,
          detail: `digest ${replay.digest} differs from the recorded ${s.digest} only by ${diff.excused} key(s) whose TTL passed before the check ran (a restore server expires them by its clock); every other key of ${diff.compared} is equal to the baseline at seq ${s.toSeq}`,
          events: replay.eventsReplayed,
        });
      const first = diff.differing.length > 0 ? await firstInStretch(deps, s, diff.differing) : undefined;
      const detail =
        diff.differingCount > 0
          ? `${diff.differingCount} key(s) of ${diff.compared} differ from the baseline at seq ${s.toSeq}; first: db ${first!.db} ${JSON.stringify(readableBytes(first!.key))} (${first!.why}); ${refNote}`
          : `no key differs from the baseline at seq ${s.toSeq} restored on its own, yet the digests differ (${replay.digest} vs ${s.digest}); ${refNote}`;
      return finish(
        {
          result: 'mismatch',
          restored_digest: replay.digest,
          first_key: first ? readableBytes(first.key) : '',
          keys_differing: diff.differingCount,
          detail: skipped.length > 0 ? `${detail}; ${skipped.join('; ')}` : detail,
          events: replay.eventsReplayed,
        },
        first ? [first, ...diff.differing.filter((d) => d !== first)] : diff.differing,
      );
    } finally {
      await discard(reference);
    }
  } finally {
    await discard(replay);
  }
}

/**
 * The differing key whose first event in the stretch comes first (where the replay went wrong first); a key no event
 * of the stretch names (it came wrong from the earlier baseline) after those, then by db and bytes.
 */
async function firstInStretch(deps: RestoreDeps, s: PendingStretch, keys: KeyDifference[]): Promise<KeyDifference> {
  const names = keys.map((k) => readableBytes(k.key));
  const rows = await deps.events.query<{ key: string; first_seq: string | number }>(
    firstEventOfKeysSql(s.node, s.epoch, s.fromSeq, s.toSeq, names),
  );
  const name = rows[0]?.key;
  return keys.find((_, i) => names[i] === name) ?? keys[0]!;
}

/** Stops a scratch instance the check spawned and removes its files. */
async function discard(report: RestoreReport): Promise<void> {
  if (report.pid !== undefined) await stopPid(report.pid, { timeoutMs: 5_000 }).catch(() => undefined);
  if (report.dir) await rm(report.dir, { recursive: true, force: true });
}
