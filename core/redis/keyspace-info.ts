/** db → key count, from the text of INFO keyspace (`db3:keys=5,expires=1,avg_ttl=0`). */
export function keyspaceCounts(info: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of info.matchAll(/^db(\d+):keys=(\d+)/gm)) out.set(Number(m[1]), Number(m[2]));
  return out;
}

/** Keys over every db, from the text of INFO keyspace. */
export function keysInInfo(info: string): number {
  let n = 0;
  for (const v of keyspaceCounts(info).values()) n += v;
  return n;
}

/**
 * Keys holding hash fields with a TTL over every db (`subexpiry=` of INFO keyspace, Redis 7.4+); undefined when the
 * server does not report it (older lines have no field TTLs).
 */
export function fieldTtlKeysInInfo(info: string): number | undefined {
  let n: number | undefined;
  for (const m of info.matchAll(/^db\d+:.*\bsubexpiry=(\d+)/gm)) n = (n ?? 0) + Number(m[1]);
  return n;
}
