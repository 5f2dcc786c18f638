import { createHash } from 'node:crypto';
import { ANCHOR_CHANNEL } from '../../core/bus/baseline.js';
import { ConfigError, ProtocolError } from '../../core/errors.js';
import type { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress } from '../../core/redis/redis-url.js';
import { RespError } from '../../core/redis/resp.js';

/**
 * Reads the server's clock and PUBLISHes it: Redis 7 replicates a script's effects, so the stream carries a bare
 * `PUBLISH __flashback__:anchor sec.usec` at the script's position (docs/research/replication-stream-7.0.md §1).
 */
export const ANCHOR_SCRIPT =
  "local t = redis.call('TIME') redis.call('PUBLISH', ARGV[1], string.format('%d.%06d', t[1], t[2])) return 1";
const ANCHOR_SHA = createHash('sha1').update(ANCHOR_SCRIPT).digest('hex');

/** Options of {@link AnchorDriver}. */
export interface AnchorDriverOptions {
  /** A connection of its own: an anchor must never land inside another client's MULTI. */
  conn: RawRedis;
  /** Opens a new connection when that one is lost (RawRedis does not reconnect). */
  reconnect: () => Promise<RawRedis>;
  /** Shortest time between two anchors while writes flow, ms. @default 1 */
  minIntervalMs?: number;
  /** An anchor goes at least this often when nothing else asks for one (the window then reaches now), ms. */
  idleIntervalMs: number;
  /** An anchor failed: capture cannot place what follows in time. */
  onFailure: (err: Error) => void;
}

/**
 * Places the time anchors of the replication stream: one as soon as stream entries wait for a time (at most one in
 * flight, at most one per `minIntervalMs`), and one per `idleIntervalMs` when the node is idle.
 */
export class AnchorDriver {
  /** Anchors sent. */
  sent = 0;
  private inFlight = false;
  private wanted = false;
  private lastSentAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private idle: NodeJS.Timeout | undefined;
  private closed = false;
  private conn: RawRedis;

  constructor(private readonly o: AnchorDriverOptions) {
    this.conn = o.conn;
  }

  /** Checks once that the source runs the anchor script (rights, version); throws a ConfigError naming the fix. */
  static async check(conn: RawRedis): Promise<void> {
    const r = await runAnchor(conn);
    if (r instanceof Error) throw r;
  }

  start(): void {
    this.idle = setInterval(
      () => {
        if (Date.now() - this.lastSentAt >= this.o.idleIntervalMs) this.request();
      },
      Math.max(10, Math.floor(this.o.idleIntervalMs / 2)),
    );
    this.idle.unref();
  }

  /** Entries wait for a time: an anchor goes soon. */
  request(): void {
    if (this.closed) return;
    if (this.inFlight || this.timer) {
      this.wanted = true;
      return;
    }
    const wait = this.lastSentAt + (this.o.minIntervalMs ?? 1) - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.send();
      }, wait);
      return;
    }
    this.send();
  }

  private send(): void {
    if (this.closed) return;
    this.inFlight = true;
    this.wanted = false;
    this.lastSentAt = Date.now();
    this.sent++;
    runAnchor(this.conn).then(
      (r) => {
        this.inFlight = false;
        if (r instanceof Error) {
          this.o.onFailure(r);
          return;
        }
        if (this.wanted) this.request();
      },
      (err: unknown) => {
        if (this.closed) return;
        // The connection is gone: a new one, and the anchor again; what waits is released by it.
        this.conn.close();
        this.o.reconnect().then(
          (conn) => {
            this.conn = conn;
            this.inFlight = false;
            this.request();
          },
          () => {
            this.inFlight = false;
            this.o.onFailure(err instanceof Error ? err : new Error(String(err)));
          },
        );
      },
    );
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.idle);
  }
}

/** EVALSHA, or EVAL when the script cache was flushed; an Error (not thrown) when the server refuses. */
async function runAnchor(conn: RawRedis): Promise<true | Error> {
  let r = await conn.call(['EVALSHA', ANCHOR_SHA, 0, ANCHOR_CHANNEL]);
  if (r instanceof RespError && r.message.startsWith('NOSCRIPT'))
    r = await conn.call(['EVAL', ANCHOR_SCRIPT, 0, ANCHOR_CHANNEL]);
  if (!(r instanceof RespError)) return true;
  const where = `Redis ${redisAddress(conn.target)}`;
  if (/^NOPERM/.test(r.message))
    return new ConfigError(
      `${where} refused the time anchor script: ${r.message}; the agent's user needs +evalsha +eval +time +publish and channel ${ANCHOR_CHANNEL} (ACL SETUSER <user> +evalsha +eval +time +publish &${ANCHOR_CHANNEL}), or run the agent with --source monitor`,
    );
  return new ProtocolError(
    `${where} refused the time anchor script: ${r.message}; replication capture needs scripts that write after TIME (Redis 5 or later with effects replication), or run the agent with --source monitor`,
  );
}
