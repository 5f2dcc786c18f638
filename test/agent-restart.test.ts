// kill -9 of a replication-mode agent (its own process) under write load, then a new agent with the same node id: one
// epoch, gapless seqs, PSYNC continued (no second baseline), and restores exact before the kill and, by seq, during the
// outage; a time restore inside the outage says it cannot be exact — or, with the anchor keeper running, is exact.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { startAnchorKeeper, type AnchorKeeper } from '../agent/index.js';
import { ANCHOR_COMMAND } from '../core/bus/event.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { stopPid, type ServerProcess } from '../core/servers/server-process.js';
import { resolveCutoff } from '../core/store/cutoff.js';
import { cutoffPrecision } from '../core/store/cutoff-precision.js';
import { sqlString } from '../core/store/sql-literal.js';
import { formatTsUs } from '../core/time.js';
import { clickHouseEventStore, restore, type RestoreReport, type RestoreRequest } from '../restorer/index.js';
import { spawnAgent, type AgentProcess } from './helpers/agent-process.js';
import { compareSnapshots, snapshot, type Snapshot } from './helpers/differential.js';
import { seededRandom } from './helpers/seeded-random.js';
import { testRedis } from './helpers/servers.js';
import {
  serverTimeUs,
  SOURCE_ARGS,
  startStack,
  waitFor,
  waitForWindow,
  waitForWindowSeq,
  type Stack,
} from './helpers/stack.js';

/*
 * What holds, and why:
 * - One epoch, gapless: every published batch ends where a stream entry ends and carries its position
 *   (Flashback-Position); the new agent reads the last one and asks PSYNC <replid> <offset+1>. The source's backlog
 *   (raised to 64 MiB by the agent) still holds everything since, so the master answers +CONTINUE and the epoch goes on
 *   with the next seq. Entries the killed agent had read but not yet anchored or published are read again.
 * - No second baseline: a +CONTINUE carries no RDB; only a full resync (a new epoch) stores one.
 * - Instants before the kill and after the restart: the writer is paused, and the instant is taken once an anchor
 *   placed after the pause is stored (every write before it then has a time ≤ that anchor < the instant, and the
 *   marker written after the instant gets a later anchor): by seq and by time the restore is the source's state.
 * - Instants during the outage, without the anchor keeper: nobody places anchors, so every write of the outage
 *   (and the unanchored tail before the kill) gets the time of the restarted agent's first anchor, an upper bound. A
 *   time cutoff inside the outage resolves to the last anchor in the stream before those writes (placed by the killed
 *   agent): not the state at the asked instant once the outage wrote something before it, and the report must say so
 *   (asked vs resolved). The history still holds the outage's writes in stream order, each in its db, so the marker
 *   written at the instant (MULTI SET+DEL: changes nothing) restores it exactly by seq.
 * - With the anchor keeper (`flashback anchor-keeper`, here in-process beside the agent's process): once the agent's
 *   link is gone it anchors the stream whenever it moved, so the outage's writes are bracketed by anchors too and an
 *   instant taken after the keeper's next look restores exactly by time.
 */

const SEED = Number(process.env.FLASHBACK_SEED ?? Date.now() % 1_000_000);
const CLIENTS = 4;
const DBS = 3;
const KEYS = 25;

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let workDir: string;
const agents: AgentProcess[] = [];
const spawned: number[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'agent-restart-test' });
  objects = await ensureBaselineStore(nc);
  workDir = await mkdtemp(path.join(os.tmpdir(), 'fb-agent-restart-'));
});
after(async () => {
  for (const a of agents) await a.kill();
  for (const pid of spawned) await stopPid(pid).catch(() => undefined);
  await nc?.close();
  await stack?.close();
  await rm(workDir, { recursive: true, force: true });
});

/** Several clients on several dbs writing without pause (SET EX, INCR, LPUSH, HSET, a script using TIME). */
class Writer {
  ops = 0;
  readonly errors: string[] = [];
  private stopped = false;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  private waiting = 0;
  private readonly conns: Redis[] = [];
  private loops: Promise<void>[] = [];

  constructor(
    private readonly url: string,
    private readonly seed: number,
  ) {}

  start(): void {
    for (let i = 0; i < CLIENTS; i++) {
      const conn = new Redis(this.url, { db: i % DBS });
      this.conns.push(conn);
      this.loops.push(this.loop(conn, seededRandom(this.seed * 31 + i), i));
    }
  }

  private async loop(r: Redis, dice: () => number, client: number): Promise<void> {
    const k = (family: string) => `${family}:${Math.floor(dice() * KEYS)}`;
    let n = 0;
    while (!this.stopped) {
      if (this.gate) {
        this.waiting++;
        await this.gate;
        this.waiting--;
        continue;
      }
      const v = `c${client}-${n++}`;
      const op = Math.floor(dice() * 6);
      try {
        if (op === 0) await r.set(k('str'), v, 'EX', 1_000 + Math.floor(dice() * 4_000));
        else if (op === 1) await r.incr(k('ctr'));
        else if (op === 2) {
          const key = k('list');
          await r.lpush(key, v, `${v}b`);
          if (dice() < 0.1) await r.ltrim(key, 0, 40);
        } else if (op === 3) await r.hset(k('hash'), `f${Math.floor(dice() * 8)}`, v);
        else if (op === 4)
          await r.eval(
            "local t = redis.call('TIME') redis.call('HSET', KEYS[1], ARGV[1], t[1] .. '.' .. t[2]) redis.call('SET', KEYS[2], t[2]) return 1",
            2,
            k('thash'),
            k('tstr'),
            `f${client}`,
          );
        else await r.set(k('str'), v);
        this.ops++;
      } catch (err) {
        if (!this.stopped) this.errors.push(`client ${client}: ${(err as Error).message}`);
      }
    }
  }

  /** Resolves once every client is idle (its last command answered). */
  async pause(): Promise<void> {
    this.gate = new Promise((r) => (this.open = r));
    await waitFor('every writer client idle', async () => (this.waiting === CLIENTS ? true : undefined), 10_000);
  }

  resume(): void {
    this.gate = undefined;
    this.open?.();
  }

  /** Waits until `more` operations beyond now have been answered. */
  async progress(more: number): Promise<void> {
    const target = this.ops + more;
    await waitFor(`${target} writer operations`, async () => (this.ops >= target ? true : undefined), 30_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.resume();
    await Promise.all(this.loops);
    for (const c of this.conns) c.disconnect();
  }
}

interface Instant {
  label: string;
  /** Recorded while the agent was down. */
  outage: boolean;
  tsUs: number;
  digest: string;
  snapshot: Snapshot;
  markerKey: string;
}

test(
  'kill -9 under write load: one epoch, gapless, PSYNC continued; restores exact (by time inside the outage: a warning)',
  { timeout: 180_000 },
  () => killAndResume(false),
);

test(
  'kill -9 under write load with the anchor keeper beside the agent: restores by time inside the outage exact too',
  { timeout: 180_000 },
  () => killAndResume(true),
);

async function killAndResume(withKeeper: boolean): Promise<void> {
  {
    const node = `test-${randomUUID().slice(0, 8)}`;
    let redis: ServerProcess | undefined;
    let writer: Writer | undefined;
    let keeper: AnchorKeeper | undefined;
    const ctl: Redis[] = [];
    try {
      redis = await testRedis([...SOURCE_ARGS]);
      const control = new Redis(redis.url);
      const reader = new Redis(redis.url);
      ctl.push(control, reader);
      const start = (n: number) => {
        const a = spawnAgent({
          redisUrl: redis!.url,
          natsUrl: stack.nats.url,
          nodeId: node,
          logFile: path.join(workDir, `agent-${n}.log`),
        });
        agents.push(a);
        return a;
      };
      const first = start(1);
      await first.waitForLog('epoch started (full resync)');
      if (withKeeper) keeper = await startAnchorKeeper({ target: parseRedisUrl(redis.url) });
      await storedMarker(node, control, 'started');

      const instants: Instant[] = [];
      let agentUp = true;
      /** Pauses the writer and records the source: state, server time, then a marker that changes nothing. */
      const record = async (label: string): Promise<void> => {
        await writer!.pause();
        if (agentUp) {
          const pausedUs = await serverTimeUs(control);
          // Fact: an anchor placed after the pause is stored, so every write before the pause is timed before it.
          await waitFor(`an anchor of ${node} after ${formatTsUs(pausedUs)} stored`, async () => {
            const rows = await stack.store.query<{ n: string | number }>(
              `SELECT count() AS n FROM flashback.events WHERE node = ${sqlString(node)} AND command = ${sqlString(ANCHOR_COMMAND)} AND ts_us > ${pausedUs}`,
            );
            return Number(rows[0]?.n ?? 0) > 0 ? true : undefined;
          });
        } else if (keeper) {
          // Fact: the keeper looked at the stream twice since the pause: the first look anchored what moved.
          const k = keeper;
          const looks = k.checks;
          await waitFor('two looks of the anchor keeper after the pause', async () =>
            k.checks >= looks + 2 ? true : undefined,
          );
        }
        const tsUs = await serverTimeUs(control);
        const digest = String(await reader.call('DEBUG', 'DIGEST'));
        const snap = await snapshot(reader);
        const markerKey = `__restart_marker:${label}`;
        await writeMarker(control, markerKey);
        instants.push({ label, outage: !agentUp, tsUs, digest, snapshot: snap, markerKey });
        writer!.resume();
      };

      writer = new Writer(redis.url, SEED);
      writer.start();
      await writer.progress(400);
      await record('before-1');
      await writer.progress(400);
      await record('before-2');
      await writer.progress(300);

      assert.equal(await first.kill('SIGKILL'), 'SIGKILL');
      agentUp = false;
      await writer.progress(500);
      await record('outage-1');
      await writer.progress(500);
      await record('outage-2');
      await writer.progress(300);

      const second = start(2);
      await second.waitForLog('replication stream continued');
      agentUp = true;
      await writer.progress(400);
      await record('after-1');
      await writer.progress(200);
      await writer.stop();
      assert.deepEqual(writer.errors, [], 'the writer saw no errors');

      const end = await storedMarker(node, control, 'started');
      await waitForWindowSeq(stack, node, end.epoch, end.seq, 60_000);
      await waitForWindow(stack, node, instants[instants.length - 1]!.tsUs, 60_000);

      // One epoch, gapless seqs from 1.
      const epochs = await stack.store.query<{ epoch: string; n: string; lo: string; hi: string }>(
        `SELECT epoch, uniqExact(seq) AS n, min(seq) AS lo, max(seq) AS hi FROM flashback.events WHERE node = ${sqlString(node)} GROUP BY epoch ORDER BY epoch`,
      );
      assert.equal(epochs.length, 1, `one epoch: ${JSON.stringify(epochs)}`);
      const [ep] = epochs;
      assert.equal(Number(ep!.epoch), end.epoch);
      assert.equal(Number(ep!.lo), 1, 'seqs start at 1');
      assert.equal(Number(ep!.n), Number(ep!.hi), `no seq missing in epoch ${ep!.epoch}: ${ep!.n} of 1..${ep!.hi}`);
      // Continued with PSYNC: the second agent resumed the epoch, and the only baseline is the first full resync's.
      const secondLog = await second.log();
      const logged = secondLog.map((l) => l.msg);
      const resumedAt = Number(secondLog.find((l) => l.msg === 'epoch resumed after a restart')?.seq);
      assert.ok(Number.isSafeInteger(resumedAt), `second agent's log: ${second.logFile}`);
      assert.ok(!logged.includes('epoch started (full resync)'), `no full resync after the restart: ${second.logFile}`);
      const baselines = await stack.store.query<{ epoch: string; seq: string }>(
        `SELECT epoch, seq FROM flashback.baselines WHERE node = ${sqlString(node)} GROUP BY epoch, seq ORDER BY epoch, seq`,
      );
      assert.deepEqual(
        baselines.map((b) => [Number(b.epoch), Number(b.seq)]),
        [[end.epoch, 1]],
        'one baseline: the first full resync',
      );

      const failures: string[] = [];
      for (const p of instants) {
        const marker = await stack.store.query<{ seq: string }>(
          `SELECT seq FROM flashback.events WHERE node = ${sqlString(node)} AND key = ${sqlString(p.markerKey)} AND command = 'DEL' LIMIT 1`,
        );
        assert.equal(marker.length, 1, `the marker of ${p.label} is stored`);
        const bySeq = await restoredState({ node, toSeq: Number(marker[0]!.seq) });
        const seqDiff = describeDifference(p, bySeq);
        if (seqDiff) failures.push(`${p.label} by seq ${marker[0]!.seq}: ${seqDiff}`);

        const byTime = await restoredState({ node, to: p.tsUs });
        const timeDiff = describeDifference(p, byTime);
        if (!p.outage || keeper) {
          if (timeDiff) failures.push(`${p.label} by time ${formatTsUs(p.tsUs)}: ${timeDiff}`);
        } else if (timeDiff) {
          const asked = `restore to ${formatTsUs(p.tsUs)} resolved to `;
          if (!byTime.report.warnings.some((w) => w.startsWith(asked))) {
            // Evidence for the report: what the store-side check says about the same cutoff.
            const precision = await cutoffPrecision(
              stack.store,
              node,
              await resolveCutoff(stack.store, node, { to: p.tsUs }),
            );
            failures.push(
              `${p.label} by time ${formatTsUs(p.tsUs)} (outage): not the state at the instant (${timeDiff}) and no warning says so; cutoffPrecision() on the same cutoff says ${JSON.stringify(precision)}`,
            );
          }
        }
      }
      if (failures.length > 0) {
        // Evidence for a failure: the events on both sides of the resume, with their dbs.
        const around = await stack.store.query<{ seq: string; db: number; command: string; key: string }>(
          `SELECT seq, any(db) AS db, any(command) AS command, any(key) AS key FROM flashback.events WHERE node = ${sqlString(node)} AND seq BETWEEN ${resumedAt - 2} AND ${resumedAt + 4} GROUP BY seq ORDER BY seq`,
        );
        failures.push(
          `resumed after seq ${resumedAt}; events around it: ${around.map((e) => `${e.seq} db ${e.db} ${e.command} ${e.key}`).join(', ')}`,
        );
      }
      assert.deepEqual(failures, [], `seed ${SEED} (FLASHBACK_SEED=${SEED}), node ${node}, logs in ${workDir}`);
    } finally {
      await writer?.stop();
      await keeper?.close();
      for (const c of ctl) c.disconnect();
      for (const a of agents) await a.kill();
      await redis?.stop();
    }
  }
}

/** MULTI SET+DEL of `key`: changes nothing, and the replication stream carries it (a DEL alone of a missing key not). */
async function writeMarker(r: Redis, key: string): Promise<void> {
  const res = await r.multi().set(key, '1').del(key).exec();
  assert.ok(res && res.every(([err]) => !err), `marker ${key} written`);
}

/** Writes a marker and waits until its DEL is stored with every seq before it in its epoch; its epoch and seq. */
async function storedMarker(node: string, r: Redis, label: string): Promise<{ epoch: number; seq: number }> {
  const key = `__restart_marker:${label}`;
  await writeMarker(r, key);
  return waitFor(
    `marker ${key} of ${node} stored with every event before it`,
    async () => {
      const rows = await stack.store.query<{ epoch: string; seq: string }>(
        `SELECT epoch, seq FROM flashback.events WHERE node = ${sqlString(node)} AND key = ${sqlString(key)} AND command = 'DEL' LIMIT 1`,
      );
      if (rows.length === 0) return undefined;
      const epoch = Number(rows[0]!.epoch);
      const seq = Number(rows[0]!.seq);
      const n = await stack.store.query<{ n: string }>(
        `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(node)} AND epoch = ${epoch} AND seq <= ${seq}`,
      );
      return Number(n[0]?.n) >= seq ? { epoch, seq } : undefined;
    },
    60_000,
  );
}

async function restoredState(
  req: Omit<RestoreRequest, 'spawn'>,
): Promise<{ report: RestoreReport; digest: string; snapshot: Snapshot }> {
  const report = await restore(
    { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir: workDir },
    { ...req, spawn: {} },
  );
  if (report.pid) spawned.push(report.pid);
  const r = new Redis(report.url!);
  try {
    return { report, digest: String(await r.call('DEBUG', 'DIGEST')), snapshot: await snapshot(r) };
  } finally {
    r.disconnect();
    if (report.pid) await stopPid(report.pid);
    if (report.dir) await rm(report.dir, { recursive: true, force: true });
  }
}

/** Undefined when the restored state is the recorded one; else the digests and the first keys that differ. */
function describeDifference(
  p: Instant,
  got: { report: RestoreReport; digest: string; snapshot: Snapshot },
): string | undefined {
  const diffs = compareSnapshots(p.snapshot, got.snapshot);
  if (got.digest === p.digest && diffs.length === 0) return undefined;
  return (
    `digest ${got.digest} (source ${p.digest}), ${diffs.length} key(s) differ` +
    (diffs.length ? `, first: ${diffs.slice(0, 3).map((d) => d.line)}` : '') +
    `; cutoff seq ${got.report.cutoff.seq} at ${got.report.cutoff.time}; warnings ${JSON.stringify(got.report.warnings)}`
  );
}
