// Redis Cluster topologies: several nodes restored at one instant into one standalone instance or a Redis Cluster
// (library, CLI, API + restorer), a standalone source into a Cluster, capture of a real Cluster's masters, and agents
// following their shard through a failover.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis, type Cluster } from 'ioredis';
import { startAgent, type Agent } from '../agent/index.js';
import { captureReplicationBaseline } from '../agent/replication/replication-client.js';
import { MARKER_CHANNEL } from '../core/bus/baseline.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { buildApp, natsJobClient } from '../api/index.js';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { getJob } from '../core/bus/restore-jobs.js';
import { seededRandom } from './helpers/seeded-random.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { createLogger, silentLogger } from '../core/log.js';
import { restoreWindows } from '../core/store/windows.js';
import {
  clickHouseEventStore,
  clusterRestore,
  keySlot,
  restore,
  startRestorer,
  type ClusterRestoreRequest,
  type RestoreRequest,
} from '../restorer/index.js';
import { startTestCluster, withRedis, type TestCluster } from './helpers/cluster.js';
import { testRedis } from './helpers/servers.js';
import { cli } from './helpers/cli.js';
import {
  markStoredEvent,
  SOURCE_ARGS,
  startSource,
  startStack,
  waitFor,
  waitForWindow,
  waitForWindowSeq,
  type MarkerClient,
  type Stack,
} from './helpers/stack.js';

const DEBUG_ARGS = ['--enable-debug-command', 'yes'];

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
/** The Cluster restores go into (3 masters + 3 replicas). */
let target: TestCluster;
const spawned: number[] = [];

before(async () => {
  [stack, target] = await Promise.all([startStack(), startTestCluster(DEBUG_ARGS)]);
  nc = await connectNats({ url: stack.nats.url, name: 'cluster-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-cluster-instances-'));
});

after(async () => {
  for (const pid of spawned) await stopPid(pid);
  await target?.close();
  await nc?.close();
  await stack?.close();
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

const deps = () => ({ events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir });

async function restoreNodes(req: ClusterRestoreRequest) {
  const report = await clusterRestore(deps(), req);
  if (report.pid !== undefined) spawned.push(report.pid);
  return report;
}

async function restoreNode(req: RestoreRequest) {
  const report = await restore(deps(), req);
  if (report.pid !== undefined) spawned.push(report.pid);
  return report;
}

type Source = Awaited<ReturnType<typeof startSource>>;

/**
 * Waits until everything written to the node's server before the call is stored and restorable: a marker written there
 * (a DEL of a missing key, on a slot the server serves) is stored with every seq before it, in a window; returns the
 * marker's epoch and seq.
 */
async function synced(node: string, redis: MarkerClient): Promise<{ epoch: number; seq: number }> {
  const m = await markStoredEvent(stack, node, redis);
  await waitForWindowSeq(stack, node, m.epoch, m.seq);
  return m;
}

type Arg = string | Buffer | number;

/**
 * A deterministic mixed workload: strings, binary keys and values, hashes, lists, sets, sorted sets, streams with
 * explicit ids, counters, long TTLs, deletes, and MULTI/EXEC and EVAL over hash-tagged keys (one slot each).
 * Every command is `[name, key, …]`, so `send` can route it by the key's slot; a transaction is a list of them.
 */
async function workload(
  send: (cmds: [string, Buffer, ...Arg[]][], tx: boolean) => Promise<void>,
  n: number,
  seed: number,
): Promise<void> {
  const rnd = seededRandom(seed);
  const int = (m: number) => Math.floor(rnd() * m);
  const key = (prefix: string) => {
    const i = int(40);
    // Some keys are binary, with bytes that are no UTF-8.
    return i % 9 === 0
      ? Buffer.concat([Buffer.from(`${prefix}:`), Buffer.from([0, 0xff, i, 0x80])])
      : Buffer.from(`${prefix}:${i}`);
  };
  for (let i = 0; i < n; i++) {
    switch (int(12)) {
      case 0:
        await send([['SET', key('s'), `v${int(1000)}`]], false);
        break;
      case 1:
        await send([['HSET', key('h'), `f${int(20)}`, Buffer.from([int(256), 0, 255])]], false);
        break;
      case 2:
        await send([['RPUSH', key('l'), `e${int(100)}`]], false);
        break;
      case 3:
        await send([['LPOP', key('l')]], false);
        break;
      case 4:
        await send([['SADD', key('set'), `m${int(30)}`]], false);
        break;
      case 5:
        await send([['ZADD', key('z'), int(100), `m${int(30)}`]], false);
        break;
      case 6:
        await send([['XADD', key('x'), `${seed}-${i + 1}`, 'f', `${int(9)}`]], false);
        break;
      case 7:
        await send([['INCRBY', key('c'), int(10)]], false);
        break;
      case 8: {
        const tag = `{t${int(10)}}`;
        await send(
          [
            ['INCR', Buffer.from(`${tag}c`)],
            ['HSET', Buffer.from(`${tag}h`), 'm', `${i}`],
          ],
          true,
        );
        break;
      }
      case 9:
        await send([['EVAL', Buffer.from(`{e${int(10)}}`), `${i}`]], false);
        break;
      case 10:
        await send([['SET', key('t'), 'ttl', 'EX', 3600 + int(100)]], false);
        break;
      case 11:
        await send([['DEL', key('s')]], false);
        break;
    }
  }
}

/** argv of one workload command (EVAL is written with its key as the one we route by). */
function argvOf([name, k, ...rest]: [string, Buffer, ...Arg[]]): [string, ...Arg[]] {
  if (name === 'EVAL')
    return ['EVAL', "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('APPEND', KEYS[1], 'x')", 1, k, ...rest];
  return [name, k, ...rest];
}

/** Runs workload commands on a connection: a standalone one, or a Cluster client (which routes by key). */
async function sendTo(r: Redis | Cluster, cmds: [string, Buffer, ...Arg[]][], tx: boolean): Promise<void> {
  if (!tx) {
    const [name, ...args] = argvOf(cmds[0]!);
    await r.callBuffer(name, ...args);
    return;
  }
  const m = r.multi();
  for (const c of cmds) {
    const [name, ...args] = argvOf(c);
    m.callBuffer(name, ...args);
  }
  await m.exec();
}

/** The slot → index of `target.masters` table of a cluster. */
async function slotOwners(c: TestCluster): Promise<Int8Array> {
  const owner = new Int8Array(16_384).fill(-1);
  const ranges = (await withRedis(c.masters[0]!.url, (r) => r.call('CLUSTER', 'SLOTS'))) as [
    number,
    number,
    [string, number],
  ][];
  for (const [from, to, [, port]] of ranges) {
    const i = c.masters.findIndex((m) => m.server.port === Number(port));
    for (let s = from; s <= to; s++) owner[s] = i;
  }
  return owner;
}

/**
 * Every key of db 0 on these servers: hex of the key → value digest (DEBUG DIGEST-VALUE, encoding-blind) and
 * PEXPIRETIME.
 */
async function keyState(urls: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const url of urls) {
    await withRedis(url, async (r) => {
      let cursor = '0';
      do {
        const [next, keys] = (await r.callBuffer('SCAN', cursor, 'COUNT', 1000)) as [Buffer, Buffer[]];
        cursor = next.toString();
        for (const k of keys) {
          const [d] = (await r.call('DEBUG', 'DIGEST-VALUE', k)) as string[];
          const exp = await r.call('PEXPIRETIME', k);
          assert.equal(out.has(k.toString('hex')), false, `key ${k.toString('hex')} on two servers`);
          out.set(k.toString('hex'), `${d} ${exp}`);
        }
      } while (cursor !== '0');
    });
  }
  return out;
}

/**
 * DEBUG DIGEST of a standalone server holding the union of these servers' db 0, copied key by key (DUMP, PEXPIRETIME →
 * RESTORE … ABSTTL).
 */
async function unionDigest(urls: string[]): Promise<string> {
  await using oracle = await testRedis(DEBUG_ARGS);
  await withRedis(oracle.url, async (to) => {
    for (const url of urls) {
      await withRedis(url, async (from) => {
        let cursor = '0';
        do {
          const [next, keys] = (await from.callBuffer('SCAN', cursor, 'COUNT', 1000)) as [Buffer, Buffer[]];
          cursor = next.toString();
          for (const k of keys) {
            const payload = await from.dumpBuffer(k);
            const exp = Number(await from.call('PEXPIRETIME', k));
            await to.callBuffer('RESTORE', k, exp > 0 ? exp : 0, payload!, ...(exp > 0 ? ['ABSTTL'] : []));
          }
        } while (cursor !== '0');
      });
    }
  });
  return await digestOf(oracle.url);
}

/** The server's clock (TIME), µs: an instant at or after everything it ran so far (Date.now() has ms only). */
function serverNowUs(url: string): Promise<number> {
  return withRedis(url, async (r) => {
    const [s, us] = await r.time();
    return Number(s) * 1_000_000 + Number(us);
  });
}

function digestOf(url: string): Promise<string> {
  return withRedis(url, async (r) => String(await r.call('DEBUG', 'DIGEST')));
}

test("key slots: ours are the server's (CLUSTER KEYSLOT) for text, hash-tag and binary keys", async () => {
  const rnd = seededRandom(7);
  const keys = [
    Buffer.from(''),
    Buffer.from('foo'),
    Buffer.from('{user1000}.following'),
    Buffer.from('foo{}{bar}'),
    Buffer.from('foo{{bar}}zap'),
    Buffer.from('{}x'),
    Buffer.from('a{b'),
    Buffer.from([0, 0xff, 0x7b, 0x80, 0x7d, 1]),
  ];
  for (let i = 0; i < 200; i++)
    keys.push(Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => Math.floor(rnd() * 256))));
  await withRedis(target.masters[0]!.url, async (r) => {
    for (const k of keys)
      assert.equal(keySlot(k), Number(await r.call('CLUSTER', 'KEYSLOT', k)), `slot of ${k.toString('hex')}`);
  });
});

test('three nodes at one instant: into a new standalone instance, a Redis Cluster, an RDB (CLI) and a target (API + restorer)', async () => {
  // Three captured standalone nodes that shard keys the way the target Cluster does: node i holds the slots of master
  // i.
  const owner = await slotOwners(target);
  const shards: Source[] = [];
  for (let i = 0; i < 3; i++) shards.push(await startSource(stack, DEBUG_ARGS));
  const conns = shards.map((s) => new Redis(s.redis.url));
  let late: Source | undefined;
  const send = (cmds: [string, Buffer, ...Arg[]][], tx: boolean) =>
    sendTo(conns[owner[keySlot(cmds[0]![1])]!]!, cmds, tx);
  try {
    await workload(send, 300, 1); // before the baselines: in their RDBs
    for (const s of shards) await s.agent.baseline();
    await workload(send, 600, 2);
    // T: nothing in flight. What the nodes hold now is what a restore to T must give.
    const urls = shards.map((s) => s.redis.url);
    const atT = await keyState(urls);
    const shardDigests = await Promise.all(urls.map(digestOf));
    const expected = await unionDigest(urls);
    const T = Math.max(...(await Promise.all(urls.map(serverNowUs))));
    for (let i = 0; i < 3; i++)
      assert.ok(atT.size > 0 && (await withRedis(urls[i]!, (r) => r.dbsize())) > 0, `node ${i} holds keys`);
    await workload(send, 300, 3); // after T: must not show
    for (const s of shards) await synced(s.node, s.redis.url);
    for (const s of shards) await waitForWindow(stack, s.node, T);
    const nodes = shards.map((s) => s.node);
    assert.notEqual(await unionDigest(urls), expected, 'the writes after T changed the data');

    // (a) a new standalone instance holding the union.
    const a = await restoreNodes({ nodes, to: T, spawn: {} });
    assert.equal(a.digest, expected);
    assert.equal(await digestOf(a.url!), expected);
    assert.deepEqual(await keyState([a.url!]), atT);
    assert.deepEqual(
      a.parts.map((p) => p.node),
      nodes,
    );
    assert.equal(a.keys, atT.size);
    assert.equal(
      a.parts.reduce((n, p) => n + p.keys, 0),
      atT.size,
    );

    // (b) a Redis Cluster: master i gets exactly node i's data.
    const b = await restoreNodes({ nodes, to: T, target: target.masters[1]!.url });
    assert.equal(b.url, target.masters[1]!.url);
    assert.deepEqual(
      b.masters!.map((m) => m.digest),
      shardDigests,
    );
    for (let i = 0; i < 3; i++) assert.equal(await digestOf(target.masters[i]!.url), shardDigests[i], `master ${i}`);
    assert.deepEqual(await keyState(target.masters.map((m) => m.url)), atT);
    // Again without --flush: refused before any work, the cluster untouched; with it: the same data.
    await assert.rejects(restoreNodes({ nodes, to: T, target: target.masters[0]!.url }), {
      code: 'TARGET_NOT_EMPTY',
      message: /Redis Cluster .* not empty/,
    });
    await restoreNodes({ nodes, to: T, target: target.masters[2]!.url, flush: true });
    for (let i = 0; i < 3; i++)
      assert.equal(await digestOf(target.masters[i]!.url), shardDigests[i], `master ${i} after --flush`);

    // Errors name the node: unknown, or T outside its windows (a node captured only since after T).
    await assert.rejects(restoreNodes({ nodes: [...nodes, 'no-such-node'], to: T, spawn: {} }), {
      code: 'UNKNOWN_NODE',
      message: /"no-such-node"/,
    });
    late = await startSource(stack, DEBUG_ARGS);
    const lateConn = new Redis(late.redis.url);
    try {
      await late.agent.baseline();
      await synced(late.node, lateConn);
      await assert.rejects(restoreNodes({ nodes: [nodes[0]!, late.node], to: T, spawn: {} }), {
        code: 'OUTSIDE_WINDOW',
        message: new RegExp(`node "${late.node}"`),
      });
      // Two nodes holding one key cannot share an instance: refused, naming the key and both nodes.
      const shared = (await withRedis(urls[0]!, (r) => r.keys('s:*'))).find((k) => /^s:\d+$/.test(k))!;
      await lateConn.set(shared, 'other');
      await synced(late.node, lateConn);
      await synced(shards[0]!.node, conns[0]!);
      const T2 = Math.max(await serverNowUs(late.redis.url), await serverNowUs(urls[0]!));
      await waitForWindow(stack, late.node, T2);
      await waitForWindow(stack, nodes[0]!, T2);
      await assert.rejects(restoreNodes({ nodes: [nodes[0]!, late.node], to: T2, spawn: {} }), {
        code: 'BAD_INPUT',
        message: new RegExp(`key "${shared}" in db 0 of node "${late.node}" .* is also held by node "${nodes[0]}"`),
      });
    } finally {
      lateConn.disconnect();
    }

    // The CLI: --node repeated, into an RDB file.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-cluster-rdb-'));
    try {
      const file = path.join(dir, 'merged.rdb');
      const r = await cli([
        'restore',
        '--node',
        nodes[0]!,
        '--node',
        nodes[1]!,
        '--nodes',
        nodes[2]!,
        '--to',
        String(T),
        '--rdb',
        file,
        '--json',
        '--clickhouse',
        stack.clickhouse.url,
        '--nats',
        stack.nats.url,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout) as { nodes: string[]; digest: string; rdb: string };
      assert.deepEqual(report.nodes, nodes);
      assert.equal(report.digest, expected);
      await using fromRdb = await startRedisServer({ dir, args: ['--dbfilename', 'merged.rdb', ...DEBUG_ARGS] });
      assert.equal(await digestOf(fromRdb.url), expected);
      const bad = await cli(['restore', '--node', nodes[0]!, '--node', nodes[1]!, '--to-seq', '3', '--spawn']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /--to TIME/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    // The API: POST /restores with nodes checks every node's cutoff at once; a restorer runs the job.
    const TOKEN = `tok-${randomUUID()}`;
    const app = buildApp({ store: stack.store, jobs: natsJobClient(nc), tokens: [TOKEN] });
    const post = async (body: unknown) => {
      const res = await app.request('/restores', {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    const unknown = await post({ nodes: [nodes[0], 'nope'], to: String(T), spawn: {} });
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error.message, /"nope"/);
    const outside = await post({ nodes: [late!.node, nodes[1]], to: String(T), spawn: {} });
    assert.equal(outside.status, 422);
    assert.ok(outside.body.error.message.includes(`node "${late!.node}"`), outside.body.error.message);
    for (const body of [
      { nodes, toSeq: 3, spawn: {} },
      { nodes, node: nodes[0], to: String(T), spawn: {} },
      { nodes: [nodes[0], nodes[0]], to: String(T), spawn: {} },
      { to: String(T), spawn: {} },
    ]) {
      const r = await post(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'BAD_INPUT');
    }
    await using standalone = await testRedis(DEBUG_ARGS);
    const accepted = await post({ nodes, to: String(T), target: standalone.url });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    assert.deepEqual(
      accepted.body.cutoffs.map((c: { node: string }) => c.node),
      nodes,
    );
    const restorer = await startRestorer({
      natsUrl: stack.nats.url,
      clickhouseUrl: stack.clickhouse.url,
      instancesDir,
      logger: silentLogger,
      pullExpiresMs: 1_000,
    });
    try {
      const job = await waitFor(
        'the cluster restore job done',
        async () => {
          const j = await getJob(nc, accepted.body.id);
          if (j.state === 'failed') throw new Error(`job failed: ${j.error?.message}`);
          return j.state === 'done' ? j : undefined;
        },
        60_000,
      );
      assert.equal(job.report, undefined);
      assert.deepEqual(job.clusterReport!.nodes, nodes);
      assert.equal(job.clusterReport!.digest, expected);
      assert.equal(await digestOf(standalone.url), expected);
    } finally {
      await restorer.close();
    }
  } finally {
    for (const c of conns) c.disconnect();
    await late?.close();
    for (const s of shards) await s.close();
  }
});

test("a standalone source restored into a Redis Cluster: every key on its slot's master, binary-safe, exact expiries; db 0 only", async () => {
  const src = await startSource(stack, DEBUG_ARGS);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await workload((cmds, tx) => sendTo(r, cmds, tx), 500, 11);
    const atT = await keyState([src.redis.url]);
    const T = await serverNowUs(src.redis.url);
    await workload((cmds, tx) => sendTo(r, cmds, tx), 200, 12);
    await r.select(1);
    await r.set('in-db-1', 'x');
    await r.select(0);
    const T2 = await serverNowUs(src.redis.url);
    await synced(src.node, r);
    await waitForWindow(stack, src.node, T2);

    const report = await restoreNode({ node: src.node, to: T, target: target.masters[0]!.url, flush: true });
    assert.equal(report.url, target.masters[0]!.url);
    const onMasters = await keyState(target.masters.map((m) => m.url));
    assert.deepEqual(onMasters, atT);
    // Each key sits on the master serving its slot (keyState asserted no key is on two masters).
    const owner = await slotOwners(target);
    for (let i = 0; i < 3; i++) {
      const keys = await withRedis(target.masters[i]!.url, (c) => c.keysBuffer('*'));
      assert.ok(keys.length > 0, `master ${i} got keys`);
      for (const k of keys) assert.equal(owner[keySlot(k)], i, `key ${k.toString('hex')} on master ${i}`);
    }
    // db 1 cannot go into a Cluster: refused with the way out, which works.
    await assert.rejects(
      restoreNode({ node: src.node, to: T2, target: target.masters[0]!.url, flush: true }),
      /db 1.*db 0 only.*--db 0/,
    );
    await assert.rejects(
      restoreNodes({ nodes: [src.node], to: T2, target: target.masters[0]!.url, flush: true }),
      new RegExp(`node "${src.node}": .*db 1.*db 0 only`),
    );
    assert.deepEqual(await keyState(target.masters.map((m) => m.url)), atT, 'refused before --flush emptied anything');
    await restoreNode({ node: src.node, to: T2, target: target.masters[0]!.url, flush: true, db: 0 });
    await r.select(0);
    assert.deepEqual(await keyState(target.masters.map((m) => m.url)), await keyState([src.redis.url]));
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('a Redis Cluster source: one agent per master captures it, and the masters restore together at one instant', async () => {
  await using source = await startTestCluster([...SOURCE_ARGS, ...DEBUG_ARGS]);
  const run = randomUUID().slice(0, 6);
  const agents: Agent[] = [];
  let client: Cluster | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      agents.push(
        await startAgent({
          redisUrl: source.masters[i]!.url,
          nodeId: `c1-m${i + 1}-${run}`,
          natsUrl: stack.nats.url,
          logger: silentLogger,
          baselineDigest: 'always',
        }),
      );
    }
    client = source.client();
    const c = client;
    const sendCluster = (cmds: [string, Buffer, ...Arg[]][], tx: boolean) => sendTo(c, cmds, tx);
    await workload(sendCluster, 400, 21);
    // Capture: every master's writes reach its own agent's history (a marker on each master, stored with all before
    // it).
    for (const [i, a] of agents.entries()) await synced(a.node, source.masters[i]!.url);
    const writes = await stack.store.query<{ node: string; n: string }>(
      `SELECT node, count() AS n FROM flashback.events WHERE node LIKE 'c1-m%-${run}' AND kind = 'command' GROUP BY node ORDER BY node`,
    );
    assert.deepEqual(
      writes.map((w) => w.node),
      agents.map((a) => a.node),
    );
    for (const w of writes) assert.ok(Number(w.n) > 50, `${w.node} captured ${w.n} writes`);
    // The agent's own commands are not refused in cluster mode: its marker MULTI (INFO, DEBUG DIGEST, PUBLISH) ran, as
    // MONITOR shows, and its idle heartbeat ECHO too.
    await waitFor('a baseline marker and a heartbeat of every master in its history', async () => {
      const own = await stack.store.query<{ node: string; kinds: string[] }>(
        `SELECT node, groupUniqArray(kind) AS kinds FROM flashback.events WHERE node LIKE 'c1-m%-${run}' AND kind IN ('baseline', 'heartbeat') GROUP BY node ORDER BY node`,
      );
      return own.length === 3 && own.every((o) => o.kinds.length === 2) ? true : undefined;
    });
    // Baselines: the agent's marker PUBLISH must reach the replication stream of a master in cluster mode.
    await waitFor(
      "a baseline of every cluster master (in cluster mode Redis sends PUBLISH over the cluster bus, not down the replication stream, so a PUBLISH marker never reaches the agent's PSYNC link)",
      async () => (agents.every((a) => a.stats().baselines >= 1) ? true : undefined),
      15_000,
    );
    // The marker's SET and DEL of __flashback__:marker:{fb:N} (what the replication stream carries) are the agent's
    // own lines: never captured as commands, and the key is gone from every master. A marker per master after the
    // baselines: once stored, everything the agents captured before it is stored too.
    for (const [i, a] of agents.entries()) await synced(a.node, source.masters[i]!.url);
    const markerWrites = await stack.store.query<{ n: string }>(
      `SELECT count() AS n FROM flashback.events WHERE node LIKE 'c1-m%-${run}' AND arrayExists(k -> position(k, '__flashback__:marker') = 1, keys)`,
    );
    assert.equal(Number(markerWrites[0]!.n), 0);
    for (const m of source.masters) assert.deepEqual(await withRedis(m.url, (r) => r.keys('__flashback__*')), []);
    await workload(sendCluster, 400, 22);
    const urls = source.masters.map((m) => m.url);
    const atT = await keyState(urls);
    const masterDigests = await Promise.all(urls.map(digestOf));
    const expected = await unionDigest(urls);
    const T = Math.max(...(await Promise.all(urls.map(serverNowUs))));
    await workload(sendCluster, 200, 23);
    for (const [i, a] of agents.entries()) await synced(a.node, source.masters[i]!.url);
    for (const a of agents) await waitForWindow(stack, a.node, T);
    const nodes = agents.map((a) => a.node);
    const a = await restoreNodes({ nodes, to: T, spawn: {} });
    assert.equal(a.digest, expected);
    assert.deepEqual(await keyState([a.url!]), atT);
    const b = await restoreNodes({ nodes, to: T, target: target.masters[0]!.url, flush: true });
    assert.deepEqual(
      b.masters!.map((m) => m.digest),
      masterDigests,
    );
  } finally {
    client?.disconnect();
    for (const a of agents) await a.close();
  }
});

test('a failover on a Redis Cluster source: each agent follows its shard to the new master in a new epoch under the same node id; both epochs restore exactly by time', async () => {
  await using source = await startTestCluster([...SOURCE_ARGS, ...DEBUG_ARGS]);
  const run = randomUUID().slice(0, 6);
  const logger = process.env.FLASHBACK_TEST_LOG ? createLogger('agent') : silentLogger;
  // Shard 1's agent notices the demotion by polling the role (writes or not); shard 2's polls too rarely for that in
  // this test, so it notices by the first MONITOR line of its master link (the new master's writes replicated to it).
  const shards = [0, 1].map((i) => ({
    oldMaster: source.masters[i]!,
    newMaster: source.replicas[i]!,
    node: `c2-shard${i + 1}-${run}`,
    metricsIntervalMs: i === 0 ? 1_000 : 600_000,
  }));
  const agents: Agent[] = [];
  const client = source.client();
  const sendCluster = (cmds: [string, Buffer, ...Arg[]][], tx: boolean) => sendTo(client, cmds, tx);
  const role = (url: string) =>
    withRedis(url, async (r) => /^role:(\w+)/m.exec(String(await r.call('INFO', 'replication')))?.[1]);
  const addr = (n: { server: { host: string; port: number } }) => `${n.server.host}:${n.server.port}`;
  try {
    for (const s of shards)
      agents.push(
        await startAgent({
          redisUrl: s.oldMaster.url,
          nodeId: s.node,
          natsUrl: stack.nats.url,
          logger,
          baselineDigest: 'always',
          metricsIntervalMs: s.metricsIntervalMs,
        }),
      );
    await waitFor('the first baseline on each old master', async () =>
      agents.every((a) => a.stats().baselines >= 1) ? true : undefined,
    );
    const first = agents.map((a) => a.stats());
    shards.forEach((s, i) => assert.equal(first[i]!.redis, addr(s.oldMaster)));
    await workload(sendCluster, 400, 31);
    // T1, before the failover: each shard's data is its old master's.
    const atT1 = await Promise.all(shards.map((s) => keyState([s.oldMaster.url])));
    const digestT1 = await Promise.all(shards.map((s) => digestOf(s.oldMaster.url)));
    const T1 = Math.max(...(await Promise.all(shards.map((s) => serverNowUs(s.oldMaster.url)))));
    for (const k of atT1) assert.ok(k.size > 0);
    await workload(sendCluster, 200, 32);
    // A window covering T1 (writes follow T1) means every event up to T1 is stored.
    for (const s of shards) await waitForWindow(stack, s.node, T1);

    // Manual failovers: each replica takes over, its old master follows it.
    for (const s of shards) assert.equal(await withRedis(s.newMaster.url, (r) => r.call('CLUSTER', 'FAILOVER')), 'OK');
    await waitFor(
      'the replicas promoted and the old masters demoted',
      async () => {
        for (const s of shards)
          if ((await role(s.newMaster.url)) !== 'master' || (await role(s.oldMaster.url)) !== 'slave') return undefined;
        return true;
      },
      30_000,
    );
    const followed = (i: number) => {
      const s = agents[i]!.stats();
      return s.redis === addr(shards[i]!.newMaster) && s.epoch !== first[i]!.epoch && s.lastBaselineEpoch === s.epoch
        ? s
        : undefined;
    };
    await waitFor(
      "shard 1's agent on its new master in a new epoch with its own baseline",
      async () => followed(0),
      30_000,
    );
    // Writes reach shard 2's demoted node through its master link: its agent notices them and follows.
    await workload(sendCluster, 400, 33);
    await waitFor(
      "shard 2's agent on its new master in a new epoch with its own baseline",
      async () => followed(1),
      30_000,
    );
    const after = [followed(0)!, followed(1)!];
    for (const [i, s] of after.entries()) {
      assert.equal(s.node, shards[i]!.node);
      assert.equal(s.failovers, 1);
      assert.ok(s.epoch > first[i]!.epoch);
    }

    await workload(sendCluster, 400, 34);
    const atT2 = await Promise.all(shards.map((s) => keyState([s.newMaster.url])));
    const digestT2 = await Promise.all(shards.map((s) => digestOf(s.newMaster.url)));
    const T2 = Math.max(...(await Promise.all(shards.map((s) => serverNowUs(s.newMaster.url)))));
    await workload(sendCluster, 200, 35);
    for (const [i, s] of shards.entries()) {
      // A marker on the new master: stored in the new epoch with every seq before it, in that epoch's window.
      const m = await synced(s.node, s.newMaster.url);
      assert.equal(m.epoch, after[i]!.epoch, `the marker of ${s.node} is in the new epoch`);
      await waitForWindow(stack, s.node, T2);
    }

    for (const [i, s] of shards.entries()) {
      // Both epochs' windows, under one node id; each instant restores from the epoch that covered it.
      const epochs = [...new Set((await restoreWindows(stack.store, s.node)).map((w) => w.epoch))];
      assert.deepEqual(epochs, [first[i]!.epoch, after[i]!.epoch]);
      assert.notEqual(digestT2[i], digestT1[i]);
      const r1 = await restoreNode({ node: s.node, to: T1, spawn: {} });
      assert.equal(r1.epoch, first[i]!.epoch);
      assert.equal(r1.digest, digestT1[i]);
      assert.deepEqual(await keyState([r1.url!]), atT1[i]);
      const r2 = await restoreNode({ node: s.node, to: T2, spawn: {} });
      assert.equal(r2.epoch, after[i]!.epoch);
      assert.equal(r2.digest, digestT2[i]);
      assert.deepEqual(await keyState([r2.url!]), atT2[i]);
    }
  } finally {
    client.disconnect();
    for (const a of agents) await a.close();
  }
});

test("an unplanned failover (the master stops, its replica is elected): the agent finds its shard's new master through the other nodes and goes on there in a new epoch", async () => {
  await using source = await startTestCluster([...SOURCE_ARGS, ...DEBUG_ARGS]);
  const oldMaster = source.masters[2]!;
  const newMaster = source.replicas[2]!;
  const node = `c3-shard3-${randomUUID().slice(0, 6)}`;
  const logger = process.env.FLASHBACK_TEST_LOG ? createLogger('agent') : silentLogger;
  const agent = await startAgent({
    redisUrl: oldMaster.url,
    nodeId: node,
    natsUrl: stack.nats.url,
    logger,
    baselineDigest: 'always',
  });
  const clients: Cluster[] = [];
  const sender = () => {
    const c = source.client();
    clients.push(c);
    return (cmds: [string, Buffer, ...Arg[]][], tx: boolean) => sendTo(c, cmds, tx);
  };
  try {
    await waitFor('the first baseline on the old master', async () =>
      agent.stats().baselines >= 1 ? true : undefined,
    );
    const first = agent.stats();
    const before = sender();
    await workload(before, 400, 41);
    const atT1 = await keyState([oldMaster.url]);
    const digestT1 = await digestOf(oldMaster.url);
    const T1 = await serverNowUs(oldMaster.url);
    // Everything is on the replica before the master goes away (an unplanned failover may lose acknowledged writes
    // otherwise).
    assert.equal(await withRedis(oldMaster.url, (r) => r.call('WAIT', 1, 10_000)), 1);
    // A window covering T1 (an idle heartbeat after T1, stored with every seq before it) means every event up to T1 is
    // stored.
    await waitForWindow(stack, node, T1);

    await oldMaster.server.stop();
    await waitFor(
      'the replica elected master',
      async () =>
        /^role:master/m.test(await withRedis(newMaster.url, async (r) => String(await r.call('INFO', 'replication'))))
          ? true
          : undefined,
      60_000,
    );
    const after = await waitFor(
      'the agent on the new master in a new epoch with its own baseline',
      async () => {
        const s = agent.stats();
        return s.redis === `${newMaster.server.host}:${newMaster.server.port}` &&
          s.epoch !== first.epoch &&
          s.lastBaselineEpoch === s.epoch
          ? s
          : undefined;
      },
      60_000,
    );
    assert.equal(after.failovers, 1);

    await workload(sender(), 400, 43);
    const atT2 = await keyState([newMaster.url]);
    const digestT2 = await digestOf(newMaster.url);
    const T2 = await serverNowUs(newMaster.url);
    assert.notEqual(digestT2, digestT1);
    const m = await synced(node, newMaster.url);
    assert.equal(m.epoch, after.epoch, 'the marker is in the new epoch');
    await waitForWindow(stack, node, T2);

    const r1 = await restoreNode({ node, to: T1, spawn: {} });
    assert.equal(r1.epoch, first.epoch);
    assert.equal(r1.digest, digestT1);
    assert.deepEqual(await keyState([r1.url!]), atT1);
    const r2 = await restoreNode({ node, to: T2, spawn: {} });
    assert.equal(r2.epoch, after.epoch);
    assert.equal(r2.digest, digestT2);
    assert.deepEqual(await keyState([r2.url!]), atT2);
  } finally {
    for (const c of clients) c.disconnect();
    await agent.close();
  }
});

test('a baseline cut short by a failover says the node was demoted, not that a buffer limit was hit', async () => {
  await using source = await startTestCluster([...SOURCE_ARGS, ...DEBUG_ARGS]);
  const master = source.masters[1]!;
  const replica = source.replicas[1]!;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let rdbIn!: () => void;
  const reading = new Promise<void>((r) => (rdbIn = r));
  const capture = captureReplicationBaseline({
    target: parseRedisUrl(master.url),
    markerChannel: MARKER_CHANNEL,
    markerId: randomUUID(),
    timeoutMs: 60_000,
    // The RDB is taken in, then its store "hangs": the link stays open, waiting for a marker, when the failover comes.
    writeRdb: async (rdb) => {
      rdbIn();
      await held;
      await rdb.cancel().catch(() => undefined);
    },
    onRdbDone: async () => undefined,
  });
  capture.catch(() => undefined);
  try {
    await reading;
    assert.equal(await withRedis(replica.url, (r) => r.call('CLUSTER', 'FAILOVER')), 'OK');
    await assert.rejects(capture, (err: Error) => {
      assert.match(
        err.message,
        /closed the replication link .*because the node was demoted to a replica of 127\.0\.0\.1:\d+ \(a failover\)/,
      );
      assert.doesNotMatch(err.message, /client-output-buffer-limit/);
      return true;
    });
  } finally {
    release();
  }
});
