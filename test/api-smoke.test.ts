// The API over a real socket: startApi + a restorer; POST /restores → poll GET /restores/:id → the spawned instance
// holds the data; DELETE /instances stops it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { access, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { startApi, type Api } from '../api/index.js';
import { ApiClient } from '../cli/api-client.js';
import { FlashbackError } from '../core/errors.js';
import { newJobKeyText, parseJobKey } from '../core/bus/job-secret.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { renderRegistries } from '../core/metrics/exposition.js';
import { startRestorer, type Restorer } from '../restorer/index.js';
import { startSource, startStack, syncedSource, waitFor, type Stack } from './helpers/stack.js';

const TOKEN = `tok-${randomUUID()}`;
/** Shared by API and restorer: the spawned instance's generated password reaches the client sealed. */
const jobKey = parseJobKey(newJobKeyText());
let stack: Stack;
let api: Api;
let restorer: Restorer;
let dir: string;
const pids: number[] = [];

before(async () => {
  stack = await startStack();
  dir = await mkdtemp(path.join(os.tmpdir(), 'fb-api-smoke-'));
  api = await startApi({
    port: 0,
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    tokens: [TOKEN],
    jobKey,
  });
  restorer = await startRestorer({
    jobKey,
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    instancesDir: dir,
    closeTimeoutMs: 1_000,
  });
});

after(async () => {
  for (const pid of pids) if (isPidAlive(pid)) process.kill(pid, 'SIGTERM');
  await restorer?.close();
  await api?.close();
  await stack?.close();
  await rm(dir, { recursive: true, force: true });
});

test('a restore through the HTTP API lands in a spawned instance holding the data of that instant', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.hset('userprofile', 'before1', '1', 'before2', '2');
    await r.set(Buffer.from('bin\x00key'), Buffer.from([0, 0xff, 0x10]));
    // The cutoff in the source's own clock: MONITOR timestamps come from it.
    const [sec, usec] = (await r.time()) as [string | number, string | number];
    const cutoffUs = Number(sec) * 1_000_000 + Number(usec);
    await waitFor('the clock to move past the cutoff', async () => {
      const [s2, u2] = (await r.time()) as [string | number, string | number];
      return Number(s2) * 1_000_000 + Number(u2) > cutoffUs ? true : undefined;
    });
    await r.hset('userprofile', 'after', '3');
    await r.del('bin\x00key');
    // A marker after the last write, stored with every seq before it, and a window reaching it (the baseline's row
    // goes its own way through the sink: seen missing once on a loaded box).
    await syncedSource(stack, src, r);

    const client = new ApiClient(api.url, TOKEN);
    const health = await fetch(`${api.url}/health`);
    assert.equal(health.status, 200);
    const windows = await client.windows(src.node);
    assert.equal(windows.length, 1);
    assert.ok(windows[0]!.fromTsUs <= cutoffUs && cutoffUs <= windows[0]!.toTsUs);

    const history = await client.history({ node: src.node, key: 'userprofile' });
    assert.deepEqual(
      history.map((e) => e.args.slice(2)),
      [
        ['after', '3'],
        ['before1', '1', 'before2', '2'],
      ],
    );

    // Outside every window: refused at once, over the wire, as our error.
    await assert.rejects(
      client.createRestore({ node: src.node, to: String(windows[0]!.toTsUs + 3_600_000_000), spawn: {} }),
      (e: unknown) => e instanceof FlashbackError && e.code === 'OUTSIDE_WINDOW',
    );

    const job = await client.createRestore({ node: src.node, to: String(cutoffUs), spawn: {} });
    const phases: string[] = [];
    const done = await client.waitForRestore(job.id, { timeoutMs: 60_000, onStatus: (s) => phases.push(s.state) });
    assert.equal(done.state, 'done');
    assert.equal(phases.at(-1), 'done');
    const report = done.report!;
    assert.ok(report.url && report.pid && report.dir);
    pids.push(report.pid);
    assert.equal(report.node, src.node);
    assert.equal(report.cutoff.seq, job.cutoff.seq);
    assert.ok(report.cutoff.tsUs <= cutoffUs);

    // The instance has a generated password: in the report's url as ***, in the first answer after done.
    assert.match(done.password ?? '', /^[0-9a-f]{48}$/);
    assert.equal((await client.getRestore(job.id)).password, undefined);
    const restored = new Redis(report.url.replace(':***@', `:${done.password}@`));
    try {
      assert.deepEqual(await restored.hgetall('userprofile'), { before1: '1', before2: '2' });
      assert.deepEqual(await restored.getBuffer(Buffer.from('bin\x00key')), Buffer.from([0, 0xff, 0x10]));
      assert.equal(await restored.dbsize(), 2);
    } finally {
      restored.disconnect();
    }

    const instances = await client.instances();
    assert.deepEqual(
      instances.map((i) => [i.id, i.url, i.pid, i.node]),
      [[job.id, report.url, report.pid, src.node]],
    );
    const stopped = await client.stopInstance(job.id);
    assert.equal(stopped.pid, report.pid);
    assert.equal(isPidAlive(report.pid), false);
    await assert.rejects(access(report.dir));
    assert.deepEqual(await client.instances(), []);
    await assert.rejects(
      client.stopInstance(job.id),
      (e: unknown) => e instanceof FlashbackError && e.code === 'NOT_FOUND',
    );

    const metrics = await (await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(metrics, /^flashback_restore_jobs\{state="done"\} 1$/m);
    // The restore's duration is the restorer's histogram (its own /metrics; `flashback up` adds it to the API's).
    const restorerMetrics = await renderRegistries([restorer.metrics()]);
    assert.match(restorerMetrics, /^flashback_restorer_job_duration_seconds_count 1$/m);
    assert.match(restorerMetrics, /^flashback_restorer_jobs_done_total 1$/m);
  } finally {
    r.disconnect();
    await src.close();
  }
});
