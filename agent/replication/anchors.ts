import { createHash } from 'node:crypto';
import { ANCHOR_CHANNEL } from '../../core/bus/baseline.js';
import { Worker } from 'node:worker_threads';
import { ConfigError, ConnectionError, ProtocolError } from '../../core/errors.js';
import type { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../../core/redis/redis-url.js';
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
  /** The source: the worker opens a connection of its own (an anchor must never land inside another client's MULTI). */
  target: RedisTarget;
  /** Shortest time between two anchors while writes flow, ms. @default 1 */
  minIntervalMs?: number;
  /** An anchor goes at least this often when nothing else asks for one (the window then reaches now), ms. */
  idleIntervalMs: number;
  /** The anchor connection is up (again) as this client address; anchors go once this returns. */
  onConnected: (addr: string) => void;
  /** An anchor failed: capture cannot place what follows in time. */
  onFailure: (err: Error) => void;
}

/** Slots of the Int32Array the agent and the anchor worker share. */
export const ANCHOR_WANT = 0;
export const ANCHOR_SENT = 1;
export const ANCHOR_IDLE = 2;
export const ANCHOR_STOP = 3;
const ANCHOR_SLOTS = 4;

/** What the anchor worker (agent/replication/anchor-worker.ts) starts with. */
export interface AnchorWorkerData {
  target: RedisTarget;
  minIntervalMs: number;
  idleIntervalMs: number;
  shared: SharedArrayBuffer;
}

/** Worker → agent. */
export type AnchorWorkerMessage =
  { type: 'connected'; addr: string } | { type: 'failure'; name: string; message: string };

/**
 * Places the time anchors of the replication stream: as soon as stream entries wait for a time (at most one in
 * flight, at most one per `minIntervalMs`), and one per `idleIntervalMs` when the node is idle.
 *
 * The anchors go from a worker thread. Under load the agent's own thread is busy for tens or hundreds of ms at a time
 * (parsing what the socket hands it, GC); an anchor sent from it waited for that, and every entry the stream carried
 * meanwhile waited in memory for the anchor after it: at -P 16 two to four anchors a second, 100 000+ entries held,
 * lag p99 ~1 s and more GC. From the worker they go every millisecond or so while the agent says entries wait
 * (measured: lag p99 44 ms, CPU per event -31 %).
 */
export class AnchorDriver {
  private closed = false;
  private worker: Worker | undefined;
  private readonly shared = new Int32Array(new SharedArrayBuffer(ANCHOR_SLOTS * 4));

  private constructor(private readonly o: AnchorDriverOptions) {}

  /** Starts the worker; resolves once its connection is up and `onConnected` has its address. */
  static async open(o: AnchorDriverOptions): Promise<AnchorDriver> {
    const driver = new AnchorDriver(o);
    await driver.spawn();
    return driver;
  }

  /**
   * One worker; resolves when it is connected, rejects when it fails before. A worker that ends later (it should not:
   * it reconnects by itself) is reported to `onFailure` and replaced a second later, so anchors never stop for good.
   */
  private spawn(): Promise<void> {
    const { o } = this;
    const data: AnchorWorkerData = {
      target: o.target,
      minIntervalMs: o.minIntervalMs ?? 1,
      // At least 10 ms: 0 would make the worker's idle wait return at once, a busy loop.
      idleIntervalMs: Math.max(10, o.idleIntervalMs),
      shared: this.shared.buffer as SharedArrayBuffer,
    };
    // Under tsx (tests, development) the worker is the .ts file beside this one, and needs tsx's loader too: a worker
    // inherits `--import tsx` but not a loader registered in-process (bin/flashback-dev.js); compiled, the .js.
    const ts = import.meta.url.endsWith('.ts');
    const file = new URL(ts ? './anchor-worker.ts' : './anchor-worker.js', import.meta.url);
    const execArgv =
      ts && !process.execArgv.some((a) => a.includes('tsx'))
        ? [...process.execArgv, '--import', import.meta.resolve('tsx')]
        : undefined;
    const worker = new Worker(file, { workerData: data, name: 'flashback-anchor', execArgv });
    this.worker = worker;
    worker.unref();
    return new Promise((resolve, reject) => {
      let ready = false;
      let connected = false;
      const failed = (err: Error): void => {
        if (!ready) {
          ready = true;
          reject(err);
        } else if (!this.closed) o.onFailure(err);
      };
      worker.on('message', (m: AnchorWorkerMessage) => {
        if (m.type !== 'connected') return failed(anchorError(m));
        connected = true;
        o.onConnected(m.addr);
        worker.postMessage('go');
        if (!ready) {
          ready = true;
          resolve();
        }
      });
      worker.on('error', failed);
      worker.on('exit', (code) => {
        if (this.closed) return;
        // One that never connected said why in its failure message, which rejected this spawn; its caller decides.
        if (!connected) {
          if (!ready) failed(new ProtocolError(`the time anchor thread ended (code ${code})`));
          return;
        }
        o.onFailure(new ProtocolError(`the time anchor thread ended (code ${code}); a new one starts in 1 s`));
        this.respawn();
      });
    });
  }

  /** A new worker in a second, and again after each one that fails to connect, until closed. */
  private respawn(): void {
    setTimeout(() => {
      if (this.closed) return;
      // Through a promise: new Worker() throws synchronously when no thread can be made.
      Promise.resolve()
        .then(() => this.spawn())
        .catch((err: Error) => {
          this.o.onFailure(err);
          this.respawn();
        });
    }, 1_000).unref();
  }

  /** Checks once that the source runs the anchor script (rights, version); throws a ConfigError naming the fix. */
  static async check(conn: RawRedis): Promise<void> {
    const r = await runAnchor(conn);
    if (r instanceof Error) throw r;
  }

  /** Anchors sent. */
  get sent(): number {
    // Unsigned: at one anchor a millisecond the Int32 slot passes 2^31 after ~25 days (and 2^32 after ~50: a restart
    // of the count, which the metric's rate() takes as a counter reset).
    return Atomics.load(this.shared, ANCHOR_SENT) >>> 0;
  }

  /** Idle anchors from now on (the link is up: the window follows now). */
  start(): void {
    Atomics.store(this.shared, ANCHOR_IDLE, 1);
    Atomics.notify(this.shared, ANCHOR_WANT);
  }

  /** Entries wait for a time: an anchor goes soon. Called for every entry that waits, so it costs a load. */
  request(): void {
    if (this.closed || Atomics.load(this.shared, ANCHOR_WANT) === 1) return;
    Atomics.store(this.shared, ANCHOR_WANT, 1);
    Atomics.notify(this.shared, ANCHOR_WANT);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.shared, ANCHOR_STOP, 1);
    Atomics.store(this.shared, ANCHOR_WANT, 1);
    Atomics.notify(this.shared, ANCHOR_WANT);
    void this.worker?.terminate();
  }
}

/** The worker's failure as the error class it was. */
function anchorError(m: { name: string; message: string }): Error {
  switch (m.name) {
    case 'ConfigError':
      return new ConfigError(m.message);
    case 'ConnectionError':
      return new ConnectionError(m.message);
    default:
      return new ProtocolError(m.message);
  }
}

/** EVALSHA, or EVAL when the script cache was flushed; an Error (not thrown) when the server refuses. */
export async function runAnchor(conn: RawRedis): Promise<true | Error> {
  let r = await conn.call(['EVALSHA', ANCHOR_SHA, 0, ANCHOR_CHANNEL]);
  if (r instanceof RespError && r.message.startsWith('NOSCRIPT'))
    r = await conn.call(['EVAL', ANCHOR_SCRIPT, 0, ANCHOR_CHANNEL]);
  if (!(r instanceof RespError)) return true;
  const where = `Redis ${redisAddress(conn.target)}`;
  if (/^NOPERM/.test(r.message))
    return new ConfigError(
      `${where} refused the time anchor script: ${r.message}; the agent's user needs +evalsha +eval +time +publish and channel ${ANCHOR_CHANNEL} (ACL SETUSER <user> +evalsha +eval +time +publish &${ANCHOR_CHANNEL}), or run the agent with --source monitor`,
      { retryable: true },
    );
  return new ProtocolError(
    `${where} refused the time anchor script: ${r.message}; replication capture needs scripts that write after TIME (Redis 5 or later with effects replication), or run the agent with --source monitor`,
  );
}
