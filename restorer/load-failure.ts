import path from 'node:path';
import { ErrorCode, FlashbackError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { EventStore, StoredEvent } from '../core/store/event-store.js';
import type { BrokenEventRow } from '../core/store/schema.js';
import { formatTsUs } from '../core/time.js';
import { findBrokenEvent, parseLoadFailure, readServerLog, recordBrokenEvent, shortArgs } from './broken-events.js';
import type { AofLoadError } from './materialize.js';

/**
 * A restore whose AOF did not load: the event that broke it when the server's log names one, and where the files are.
 */
export class RestoreLoadError extends FlashbackError {
  /** The restore's files (AOF dir and the server's log `redis.log`), kept for a look. */
  readonly dir: string;
  /** The event the server's log names, if it names one of the replayed events. */
  readonly event?: { epoch: number; seq: number; tsUs: number; command: string; args: string };
  constructor(message: string, o: ErrorOptions & { dir: string; event?: RestoreLoadError['event'] }) {
    super(ErrorCode.BrokenEvent, message, o);
    this.dir = o.dir;
    this.event = o.event;
  }
}

/**
 * Reads the restore server's log, finds the event it names among the replayed ones, records it as broken (later
 * restores skip it and warn; windows show it) and builds the error that says all of it, with the way out.
 */
export async function explainLoadFailure(o: {
  events: EventStore;
  node: string;
  cut: { epoch: number; seq: number; baselineSeq: number };
  dir: string;
  err: AofLoadError;
  logger: Logger;
  /** The RESP the restore wrote for an event. */
  write: (item: StoredEvent) => Buffer;
}): Promise<RestoreLoadError> {
  const { events, node, cut, dir, err, logger } = o;
  const failure = parseLoadFailure((await readServerLog(path.join(dir, 'redis.log'))) || err.logTail);
  const found = await findBrokenEvent(
    events.replayItems(node, cut.epoch, cut.baselineSeq, cut.seq),
    failure,
    o.write,
  ).catch(() => undefined);
  const kept = `its files are kept in ${dir} (redis.log has the server's report; remove the dir when done)`;
  if (!found) {
    logger.error(
      { node, epoch: cut.epoch, cutoffSeq: cut.seq, reason: failure.reason, dir },
      'restore AOF did not load; the log names no replayed event',
    );
    return new RestoreLoadError(
      `restore of node "${node}" epoch ${cut.epoch} to seq ${cut.seq} did not load: redis-server said "${failure.reason}", naming no event of the history (the baseline's own tail, or an unknown cause); ${kept}`,
      { cause: err, dir },
    );
  }
  const { item, argv } = found;
  const command = argv[0]!.toString('latin1').toUpperCase();
  const args = shortArgs(argv);
  const recorded = await recordBrokenEvent(events, {
    node,
    epoch: cut.epoch,
    seq: item.seq,
    ts_us: item.tsUs,
    command,
    args,
    reason: failure.reason,
    found_us: Date.now() * 1000,
  });
  logger.error(
    { node, epoch: cut.epoch, seq: item.seq, command, args, reason: failure.reason, dir, recorded },
    'restore AOF did not load: an event broke it',
  );
  const before =
    item.seq > cut.baselineSeq + 1
      ? `restore to before it (--before-seq ${item.seq}, ${formatTsUs(item.tsUs)}) for the state just before it`
      : 'restore to an earlier window for the state before it';
  const later = recorded
    ? '; it is now recorded as broken: later restores past it skip it and warn, and `flashback windows` lists it'
    : '; recording it as broken failed, so later restores past it fail the same way';
  return new RestoreLoadError(
    `restore of node "${node}" did not load: event seq ${item.seq} of epoch ${cut.epoch} (${formatTsUs(item.tsUs)}, ${args}) broke it — redis-server: "${failure.reason}"; ${before}${later}; ${kept}`,
    { cause: err, dir, event: { epoch: cut.epoch, seq: item.seq, tsUs: item.tsUs, command, args } },
  );
}

/** Report warnings for recorded broken events a restore skipped. */
export function brokenWarnings(broken: BrokenEventRow[]): string[] {
  return broken.map(
    (b) =>
      `event seq ${b.seq} (${formatTsUs(b.ts_us)}, ${b.args}) was skipped: a restore server could not load it ("${b.reason}"); if the source ran it rather than refused it, the restored data after it may differ`,
  );
}
