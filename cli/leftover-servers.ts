import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/log.js';
import { isPidAlive, stopPid } from '../core/servers/server-process.js';

/** The dirs of a data dir whose servers belong to one `flashback up` (restored instances are not among them). */
const SERVER_DIRS = ['nats', 'clickhouse', 'demo-redis'];

/** A server process found working in one of the data dir's server dirs. */
export interface LeftoverServer {
  pid: number;
  /** Its command name (`nats-server`, `clickhouse-serv`, `redis-server`). */
  name: string;
  dir: string;
}

/**
 * Servers an earlier `flashback up` on `dataDir` left running (it was killed, or its stop was cut short): processes
 * whose working directory is one of the data dir's server dirs (each server runs in its own dir). Found through
 * /proc, so it also finds servers of an `up` that wrote no record; none elsewhere than Linux.
 */
export function findLeftoverServers(dataDir: string): LeftoverServer[] {
  const dirs = new Set(SERVER_DIRS.map((d) => path.join(path.resolve(dataDir), d)));
  // Members of a NATS cluster (`up --nats-cluster N`) each run in a dir of their own under nats-cluster/.
  const clusterDir = path.join(path.resolve(dataDir), 'nats-cluster');
  const found: LeftoverServer[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (!dirs.has(cwd) && path.dirname(cwd) !== clusterDir) continue;
      const name = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      found.push({ pid, name, dir: cwd });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/**
 * Stops the servers an earlier `up` left on `dataDir` (SIGTERM, then SIGKILL after `timeoutMs`), unless that `up` still
 * runs (its `up.pid`): then they are its own and the data dir lock refuses this start. Returns what was stopped.
 */
export async function stopLeftoverServers(
  dataDir: string,
  logger: Logger,
  timeoutMs = 10_000,
): Promise<LeftoverServer[]> {
  const owner = Number(readFileSafe(path.join(dataDir, 'up.pid')));
  if (owner > 0 && owner !== process.pid && isPidAlive(owner)) return [];
  const left = findLeftoverServers(dataDir);
  await Promise.all(
    left.map(async (s) => {
      logger.warn(
        { pid: s.pid, server: s.name, dir: s.dir },
        'stopping a server an earlier flashback up left running on this data dir',
      );
      await stopPid(s.pid, { timeoutMs });
    }),
  );
  return left;
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
