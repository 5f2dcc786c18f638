import { ConnectionError, describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../core/redis/redis-url.js';
import { closeSource, openSource, type Source } from './source.js';
import { clusterNodes, readRole, shardMaster } from './source-role.js';

/** Options of {@link ensureMasterSource}. */
export interface EnsureMasterSourceOptions {
  /** The agent's limit on Redis's MONITOR output buffer, bytes (see openSource). */
  maxMonitorOutputBytes: number;
  logger: Logger;
}

/**
 * Before a new epoch: makes sure the agent talks to the master of its shard. A master that became a replica (a
 * failover) is left for the master it follows now (in cluster mode, when the node cannot tell, the master its
 * shard's nodes name), under the same node id; connections that died are opened again. The new epoch's baseline
 * then starts a new window there; the old epoch's window stays restorable.
 *
 * Resolves with `current` when it still serves, or with a new source (`current`'s connections are then closed);
 * its `target` is another object than `current.target` exactly when the agent followed a new master.
 */
export async function ensureMasterSource(current: Source, o: EnsureMasterSourceOptions): Promise<Source> {
  const role = await readRole(current.control).catch(() => undefined);
  if (role !== undefined && (role.role === 'master' || current.role === 'slave')) return current;
  let next: RedisTarget = current.target;
  if (role?.role === 'slave' || current.cluster) {
    const master = role?.master ?? (await findShardMaster(current));
    if (!master) {
      const why = role
        ? 'is a replica now and names no master'
        : 'cannot be reached and no node of its shard names a master';
      throw new ConnectionError(`Redis ${redisAddress(current.target)} ${why}; waiting for the failover to settle`);
    }
    if (master.host !== current.target.host || master.port !== current.target.port) {
      next = { ...current.target, host: master.host, port: master.port };
    }
  }
  const control = await RawRedis.connect(next, { clientName: 'flashback-control' }).catch((err: unknown) => {
    if (!current.cluster || next !== current.target) throw err;
    throw new ConnectionError(
      `${describeError(err)}; no other node of its shard is master yet: ` +
        'waiting for the cluster to fail over, or for the node to return',
      { cause: err },
    );
  });
  let source: Source;
  try {
    if (role?.role === 'slave' || next !== current.target) {
      const nextRole = await readRole(control);
      if (nextRole.role !== 'master') {
        throw new ConnectionError(
          `Redis ${redisAddress(next)}, the master ${redisAddress(current.target)} follows now, is not a master yet; ` +
            'waiting for the failover to settle',
        );
      }
    }
    source = await openSource({
      target: next,
      control,
      maxMonitorOutputBytes: o.maxMonitorOutputBytes,
      logger: o.logger,
    });
  } catch (err) {
    control.close();
    throw err;
  }
  closeSource(current);
  if (next !== current.target) {
    o.logger.warn(
      { from: redisAddress(current.target), to: redisAddress(next) },
      'failover: following the new master of the shard under the same node id; ' +
        'a new epoch with a new baseline starts there',
    );
  }
  return source;
}

/**
 * Why a source opened as master must be left: it was demoted to a replica (a failover without writes shows no
 * master-link line for a while, and none at all outside cluster mode). Undefined when it is still master, or
 * cannot be asked.
 */
export async function demotionReason(current: Source): Promise<string | undefined> {
  const role = await readRole(current.control).catch(() => undefined);
  if (role?.role !== 'slave') return undefined;
  const of = role.master ? ` of ${role.master.host}:${role.master.port}` : '';
  return `the node was demoted to a replica (failover)${of}`;
}

/** Cluster mode: the current master of our shard, as the nodes we know (ours and its peers) tell it. */
async function findShardMaster({ cluster, target }: Source): Promise<{ host: string; port: number } | undefined> {
  if (!cluster) return undefined;
  const candidates = [`${target.host}:${target.port}`, ...cluster.peers];
  for (const addr of candidates) {
    const colon = addr.lastIndexOf(':');
    let conn: RawRedis | undefined;
    try {
      const peer = { ...target, host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) };
      conn = await RawRedis.connect(peer, { clientName: 'flashback-control', timeoutMs: 2_000 });
      const m = shardMaster(await clusterNodes(conn), cluster.shard);
      if (m) return { host: m.host, port: m.port };
    } catch {
      // That node is down too, or no cluster node any more: ask the next.
    } finally {
      conn?.close();
    }
  }
  return undefined;
}
