import { SERVER_BINS_ENV } from '../restorer/server-binaries.js';

/** `--redis-bin PATH` (repeatable): restore servers besides the installed ones found (restorer/server-binaries.ts). */
export const redisBinOption = {
  type: 'string',
  array: true,
  describe: `a redis-server or valkey-server restores may use (repeat it; also ${SERVER_BINS_ENV}=a:b); each baseline loads with the closest server of its source's line or newer, found on PATH and under /opt/{redis,valkey}-<version>/bin`,
} as const;

/** Puts `--redis-bin` values ahead of FLASHBACK_REDIS_BINS, where the restorer reads its list. */
export function applyRedisBins(bins: readonly string[] | undefined, env: NodeJS.ProcessEnv = process.env): void {
  if (!bins || bins.length === 0) return;
  env[SERVER_BINS_ENV] = [...bins, ...(env[SERVER_BINS_ENV] ?? '').split(':')].filter((p) => p !== '').join(':');
}
