// Replication-mode capture (`--source replication`): the agent is a replica of its node; events are the stream's
// entries timed by anchors; restores by seq and by time are exact, and what the stream normalizes (SPOP, XADD *,
// relative expiries, scripts with TIME, blocked pops) needs no probe.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { ANCHOR_COMMAND, REPLICATION_CLIENT } from '../core/bus/event.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../restorer/index.js';
import { startAgent, startAnchorKeeper, type Agent } from '../agent/index.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { testRedis } from './helpers/servers.js';
import {
  serverTimeUs,
  startSource,
  startStack,
  syncedSource,
  waitFor,
  waitForWindow,
  type Stack,
} from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawned: number[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'replication-capture-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-repl-'));
});
after(async () => {
  for (const pid of spawned) await stopPid(pid).catch(() => undefined);
  await nc?.close();
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

async function restoredDigest(req: RestoreRequest): Promise<{ digest: string; warnings: string[] }> {
  const report = await restore(
    { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
    { ...req, spawn: {} },
  );
  if (report.pid) spawned.push(report.pid);
  const r = new Redis(report.url!);
  try {
    return { digest: String(await r.call('DEBUG', 'DIGEST')), warnings: report.warnings };
  } finally {
    r.disconnect();
    if (report.pid) await stopPid(report.pid);
  }
}

test('replication mode: the stream is the history; restores by seq and by time equal the source', async () => {
  const src = await startSource(stack, [], { source: 'replication' });
  const r = new Redis(src.redis.url);
  try {
    await r.set('a', '1');
    await r.sadd('s', 'x', 'y', 'z');
    await r.spop('s');
    await r.xadd('x', '*', 'f', 'v');
    await r.set('ttl', 'v', 'EX', 1000);
    await r.select(2);
    await r.eval("redis.call('SET', 'now', redis.call('TIME')[1]) return 1", 0);
    await r.select(0);
    const seq = await syncedSource(stack, src);
    const digest = String(await r.call('DEBUG', 'DIGEST'));
    const atUs = await serverTimeUs(r);
    const rows = await stack.store.query<{ client: string; command: string; n: number }>(
      `SELECT client, command, count() AS n FROM flashback.events WHERE node = ${sqlString(src.node)} GROUP BY client, command ORDER BY client, command`,
    );
    const commands = rows.filter((x) => x.client === REPLICATION_CLIENT).map((x) => x.command);
    // The stream's effects, not the commands issued: SPOP as SREM, SET … EX as SET … PXAT, the script's write.
    assert.ok(commands.includes('SREM'), `SPOP replicated as SREM: ${commands.join(' ')}`);
    assert.ok(!commands.includes('SPOP'));
    assert.ok(!commands.includes('EVAL'));
    assert.ok(rows.some((x) => x.command === ANCHOR_COMMAND));
    await r.set('after', 'x');
    await syncedSource(stack, src);
    await waitForWindow(stack, src.node, atUs);
    const bySeq = await restoredDigest({ node: src.node, toSeq: seq });
    assert.equal(bySeq.digest, digest);
    const byTime = await restoredDigest({ node: src.node, to: atUs });
    assert.equal(byTime.digest, digest, `by time: ${byTime.warnings.join('; ')}`);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('replication mode runs with exactly the ACL rights docs/capture-modes.md lists', async () => {
  const redis = await testRedis(['--repl-diskless-sync-delay', '0']);
  const admin = new Redis(redis.url);
  try {
    await admin.call(
      'ACL',
      'SETUSER',
      'flashback',
      'on',
      '>secret',
      ...'+psync +replconf +evalsha +eval +time +publish +multi +exec +info +command +client|setname +client|list +client|info +config|get +config|set +ping +echo'.split(
        ' ',
      ),
      'resetchannels',
      '&__flashback__:anchor',
      '&__flashback__:marker',
    );
    const node = `acl-${Date.now()}`;
    const url = redis.url.replace('redis://', 'redis://flashback:secret@');
    const agent = await startAgent({ redisUrl: url, nodeId: node, natsUrl: stack.nats.url, source: 'replication' });
    try {
      await admin.set('k', 'v');
      const seq = await syncedSource(stack, { node, redis, agent, close: async () => {} }, redis.url);
      assert.ok(seq > 1);
      assert.equal(agent.stats().source, 'replication');
    } finally {
      await agent.close();
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
});

test('replication mode: a dropped link continues the same epoch (PSYNC), no hole; WAIT counts the agent once the write is kept', async () => {
  const src = await startSource(stack, [], { source: 'replication' });
  const r = new Redis(src.redis.url);
  try {
    await r.set('before', '1');
    const first = await syncedSource(stack, src);
    const epoch = src.agent.stats().epoch;
    // WAIT returns once a replica acknowledged the write's offset: the agent acknowledges only what JetStream holds.
    await r.set('waited', '1');
    assert.equal(await r.call('WAIT', '1', '20000'), 1);
    const rows = await stack.store.query<{ n: number }>(
      `SELECT count() AS n FROM flashback.events WHERE node = ${sqlString(src.node)} AND key = 'waited'`,
    );
    // Acknowledged by JetStream is not yet in ClickHouse: the sink may still be on its way; JetStream has it.
    assert.ok(Number(rows[0]?.n ?? 0) <= 1);
    const killed = await r.call('CLIENT', 'KILL', 'TYPE', 'replica');
    assert.ok(Number(killed) >= 1);
    await r.set('after', '2');
    await r.incr('n');
    const last = await syncedSource(stack, src);
    assert.ok(last > first);
    assert.equal(src.agent.stats().epoch, epoch, 'the same epoch after the link dropped');
    const seqs = await stack.store.query<{ n: number; top: number; epochs: number }>(
      `SELECT uniqExact(seq) AS n, max(seq) AS top, uniqExact(epoch) AS epochs FROM flashback.events WHERE node = ${sqlString(src.node)}`,
    );
    assert.equal(Number(seqs[0]!.epochs), 1);
    assert.equal(Number(seqs[0]!.n), Number(seqs[0]!.top), 'gapless');
    const digest = String(await r.call('DEBUG', 'DIGEST'));
    assert.equal((await restoredDigest({ node: src.node, toSeq: last })).digest, digest);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('anchor keeper: while the agent is away its writes are anchored, so time restores inside the outage are exact after the agent resumes', async () => {
  const src = await startSource(stack, [], { source: 'replication' });
  const keeper = await startAnchorKeeper({ target: parseRedisUrl(src.redis.url) });
  const r = new Redis(src.redis.url);
  let agent: Agent | undefined;
  try {
    await r.set('before', '1');
    await syncedSource(stack, src);
    const epoch = src.agent.stats().epoch;
    await src.agent.close();
    await waitFor('the keeper to see the agent gone', async () => (keeper.agentLinked ? undefined : true));
    const instants: { tsUs: number; digest: string }[] = [];
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 50; j++) await r.incr(`n${j % 5}`);
      await r.sadd('s', `a${i}`, `b${i}`, `c${i}`);
      await r.spop('s');
      const last = Date.now();
      while (Date.now() < last + 15) await new Promise((res) => setTimeout(res, 1));
      instants.push({ tsUs: await serverTimeUs(r), digest: String(await r.call('DEBUG', 'DIGEST')) });
    }
    // Idle: the keeper looks at the stream but writes nothing while nothing moves.
    const anchors = keeper.anchors;
    const checks = keeper.checks;
    await waitFor('50 idle checks of the keeper', async () => (keeper.checks >= checks + 50 ? true : undefined));
    assert.ok(keeper.anchors <= anchors + 1, `idle keeper anchored ${keeper.anchors - anchors} times`);
    agent = await startAgent({
      redisUrl: src.redis.url,
      nodeId: src.node,
      natsUrl: stack.nats.url,
      source: 'replication',
    });
    assert.equal(agent.stats().epoch, epoch, 'the restarted agent continues the epoch');
    await syncedSource(stack, { ...src, agent });
    for (const p of instants) {
      const got = await restoredDigest({ node: src.node, to: p.tsUs });
      assert.equal(got.digest, p.digest, `instant ${p.tsUs} inside the outage: ${got.warnings.join('; ')}`);
    }
  } finally {
    r.disconnect();
    await keeper.close();
    await agent?.close();
    await src.redis.stop();
  }
});

test('replication mode with attribution: each event has its client, µs time and argv as issued; a restore to one command’s time holds just the commands before it', async () => {
  const src = await startSource(stack, [], { source: 'replication', attribution: 'monitor' });
  const r = new Redis(src.redis.url);
  try {
    const me = String(await r.call('CLIENT', 'INFO')).match(/addr=(\S+)/)![1]!;
    await r.set('ttl', 'v', 'EX', 1000);
    for (let i = 0; i < 20; i++) await r.hset('userprofile', `foo${i}`, i % 3);
    await r.sadd('s', 'a', 'b', 'c');
    await r.spop('s');
    await syncedSource(stack, src);
    const rows = await stack.store.query<{
      seq: number;
      ts_us: number;
      client: string;
      command: string;
      args: string[];
      replay: string[];
    }>(
      `SELECT seq, ts_us, client, command, args, replay FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind = 'command' AND key IN ('ttl', 'userprofile', 's') ORDER BY seq`,
    );
    const set = rows.find((x) => x.command === 'SET')!;
    assert.equal(set.client, me);
    // args as issued (EX), replay from the stream (PXAT)
    assert.ok(set.args.includes('EX'), JSON.stringify(set.args));
    const spop = rows.find((x) => x.command === 'SPOP');
    assert.ok(spop, `the stream's SREM is attributed to the SPOP: ${rows.map((x) => x.command).join(' ')}`);
    const hsets = rows.filter((x) => x.command === 'HSET');
    assert.equal(hsets.length, 20);
    assert.ok(hsets.every((x) => x.client === me));
    // Every HSET has its own time (MONITOR's µs), in order.
    const times = hsets.map((x) => Number(x.ts_us));
    assert.equal(new Set(times).size, 20, `distinct times: ${times.join(' ')}`);
    const report = await restore(
      { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
      { node: src.node, to: times[9]!, spawn: {} },
    );
    if (report.pid) spawned.push(report.pid);
    const restored = new Redis(report.url!);
    try {
      assert.deepEqual(
        (await restored.hkeys('userprofile')).sort(),
        Array.from({ length: 10 }, (_, i) => `foo${i}`).sort(),
      );
    } finally {
      restored.disconnect();
      if (report.pid) await stopPid(report.pid);
    }
    assert.ok((src.agent.stats().attributed ?? 0) >= 22);
  } finally {
    r.disconnect();
    await src.close();
  }
});
