import path from 'node:path';
import type { SourceInfo } from '../core/bus/baseline.js';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { EventStore, StoredEvent } from '../core/store/event-store.js';
import type { BrokenEventRow } from '../core/store/schema.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { decodeCommand, RespError } from '../core/redis/resp.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { formatTsUs } from '../core/time.js';
import {
  findBrokenEvent,
  parseLoadFailure,
  readServerLog,
  recordBrokenEvent,
  shortArgs,
  type FoundEvent,
  type IncrLayout,
  type LoadFailure,
} from './broken-events.js';
import type { AofLoadError } from './materialize.js';

/**
 * A restore whose AOF did not load: the event that broke it when the server's log names one, and where the files are.
 * Code BROKEN_EVENT; INTERNAL when the restore host caused it ({@link hostCause}).
 */
export class RestoreLoadError extends FlashbackError {
  /** The restore's files (AOF dir and the server's log `redis.log`), kept for a look. */
  readonly dir: string;
  /** The event the server's log names, if it names one of the replayed events. */
  readonly event?: { epoch: number; seq: number; tsUs: number; command: string; args: string };
  constructor(message: string, o: ErrorOptions & { dir: string; event?: RestoreLoadError['event']; code?: ErrorCode }) {
    super(o.code ?? ErrorCode.BrokenEvent, message, o);
    this.dir = o.dir;
    this.event = o.event;
  }
}

/** Allocations below this are a host's memory running out; above it, an argument asked for the impossible. */
const PLAUSIBLE_ALLOCATION_BYTES = 2 ** 40;

/**
 * Why a failed load is the restore host's doing rather than an event's, or undefined: an abort for out of memory
 * while allocating a plausible size (a refused `SETRANGE k 9223372036854775807 A` asks for 8 EiB; a host short of
 * memory fails on a few hundred MB), or an unknown command on a restore server older than the source (or another
 * server: Valkey for Redis). Such an event is not recorded as broken: on a better host it loads.
 */
export function hostCause(failure: LoadFailure, source: SourceInfo | undefined): string | undefined {
  const oom = failure.outOfMemoryBytes;
  if (oom !== undefined && oom < PLAUSIBLE_ALLOCATION_BYTES)
    return `the restore server ran out of memory allocating ${oom} bytes: the restore host's memory (or a ulimit) is short, not an event at fault; restore on a host with more free memory`;
  const restorer = failure.server;
  if (failure.unknownCommand !== undefined && restorer && source?.version) {
    const sourceName = source.server || 'redis';
    if (restorer.name !== sourceName || compareVersions(restorer.version, source.version) < 0)
      return `the restore server (${restorer.name} ${restorer.version}) is older than the source (${sourceName} ${source.version}) or another server, and does not know ${failure.unknownCommand}: restore with a ${sourceName}-server at least as new as the source's (first on the restorer's PATH)`;
  }
  return undefined;
}

/** Numeric comparison of dotted versions (`7.0.15` < `7.2.0`). */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/**
 * Reads the restore server's log, finds the event it names among the replayed ones, records it as broken (later
 * restores skip it and warn; windows show it) and builds the error that says all of it, with the way out. A failure
 * the restore host caused ({@link hostCause}) names the event but records nothing.
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
  /** Seqs the restore did not write (recorded broken events). */
  skip: ReadonlySet<number>;
  /** Where the events are in the incr file, to place the loader's progress (see findBrokenEvent). */
  incr?: IncrLayout;
  /** The source server, as its baseline recorded it. */
  source?: SourceInfo;
  /** The server binary that loaded it: a scratch server checking payloads must be the same. */
  bin?: string;
}): Promise<RestoreLoadError> {
  const { events, node, cut, dir, err, logger } = o;
  const failure = parseLoadFailure((await readServerLog(path.join(dir, 'redis.log'))) || err.logTail);
  let found: FoundEvent | undefined;
  let lookup = '';
  try {
    found = await findBrokenEvent({
      items: events.replayItems(node, cut.epoch, cut.baselineSeq, cut.seq),
      failure,
      write: o.write,
      skip: o.skip,
      incr: o.incr,
    });
  } catch (e) {
    // The load failure stays the error; why the event could not be looked for goes to the log and the message.
    lookup = describeError(e);
    logger.error(
      { node, epoch: cut.epoch, cutoffSeq: cut.seq, err: lookup },
      'looking for the event that broke the restore failed',
    );
  }
  if (found && failure.rdbError && found.candidates.length > 1) {
    const corrupt = await firstCorruptPayload(found.candidates, o.bin).catch((e: unknown) => {
      logger.warn({ node, err: describeError(e) }, 'checking RESTORE payloads on a scratch server failed');
      return undefined;
    });
    if (corrupt) found = { item: corrupt, argv: decodeCommand(corrupt.resp), candidates: [corrupt] };
  }
  const kept = `its files are kept in ${dir} (redis.log has the server's report; remove the dir when done)`;
  const host = hostCause(failure, o.source);
  const described = found && describeFound(found);
  if (host) {
    logger.error(
      { node, epoch: cut.epoch, cutoffSeq: cut.seq, reason: failure.reason, seq: found?.item.seq, dir },
      'restore AOF did not load: the restore host caused it',
    );
    const at = found ? ` at event seq ${found.item.seq} of epoch ${cut.epoch} (${described!.args})` : '';
    return new RestoreLoadError(
      `restore of node "${node}" did not load${at}: redis-server said "${failure.reason}"; ${host}; nothing was recorded as broken; ${kept}`,
      { cause: err, dir, code: ErrorCode.Internal, event: described && { epoch: cut.epoch, ...described } },
    );
  }
  if (!found) {
    logger.error(
      { node, epoch: cut.epoch, cutoffSeq: cut.seq, reason: failure.reason, dir },
      'restore AOF did not load; the log names no replayed event',
    );
    const why = lookup
      ? `the replayed events could not be read to find the one it names (${lookup})`
      : "naming no event of the history (the baseline's own tail, or an unknown cause)";
    return new RestoreLoadError(
      `restore of node "${node}" epoch ${cut.epoch} to seq ${cut.seq} did not load: redis-server said "${failure.reason}", ${why}; ${kept}`,
      { cause: err, dir },
    );
  }
  const { item } = found;
  const { command, args, tsUs } = described!;
  const recorded = await recordBrokenEvent(events, {
    node,
    epoch: cut.epoch,
    seq: item.seq,
    ts_us: tsUs,
    command,
    args,
    reason: failure.reason,
    found_us: Date.now() * 1000,
  });
  if (recorded !== true)
    logger.error({ node, epoch: cut.epoch, seq: item.seq, err: recorded }, 'recording the broken event failed');
  logger.error(
    { node, epoch: cut.epoch, seq: item.seq, command, args, reason: failure.reason, dir, recorded: recorded === true },
    'restore AOF did not load: an event broke it',
  );
  const before =
    item.seq > cut.baselineSeq + 1
      ? `restore to before it (--before-seq ${item.seq}, ${formatTsUs(item.tsUs)}) for the state just before it`
      : 'restore to an earlier window for the state before it';
  const later =
    recorded === true
      ? '; it is now recorded as broken: later restores past it skip it and warn, and `flashback windows` lists it'
      : '; recording it as broken failed, so later restores past it fail the same way';
  const others =
    found.candidates.length > 1
      ? ` (${found.candidates.length} replayed events fit what the log shows where the load stopped; this is the first of them)`
      : '';
  return new RestoreLoadError(
    `restore of node "${node}" did not load: event seq ${item.seq} of epoch ${cut.epoch} (${formatTsUs(item.tsUs)}, ${args}) broke it${others} — redis-server: "${failure.reason}"; ${before}${later}; ${kept}`,
    { cause: err, dir, event: { epoch: cut.epoch, seq: item.seq, tsUs: item.tsUs, command, args } },
  );
}

/**
 * The first of `candidates` (RESTORE, RESTORE-ASKING or FUNCTION RESTORE events) whose payload a live server refuses
 * as unreadable: a client's RESTORE reports "Bad data format" where the AOF loader exits (7.0 rdbReportError), so a
 * scratch server of the same binary tells which payload broke the load. Undefined when none is refused.
 */
async function firstCorruptPayload(candidates: StoredEvent[], bin?: string): Promise<StoredEvent | undefined> {
  const scratch = await startRedisServer({ bin });
  try {
    const conn = await RawRedis.connect(parseRedisUrl(scratch.url));
    try {
      for (const c of candidates) {
        const argv = decodeCommand(c.resp);
        const check =
          argv[0]!.toString('latin1').toLowerCase() === 'function'
            ? ['FUNCTION', 'RESTORE', argv[2]!, 'REPLACE']
            : ['RESTORE', '__flashback_payload_check__', '0', argv[3]!, 'REPLACE'];
        // A payload that kills even a live server is as broken as one it refuses.
        const reply = await conn.call(check).catch(() => new RespError('the scratch server died on it'));
        if (reply instanceof RespError && !/checksum|BUSYKEY|syntax/i.test(reply.message)) return c;
      }
      return undefined;
    } finally {
      conn.close();
    }
  } finally {
    await scratch.stop();
  }
}

function describeFound(found: FoundEvent): { seq: number; tsUs: number; command: string; args: string } {
  return {
    seq: found.item.seq,
    tsUs: found.item.tsUs,
    command: found.argv[0]!.toString('latin1').toUpperCase(),
    args: shortArgs(found.argv),
  };
}

/** Report warnings for recorded broken events a restore skipped. */
export function brokenWarnings(broken: BrokenEventRow[]): string[] {
  return broken.map(
    (b) =>
      `event seq ${b.seq} (${formatTsUs(b.ts_us)}, ${b.args}) was skipped: a restore server could not load it ("${b.reason}"); if the source ran it rather than refused it, the restored data after it may differ`,
  );
}
