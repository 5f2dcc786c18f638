import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { resolveBinary } from '../core/servers/server-process.js';
import { FlashbackError, ErrorCode } from '../core/errors.js';
import type { ServerIdentity } from '../core/redis/server-info.js';

/** A server build as `redis-server --version` (or INFO server) names it. */
export type ServerBuild = ServerIdentity;

/**
 * The newest RDB format each server line reads (src/rdb.h RDB_VERSION of each release): Redis 7.0 writes 10, 7.2
 * writes 11, 7.4 and 8.x write 12; Valkey 7.2 and 8.x write 11. An older line cannot load a newer format ("Can't
 * handle RDB format version").
 */
export function rdbVersionRead(build: ServerBuild): number | undefined {
  const [major = 0, minor = 0] = build.version.split('.').map(Number);
  if (build.server === 'valkey') return major >= 7 && major <= 8 ? 11 : undefined;
  if (major < 7) return major === 6 ? 9 : undefined;
  if (major === 7) return minor >= 4 ? 12 : minor >= 2 ? 11 : 10;
  if (major === 8) return 12;
  return undefined;
}

/** The RDB format version in an RDB's header (`REDIS0012` → 12), or undefined when it is no RDB header. */
export function rdbHeaderVersion(head: Buffer): number | undefined {
  const m = /^REDIS(\d{4})$/.exec(head.toString('latin1', 0, 9));
  return m ? Number(m[1]) : undefined;
}

/** The build of a redis-server binary (`Redis server v=7.0.15 …`, `Valkey server v=8.0.1 …`). */
export async function serverBuild(bin?: string): Promise<ServerBuild> {
  const path = resolveBinary('redis-server', ['redis-server'], bin);
  const { stdout } = await promisify(execFile)(path, ['--version'], { timeout: 10_000 });
  const m = /^(\w+) server v=(\S+)/i.exec(stdout.trim());
  if (!m) throw new FlashbackError(ErrorCode.Internal, `${path} --version printed "${stdout.trim().slice(0, 80)}"`);
  return { server: m[1]!.toLowerCase(), version: m[2]! };
}

/**
 * Refuses, before any work, a baseline whose RDB the restore server cannot load: its header's format version, or
 * (when the baseline recorded it) the source's server line.
 */
export function assertLoadable(o: {
  restore: ServerBuild;
  rdbVersion?: number;
  source?: { server: string; version: string };
  what: string;
}): void {
  const { restore, rdbVersion, source, what } = o;
  const reads = rdbVersionRead(restore);
  const needs = rdbVersion ?? (source ? rdbVersionRead({ server: source.server, version: source.version }) : undefined);
  const shown = `${restore.server} ${restore.version}`;
  if (source && source.server !== restore.server && source.server === 'valkey') {
    throw new FlashbackError(
      ErrorCode.BadInput,
      `${what} comes from Valkey ${source.version}; the restore server is ${shown}: restore Valkey histories with valkey-server (put it first on PATH for the restorer)`,
    );
  }
  if (reads === undefined || needs === undefined || needs <= reads) return;
  const from = source ? ` (written by ${source.server} ${source.version})` : '';
  throw new FlashbackError(
    ErrorCode.BadInput,
    `${what} is an RDB of format version ${needs}${from}; the restore server ${shown} reads up to version ${reads}: run the restorer with a redis-server of the same line as the source or newer (first on PATH)`,
  );
}
