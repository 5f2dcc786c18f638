// A cluster-wide restore of a 6-master Redis Cluster (one agent per master) to one instant: into a new, empty 6-master
// Cluster with the same slot layout (master for master the source's data and DEBUG DIGEST at that instant), and into a
// 3-master Cluster (the same keys, values and expiries, each key on its slot's master).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Cluster, Redis } from 'ioredis';
import { startAgent, type Agent } from '../agent/index.js';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { createLogger, silentLogger } from '../core/log.js';
import { clickHouseEventStore, clusterRestore, keySlot } from '../restorer/index.js';
import { startTestCluster, withRedis, type TestCluster } from './helpers/cluster.js';
import { seededRandom } from './helpers/seeded-random.js';
import {
  markStoredEvent,
  SOURCE_ARGS,
  startStack,
  waitFor,
  waitForWindow,
  waitForWindowSeq,
  type Stack,
} from './helpers/stack.js';

const DEBUG_ARGS = ['--enable-debug-command', 'yes'];

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
/** The captured source: 6 masters, no replicas. */
let source: TestCluster;
/** Restore targets: a 6-master Cluster (the source's slot layout) and a 3-master one. */
let six: TestCluster;
let three: TestCluster;

before(async () => {
  [stack, source, six, three] = await Promise.all([
    startStack(),
    startTestCluster([...SOURCE_ARGS, ...DEBUG_ARGS], { masters: 6, replicas: 0 }),
    startTestCluster(DEBUG_ARGS, { masters: 6, replicas: 0 }),
    startTestCluster(DEBUG_ARGS, { masters: 3, replicas: 0 }),
  ]);
  nc = await connectNats({ url: stack.nats.url, name: 'cluster-six-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-cluster-six-'));
});

after(async () => {
  await Promise.all([source, six, three].map((c) => c?.close()));
  await nc?.close();
  await stack?.close();
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

const deps = () => ({ events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir });

/** A marker on the master, stored with every event before it and inside a restorable window. */
async function synced(node: string, url: string): Promise<void> {
  const m = await markStoredEvent(stack, node, url);
  await waitForWindowSeq(stack, node, m.epoch, m.seq);
}

type Arg = string | Buffer | number;
/** `[command, key, …args]`; a transaction is several of them on keys of one hash tag. */
type Cmd = [string, Buffer, ...Arg[]];

/**
 * A deterministic workload over every slot: text and binary keys (bytes that are no UTF-8), binary values, strings,
 * counters and floats, hashes, lists, sets, sorted sets, streams (explicit ids, `*` ids, trims, a consumer group),
 * relative and absolute TTLs, PERSIST, deletes, and MULTI/EXEC and EVAL over hash-tagged keys. `post` adds more
 * deletes: the phase after the instant.
 */
function* workload(n: number, seed: number, post = false): Generator<{ cmds: Cmd[]; tx: boolean }> {
  const rnd = seededRandom(seed);
  const int = (m: number) => Math.floor(rnd() * m);
  const bytes = (len: number) => Buffer.from(Array.from({ length: len }, () => int(256)));
  const key = (prefix: string) => {
    const i = int(60);
    return i % 7 === 0
      ? Buffer.concat([Buffer.from(`${prefix}:`), Buffer.from([0, 0xff, i, 0x80, 0xc3])])
      : Buffer.from(`${prefix}:${i}`);
  };
  const one = (...c: Cmd) => ({ cmds: [c], tx: false });
  // A stream's explicit ids grow with the seed and the step, so every XADD of one phase follows the earlier ones.
  const xid = (i: number) => `${seed}${String(i).padStart(6, '0')}-${int(3)}`;
  for (let i = 0; i < n; i++) {
    const choice = int(post ? 24 : 20);
    switch (choice) {
      case 0:
        yield one('SET', key('s'), `v${int(1000)}`);
        break;
      case 1:
        yield one('SET', key('b'), bytes(1 + int(40)));
        break;
      case 2:
        yield one('HSET', key('h'), `f${int(15)}`, bytes(3), Buffer.from([0xfe, int(256)]), `${int(99)}`);
        break;
      case 3:
        yield one('RPUSH', key('l'), `e${int(100)}`, bytes(2));
        break;
      case 4:
        yield one('LPOP', key('l'));
        break;
      case 5:
        yield one('SADD', key('set'), `m${int(40)}`, bytes(4));
        break;
      case 6:
        yield one('ZADD', key('z'), int(1000) / 8, `m${int(40)}`);
        break;
      case 7:
        yield one('XADD', key('x'), xid(i), 'f', `${int(9)}`, 'bin', bytes(3));
        break;
      case 8:
        yield one('XADD', key('xs'), 'MAXLEN', '=', 5, '*', 'n', `${i}`);
        break;
      case 9:
        yield one('INCRBY', key('c'), int(10) - 3);
        break;
      case 10:
        yield one('INCRBYFLOAT', key('f'), `${int(100) / 4}`);
        break;
      case 11: {
        const tag = `{u${int(25)}}`;
        yield {
          cmds: [
            ['INCR', Buffer.from(`${tag}:visits`)],
            ['HSET', Buffer.from(`${tag}:profile`), 'seen', `${i}`, 'blob', bytes(5)],
            ['RPUSH', Buffer.from(`${tag}:log`), `${i}`],
            ['PEXPIRE', Buffer.from(`${tag}:log`), 3_600_000 + int(1000)],
          ],
          tx: true,
        };
        break;
      }
      case 12: {
        const tag = `{e${int(10)}}`;
        yield one('EVAL', Buffer.from(`${tag}:a`), `${i}`, Buffer.from(`${tag}:b`));
        break;
      }
      case 13:
        yield one('SET', key('t'), bytes(6), 'EX', 3_600 + int(100));
        break;
      case 14:
        yield one('EXPIRE', key('h'), 7_200 + int(100));
        break;
      case 15:
        yield one('PEXPIREAT', key('set'), Date.now() + 5_400_000 + int(1000));
        break;
      case 16:
        yield one('PERSIST', key('t'));
        break;
      case 17:
        yield one('DEL', key('s'));
        break;
      case 18:
        yield one('XGROUP', key('x'), 'CREATE', `g${int(2)}`, '$', 'MKSTREAM');
        break;
      case 19:
        yield one('ZINCRBY', key('z'), 1.5, `m${int(40)}`);
        break;
      // After the instant only: deletes of every kind.
      case 20:
        yield one('UNLINK', key('h'));
        break;
      case 21:
        yield one('HDEL', key('h'), `f${int(15)}`);
        break;
      case 22:
        yield one('SREM', key('set'), `m${int(40)}`);
        break;
      case 23:
        yield one('DEL', key(['l', 'z', 'x', 'b', 'c'][int(5)]!));
        break;
    }
  }
}

const EVAL_SCRIPT =
  "redis.call('SET', KEYS[1], ARGV[1]); redis.call('APPEND', KEYS[1], 'x'); return redis.call('INCR', KEYS[2])";

/** argv of one workload command (EVAL is `[EVAL, key1, arg, key2]` in the workload). */
function argvOf([name, k, ...rest]: Cmd): [string, ...Arg[]] {
  if (name === 'EVAL') return ['EVAL', EVAL_SCRIPT, 2, k, rest[1]!, rest[0]!];
  if (name === 'XGROUP') return ['XGROUP', rest[0]!, k, ...rest.slice(1)];
  return [name, k, ...rest];
}

/** Runs a workload through a Cluster client (routed by key); errors a command may meet (BUSYGROUP, WRONGTYPE) are fine. */
async function run(c: Cluster, steps: Iterable<{ cmds: Cmd[]; tx: boolean }>): Promise<number> {
  let n = 0;
  for (const { cmds, tx } of steps) {
    if (tx) {
      const m = c.multi();
      for (const cmd of cmds) {
        const [name, ...args] = argvOf(cmd);
        m.callBuffer(name, ...args);
      }
      await m.exec();
    } else {
      const [name, ...args] = argvOf(cmds[0]!);
      await c.callBuffer(name, ...args).catch((err: Error) => {
        if (!/^(BUSYGROUP|WRONGTYPE|ERR value is not)/.test(err.message)) throw err;
      });
    }
    n += cmds.length;
  }
  return n;
}

const hex = (b: Buffer) => b.toString('hex');

/** A key's type, value (type-aware, bytes as hex, sets and hashes sorted), stream metadata and groups, PEXPIRETIME. */
async function readKey(r: Redis, k: Buffer): Promise<string> {
  const type = String(await r.call('TYPE', k));
  let value: unknown;
  switch (type) {
    case 'string':
      value = hex((await r.getBuffer(k))!);
      break;
    case 'hash': {
      const flat = (await r.callBuffer('HGETALL', k)) as Buffer[];
      const pairs: string[] = [];
      for (let i = 0; i < flat.length; i += 2) pairs.push(`${hex(flat[i]!)}=${hex(flat[i + 1]!)}`);
      value = pairs.sort();
      break;
    }
    case 'list':
      value = ((await r.callBuffer('LRANGE', k, 0, -1)) as Buffer[]).map(hex);
      break;
    case 'set':
      value = ((await r.callBuffer('SMEMBERS', k)) as Buffer[]).map(hex).sort();
      break;
    case 'zset':
      value = ((await r.callBuffer('ZRANGE', k, 0, -1, 'WITHSCORES')) as Buffer[]).map(hex);
      break;
    case 'stream': {
      const entries = (await r.callBuffer('XRANGE', k, '-', '+')) as [Buffer, Buffer[]][];
      const info = (await r.call('XINFO', 'STREAM', k)) as unknown[];
      const field = (name: string) => info[info.indexOf(name) + 1];
      value = {
        entries: entries.map(([id, fields]) => [id.toString(), fields.map(hex)]),
        meta: ['length', 'last-generated-id', 'max-deleted-entry-id', 'entries-added'].map(field),
        groups: await r.call('XINFO', 'GROUPS', k),
      };
      break;
    }
    default:
      assert.fail(`unexpected type ${type} of key ${hex(k)}`);
  }
  return JSON.stringify({ type, value, expireAtMs: Number(await r.call('PEXPIRETIME', k)) });
}

/** Every key of one server: hex of the key → readKey. */
async function serverState(url: string): Promise<Map<string, string>> {
  return withRedis(url, async (r) => {
    const out = new Map<string, string>();
    let cursor = '0';
    do {
      const [next, keys] = (await r.callBuffer('SCAN', cursor, 'COUNT', 1000)) as [Buffer, Buffer[]];
      cursor = next.toString();
      for (const k of keys) out.set(hex(k), await readKey(r, k));
    } while (cursor !== '0');
    return out;
  });
}

/** The union of several servers' keys; a key on two servers fails. */
function union(states: Map<string, string>[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of states)
    for (const [k, v] of s) {
      assert.equal(out.has(k), false, `key ${k} on two masters`);
      out.set(k, v);
    }
  return out;
}

const digestOf = (url: string) => withRedis(url, async (r) => String(await r.call('DEBUG', 'DIGEST')));
const dbsizeOf = (url: string) => withRedis(url, (r) => r.dbsize());

/** Each master's slot ranges as CLUSTER SLOTS gives them, in the order of `c.masters`. */
async function slotRanges(c: TestCluster): Promise<[number, number][][]> {
  const rows = (await withRedis(c.masters[0]!.url, (r) => r.call('CLUSTER', 'SLOTS'))) as [
    number,
    number,
    [string, number],
  ][];
  return c.masters.map((m) =>
    rows
      .filter(([, , [, port]]) => Number(port) === m.server.port)
      .map(([from, to]): [number, number] => [Number(from), Number(to)])
      .sort((a, b) => a[0] - b[0]),
  );
}

test('a 6-master Redis Cluster restored at one instant into a new 6-master Cluster (master for master) and into a 3-master Cluster', async (t) => {
  const run6 = randomUUID().slice(0, 6);
  const nodes = source.masters.map((_, i) => `c6-m${i + 1}-${run6}`);
  const urls = source.masters.map((m) => m.url);
  const client = source.client();
  const agents: Agent[] = [];
  try {
    // Written before the agents start: in their baselines' RDBs.
    await run(client, workload(300, 1));
    for (const [i, m] of source.masters.entries()) {
      agents.push(
        await startAgent({
          redisUrl: m.url,
          nodeId: nodes[i]!,
          natsUrl: stack.nats.url,
          // FLASHBACK_TEST_LOG=1: the agents log (for chasing a failure).
          logger: process.env.FLASHBACK_TEST_LOG ? createLogger(nodes[i]!) : silentLogger,
          baselineDigest: 'always',
        }),
      );
    }
    await waitFor(
      'a baseline of every master',
      async () => (agents.every((a) => a.stats().baselines >= 1) ? true : undefined),
      30_000,
    );
    // A cluster node is captured by MONITOR (docs/capture-modes.md).
    for (const a of agents) assert.equal(a.stats().source, 'monitor');

    // Phase 1: replayed from the history. Keys with a short TTL expire before the instant (their expiry is an event).
    await run(client, workload(900, 2));
    const shortLived = Array.from({ length: 12 }, (_, i) => Buffer.from(`gone:${i}`));
    for (const k of shortLived) await client.set(k, 'soon', 'PX', 20);
    await waitFor('every short-lived key expired', async () => {
      for (const k of shortLived) if ((await client.exists(k)) !== 0) return undefined;
      return true;
    });
    for (const [i, node] of nodes.entries()) await synced(node, urls[i]!);

    // The instant T: nothing in flight. What the masters hold now is what a restore to T must give.
    const atT = await Promise.all(urls.map(serverState));
    const expected = union(atT);
    const digestsAtT = await Promise.all(urls.map(digestOf));
    const sizesAtT = await Promise.all(urls.map(dbsizeOf));
    const T = Math.max(
      ...(await Promise.all(
        urls.map((u) =>
          withRedis(u, async (r) => {
            const [s, us] = await r.time();
            return Number(s) * 1_000_000 + Number(us);
          }),
        ),
      )),
    );
    sizesAtT.forEach((n, i) => assert.ok(n > 40, `source master ${i} holds ${n} keys`));
    for (const k of shortLived) assert.equal(expected.has(hex(k)), false);
    assert.ok([...expected.keys()].filter((k) => Buffer.from(k, 'hex').includes(0xff)).length > 20, 'binary keys');
    assert.ok([...expected.keys()].filter((k) => k.startsWith(hex(Buffer.from('{')))).length > 20, 'hash-tagged keys');
    const types = new Set([...expected.values()].map((v) => (JSON.parse(v) as { type: string }).type));
    assert.deepEqual([...types].sort(), ['hash', 'list', 'set', 'stream', 'string', 'zset']);
    assert.ok(
      [...expected.values()].filter((v) => (JSON.parse(v) as { expireAtMs: number }).expireAtMs > 0).length > 20,
      'keys with TTLs',
    );

    // Phase 2, after T: overwrites, deletes, a FLUSHALL of one master, and new writes on it. None of it may show.
    await run(client, workload(500, 3, true));
    await withRedis(urls[3]!, (r) => r.flushall());
    await run(client, workload(200, 4, true));
    for (const [i, node] of nodes.entries()) await synced(node, urls[i]!);
    for (const node of nodes) await waitForWindow(stack, node, T);
    const digestsAfter = await Promise.all(urls.map(digestOf));
    digestsAfter.forEach((d, i) => assert.notEqual(d, digestsAtT[i], `master ${i} changed after T`));
    assert.ok((await dbsizeOf(urls[3]!)) < sizesAtT[3]!, 'the FLUSHALL emptied master 3 (a few keys came back)');
    const flushes = await stack.store.query<{ node: string }>(
      `SELECT node FROM flashback.events WHERE node LIKE 'c6-m%-${run6}' AND command = 'FLUSHALL'`,
    );
    assert.deepEqual(
      flushes.map((f) => f.node),
      [nodes[3]],
      "the FLUSHALL is in master 3's history",
    );

    const sourceSlots = await slotRanges(source);

    await t.test('into a new, empty 6-master Cluster with the same slot layout: master for master', async () => {
      assert.deepEqual(await slotRanges(six), sourceSlots);
      const report = await clusterRestore(deps(), { nodes, to: T, target: six.masters[2]!.url });
      assert.deepEqual(report.nodes, nodes);
      assert.equal(report.cutoff.tsUs, T);
      assert.equal(report.digest, undefined);
      assert.deepEqual(report.warnings, []);
      // Each node's own restore: the source master's keys and digest at T.
      assert.deepEqual(
        report.parts.map((p) => [p.node, p.keys, p.digest]),
        nodes.map((n, i) => [n, sizesAtT[i], digestsAtT[i]]),
      );
      for (const p of report.parts) assert.ok(p.cutoff.tsUs <= T && p.eventsReplayed > 0, JSON.stringify(p.cutoff));
      // Each target master: the source master's slots, keys and DEBUG DIGEST at T.
      assert.deepEqual(
        report.masters!.map((m) => [new URL(m.url).port, m.slots, m.keys, m.digest]),
        six.masters.map((m, i) => [String(m.server.port), sourceSlots[i], sizesAtT[i], digestsAtT[i]]),
      );
      assert.equal(report.keys, expected.size);
      assert.deepEqual(await Promise.all(six.masters.map((m) => digestOf(m.url))), digestsAtT);
      // Every key, value, stream metadata and expiry, on the same master as in the source.
      const got = await Promise.all(six.masters.map((m) => serverState(m.url)));
      for (let i = 0; i < 6; i++) assert.deepEqual(got[i], atT[i], `master ${i}`);
    });

    await t.test('into a 3-master Cluster (another layout): the same union of keys and values', async () => {
      const report = await clusterRestore(deps(), { nodes, to: T, target: three.masters[0]!.url });
      assert.deepEqual(report.warnings, []);
      assert.deepEqual(
        report.parts.map((p) => p.digest),
        digestsAtT,
      );
      const slots = await slotRanges(three);
      assert.deepEqual(slots, [[[0, 5460]], [[5461, 10922]], [[10923, 16383]]]);
      const sizes = await Promise.all(three.masters.map((m) => dbsizeOf(m.url)));
      assert.deepEqual(
        report.masters!.map((m) => [new URL(m.url).port, m.slots, m.keys]),
        three.masters.map((m, i) => [String(m.server.port), slots[i], sizes[i]]),
      );
      assert.equal(report.keys, expected.size);
      assert.equal(
        sizes.reduce((a, b) => a + b, 0),
        expected.size,
      );
      const got = await Promise.all(three.masters.map((m) => serverState(m.url)));
      // Each key on the master serving its slot.
      got.forEach((state, i) => {
        for (const k of state.keys()) {
          const s = keySlot(Buffer.from(k, 'hex'));
          assert.ok(
            slots[i]!.some(([from, to]) => from <= s && s <= to),
            `key ${k} (slot ${s}) on master ${i}`,
          );
        }
      });
      assert.deepEqual(union(got), expected);
    });
  } finally {
    client.disconnect();
    for (const a of agents) await a.close();
  }
});
