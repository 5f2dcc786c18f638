import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { testRedis } from './servers.js';

/** RDBs of a real redis-server after each step of writes: the datasets fake baselines hold (retention tests). */
export async function rdbsAfter(steps: [string, string][][]): Promise<Buffer[]> {
  const redis = await testRedis();
  const r = new Redis(redis.url);
  try {
    const out: Buffer[] = [];
    for (const step of steps) {
      for (const [k, v] of step) await r.set(k, v);
      await r.save();
      const [, dir] = (await r.config('GET', 'dir')) as [string, string];
      const [, file] = (await r.config('GET', 'dbfilename')) as [string, string];
      out.push(await readFile(path.join(dir, file)));
    }
    return out;
  } finally {
    r.disconnect();
    await redis.stop();
  }
}
