import { Redis } from 'ioredis';

/** Which keys a key-subset restore keeps. */
export interface KeyFilter {
  /** Redis glob patterns (as SCAN MATCH / KEYS take them); a key is kept when it matches any. Empty = every key. */
  patterns?: string[];
  /** Keep only this logical database. */
  db?: number;
}

/**
 * Reduces a restored instance to a key subset. The whole history is replayed
 * first and only then are other keys dropped, so a multi-key command that
 * touched kept and dropped keys (SUNIONSTORE kept from dropped, RENAME across
 * the pattern …) leaves the kept keys exactly as they were at the cutoff.
 * Matching is the server's own glob (SCAN MATCH), not a re-implementation.
 * @returns how many keys were dropped.
 */
export async function applyKeyFilter(url: string, filter: KeyFilter): Promise<number> {
  const patterns = filter.patterns ?? [];
  if (patterns.length === 0 && filter.db === undefined) return 0;
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    // connect() inside the try: a failed connect must still disconnect, or ioredis retries forever.
    await r.connect();
    const info = String(await r.info('keyspace'));
    const dbs = [...info.matchAll(/^db(\d+):/gm)].map((m) => Number(m[1]));
    let dropped = 0;
    for (const db of dbs) {
      await r.select(db);
      if (filter.db !== undefined && db !== filter.db) {
        dropped += Number(await r.dbsize());
        await r.flushdb();
        continue;
      }
      if (patterns.length === 0) continue;
      const keep = new Set<string>();
      for (const p of patterns) for (const k of await scanAll(r, p)) keep.add(k.toString('hex'));
      for (const k of await scanAll(r, '*')) {
        if (keep.has(k.toString('hex'))) continue;
        await r.unlink(k);
        dropped++;
      }
    }
    return dropped;
  } finally {
    r.disconnect();
  }
}

async function scanAll(r: Redis, pattern: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, keys] = (await r.callBuffer('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)) as [Buffer, Buffer[]];
    cursor = next.toString('latin1');
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}
