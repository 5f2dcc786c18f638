// Issue 15: the minimal Redis ACL of docs/security.md is enough for an agent in each capture mode.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { startAgent } from '../agent/index.js';
import { silentLogger } from '../core/log.js';
import { sqlString } from '../core/store/sql-literal.js';
import { testRedis } from './helpers/servers.js';
import { SOURCE_ARGS, startStack, waitFor } from './helpers/stack.js';

/** The ACL rules of docs/security.md, per capture mode (keep both in step). */
export const AGENT_ACL = {
  replication:
    '-@all +psync +replconf +ping +info +role +time +echo +publish +eval +evalsha +script|load +script|exists +client|setname +client|list +client|info +client|id +client|kill +config|get +config|set +command +command|docs +command|info +command|count +multi +exec +select +dbsize +debug|digest +monitor &__flashback__:*',
  monitor:
    '-@all +monitor +psubscribe +punsubscribe +ping +info +role +time +echo +publish +eval +evalsha +script|load +script|exists +client|setname +client|list +client|info +client|id +config|get +config|set +command +command|docs +command|info +command|count +multi +exec +select +dbsize +debug|digest +dump +pttl +pexpiretime +type +exists +psync +replconf ~* &__flashback__:* &__keyevent@*__:expired &__keyevent@*__:evicted',
} as const;

for (const mode of ['replication', 'monitor'] as const) {
  test(`an agent captures under the minimal ACL of ${mode} mode`, async () => {
    const stack = await startStack();
    const redis = await testRedis(SOURCE_ARGS);
    const admin = new Redis(redis.url);
    try {
      await admin.call('ACL', 'SETUSER', 'flashback', 'on', '>agent-pw', ...AGENT_ACL[mode].split(' '));
      const node = `acl-${mode}`;
      const agent = await startAgent({
        redisUrl: `redis://flashback:agent-pw@127.0.0.1:${redis.port}`,
        nodeId: node,
        natsUrl: stack.nats.url,
        source: mode,
        attribution: mode === 'replication' ? 'monitor' : undefined,
        baselineDigest: 'always',
        logger: silentLogger,
      }).catch(async (err: unknown) => {
        throw new Error(`${String(err)}; ACL LOG: ${JSON.stringify(await admin.call('ACL', 'LOG'))}`);
      });
      try {
        await admin.set('k', 'v');
        await admin.set('t', 'v', 'PX', 50);
        await waitFor(
          `the SET of ${node} in ClickHouse`,
          async () =>
            (
              await stack.store.query(
                `SELECT seq FROM flashback.events WHERE node = ${sqlString(node)} AND command = 'SET' LIMIT 1`,
              )
            )[0],
          30_000,
        ).catch(async (err: unknown) => {
          throw new Error(`${String(err)}; ACL LOG: ${JSON.stringify(await admin.call('ACL', 'LOG'))}`);
        });
        await waitFor(
          `a baseline of ${node}`,
          async () =>
            (await stack.store.query(`SELECT seq FROM flashback.baselines WHERE node = ${sqlString(node)} LIMIT 1`))[0],
          30_000,
        );
        const denied = (await admin.call('ACL', 'LOG')) as unknown[];
        assert.deepEqual(denied, [], `nothing the agent asked was refused: ${JSON.stringify(denied)}`);
      } finally {
        await agent.close();
      }
    } finally {
      admin.disconnect();
      await redis.stop();
      await stack.close();
    }
  });
}
