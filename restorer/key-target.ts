import { Redis } from 'ioredis';
import { ConnectionError, describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import { keyspaceCounts } from '../core/redis/keyspace-info.js';
import { hidePassword, parseRedisUrl, redactedRedisUrl, type RedisTarget } from '../core/redis/redis-url.js';
import { CLUSTER_SLOTS, keySlot } from '../core/redis/cluster-slot.js';
import { serverInInfo } from '../core/redis/server-info.js';
import type { ServerBuild } from './rdb-version.js';

export { CLUSTER_SLOTS, keySlot };

/** One key to write with `RESTORE key ttl payload [REPLACE] [ABSTTL]`. */
export interface RestoreEntry {
  key: Buffer;
  /** Absolute expiry, Unix ms; 0 = persistent. */
  expireAtMs: number;
  /** DUMP payload. */
  payload: Buffer;
}

/** One server behind a target, for reports. */
export interface TargetNodeSummary {
  /** URL without credentials. */
  url: string;
  /** Slot ranges it serves (Cluster masters); absent for a standalone server. */
  slots?: [number, number][];
  /** Keys over all dbs. */
  keys: number;
  /** `DEBUG DIGEST`, or '' when the server refuses DEBUG. */
  digest: string;
}

/**
 * Where restored keys are written: one standalone server, or every master of a Redis Cluster with each key sent
 * to the master serving its hash slot. Keys and payloads are bytes throughout.
 */
export interface KeyTarget {
  /** True for a Redis Cluster (db 0 only, keys routed by slot). */
  readonly cluster: boolean;
  /** The URL it was opened with, without credentials. */
  readonly shown: string;
  /** Keys over all dbs (and all masters). */
  countKeys(): Promise<number>;
  /** The server it runs (INFO server; a Cluster's first master). */
  build(): Promise<ServerBuild>;
  /** Whether keys of logical db `db` can be written (a Cluster has db 0 only). */
  acceptsDb(db: number): boolean;
  /** FLUSHALL (on every master). */
  flushAll(): Promise<void>;
  /** Writes the entries into `db`; returns, per entry, the error the server answered or null. */
  restore(db: number, entries: RestoreEntry[], replace: boolean): Promise<(Error | null)[]>;
  /** Each server behind the target with its keys and digest. */
  summary(): Promise<TargetNodeSummary[]>;
  close(): void;
}

/**
 * A target URL as reports, logs and errors show it: as given when it holds no password, else with the password
 * replaced by `***` (a URL that does not parse: by hidePassword).
 */
export function shownUrl(url: string): string {
  try {
    const t = parseRedisUrl(url, '--target');
    return t.password === undefined ? url : redactedRedisUrl(t);
  } catch {
    return hidePassword(url);
  }
}

/**
 * Opens `url` as a restore target: a server with `cluster_enabled:1` becomes a Cluster target (its masters from
 * `CLUSTER SLOTS`, reached with the URL's credentials and TLS); anything else a standalone one.
 * @throws FlashbackError BAD_INPUT when the Cluster is not healthy (`cluster_state` not ok, or slots unserved).
 */
export async function openKeyTarget(url: string, flag = '--target'): Promise<KeyTarget> {
  const t = parseRedisUrl(url, flag);
  const seed = await connectRedis(t, flag, { commandTimeoutMs: TARGET_COMMAND_TIMEOUT_MS });
  try {
    const info = String(await seed.call('INFO', 'cluster'));
    if (!/^cluster_enabled:1/m.test(info)) return new StandaloneTarget(seed, redactedRedisUrl(t));
    const target = await ClusterTarget.open(seed, t, flag);
    seed.disconnect();
    return target;
  } catch (err) {
    seed.disconnect();
    throw err;
  }
}

/**
 * Time one command to a restore target (or a Cluster master behind it) may take, ms: a server that stops answering
 * mid-copy fails the restore instead of holding it (the restorer's per-job deadline bounds the whole job).
 */
export const TARGET_COMMAND_TIMEOUT_MS = 300_000;

/** Time a connection may take to be ready (TCP, AUTH, ready check), ms. */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Connects one ioredis client that never reconnects or retries on its own, ready within `connectTimeoutMs` (a
 * server that accepts TCP but never answers fails then); ConnectionError naming `flag` when it cannot, FlashbackError
 * AUTH when the server refuses the user or password.
 */
export async function connectRedis(
  t: RedisTarget,
  flag = '--redis',
  o: { connectTimeoutMs?: number; commandTimeoutMs?: number } = {},
): Promise<Redis> {
  const { connectTimeoutMs = CONNECT_TIMEOUT_MS, commandTimeoutMs } = o;
  const r = new Redis({
    host: t.host,
    port: t.port,
    username: t.username,
    password: t.password,
    db: t.db,
    tls: t.tls ? {} : undefined,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
  });
  // The server's own words (WRONGPASS …) arrive as an 'error' event; connect() then only says "Connection is closed.".
  let said: Error | undefined;
  r.on('error', (err: Error) => (said ??= err));
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SilentServer()), connectTimeoutMs);
  });
  try {
    await Promise.race([r.connect(), silent]);
  } catch (cause) {
    r.disconnect();
    // disconnect() while ioredis waits for its ready check leaves the socket open: a silent server would keep it.
    (r as unknown as { stream?: { destroy(): void } }).stream?.destroy();
    const shown = redactedRedisUrl(t);
    const why = said ?? cause;
    const words = describeError(why);
    if (/WRONGPASS|NOAUTH|invalid (username-)?password|called without any password configured/i.test(words))
      throw new FlashbackError(
        ErrorCode.Auth,
        `Redis at ${shown} refused ${t.username ? `user "${t.username}" or its password` : 'the password'} (${words}); check the credentials in ${flag}`,
        { cause: why },
      );
    // Not retryable: a server that takes connections and says nothing does not start speaking Redis in a second.
    if (cause instanceof SilentServer || /Command timed out/i.test(words))
      throw new FlashbackError(
        ErrorCode.Connection,
        `Redis at ${shown} accepted the connection but did not answer within ${connectTimeoutMs} ms; is it a Redis server? check ${flag}`,
        { cause: why },
      );
    throw new ConnectionError(
      `cannot connect to Redis at ${shown} (${words}); check that it runs and that ${flag} is right`,
      { cause: why },
    );
  } finally {
    clearTimeout(timer);
  }
  return r;
}

class SilentServer extends Error {
  constructor() {
    super('no answer');
  }
}

class StandaloneTarget implements KeyTarget {
  readonly cluster = false;
  private db: number;

  constructor(
    private readonly r: Redis,
    readonly shown: string,
  ) {
    this.db = r.options.db ?? 0;
  }

  async countKeys(): Promise<number> {
    return sum(keyspaceCounts(String(await this.r.call('INFO', 'keyspace'))).values());
  }

  async build(): Promise<ServerBuild> {
    return serverInInfo(String(await this.r.call('INFO', 'server')));
  }

  acceptsDb(): boolean {
    return true;
  }

  async flushAll(): Promise<void> {
    await this.r.call('FLUSHALL');
  }

  async restore(db: number, entries: RestoreEntry[], replace: boolean): Promise<(Error | null)[]> {
    if (db !== this.db) {
      await this.r.select(db);
      this.db = db;
    }
    const p = this.r.pipeline();
    for (const e of entries) p.callBuffer('RESTORE', ...restoreArgs(e, replace));
    return ((await p.exec()) ?? []).map(([err]) => err ?? null);
  }

  async summary(): Promise<TargetNodeSummary[]> {
    return [{ url: this.shown, keys: await this.countKeys(), digest: await digestOrEmpty(this.r) }];
  }

  close(): void {
    this.r.disconnect();
  }
}

interface Master {
  r: Redis;
  shown: string;
  slots: [number, number][];
}

/**
 * Every master of a Cluster, one plain connection each, and the slot → master table read once from
 * `CLUSTER SLOTS`. A write answered with MOVED/ASK (the cluster resharded or failed over meanwhile) is
 * returned as that error; the copy then fails rather than guess.
 */
class ClusterTarget implements KeyTarget {
  readonly cluster = true;

  private constructor(
    private readonly masters: Master[],
    /** slot → index into masters */
    private readonly owner: Int16Array,
    readonly shown: string,
  ) {}

  static async open(seed: Redis, t: RedisTarget, flag: string): Promise<ClusterTarget> {
    const shown = redactedRedisUrl(t);
    const state = /^cluster_state:(\w+)/m.exec(String(await seed.call('CLUSTER', 'INFO')))?.[1];
    if (state !== 'ok') {
      throw new FlashbackError(
        ErrorCode.BadInput,
        `restore target ${shown} is a Redis Cluster in cluster_state:${state ?? 'unknown'}; restore into a healthy cluster (CLUSTER INFO says cluster_state:ok)`,
      );
    }
    const ranges = (await seed.call('CLUSTER', 'SLOTS')) as [
      number,
      number,
      [string, number, ...unknown[]],
      ...unknown[],
    ][];
    const owner = new Int16Array(CLUSTER_SLOTS).fill(-1);
    const byAddr = new Map<string, { host: string; port: number; slots: [number, number][] }>();
    for (const [from, to, [host, port]] of ranges) {
      // An empty or '?' host means "the address you reached me at" (cluster-preferred-endpoint-type unknown-endpoint).
      const h = host === '' || host === '?' ? t.host : host;
      const key = `${h}:${port}`;
      let m = byAddr.get(key);
      if (!m) byAddr.set(key, (m = { host: h, port: Number(port), slots: [] }));
      m.slots.push([Number(from), Number(to)]);
    }
    const entries = [...byAddr.values()];
    entries.forEach((m, i) => {
      for (const [from, to] of m.slots) for (let s = from; s <= to; s++) owner[s] = i;
    });
    const unserved = owner.indexOf(-1);
    if (unserved >= 0)
      throw new FlashbackError(
        ErrorCode.BadInput,
        `restore target ${shown} is a Redis Cluster that serves no master for slot ${unserved}; restore into a cluster with every slot assigned`,
      );
    const masters: Master[] = [];
    try {
      for (const m of entries) {
        const mt: RedisTarget = { ...t, host: m.host, port: m.port, db: 0 };
        masters.push({
          r: await connectRedis(mt, `${flag} (cluster master ${m.host}:${m.port})`, {
            commandTimeoutMs: TARGET_COMMAND_TIMEOUT_MS,
          }),
          shown: redactedRedisUrl(mt),
          slots: m.slots.sort((a, b) => a[0] - b[0]),
        });
      }
    } catch (err) {
      for (const m of masters) m.r.disconnect();
      throw err;
    }
    return new ClusterTarget(masters, owner, shown);
  }

  async build(): Promise<ServerBuild> {
    return serverInInfo(String(await this.masters[0]!.r.call('INFO', 'server')));
  }

  async countKeys(): Promise<number> {
    let n = 0;
    for (const m of this.masters) n += sum(keyspaceCounts(String(await m.r.call('INFO', 'keyspace'))).values());
    return n;
  }

  acceptsDb(db: number): boolean {
    return db === 0;
  }

  async flushAll(): Promise<void> {
    await Promise.all(this.masters.map((m) => m.r.call('FLUSHALL')));
  }

  async restore(db: number, entries: RestoreEntry[], replace: boolean): Promise<(Error | null)[]> {
    if (db !== 0)
      throw new FlashbackError(
        ErrorCode.BadInput,
        `restore target ${this.shown} is a Redis Cluster, which has db 0 only; cannot write keys of db ${db}`,
      );
    const groups = this.masters.map(() => [] as number[]);
    entries.forEach((e, i) => groups[this.owner[keySlot(e.key)]!]!.push(i));
    const out: (Error | null)[] = new Array(entries.length).fill(null);
    await Promise.all(
      groups.map(async (idx, mi) => {
        if (idx.length === 0) return;
        const p = this.masters[mi]!.r.pipeline();
        for (const i of idx) p.callBuffer('RESTORE', ...restoreArgs(entries[i]!, replace));
        const res = (await p.exec()) ?? [];
        res.forEach(([err], j) => (out[idx[j]!] = err ?? null));
      }),
    );
    return out;
  }

  async summary(): Promise<TargetNodeSummary[]> {
    const out: TargetNodeSummary[] = [];
    for (const m of this.masters) {
      out.push({
        url: m.shown,
        slots: m.slots,
        keys: sum(keyspaceCounts(String(await m.r.call('INFO', 'keyspace'))).values()),
        digest: await digestOrEmpty(m.r),
      });
    }
    return out;
  }

  close(): void {
    for (const m of this.masters) m.r.disconnect();
  }
}

function restoreArgs(e: RestoreEntry, replace: boolean): (Buffer | number | string)[] {
  return [
    e.key,
    e.expireAtMs > 0 ? e.expireAtMs : 0,
    e.payload,
    ...(replace ? ['REPLACE'] : []),
    ...(e.expireAtMs > 0 ? ['ABSTTL'] : []),
  ];
}

async function digestOrEmpty(r: Redis): Promise<string> {
  try {
    return String(await r.call('DEBUG', 'DIGEST'));
  } catch {
    return ''; // DEBUG is off by default (enable-debug-command): the summary goes without it
  }
}

function sum(values: Iterable<number>): number {
  let n = 0;
  for (const v of values) n += v;
  return n;
}
