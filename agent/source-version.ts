import type { SourceInfo } from '../core/bus/baseline.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/** The oldest server line the agent supports (what the suite runs against), and the newest it knows. */
export const OLDEST_SUPPORTED = { redis: [7, 0], valkey: [7, 2] } as const;
export const NEWEST_KNOWN = { redis: [8, 0], valkey: [8, 0] } as const;

/**
 * Refuses a source older than the oldest supported line with a clear error; a newer line than the agent knows is
 * captured with a logged warning (its new commands are captured by the command table's flags; what the restore
 * server can load is checked at restore time).
 */
export function checkSourceVersion(info: SourceInfo, where: string, logger: Logger): void {
  const server = info.server === 'valkey' ? 'valkey' : 'redis';
  const [major = 0, minor = 0] = info.version.split('.').map(Number);
  const at = (v: readonly number[]) => major * 1000 + minor - (v[0]! * 1000 + v[1]!);
  const oldest = OLDEST_SUPPORTED[server];
  if (at(oldest) < 0) {
    throw new ConfigError(
      `${where} runs ${server} ${info.version}; the agent supports ${server} ${oldest.join('.')} and later: upgrade the server, or capture it with a flashback release that supports it`,
    );
  }
  const newest = NEWEST_KNOWN[server];
  if (at(newest) > 0 && major > newest[0]!) {
    logger.warn(
      { server, version: info.version, newestKnown: newest.join('.') },
      'the source runs a newer server line than this agent knows: capture goes on; check restores of it with a matching restore server',
    );
  }
}
