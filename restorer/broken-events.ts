import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import { readableBytes } from '../core/redis/escape.js';
import { parseMonitorLine } from '../core/redis/monitor-parser.js';
import { decodeCommand, RespReader } from '../core/redis/resp.js';
import { BROKEN_EVENTS_TABLE, type BrokenEventRow } from '../core/store/schema.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import type { EventStore, StoredEvent } from '../core/store/event-store.js';
import { dumpChecksumOk } from './dump-payload.js';

/*
 * When a restore server does not load a restore's AOF, its log says why, and often with which command: a crash
 * report lists the current client's argv (the AOF loader's fake client: the command it ran, or inside EXEC the
 * queued command being executed), each argument in sdscatrepr form and cut to 128 bytes, at most 128 of them
 * (7.0 debug.c logCurrentClient); an unknown command is named ("Unknown command 'X' reading the append only
 * file"); a RESTORE payload that breaks the RDB reader is not, but the log says so ("Internal error in RDB reading
 * offset N", and the server exits). The restorer finds the replayed event that fits (findBrokenEvent) and names
 * it, so the operator learns which event, not just "killed by SIGABRT".
 */

/** What a restore server's log tells about why it did not load an AOF. */
export interface LoadFailure {
  /** The log's own words: the first line that says what went wrong. */
  reason: string;
  /** argv of the command it ran when it crashed, each argument possibly cut to 128 bytes (`cut`). */
  argv?: { bytes: Buffer; cut: boolean }[];
  /** The name it did not know. */
  unknownCommand?: string;
  /** The loader met an RDB payload it could not read ("Internal error in RDB reading"): RESTORE's, past the base. */
  rdbError?: boolean;
  /**
   * The loader's progress when it failed (`loading_loaded_bytes` in a crash report's INFO, or the offset an RDB error
   * names), counted from the start of the base file: see findBrokenEvent.
   */
  loadedBytes?: number;
  /** What the server failed to allocate when it aborted for out of memory, bytes. */
  outOfMemoryBytes?: number;
  /** The restore server, from the line it starts with (`Redis version=7.0.15, …`). */
  server?: { name: string; version: string };
}

/** Bytes of one argument the crash report shows at most. */
const SHOWN_ARG_BYTES = 128;

const REASONS = [
  /Guru Meditation: (.*?)(?: #\S+)?$/m,
  /(Redis [\d.]+ crashed by signal: .*)$/m,
  /(Unknown command '.*' reading the append only file.*)$/m,
  /(Bad file format reading the append only file.*)$/m,
  /(Unexpected end of file reading the append only file.*)$/m,
  /(Revert incomplete MULTI\/EXEC transaction.*)$/m,
  /(Internal error in RDB reading .*)$/m,
  /(Fatal error.*)$/m,
];

/** Reads what a restore server's log says about a failed load. */
export function parseLoadFailure(log: string): LoadFailure {
  let reason = '';
  for (const re of REASONS) {
    const m = re.exec(log);
    if (m) {
      reason = m[1]!.trim();
      break;
    }
  }
  if (reason === '') reason = lastWarning(log) ?? 'the server exited without saying why';
  const failure: LoadFailure = { reason };
  const unknown = /Unknown command '(.*?)' reading the append only file/.exec(log);
  if (unknown) failure.unknownCommand = unknown[1]!;
  const rdb = /Internal error in RDB reading offset (\d+),/.exec(log);
  if (rdb) {
    failure.rdbError = true;
    failure.loadedBytes = Number(rdb[1]);
  }
  const loaded = [...log.matchAll(/^loading_loaded_bytes:(\d+)\r?$/gm)].pop();
  if (loaded && failure.loadedBytes === undefined) failure.loadedBytes = Number(loaded[1]);
  const oom = /Redis aborting for OUT OF MEMORY\. Allocating (\d+) bytes/.exec(log);
  if (oom) failure.outOfMemoryBytes = Number(oom[1]);
  const server = / (Redis|Valkey) version=(\d+(?:\.\d+)*)/.exec(log);
  if (server) failure.server = { name: server[1]!.toLowerCase(), version: server[2]! };
  const section = log.indexOf('CURRENT CLIENT INFO');
  if (section >= 0) {
    const shown: string[] = [];
    for (const m of log.slice(section).matchAll(/^argv\[(\d+)\]: '(.*)'$/gm)) {
      if (Number(m[1]) !== shown.length || m[2] === '...') break;
      shown.push(m[2]!);
    }
    if (shown.length > 0) {
      // Each argument is printed as sdscatrepr prints a MONITOR argument: parse them as one MONITOR line.
      const line = parseMonitorLine(Buffer.from(`0.000000 [0 ?:0] ${shown.join(' ')}`, 'latin1'));
      failure.argv = line.argv.map((bytes) => ({ bytes, cut: bytes.length >= SHOWN_ARG_BYTES }));
    }
  }
  return failure;
}

function lastWarning(log: string): string | undefined {
  const warnings = [...log.matchAll(/^\d+:[A-Z] .*? # (.*)$/gm)].map((m) => m[1]!);
  return warnings
    .filter((w) => !/WARNING|oO0OoO0OoO0Oo|Redis version=|Configuration loaded|Server initialized/.test(w))
    .pop();
}

/** Reads a restore server's log file; '' when it is gone. */
export async function readServerLog(file: string): Promise<string> {
  return readFile(file, 'latin1').catch(() => '');
}

/** Whether `written` (the RESP the restore wrote for an event) is the command the log names. */
export function matchesFailure(written: Buffer, failure: LoadFailure): boolean {
  return fitsFailure(decodeCommand(written), failure);
}

/** Whether a command the loader ran (argv) is one that can fail the way the log says. */
function fitsFailure(argv: Buffer[], failure: LoadFailure): boolean {
  const name = argv[0]?.toString('latin1').toLowerCase();
  if (name === undefined) return false;
  if (failure.argv) {
    const shown = failure.argv;
    if (name !== shown[0]!.bytes.toString('latin1').toLowerCase()) return false;
    if (shown.length < argv.length && shown.length < 128) return false;
    if (shown.length > argv.length) return false;
    return shown.every(
      (s, i) => i === 0 || (s.cut ? argv[i]!.subarray(0, s.bytes.length).equals(s.bytes) : argv[i]!.equals(s.bytes)),
    );
  }
  if (failure.unknownCommand !== undefined) return name === failure.unknownCommand.toLowerCase();
  if (failure.rdbError) {
    // Commands that parse an RDB payload while an AOF loads; one with a wrong checksum is refused before that.
    if (name === 'restore' || name === 'restore-asking') return argv.length > 3 && dumpChecksumOk(argv[3]!);
    if (name === 'function')
      return argv[1]?.toString('latin1').toLowerCase() === 'restore' && argv.length > 2 && dumpChecksumOk(argv[2]!);
  }
  return false;
}

/** How a restore's incr file is laid out, for placing the loader's progress in it. */
export interface IncrLayout {
  /** The incr file the server loaded. */
  path: string;
  /** Bytes of the baseline's tail it starts with (the source's replication stream: no events). */
  tailBytes: number;
  /** Size of the base RDB loaded before it: the loader's progress counts it first. */
  baseBytes: number;
}

/** The event a failed load names. */
export interface FoundEvent {
  item: StoredEvent;
  /** Its argv as captured. */
  argv: Buffer[];
  /** Replayed events that fit the log where it says the load stopped, in order; `item` is the first of them. */
  candidates: StoredEvent[];
}

/** Commands between two moves of the loader's progress (7.0 loadSingleAppendOnlyFile: `loops++ % 1024`). */
const LOADER_PROGRESS_EVERY = 1024;

/**
 * The replayed event the failure names, or undefined when the log names none, or names a command that is not a
 * replayed event (the baseline's tail, say). `items` are the events the restore read, `skip` the seqs it did not
 * write (recorded broken events), `write` maps an event to the RESP the restore wrote for it.
 *
 * Which match is the one: the AOF loader moves its progress (`loading_loaded_bytes`) every 1024 commands, to the
 * offset of the next command, and a crash report (INFO) or an RDB error (its offset) shows it. So the command it
 * failed on — inside MULTI, the queued command runs at EXEC: its EXEC — is one of the 1024 top-level commands from
 * that offset: a match before them was loaded without harm, one after them was never reached. Walking `incr`
 * (tail, SELECT/MULTI/EXEC, guards and the written events, lined up with `items` by their bytes), the first command
 * in those 1024 that fits the log is the one the loader reached first; when it is not an event, none is named.
 * Several events fitting there is possible (a state-dependent failure of identical commands, or a 128-byte
 * prefix they share): the first is named and `candidates` lists them all. An unknown command fails when read,
 * so the first command of that name in the file is the one. Without `incr` or a progress in the log (or when the
 * offset falls between commands, which the layout above rules out), the first fitting event is named.
 */
export async function findBrokenEvent(o: {
  items: AsyncIterable<StoredEvent>;
  failure: LoadFailure;
  write: (item: StoredEvent) => Buffer;
  skip: ReadonlySet<number>;
  incr?: IncrLayout;
}): Promise<FoundEvent | undefined> {
  const { failure, incr } = o;
  if (!failure.argv && failure.unknownCommand === undefined && !failure.rdbError) return undefined;
  const events = writtenEvents(o.items, o.skip, o.write)[Symbol.asyncIterator]();
  try {
    if (!incr) {
      for (let e = await events.next(); !e.done; e = await events.next())
        if (fitsFailure(e.value.argv, failure)) return found(e.value.item, [e.value.item]);
      return undefined;
    }
    const from = failure.loadedBytes === undefined ? undefined : failure.loadedBytes - incr.baseBytes;
    if (from !== undefined && from < 0) return undefined; // it failed inside the base RDB
    const loaderReads = failure.unknownCommand !== undefined;
    let window: { start: number; end: number } | undefined;
    let windowLost = from === undefined;
    let earliest: { item?: StoredEvent } | undefined;
    let first: { item?: StoredEvent } | undefined;
    const candidates: StoredEvent[] = [];
    let next = await events.next();
    let tx: { item?: StoredEvent; fits: boolean }[] | undefined;
    const done = (c: { item?: StoredEvent; fits: boolean }, at: number): boolean => {
      if (!c.fits) return false;
      earliest ??= c;
      if (window && at >= window.start && at <= window.end) {
        first ??= c;
        if (c.item) candidates.push(c.item);
      }
      return !window && windowLost;
    };
    for await (const cmd of aofCommands(incr.path)) {
      if (!window && !windowLost && cmd.offset >= from!) {
        if (cmd.offset === from) window = { start: cmd.index, end: cmd.index + LOADER_PROGRESS_EVERY - 1 };
        else windowLost = true;
      }
      if (window && cmd.index > window.end) break;
      let item: StoredEvent | undefined;
      if (cmd.offset >= incr.tailBytes && !next.done && sameArgv(cmd.argv, next.value.argv)) {
        item = next.value.item;
        next = await events.next();
      }
      // The tail holds only RESTOREs the source ran, so a payload that breaks the reader is an event's.
      const fits = (item !== undefined || !failure.rdbError) && fitsFailure(cmd.argv, failure);
      if (loaderReads) {
        if (fits) return item ? found(item, [item]) : undefined;
        continue;
      }
      const name = item ? undefined : cmd.argv[0]?.toString('latin1').toLowerCase();
      if (name === 'multi') tx = [];
      else if (name === 'exec' && tx) {
        const queued = tx;
        tx = undefined;
        if (queued.some((c) => done(c, cmd.index))) break;
      } else if (tx) tx.push({ item, fits });
      else if (done({ item, fits }, cmd.index)) break;
    }
    const pick = window ? first : earliest;
    return pick?.item ? found(pick.item, window ? candidates : [pick.item]) : undefined;
  } finally {
    await events.return?.(undefined);
  }
}

function found(item: StoredEvent, candidates: StoredEvent[]): FoundEvent {
  return { item, argv: decodeCommand(item.resp), candidates };
}

/** The events a restore wrote, in order, with the argv written for each: what restore.ts skips is skipped here too. */
async function* writtenEvents(
  items: AsyncIterable<StoredEvent>,
  skip: ReadonlySet<number>,
  write: (item: StoredEvent) => Buffer,
): AsyncGenerator<{ item: StoredEvent; argv: Buffer[] }> {
  let last = -1;
  for await (const item of items) {
    if (item.seq <= last) continue; // a duplicate row not merged yet
    last = item.seq;
    if (item.resp.length === 0 || skip.has(item.seq)) continue;
    yield { item, argv: decodeCommand(write(item)) };
  }
}

/** The commands of an AOF file in order: the loader's loop index and the byte offset of each. */
async function* aofCommands(file: string): AsyncGenerator<{ index: number; offset: number; argv: Buffer[] }> {
  const reader = new RespReader();
  let index = 0;
  let offset = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    reader.push(chunk as Buffer);
    for (let v = reader.read(); v !== undefined; v = reader.read()) {
      yield { index: index++, offset, argv: v as Buffer[] };
      offset = reader.consumed;
    }
  }
}

function sameArgv(a: Buffer[], b: Buffer[]): boolean {
  return a.length === b.length && a.every((x, i) => x.equals(b[i]!));
}

/** argv shown for people: readable, each argument and the whole cut short. */
export function shortArgs(argv: Buffer[], maxChars = 200): string {
  const parts = argv.map((a) => {
    const r = readableBytes(a.length > 64 ? a.subarray(0, 64) : a);
    return a.length > 64 ? `${r}…(${a.length} bytes)` : r;
  });
  const s = parts.join(' ');
  return s.length > maxChars ? `${s.slice(0, maxChars)}…` : s;
}

/**
 * Records a broken event: true, or what the store said when it refused the row (which costs the record, never the
 * restore's own error).
 */
export async function recordBrokenEvent(events: EventStore, row: BrokenEventRow): Promise<true | string> {
  try {
    await events.recordBroken(row);
    return true;
  } catch (err) {
    return describeError(err);
  }
}

/** What {@link forgetBrokenEvent} needs from the store: queries and a statement without result. */
export interface BrokenEventStore {
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  command(sql: string): Promise<void>;
}

/**
 * Removes a recorded broken event (say, one recorded by mistake, or that a newer restore server loads): later
 * restores replay it again. Resolves once the row is gone (ClickHouse runs `ALTER … DELETE` as a mutation, in the
 * background on 18.16, which has no `mutations_sync`). Returns whether it was recorded.
 * @throws FlashbackError INTERNAL when the row is still there after `timeoutMs`.
 */
export async function forgetBrokenEvent(
  store: BrokenEventStore,
  event: { node: string; epoch: number; seq: number },
  { timeoutMs = 30_000 } = {},
): Promise<boolean> {
  const where = `node = ${sqlString(event.node)} AND epoch = ${sqlUInt(event.epoch)} AND seq = ${sqlUInt(event.seq)}`;
  const count = async () =>
    Number(
      (await store.query<{ n: string | number }>(`SELECT count() AS n FROM ${BROKEN_EVENTS_TABLE} WHERE ${where}`))[0]
        ?.n ?? 0,
    );
  if ((await count()) === 0) return false;
  await store.command(`ALTER TABLE ${BROKEN_EVENTS_TABLE} DELETE WHERE ${where}`);
  const deadline = Date.now() + timeoutMs;
  while ((await count()) > 0) {
    if (Date.now() > deadline)
      throw new FlashbackError(
        ErrorCode.Internal,
        `broken event seq ${event.seq} of node "${event.node}" epoch ${event.epoch} is still recorded ${timeoutMs} ms after its delete; see system.mutations of ${BROKEN_EVENTS_TABLE} in ClickHouse`,
      );
    await delay(100);
  }
  return true;
}
