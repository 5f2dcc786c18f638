import { ProtocolError } from '../errors.js';
import { subjectToken } from './event.js';

/** Channel the agent PUBLISHes its baseline markers on (seen in MONITOR and in the replication stream). */
export const MARKER_CHANNEL = '__flashback__:marker';

/**
 * Channel of the agent's time anchors in replication mode: a script PUBLISHes the server's `TIME` as `sec.usec` on it,
 * and the PUBLISH reaches the replication stream, which carries no time of its own (agent/replication/anchors.ts).
 */
export const ANCHOR_CHANNEL = '__flashback__:anchor';

/**
 * What the agent ECHOes when Redis is idle: its MONITOR line becomes a
 * heartbeat event, proof that capture was complete up to that instant, so a
 * window reaches "now" on an idle node. ECHO is not replicated nor written
 * to the source's AOF.
 */
export const HEARTBEAT_MESSAGE = '__flashback__:heartbeat';

/**
 * A stored baseline: the dataset at the position of its marker event, as the
 * RDB of a full resync plus the replication commands between the RDB and the
 * marker (the tail, RESP). Published by the agent on `baselineSubject(node)`
 * once both objects are in the object store; the sink lists it in
 * `flashback.baselines`. Only listed baselines are used by restores.
 */
export interface BaselineRecord {
  node: string;
  epoch: number;
  /** Seq of the marker event: the baseline holds every event with seq < this one. */
  seq: number;
  /** Server time of the marker, µs. */
  tsUs: number;
  /** Marker id carried in the PUBLISH payload. */
  markerId: string;
  /** Object-store names of the RDB and of the tail. */
  rdbObject: string;
  tailObject: string;
  rdbBytes: number;
  tailBytes: number;
  /** Keys over all dbs at the marker (INFO keyspace in the marker's MULTI). */
  keys: number;
  /** `DEBUG DIGEST` at the marker, or '' when not taken. */
  digest: string;
  /** The server the baseline was taken from; absent in records of older agents. */
  source?: SourceInfo;
  /**
   * SHA-256 (64 hex digits) of the RDB object's bytes, computed by the agent as it wrote them; absent in records of
   * older agents. Only this record, published on the node's own subject, vouches for the object: the bucket is shared
   * by every node's agent, and the object's own meta digest is written by whoever wrote the object
   * (docs/security.md).
   */
  rdbSha256?: string;
  /** SHA-256 (64 hex digits) of the tail object's bytes, as {@link rdbSha256}. */
  tailSha256?: string;
}

/**
 * What a restore must know of the source server beyond its data: which server and version wrote the RDB, and the
 * settings under which the source accepted or refused the commands of its history (a restore server runs with
 * the same ones: restorer/refusal-guard.ts).
 */
export interface SourceInfo {
  /** `redis` or `valkey` (INFO server `server_name`, absent before Valkey). */
  server: string;
  /** `redis_version` (or `valkey_version`). */
  version: string;
  /** Settings that decide what a command may do, by name (CONFIG GET), e.g. `proto-max-bulk-len`. */
  config: Record<string, string>;
  /**
   * Keys holding hash fields with a TTL at the marker (INFO keyspace `subexpiry`, Redis 7.4+); absent when not known
   * (older lines, a full resync's baseline). A restore with none and no field-TTL command in its history needs no
   * source clock (restorer/source-clock.ts).
   */
  fieldTtlKeys?: number;
}

/**
 * Source settings a restore server takes over: {@link SourceInfo.config} holds these when the source let us read them.
 * `proto-max-bulk-len` decides which string writes the source refused; `stream-node-max-entries` and
 * `stream-node-max-bytes` decide where a stream's nodes end, and so how many entries an approximate trim removes
 * (whole nodes only): an `XADD … MAXLEN ~ n` is replayed as issued.
 */
export const REPLAY_CONFIG = ['proto-max-bulk-len', 'stream-node-max-entries', 'stream-node-max-bytes'] as const;

const DIGEST_PREFIX = 'SHA-256=';

/**
 * The SHA-256, as 64 hex digits, of an object as its writer computed it while publishing the chunks: the `digest` of
 * the ObjectInfo that `put` returns (`SHA-256=` and base64url, the object store's format; core/bus/baseline-writer.ts
 * and nats.js alike). Only for the writer's own answer: the digest in a stored meta entry is whatever its writer put.
 */
export function sha256OfDigest(digest: string): string {
  const hex = digest.startsWith(DIGEST_PREFIX)
    ? Buffer.from(digest.slice(DIGEST_PREFIX.length), 'base64url').toString('hex')
    : '';
  if (hex.length !== 64)
    throw new ProtocolError(`object digest "${digest}" is not a SHA-256 ("${DIGEST_PREFIX}" and base64url)`);
  return hex;
}

/** Subject of a node's baseline records (in the FLASHBACK_EVENTS stream). */
export function baselineSubject(node: string): string {
  return `flashback.baselines.${subjectToken(node)}`;
}

/** Object-store name prefix of one baseline. */
export function baselineObjectName(node: string, epoch: number, markerId: string): { rdb: string; tail: string } {
  const base = `${subjectToken(node)}/${epoch}/${markerId}`;
  return { rdb: `${base}.rdb`, tail: `${base}.tail` };
}
