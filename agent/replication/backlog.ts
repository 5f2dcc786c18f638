import type { Logger } from '../../core/log.js';
import type { RawRedis } from '../../core/redis/raw-redis.js';
import { RespError } from '../../core/redis/resp.js';

/**
 * Raises the source's `repl-backlog-size` to `minBytes` when it is smaller (logged, like the other settings the
 * agent changes): the backlog is what lets a restarted agent continue with PSYNC instead of a full resync. It lasts
 * backlog ÷ write rate: the 1 MiB default survives 1 s at 1 MB/s of writes, 64 MiB about a minute (docs/exactness.md).
 */
export async function ensureBacklog(control: RawRedis, minBytes: number, logger: Logger): Promise<void> {
  if (minBytes <= 0) return;
  const r = await control.call(['CONFIG', 'GET', 'repl-backlog-size']);
  const now = Array.isArray(r) && Buffer.isBuffer(r[1]) ? Number(r[1].toString('latin1')) : NaN;
  if (!(now < minBytes)) return;
  const set = await control.call(['CONFIG', 'SET', 'repl-backlog-size', String(minBytes)]);
  if (set instanceof RespError) {
    logger.warn(
      { reason: set.message, replBacklogSize: now, wanted: minBytes },
      'cannot raise repl-backlog-size: a restart of the agent during writes may need a full resync',
    );
    return;
  }
  logger.info(
    { setting: 'repl-backlog-size', from: now, to: minBytes },
    'raised repl-backlog-size so that the agent can continue after a restart (PSYNC)',
  );
}

/** `master_repl_offset` from INFO replication. */
export async function readReplicationOffset(control: RawRedis): Promise<number> {
  const r = await control.call(['INFO', 'replication']);
  const text = Buffer.isBuffer(r) ? r.toString('latin1') : '';
  return Number(/^master_repl_offset:(\d+)/m.exec(text)?.[1] ?? 0);
}

/** The replica client named `name` (CLIENT LIST TYPE replica): its id and output buffer (`omem`); undefined if none. */
export async function readReplicaClient(
  control: RawRedis,
  name: string,
): Promise<{ id: number; outputBytes: number } | undefined> {
  const r = await control.call(['CLIENT', 'LIST', 'TYPE', 'replica']);
  const text = Buffer.isBuffer(r) ? r.toString('latin1') : '';
  for (const line of text.split('\n')) {
    if (!new RegExp(`(?:^|\\s)name=${name}(?:\\s|$)`).test(line)) continue;
    const field = (f: string) => Number(new RegExp(`(?:^|\\s)${f}=(\\d+)`).exec(line)?.[1] ?? 0);
    return { id: field('id'), outputBytes: field('omem') };
  }
  return undefined;
}
