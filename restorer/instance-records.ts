import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, lstat, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ErrorCode, FlashbackError } from '../core/errors.js';
import { parseRedisUrl, redactedRedisUrl } from '../core/redis/redis-url.js';
import { isPidAlive, stopPid } from '../core/servers/server-process.js';

/**
 * A restorer's own record of an instance it started, in the instance's dir (`flashback-instance.json`, mode 600, in
 * a dir 700 under the restorer's instances root). A stop request names only an id: the restorer finds the record
 * under its own root and signals the pid only when that pid is still the process it started (same start time, a
 * redis-server), so nothing sent over the bus can make it stop another process or delete another dir.
 */
export interface OwnInstance {
  id: string;
  pid: number;
  /** The process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot); undefined without /proc. */
  startTime?: number;
  /** Its data dir, under the instances root. */
  dir: string;
  host: string;
  port: number;
  /** Its generated password (`requirepass`). */
  password: string;
  createdAt: string;
}

const RECORD = 'flashback-instance.json';

/** Start time of `pid` from /proc (clock ticks since boot), or undefined where there is no /proc. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isSafeInteger(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `rec.pid` is still the server this record describes (not a later process given the same pid). */
export function isSameProcess(rec: Pick<OwnInstance, 'pid' | 'startTime'>): boolean {
  if (!isPidAlive(rec.pid)) return false;
  const now = processStartTime(rec.pid);
  if (rec.startTime !== undefined && now !== undefined && now !== rec.startTime) return false;
  try {
    return runsRestoreServer(rec.pid);
  } catch {
    return rec.startTime === undefined; // no /proc: the pid is all we know
  }
}

/**
 * Whether pid's command line is a restore server's (redis-server, or valkey-server for Valkey histories); throws
 * when /proc cannot tell.
 */
export function runsRestoreServer(pid: number): boolean {
  return /\b(redis|valkey)-server\b/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1'));
}

/** A generated instance password: 48 hex digits (no character a URL or shell needs escaped). */
export function newInstancePassword(): string {
  return randomBytes(24).toString('hex');
}

/**
 * Locks a freshly restored instance down and records it as this restorer's: sets `password` as its `requirepass`
 * (over the loopback connection, never in argv), makes its dir 700 and its files 600, and writes the record.
 * @param root the restorer's instances root; `dir` must lie inside it.
 * @returns the record.
 */
export async function adoptInstance(
  root: string,
  o: { id: string; url: string; pid: number; dir: string; password: string },
): Promise<OwnInstance> {
  const dir = await insideRoot(root, o.dir);
  const t = parseRedisUrl(o.url, 'instance');
  const r = new Redis({
    host: t.host,
    port: t.port,
    password: t.password,
    lazyConnect: true,
    connectTimeout: 5_000,
    commandTimeout: 10_000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.call('CONFIG', 'SET', 'requirepass', o.password);
  } finally {
    r.disconnect();
  }
  await privateTree(dir);
  const rec: OwnInstance = {
    id: o.id,
    pid: o.pid,
    startTime: processStartTime(o.pid),
    dir,
    host: t.host,
    port: t.port,
    password: o.password,
    createdAt: new Date().toISOString(),
  };
  await writeFile(path.join(dir, RECORD), JSON.stringify(rec), { mode: 0o600 });
  return rec;
}

/** The instance's URL as listed: its password replaced by `***`. */
export function shownInstanceUrl(rec: Pick<OwnInstance, 'host' | 'port'>): string {
  return redactedRedisUrl({ host: rec.host, port: rec.port, password: 'x', db: 0, tls: false });
}

/** The instance's URL with its password (for the one report that shows it). */
export function instanceUrl(rec: Pick<OwnInstance, 'host' | 'port' | 'password'>): string {
  const host = rec.host.includes(':') ? `[${rec.host}]` : rec.host;
  return `redis://:${encodeURIComponent(rec.password)}@${host}:${rec.port}/0`;
}

/** This restorer's records under `root` (unreadable or foreign files skipped). */
export async function ownInstances(root: string): Promise<OwnInstance[]> {
  const out: OwnInstance[] = [];
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return out;
  }
  for (const name of names) {
    const dir = path.join(root, name);
    try {
      const st = await lstat(dir);
      if (!st.isDirectory()) continue;
      const rec = JSON.parse(await readFile(path.join(dir, RECORD), 'utf8')) as OwnInstance;
      // A record that claims another dir is not ours to trust.
      if (path.resolve(rec.dir) !== path.resolve(dir) || typeof rec.pid !== 'number') continue;
      out.push(rec);
    } catch {
      continue;
    }
  }
  return out;
}

/** Records of instances still running (the cap on running instances counts these). */
export async function runningInstances(root: string): Promise<OwnInstance[]> {
  return (await ownInstances(root)).filter(isSameProcess);
}

/**
 * Stops instance `id` if this restorer started it: finds its record under `root`, shuts the server down (SHUTDOWN
 * NOSAVE with its password, then a signal to the recorded pid if it is still that same process), and removes its
 * dir.
 * @throws FlashbackError NOT_FOUND when no record under `root` has that id.
 */
export async function stopOwnInstance(root: string, id: string): Promise<OwnInstance> {
  const rec = (await ownInstances(root)).find((r) => r.id === id);
  if (!rec)
    throw new FlashbackError(
      ErrorCode.NotFound,
      `instance "${id}" was not started by this restorer (no record under its instances dir ${root}); nothing stopped`,
    );
  await stopRecorded(rec);
  await rm(await insideRoot(root, rec.dir), { recursive: true, force: true });
  return rec;
}

/** Stops the recorded process if it is still the one started (never a pid reused by another process). */
export async function stopRecorded(rec: OwnInstance): Promise<void> {
  if (!isSameProcess(rec)) return;
  const r = new Redis({
    host: rec.host,
    port: rec.port,
    password: rec.password,
    lazyConnect: true,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
  } catch {
    // Unreachable: the signal below does it.
  } finally {
    r.disconnect();
  }
  const deadline = Date.now() + 5_000;
  while (isSameProcess(rec) && Date.now() < deadline) await delay(20);
  if (isSameProcess(rec)) await stopPid(rec.pid, { timeoutMs: 5_000 });
}

/** `dir` resolved, refused unless it lies strictly inside `root` (symlinks resolved on both). */
async function insideRoot(root: string, dir: string): Promise<string> {
  const [r, d] = await Promise.all([realpath(root), realpath(dir)]);
  if (!d.startsWith(r + path.sep))
    throw new FlashbackError(
      ErrorCode.Forbidden,
      `instance dir ${dir} is not inside this restorer's instances dir ${root}; it is left alone`,
    );
  return d;
}

/** Mode 700 for `dir` and the dirs in it, 600 for its files. */
async function privateTree(dir: string): Promise<void> {
  await chmod(dir, 0o700);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await privateTree(p);
    else if (e.isFile()) await chmod(p, 0o600);
  }
}
