/*
 * The time anchors' own thread (agent/replication/anchors.ts): a connection to the source and a loop that runs the
 * anchor script whenever the agent says entries wait (ANCHOR_WANT), at most once per minIntervalMs, and once per
 * idleIntervalMs otherwise. It never waits for the agent's thread, which may be busy for long stretches under load.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectionError, describeError } from '../../core/errors.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress } from '../../core/redis/redis-url.js';
import { clientAddr } from '../source.js';
import {
  ANCHOR_IDLE,
  ANCHOR_SENT,
  ANCHOR_STOP,
  ANCHOR_WANT,
  runAnchor,
  type AnchorWorkerData,
  type AnchorWorkerMessage,
} from './anchors.js';

const { target, minIntervalMs, idleIntervalMs, shared } = workerData as AnchorWorkerData;
const s = new Int32Array(shared);
const port = parentPort!;
const stopped = (): boolean => Atomics.load(s, ANCHOR_STOP) === 1;

function post(m: AnchorWorkerMessage): void {
  port.postMessage(m);
}

function postFailure(err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  post({ type: 'failure', name: e.constructor.name, message: describeError(e) });
}

/** Connects, tells the agent its client address and waits until the agent has it (its MONITOR lines are ours). */
async function connect(): Promise<RawRedis> {
  const conn = await RawRedis.connect(target, { clientName: 'flashback-anchor' });
  try {
    const addr = await clientAddr(conn);
    const go = new Promise<void>((resolve) => port.once('message', () => resolve()));
    post({ type: 'connected', addr });
    await go;
    return conn;
  } catch (err) {
    conn.close();
    throw err;
  }
}

/**
 * An anchor that never answers (a half-open connection; writes paused for longer than this) would stop anchors with
 * nothing said while entries pile up in the agent: it counts as a lost connection.
 */
const ANCHOR_TIMEOUT_MS = 10_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ConnectionError(`the time anchor script got no answer from Redis ${redisAddress(target)} in ${ms} ms`),
        ),
      ms,
    );
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function run(): Promise<void> {
  let conn: RawRedis | undefined = await connect().catch((err: unknown) => {
    postFailure(err);
    return undefined;
  });
  if (!conn) return;
  let lastSent = 0;
  let backoffMs = 0;
  while (!stopped()) {
    const idle = Atomics.load(s, ANCHOR_IDLE) === 1;
    const idleLeft = idleIntervalMs - (Date.now() - lastSent);
    if (Atomics.load(s, ANCHOR_WANT) === 0 && !(idle && idleLeft <= 0)) {
      const w = Atomics.waitAsync(s, ANCHOR_WANT, 0, idle ? Math.max(1, idleLeft) : idleIntervalMs);
      if (w.async) await w.value;
      continue;
    }
    const wait = Math.max(lastSent + minIntervalMs - Date.now(), backoffMs);
    if (wait > 0) await sleep(wait);
    if (stopped()) break;
    // Cleared before the anchor goes: entries read after this point ask again.
    Atomics.store(s, ANCHOR_WANT, 0);
    lastSent = Date.now();
    Atomics.add(s, ANCHOR_SENT, 1);
    try {
      if (!conn) conn = await connect();
      const r = await withTimeout(runAnchor(conn), ANCHOR_TIMEOUT_MS);
      if (r instanceof Error) {
        // Refused (rights, scripts): the agent drops its link; the next anchor waits a little.
        postFailure(r);
        backoffMs = Math.min(5_000, Math.max(100, backoffMs * 2));
      } else backoffMs = 0;
    } catch (err) {
      // The connection is gone: a new one, and the anchor again; what waits is released by it.
      conn?.close();
      conn = undefined;
      Atomics.store(s, ANCHOR_WANT, 1);
      if (backoffMs > 0) postFailure(err);
      backoffMs = Math.min(5_000, Math.max(100, backoffMs * 2));
    }
  }
  conn?.close();
}

// Atomics.waitAsync holds no handle: without one of its own the thread would end while idle between anchors with its
// connection gone (killed, to be reopened at the next anchor).
const keepAlive = setInterval(() => undefined, 1 << 30);
void run().finally(() => clearInterval(keepAlive));
