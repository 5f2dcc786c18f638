import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { ApiClient } from '../../cli/api-client.js';
import type { RestoreJobStatus } from '../../core/bus/restore-jobs.js';
import { waitFor } from './stack.js';

/**
 * The seed article's demo through the API of a running `flashback up`: 20 HSETs on `userprofile` once capture has a
 * window, then a restore (spawned) to the server time of the 10th, as stored. Returns the finished job, whose restored
 * instance should hold fields foo0 … foo9.
 */
export async function restoreSeedDemo(api: ApiClient, sourceUrl: string, node: string): Promise<RestoreJobStatus> {
  const r = new Redis(sourceUrl);
  try {
    await waitFor('a first window', async () => ((await api.windows(node)).length > 0 ? true : undefined), 30_000);
    for (let i = 0; i < 20; i++) await r.hset('userprofile', `foo${i}`, i % 3);
  } finally {
    r.disconnect();
  }
  // The cutoff is the server time of the 10th HSET, as stored (newest first).
  const events = await waitFor(
    'the 20 HSETs in the history',
    async () => {
      const h = await api.history({ node, key: 'userprofile', limit: 100 });
      return h.length >= 20 ? h : undefined;
    },
    30_000,
  );
  const cutUs = [...events].reverse()[9]!.tsUs;
  await waitFor(
    'a window covering the cutoff',
    async () => ((await api.windows(node)).some((w) => w.fromTsUs <= cutUs && cutUs <= w.toTsUs) ? true : undefined),
    30_000,
  );
  const job = await api.createRestore({ node, to: String(cutUs), spawn: {} });
  const done = await api.waitForRestore(job.id);
  assert.equal(done.state, 'done');
  return done;
}
