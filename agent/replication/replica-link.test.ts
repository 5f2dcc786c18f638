import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { parseRedisUrl } from '../../core/redis/redis-url.js';
import type { ServerProcess } from '../../core/servers/server-process.js';
import { testRedis } from '../../test/helpers/servers.js';
import { ReplicaLink } from './replica-link.js';

let redis: ServerProcess;
before(async () => {
  redis = await testRedis(['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0']);
});
after(() => redis.stop());

/** One full resync with the steady ACK once a minute: the first stream entry, or an error after `deadlineMs`. */
async function firstEntryAfterResync(r: Redis, deadlineMs: number): Promise<{ first: string; framing: string }> {
  let timer: NodeJS.Timeout | undefined;
  let link: ReplicaLink | undefined;
  try {
    return await new Promise((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no stream entry within ${deadlineMs} ms of the full resync`)),
        deadlineMs,
      );
      link = ReplicaLink.open({
        target: parseRedisUrl(redis.url),
        ackIntervalMs: 60_000,
        handlers: {
          onFullResync: () => void r.incr('written-during-the-resync'),
          writeRdb: async (rdb) => {
            for await (const _ of rdb);
          },
          onCommand: (argv) => resolve({ first: argv.map((a) => a.toString()).join(' '), framing: link!.rdbFraming }),
          ackOffset: () => 0,
          onClose: reject,
        },
      });
    });
  } finally {
    clearTimeout(timer);
    link?.close();
  }
}

// A diskless master starts the command stream only on an ACK taken after it reaped its fork (serverCron): the ACK sent
// right after the RDB is often too early (about one resync in three here). With the steady ACK once a minute, only the
// link's quick repeats start the stream before the deadline, resync after resync.
test('after a diskless full resync the command stream starts without waiting for the steady ACK interval', async () => {
  const r = new Redis(redis.url);
  try {
    for (let i = 0; i < 8; i++) {
      const got = await firstEntryAfterResync(r, 15_000);
      assert.equal(got.framing, 'diskless');
      // The stream's first bytes select the db of the write buffered meanwhile.
      assert.equal(got.first, 'SELECT 0', `resync ${i + 1}`);
    }
  } finally {
    r.disconnect();
  }
});
