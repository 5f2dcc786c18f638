import { CommandTable } from '../core/redis/command-table.js';
import type { Logger } from '../core/log.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { RespError } from '../core/redis/resp.js';
import type { RedisTarget } from '../core/redis/redis-url.js';
import {
  ensureNotifyFlags,
  ensurePubsubOutputLimit,
  FIELD_TTL_NOTIFY_FLAGS,
  REQUIRED_NOTIFY_FLAGS,
} from './monitor/notifications.js';
import { clusterNodes, isClusterNode, peerAddresses, readRole, shardIds, type SourceRole } from './source-role.js';

/** The connections to one Redis node and what the agent learned from it: one set per node followed. */
export interface Source {
  target: RedisTarget;
  table: CommandTable;
  control: RawRedis;
  controlAddr: string;
  /** Connection of the expiry corrector's PEXPIRETIME probes. */
  probe: RawRedis;
  probeAddr: string;
  /** Connection of the state probes (DUMP + PEXPIRETIME scripts): agent/monitor/state-capture.ts. */
  state: RawRedis;
  stateAddr: string;
  /** Agent clock − server clock, µs. */
  skewUs: number;
  /** Keyspace notifications are on: expiries and evictions are captured. */
  notify: boolean;
  /** The server has hash-field TTLs (Redis 7.4+): their expirations are captured too (`hexpired`). */
  fieldTtls: boolean;
  /** Role when the connections were opened: only a master that becomes a replica is followed to its new master. */
  role: SourceRole['role'];
  /**
   * Cluster mode: every other node's `ip:port` (a MONITOR line from one is our master link's) and the shard's
   * node ids.
   */
  cluster: { peers: Set<string>; shard: Set<string> } | undefined;
  /** Server settings the agent changed, with their values before: put back on a graceful stop. */
  changed: { name: string; before: string }[];
}

/** Options of {@link openSource}. */
export interface OpenSourceOptions {
  target: RedisTarget;
  /** The control connection, already open to `target`. */
  control: RawRedis;
  /** The agent's limit on Redis's MONITOR output buffer, bytes: the pubsub output limit is raised above it. */
  maxMonitorOutputBytes: number;
  logger: Logger;
}

/** Opens the probe and state connections next to `control`, loads the command table and sets the notifications. */
export async function openSource({
  target,
  control,
  maxMonitorOutputBytes,
  logger,
}: OpenSourceOptions): Promise<Source> {
  let probe: RawRedis | undefined;
  let state: RawRedis | undefined;
  try {
    const table = await CommandTable.load(control);
    const controlAddr = await clientAddr(control);
    probe = await RawRedis.connect(target, { clientName: 'flashback-expiry' });
    const probeAddr = await clientAddr(probe);
    state = await RawRedis.connect(target, { clientName: 'flashback-state' });
    const stateAddr = await clientAddr(state);
    const skewUs = await clockSkewUs(control);
    const { role } = await readRole(control);
    let cluster: Source['cluster'];
    if (await isClusterNode(control)) {
      const rows = await clusterNodes(control);
      const me = rows.find((r) => r.flags.includes('myself'));
      const shard = me ? shardIds(rows, me.flags.includes('master') ? me.id : me.masterId) : new Set<string>();
      cluster = { peers: peerAddresses(rows), shard };
    }
    // A server with hash-field TTLs (its command table has HPEXPIRE) publishes their expirations in the hash class.
    const fieldTtls = table.lookup([Buffer.from('HPEXPIRE')]) !== undefined;
    const notify = await ensureNotifyFlags(control, logger, fieldTtls ? FIELD_TTL_NOTIFY_FLAGS : REQUIRED_NOTIFY_FLAGS);
    const changed: Source['changed'] = [];
    if (notify.changed) changed.push({ name: 'notify-keyspace-events', before: notify.before });
    // One line of a large value is up to 4× its size, and Redis counts the allocation (a size class above it):
    // 8× our own overload limit lets a 64 MiB value of unprintable bytes through (measured: 4× stopped at ~56 MiB).
    if (notify.error === undefined) {
      const limit = await ensurePubsubOutputLimit(control, 8 * maxMonitorOutputBytes, logger);
      if (limit.changed) changed.push({ name: 'client-output-buffer-limit', before: limit.before });
    }
    return {
      target,
      table,
      control,
      controlAddr,
      probe,
      probeAddr,
      state,
      stateAddr,
      skewUs,
      notify: notify.error === undefined,
      fieldTtls,
      role,
      cluster,
      changed,
    };
  } catch (err) {
    probe?.close();
    state?.close();
    throw err;
  }
}

/**
 * Puts back the server settings the agent changed (graceful stop): notifications cost the source CPU, and a raised
 * output-buffer limit lets any subscriber hold more memory. Logs each one; a failure is logged, never thrown.
 */
export async function restoreSourceSettings(source: Source, logger: Logger): Promise<void> {
  for (const { name, before } of source.changed.splice(0)) {
    const r = await source.control.call(['CONFIG', 'SET', name, before]).catch((err: unknown) => err as Error);
    if (r instanceof Error || r instanceof RespError)
      logger.warn({ setting: name, before, error: r.message }, `could not put ${name} back; set it by hand`);
    else logger.info({ setting: name, value: before }, `${name} put back as it was before the agent started`);
  }
}

/** Closes every connection of a source. */
export function closeSource(source: Source): void {
  source.control.close();
  source.probe.close();
  source.state.close();
}

export async function clientAddr(conn: RawRedis): Promise<string> {
  const info = await conn.call(['CLIENT', 'INFO']);
  const text = Buffer.isBuffer(info) ? info.toString('latin1') : String(info);
  const m = /(?:^|\s)addr=(\S+)/.exec(text);
  if (!m) throw new Error(`cannot read our own client address from CLIENT INFO: ${text.slice(0, 120)}`);
  return m[1]!;
}

/** agent clock − server clock, µs (TIME), so lag is not skewed by clock differences. */
export async function clockSkewUs(conn: RawRedis): Promise<number> {
  const before = Date.now() * 1000;
  const t = await conn.call(['TIME']);
  const after = Date.now() * 1000;
  if (!Array.isArray(t)) return 0;
  const server = Number(String(t[0])) * 1e6 + Number(String(t[1]));
  return (before + after) / 2 - server;
}
