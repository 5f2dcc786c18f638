import { Redis } from 'ioredis';

/** One key whose value or expiry differs between two instances. */
export interface KeyDifference {
  db: number;
  key: Buffer;
  why: 'missing from the replay' | 'only in the replay' | 'value differs' | 'expiry differs';
}

/** What {@link diffInstances} found. */
export interface InstanceDiff {
  /** Differences not explained by a passed TTL, by db then key bytes; at most `limit`. */
  differing: KeyDifference[];
  /** Differences not explained by a passed TTL, all of them (beyond `limit` too). */
  differingCount: number;
  /**
   * Keys that differ only because their TTL has passed on the instance holding them: a loaded server expires them by
   * its own clock at any moment, so what it still holds says nothing about the replay.
   */
  excused: number;
  /** Keys looked at (the union of both instances). */
  compared: number;
}

const BATCH = 500;

/**
 * Compares every key of `replayUrl` with `referenceUrl`, db by db: presence, `DEBUG DIGEST-VALUE` (the value's
 * logical digest, whatever its encoding) and `PEXPIRETIME`. Both servers must allow DEBUG from loopback (restore
 * servers run with `--enable-debug-command local`). Meant for the datasets whose baselines record a digest (at most
 * 100 000 keys by default): it reads every key name.
 */
export async function diffInstances(replayUrl: string, referenceUrl: string, limit = 100): Promise<InstanceDiff> {
  const open = (url: string) =>
    new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectTimeout: 5_000 });
  const a = open(replayUrl);
  const b = open(referenceUrl);
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  try {
    await Promise.all([a.connect(), b.connect()]);
    const dbs = [...new Set([...(await keyspaceDbs(a)), ...(await keyspaceDbs(b))])].sort((x, y) => x - y);
    const out: InstanceDiff = { differing: [], differingCount: 0, excused: 0, compared: 0 };
    for (const db of dbs) {
      await Promise.all([a.select(db), b.select(db)]);
      const keys = new Map<string, Buffer>();
      for (const k of [...(await allKeys(a)), ...(await allKeys(b))]) keys.set(k.toString('latin1'), k);
      const sorted = [...keys.values()].sort(Buffer.compare);
      out.compared += sorted.length;
      for (let i = 0; i < sorted.length; i += BATCH) {
        const batch = sorted.slice(i, i + BATCH);
        const [fa, fb] = await Promise.all([facts(a, batch), facts(b, batch)]);
        const nowMs = Math.max(await serverMs(a), await serverMs(b));
        batch.forEach((key, j) => {
          const [x, y] = [fa[j]!, fb[j]!];
          const why =
            x.expireAt === -2 && y.expireAt === -2
              ? undefined
              : x.expireAt === -2
                ? 'missing from the replay'
                : y.expireAt === -2
                  ? 'only in the replay'
                  : x.digest !== y.digest
                    ? 'value differs'
                    : x.expireAt !== y.expireAt
                      ? 'expiry differs'
                      : undefined;
          if (why === undefined) return;
          const passed = (t: number) => t > 0 && t <= nowMs;
          if (passed(x.expireAt) || passed(y.expireAt)) {
            out.excused++;
            return;
          }
          out.differingCount++;
          if (out.differing.length < limit) out.differing.push({ db, key, why });
        });
      }
    }
    return out;
  } finally {
    a.disconnect();
    b.disconnect();
  }
}

/** The dbs INFO keyspace lists (those holding keys). */
async function keyspaceDbs(r: Redis): Promise<number[]> {
  const info = await r.info('keyspace');
  return [...info.matchAll(/^db(\d+):/gm)].map((m) => Number(m[1]));
}

async function allKeys(r: Redis): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scanBuffer(cursor, 'COUNT', 1000);
    cursor = next.toString();
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

/** Per key: its value digest and absolute expiry in ms (-1 none, -2 missing). */
async function facts(r: Redis, keys: Buffer[]): Promise<{ digest: string; expireAt: number }[]> {
  const p = r.pipeline();
  for (const k of keys) {
    p.call('DEBUG', 'DIGEST-VALUE', k);
    p.call('PEXPIRETIME', k);
  }
  const replies = (await p.exec()) ?? [];
  const out: { digest: string; expireAt: number }[] = [];
  for (let i = 0; i < keys.length; i++) {
    const [e1, d] = replies[2 * i] ?? [new Error('no reply')];
    const [e2, t] = replies[2 * i + 1] ?? [new Error('no reply')];
    if (e1) throw e1;
    if (e2) throw e2;
    out.push({ digest: String((d as unknown[])[0]), expireAt: Number(t) });
  }
  return out;
}

async function serverMs(r: Redis): Promise<number> {
  const [s, us] = await r.time();
  return Number(s) * 1_000 + Math.floor(Number(us) / 1_000);
}
