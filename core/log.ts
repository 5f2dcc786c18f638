import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Environment read for FLASHBACK_LOG_LEVEL and FLASHBACK_LOG_FORMAT. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Where lines go. @default stderr (fd 2) */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * Logs on stderr (stdout stays for command output): one human line per entry when stderr is a terminal, JSON lines
 * otherwise (FLASHBACK_LOG_FORMAT=json|pretty overrides). A key bound twice (a child's `service` over the root's, a
 * call's `node` over its logger's) appears once, the innermost value winning.
 * Level from FLASHBACK_LOG_LEVEL (default `info`; tests set `silent`).
 */
export function createLogger(service: string, o: LoggerOptions = {}): Logger {
  const { env = process.env, stream: out = process.stderr } = o;
  const level = env.FLASHBACK_LOG_LEVEL ?? 'info';
  const format = env.FLASHBACK_LOG_FORMAT ?? (out.isTTY ? 'pretty' : 'json');
  const write = format === 'pretty' ? (line: string) => prettyLine(line, out.isTTY === true) : dedupeLine;
  // A plain stream, written synchronously: a line logged just before process.exit() is not lost.
  const destination: DestinationStream = { write: (line: string) => void out.write(write(line)) };
  return pino({ level, base: { service } }, destination);
}

/** A logger that writes nothing, for libraries used without one. */
export const silentLogger: Logger = pino({ level: 'silent' });

/** Pino writes a child's bindings after its parent's, so a repeated key shows twice; JSON.parse keeps the last. */
function dedupeLine(line: string): string {
  try {
    return JSON.stringify(JSON.parse(line)) + '\n';
  } catch {
    return line;
  }
}

const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '90'],
  20: ['DEBUG', '36'],
  30: ['INFO ', '32'],
  40: ['WARN ', '33'],
  50: ['ERROR', '31'],
  60: ['FATAL', '35'],
};

/** `12:04:05.123 INFO  sink: stored batch events=512 ms=14` (local time; err last, its stack indented). */
export function prettyLine(line: string, color: boolean): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { level, time, service, msg, err, pid: _pid, hostname: _host, ...rest } = entry;
  const d = new Date(typeof time === 'number' ? time : Date.now());
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  const [name, code] = LEVELS[Number(level)] ?? [String(level), '0'];
  const lvl = color ? `\x1b[${code}m${name}\x1b[0m` : name;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  let text = `${clock} ${lvl} ${service ?? ''}: ${msg ?? ''}${fields ? ' ' + fields : ''}`;
  if (err !== undefined) {
    const e = err as { message?: string; stack?: string } | string;
    text +=
      typeof e === 'string'
        ? ` err=${JSON.stringify(e)}`
        : `\n    ${(e.stack ?? e.message ?? JSON.stringify(e)).replace(/\n/g, '\n    ')}`;
  }
  return text + '\n';
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}
