// Instants 15 ms after bursts of nondeterministic and server-side work (SPOP, XADD *, blocked pops served by another
// client, scripts using TIME, FLUSHDB, SWAPDB, MOVE) by several clients, restored by time: in replication mode each
// restore is the source's state at the instant; in monitor mode each is, or its report's warnings name the instant.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { formatTsUs } from '../core/time.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { compareSnapshots, snapshot, type Snapshot } from './helpers/differential.js';
import { seededRandom } from './helpers/seeded-random.js';
import {
  serverTimeUs,
  startSource,
  startStack,
  syncedSource,
  waitFor,
  waitForWindow,
  type Stack,
} from './helpers/stack.js';

const SEED = Number(process.env.FLASHBACK_SEED ?? Date.now() % 1_000_000);
const BURSTS = 8;
/** The scenario of issue 13: the instant is taken this long after a burst's last reply. */
const AFTER_BURST_MS = 15;

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawned: number[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'burst-instants-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-burst-'));
});
after(async () => {
  for (const pid of spawned) await stopPid(pid).catch(() => undefined);
  await nc?.close();
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

interface Instant {
  burst: number;
  tsUs: number;
  digest: string;
  snapshot: Snapshot;
}

/**
 * One burst by five clients at once. c0 (db 0): SADD, SPOP with and without a count, `XADD *`, ending with a
 * pipeline of them. c1 and c2 (db 1): c1 blocks in BLPOP / BZPOPMIN on keys never used before, c2 serves each once
 * c1 is seen blocked. c3 (db 2): scripts writing TIME, MOVE to db 3, SWAPDB 2 3. c4 (db 3): writes, SPOP, FLUSHDB.
 * c0, c3 and c4 go on until the blocked pops are served, so the burst ends with all kinds of work in flight.
 */
async function burst(c: Redis[], b: number, seed: number): Promise<void> {
  // One generator per client: the clients interleave differently each run, their commands do not.
  const ints = c.map((_, i) => {
    const dice = seededRandom(seed * 1_000 + b * 10 + i);
    return (n: number) => Math.floor(dice() * n);
  });
  const [c0, c1, c2, c3, c4] = c as [Redis, Redis, Redis, Redis, Redis];
  const steps = 2 + ints[1]!(3);
  const blockedKey = (step: number) => `${step % 2 ? 'bz' : 'bl'}:${b}:${step}`;
  let served = false;
  const busy = (j: number, min: number) => j < min || !served;
  /** SADD, SPOP, `XADD *`, `rounds` times, sent as one pipeline. */
  const spopAndXadd = async (j: number, rounds: number) => {
    const p = c0.pipeline();
    for (let k = 0; k < rounds; k++) {
      const set = `set:${ints[0]!(3)}`;
      p.sadd(set, ...Array.from({ length: 4 }, () => `m${ints[0]!(40)}`));
      if (ints[0]!(2) === 0) p.spop(set);
      else p.spop(set, 1 + ints[0]!(3));
      p.xadd(`stream:${ints[0]!(2)}`, '*', 'burst', String(b), 'j', String(j + k));
    }
    for (const [err] of (await p.exec()) ?? []) if (err) throw err;
  };
  await Promise.all([
    (async () => {
      let j = 0;
      for (; busy(j, 15); j++) await spopAndXadd(j, 1);
      await spopAndXadd(j, 10);
    })(),
    (async () => {
      for (let step = 0; step < steps; step++) {
        const r = step % 2 ? await c1.bzpopmin(blockedKey(step), 10) : await c1.blpop(blockedKey(step), 10);
        assert.ok(r, `the blocked pop on ${blockedKey(step)} was served`);
      }
    })(),
    (async () => {
      for (let step = 0; step < steps; step++) {
        await waitFor(
          `c1 blocked on ${blockedKey(step)}`,
          async () => (/blocked_clients:[1-9]/.test(String(await c2.info('clients'))) ? true : undefined),
          10_000,
        );
        if (step % 2) await c2.zadd(blockedKey(step), ints[2]!(100), `z${b}`, 100 + ints[2]!(100), `y${b}`);
        else await c2.lpush(blockedKey(step), `v${b}`, `w${b}`);
      }
      served = true;
    })(),
    (async () => {
      for (let j = 0; busy(j, 6); j++) {
        await c3.eval(
          "local t = redis.call('TIME') redis.call('SET', KEYS[1], t[1] .. '.' .. t[2]) redis.call('ZADD', KEYS[2], t[2], ARGV[1]) return 1",
          2,
          `now:${ints[3]!(4)}`,
          'times',
          `b${b}j${j}`,
        );
        const moved = `mv:${b}:${j}`;
        await c3.set(moved, String(j));
        await c3.move(moved, 3);
        if (j % 4 === 3) await c3.swapdb(2, 3);
      }
    })(),
    (async () => {
      const flushAt = 4 + ints[4]!(4);
      for (let j = 0; busy(j, 10); j++) {
        await c4.sadd('pool', `p${ints[4]!(20)}`, `p${ints[4]!(20)}`);
        await c4.spop('pool');
        await c4.hset(`h:${ints[4]!(3)}`, `f${j % 12}`, String(b));
        if (j === flushAt) await c4.flushdb();
      }
    })(),
  ]);
}

async function runBursts(t: TestContext, source: 'replication' | 'monitor'): Promise<void> {
  const seed = SEED + (source === 'monitor' ? 1 : 0);
  const src = await startSource(stack, [], { source });
  const ctl = new Redis(src.redis.url);
  const clients = [0, 1, 1, 2, 3].map((db) => new Redis(src.redis.url, { db }));
  try {
    await syncedSource(stack, src);
    const instants: Instant[] = [];
    for (let b = 0; b < BURSTS; b++) {
      await burst(clients, b, seed);
      const lastReply = performance.now();
      // The scenario, not a synchronisation: the instant is 15 ms after the burst, whatever the capture did meanwhile.
      while (performance.now() - lastReply < AFTER_BURST_MS) await new Promise((r) => setTimeout(r, 1));
      const tsUs = await serverTimeUs(ctl);
      // Nothing writes until the next burst (no key has a TTL): the state read now is the state at tsUs.
      const digest = String(await ctl.call('DEBUG', 'DIGEST'));
      instants.push({ burst: b, tsUs, digest, snapshot: await snapshot(ctl) });
    }
    await syncedSource(stack, src);
    await waitForWindow(stack, src.node, instants[instants.length - 1]!.tsUs);

    const failures: string[] = [];
    let exact = 0;
    let late = 0;
    for (const [i, p] of instants.entries()) {
      const report = await restore(
        { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
        { node: src.node, to: p.tsUs, spawn: {} },
      );
      if (report.pid) spawned.push(report.pid);
      const r = new Redis(report.url!);
      try {
        const digest = String(await r.call('DEBUG', 'DIGEST'));
        const diffs = compareSnapshots(p.snapshot, await snapshot(r));
        if (digest === p.digest && diffs.length === 0) {
          exact++;
          continue;
        }
        const asked = formatTsUs(p.tsUs);
        const said = report.warnings.some((w) => w.includes(asked));
        // A starved machine (CI beside other load) can run the anchor that closes a burst after the instant: the
        // burst's tail is then timed after it, and the restore stops inside this burst and says so. That is the
        // capture running late, not a wrong history: the next change's anchor is later than the instant, and the
        // cutoff is past the previous instant. Counted, and at least half the instants must still be exact.
        if (source === 'replication' && said) {
          const [next] = await stack.store.query<{ ts: string }>(
            `SELECT toString(ts_us) AS ts FROM flashback.events WHERE node = ${sqlString(src.node)} AND epoch = ${report.epoch} AND seq = ${report.cutoff.seq + 1}`,
          );
          if (next && Number(next.ts) > p.tsUs && report.cutoff.tsUs >= (instants[i - 1]?.tsUs ?? 0)) {
            late++;
            t.diagnostic(
              `burst ${p.burst}: its closing anchor came ${(Number(next.ts) - p.tsUs) / 1000} ms after the instant (a busy machine); warned`,
            );
            continue;
          }
        }
        // Monitor mode may miss an instant, but never silently; replication mode must not miss one.
        if (source === 'replication' || !said)
          failures.push(
            `burst ${p.burst}, instant ${asked}: digest ${digest} (source ${p.digest}), ${diffs.length} key(s) differ` +
              (diffs.length ? ` (first: ${diffs.slice(0, 3).map((d) => d.line)})` : '') +
              `; cutoff seq ${report.cutoff.seq} at ${report.cutoff.time}; warnings ${JSON.stringify(report.warnings)}` +
              (said ? '' : ' (none names the asked instant)'),
          );
      } finally {
        r.disconnect();
        if (report.pid) await stopPid(report.pid);
        if (report.dir) await rm(report.dir, { recursive: true, force: true });
      }
    }
    t.diagnostic(`${source} mode, seed ${seed}: ${exact} of ${instants.length} instants restored exactly`);
    assert.ok(exact >= instants.length / 2, `${source} mode: ${exact} exact, ${late} late of ${instants.length}`);
    assert.deepEqual(
      failures,
      [],
      `${source} mode, seed ${seed} (FLASHBACK_SEED=${SEED}), node ${src.node}: ${exact} of ${instants.length} exact`,
    );
  } finally {
    for (const c of clients) c.disconnect();
    ctl.disconnect();
    await src.close();
  }
}

test('replication mode: every instant 15 ms after a burst restores exactly by time', { timeout: 120_000 }, (t) =>
  runBursts(t, 'replication'),
);

test(
  'monitor mode: every instant 15 ms after a burst restores exactly by time, or its report says not',
  {
    timeout: 120_000,
  },
  (t) => runBursts(t, 'monitor'),
);
