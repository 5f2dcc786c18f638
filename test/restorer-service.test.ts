// The restorer service on real servers: jobs shared by two restorers run once each; a restorer killed mid-job leaves
// the job failed or retried, never done without a report.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { connectNats, type NatsConnection } from '../core/bus/nats.js';
import { getJob, isFinal, submitRestoreJob, watchJob, type RestoreJobStatus } from '../core/bus/restore-jobs.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { startRestorer, type Restorer } from '../restorer/index.js';
import { testRedis } from './helpers/servers.js';
import { markAndWait, startSource, startStack, waitFor, type Stack } from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
let dir: string;
let src: Awaited<ReturnType<typeof startSource>>;
/** Seqs of the 20 HSETs, in order. */
let hsets: { seq: number; field: string }[];
const children: ChildProcess[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'restorer-service-test' });
  dir = await mkdtemp(path.join(os.tmpdir(), 'fb-restorer-test-'));
  src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    for (let i = 1; i <= 20; i++) await r.hset('h', `f${String(i).padStart(2, '0')}`, i);
    // A marker after the HSETs: once it and every seq before it are stored, so are the 20 HSETs.
    await markAndWait(stack, src, r);
  } finally {
    r.disconnect();
  }
  const rows = await stack.store.query<{ seq: number; args: string[] }>(
    `SELECT seq, any(args) AS args FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'HSET' GROUP BY seq ORDER BY seq`,
  );
  // args are argv as issued: HSET h field value.
  hsets = rows.map((x) => ({ seq: Number(x.seq), field: x.args[2]! }));
  assert.equal(hsets.length, 20);
});

after(async () => {
  for (const c of children) killGroup(c);
  await nc?.close();
  await src?.close();
  await stack?.close();
  await rm(dir, { recursive: true, force: true });
});

/** SIGKILLs a restorer child and everything it started (its own process group, e.g. its scratch redis-server). */
function killGroup(c: ChildProcess): void {
  try {
    process.kill(-c.pid!, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

/** A restorer in a process of its own, so the test can kill it mid-job. */
function restorerProcess(o: { maxAttempts: number }): ChildProcess {
  const c = spawn(
    process.execPath,
    [
      'bin/flashback-dev.js',
      'restorer',
      '--nats',
      stack.nats.url,
      '--clickhouse',
      stack.clickhouse.url,
      '--instances-dir',
      dir,
      '--ack-wait',
      '1s',
      '--max-attempts',
      String(o.maxAttempts),
    ],
    {
      cwd: path.resolve(import.meta.dirname, '..'),
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, FLASHBACK_LOG_LEVEL: 'silent' },
    },
  );
  children.push(c);
  return c;
}

function inProcess(o: { maxAttempts: number }): Promise<Restorer> {
  return startRestorer({
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    instancesDir: dir,
    exportDir: dir,
    ackWaitMs: 1_000,
    maxAttempts: o.maxAttempts,
    pullExpiresMs: 1_000,
  });
}

async function final(id: string, timeoutMs = 60_000): Promise<RestoreJobStatus> {
  return waitFor(
    `job ${id} to finish`,
    async () => {
      const s = await getJob(nc, id);
      return isFinal(s.state) ? s : undefined;
    },
    timeoutMs,
  );
}

async function hkeys(url: string): Promise<string[]> {
  const r = new Redis(url);
  try {
    return (await r.hkeys('h')).sort();
  } finally {
    r.disconnect();
  }
}

test('two restorers share the queue: every job runs once and reports', async () => {
  await using a = await inProcess({ maxAttempts: 3 });
  await using b = await inProcess({ maxAttempts: 3 });
  const cut = [3, 7, 11, 15, 19];
  const ids = [];
  for (const n of cut)
    ids.push(
      // A job's rdb is a plain name in the restorer's export dir (issue 15).
      await submitRestoreJob(nc, { node: src.node, toSeq: hsets[n - 1]!.seq, rdb: `job-${n}.rdb` }),
    );
  const seen = new Map<string, string[]>();
  await Promise.all(
    ids.map(async (id) => {
      const states: string[] = [];
      for await (const s of watchJob(nc, id)) if (states.at(-1) !== s.state) states.push(s.state);
      seen.set(id, states);
    }),
  );
  for (const [i, id] of ids.entries()) {
    const s = await getJob(nc, id);
    assert.equal(s.state, 'done', JSON.stringify(s.error));
    assert.equal(s.attempts, 1);
    assert.ok(s.report);
    assert.equal(s.report.cutoff.seq, hsets[cut[i]! - 1]!.seq);
    assert.equal(s.report.keys, 1);
    assert.equal(s.report.rdb, path.join(dir, `job-${cut[i]}.rdb`));
    assert.ok((await stat(s.report.rdb)).size > 0);
    assert.ok(s.restorer === a.stats().id || s.restorer === b.stats().id);
    assert.equal(seen.get(id)!.at(-1), 'done');
    assert.ok(!seen.get(id)!.includes('failed'));
  }
  assert.equal(a.stats().jobsDone + b.stats().jobsDone, cut.length);
  assert.equal(a.stats().jobsStarted + b.stats().jobsStarted, cut.length);
  assert.equal(a.stats().jobsFailed + b.stats().jobsFailed, 0);
});

test('a failing job ends failed with the error, acknowledged once', async () => {
  await using a = await inProcess({ maxAttempts: 3 });
  const target = await testRedis();
  try {
    const w = new Redis(target.url);
    await w.set('occupied', '1');
    w.disconnect();
    const id = await submitRestoreJob(nc, { node: src.node, toSeq: hsets[4]!.seq, target: target.url });
    const s = await final(id);
    assert.equal(s.state, 'failed');
    assert.equal(s.error?.code, 'TARGET_NOT_EMPTY');
    assert.match(s.error!.message, /not empty/);
    assert.equal(s.report, undefined);
    assert.equal(s.attempts, 1);
    assert.equal(a.stats().jobsFailed, 1);
  } finally {
    await target.stop();
  }
});

/**
 * A job whose target hangs: a real redis-server stopped with SIGSTOP accepts the connection and never answers
 * (the restore checks the target first), so the job stays in hand until the test kills its restorer or resumes the
 * target.
 */
async function hangingJob(maxAttempts: number) {
  const target = await testRedis();
  process.kill(target.pid, 'SIGSTOP');
  const child = restorerProcess({ maxAttempts });
  const id = await submitRestoreJob(nc, { node: src.node, toSeq: hsets[9]!.seq, target: target.url });
  const running = await waitFor(
    `job ${id} running in the child restorer`,
    async () => {
      const s = await getJob(nc, id);
      return s.state === 'running' ? s : undefined;
    },
    60_000,
  );
  assert.match(running.restorer!, new RegExp(`/${child.pid}/`));
  assert.equal(running.attempts, 1);
  killGroup(child);
  await waitFor('the child restorer to die', async () => (isPidAlive(child.pid!) ? undefined : true));
  return {
    id,
    target,
    resume: () => process.kill(target.pid, 'SIGCONT'),
    async close() {
      process.kill(target.pid, 'SIGCONT');
      await target.stop();
    },
  };
}

test('a restorer killed mid-job, no attempts left: the next restorer marks the job failed, never done', async () => {
  const h = await hangingJob(1);
  try {
    await using b = await inProcess({ maxAttempts: 1 });
    const s = await final(h.id);
    assert.equal(s.state, 'failed');
    assert.equal(s.report, undefined);
    assert.equal(s.error?.code, 'INTERNAL');
    assert.match(s.error!.message, /stopped before finishing, 1 time/);
    assert.equal(s.attempts, 1);
    assert.equal(b.stats().jobsStarted, 0);
    assert.equal(b.stats().jobsFailed, 1);
  } finally {
    await h.close();
  }
});

test('a restorer killed mid-job: another restorer retries it (attempts 2) and it finishes with a report', async () => {
  const h = await hangingJob(2);
  try {
    await using b = await inProcess({ maxAttempts: 2 });
    const retry = await waitFor(
      'the retry to run',
      async () => {
        const s = await getJob(nc, h.id);
        return s.state === 'running' && s.attempts === 2 && s.restorer === b.stats().id ? s : undefined;
      },
      60_000,
    );
    assert.equal(retry.report, undefined);
    h.resume();
    const s = await final(h.id);
    assert.equal(s.state, 'done', JSON.stringify(s.error));
    assert.equal(s.attempts, 2);
    assert.ok(s.report);
    assert.equal(s.report.cutoff.seq, hsets[9]!.seq);
    assert.deepEqual(
      await hkeys(h.target.url),
      hsets.slice(0, 10).map((x) => x.field),
    );
  } finally {
    await h.close();
  }
});

test('close() while a job hangs hands it back to the queue: the next restorer takes it as attempt 2', async () => {
  const target = await testRedis();
  process.kill(target.pid, 'SIGSTOP');
  try {
    const a = await startRestorer({
      natsUrl: stack.nats.url,
      clickhouseUrl: stack.clickhouse.url,
      instancesDir: dir,
      ackWaitMs: 1_000,
      maxAttempts: 3,
      closeTimeoutMs: 200,
      pullExpiresMs: 1_000,
    });
    const id = await submitRestoreJob(nc, { node: src.node, toSeq: hsets[1]!.seq, target: target.url });
    await waitFor(
      'the job to run',
      async () => ((await getJob(nc, id)).state === 'running' ? true : undefined),
      60_000,
    );
    await a.close();
    const s = await getJob(nc, id);
    assert.equal(s.state, 'queued');
    assert.equal(s.report, undefined);
    assert.match(s.error!.message, /handed back/);
    assert.equal(a.stats().jobsRequeued, 1);
    // Handed back with a nak, not left to the ack wait: the next restorer starts it as its second attempt.
    const b = await startRestorer({
      natsUrl: stack.nats.url,
      clickhouseUrl: stack.clickhouse.url,
      instancesDir: dir,
      ackWaitMs: 1_000,
      maxAttempts: 3,
      closeTimeoutMs: 200,
      pullExpiresMs: 1_000,
    });
    try {
      const again = await waitFor(
        'attempt 2 on the next restorer',
        async () => {
          const x = await getJob(nc, id);
          return x.state === 'running' && x.attempts === 2 ? x : undefined;
        },
        30_000,
      );
      assert.equal(again.restorer, b.stats().id);
      assert.equal(again.report, undefined);
    } finally {
      await b.close();
    }
    assert.notEqual((await getJob(nc, id)).state, 'done');
  } finally {
    // The abandoned restores may finish now; their outcome is not written (handed back).
    process.kill(target.pid, 'SIGCONT');
    await target.stop();
  }
});

test('a pull expiry under JetStream’s one-second minimum is refused at start, not retried forever', async () => {
  await assert.rejects(
    startRestorer({ natsUrl: stack.nats.url, clickhouseUrl: stack.clickhouse.url, pullExpiresMs: 500 }),
    /pullExpiresMs must be at least 1000/,
  );
});
