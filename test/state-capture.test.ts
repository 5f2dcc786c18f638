// Nondeterministic writes and pops served to blocked clients: the agent captures the keys' state at its exact MONITOR
// position, so restores are exact just before, at and after them.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { approximateGroupKeys } from '../core/redis/tail-groups.js';
import { restoreWindows } from '../core/store/windows.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../restorer/index.js';
import {
  serverTimeUs,
  startSource,
  startStack,
  waitFor,
  type Stack,
  syncedSource,
  type Source,
} from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawned: { pid?: number }[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'state-capture-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-state-'));
});
after(async () => {
  for (const s of spawned) if (s.pid) await stopPid(s.pid);
  await nc?.close();
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

const synced = (src: Source) => syncedSource(stack, src);

/**
 * What must match: the dataset digest, and stream internals DEBUG DIGEST may not cover (PEL delivery times, consumers).
 */
async function fingerprint(r: Redis, streams: string[] = []): Promise<string> {
  const parts = [String(await r.call('DEBUG', 'DIGEST'))];
  for (const s of streams)
    parts.push(JSON.stringify(await r.call('XINFO', 'STREAM', s, 'FULL').catch((e: Error) => e.message)));
  return parts.join('\n');
}

/** Restores the source at a cutoff into a spawned instance and returns its fingerprint. */
async function restoredFingerprint(
  src: Source,
  cut: Omit<RestoreRequest, 'node' | 'spawn'>,
  streams: string[] = [],
): Promise<string> {
  const report = await restore(
    { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
    { node: src.node, spawn: {}, ...cut } as RestoreRequest,
  );
  spawned.push(report);
  const r = new Redis(report.url!);
  try {
    return await fingerprint(r, streams);
  } finally {
    r.disconnect();
    await stopPid(report.pid!);
  }
}

/** Seq of the n-th (0-based) captured command named `command`. */
async function seqOf(src: Source, command: string, n = 0): Promise<number> {
  const rows = await stack.store.query<{ seq: string }>(
    `SELECT seq FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = ${sqlString(command)} ORDER BY seq LIMIT 1 OFFSET ${n}`,
  );
  assert.ok(rows[0], `no ${command} #${n} captured`);
  return Number(rows[0].seq);
}

test('SPOP (also inside a script) and XADD * / XREADGROUP / XCLAIM / XAUTOCLAIM restore exactly before, at and after each', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.sadd('s', ...Array.from({ length: 64 }, (_, i) => `m${i}`));
    await r.xadd('st', 'MAXLEN', '~', '1000', '*', 'f', 'v0');
    await r.xgroup('CREATE', 'st', 'g', '0');
    const steps: { command: string; run: () => Promise<unknown> }[] = [
      { command: 'SPOP', run: () => r.spop('s') },
      { command: 'SPOP', run: () => r.spop('s', 5) },
      {
        command: 'EVAL',
        run: () => r.eval("redis.call('SPOP', KEYS[1]) return redis.call('SADD', KEYS[2], 'x')", 2, 's', 'other'),
      },
      { command: 'XADD', run: () => r.xadd('st', '*', 'f', 'v1') },
      { command: 'XADD', run: () => r.xadd('st', `${Date.now() + 5}-*`, 'f', 'v2') },
      { command: 'XREADGROUP', run: () => r.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 2, 'STREAMS', 'st', '>') },
      { command: 'XCLAIM', run: () => r.xclaim('st', 'g', 'c2', 0, '0-1') },
      { command: 'XAUTOCLAIM', run: () => r.xautoclaim('st', 'g', 'c3', 0, '0-0') },
    ];
    const seen = new Map<string, number>([['XADD', 1]]); // the set-up's XADD is #0
    const points: { command: string; n: number; before: string; after: string; tsUs: number }[] = [];
    for (const step of steps) {
      const beforeFp = await fingerprint(r, ['st']);
      await step.run();
      const n = seen.get(step.command) ?? 0;
      seen.set(step.command, n + 1);
      points.push({
        command: step.command,
        n,
        before: beforeFp,
        after: await fingerprint(r, ['st']),
        tsUs: await serverTimeUs(r),
      });
    }
    await synced(src);
    const stats = src.agent.stats();
    assert.ok(stats.statesCaptured >= steps.length - 2, `states captured: ${stats.statesCaptured}`);
    // XADD's generated ids are read back from the stream's newest entries instead of a DUMP of the whole stream.
    assert.ok(stats.xaddIdsResolved >= 2, `XADD ids resolved: ${stats.xaddIdsResolved}`);
    for (const p of points) {
      // Lua lines carry the script's writes: the EVAL's own SPOP line is what the agent probes.
      const seq = await seqOf(src, p.command === 'EVAL' ? 'SPOP' : p.command, p.command === 'EVAL' ? 2 : p.n);
      assert.equal(
        await restoredFingerprint(src, { beforeSeq: seq }, ['st']),
        p.before,
        `just before ${p.command} #${p.n}`,
      );
      assert.equal(await restoredFingerprint(src, { toSeq: seq }, ['st']), p.after, `at ${p.command} #${p.n}`);
      assert.equal(
        await restoredFingerprint(src, { to: p.tsUs }, ['st']),
        p.after,
        `after ${p.command} #${p.n} (by time)`,
      );
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('pops served later to blocked clients (BLPOP, BLMOVE and the BLMOVE its push serves, BZPOPMIN, XREADGROUP BLOCK) restore exactly', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  const blocked = [
    new Redis(src.redis.url),
    new Redis(src.redis.url),
    new Redis(src.redis.url),
    new Redis(src.redis.url),
    new Redis(src.redis.url),
  ];
  try {
    await src.agent.baseline();
    await r.xgroup('CREATE', 'jobs', 'workers', '$', 'MKSTREAM');
    const waits = [
      blocked[0]!.blpop('q', 0),
      blocked[1]!.blmove('src', 'dst', 'LEFT', 'RIGHT', 0),
      blocked[2]!.bzpopmin('z', 0),
      blocked[3]!.xreadgroup('GROUP', 'workers', 'w1', 'BLOCK', 0, 'STREAMS', 'jobs', '>'),
      // Served in a chain: the first BLMOVE's push into dst serves this one, which pushes into dst2.
      blocked[4]!.blmove('dst', 'dst2', 'LEFT', 'LEFT', 0),
    ];
    // Every client is blocked on the server (not merely sent): the serve must come from the pushes below.
    await waitFor('five blocked clients', async () =>
      String(await r.info('clients')).includes('blocked_clients:5') ? true : undefined,
    );
    const beforeFp = await fingerprint(r, ['jobs']);
    await r.rpush('q', 'a', 'b');
    await r.rpush('src', 'x', 'y');
    await r.zadd('z', 2, 'two', 1, 'one');
    await r.xadd('jobs', '*', 'job', '1');
    await Promise.all(waits);
    const afterFp = await fingerprint(r, ['jobs']);
    assert.deepEqual(await r.lrange('q', 0, -1), ['b'], 'the source served the blocked BLPOP');
    assert.equal(await r.exists('dst'), 0, 'the BLMOVE served the BLMOVE blocked on its destination');
    assert.deepEqual(await r.lrange('dst2', 0, -1), ['x']);
    const last = await synced(src);
    assert.equal(await restoredFingerprint(src, { toSeq: last }, ['jobs']), afterFp);
    assert.equal(await restoredFingerprint(src, { beforeSeq: await seqOf(src, 'RPUSH') }, ['jobs']), beforeFp);
  } finally {
    r.disconnect();
    for (const b of blocked) b.disconnect();
    await src.close();
  }
});

test('evictions under maxmemory and active expirations are placed exactly: restores match the source at several points', async () => {
  const src = await startSource(stack, ['--maxmemory', '4mb', '--maxmemory-policy', 'allkeys-random', '--hz', '100']);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const value = Buffer.alloc(2048, 7);
    const points: { epoch: number; seq: number; digest: string }[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 1500; i++) {
        const key = `k${(i * 7 + round * 13) % 2500}`;
        // Some short TTLs expire (actively) while later rounds write the same keys again.
        if (i % 5 === 0) await r.set(key, value, 'PX', 20);
        else await r.set(key, value);
        if (i % 3 === 0) await r.append(key, 'x');
      }
      // Waiting for the wall clock to pass the last TTL, then SCAN: it deletes every key left with a passed TTL
      // (captured as expirations too), so the digest holds no logically expired key.
      const lastExpiry = Date.now() + 25;
      while (Date.now() <= lastExpiry) await new Promise((res) => setTimeout(res, 5));
      let cursor = '0';
      do [cursor] = await r.scan(cursor, 'COUNT', 1000);
      while (cursor !== '0');
      // Any command may evict first (memory creeps up with buffers): the digest is taken atomically with a marker
      // write whose seq is the cutoff, so no eviction falls between the two.
      const [, digest] = (await r.multi().set(`point:${round}`, '1').call('DEBUG', 'DIGEST').exec())!;
      points.push({ epoch: 0, seq: 0, digest: String(digest![1]) });
    }
    await synced(src);
    for (const [round, p] of points.entries()) {
      // The epoch too: under a saturated box the agent may end an epoch (MONITOR over its output limit) and seqs
      // start again in the next one.
      const rows = await stack.store.query<{ e: string; s: string }>(
        `SELECT toString(epoch) AS e, toString(seq) AS s FROM flashback.events WHERE node = ${sqlString(src.node)} AND has(keys, ${sqlString(`point:${round}`)})`,
      );
      p.epoch = Number(rows[0]!.e);
      p.seq = Number(rows[0]!.s);
    }
    const info = String(await r.info('stats'));
    assert.ok(Number(/evicted_keys:(\d+)/.exec(info)?.[1]) > 100, 'the workload evicted keys');
    assert.ok(src.agent.stats().serverChanges > 100);
    for (const p of points) {
      // Digest of a restored instance: the restore verifies after expiring passed TTLs, like the source's own state.
      const report = await restore(
        { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
        { node: src.node, epoch: p.epoch, toSeq: p.seq, spawn: {} },
      );
      spawned.push(report);
      await stopPid(report.pid!);
      assert.equal(
        report.digest,
        p.digest,
        `at epoch ${p.epoch} seq ${p.seq} (epochs ended: ${JSON.stringify(src.agent.stats().epochsEnded)})`,
      );
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('bursts of XADD * from parallel clients get their exact ids; an XDEL or explicit id in between falls back to the state', async () => {
  const src = await startSource(stack);
  const clients = [new Redis(src.redis.url), new Redis(src.redis.url), new Redis(src.redis.url)];
  const r = clients[0]!;
  const burst = (interfere: boolean) =>
    Promise.all(
      clients.map(async (c, n) => {
        const p = c.pipeline();
        for (let i = 0; i < 300; i++) {
          p.xadd('hot', 'MAXLEN', '~', interfere ? '200' : '5000', '*', 'client', String(n), 'i', String(i));
          if (interfere && n === 2 && i % 50 === 25) p.xdel('hot', '0-1');
          if (interfere && n === 1 && i === 150) p.xadd('hot', `${Date.now() + 60_000}-0`, 'explicit', '1');
        }
        await p.exec();
      }),
    );
  try {
    await src.agent.baseline();
    // The stream's first XADD in an epoch is checked by its state (the agent learns the stream's entry counter).
    await r.xadd('hot', '*', 'init', '1');
    await synced(src);
    await burst(false);
    const clean = await fingerprint(r, ['hot']);
    const cleanSeq = await synced(src);
    const resolved = src.agent.stats().xaddIdsResolved;
    assert.ok(resolved > 0, `XADD ids resolved: ${resolved}`);
    const states = src.agent.stats().statesCaptured;
    await burst(true);
    const mixed = await fingerprint(r, ['hot']);
    const last = await synced(src);
    assert.ok(src.agent.stats().statesCaptured > states, 'the interfered burst fell back to the state');
    assert.equal(await restoredFingerprint(src, { toSeq: cleanSeq }, ['hot']), clean);
    assert.equal(await restoredFingerprint(src, { toSeq: last }, ['hot']), mixed);
  } finally {
    for (const c of clients) c.disconnect();
    await src.close();
  }
});

test('XADD * on several streams without a pause: events go out while the writes go on, with their exact ids', async () => {
  const src = await startSource(stack);
  const streams = ['s0', 's1', 's2', 's3'];
  const clients = streams.map(() => new Redis(src.redis.url));
  let writing = true;
  let writers: Promise<void>[] = [];
  try {
    await src.agent.baseline();
    // Each stream's first XADD in an epoch is checked by its state (the agent learns the entry counter).
    for (const [i, s] of streams.entries()) await clients[i]!.xadd(s, '*', 'init', '1');
    await synced(src);
    const startSeq = src.agent.stats().lastSeq;
    const published = src.agent.stats().eventsPublished;
    // Small pipelined batches per client, so the agent keeps up while some stream always has an XADD whose id is
    // unknown.
    writers = clients.map(async (c, i) => {
      for (let n = 0; writing; n++) {
        const p = c.pipeline();
        for (let j = 0; j < 10; j++) p.xadd(streams[i]!, 'MAXLEN', '~', '1000', '*', 'n', String(n), 'j', String(j));
        await p.exec();
      }
    });
    // The 600 events after the start must be published while every client still writes.
    await waitFor(
      '600 XADD events published during the load',
      async () => (src.agent.stats().eventsPublished - published >= 600 ? true : undefined),
      30_000,
    );
    assert.ok(src.agent.stats().lastSeq > startSeq + 600);
    writing = false;
    await Promise.all(writers);
    const end = await fingerprint(clients[0]!, streams);
    const last = await synced(src);
    assert.ok(src.agent.stats().xaddIdsResolved >= 600, `XADD ids resolved: ${src.agent.stats().xaddIdsResolved}`);
    assert.equal(await restoredFingerprint(src, { toSeq: last }, streams), end);
  } finally {
    writing = false;
    await Promise.allSettled(writers);
    for (const c of clients) c.disconnect();
    await src.close();
  }
});

test('a state read groups only the stretch it makes exact: an XADD * captured just before an SPOP keeps its own place', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await r.sadd('pool', 'a', 'b', 'c', 'd', 'e');
    await src.agent.baseline();
    await r.xadd('log', '*', 'init', '1');
    await synced(src);
    // One round trip: the XADD still waits for its id when the SPOP starts a state read.
    await r.pipeline().xadd('log', '*', 'n', '1').spop('pool').exec();
    await synced(src);
    const xadd = await seqOf(src, 'XADD', 1);
    const report = await restore(
      { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
      { node: src.node, toSeq: xadd, spawn: {} },
    );
    spawned.push(report);
    const t = new Redis(report.url!);
    try {
      assert.equal(report.cutoff.seq, xadd, "the cutoff stays at the XADD: it is not part of the SPOP's group");
      assert.equal(await t.xlen('log'), 2);
      assert.equal(await t.scard('pool'), 5);
    } finally {
      t.disconnect();
      await stopPid(report.pid!);
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('a baseline taken during consumer-group reads (replicated only in part): the agent re-reads those streams, restores after that are exact and earlier ones start from the baseline before', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  const reader = new Redis(src.redis.url);
  try {
    const first = await src.agent.baseline();
    const p = r.pipeline();
    for (let i = 0; i < 3000; i++) p.xadd('jobs', `${i + 1}-0`, 'n', String(i));
    await p.exec();
    await r.xgroup('CREATE', 'jobs', 'workers', '0');
    // A second stream with pending entries, read during the baseline only by history reads (id 0).
    for (let i = 0; i < 10; i++) await r.xadd('hist', `${i + 1}-0`, 'n', String(i));
    await r.xgroup('CREATE', 'hist', 'g', '0');
    await r.xreadgroup('GROUP', 'g', 'w2', 'COUNT', 10, 'STREAMS', 'hist', '>');
    await synced(src);
    // Group reads while the baseline is taken: those after its RDB reach it only as XCLAIM … LASTID in the tail,
    // which (Redis 7.0) leaves the group's entries-read behind the source's, and a history read (id 0: delivery
    // count and time of the consumer's pending entries) not at all.
    let reading = true;
    const reads = (async () => {
      for (let i = 0; reading; i++) {
        if (i % 2 === 0) await reader.xreadgroup('GROUP', 'workers', 'w1', 'COUNT', 1, 'STREAMS', 'jobs', '>');
        else await reader.xreadgroup('GROUP', 'g', 'w2', 'COUNT', 3, 'STREAMS', 'hist', '0');
      }
    })();
    const second = await src.agent.baseline().finally(() => (reading = false));
    await reads;
    await r.set('after', '1');
    const source = await fingerprint(r, ['jobs', 'hist']);
    const last = await synced(src);
    assert.ok(second.seq > first.seq);

    // The baseline's row reaches ClickHouse on its own through the sink, not with the marker synced waits for.
    await waitFor(`baseline ${second.seq} listed`, async () =>
      (
        await stack.store.query(
          `SELECT seq FROM flashback.baselines WHERE node = ${sqlString(src.node)} AND epoch = ${second.epoch} AND seq = ${second.seq}`,
        )
      )[0]
        ? true
        : undefined,
    );
    // The scenario happened: the new baseline's tail carries group reads of the stream, and the agent re-read it.
    const stored = await clickHouseEventStore(stack.store, stack.store.client).baseline(
      src.node,
      second.epoch,
      second.seq,
    );
    const tail = await objects.getBlob(stored.tailObject);
    assert.deepEqual(
      approximateGroupKeys(Buffer.from(tail!)).map((k) => k.key.toString()),
      ['jobs'],
      'the tail carries XCLAIM … LASTID of jobs',
    );
    const reread = await stack.store.query<{ k: string }>(
      `SELECT DISTINCT key AS k FROM flashback.events WHERE node = ${sqlString(src.node)} AND epoch = ${second.epoch} AND command = 'SETTLE' AND seq > ${second.seq} ORDER BY k`,
    );
    assert.deepEqual(
      reread.map((x) => x.k),
      ['hist', 'jobs'],
      "both streams re-read after the marker (SETTLE); hist only from the agent's own events",
    );

    const deps = { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir };
    const settled = await restore(deps, { node: src.node, toSeq: last, spawn: {} });
    spawned.push(settled);
    const atMarker = await restore(deps, { node: src.node, toSeq: second.seq, spawn: {} });
    spawned.push(atMarker);
    const [t1, t2] = [new Redis(settled.url!), new Redis(atMarker.url!)];
    try {
      assert.equal(settled.baseline.seq, second.seq, 'after the re-read the new baseline serves');
      assert.equal(await fingerprint(t1, ['jobs', 'hist']), source);
      assert.equal(
        atMarker.baseline.seq,
        first.seq,
        'at its marker the new baseline is not settled: the one before serves',
      );
    } finally {
      t1.disconnect();
      t2.disconnect();
      await stopPid(settled.pid!);
      await stopPid(atMarker.pid!);
    }
  } finally {
    r.disconnect();
    reader.disconnect();
    await src.close();
  }
});

test("a pop served by a script, the served client's own next command the very next line: the serve is still read", async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  const blocked = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const popped = blocked.bzpopmin('z', 0);
    await waitFor('a blocked client', async () =>
      String(await r.info('clients')).includes('blocked_clients:1') ? true : undefined,
    );
    // The script's lines, then (before anything else reaches the server) the served client's next command.
    await r.eval("return redis.call('ZADD', KEYS[1], 1, 'one')", 1, 'z');
    assert.deepEqual(await popped, ['z', 'one', '1']);
    await blocked.set('next', '1');
    const after = await fingerprint(r);
    const last = await synced(src);
    assert.equal(await r.exists('z'), 0);
    assert.equal(await restoredFingerprint(src, { toSeq: last }), after);
  } finally {
    r.disconnect();
    blocked.disconnect();
    await src.close();
  }
});

test('an agent closed right after a state group leaves it restorable: its last heartbeat ends the window after the group', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await r.sadd('pool', 'a', 'b', 'c', 'd');
    await src.agent.baseline();
    await r.spop('pool');
    const after = await fingerprint(r);
    // Closed at once (no idle heartbeat yet): the SPOP's group would be the last stored event.
    await src.agent.close();
    const group = await waitFor('the SPOP and its state stored', async () => {
      const rows = await stack.store.query<{ s: string; t: string }>(
        `SELECT max(seq) AS s, any(tx) AS t FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind = 'state'`,
      );
      return Number(rows[0]?.s ?? 0) > 0 ? Number(rows[0]!.s) : undefined;
    });
    const windows = await waitFor('a window', async () => {
      const ws = await restoreWindows(stack.store, src.node);
      return ws.some((w) => w.toSeq >= group) ? ws : undefined;
    });
    assert.ok(
      windows.some((w) => w.toSeq >= group),
      `a window reaches the SPOP's state (seq ${group}): ${JSON.stringify(windows)}`,
    );
    assert.equal(await restoredFingerprint(src, { toSeq: group }), after);
  } finally {
    r.disconnect();
    await src.close();
  }
});
