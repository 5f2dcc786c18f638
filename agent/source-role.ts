import { REPLAY_CONFIG, type SourceInfo } from '../core/bus/baseline.js';
import { CLUSTER_SLOTS, hashTagForSlots } from '../core/redis/cluster-slot.js';
import { ConfigError, ProtocolError } from '../core/errors.js';
import type { RawRedis } from '../core/redis/raw-redis.js';
import { redisAddress } from '../core/redis/redis-url.js';
import { infoField, serverInInfo } from '../core/redis/server-info.js';
import { RespError, type RespValue } from '../core/redis/resp.js';

/** What a node says about its replication role (INFO replication). */
export interface SourceRole {
  role: 'master' | 'slave';
  /** The master a replica follows (`master_host:master_port`), when it is one. */
  master?: { host: string; port: number };
}

/** One row of CLUSTER NODES. */
export interface ClusterNodeRow {
  id: string;
  host: string;
  port: number;
  flags: string[];
  /** Id of the master a replica follows; '-' for a master. */
  masterId: string;
  /** Slots served (migrating/importing entries `[…]` excluded). */
  slots: [number, number][];
}

async function text(conn: RawRedis, argv: string[]): Promise<string> {
  const r: RespValue = await conn.call(argv);
  if (r instanceof RespError) {
    if (/^NOPERM/.test(r.message))
      throw new ConfigError(
        `Redis ${redisAddress(conn.target)} refused ${argv.join(' ')}: ${r.message}; the agent's user needs it (ACL SETUSER <user> +${argv[0]!.toLowerCase()})`,
      );
    throw new ProtocolError(`Redis ${redisAddress(conn.target)} refused ${argv.join(' ')}: ${r.message}`);
  }
  return Buffer.isBuffer(r) ? r.toString('latin1') : String(r);
}

/** The node's role from INFO replication. */
export async function readRole(conn: RawRedis): Promise<SourceRole> {
  const info = await text(conn, ['INFO', 'replication']);
  if (infoField(info, 'role') !== 'slave') return { role: 'master' };
  const host = infoField(info, 'master_host');
  const port = Number(infoField(info, 'master_port'));
  return { role: 'slave', master: host && port > 0 ? { host, port } : undefined };
}

/** True when the node runs with cluster-enabled yes (INFO cluster). */
export async function isClusterNode(conn: RawRedis): Promise<boolean> {
  return infoField(await text(conn, ['INFO', 'cluster']), 'cluster_enabled') === '1';
}

/** The node table as this node sees it (CLUSTER NODES; works on 7.0, unlike CLUSTER MYSHARDID). */
export async function clusterNodes(conn: RawRedis): Promise<ClusterNodeRow[]> {
  const rows: ClusterNodeRow[] = [];
  for (const line of (await text(conn, ['CLUSTER', 'NODES'])).split('\n')) {
    const f = line.trim().split(' ');
    if (f.length < 8) continue;
    // ip:port@cport[,hostname]
    const addr = f[1]!.split('@')[0]!;
    const colon = addr.lastIndexOf(':');
    const slots: [number, number][] = [];
    for (const s of f.slice(8)) {
      if (s.startsWith('[')) continue;
      const [from, to = from] = s.split('-');
      slots.push([Number(from), Number(to)]);
    }
    rows.push({
      id: f[0]!,
      host: addr.slice(0, colon),
      port: Number(addr.slice(colon + 1)),
      flags: f[2]!.split(','),
      masterId: f[3]!,
      slots,
    });
  }
  return rows;
}

/** Slots this node serves as a master, from its own row (`myself`). */
export function ownedSlots(rows: ClusterNodeRow[]): Set<number> {
  const me = rows.find((r) => r.flags.includes('myself'));
  const owned = new Set<number>();
  for (const [from, to] of me?.slots ?? []) for (let s = from; s <= Math.min(to, CLUSTER_SLOTS - 1); s++) owned.add(s);
  return owned;
}

/**
 * Key of the cluster-mode baseline marker: in cluster mode Redis sends PUBLISH over the cluster bus, never down the
 * replication stream, so the marker MULTI also SETs and DELs this key (net effect nothing, both replicated). Its
 * hash tag lies in a slot the node serves, or the SET would be refused with MOVED.
 */
export async function clusterMarkerKey(conn: RawRedis): Promise<string> {
  const rows = await clusterNodes(conn);
  const me = rows.find((r) => r.flags.includes('myself'));
  const where = `Redis ${redisAddress(conn.target)}`;
  if (me && !me.flags.includes('master')) {
    throw new ProtocolError(
      `${where} is a cluster replica now (the node was demoted, or the agent points at a replica): a baseline needs the shard's master`,
    );
  }
  const tag = hashTagForSlots(ownedSlots(rows));
  if (!tag)
    throw new ProtocolError(
      `${where} is a cluster master that serves no slot: no key can carry the baseline marker; assign it slots or capture the masters that serve them`,
    );
  return `__flashback__:marker:${tag}`;
}

/**
 * `ip:port` of every other node of the cluster: a MONITOR line from one of them is our master link's (we were demoted).
 */
export function peerAddresses(rows: ClusterNodeRow[]): Set<string> {
  return new Set(rows.filter((r) => !r.flags.includes('myself') && r.port > 0).map((r) => `${r.host}:${r.port}`));
}

/**
 * The current master of the shard this node belongs to, as `rows` (read from any node) tell it: the node itself
 * when it is a master, else the master it follows. `shard` holds the ids of the shard's nodes seen so far.
 */
export function shardMaster(rows: ClusterNodeRow[], shard: ReadonlySet<string>): ClusterNodeRow | undefined {
  const mine = rows.filter((r) => shard.has(r.id));
  const master = mine.find((r) => r.flags.includes('master') && !r.flags.includes('fail') && r.slots.length > 0);
  if (master) return master;
  const followed = mine.map((r) => r.masterId).find((id) => id !== '-');
  return rows.find((r) => r.id === followed && r.flags.includes('master') && !r.flags.includes('fail'));
}

/** Ids of the shard of `self` (a master): itself and every replica following it. */
export function shardIds(rows: ClusterNodeRow[], selfId: string): Set<string> {
  return new Set([selfId, ...rows.filter((r) => r.masterId === selfId).map((r) => r.id)]);
}

/**
 * Which server and version the node runs, and the settings a restore server must share with it (REPLAY_CONFIG).
 * A setting CONFIG GET does not give (refused by ACL, unknown to the version) is left out; a restore then uses
 * the restore server's default for it.
 */
export async function readSourceInfo(conn: RawRedis): Promise<SourceInfo> {
  const { server, version } = serverInInfo(await text(conn, ['INFO', 'server']));
  const config: Record<string, string> = {};
  for (const name of REPLAY_CONFIG) {
    const r: RespValue = await conn.call(['CONFIG', 'GET', name]);
    if (Array.isArray(r) && r.length >= 2 && Buffer.isBuffer(r[1])) config[name] = r[1].toString('latin1');
  }
  return { server, version, config };
}
