/**
 * A seeded random workload for differential tests: several ioredis clients write in parallel over every data type,
 * several dbs, transactions (WATCH-aborted ones too), scripts and functions, TTLs that really expire during the run,
 * key moves across dbs, binary keys and values. With `nondeterministic: true` it adds what the source decides at
 * run time: SPOP, `XADD *`, consumer groups read and claimed (XREADGROUP, XCLAIM, XAUTOCLAIM), and blocking commands
 * (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, XREADGROUP BLOCK) served later by another
 * client: a push (alone, inside MULTI or a script), a RENAME or store onto the key, or a SWAPDB bringing data in.
 *
 * Every client draws from its own PRNG seeded from `seed`: the same seed issues the same commands per client; only
 * the interleaving of clients varies between runs. `run(ops)` lets the clients run and returns once they are all idle
 * again, so a caller can read the source at a moment no command is in flight.
 */
import { Redis } from 'ioredis';
import { seededRandom } from './seeded-random.js';

/** Longest "short" TTL the workload sets, ms: such keys expire during the run. */
export const SHORT_TTL_MAX_MS = 1_500;
/** Shortest "long" TTL the workload sets, ms: such keys never expire during a run (6 h). Nothing lies in between. */
export const LONG_TTL_MIN_MS = 6 * 3_600_000;

/** Options of a {@link RandomWorkload}. */
export interface RandomWorkloadOptions {
  /** Source to drive. */
  url: string;
  /** Seed of every client's PRNG. */
  seed: number;
  /** Clients writing in parallel (each has its own connections). @default 4 */
  clients?: number;
  /** Logical databases used: 0 … dbs − 1. @default 3 */
  dbs?: number;
  /** Keys per data type: this many ASCII names plus a few binary ones. @default 6 */
  keysPerFamily?: number;
  /**
   * Add SPOP, `XADD *`, XREADGROUP / XCLAIM / XAUTOCLAIM and blocking commands served by another client. @default false
   */
  nondeterministic?: boolean;
  /** Chance per operation of a FLUSHDB or SWAPDB. @default 0.0005 */
  wipeChance?: number;
  /**
   * Operations and commands left out, by the names the stats use (`PFCOUNT`, `XADD *`, `blocking` …), to narrow a
   * failure down. @default []
   */
  exclude?: string[];
  /**
   * XREADGROUP also re-reads a consumer's pending history (id `0`), which bumps delivery counts and times that Redis
   * does not replicate (replication-mode capture cannot see them: docs/exactness.md). @default true
   */
  historyReads?: boolean;
}

/** What the workload did: operations by name, and error replies by their first word (WRONGTYPE …). */
export interface WorkloadStats {
  ops: number;
  byOp: Record<string, number>;
  errors: Record<string, number>;
}

type Arg = string | Buffer | number;
/** A command: name, then its arguments. */
export type Argv = [string, ...Arg[]];

/** Draws from one seeded PRNG. */
class Dice {
  constructor(private readonly next: () => number) {}
  float(): number {
    return this.next();
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Inclusive range. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Binary key suffixes: NUL, invalid UTF-8, CR LF, quotes and backslashes, an escape sequence. */
const BINARY_SUFFIXES: readonly Buffer[] = [
  Buffer.from([0x00]),
  Buffer.from([0xff, 0xfe, 0x00, 0x80]),
  Buffer.from('\r\n'),
  Buffer.from('a b"c\\d'),
  Buffer.from([0xe2, 0x82]),
  Buffer.from('caf\u00e9 \u2603'),
  Buffer.from('\x1b[0m\t'),
];

const SCRIPTS = {
  setAppend: "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('APPEND', KEYS[1], ARGV[2])",
  counterToHash: "local n = redis.call('INCRBY', KEYS[1], ARGV[1]); redis.call('HSET', KEYS[2], 'last', n); return n",
  listToSet: "local v = redis.call('LPOP', KEYS[1]); if v then redis.call('SADD', KEYS[2], v) end; return v",
  relativeTtl: "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return redis.call('PEXPIRE', KEYS[2], ARGV[3])",
  toggle:
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DEL', KEYS[1]) else return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) end",
  floatTtl: "redis.call('HINCRBYFLOAT', KEYS[1], 'f', ARGV[1]); return redis.call('EXPIRE', KEYS[1], ARGV[2])",
  // Another db from inside the script: its MONITOR lines carry that db.
  crossDb: "redis.call('SELECT', ARGV[1]); redis.call('SET', KEYS[1], ARGV[2]); return redis.call('INCR', KEYS[2])",
  // Values the script computes (server clock, Lua PRNG): replay must apply what it wrote, not run it again.
  clock: "local t = redis.call('TIME'); return redis.call('HSET', KEYS[1], 'at', t[1] .. '.' .. t[2])",
  luaRandom: "return redis.call('RPUSH', KEYS[1], tostring(math.random(1000000)))",
  // Nondeterministic: the member popped or drawn is the source's choice.
  spopToList: "local m = redis.call('SPOP', KEYS[1]); if m then redis.call('RPUSH', KEYS[2], m) end; return m",
  srandRemove:
    "local m = redis.call('SRANDMEMBER', KEYS[1]); if m then redis.call('SREM', KEYS[1], m); redis.call('HSET', KEYS[2], 'drawn', m) end; return m",
} as const;

const LIBRARY = `#!lua name=fbdiff
redis.register_function('fbdiff_move', function(keys, args)
  local v = redis.call('RPOP', keys[1])
  if v then redis.call('LPUSH', keys[2], v) end
  return v
end)
redis.register_function('fbdiff_tag', function(keys, args)
  redis.call('HSET', keys[1], args[1], args[2])
  return redis.call('HINCRBY', keys[1], 'n', 1)
end)`;

/** One client: its PRNG and connections (main for commands, aux for "another client", blocker for blocking calls). */
interface Client {
  id: number;
  dice: Dice;
  main: Redis;
  aux: Redis;
  blocker: Redis | undefined;
  blockerId: number;
  /** The db each connection has selected (tracked here: SELECT is also sent inside transactions and scripts). */
  dbs: Map<Redis, number>;
  shas: Record<string, string>;
}

type Family = 'str' | 'cnt' | 'hash' | 'list' | 'set' | 'zset' | 'stream' | 'hll' | 'astream' | 'blist' | 'bzset';
const PREFIX: Record<Family, string> = {
  str: 's',
  cnt: 'c',
  hash: 'h',
  list: 'l',
  set: 'S',
  zset: 'z',
  stream: 'x',
  hll: 'p',
  astream: 'xa',
  blist: 'bl',
  bzset: 'bz',
};
/** Families that generic commands (DEL, RENAME, COPY, MOVE, EXPIRE …) pick from. */
const GENERIC_FAMILIES: readonly Family[] = ['str', 'cnt', 'hash', 'list', 'set', 'zset', 'stream', 'hll'];

/** A weighted operation: what it is called in the stats, and what it does on one client. */
interface Op {
  name: string;
  weight: number;
  run: (c: Client) => Promise<void>;
}

/** A weighted command generator, also usable inside MULTI. */
interface Gen {
  name: string;
  weight: number;
  argv: (d: Dice) => Argv;
}

/**
 * The workload. `start()` connects and loads what scripts need; `run(ops)` lets the clients go until `ops` more
 * operations completed and resolves once every client is idle; `close()` ends it. Between two `run`s nothing is sent.
 */
export class RandomWorkload {
  readonly seed: number;
  private readonly o: Required<Omit<RandomWorkloadOptions, 'url' | 'seed'>> & { url: string };
  private readonly clients: Client[] = [];
  private readonly gens: Gen[];
  private readonly ops: Op[];
  private readonly opTotal: number;
  private readonly genTotal: number;
  private readonly stats: WorkloadStats = { ops: 0, byOp: {}, errors: {} };
  /** Explicit stream ids: one increasing counter shared by all clients, so most explicit XADDs are accepted. */
  private streamMs = 1;
  private loops: Promise<void>[] = [];
  private paused = true;
  private stopped = false;
  private gate = deferred();
  private parked = 0;
  private onParked: (() => void) | undefined;
  private target = 0;
  private onTarget: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(options: RandomWorkloadOptions) {
    const {
      url,
      seed,
      clients = 4,
      dbs = 3,
      keysPerFamily = 6,
      nondeterministic = false,
      wipeChance = 0.0005,
      exclude = [],
      historyReads = true,
    } = options;
    this.seed = seed;
    this.o = { url, clients, dbs, keysPerFamily, nondeterministic, wipeChance, exclude, historyReads };
    const out = new Set(exclude);
    this.gens = this.generators().filter((g) => !out.has(g.name));
    this.genTotal = this.gens.reduce((s, g) => s + g.weight, 0);
    this.ops = this.operations().filter((op) => !out.has(op.name));
    this.opTotal = this.ops.reduce((s, op) => s + op.weight, 0);
  }

  /** Connects every client, loads the function library, and leaves the clients idle until {@link run}. */
  async start(): Promise<void> {
    for (let i = 0; i < this.o.clients; i++) {
      const conn = () =>
        new Redis(this.o.url, { maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: true });
      const c: Client = {
        id: i,
        dice: new Dice(seededRandom((this.seed + Math.imul(i + 1, 0x9e3779b1)) | 0)),
        main: conn(),
        aux: conn(),
        blocker: this.o.nondeterministic ? conn() : undefined,
        blockerId: 0,
        dbs: new Map(),
        shas: {},
      };
      for (const r of [c.main, c.aux, c.blocker]) if (r) c.dbs.set(r, 0);
      if (c.blocker) c.blockerId = Number(await c.blocker.call('CLIENT', 'ID'));
      for (const [name, body] of Object.entries(SCRIPTS))
        c.shas[name] = String(await c.main.call('SCRIPT', 'LOAD', body));
      this.clients.push(c);
    }
    await this.clients[0]!.main.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY);
    this.loops = this.clients.map((c) => this.loop(c));
  }

  /** Lets the clients run until `ops` more operations completed, then waits until every client is idle. */
  async run(ops: number): Promise<void> {
    this.resume(ops);
    await new Promise<void>((res) => {
      this.onTarget = res;
      if (this.stats.ops >= this.target || this.failure) res();
    });
    await this.pause();
  }

  /** Runs `ops` operations while `during` runs too (e.g. a baseline taken under load); waits for both. */
  async runWhile<T>(ops: number, during: () => Promise<T>): Promise<T> {
    const [, v] = await Promise.all([this.run(ops), during()]);
    return v;
  }

  /** What was done so far. */
  summary(): WorkloadStats {
    return { ops: this.stats.ops, byOp: { ...this.stats.byOp }, errors: { ...this.stats.errors } };
  }

  /** Stops the clients (after their current operation) and disconnects. */
  async close(): Promise<void> {
    this.stopped = true;
    this.gate.resolve();
    await Promise.allSettled(this.loops);
    for (const c of this.clients) for (const r of [c.main, c.aux, c.blocker]) r?.disconnect();
  }

  private resume(ops: number): void {
    if (this.failure) throw this.failure;
    this.target = this.stats.ops + ops;
    this.paused = false;
    this.gate.resolve();
  }

  /** Clients finish their current operation, then wait at a new gate. */
  private hold(): void {
    if (this.paused) return;
    this.paused = true;
    this.gate = deferred();
  }

  private async pause(): Promise<void> {
    this.hold();
    await new Promise<void>((res) => {
      this.onParked = res;
      if (this.parked === this.clients.length) res();
    });
    this.onParked = undefined;
    if (this.failure) throw this.failure;
  }

  private park(delta: number): void {
    this.parked += delta;
    if (this.parked === this.clients.length) this.onParked?.();
  }

  private async loop(c: Client): Promise<void> {
    for (;;) {
      if (this.paused || this.stopped) {
        this.park(1);
        if (this.stopped) return;
        await this.gate.promise;
        this.park(-1);
        continue;
      }
      try {
        await this.step(c);
      } catch (err) {
        // Not an error reply (those are counted): the connection or the workload itself failed. Stop everyone.
        this.failure ??= new Error(`workload client ${c.id} (seed ${this.seed}) failed: ${(err as Error).message}`, {
          cause: err,
        });
        this.hold();
        this.park(1);
        this.onTarget?.();
        return;
      }
      this.stats.ops++;
      if (this.stats.ops >= this.target && !this.paused) {
        this.hold();
        this.onTarget?.();
      }
    }
  }

  private async step(c: Client): Promise<void> {
    const d = c.dice;
    if (d.chance(this.o.wipeChance)) return this.wipe(c);
    let x = d.float() * this.opTotal;
    const op = this.ops.find((o) => (x -= o.weight) < 0) ?? this.ops[this.ops.length - 1]!;
    this.count(op.name);
    await op.run(c);
  }

  private count(name: string): void {
    this.stats.byOp[name] = (this.stats.byOp[name] ?? 0) + 1;
  }

  /** Sends one command; an error reply (WRONGTYPE, no such key …) is a result like any other and is counted. */
  private async send(c: Client, r: Redis, argv: Argv, db?: number): Promise<unknown> {
    if (db !== undefined) await this.select(c, r, db);
    try {
      return await r.callBuffer(argv[0], ...argv.slice(1));
    } catch (err) {
      this.replyError(err);
      return undefined;
    }
  }

  private replyError(err: unknown): void {
    if (!(err instanceof Error) || err.name !== 'ReplyError') throw err;
    const word = err.message.split(' ')[0] ?? 'ERR';
    this.stats.errors[word] = (this.stats.errors[word] ?? 0) + 1;
  }

  private async select(c: Client, r: Redis, db: number): Promise<void> {
    if (c.dbs.get(r) === db) return;
    await r.call('SELECT', db);
    c.dbs.set(r, db);
  }

  private db(d: Dice): number {
    return d.int(this.o.dbs);
  }

  // ---- keys and values ----

  private key(d: Dice, f: Family): Buffer {
    const p = PREFIX[f];
    const n = this.o.keysPerFamily;
    const i = d.int(n + 2);
    if (i < n) return Buffer.from(`${p}:${i}`);
    return Buffer.concat([
      Buffer.from(`${p}:`),
      BINARY_SUFFIXES[(i - n + d.int(BINARY_SUFFIXES.length)) % BINARY_SUFFIXES.length]!,
    ]);
  }

  private value(d: Dice): Buffer | string {
    switch (d.int(10)) {
      case 0:
      case 1:
      case 2:
        return `v${d.int(1000)}`;
      case 3:
        return String(d.int(100_000) - 50_000);
      case 4:
      case 5:
        return d.bytes(d.int(24));
      case 6:
        return '';
      case 7:
        return Buffer.from(`"q\\"\r\n\t ${d.int(10)}\x00\xff`, 'latin1');
      case 8:
        return `${d.int(10)}.${d.int(1000)}`;
      default:
        // Longer than the listpack/intset limits: the source converts encodings, and must not convert back.
        return d.chance(0.5) ? 'x'.repeat(d.range(65, 3_000)) : d.bytes(d.range(65, 700));
    }
  }

  /** A member / field: a small pool, integers (intset encoding) and binary ones. */
  private member(d: Dice): Buffer | string {
    const r = d.int(10);
    if (r < 5) return `m${d.int(16)}`;
    if (r < 8) return String(d.int(40));
    return Buffer.concat([Buffer.from('m'), BINARY_SUFFIXES[d.int(BINARY_SUFFIXES.length)]!]);
  }

  private score(d: Dice): string {
    switch (d.int(6)) {
      case 0:
        return String(d.int(200) - 100);
      case 1:
        return (d.int(2000) / 3).toString();
      case 2:
        return d.pick(['-inf', '+inf', '0', '-0', '1e-3']);
      default:
        return String(d.int(50));
    }
  }

  private shortTtlMs(d: Dice): number {
    return d.range(20, SHORT_TTL_MAX_MS);
  }

  private longTtlMs(d: Dice): number {
    return LONG_TTL_MIN_MS + d.int(LONG_TTL_MIN_MS);
  }

  /** SET's expiry options: relative or absolute, short (expires during the run) or long. */
  private setTtl(d: Dice): Arg[] {
    const short = d.chance(0.6);
    const ms = short ? this.shortTtlMs(d) : this.longTtlMs(d);
    switch (d.int(4)) {
      case 0:
        return ['PX', ms];
      case 1:
        return ['EX', short ? 1 : Math.ceil(ms / 1000)];
      case 2:
        return ['PXAT', Date.now() + ms];
      default:
        return ['EXAT', Math.floor((Date.now() + (short ? 0 : ms)) / 1000) + 1];
    }
  }

  private streamId(d: Dice, full: boolean): string {
    const ms = this.streamMs++;
    return full ? `${ms}-${d.int(3)}` : `${ms}-*`;
  }

  private recentStreamId(d: Dice): string {
    return `${Math.max(1, this.streamMs - d.int(40))}-${d.int(2)}`;
  }

  // ---- the command generators (one command each; MULTI picks from these too) ----

  private generators(): Gen[] {
    const K = (d: Dice, f: Family) => this.key(d, f);
    const gens: Gen[] = [
      // strings
      {
        name: 'SET',
        weight: 8,
        argv: (d) => [
          'SET',
          K(d, 'str'),
          this.value(d),
          ...(d.chance(0.3) ? this.setTtl(d) : []),
          ...(d.chance(0.15) ? [d.pick(['NX', 'XX'])] : []),
          ...(d.chance(0.1) ? ['GET'] : []),
        ],
      },
      { name: 'SET KEEPTTL', weight: 1, argv: (d) => ['SET', K(d, 'str'), this.value(d), 'KEEPTTL'] },
      {
        name: 'SET PXAT past',
        weight: 0.3,
        argv: (d) => ['SET', K(d, 'str'), this.value(d), 'PXAT', Date.now() - 1 - d.int(5_000)],
      },
      { name: 'APPEND', weight: 3, argv: (d) => ['APPEND', K(d, 'str'), this.value(d)] },
      { name: 'SETRANGE', weight: 1, argv: (d) => ['SETRANGE', K(d, 'str'), d.int(80), this.value(d)] },
      { name: 'SETBIT', weight: 1, argv: (d) => ['SETBIT', K(d, 'str'), d.int(300), d.int(2)] },
      { name: 'GETDEL', weight: 1, argv: (d) => ['GETDEL', K(d, 'str')] },
      {
        name: 'GETEX',
        weight: 1.5,
        argv: (d) => ['GETEX', K(d, 'str'), ...(d.chance(0.3) ? ['PERSIST'] : this.setTtl(d))],
      },
      { name: 'GETSET', weight: 1, argv: (d) => ['GETSET', K(d, 'str'), this.value(d)] },
      { name: 'MSET', weight: 1.5, argv: (d) => ['MSET', K(d, 'str'), this.value(d), K(d, 'str'), this.value(d)] },
      { name: 'MSETNX', weight: 0.5, argv: (d) => ['MSETNX', K(d, 'str'), this.value(d), K(d, 'str'), this.value(d)] },
      {
        name: 'SETEX',
        weight: 1,
        argv: (d) =>
          d.chance(0.5)
            ? ['SETEX', K(d, 'str'), d.chance(0.6) ? 1 : Math.ceil(this.longTtlMs(d) / 1000), this.value(d)]
            : ['PSETEX', K(d, 'str'), d.chance(0.6) ? this.shortTtlMs(d) : this.longTtlMs(d), this.value(d)],
      },
      // counters
      {
        name: 'INCRBY',
        weight: 3,
        argv: (d) => (d.chance(0.5) ? ['INCR', K(d, 'cnt')] : ['INCRBY', K(d, 'cnt'), d.int(2000) - 1000]),
      },
      { name: 'DECRBY', weight: 1, argv: (d) => ['DECRBY', K(d, 'cnt'), d.int(100)] },
      {
        name: 'INCRBYFLOAT',
        weight: 2,
        argv: (d) => [
          'INCRBYFLOAT',
          K(d, 'cnt'),
          d.pick(['0.1', '-2.5', '3.0e2', '1.0000001', String(d.int(1000) / 7)]),
        ],
      },
      // hashes
      {
        name: 'HSET',
        weight: 6,
        argv: (d) => [
          'HSET',
          K(d, 'hash'),
          this.member(d),
          this.value(d),
          ...(d.chance(0.3) ? [this.member(d), this.value(d)] : []),
        ],
      },
      { name: 'HSETNX', weight: 1, argv: (d) => ['HSETNX', K(d, 'hash'), this.member(d), this.value(d)] },
      { name: 'HDEL', weight: 2, argv: (d) => ['HDEL', K(d, 'hash'), this.member(d), this.member(d)] },
      { name: 'HINCRBY', weight: 1.5, argv: (d) => ['HINCRBY', K(d, 'hash'), `n${d.int(4)}`, d.int(200) - 100] },
      {
        name: 'HINCRBYFLOAT',
        weight: 1,
        argv: (d) => [
          'HINCRBYFLOAT',
          K(d, 'hash'),
          `f${d.int(4)}`,
          d.pick(['0.5', '-1.25', '10.1', String(d.int(100) / 3)]),
        ],
      },
      // lists
      {
        name: 'LPUSH',
        weight: 4,
        argv: (d) => [
          d.pick(['LPUSH', 'RPUSH', 'LPUSHX', 'RPUSHX']),
          K(d, 'list'),
          this.value(d),
          ...(d.chance(0.4) ? [this.value(d), this.value(d)] : []),
        ],
      },
      {
        name: 'LPOP',
        weight: 2.5,
        argv: (d) => [d.pick(['LPOP', 'RPOP']), K(d, 'list'), ...(d.chance(0.3) ? [d.range(1, 3)] : [])],
      },
      { name: 'LSET', weight: 0.8, argv: (d) => ['LSET', K(d, 'list'), d.int(6) - 2, this.value(d)] },
      {
        name: 'LINSERT',
        weight: 0.8,
        argv: (d) => ['LINSERT', K(d, 'list'), d.pick(['BEFORE', 'AFTER']), this.value(d), this.value(d)],
      },
      { name: 'LREM', weight: 0.8, argv: (d) => ['LREM', K(d, 'list'), d.int(5) - 2, this.value(d)] },
      { name: 'LTRIM', weight: 0.8, argv: (d) => ['LTRIM', K(d, 'list'), d.int(3), d.int(30) - 5] },
      {
        name: 'LMOVE',
        weight: 1.5,
        argv: (d) =>
          d.chance(0.3)
            ? ['RPOPLPUSH', K(d, 'list'), K(d, 'list')]
            : ['LMOVE', K(d, 'list'), K(d, 'list'), d.pick(['LEFT', 'RIGHT']), d.pick(['LEFT', 'RIGHT'])],
      },
      {
        name: 'LMPOP',
        weight: 0.5,
        argv: (d) => ['LMPOP', 2, K(d, 'list'), K(d, 'list'), d.pick(['LEFT', 'RIGHT']), 'COUNT', d.range(1, 3)],
      },
      {
        name: 'SORT STORE',
        weight: 0.3,
        argv: (d) => [
          'SORT',
          K(d, 'list'),
          'ALPHA',
          ...(d.chance(0.5) ? ['DESC'] : []),
          'LIMIT',
          0,
          d.range(1, 10),
          'STORE',
          K(d, 'list'),
        ],
      },
      // sets
      {
        name: 'SADD',
        weight: 4,
        argv: (d) => ['SADD', K(d, 'set'), this.member(d), ...(d.chance(0.4) ? [this.member(d), this.member(d)] : [])],
      },
      { name: 'SREM', weight: 2, argv: (d) => ['SREM', K(d, 'set'), this.member(d), this.member(d)] },
      { name: 'SMOVE', weight: 1, argv: (d) => ['SMOVE', K(d, 'set'), K(d, 'set'), this.member(d)] },
      {
        name: 'SxSTORE',
        weight: 1,
        argv: (d) => [d.pick(['SINTERSTORE', 'SUNIONSTORE', 'SDIFFSTORE']), K(d, 'set'), K(d, 'set'), K(d, 'set')],
      },
      // sorted sets
      {
        name: 'ZADD',
        weight: 4,
        argv: (d) => [
          'ZADD',
          K(d, 'zset'),
          ...(d.chance(0.2) ? [d.pick(['NX', 'XX', 'GT', 'LT'])] : []),
          ...(d.chance(0.2) ? ['CH'] : []),
          this.score(d),
          this.member(d),
          ...(d.chance(0.3) ? [this.score(d), this.member(d)] : []),
        ],
      },
      { name: 'ZADD INCR', weight: 0.5, argv: (d) => ['ZADD', K(d, 'zset'), 'INCR', this.score(d), this.member(d)] },
      {
        name: 'ZINCRBY',
        weight: 1.5,
        argv: (d) => ['ZINCRBY', K(d, 'zset'), d.pick(['1', '-0.5', '2.25', String(d.int(30) / 7)]), this.member(d)],
      },
      { name: 'ZREM', weight: 1.5, argv: (d) => ['ZREM', K(d, 'zset'), this.member(d)] },
      {
        name: 'ZPOPMIN',
        weight: 1,
        argv: (d) => [d.pick(['ZPOPMIN', 'ZPOPMAX']), K(d, 'zset'), ...(d.chance(0.3) ? [d.range(1, 3)] : [])],
      },
      {
        name: 'ZMPOP',
        weight: 0.4,
        argv: (d) => ['ZMPOP', 2, K(d, 'zset'), K(d, 'zset'), d.pick(['MIN', 'MAX']), 'COUNT', d.range(1, 3)],
      },
      {
        name: 'ZREMRANGE',
        weight: 0.6,
        argv: (d) =>
          d.chance(0.5)
            ? ['ZREMRANGEBYSCORE', K(d, 'zset'), d.int(20), d.range(20, 40)]
            : ['ZREMRANGEBYRANK', K(d, 'zset'), 0, d.int(3)],
      },
      {
        name: 'ZxSTORE',
        weight: 0.8,
        argv: (d) =>
          d.chance(0.3)
            ? ['ZRANGESTORE', K(d, 'zset'), K(d, 'zset'), 0, d.int(8)]
            : [d.pick(['ZUNIONSTORE', 'ZINTERSTORE', 'ZDIFFSTORE']), K(d, 'zset'), 2, K(d, 'zset'), K(d, 'zset')],
      },
      // streams with explicit ids, and consumer groups not read from
      {
        name: 'XADD id',
        weight: 3,
        argv: (d) => [
          'XADD',
          K(d, 'stream'),
          ...(d.chance(0.2) ? ['MAXLEN', d.range(3, 20)] : []),
          this.streamId(d, d.chance(0.3)),
          'f',
          this.value(d),
          ...(d.chance(0.3) ? ['g', this.value(d)] : []),
        ],
      },
      {
        name: 'XDEL',
        weight: 0.8,
        argv: (d) => ['XDEL', K(d, 'stream'), this.recentStreamId(d), this.recentStreamId(d)],
      },
      {
        name: 'XTRIM',
        weight: 0.5,
        argv: (d) =>
          d.chance(0.5)
            ? ['XTRIM', K(d, 'stream'), 'MAXLEN', d.range(2, 15)]
            : ['XTRIM', K(d, 'stream'), 'MINID', this.recentStreamId(d)],
      },
      { name: 'XGROUP', weight: 1, argv: (d) => this.xgroup(d, K(d, 'stream'), 'g0') },
      // HyperLogLog
      {
        name: 'PFADD',
        weight: 1,
        argv: (d) =>
          d.chance(0.8)
            ? ['PFADD', K(d, 'hll'), this.member(d), this.member(d)]
            : ['PFMERGE', K(d, 'hll'), K(d, 'hll'), K(d, 'hll')],
      },
      // Flagged read-only, yet it rewrites the cached cardinality inside the value (Redis propagates it): a write.
      { name: 'PFCOUNT', weight: 0.5, argv: (d) => ['PFCOUNT', K(d, 'hll')] },
      // generic
      {
        name: 'DEL',
        weight: 2,
        argv: (d) => [d.pick(['DEL', 'UNLINK']), this.anyKey(d), ...(d.chance(0.3) ? [this.anyKey(d)] : [])],
      },
      { name: 'EXPIRE', weight: 3, argv: (d) => this.expire(d, this.anyKey(d)) },
      { name: 'PERSIST', weight: 1, argv: (d) => ['PERSIST', this.anyKey(d)] },
      {
        name: 'RENAME',
        weight: 1.5,
        argv: (d) => this.sameFamily(d, (a, b) => [d.pick(['RENAME', 'RENAMENX']), a, b]),
      },
      {
        name: 'COPY',
        weight: 1,
        argv: (d) =>
          this.sameFamily(d, (a, b) => [
            'COPY',
            a,
            b,
            ...(d.chance(0.5) ? ['DB', this.db(d)] : []),
            ...(d.chance(0.5) ? ['REPLACE'] : []),
          ]),
      },
      { name: 'MOVE', weight: 0.8, argv: (d) => ['MOVE', this.anyKey(d), this.db(d)] },
      // A script as one command of many, so MULTI gets scripts too.
      {
        name: 'EVAL setAppend',
        weight: 0.5,
        argv: (d) => ['EVAL', SCRIPTS.setAppend, 1, K(d, 'str'), this.value(d), this.value(d)],
      },
      {
        name: 'FCALL tag',
        weight: 0.3,
        argv: (d) => ['FCALL', 'fbdiff_tag', 1, K(d, 'hash'), this.member(d), this.value(d)],
      },
    ];
    if (this.o.nondeterministic) {
      gens.push(
        { name: 'SPOP', weight: 2, argv: (d) => ['SPOP', K(d, 'set'), ...(d.chance(0.4) ? [d.range(1, 3)] : [])] },
        {
          name: 'XADD *',
          weight: 3,
          argv: (d) => [
            'XADD',
            K(d, 'astream'),
            ...(d.chance(0.2) ? ['MAXLEN', '~', d.range(5, 30)] : []),
            '*',
            'f',
            this.value(d),
          ],
        },
        { name: 'XGROUP *', weight: 1, argv: (d) => this.xgroup(d, K(d, 'astream'), `g${d.int(2)}`) },
        {
          name: 'XREADGROUP',
          weight: 3,
          argv: (d) => [
            'XREADGROUP',
            'GROUP',
            `g${d.int(2)}`,
            `c${d.int(3)}`,
            'COUNT',
            d.range(1, 4),
            ...(d.chance(0.15) ? ['NOACK'] : []),
            'STREAMS',
            K(d, 'astream'),
            d.chance(0.8) || !this.o.historyReads ? '>' : '0',
          ],
        },
        {
          name: 'XAUTOCLAIM',
          weight: 1.5,
          argv: (d) => [
            'XAUTOCLAIM',
            K(d, 'astream'),
            `g${d.int(2)}`,
            `c${d.int(3)}`,
            0,
            '0-0',
            'COUNT',
            d.range(1, 4),
            ...(d.chance(0.3) ? ['JUSTID'] : []),
          ],
        },
      );
    }
    return gens;
  }

  private xgroup(d: Dice, key: Buffer, group: string): Argv {
    switch (d.int(5)) {
      case 0:
      case 1:
        return ['XGROUP', 'CREATE', key, group, d.pick(['0', '$']), 'MKSTREAM'];
      case 2:
        return ['XGROUP', 'SETID', key, group, d.pick(['0', '$', this.recentStreamId(d)])];
      case 3:
        return ['XGROUP', 'CREATECONSUMER', key, group, `c${d.int(3)}`];
      default:
        return d.chance(0.5)
          ? ['XGROUP', 'DELCONSUMER', key, group, `c${d.int(3)}`]
          : ['XGROUP', 'DESTROY', key, group];
    }
  }

  private anyKey(d: Dice): Buffer {
    return this.key(d, d.pick(GENERIC_FAMILIES));
  }

  private sameFamily(d: Dice, f: (a: Buffer, b: Buffer) => Argv): Argv {
    const fam = d.pick(GENERIC_FAMILIES);
    return f(this.key(d, fam), this.key(d, fam));
  }

  private expire(d: Dice, key: Buffer): Argv {
    const short = d.chance(0.55);
    const ms = short ? this.shortTtlMs(d) : this.longTtlMs(d);
    const flag = d.chance(0.15) ? [d.pick(['NX', 'XX', 'GT', 'LT'])] : [];
    switch (d.int(5)) {
      case 0:
        return ['EXPIRE', key, short ? 1 : Math.ceil(ms / 1000), ...flag];
      case 1:
        return ['PEXPIRE', key, ms, ...flag];
      case 2:
        return ['PEXPIREAT', key, Date.now() + ms, ...flag];
      case 3:
        return ['EXPIREAT', key, Math.floor((Date.now() + (short ? 0 : ms)) / 1000) + 1, ...flag];
      default:
        // Already past: the source deletes the key at once.
        return d.chance(0.2) ? ['PEXPIRE', key, -1] : ['PEXPIRE', key, ms];
    }
  }

  private pickGen(d: Dice): Gen {
    let x = d.float() * this.genTotal;
    return this.gens.find((g) => (x -= g.weight) < 0) ?? this.gens[this.gens.length - 1]!;
  }

  // ---- operations (what one client does in one step) ----

  private operations(): Op[] {
    const ops: Op[] = [
      {
        name: 'command',
        weight: 80,
        run: async (c) => {
          const g = this.pickGen(c.dice);
          this.count(g.name);
          const db = this.db(c.dice);
          await this.send(c, c.main, g.argv(c.dice), db);
        },
      },
      { name: 'MULTI', weight: 5, run: (c) => this.multi(c, false) },
      { name: 'WATCH MULTI', weight: 3, run: (c) => this.multi(c, true) },
      { name: 'EVAL', weight: 5, run: (c) => this.script(c) },
      { name: 'FCALL', weight: 1.5, run: (c) => this.fcall(c) },
      { name: 'read', weight: 6, run: (c) => this.read(c) },
      { name: 'DUMP RESTORE', weight: 1, run: (c) => this.dumpRestore(c) },
    ];
    if (this.o.nondeterministic) {
      ops.push(
        { name: 'nondeterministic EVAL', weight: 1.5, run: (c) => this.randomScript(c) },
        { name: 'XCLAIM', weight: 2, run: (c) => this.xclaim(c) },
        { name: 'blocking', weight: 4, run: (c) => this.blocking(c) },
      );
    }
    return ops;
  }

  /**
   * MULTI … EXEC of 2–5 commands, sometimes switching db inside; with `watch`, WATCHed keys another client may touch.
   */
  private async multi(c: Client, watch: boolean): Promise<void> {
    const d = c.dice;
    const db = this.db(d);
    await this.select(c, c.main, db);
    const cmds: Argv[] = [];
    const n = d.range(2, 5);
    let inner = db;
    for (let i = 0; i < n; i++) {
      if (d.chance(0.15)) {
        inner = this.db(d);
        cmds.push(['SELECT', inner]);
      }
      cmds.push(this.pickGen(d).argv(d));
    }
    // Back to where the connection was, so our idea of its db holds whether EXEC ran or was aborted.
    if (inner !== db) cmds.push(['SELECT', db]);
    if (watch) {
      const key = this.anyKey(d);
      await this.send(c, c.main, ['WATCH', key]);
      // Another client writes the watched key (same db): EXEC is aborted and nothing of it happened.
      if (d.chance(0.6)) await this.send(c, c.aux, ['SET', key, this.value(d)], db);
    }
    const m = c.main.multi();
    for (const cmd of cmds) m.callBuffer(cmd[0], ...cmd.slice(1));
    try {
      const res = await m.exec();
      for (const [err] of res ?? []) if (err) this.replyError(err);
      if (res === null) this.count('MULTI aborted');
    } catch (err) {
      this.replyError(err);
    }
  }

  /**
   * A read: no event of its own, but a key whose TTL passed is expired by it, and that deletion must land right here.
   */
  private async read(c: Client): Promise<void> {
    const d = c.dice;
    const key = this.anyKey(d);
    const argv: Argv = d.pick<Argv>([
      ['GET', key],
      ['EXISTS', key, this.anyKey(d)],
      ['TYPE', key],
      ['PTTL', key],
      ['STRLEN', key],
      ['HGETALL', key],
      ['LRANGE', key, 0, 3],
      ['SISMEMBER', key, this.member(d)],
      ['ZSCORE', key, this.member(d)],
      ['XLEN', key],
      ['MGET', key, this.anyKey(d)],
      ['EVAL_RO', "return redis.call('EXISTS', KEYS[1])", 1, key],
    ]);
    this.count(`read ${argv[0]}`);
    await this.send(c, c.main, argv, this.db(d));
  }

  /** DUMP one key (a read) and RESTORE it under another name of its family, with a relative or absolute TTL or none. */
  private async dumpRestore(c: Client): Promise<void> {
    const d = c.dice;
    const db = this.db(d);
    const fam = d.pick(GENERIC_FAMILIES);
    const payload = await this.send(c, c.main, ['DUMP', this.key(d, fam)], db);
    if (!Buffer.isBuffer(payload)) return;
    const short = d.chance(0.5);
    const ttl: Arg[] = d.chance(0.3)
      ? [0]
      : d.chance(0.5)
        ? [short ? this.shortTtlMs(d) : this.longTtlMs(d)]
        : [Date.now() + (short ? this.shortTtlMs(d) : this.longTtlMs(d))];
    const abs = ttl.length === 1 && Number(ttl[0]) > 1e12 ? ['ABSTTL'] : [];
    await this.send(c, c.main, [
      'RESTORE',
      this.key(d, fam),
      ...ttl,
      payload,
      ...(d.chance(0.8) ? ['REPLACE'] : []),
      ...abs,
    ]);
  }

  private async script(c: Client): Promise<void> {
    const d = c.dice;
    const db = this.db(d);
    const K = (f: Family) => this.key(d, f);
    let name: keyof typeof SCRIPTS;
    let keys: Buffer[];
    let args: Arg[];
    switch (d.int(9)) {
      case 6:
        [name, keys, args] = ['crossDb', [K('str'), K('cnt')], [this.db(d), this.value(d)]];
        break;
      case 7:
        [name, keys, args] = ['clock', [K('hash')], []];
        break;
      case 8:
        [name, keys, args] = ['luaRandom', [K('list')], []];
        break;
      case 0:
        [name, keys, args] = ['setAppend', [K('str')], [this.value(d), this.value(d)]];
        break;
      case 1:
        [name, keys, args] = ['counterToHash', [K('cnt'), K('hash')], [d.int(100)]];
        break;
      case 2:
        [name, keys, args] = ['listToSet', [K('list'), K('set')], []];
        break;
      case 3:
        [name, keys, args] = [
          'relativeTtl',
          [K('str'), this.anyKey(d)],
          [this.value(d), this.shortTtlMs(d), d.chance(0.5) ? this.shortTtlMs(d) : this.longTtlMs(d)],
        ];
        break;
      case 4:
        [name, keys, args] = ['toggle', [K('zset')], [this.score(d), this.member(d)]];
        break;
      default:
        [name, keys, args] = [
          'floatTtl',
          [K('hash')],
          ['1.5', d.chance(0.5) ? 1 : Math.ceil(this.longTtlMs(d) / 1000)],
        ];
    }
    this.count(`EVAL ${name}`);
    const argv: Argv = d.chance(0.3)
      ? ['EVALSHA', c.shas[name]!, keys.length, ...keys, ...args]
      : ['EVAL', SCRIPTS[name], keys.length, ...keys, ...args];
    await this.send(c, c.main, argv, db);
  }

  private async fcall(c: Client): Promise<void> {
    const d = c.dice;
    const argv: Argv = d.chance(0.5)
      ? ['FCALL', 'fbdiff_move', 2, this.key(d, 'list'), this.key(d, 'list')]
      : ['FCALL', 'fbdiff_tag', 1, this.key(d, 'hash'), this.member(d), this.value(d)];
    await this.send(c, c.main, argv, this.db(d));
  }

  private async randomScript(c: Client): Promise<void> {
    const d = c.dice;
    const argv: Argv = d.chance(0.5)
      ? ['EVAL', SCRIPTS.spopToList, 2, this.key(d, 'set'), this.key(d, 'list')]
      : ['EVAL', SCRIPTS.srandRemove, 2, this.key(d, 'set'), this.key(d, 'hash')];
    await this.send(c, c.main, argv, this.db(d));
  }

  /** XPENDING (a read) names entries some consumer holds; XCLAIM takes them over, or XACK acknowledges them. */
  private async xclaim(c: Client): Promise<void> {
    const d = c.dice;
    const db = this.db(d);
    const key = this.key(d, 'astream');
    const group = `g${d.int(2)}`;
    const pending = await this.send(c, c.main, ['XPENDING', key, group, '-', '+', 5], db);
    const ids = Array.isArray(pending) ? pending.map((p) => (p as Buffer[])[0]!).filter(() => d.chance(0.7)) : [];
    if (ids.length === 0) ids.push(Buffer.from(`${Date.now() - 10_000}-0`));
    if (d.chance(0.25)) {
      this.count('XACK');
      await this.send(c, c.main, ['XACK', key, group, ...ids]);
      return;
    }
    await this.send(c, c.main, [
      'XCLAIM',
      key,
      group,
      `c${d.int(3)}`,
      0,
      ...ids,
      ...(d.chance(0.3) ? ['JUSTID'] : []),
      ...(d.chance(0.2) ? ['RETRYCOUNT', d.int(5)] : []),
    ]);
  }

  /**
   * A blocking command on the client's blocker connection; once the server shows it blocked, the main connection
   * serves it — with a push, a push inside MULTI or a script, a RENAME or store onto the key, or a SWAPDB that brings
   * a non-empty key in. Awaited whole, so an idle workload has no blocked client.
   */
  private async blocking(c: Client): Promise<void> {
    const d = c.dice;
    const blocker = c.blocker!;
    const db = this.db(d);
    const side = () => d.pick(['LEFT', 'RIGHT']);
    const k = (f: Family) => this.key(d, f);
    const fam = d.pick(['blist', 'blist', 'blist', 'bzset', 'bzset', 'astream'] as const);
    const key = k(fam);
    let call: Argv;
    if (fam === 'blist') {
      switch (d.int(4)) {
        case 0:
          call = [d.pick(['BLPOP', 'BRPOP']), key, k('blist'), 5];
          break;
        case 1:
          call = ['BLMOVE', key, k(d.chance(0.5) ? 'blist' : 'list'), side(), side(), 5];
          break;
        case 2:
          call = ['BRPOPLPUSH', key, k('blist'), 5];
          break;
        default:
          call = ['BLMPOP', 5, 2, key, k('blist'), side(), 'COUNT', d.range(1, 3)];
      }
    } else if (fam === 'bzset') {
      call = d.chance(0.7)
        ? [d.pick(['BZPOPMIN', 'BZPOPMAX']), key, 5]
        : ['BZMPOP', 5, 1, key, d.pick(['MIN', 'MAX']), 'COUNT', d.range(1, 2)];
    } else {
      const group = `g${d.int(2)}`;
      await this.send(c, c.main, ['XGROUP', 'CREATE', key, group, '$', 'MKSTREAM'], db);
      call = [
        'XREADGROUP',
        'GROUP',
        group,
        `c${d.int(3)}`,
        'COUNT',
        d.range(1, 3),
        'BLOCK',
        5_000,
        'STREAMS',
        key,
        '>',
      ];
    }
    this.count(`blocking ${call[0]}`);
    await this.select(c, blocker, db);
    let done = false;
    const p = this.send(c, blocker, call).finally(() => (done = true));
    // Served at once (the key had data), or blocked: then another client serves it.
    const deadline = Date.now() + 5_000;
    while (!done) {
      const list = String(await c.aux.call('CLIENT', 'LIST', 'ID', c.blockerId));
      if (/ flags=\S*b/.test(list)) {
        this.count(`served later ${call[0]}`);
        await this.serve(c, fam, key, db);
        break;
      }
      if (Date.now() > deadline) throw new Error(`${call[0]} neither returned nor blocked within 5 s`);
      await new Promise((res) => setTimeout(res, 1));
    }
    await p;
  }

  /** What adds data to `key` of family `fam`. */
  private push(d: Dice, fam: 'blist' | 'bzset' | 'astream', key: Buffer): Argv {
    if (fam === 'blist')
      return [d.pick(['LPUSH', 'RPUSH']), key, this.value(d), ...(d.chance(0.3) ? [this.value(d)] : [])];
    if (fam === 'bzset')
      return ['ZADD', key, this.score(d), this.member(d), ...(d.chance(0.3) ? [this.score(d), this.member(d)] : [])];
    return ['XADD', key, '*', 'f', this.value(d)];
  }

  /** Serves a client blocked on `key` in `db`, from the main connection, one way or another. */
  private async serve(c: Client, fam: 'blist' | 'bzset' | 'astream', key: Buffer, db: number): Promise<void> {
    const d = c.dice;
    // A stream replaced by RENAME or SWAPDB has lost the group: the blocked reader gets an error, not data.
    const how = d.pick(
      fam === 'astream'
        ? (['push', 'push', 'multi', 'script'] as const)
        : (['push', 'push', 'multi', 'script', 'rename', 'store', 'swapdb'] as const),
    );
    this.count(`served by ${how}`);
    const push = this.push(d, fam, key);
    const other = fam === 'astream' ? key : this.key(d, fam);
    switch (how) {
      case 'multi': {
        await this.select(c, c.main, db);
        const m = c.main.multi();
        m.callBuffer(push[0], ...push.slice(1));
        if (d.chance(0.5)) m.callBuffer(...(this.pickGen(d).argv(d) as [string, ...Arg[]]));
        try {
          for (const [err] of (await m.exec()) ?? []) if (err) this.replyError(err);
        } catch (err) {
          this.replyError(err);
        }
        return;
      }
      case 'script':
        await this.send(
          c,
          c.main,
          ['EVAL', 'return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))', 1, key, push[0], ...push.slice(2)],
          db,
        );
        return;
      case 'rename':
      case 'store':
        if (!other.equals(key)) {
          await this.send(c, c.main, this.push(d, fam, other), db);
          const move: Argv =
            how === 'rename'
              ? ['RENAME', other, key]
              : fam === 'blist'
                ? ['LMOVE', other, key, 'LEFT', 'RIGHT']
                : ['ZUNIONSTORE', key, 1, other];
          await this.send(c, c.main, move, db);
          return;
        }
        break;
      case 'swapdb':
        if (this.o.dbs > 1) {
          const into = (db + 1 + d.int(this.o.dbs - 1)) % this.o.dbs;
          await this.send(c, c.main, push, into);
          await this.send(c, c.main, ['SWAPDB', db, into]);
          return;
        }
        break;
    }
    await this.send(c, c.main, push, db);
  }

  /** Rarely: FLUSHDB or SWAPDB. */
  private async wipe(c: Client): Promise<void> {
    const d = c.dice;
    if (d.chance(0.5)) {
      this.count('FLUSHDB');
      await this.send(c, c.main, ['FLUSHDB', ...(d.chance(0.5) ? ['ASYNC'] : [])], this.db(d));
    } else {
      this.count('SWAPDB');
      await this.send(c, c.main, ['SWAPDB', this.db(d), this.db(d)]);
    }
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
