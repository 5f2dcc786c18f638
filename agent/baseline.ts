import { fieldTtlKeysInInfo, keysInInfo } from '../core/redis/keyspace-info.js';
import { randomUUID } from 'node:crypto';
import { baselineObjectName, MARKER_CHANNEL, sha256OfDigest, type BaselineRecord } from '../core/bus/baseline.js';
import { ConfigError, ConnectionError, ProtocolError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { translateNatsError, type ObjectStore } from '../core/bus/nats.js';
import type { RawRedis } from '../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../core/redis/redis-url.js';
import { RespError, type RespValue } from '../core/redis/resp.js';
import { approximateGroupKeys, type DbKey } from '../core/redis/tail-groups.js';
import { captureReplicationBaseline } from './replication/replication-client.js';
import { clusterMarkerKey, isClusterNode, readRole, readSourceInfo } from './source-role.js';

/** Options of one baseline. */
export interface TakeBaselineOptions {
  /** The Redis node; the replication link is a connection of its own. */
  target: RedisTarget;
  /** The agent's control connection: the marker MULTI goes here, so MONITOR shows it from this client. */
  control: RawRedis;
  /** Object store receiving the RDB and the tail. */
  store: ObjectStore;
  node: string;
  epoch: number;
  /** Record `DEBUG DIGEST` in the marker's MULTI (blocks Redis for O(keys); needs enable-debug-command). */
  digest: boolean;
  logger?: Logger;
  /** Longest the whole baseline may take, ms. @default 900_000 (15 min) */
  timeoutMs?: number;
}

/** What the marker's MULTI told about the dataset at the marker. */
export interface MarkerFacts {
  /** Keys over all dbs (sum of `keys=` in INFO keyspace). */
  keys: number;
  /** `DEBUG DIGEST`, or '' when not asked for or refused. */
  digest: string;
  /** Keys with hash-field TTLs (INFO keyspace `subexpiry`, Redis 7.4+); undefined when not reported. */
  fieldTtlKeys?: number;
}

/**
 * Takes one baseline end to end: full resync over a replication link of its
 * own, the RDB streamed into the object store, the marker published on
 * `control`, the tail stored. Returns the record without seq/tsUs: the caller
 * takes those from the marker's MONITOR event (payload `{"markerId",…}` on
 * MARKER_CHANNEL) and publishes the record.
 */
export async function takeBaseline(
  o: TakeBaselineOptions,
): Promise<{ record: Omit<BaselineRecord, 'seq' | 'tsUs'>; approximateGroups: DbKey[] }> {
  const { target, control, store, node, epoch, digest, logger = silentLogger, timeoutMs } = o;
  const markerId = randomUUID();
  const names = baselineObjectName(node, epoch, markerId);
  const metadata = { node, epoch: String(epoch), markerId };
  let facts: MarkerFacts | undefined;
  let storedRdbBytes = -1;
  let rdbSha256 = '';
  const role = await readRole(control);
  if (role.role === 'slave') {
    const master = role.master ? ` (it follows ${role.master.host}:${role.master.port})` : '';
    throw new ConnectionError(
      `Redis ${redisAddress(target)} is a replica now${master}: the node was demoted (failover?) or the agent points at a replica; a baseline needs the master, whose own writes the replication stream carries`,
    );
  }
  // Cluster mode: PUBLISH goes over the cluster bus, not down the replication stream; a key write marks the tail.
  const markerKey = (await isClusterNode(control)) ? await clusterMarkerKey(control) : undefined;
  const source = await readSourceInfo(control);

  const capture = captureReplicationBaseline({
    target,
    markerChannel: MARKER_CHANNEL,
    markerKey,
    markerId,
    timeoutMs,
    logger,
    writeRdb: async (rdb) => {
      try {
        const info = await store.put(
          { name: names.rdb, description: `RDB of baseline ${markerId} of ${node} epoch ${epoch}`, metadata },
          rdb,
        );
        storedRdbBytes = info.size;
        rdbSha256 = sha256OfDigest(info.digest);
      } catch (cause) {
        throw translateNatsError(cause, `object store (RDB ${names.rdb})`);
      }
    },
    onRdbDone: async () => {
      facts = await publishMarker({ control, node, epoch, markerId, digest, markerKey, logger });
    },
  });
  let captured;
  try {
    captured = await capture;
  } catch (err) {
    // A stored RDB without its tail is no baseline; best effort, the error that matters is `err`.
    if (storedRdbBytes >= 0) await store.delete(names.rdb).catch(() => undefined);
    throw err;
  }

  if (storedRdbBytes !== captured.rdbBytes) {
    throw new ProtocolError(
      `RDB object ${names.rdb} holds ${storedRdbBytes} bytes but the master sent ${captured.rdbBytes}; the baseline is not usable, take another`,
    );
  }
  let tailSha256: string;
  try {
    const info = await store.putBlob(
      { name: names.tail, description: `replication tail of baseline ${markerId} of ${node} epoch ${epoch}`, metadata },
      captured.tail,
    );
    tailSha256 = sha256OfDigest(info.digest);
  } catch (cause) {
    throw translateNatsError(cause, `object store (tail ${names.tail})`);
  }
  const { keys, digest: digestHex, fieldTtlKeys } = facts!;
  logger.info(
    {
      node,
      epoch,
      markerId,
      framing: captured.framing,
      rdbBytes: captured.rdbBytes,
      tailBytes: captured.tail.length,
      tailCommands: captured.tailCommands,
      keys,
    },
    'baseline objects stored',
  );
  const record = {
    node,
    epoch,
    markerId,
    rdbObject: names.rdb,
    tailObject: names.tail,
    rdbBytes: captured.rdbBytes,
    tailBytes: captured.tail.length,
    keys,
    digest: digestHex,
    source: fieldTtlKeys === undefined ? source : { ...source, fieldTtlKeys },
    rdbSha256,
    tailSha256,
  };
  return { record, approximateGroups: approximateGroupKeys(captured.tail) };
}

/**
 * Sends, as one transaction on `control`: MULTI, INFO keyspace, [DEBUG DIGEST],
 * PUBLISH MARKER_CHANNEL {"markerId","node","epoch"}, [SET markerKey payload,
 * DEL markerKey], EXEC. The keys and digest are therefore those of the dataset
 * at the marker. MONITOR shows the PUBLISH (the marker event); the replication
 * stream carries the PUBLISH on a standalone server, and the SET (with the
 * payload) on a cluster node, which sends PUBLISH over the cluster bus only.
 * SET then DEL leaves nothing behind. If DEBUG is refused the whole MULTI
 * aborts (EXECABORT) before anything ran, so it is sent again without DEBUG
 * and the digest is ''.
 */
export async function publishMarker(o: {
  control: RawRedis;
  node: string;
  epoch: number;
  markerId: string;
  digest: boolean;
  markerKey?: string;
  logger?: Logger;
}): Promise<MarkerFacts> {
  const { control, node, epoch, markerId, markerKey, logger = silentLogger } = o;
  const where = `Redis ${redisAddress(control.target)}`;
  const payload = JSON.stringify({ markerId, node, epoch });
  let withDigest = o.digest;
  for (;;) {
    // Queued in one synchronous burst: nothing else on `control` can land inside our MULTI.
    const inner: string[][] = [
      ['INFO', 'keyspace'],
      ...(withDigest ? [['DEBUG', 'DIGEST']] : []),
      ['PUBLISH', MARKER_CHANNEL, payload],
      ...(markerKey !== undefined
        ? [
            ['SET', markerKey, payload],
            ['DEL', markerKey],
          ]
        : []),
    ];
    const argvs = [['MULTI'], ...inner, ['EXEC']];
    const replies = await Promise.all(argvs.map((argv) => control.call(argv)));
    const exec = replies[replies.length - 1];
    const debugQueued = withDigest ? replies[2] : undefined;
    if (exec instanceof RespError) {
      if (debugQueued instanceof RespError) {
        logger.warn(
          { reason: debugQueued.message },
          `DEBUG DIGEST refused by ${where}; baseline recorded without a digest (set enable-debug-command local or yes to record one)`,
        );
        withDigest = false;
        continue;
      }
      const queued = replies.slice(0, -1).find((r) => r instanceof RespError) as RespError | undefined;
      throw markerError(where, queued?.message ?? exec.message, markerKey);
    }
    if (!Array.isArray(exec) || exec.length !== inner.length) {
      throw new ProtocolError(
        `${where} answered the marker EXEC with ${describeReply(exec)}; expected ${inner.length} replies`,
      );
    }
    const info = exec[0];
    const failed = exec.slice(withDigest ? 2 : 1).find((r) => r instanceof RespError) as RespError | undefined;
    if (failed) throw markerError(where, failed.message, markerKey);
    if (!Buffer.isBuffer(info))
      throw new ProtocolError(`${where} answered INFO keyspace with ${describeReply(info)} inside the marker MULTI`);
    let digest = '';
    if (withDigest) {
      const d = exec[1];
      if (typeof d === 'string' || Buffer.isBuffer(d)) digest = d.toString();
      else
        logger.warn(
          { reason: describeReply(d) },
          `DEBUG DIGEST failed on ${where}; baseline recorded without a digest`,
        );
    }
    const text = info.toString('latin1');
    return { keys: keysInInfo(text), digest, fieldTtlKeys: fieldTtlKeysInInfo(text) };
  }
}

function markerError(where: string, message: string, markerKey?: string): Error {
  if (/^NOPERM/.test(message)) {
    const keyAcl = markerKey !== undefined ? ` +set +del ~__flashback__:*` : '';
    return new ConfigError(
      `${where} refused the baseline marker: ${message}; the agent's user needs +multi +exec +info +publish${markerKey !== undefined ? ' +set +del on keys __flashback__:*' : ''} and channel ${MARKER_CHANNEL} (ACL SETUSER <user> +@transaction +info +publish${keyAcl} &${MARKER_CHANNEL})`,
    );
  }
  if (/^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN)/.test(message)) {
    return new ConnectionError(
      `${where} refused the baseline marker key ${markerKey ?? ''}: ${message}; its slots moved (resharding or failover) while the baseline ran, so it will be retried`,
    );
  }
  return new ProtocolError(`${where} refused the baseline marker transaction: ${message}`);
}

function describeReply(v: RespValue | undefined): string {
  if (v instanceof RespError) return `error "${v.message}"`;
  if (Buffer.isBuffer(v)) return `${v.length} bytes`;
  return JSON.stringify(v) ?? String(v);
}
