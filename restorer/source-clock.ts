import { existsSync } from 'node:fs';
import { compareVersions } from './server-binaries.js';
import type { ServerBuild } from './rdb-version.js';

/*
 * Why a restore may run its server on the source's clock.
 *
 * Keys never expire while an AOF loads (7.0+: expireIfNeeded is off while loading), so a history replays as the
 * source ran it whatever the restore's wall clock. Hash fields with a TTL (Redis 7.4+) do: while loading,
 * hashTypeGetValue (t_hash.c, Redis 8.0.2) treats a field whose TTL has passed by the wall clock as absent, without
 * deleting it. A field alive when the source ran a command but expired by the time of the restore then replays
 * wrongly: checked on 8.0.2, HPERSIST of it does nothing (the field is gone after the restore; the source kept it),
 * and HSETEX FXX / HSETNX see it absent.
 *
 * So the loading server runs with libfaketime's clock frozen just before the baseline: every field alive at any
 * moment of the history is alive to it, and fields go only where the history deletes them (the replication stream
 * carries an HDEL for each field the source expired, before any command that met it expired). Then the loaded data
 * is saved and loaded again by a server on the real clock, which drops what expired since (restorer/materialize.ts
 * reloadOnRealClock).
 */

/** Where Debian's package `faketime` puts the library (amd64, arm64, other layouts). */
const LIBFAKETIME = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/faketime/libfaketime.so.1',
];

/** Whether a server line has hash-field TTLs: Redis 7.4+, Valkey 9+. */
export function hasFieldTtls(b: ServerBuild): boolean {
  return compareVersions(b.version, b.server === 'valkey' ? '9.0.0' : '7.4.0') >= 0;
}

/** What {@link sourceClock} decided. */
export interface SourceClock {
  /** The restore server's environment; undefined: the real clock. */
  env?: NodeJS.ProcessEnv;
  /** Said in the report when field TTLs could not be replayed on the source's clock. */
  warning?: string;
}

/**
 * The clock a restore server loads a history on: frozen one second before the baseline when the history may hold
 * hash-field TTLs (source and restore server both have them, and the baseline holds some or is not known not to, or
 * `historyHasFieldTtls`: a command of core/store/restore-sql.ts FIELD_TTL_COMMANDS is replayed) and libfaketime is
 * installed; else the real clock, with a warning when field TTLs may replay wrongly.
 */
export function sourceClock(
  restoreServer: ServerBuild,
  source: (ServerBuild & { fieldTtlKeys?: number }) | undefined,
  baselineTsUs: number,
  historyHasFieldTtls: boolean,
  env: NodeJS.ProcessEnv = process.env,
): SourceClock {
  if (!hasFieldTtls(restoreServer) || (source && !hasFieldTtls(source))) return {};
  // No field TTL in the baseline (as the agent counted at its marker) nor a command in the history that could set
  // one: every clock replays it the same, and the second load is saved.
  if (source?.fieldTtlKeys === 0 && !historyHasFieldTtls) return {};
  const lib = LIBFAKETIME.find((p) => existsSync(p));
  if (!lib)
    return {
      warning:
        'hash fields whose TTL passed between the baseline and now may replay as already expired (HPERSIST, HSETEX FXX on them): install Debian package faketime so restores run on the source clock (deploy/install-servers.sh does)',
    };
  const at = new Date(Math.floor(baselineTsUs / 1000) - 1000);
  const frozen = at.toISOString().slice(0, 19).replace('T', ' ');
  return {
    env: {
      ...env,
      LD_PRELOAD: [lib, env.LD_PRELOAD].filter(Boolean).join(':'),
      FAKETIME: frozen,
      TZ: 'UTC',
      // The event loop's timers run on the monotonic clock: it must go on.
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
      // Child processes (BGSAVE, AOF rewrite forks) share the clock without a second library load.
      FAKETIME_DONT_RESET: '1',
    },
  };
}
