// Issue 15: a MONITOR-mode agent changes notify-keyspace-events and the pubsub output-buffer limit of its source; a
// graceful stop puts both back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { startStack, startSource } from './helpers/stack.js';

test('a graceful stop puts back the source settings the agent changed', async () => {
  const stack = await startStack();
  try {
    const src = await startSource(stack, [], { source: 'monitor' });
    const r = new Redis(src.redis.url);
    try {
      const notify = async () => (await r.config('GET', 'notify-keyspace-events'))[1];
      const pubsub = async () =>
        /pubsub \d+ \d+ \d+/.exec(String((await r.config('GET', 'client-output-buffer-limit'))[1]))?.[0];
      assert.match(await notify(), /x/, 'the agent turned expiry notifications on');
      assert.notEqual(await pubsub(), 'pubsub 33554432 8388608 60', 'the agent raised the pubsub hard limit');
      await src.agent.close();
      assert.equal(await notify(), '', 'notify-keyspace-events is back to the default');
      assert.equal(await pubsub(), 'pubsub 33554432 8388608 60', 'the pubsub limit is back to the default');
    } finally {
      r.disconnect();
      await src.close();
    }
  } finally {
    await stack.close();
  }
});
