import { readdirSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { findExecutable } from '../core/servers/server-process.js';
import { FlashbackError, ErrorCode } from '../core/errors.js';
import { rdbVersionRead, serverBuild, type ServerBuild } from './rdb-version.js';

/** A server binary the restorer may load baselines with. */
export interface ServerBinary extends ServerBuild {
  /** Absolute path of the executable. */
  bin: string;
}

/** Env var naming the restore servers, `:`-separated paths (as `--redis-bin` does, repeated). */
export const SERVER_BINS_ENV = 'FLASHBACK_REDIS_BINS';

/**
 * Dirs whose `redis-<version>/bin` and `valkey-<version>/bin` hold servers built under their own prefix (as
 * deploy/install-versions.sh installs `/opt/redis-8.0.2/bin`), looked at besides PATH.
 */
const DISCOVER_ROOTS = ['/opt', '/usr/local'];

/**
 * The restore servers: the ones named (flag, then env), then the installed ones discovered (redis-server and
 * valkey-server on PATH, `/opt/{redis,valkey}-<version>/bin`). Each is asked its `--version`; duplicates (the same
 * file by two names) count once. The first is the default for a baseline that recorded no source server.
 */
export async function discoverServerBinaries(
  named: readonly string[] = [],
  env: NodeJS.ProcessEnv = process.env,
  discover = true,
): Promise<ServerBinary[]> {
  const fromEnv = (env[SERVER_BINS_ENV] ?? '').split(':').filter((p) => p !== '');
  const explicit = [...named, ...fromEnv];
  const paths: string[] = [];
  for (const p of explicit) {
    const found = findExecutable(p);
    if (!found)
      throw new FlashbackError(
        ErrorCode.BadInput,
        `restore server "${p}" (from --redis-bin or ${SERVER_BINS_ENV}) is not an executable file; give the path of a redis-server or valkey-server`,
      );
    paths.push(found);
  }
  for (const name of discover ? ['redis-server', 'valkey-server'] : []) {
    const found = findExecutable(name, env);
    if (found) paths.push(found);
  }
  for (const root of discover ? DISCOVER_ROOTS : []) {
    let entries: string[];
    try {
      entries = readdirSync(root);
    } catch {
      continue;
    }
    for (const e of entries.sort()) {
      if (!/^(redis|valkey)-\d/.test(e)) continue;
      const found = findExecutable(
        path.join(root, e, 'bin', e.startsWith('valkey') ? 'valkey-server' : 'redis-server'),
      );
      if (found) paths.push(found);
    }
  }
  const seen = new Set<string>();
  const out: ServerBinary[] = [];
  for (const p of paths) {
    const real = await realPath(p);
    if (seen.has(real)) continue;
    seen.add(real);
    try {
      out.push({ bin: p, ...(await serverBuild(p)) });
    } catch (err) {
      // A named binary that does not run is the caller's mistake; a discovered one is only skipped.
      if (explicit.includes(p))
        throw new FlashbackError(
          ErrorCode.BadInput,
          `restore server ${p} did not tell its version: ${(err as Error).message}`,
        );
    }
  }
  return out;
}

function realPath(p: string): Promise<string> {
  return realpath(p).catch(() => p);
}

const discovered = new Map<string, Promise<ServerBinary[]>>();

/** {@link discoverServerBinaries} once per process for the same names and env (a restore asks for every job). */
export function serverBinaries(
  named: readonly string[] = [],
  discover = true,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ServerBinary[]> {
  const key = JSON.stringify([named, discover, env[SERVER_BINS_ENV] ?? '', env.PATH ?? '']);
  let found = discovered.get(key);
  if (!found) {
    found = discoverServerBinaries(named, env, discover);
    discovered.set(key, found);
    found.catch(() => discovered.delete(key));
  }
  return found;
}

/** `major.minor.patch` compared numerically; missing parts are 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** `8.0.2` → `8.0`: commands and RDB format are the same across patch releases of a line. */
const line = (v: string) => v.split('.').slice(0, 2).join('.');

/**
 * Whether `server` can restore a history written by `source`: the same server (Redis histories on Redis, Valkey on
 * Valkey: each has commands and RDB types the other lacks), a line at least the source's (a newer line knows every
 * command of an older one; an older one may not), and an RDB format it reads.
 */
export function canRestore(server: ServerBuild, source: ServerBuild | undefined, rdbVersion?: number): boolean {
  const reads = rdbVersionRead(server);
  if (rdbVersion !== undefined && reads !== undefined && rdbVersion > reads) return false;
  if (!source) return true;
  if (server.server !== source.server) return false;
  return compareVersions(line(server.version), line(source.version)) >= 0;
}

/**
 * The binary a baseline is restored with: among those that {@link canRestore} it, the closest line to the source
 * (the exact release first), so replay runs the code the source ran. Refuses, naming the version needed and what
 * was found, when none fits.
 */
export function pickServerBinary(
  binaries: readonly ServerBinary[],
  source: ServerBuild | undefined,
  what: string,
  rdbVersion?: number,
): ServerBinary {
  if (binaries.length === 0)
    throw new FlashbackError(
      ErrorCode.BadInput,
      'no redis-server found for the restore: install one with deploy/install-servers.sh, or name it with --redis-bin PATH',
    );
  if (!source) {
    const first = binaries.find((b) => canRestore(b, undefined, rdbVersion));
    if (first) return first;
  } else {
    const fits = binaries.filter((b) => canRestore(b, source, rdbVersion));
    fits.sort((a, b) => exactness(a, source) - exactness(b, source) || compareVersions(a.version, b.version));
    if (fits[0]) return fits[0];
  }
  const found = binaries.map((b) => `${b.server} ${b.version} (${b.bin})`).join(', ');
  const needed = source
    ? `${source.server === 'valkey' ? 'Valkey' : 'Redis'} ${line(source.version)} or a newer line of ${source.server === 'valkey' ? 'Valkey' : 'Redis'}`
    : `a server that reads RDB format ${rdbVersion}`;
  const from = source
    ? ` comes from ${source.server} ${source.version}${rdbVersion ? ` (RDB format ${rdbVersion})` : ''}`
    : '';
  throw new FlashbackError(
    ErrorCode.BadInput,
    `${what}${from}; restoring it needs ${needed}, and the restore servers here are: ${found}; install one (deploy/install-versions.sh installs Redis 8.0.2 and Valkey 8.0.1) and name it with --redis-bin PATH or ${SERVER_BINS_ENV}`,
  );
}

/** 0 for the source's own release, 1 for its line, 2 for a newer line. */
function exactness(b: ServerBuild, source: ServerBuild): number {
  if (b.version === source.version) return 0;
  return line(b.version) === line(source.version) ? 1 : 2;
}
