import { readFile } from 'node:fs/promises';
import { readableBytes } from '../core/redis/escape.js';
import { parseMonitorLine } from '../core/redis/monitor-parser.js';
import { decodeCommand } from '../core/redis/resp.js';
import type { BrokenEventRow } from '../core/store/schema.js';
import type { EventStore, StoredEvent } from '../core/store/event-store.js';
import { commandName } from './refusal-guard.js';

/*
 * When a restore server does not load a restore's AOF, its log says why, and often with which command: a crash
 * report lists the current client's argv (the AOF loader's fake client: the command it ran, or inside EXEC the
 * queued command being executed), each argument in sdscatrepr form and cut to 128 bytes, at most 128 of them
 * (7.0 debug.c logCurrentClient); an unknown command is named ("Unknown command 'X' reading the append only
 * file"). The restorer finds the first replayed event that fits and names it, so the operator learns which
 * event, not just "killed by SIGABRT".
 */

/** What a restore server's log tells about why it did not load an AOF. */
export interface LoadFailure {
  /** The log's own words: the first line that says what went wrong. */
  reason: string;
  /** argv of the command it ran when it crashed, each argument possibly cut to 128 bytes (`cut`). */
  argv?: { bytes: Buffer; cut: boolean }[];
  /** The name it did not know. */
  unknownCommand?: string;
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
  if (failure.argv) {
    const name = commandName(written);
    if (name === undefined || name !== failure.argv[0]!.bytes.toString('latin1').toLowerCase()) return false;
    const argv = decodeCommand(written);
    const shown = failure.argv;
    if (shown.length < argv.length && shown.length < 128) return false;
    if (shown.length > argv.length) return false;
    return shown.every(
      (s, i) => i === 0 || (s.cut ? argv[i]!.subarray(0, s.bytes.length).equals(s.bytes) : argv[i]!.equals(s.bytes)),
    );
  }
  if (failure.unknownCommand !== undefined) return commandName(written) === failure.unknownCommand.toLowerCase();
  return false;
}

/**
 * The first replayed event the failure names, as written (`write` maps an event to the RESP the restore wrote for
 * it); undefined when the log names no command, or none of these events (the baseline's replication tail, say).
 */
export async function findBrokenEvent(
  items: AsyncIterable<StoredEvent>,
  failure: LoadFailure,
  write: (item: StoredEvent) => Buffer,
): Promise<{ item: StoredEvent; argv: Buffer[] } | undefined> {
  if (!failure.argv && failure.unknownCommand === undefined) return undefined;
  for await (const item of items) {
    if (item.resp.length === 0) continue;
    const written = write(item);
    if (matchesFailure(written, failure)) return { item, argv: decodeCommand(item.resp) };
  }
  return undefined;
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

/** Records a broken event; a store that refuses the row costs the record, never the restore's own error. */
export async function recordBrokenEvent(events: EventStore, row: BrokenEventRow): Promise<boolean> {
  try {
    await events.recordBroken(row);
    return true;
  } catch {
    return false;
  }
}
