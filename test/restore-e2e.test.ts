// Point-in-time restore end to end: capture with real servers, then restore by time and by seq into spawned, target and
// RDB destinations.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { startRedisServer } from '../core/servers/redis-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../restorer/index.js';
import {
  serverTimeUs,
  startSource,
  startStack,
  waitFor,
  waitForWindow,
  type Stack,
  syncedSource,
  type Source,
} from './helpers/stack.js';
import { testRedis, TEST_REDIS_BIN_ENV } from './helpers/servers.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawned: { url?: string; pid?: number }[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'restore-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-instances-'));
});
after(async () => {
  for (const s of spawned) if (s.pid) await stopPid(s.pid);
  await nc?.close();
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

async function doRestore(req: RestoreRequest) {
  const report = await restore(
    { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
    req,
  );
  if (report.pid) spawned.push(report);
  return report;
}

const synced = (src: Source) => syncedSource(stack, src);

async function digestOf(url: string): Promise<string> {
  const r = new Redis(url);
  try {
    return String(await r.call('DEBUG', 'DIGEST'));
  } finally {
    r.disconnect();
  }
}

test('the seed scenario: restore to a moment in the middle, and to just before one HSET', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    for (let i = 1; i <= 120; i++) await r.hset('userprofile', `foo${String(i).padStart(3, '0')}`, i % 3);
    await synced(src);
    const rows = await stack.store.query<{ seq: string; ts_us: string; args: string[] }>(
      `SELECT seq, ts_us, args FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'HSET' ORDER BY seq`,
    );
    assert.equal(rows.length, 120);
    // "The moment in the middle": the time of the 60th HSET.
    const mid = rows[59]!;
    const report = await doRestore({ node: src.node, to: Number(mid.ts_us), spawn: {} });
    const restored = new Redis(report.url!);
    try {
      const fields = (await restored.hkeys('userprofile')).sort();
      const expected = rows.filter((x) => Number(x.ts_us) <= Number(mid.ts_us)).map((x) => x.args[2]!);
      assert.deepEqual(fields, expected.sort());
      assert.ok(fields.length >= 60 && fields.length < 120);
      assert.deepEqual(report.warnings, [], 'HSET only: nothing that could make the restore inexact');
    } finally {
      restored.disconnect();
    }
    // The instant before one chosen HSET: that field and all later are absent.
    const chosen = rows[79]!;
    const before = await doRestore({ node: src.node, beforeSeq: Number(chosen.seq), spawn: {} });
    const restored2 = new Redis(before.url!);
    try {
      const fields = (await restored2.hkeys('userprofile')).sort();
      assert.deepEqual(
        fields,
        rows
          .slice(0, 79)
          .map((x) => x.args[2]!)
          .sort(),
      );
      assert.equal(before.cutoff.seq, Number(chosen.seq) - 1);
    } finally {
      restored2.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

/** A deterministic mixed workload over every data type and several dbs. */
async function phase(r: Redis, n: number, seed: number): Promise<void> {
  let x = seed;
  const rnd = (m: number) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % m;
  };
  for (let i = 0; i < n; i++) {
    const k = `k${rnd(50)}`;
    const db = rnd(3);
    await r.select(db);
    switch (rnd(12)) {
      case 0:
        await r.set(`s:${k}`, `v${rnd(1000)}`);
        break;
      case 1:
        await r.hset(`h:${k}`, `f${rnd(20)}`, Buffer.from([rnd(256), 0, 255]));
        break;
      case 2:
        await r.rpush(`l:${k}`, `e${rnd(100)}`);
        break;
      case 3:
        await r.lpop(`l:${k}`);
        break;
      case 4:
        await r.sadd(`set:${k}`, `m${rnd(30)}`);
        break;
      case 5:
        await r.zadd(`z:${k}`, rnd(100), `m${rnd(30)}`);
        break;
      case 6:
        await r.xadd(`x:${k}`, `${1000 + i}-${seed}`, 'f', `${rnd(9)}`).catch(() => undefined);
        break;
      case 7:
        await r.incrby(`c:${k}`, rnd(10));
        break;
      case 8:
        await r.multi().incr(`c:${k}`).hset(`h:${k}`, 'm', `${i}`).exec();
        break;
      case 9:
        await r.eval(
          "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('APPEND', KEYS[1], 'x')",
          1,
          `e:${k}`,
          `${i}`,
        );
        break;
      case 10:
        await r.set(`t:${k}`, 'ttl', 'EX', 3600 + rnd(100));
        break;
      case 11:
        await r.del(`s:${k}`);
        break;
    }
  }
  await r.select(0);
}

test('digest oracle: restoring to each recorded time gives the digest the source had then', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  const bg = new Redis(src.redis.url);
  try {
    await phase(r, 300, 1); // before the first baseline: part of the RDB
    await src.agent.baseline();
    const points: { ts: number; digest: string }[] = [];
    for (let p = 0; p < 3; p++) {
      await phase(r, 200, 10 + p);
      if (p === 1) {
        // A baseline taken while another client keeps writing: exercises RDB + tail.
        let stop = false;
        const writer = (async () => {
          let i = 0;
          while (!stop) await bg.hset('bg', `f${i++ % 200}`, i);
        })();
        await src.agent.baseline();
        stop = true;
        await writer;
      }
      const digest = await digestOf(src.redis.url);
      points.push({ ts: await serverTimeUs(r), digest });
    }
    await synced(src);
    // Idle now: the agent's heartbeat proves capture up to the last recorded point.
    await waitForWindow(stack, src.node, points[points.length - 1]!.ts);
    for (const pt of points) {
      const report = await doRestore({ node: src.node, to: pt.ts, spawn: {} });
      assert.equal(report.digest, pt.digest, `digest at ${pt.ts}`);
    }
    // Into an existing empty target and into an RDB file: the same dataset.
    const last = points[points.length - 1]!;
    const target = await testRedis(['--enable-debug-command', 'yes']);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-rdb-'));
    try {
      await doRestore({ node: src.node, to: last.ts, target: target.url });
      assert.equal(await digestOf(target.url), last.digest);
      const file = path.join(dir, 'out.rdb');
      await doRestore({ node: src.node, to: last.ts, rdb: file });
      const fromRdb = await startRedisServer({
        bin: process.env[TEST_REDIS_BIN_ENV],
        dir,
        args: ['--dbfilename', 'out.rdb', '--enable-debug-command', 'yes'],
      });
      try {
        assert.equal(await digestOf(fromRdb.url), last.digest);
      } finally {
        await fromRdb.stop();
      }
      // A non-empty target is refused and left untouched.
      await assert.rejects(doRestore({ node: src.node, to: last.ts, target: target.url }), /not empty|--flush/);
      assert.equal(await digestOf(target.url), last.digest);
    } finally {
      await target.stop();
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    r.disconnect();
    bg.disconnect();
    await src.close();
  }
});

test('time semantics: an expired-then-appended key stays gone; a future expiry is kept exactly', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.multi().set('k', 'v', 'PX', 300).append('k', 'x').exec();
    await r.set('later', 'v', 'PXAT', Date.now() + 600_000);
    await r.set('relative', 'v', 'PX', 600_000);
    const expiry = Number(await r.pexpiretime('k'));
    const laterExpiry = Number(await r.pexpiretime('later'));
    const relativeExpiry = Number(await r.pexpiretime('relative'));
    const lastSeq = await synced(src);
    // Restore only once the source's expiry has passed.
    while (Date.now() <= expiry) await new Promise((res) => setTimeout(res, 25));
    const report = await doRestore({ node: src.node, toSeq: lastSeq, spawn: {} });
    const restored = new Redis(report.url!);
    try {
      assert.equal(await restored.exists('k'), 0, 'k expired: not a persistent "x"');
      assert.equal(Number(await restored.pexpiretime('later')), laterExpiry);
      assert.equal(
        Number(await restored.pexpiretime('relative')),
        relativeExpiry,
        'a relative expiry comes back to the exact ms',
      );
      assert.ok(report.expiredAtRestore >= 1);
    } finally {
      restored.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('errors: unknown node, cutoff outside the windows, a hole in seq', async () => {
  await assert.rejects(
    doRestore({ node: 'no-such-node', to: Date.now() * 1000, spawn: {} }),
    /no events captured for node "no-such-node"/,
  );
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    const t0 = Date.now() * 1000 - 60_000_000;
    await r.set('a', '1'); // before the first baseline: not restorable
    await src.agent.baseline();
    await r.set('b', '2');
    const last = await synced(src);
    await assert.rejects(doRestore({ node: src.node, to: t0, spawn: {} }), /no restorable window.*windows:/);
    await assert.rejects(
      doRestore({ node: src.node, to: Date.now() * 1000 + 3_600_000_000, spawn: {} }),
      /no restorable window/,
    );
    await assert.rejects(doRestore({ node: src.node, to: 'yesterday-ish', spawn: {} }), /not a time|accepted/i);
    // Forge a hole: an event stored at last + 3, nothing at last + 1 and last + 2.
    const epoch = src.agent.stats().epoch;
    await stack.store.command(
      `INSERT INTO flashback.events (node, epoch, seq, ts_us, time, db, client, kind, command, key, keys, args, replay, tx) VALUES (${sqlString(src.node)}, ${epoch}, ${last + 3}, ${Date.now() * 1000}, now(), 0, 'x', 'command', 'SET', 'z', ['z'], ['SET','z','1'], '', 0)`,
    );
    await assert.rejects(doRestore({ node: src.node, toSeq: last + 3, spawn: {} }), /no restorable window.*seq/);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('key-subset restore: only matching keys (and only --db), each exactly as at the cutoff', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.sadd('order:1', 'a', 'b');
    await r.sadd('user:1', 'x');
    // A multi-key command reading a dropped key into a kept one.
    await r.sunionstore('user:all', 'user:1', 'order:1');
    await r.set(Buffer.from([0x75, 0x73, 0x65, 0x72, 0x3a, 0xff]), 'binary user'); // "user:\xff"
    await r.select(1);
    await r.set('user:db1', 'one');
    await r.select(0);
    const last = await synced(src);
    await r.del('user:1'); // after the cutoff
    const sub = await doRestore({ node: src.node, toSeq: last, spawn: {}, keys: ['user:*'] });
    const restored = new Redis(sub.url!);
    try {
      assert.deepEqual((await restored.keys('*')).sort(), ['user:1', 'user:all', 'user:\ufffd'].sort());
      assert.deepEqual((await restored.smembers('user:all')).sort(), ['a', 'b', 'x']);
      assert.equal(await restored.exists('order:1'), 0);
      await restored.select(1);
      assert.equal(await restored.get('user:db1'), 'one');
      assert.equal(sub.droppedKeys, 1);
    } finally {
      restored.disconnect();
    }
    const onlyDb1 = await doRestore({ node: src.node, toSeq: last, spawn: {}, db: 1 });
    const r1 = new Redis(onlyDb1.url!);
    try {
      assert.equal(Number(await r1.dbsize()), 0);
      await r1.select(1);
      assert.deepEqual(await r1.keys('*'), ['user:db1']);
    } finally {
      r1.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('SPOP, a served BLPOP and XADD * restore exactly and the report has no warning: their state (or id) was captured', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.sadd('s', 'a', 'b', 'c');
    await r.spop('s');
    await r.rpush('l', 'x', 'y');
    await r.blpop('l', 1);
    await r.xadd('st', '1-1', 'f', 'v');
    await r.xadd('st', '*', 'f', 'generated');
    const digest = await digestOf(src.redis.url);
    const last = await synced(src);
    const report = await doRestore({ node: src.node, toSeq: last, spawn: {} });
    assert.deepEqual(report.warnings, []);
    assert.equal(report.digest, digest);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('a lazy expiry is captured exactly where it happened (just before the SET that caused it), and the key restores with its new value', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('session', 'old', 'PX', 30);
    const expiry = Number(await r.pexpiretime('session'));
    // Waiting for the wall clock to pass the source's expiry, not for another process.
    while (Date.now() <= expiry + 1) await new Promise((res) => setTimeout(res, 5));
    // This SET expires the old key lazily (its notification comes after this line) and creates the new one.
    await r.set('session', 'new', 'PX', 600_000);
    const newExpiry = Number(await r.pexpiretime('session'));
    await waitFor('the expiration event', async () => (src.agent.stats().serverChanges > 0 ? true : undefined));
    const last = await synced(src);
    // Notifications share the MONITOR socket: the expiration sits right before the command that triggered it.
    const rows = await stack.store.query<{ kind: string; command: string; args: string }>(
      `SELECT kind, command, arrayStringConcat(args, ' ') AS args FROM flashback.events WHERE node = ${sqlString(src.node)} AND (kind = 'expired' OR command = 'SET') ORDER BY seq`,
    );
    assert.deepEqual(
      rows.map((r) => `${r.kind} ${r.command}`),
      ['command SET', 'expired expired', 'command SET'],
    );
    assert.match(rows[2]!.args, /session new/);
    const report = await doRestore({ node: src.node, toSeq: last, spawn: {} });
    const restored = new Redis(report.url!);
    try {
      assert.equal(await restored.get('session'), 'new');
      assert.equal(Number(await restored.pexpiretime('session')), newExpiry);
    } finally {
      restored.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('a read-modify-write on an expired key (INCR after the TTL) restores as the source had it, cut before or after the expiration', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('counter', '5', 'PX', 30);
    const expiry = Number(await r.pexpiretime('counter'));
    while (Date.now() <= expiry + 1) await new Promise((res) => setTimeout(res, 5));
    // INCR finds the key expired (deleted lazily, notification after this line) and starts from 0.
    assert.equal(await r.incr('counter'), 1);
    await waitFor('the expiration event', async () => (src.agent.stats().serverChanges > 0 ? true : undefined));
    const last = await synced(src);
    const rows = await stack.store.query<{ seq: number; kind: string; command: string }>(
      `SELECT seq, kind, command FROM flashback.events WHERE node = ${sqlString(src.node)} AND (command = 'INCR' OR kind = 'expired') ORDER BY seq`,
    );
    const incrSeq = rows.find((x) => x.command === 'INCR')!.seq;
    for (const toSeq of [incrSeq, last]) {
      const report = await doRestore({ node: src.node, toSeq, spawn: {} });
      const restored = new Redis(report.url!);
      try {
        assert.equal(
          await restored.get('counter'),
          '1',
          `restored to seq ${toSeq} (INCR at ${incrSeq}, events: ${JSON.stringify(rows)})`,
        );
        assert.equal(Number(await restored.pttl('counter')), -1);
      } finally {
        restored.disconnect();
      }
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});
