// The time anchors go from a thread of their own (agent/replication/anchors.ts, anchor-worker.ts): its connection
// killed, it reconnects and writes made meanwhile are anchored and stored; its script refused (rights revoked), the
// agent drops its link and logs why, and once the rights are back capture goes on in the same epoch with no hole; the
// thread itself ended, a new one takes over.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { startAgent } from '../agent/index.js';
import { createLogger } from '../core/log.js';
import { sqlString } from '../core/store/sql-literal.js';
import { testRedis } from './helpers/servers.js';
import { startStack, syncedSource, waitFor, type Stack } from './helpers/stack.js';
import { Writable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { AnchorDriver } from '../agent/replication/anchors.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';

let stack: Stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

const RIGHTS =
  '+psync +replconf +evalsha +eval +time +publish +multi +exec +info +command +client|setname +client|list +client|info +config|get +config|set +ping +echo';

/** Seqs stored for a node's epoch, in order. */
async function storedSeqs(node: string): Promise<{ epochs: number; seqs: number[] }> {
  const rows = await stack.store.query<{ e: string; s: string }>(
    `SELECT toString(epoch) AS e, toString(seq) AS s FROM flashback.events WHERE node = ${sqlString(node)} ORDER BY epoch, seq`,
  );
  return { epochs: new Set(rows.map((r) => r.e)).size, seqs: rows.map((r) => Number(r.s)) };
}

test('the anchor thread: a killed anchor connection comes back, a refused script drops the link and capture resumes when the rights return; one epoch, no hole', async () => {
  const redis = await testRedis(['--repl-diskless-sync-delay', '0']);
  const admin = new Redis(redis.url);
  const lines: string[] = [];
  const logger = createLogger('agent', {
    env: {},
    stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    }),
  });
  try {
    await admin.call(
      'ACL',
      'SETUSER',
      'fb',
      'on',
      '>secret',
      ...RIGHTS.split(' '),
      'resetchannels',
      '&__flashback__:*',
    );
    const node = `anchor-thread-${Date.now()}`;
    const url = redis.url.replace('redis://', 'redis://fb:secret@');
    const agent = await startAgent({
      redisUrl: url,
      nodeId: node,
      natsUrl: stack.nats.url,
      source: 'replication',
      logger,
    });
    const src = { node, redis, agent, close: async () => {} };
    try {
      await admin.set('before', '1');
      await syncedSource(stack, src, redis.url);
      const sentBefore = agent.stats().anchorsSent ?? 0;
      assert.ok(sentBefore > 0);

      // 1. The anchor connection is killed: the thread opens a new one; writes made meanwhile are stored.
      const anchorClient = /id=(\d+) [^\n]* name=flashback-anchor /.exec(String(await admin.call('CLIENT', 'LIST')));
      assert.ok(anchorClient, 'the anchor connection is in CLIENT LIST');
      assert.equal(await admin.call('CLIENT', 'KILL', 'ID', anchorClient[1]!), 1);
      await admin.set('after-kill', '1');
      await syncedSource(stack, src, redis.url);
      await waitFor('the anchor connection is back', async () => {
        const list = String(await admin.call('CLIENT', 'LIST'));
        const id = /id=(\d+) [^\n]* name=flashback-anchor /.exec(list)?.[1];
        return id !== undefined && id !== anchorClient[1] ? true : undefined;
      });

      // 2. The anchor script refused: the link drops with the reason logged; writes wait, then are stored once
      // the rights are back, in the same epoch.
      await admin.call('ACL', 'SETUSER', 'fb', '-evalsha', '-eval');
      await admin.set('while-refused', '1');
      await waitFor('the refused anchor logged', async () =>
        lines.some((l) => l.includes('time anchor failed') && l.includes('NOPERM')) ? true : undefined,
      );
      await admin.call('ACL', 'SETUSER', 'fb', '+evalsha', '+eval');
      await admin.set('rights-back', '1');
      await syncedSource(stack, src, redis.url);

      const keys = await stack.store.query<{ k: string }>(
        `SELECT DISTINCT arrayJoin(keys) AS k FROM flashback.events WHERE node = ${sqlString(node)} AND command = 'SET'`,
      );
      const stored = new Set(keys.map((r) => r.k));
      for (const k of ['before', 'after-kill', 'while-refused', 'rights-back']) assert.ok(stored.has(k), `${k} stored`);
      const { epochs, seqs } = await storedSeqs(node);
      assert.equal(epochs, 1, 'one epoch');
      seqs.forEach((s, i) => assert.equal(s, i + 1, `seq ${i + 1} is there (no hole, no duplicate)`));
      assert.ok(!lines.some((l) => l.includes('secret')), 'no password in the logs');
    } finally {
      await agent.close();
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
});

test('the anchor thread: one that ends (a crash) is replaced within seconds, says so, and anchors go on', async () => {
  const redis = await testRedis();
  const failures: string[] = [];
  const connected: string[] = [];
  const driver = await AnchorDriver.open({
    target: parseRedisUrl(redis.url),
    idleIntervalMs: 20,
    onConnected: (addr) => connected.push(addr),
    onFailure: (err) => failures.push(err.message),
  });
  try {
    driver.start();
    await waitFor('idle anchors from the first thread', async () => (driver.sent > 2 ? true : undefined));
    // The thread ends as a crash would end it (no test hook in the driver: its worker is private).
    await (driver as unknown as { worker: Worker }).worker.terminate();
    await waitFor('the thread ending reported', async () =>
      failures.some((f) => /time anchor thread ended/.test(f)) ? true : undefined,
    );
    const before = driver.sent;
    await waitFor('a second thread connected', async () => (connected.length >= 2 ? true : undefined));
    await waitFor('anchors from the new thread', async () => (driver.sent > before + 2 ? true : undefined));
    assert.equal(failures.length, 1, `one failure reported: ${failures.join('; ')}`);
  } finally {
    driver.close();
    await redis.stop();
  }
});
