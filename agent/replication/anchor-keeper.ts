import { ANCHOR_CHANNEL } from '../../core/bus/baseline.js';
import { describeError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../../core/redis/redis-url.js';
import { encodeCommand, RespError } from '../../core/redis/resp.js';
import { readReplicaClient } from './backlog.js';

/**
 * Anchors only when the replication stream moved since the keeper's last anchor: it reads `master_repl_offset`
 * (INFO, allowed in scripts) and compares it with where the stream stood after that anchor. Nothing is written, and
 * nothing reaches the stream, while the node is idle. Returns `{anchored (0|1), offset seen, anchor value}`.
 */
const KEEPER_SCRIPT = `
local off = string.match(redis.call('INFO', 'replication'), 'master_repl_offset:(%d+)')
if off == ARGV[2] then return {0, off} end
local t = redis.call('TIME')
local v = string.format('%d.%06d', t[1], t[2])
redis.call('PUBLISH', ARGV[1], v)
return {1, off, v}
`;

/** Options of {@link startAnchorKeeper}. */
export interface AnchorKeeperOptions {
  target: RedisTarget;
  /** How often the stream is checked while no agent is linked, ms. @default 1 */
  everyMs?: number;
  /** How often the keeper looks for the agent's replica link, ms. @default 50 */
  checkAgentMs?: number;
  logger?: Logger;
}

/** A running keeper. */
export interface AnchorKeeper {
  /** Anchors placed. */
  readonly anchors: number;
  /** Looks at the stream taken while no agent was linked. */
  readonly checks: number;
  readonly agentLinked: boolean;
  /** The last look at the source succeeded (false while it is unreachable or refuses the script). */
  readonly sourceUp: boolean;
  /** Why the last look failed, when it did. */
  readonly lastError: string | undefined;
  close(): Promise<void>;
}

/**
 * `flashback anchor-keeper`: a small process beside the agent that places time anchors while the agent's replication
 * link is gone (a crash, `kill -9`, a deploy). Writes made meanwhile wait in the backlog with no time; with the
 * keeper they are bracketed by anchors to the millisecond, so restores at instants inside the outage are exact too.
 * While the agent is linked it only looks for the link (`CLIENT LIST TYPE replica`) every `checkAgentMs`.
 */
export async function startAnchorKeeper(o: AnchorKeeperOptions): Promise<AnchorKeeper> {
  const { target, everyMs = 1, checkAgentMs = 50, logger = silentLogger } = o;
  const connect = () => RawRedis.connect(target, { clientName: 'flashback-anchor-keeper' });
  let conn = await connect();
  let closed = false;
  let agentLinked = true;
  let anchors = 0;
  let checks = 0;
  let expected = '';
  let lastCheck = 0;
  let failures = 0;
  let lastError: string | undefined;
  const loop = (async () => {
    while (!closed) {
      try {
        if (Date.now() - lastCheck >= checkAgentMs) {
          lastCheck = Date.now();
          const linked = (await readReplicaClient(conn, 'flashback-replica')) !== undefined;
          if (linked !== agentLinked)
            logger.info(
              { redis: redisAddress(target) },
              linked ? 'agent linked: the keeper stands by' : 'agent not linked: the keeper anchors the stream',
            );
          agentLinked = linked;
        }
        if (!agentLinked) {
          const r = await conn.call(['EVAL', KEEPER_SCRIPT, 0, ANCHOR_CHANNEL, expected]);
          if (r instanceof RespError) throw new Error(r.message);
          const [anchored, off, value] = (r as Buffer[] | number[]).map((x) => String(x));
          // Our own PUBLISH moves the offset by its encoded length once the script ends: expect that next time.
          expected =
            anchored === '1' ? String(Number(off) + encodeCommand(['PUBLISH', ANCHOR_CHANNEL, value!]).length) : off!;
          if (anchored === '1') anchors++;
          checks++;
        }
        failures = 0;
        lastError = undefined;
      } catch (err) {
        if (closed) break;
        failures++;
        lastError = describeError(err);
        if (failures === 1 || failures % 100 === 0)
          logger.warn({ err: describeError(err), failures }, 'anchor keeper: cannot reach the source; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * failures)));
        conn.close();
        conn = await connect().catch(() => conn);
        continue;
      }
      await new Promise((r) => setTimeout(r, agentLinked ? checkAgentMs : everyMs));
    }
  })();
  return {
    get anchors() {
      return anchors;
    },
    get checks() {
      return checks;
    },
    get agentLinked() {
      return agentLinked;
    },
    get sourceUp() {
      return failures === 0;
    },
    get lastError() {
      return lastError;
    },
    async close() {
      closed = true;
      await loop;
      conn.close();
    },
  };
}
