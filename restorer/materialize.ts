import { copyFile, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { ErrorCode, FlashbackError, describeError } from '../core/errors.js';
import { readableBytes } from '../core/redis/escape.js';
import { keysInInfo, keyspaceCounts } from '../core/redis/keyspace-info.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { encodeCommand } from '../core/redis/resp.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { ServerStartError, type ServerProcess } from '../core/servers/server-process.js';
import { AOF_DIR_NAME, AOF_FILE_NAME } from './aof-dir.js';
import { connectRedis, openKeyTarget, type KeyTarget, type RestoreEntry } from './key-target.js';

/** redis-server could not load a restore's AOF directory; `logTail` holds the last lines of its log. */
export class AofLoadError extends FlashbackError {
  readonly logTail: string;
  constructor(message: string, options: ErrorOptions & { logTail: string }) {
    super(ErrorCode.Internal, message, options);
    this.logTail = options.logTail;
  }
}

/** The restore target holds keys and the operator did not ask to flush it. */
export class TargetNotEmptyError extends FlashbackError {
  /** Keys the target holds, over all dbs. */
  readonly keys: number;
  constructor(message: string, keys: number) {
    super(ErrorCode.TargetNotEmpty, message);
    this.keys = keys;
  }
}

/** Options of {@link loadAofDir}. */
export interface LoadAofDirOptions {
  /** TCP port. @default a free port */
  port?: number;
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /**
   * Keep the server running after our process exits (`--spawn`: the restored instance outlives `flashback restore`).
   * @default false
   */
  detached?: boolean;
  /** How long loading may take before we give up; a large history loads at roughly 1 M commands/s. @default 600_000 */
  readyTimeoutMs?: number;
  /** Extra redis-server args (e.g. `['--maxmemory', '2gb']`), appended last. @default [] */
  args?: string[];
  /** The server binary that loads it (restorer/server-binaries.ts picks it). @default redis-server on PATH */
  bin?: string;
  /** The server's environment (restorer/source-clock.ts: the source's clock). @default process.env */
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts redis-server on the multi-part AOF in `dir/appendonlydir` (see createAofDir) and resolves once it has
 * loaded it (`loading:0`). Loading, unlike a replay over a socket, runs history with its own clock: no key expires
 * while it loads, and a PXAT already past is kept as it was (DESIGN.md, Restore).
 * `--aof-load-truncated no`: a cut-off last command must fail the restore, not be dropped silently.
 * @throws AofLoadError with the server's log lines when the AOF does not load (the server exits while loading);
 *   ServerStartError when the server does not start for another reason (port taken, ready timeout).
 */
export async function loadAofDir(dir: string, options: LoadAofDirOptions = {}): Promise<ServerProcess> {
  const { port, host, detached = false, readyTimeoutMs = 600_000, args = [], bin, env } = options;
  try {
    return await startRedisServer({
      bin,
      env,
      dir,
      port,
      host,
      detached,
      readyTimeoutMs,
      args: [
        '--appendonly',
        'yes',
        '--appenddirname',
        AOF_DIR_NAME,
        '--appendfilename',
        AOF_FILE_NAME,
        '--aof-load-truncated',
        'no',
        ...args,
      ],
    });
  } catch (err) {
    if (!(err instanceof ServerStartError) || !(await failedWhileLoading(dir, err))) throw err;
    throw new AofLoadError(`restore AOF in ${path.join(dir, AOF_DIR_NAME)} did not load: ${err.message}`, {
      cause: err,
      logTail: err.logTail,
    });
  }
}

/**
 * Hands a dataset loaded on the source's clock (restorer/source-clock.ts) to a server on the real clock: SAVE, stop,
 * start `bin` on that RDB in the same dir and on the same port (dropping what expired since, as any master loading
 * an RDB does: `expiredOnLoad` keys), and for a kept instance turn its AOF back on (a rewrite from the loaded data).
 */
export async function reloadOnRealClock(
  loaded: ServerProcess,
  options: LoadAofDirOptions = {},
): Promise<{ server: ServerProcess; expiredOnLoad: number }> {
  const { host, detached = false, readyTimeoutMs = 600_000, args = [], bin } = options;
  const before = await withRedis(loaded.url, async (r) => {
    await r.call('CONFIG', 'SET', 'appendonly', 'no');
    await r.call('SAVE');
    return keysInInfo(String(await r.call('INFO', 'keyspace')));
  });
  await loaded.stop();
  await rm(path.join(loaded.dir, AOF_DIR_NAME), { recursive: true, force: true });
  const server = await startRedisServer({
    bin,
    dir: loaded.dir,
    port: loaded.port,
    host,
    detached,
    readyTimeoutMs,
    // dbfilename is the default (dump.rdb): SAVE wrote it there (Redis 8 protects dbfilename from CONFIG SET).
    args: ['--appenddirname', AOF_DIR_NAME, ...args],
  });
  // The real-clock load drops keys whose expiry passed since: counted as expired at restore, as a SCAN would have.
  const after = await withRedis(server.url, async (r) => {
    if (detached) {
      await r.call('CONFIG', 'SET', 'appendonly', 'yes');
      await initialAofWritten(r, readyTimeoutMs);
    }
    return keysInInfo(String(await r.call('INFO', 'keyspace')));
  });
  return { server, expiredOnLoad: Math.max(0, before - after) };
}

/**
 * Waits for the AOF that `CONFIG SET appendonly yes` starts writing: until it is, the instance is not yet persistent,
 * and Redis ignores SIGTERM ("Writing initial AOF, can't exit"), so a stop soon after the restore would end in SIGKILL.
 */
async function initialAofWritten(r: Redis, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = String(await r.call('INFO', 'persistence'));
    const field = (name: string) => new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1];
    if (field('aof_rewrite_in_progress') === '0' && field('aof_rewrite_scheduled') === '0') return;
    if (Date.now() > deadline)
      throw new FlashbackError(
        ErrorCode.Internal,
        `the restored instance's first AOF was not written within ${timeoutMs} ms; see its redis.log`,
      );
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Whether a failed start is the AOF's doing: the server exited after it began to load. A taken port, a start that
 * timed out (a slow host or a long history: raise readyTimeoutMs) or an exit before loading (a bad argument) say
 * nothing about the history.
 */
async function failedWhileLoading(dir: string, err: ServerStartError): Promise<boolean> {
  if (err.portInUse || !/ before it was ready/.test(err.message)) return false;
  const log = await readFile(path.join(dir, 'redis.log'), 'latin1').catch(() => err.logTail);
  // Redis 7.0 logs "Server initialized" right before it loads its data (main → loadDataFromDisk).
  return log.includes('Server initialized');
}

/**
 * `DEBUG DIGEST` of the whole dataset (40 hex digits; all zeros when empty). Needs `--enable-debug-command local`,
 * which our servers have.
 */
export async function digest(url: string): Promise<string> {
  return withRedis(url, async (r) => String(await r.call('DEBUG', 'DIGEST')));
}

/**
 * Keys over all dbs (INFO keyspace), including keys whose expiry passed but that the server has not dropped yet;
 * for a node of a Redis Cluster, over every master.
 */
export async function countKeys(url: string): Promise<number> {
  const target = await openKeyTarget(url, '--redis');
  try {
    return await target.countKeys();
  } finally {
    target.close();
  }
}

/**
 * Makes the server drop every key whose absolute expiry has passed, by SCANning every db: SCAN expires what it
 * returns (Redis 7.0 `scanGenericCommand`, checked on 7.0.15). Returns INFO stats `expired_keys` afterwards: on a
 * server that just loaded a restore, every key it has expired so far, by this scan or by its own active cycle,
 * which may run before we get here.
 */
export async function expireDueKeys(url: string): Promise<number> {
  return withRedis(url, async (r) => {
    for (const db of (await keyspace(r)).keys()) {
      await r.select(db);
      let cursor = '0';
      do {
        const [next] = (await r.callBuffer('SCAN', cursor, 'COUNT', 1000)) as [Buffer, Buffer[]];
        cursor = next.toString('latin1');
      } while (cursor !== '0');
    }
    return expiredKeys(r);
  });
}

/** Options of {@link copyToTarget}. */
export interface CopyToTargetOptions {
  /** FLUSHALL the target first instead of refusing a non-empty one (`--flush`). @default false */
  flush?: boolean;
  /**
   * Keys per DUMP/RESTORE pipeline to start with; adapts to keep a batch's payloads near {@link
   * CopyToTargetOptions.batchBytes}. @default 256
   */
  batchKeys?: number;
  /** Payload bytes a batch aims at. @default 16_777_216 */
  batchBytes?: number;
}

/**
 * Copies every key of every db from the loaded scratch server `fromUrl` to `targetUrl` (same db numbers) with
 * `DUMP` + `PEXPIRETIME` → `RESTORE key <abs ms> payload REPLACE ABSTTL` (ttl 0 and no ABSTTL for persistent keys),
 * pipelined, keys and payloads as bytes. Keys whose expiry passes during the copy are not created on the target,
 * as absolute TTLs mean. A Redis Cluster target gets each key on the master serving its hash slot (see
 * {@link openKeyTarget}); it has db 0 only, so data in another db is refused before anything is written.
 * @throws TargetNotEmptyError when the target (any master of a Cluster) holds keys and `flush` is not set; nothing is
 * written then.
 */
export async function copyToTarget(
  fromUrl: string,
  targetUrl: string,
  options: CopyToTargetOptions = {},
): Promise<{ keys: number }> {
  const { flush = false, ...batching } = options;
  const target = await openKeyTarget(targetUrl, '--target');
  try {
    // Before --flush empties anything: data a Cluster cannot take must leave the target as it was.
    await assertDbsFit(fromUrl, target);
    await prepareTarget(target, flush);
    return await copyKeys(fromUrl, target, { ...batching, replace: true });
  } finally {
    target.close();
  }
}

/**
 * Refuses a non-empty target, or empties it when `flush` is set (every master of a Cluster).
 * @throws TargetNotEmptyError
 */
export async function prepareTarget(target: KeyTarget, flush: boolean): Promise<void> {
  const present = await target.countKeys();
  if (present === 0) return;
  if (!flush) {
    const what = target.cluster ? 'restore target Redis Cluster' : 'restore target';
    throw new TargetNotEmptyError(
      `${what} ${target.shown} is not empty (${present} key${present === 1 ? '' : 's'}); restore into an empty server, or pass --flush to delete its data first`,
      present,
    );
  }
  await target.flushAll();
}

/** A key to copy exists on the target already (a copy without REPLACE, e.g. two nodes merged into one instance). */
export class KeyConflictError extends FlashbackError {
  constructor(
    message: string,
    /** The key, as bytes. */
    readonly key: Buffer,
    /** Its logical db. */
    readonly db: number,
  ) {
    super(ErrorCode.BadInput, message);
  }
}

/** Options of {@link copyKeys}. */
export interface CopyKeysOptions extends Omit<CopyToTargetOptions, 'flush'> {
  /**
   * RESTORE … REPLACE: overwrite keys the target holds. Without it a key already there fails the copy with
   * KeyConflictError. @default true
   */
  replace?: boolean;
}

/**
 * Copies every key of every db of `fromUrl` into an open target (DUMP + PEXPIRETIME → RESTORE … ABSTTL), keys and
 * payloads as bytes; the target's emptiness is the caller's business ({@link prepareTarget}).
 * @throws FlashbackError BAD_INPUT when the target is a Cluster and `fromUrl` holds keys outside db 0 (nothing written
 * then);
 *   KeyConflictError when `replace` is false and a key exists on the target.
 */
export async function copyKeys(
  fromUrl: string,
  target: KeyTarget,
  options: CopyKeysOptions = {},
): Promise<{ keys: number }> {
  const { replace = true, batchBytes = 16_777_216 } = options;
  let batchKeys = options.batchKeys ?? 256;
  return withRedis(
    fromUrl,
    async (from) => {
      const dbs = await keyspace(from);
      dbsFit(dbs, target);
      let copied = 0;
      for (const db of dbs.keys()) {
        await from.select(db);
        let cursor = '0';
        let queue: Buffer[] = [];
        do {
          const [next, keys] = (await from.callBuffer('SCAN', cursor, 'COUNT', 1000)) as [Buffer, Buffer[]];
          cursor = next.toString('latin1');
          queue.push(...keys);
          while (queue.length >= batchKeys || (cursor === '0' && queue.length > 0)) {
            const batch = queue.slice(0, batchKeys);
            queue = queue.slice(batch.length);
            const { keys: n, bytes } = await copyBatch(from, target, db, batch, replace);
            copied += n;
            // Big values: fewer keys per round trip, so one batch never holds gigabytes; small ones: more.
            if (bytes > batchBytes && batchKeys > 1) batchKeys = Math.max(1, batchKeys >> 1);
            else if (bytes < batchBytes / 4 && batchKeys < 4096) batchKeys <<= 1;
          }
        } while (cursor !== '0');
      }
      return { keys: copied };
    },
    '--from',
  );
}

/**
 * Refuses data the target cannot hold: keys outside db 0 for a Redis Cluster.
 * @throws FlashbackError BAD_INPUT naming the db and the way out.
 */
export async function assertDbsFit(fromUrl: string, target: KeyTarget): Promise<void> {
  if (!target.cluster) return;
  await withRedis(fromUrl, async (from) => dbsFit(await keyspace(from), target), '--from');
}

function dbsFit(dbs: Map<number, number>, target: KeyTarget): void {
  for (const [db, n] of dbs) {
    if (n > 0 && !target.acceptsDb(db)) {
      throw new FlashbackError(
        ErrorCode.BadInput,
        `the restored data holds ${n} key${n === 1 ? '' : 's'} in db ${db}, but ${target.shown} is a Redis Cluster, which has db 0 only; restore db 0 alone (--db 0), or into a standalone server`,
      );
    }
  }
}

async function copyBatch(
  from: Redis,
  target: KeyTarget,
  db: number,
  keys: Buffer[],
  replace: boolean,
): Promise<{ keys: number; bytes: number }> {
  const read = from.pipeline();
  for (const k of keys) {
    read.callBuffer('DUMP', k);
    read.callBuffer('PEXPIRETIME', k);
  }
  const got = (await read.exec()) ?? [];
  const entries: RestoreEntry[] = [];
  let bytes = 0;
  for (let i = 0; i < keys.length; i++) {
    const [dumpErr, payload] = got[2 * i]!;
    const [ttlErr, expireAtMs] = got[2 * i + 1]!;
    if (dumpErr || ttlErr)
      throw new FlashbackError(
        ErrorCode.Internal,
        `reading key "${readableBytes(keys[i]!)}" in db ${db} of the scratch server failed: ${describeError(dumpErr ?? ttlErr)}`,
        { cause: dumpErr ?? ttlErr },
      );
    // Gone meanwhile (DUMP nil / PEXPIRETIME -2): it expired, which is what the target must show too.
    if (payload === null || expireAtMs === -2) continue;
    const abs = Number(expireAtMs);
    entries.push({ key: keys[i]!, expireAtMs: abs > 0 ? abs : 0, payload: payload as Buffer });
    bytes += (payload as Buffer).length;
  }
  if (entries.length === 0) return { keys: 0, bytes };
  const results = await target.restore(db, entries, replace);
  results.forEach((err, i) => {
    if (!err) return;
    const key = readableBytes(entries[i]!.key);
    if (!replace && /^BUSYKEY/.test(err.message)) {
      throw new KeyConflictError(
        `key "${key}" in db ${db} exists on ${target.shown} already; nothing overwrites it without REPLACE`,
        entries[i]!.key,
        db,
      );
    }
    if (/^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN)\b/.test(err.message)) {
      throw new FlashbackError(
        ErrorCode.Internal,
        `RESTORE of key "${key}" into Redis Cluster ${target.shown} was answered "${err.message}": its slots moved during the copy (resharding or failover?); restore again once the cluster is stable`,
        { cause: err },
      );
    }
    throw new FlashbackError(
      ErrorCode.Internal,
      `RESTORE of key "${key}" into db ${db} of the target failed: ${err.message}; the target must run Redis 7.0 or newer (it has to read the scratch server's DUMP format) and accept the key's db`,
      { cause: err },
    );
  });
  return { keys: entries.length, bytes };
}

/**
 * `SAVE` on the scratch server at `url` (whose data dir is `dir`) and copies its RDB (CONFIG `dbfilename`,
 * `dump.rdb` by default) to `file`, through a temp file and a rename so `file` is never half-written.
 */
export async function saveRdb(url: string, dir: string, file: string): Promise<{ bytes: number }> {
  const dbfilename = await withRedis(url, async (r) => {
    await r.call('SAVE');
    const [, name] = (await r.call('CONFIG', 'GET', 'dbfilename')) as [string, string];
    return name;
  });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await copyFile(path.join(dir, dbfilename), tmp);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new FlashbackError(
      ErrorCode.Storage,
      `cannot write the restored RDB to ${file}: ${describeError(err)}; check that its directory exists and is writable`,
      { cause: err },
    );
  }
  return { bytes: (await stat(file)).size };
}

/**
 * Lua run by {@link keepTtlRelativeScript}. Every db (SELECT until it errors), SCAN every key, move each expiry by
 * ARGV[1] ms, and with ARGV[2] = 1 each hash field's (a server with field TTLs: Redis 7.4+).
 * SCAN may return a key twice (rehashing), so shifted keys are remembered: shifting twice would be wrong.
 * While an AOF loads, SCAN returns keys whose expiry has passed and PEXPIREAT to a past time keeps the key
 * (Redis checks neither during loading), so a key alive at the cutoff is alive after the shift.
 */
const KEEP_TTL_RELATIVE_LUA = `
local shift = tonumber(ARGV[1])
local fields = ARGV[2] == '1'
local db = 0
local moved = 0
while true do
  local ok = redis.pcall('SELECT', db)
  if type(ok) == 'table' and ok.err then break end
  local seen = {}
  local cursor = '0'
  repeat
    local r = redis.call('SCAN', cursor, 'COUNT', 1000)
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      if not seen[k] then
        seen[k] = true
        local t = redis.call('PEXPIRETIME', k)
        if t > 0 then
          redis.call('PEXPIREAT', k, t + shift)
          moved = moved + 1
        end
        if fields and redis.call('TYPE', k)['ok'] == 'hash' then
          local names = redis.call('HKEYS', k)
          for i = 1, #names, 500 do
            local chunk = {unpack(names, i, math.min(i + 499, #names))}
            local ts = redis.pcall('HPEXPIRETIME', k, 'FIELDS', #chunk, unpack(chunk))
            if type(ts) == 'table' and ts.err then fields = false break end
            for j, ft in ipairs(ts) do
              if ft > 0 then
                redis.call('HPEXPIREAT', k, ft + shift, 'FIELDS', 1, chunk[j])
                moved = moved + 1
              end
            end
          end
        end
      end
    end
  until cursor == '0'
  db = db + 1
end
return moved
`;

/**
 * RESP of one `EVAL` to append at the end of the incr file (`--keep-ttl-relative`): moves every key's expiry by
 * `shiftMs` (restore time − cutoff), so keys alive at the cutoff come back with the TTL they had then; with
 * `fieldTtls` (the restore server has them) hash fields' expiries too.
 */
export function keepTtlRelativeScript(shiftMs: number, fieldTtls = false): Buffer {
  if (!Number.isSafeInteger(shiftMs))
    throw new FlashbackError(
      ErrorCode.BadInput,
      `keep-ttl-relative shift ${shiftMs} ms is not a whole number of milliseconds`,
    );
  return encodeCommand(['EVAL', KEEP_TTL_RELATIVE_LUA, 0, shiftMs, fieldTtls ? 1 : 0]);
}

export async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>, flag = '--redis'): Promise<T> {
  const r = await connectRedis(parseRedisUrl(url, flag), flag);
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** db → key count, from INFO keyspace (`db3:keys=5,expires=1,avg_ttl=0`). */
async function keyspace(r: Redis): Promise<Map<number, number>> {
  return keyspaceCounts(String(await r.call('INFO', 'keyspace')));
}

async function expiredKeys(r: Redis): Promise<number> {
  const m = /^expired_keys:(\d+)/m.exec(String(await r.call('INFO', 'stats')));
  return m ? Number(m[1]) : 0;
}
