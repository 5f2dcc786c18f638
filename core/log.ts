import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stderr (stdout stays for command output).
 * Level from FLASHBACK_LOG_LEVEL (default `info`; tests set `silent`).
 */
export function createLogger(service: string, env: NodeJS.ProcessEnv = process.env): Logger {
  const level = env.FLASHBACK_LOG_LEVEL ?? 'info';
  return pino({ name: service, level, base: { service } }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that writes nothing, for libraries used without one. */
export const silentLogger: Logger = pino({ level: 'silent' });
