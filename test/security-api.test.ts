// Issue 15, API and restorer half, on real servers: each attack of the issue against the API (app.request) and an
// in-process restorer, shown refused: rdb paths, targets off the allow-list, a silent target, cancel, scopes, body
// and answer limits, slow queries beside /health, forged instance stops, and passwords kept out of everything stored.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, symlink } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { buildApp, natsJobClient } from '../api/index.js';
import { newJobKeyText, parseJobKey } from '../core/bus/job-secret.js';
import { connectNats, type NatsConnection } from '../core/bus/nats.js';
import {
  getJob,
  INSTANCES_BUCKET,
  isFinal,
  JOBS_BUCKET,
  putInstance,
  stopInstance,
  submitRestoreJob,
  type RestoreJobStatus,
} from '../core/bus/restore-jobs.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { startRestorer, type Restorer } from '../restorer/index.js';
import { ownInstances, stopRecorded } from '../restorer/instance-records.js';
import { testRedis } from './helpers/servers.js';
import { markAndWait, startSource, startStack, waitFor, type Source, type Stack } from './helpers/stack.js';

const ADMIN = `adm-${randomUUID()}`;
const READ = `rd-${randomUUID()}`;
const RESTORE = `rs-${randomUUID()}`;
/** Passwords that must never show up in what is stored, logged, reported or answered. */
const TARGET_PW = `tpw-${randomBytes(6).toString('hex')}`;
const WRONG_PW = `wpw-${randomBytes(6).toString('hex')}`;
const SILENT_PW = `spw-${randomBytes(6).toString('hex')}`;
const JOB_TIMEOUT_MS = 9_000;

let stack: Stack;
let nc: NatsConnection;
let src: Source;
let seq: number;
let root: string;
let instancesDir: string;
let exportDir: string;
let restorer: Restorer;
let app: ReturnType<typeof buildApp>;
const jobKey = parseJobKey(newJobKeyText());
const logLines: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

function logger(service: string) {
  return pino(
    { level: 'debug', base: { service } },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(chunk.toString());
        cb();
      },
    }),
  );
}

function req(
  a: ReturnType<typeof buildApp>,
  p: string,
  init: RequestInit & { token?: string } = {},
): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${init.token ?? ADMIN}`);
  if (init.body !== undefined) headers.set('content-type', 'application/json');
  return Promise.resolve(a.request(p, { ...init, headers }));
}
const post = (p: string, body: unknown, token?: string) =>
  req(app, p, { method: 'POST', body: JSON.stringify(body), token });

async function errorOf(res: Response, status: number, code: string): Promise<string> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error.code, code, body.error.message);
  return body.error.message;
}

async function finalJob(id: string, timeoutMs = 90_000): Promise<RestoreJobStatus> {
  return waitFor(
    `job ${id} to finish`,
    async () => {
      const s = await getJob(nc, id);
      return isFinal(s.state) ? s : undefined;
    },
    timeoutMs,
  );
}

async function queue(body: Record<string, unknown>): Promise<string> {
  const res = await post('/restores', { node: src.node, toSeq: seq, ...body });
  const json = (await res.json()) as { id: string };
  assert.equal(res.status, 202, JSON.stringify(json));
  return json.id;
}

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'security-api-test' });
  root = await mkdtemp(path.join(os.tmpdir(), 'fb-secapi-'));
  instancesDir = path.join(root, 'instances');
  exportDir = path.join(root, 'exports');
  src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    for (let i = 0; i < 5; i++) await r.set(`k${i}`, `v${i}`);
    seq = await markAndWait(stack, src, r);
  } finally {
    r.disconnect();
  }
  restorer = await startRestorer({
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    instancesDir,
    exportDir,
    jobKey,
    jobTimeoutMs: JOB_TIMEOUT_MS,
    maxInstances: 1,
    maxAttempts: 1,
    ackWaitMs: 2_000,
    pullExpiresMs: 1_000,
    logger: logger('restorer'),
  });
  app = buildApp({
    store: stack.store,
    jobs: natsJobClient(nc),
    tokens: [ADMIN, `read:${READ}`, `restore:${RESTORE}`],
    jobKey,
    exportDir,
    logger: logger('api'),
  });
});

after(async () => {
  const step = async (what: string, f: () => Promise<unknown>) => {
    const t0 = Date.now();
    await f();
    if (process.env.SECAPI_DEBUG) process.stderr.write(`after: ${what} ${Date.now() - t0} ms\n`);
  };
  await step('restorer', async () => restorer?.close());
  // An instance a failed test left running.
  await step('instances', async () => {
    for (const rec of await ownInstances(instancesDir ?? '/nonexistent'))
      await stopRecorded(rec).catch(() => undefined);
  });
  for (const c of cleanups.reverse()) await step('cleanup', async () => c().catch(() => undefined));
  await step('nc', async () => nc?.close());
  await step('src', async () => src?.close());
  await step('stack', async () => stack?.close());
  if (root) await rm(root, { recursive: true, force: true });
});

describe('restore destinations', () => {
  test("rdb: '../', absolute paths, dirs and a symlink out of the export dir are refused with 400", async () => {
    for (const rdb of ['../x.rdb', '/etc/passwd', '/tmp/x.rdb', 'a/b.rdb', '..', '.hidden', 'x\u0000.rdb']) {
      const msg = await errorOf(await post('/restores', { node: src.node, toSeq: seq, rdb }), 400, 'BAD_INPUT');
      assert.match(msg, /plain file name|rdb/, rdb);
    }
    await rm(exportDir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(exportDir, { recursive: true, mode: 0o700 }));
    await symlink('/etc/passwd', path.join(exportDir, 'out.rdb'));
    const msg = await errorOf(
      await post('/restores', { node: src.node, toSeq: seq, rdb: 'out.rdb' }),
      400,
      'BAD_INPUT',
    );
    assert.match(msg, /symlink/);
    // A forged job on the bus with a path: the restorer refuses it too, and writes nothing.
    const forged = await submitRestoreJob(nc, { node: src.node, toSeq: seq, rdb: '../../forged.rdb' });
    const f = await finalJob(forged);
    assert.equal(f.state, 'failed');
    assert.equal(f.error?.code, 'BAD_INPUT');
    assert.equal(existsSync(path.join(root, 'forged.rdb')), false);
    assert.equal(existsSync(path.join(path.dirname(root), 'forged.rdb')), false);
  });

  test('a plain rdb name is written into the export dir, mode 600', async () => {
    const id = await queue({ rdb: 'ok.rdb' });
    const s = await finalJob(id);
    assert.equal(s.state, 'done', JSON.stringify(s.error));
    assert.equal(s.report!.rdb, path.join(exportDir, 'ok.rdb'));
    assert.equal((await stat(path.join(exportDir, 'ok.rdb'))).mode & 0o777, 0o600);
    assert.equal((await stat(exportDir)).mode & 0o777, 0o700);
  });

  test('a target off the allow-list is refused with 403 by the API, and a forged job by the restorer', async () => {
    for (const target of ['redis://10.255.255.1:6379', 'redis://203.0.113.7:6379/0', 'redis://example.com:6379']) {
      const msg = await errorOf(
        await post('/restores', { node: src.node, toSeq: seq, target, flush: true }),
        403,
        'FORBIDDEN',
      );
      assert.match(msg, /allow-list/);
    }
    const forged = await submitRestoreJob(nc, { node: src.node, toSeq: seq, target: 'redis://10.255.255.1:6379' });
    const f = await finalJob(forged);
    assert.equal(f.error?.code, 'FORBIDDEN', JSON.stringify(f.error));
  });
});

describe('jobs that hang, cancel and the instance cap', () => {
  test('a silent target fails within the job deadline and the next job runs; a queued job is cancelled', async (t) => {
    // Accepts and reads, never answers (a paused socket would not notice the client closing, and close() would wait).
    const silent = net.createServer((s) => s.resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => silent.close(r)));
    const port = (silent.address() as net.AddressInfo).port;
    const started = Date.now();
    const hung = await queue({ target: `redis://:${SILENT_PW}@127.0.0.1:${port}/0` });
    const cancelled = await queue({ rdb: 'never.rdb' });
    const next = await queue({ rdb: 'next.rdb' });
    // The second job waits behind the hung one: cancel it while queued.
    const c = await req(app, `/restores/${cancelled}`, { method: 'DELETE', token: RESTORE });
    const cj = (await c.json()) as RestoreJobStatus;
    assert.equal(c.status, 200, JSON.stringify(cj));
    assert.equal(cj.state, 'failed');
    assert.equal(cj.error?.code, 'CANCELLED');
    const h = await finalJob(hung);
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`silent target: job failed after ${seconds.toFixed(1)} s (deadline ${JOB_TIMEOUT_MS / 1000} s)`);
    assert.equal(h.state, 'failed');
    assert.ok(['TIMEOUT', 'CONNECTION'].includes(h.error!.code), JSON.stringify(h.error));
    assert.match(h.error!.message, /deadline|did not answer/);
    const n = await finalJob(next);
    assert.equal(n.state, 'done', JSON.stringify(n.error));
    assert.equal((await finalJob(cancelled)).error?.code, 'CANCELLED');
    assert.equal(existsSync(path.join(exportDir, 'never.rdb')), false);
    // Cancelling a finished job is a conflict.
    await errorOf(await req(app, `/restores/${next}`, { method: 'DELETE' }), 409, 'CONFLICT');
  });

  test('DELETE /restores/{id} stops a running job and the restorer takes the next', async () => {
    const silent = net.createServer((s) => s.resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => silent.close(r)));
    const port = (silent.address() as net.AddressInfo).port;
    const hung = await queue({ target: `redis://127.0.0.1:${port}` });
    await waitFor('the job to run', async () => ((await getJob(nc, hung)).state === 'running' ? true : undefined));
    const res = await req(app, `/restores/${hung}`, { method: 'DELETE' });
    const body = (await res.json()) as RestoreJobStatus;
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.state, 'failed');
    assert.equal(body.error?.code, 'CANCELLED');
    const next = await queue({ rdb: 'after-cancel.rdb' });
    assert.equal((await finalJob(next)).state, 'done');
  });
});

describe('scopes', () => {
  test('a token outside its scope gets 403 naming the scope needed', async () => {
    const r1 = await post('/restores', { node: src.node, toSeq: seq, rdb: 'x.rdb' }, READ);
    const body1 = (await r1.json()) as { error: { code: string; message: string; scope: string } };
    assert.equal(r1.status, 403);
    assert.equal(body1.error.scope, 'restore');
    assert.match(body1.error.message, /needs a token of scope "restore"/);
    const r2 = await req(app, '/instances', { token: RESTORE });
    assert.equal(r2.status, 403);
    assert.match(await errorOf(r2, 403, 'FORBIDDEN'), /scope "admin"/);
    assert.equal((await req(app, '/restores/x', { method: 'DELETE', token: READ })).status, 403);
    assert.equal((await req(app, `/instances/x`, { method: 'DELETE', token: RESTORE })).status, 403);
    // Within scope: read reads, restore reads and lists jobs, admin everything.
    assert.equal((await req(app, '/nodes', { token: READ })).status, 200);
    assert.equal((await post('/sql', { sql: 'SELECT 1' }, READ)).status, 200);
    assert.equal((await req(app, '/restores', { token: RESTORE })).status, 200);
    assert.equal((await req(app, '/nodes', { token: RESTORE })).status, 200);
    assert.equal((await req(app, '/instances', { token: ADMIN })).status, 200);
  });
});

describe('limits', () => {
  test('a body over the limit answers 413; a restore job over NATS max_payload answers 413', async () => {
    await errorOf(await post('/sql', { sql: `SELECT '${'x'.repeat(300_000)}'` }), 413, 'TOO_LARGE');
    const big = buildApp({
      store: stack.store,
      jobs: natsJobClient(nc),
      tokens: [ADMIN],
      maxBodyBytes: 4_000_000,
    });
    const keys = Array.from({ length: 13_000 }, (_, i) => `k${i}:${'p'.repeat(90)}`);
    const res = await req(big, '/restores', {
      method: 'POST',
      body: JSON.stringify({ node: src.node, toSeq: seq, rdb: 'big.rdb', keys }),
    });
    assert.match(await errorOf(res, 413, 'TOO_LARGE'), /max_payload/);
  });

  test('INTO OUTFILE and other refused SQL answer 4xx, not 500', async () => {
    for (const sql of [
      "SELECT 1 INTO OUTFILE '/tmp/fb-outfile'",
      'SELECT 1 into   outfile "x"',
      'SELECT no_such_function(1)',
      'SELECT * FROM system.no_such_table',
      'INSERT INTO flashback.events VALUES (1)',
    ]) {
      const res = await post('/sql', { sql });
      assert.ok(res.status >= 400 && res.status < 500, `${sql}: ${res.status} ${await res.text()}`);
    }
    assert.equal(existsSync('/tmp/fb-outfile'), false);
  });

  test('a 1-row 28 MB answer is refused with 4xx, by ClickHouse and by the API alone, and RSS grows < 50 MB', async (t) => {
    const sql = 'SELECT groupArray(number) AS a FROM numbers(2800000)';
    const before = process.memoryUsage().rss;
    const byServer = await post('/sql', { sql });
    assert.equal(byServer.status, 400, await byServer.clone().text());
    // A user whose profile holds the limits gets no per-query settings: the API's own cap must hold alone.
    const capped = buildApp({
      store: stack.store,
      jobs: natsJobClient(nc),
      tokens: [ADMIN],
      sqlClient: { client: stack.store.client, serverLimits: true },
    });
    const byApi = await req(capped, '/sql', { method: 'POST', body: JSON.stringify({ sql }) });
    assert.match(await errorOf(byApi, 400, 'BAD_INPUT'), /over the API's limit/);
    const grownMb = (process.memoryUsage().rss - before) / 1_048_576;
    t.diagnostic(`RSS growth over both refusals: ${grownMb.toFixed(1)} MB`);
    assert.ok(grownMb < 50, `RSS grew ${grownMb.toFixed(1)} MB`);
  });

  test('30 concurrent slow queries: /health answers while they run; extra queries get 429, none 5xx', async (t) => {
    const queries = Array.from({ length: 30 }, () => post('/sql', { sql: 'SELECT sleep(2)' }));
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const res = await req(app, '/health');
      times.push(performance.now() - t0);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { clickhouse: boolean }).clickhouse, true);
    }
    const statuses = await Promise.all(queries.map(async (q) => (await q).status));
    t.diagnostic(
      `health during 30 slow queries: ${times.map((x) => x.toFixed(0)).join(', ')} ms; SQL statuses: ${JSON.stringify(
        Object.fromEntries([...new Set(statuses)].map((s) => [s, statuses.filter((x) => x === s).length])),
      )}`,
    );
    assert.ok(
      statuses.every((s) => s === 200 || s === 429),
      JSON.stringify(statuses),
    );
    assert.ok(statuses.includes(429));
  });
});

describe('secrets and instances', () => {
  let target: Awaited<ReturnType<typeof testRedis>>;
  let spawnJob: string;
  let spawnPassword: string;

  before(async () => {
    target = await testRedis();
    cleanups.push(() => target.stop());
    const r = new Redis(target.url);
    await r.call('CONFIG', 'SET', 'requirepass', TARGET_PW);
    r.disconnect();
  });

  test('a target password is sealed: the job copies, and a wrong password says so', async () => {
    const ok = await queue({ target: `redis://:${TARGET_PW}@127.0.0.1:${target.port}/0` });
    const s = await finalJob(ok);
    assert.equal(s.state, 'done', JSON.stringify(s.error));
    assert.equal(s.report!.url, `redis://:***@127.0.0.1:${target.port}/0`);
    const r = new Redis({ host: '127.0.0.1', port: target.port, password: TARGET_PW });
    assert.equal(await r.get('k4'), 'v4');
    r.disconnect();
    const bad = await queue({ target: `redis://:${WRONG_PW}@127.0.0.1:${target.port}/0`, flush: true });
    const b = await finalJob(bad);
    assert.equal(b.state, 'failed');
    assert.equal(b.error?.code, 'AUTH', JSON.stringify(b.error));
    assert.match(b.error!.message, /refused the password/);
    assert.doesNotMatch(b.error!.message, /Connection is closed/);
  });

  test('a spawned instance has a generated password, shown once; its dir is 700 and files 600', async () => {
    spawnJob = await queue({ spawn: {} });
    const s = await finalJob(spawnJob);
    assert.equal(s.state, 'done', JSON.stringify(s.error));
    const first = (await (await req(app, `/restores/${spawnJob}`, { token: RESTORE })).json()) as RestoreJobStatus;
    assert.match(first.password ?? '', /^[0-9a-f]{48}$/);
    spawnPassword = first.password!;
    const again = (await (await req(app, `/restores/${spawnJob}`)).json()) as RestoreJobStatus;
    assert.equal(again.password, undefined);
    const url = first.report!.url!;
    assert.match(url, /^redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0$/);
    const port = Number(/:(\d+)\/0$/.exec(url)![1]);
    // Without the password the instance answers nothing but NOAUTH.
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write('*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n'));
      sock.once('data', (d) => {
        resolve(d.toString());
        sock.destroy();
      });
      sock.once('error', reject);
    });
    assert.match(reply, /^-NOAUTH/);
    const authed = new Redis({ host: '127.0.0.1', port, password: first.password });
    assert.equal(await authed.get('k1'), 'v1');
    authed.disconnect();
    const dir = first.report!.dir!;
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(instancesDir)).mode & 0o777, 0o700);
    for (const f of await readdir(dir, { withFileTypes: true }))
      if (f.isFile()) assert.equal((await stat(path.join(dir, f.name))).mode & 0o777, 0o600, f.name);
    // The cap (1 running instance): a second spawn fails BUSY.
    const second = await finalJob(await queue({ spawn: {} }));
    assert.equal(second.error?.code, 'BUSY', JSON.stringify(second.error));
  });

  test('a forged instance record cannot make the restorer stop another process or delete its dir', async () => {
    const victim = await testRedis();
    cleanups.push(() => victim.stop());
    const id = `forged-${randomUUID().slice(0, 8)}`;
    await putInstance(nc, {
      id,
      url: victim.url,
      pid: victim.pid,
      dir: victim.dir,
      node: 'x',
      cutoff: { epoch: 1, seq: 1, tsUs: 1, time: 't' },
      createdAt: new Date().toISOString(),
      host: os.hostname(),
    });
    await assert.rejects(stopInstance(nc, id), /not started by this restorer/);
    // Even with the id of a real instance of ours but another pid and dir in the bus record.
    const kv = await new Kvm(nc).open(INSTANCES_BUCKET);
    const real = (await kv.get(spawnJob))!.json<Record<string, unknown>>();
    await kv.put(spawnJob, JSON.stringify({ ...real, pid: victim.pid, dir: victim.dir }));
    const stopped = await stopInstance(nc, spawnJob);
    assert.equal(stopped.id, spawnJob);
    assert.ok(isPidAlive(victim.pid), 'the victim redis-server still runs');
    assert.ok(existsSync(victim.dir), "the victim's dir is still there");
    assert.ok(!existsSync(real.dir as string), 'the instance of ours was stopped and its dir removed');
  });

  test('no password appears in KV entries, reports, GET /restores, errors or logs', async () => {
    const secrets = [TARGET_PW, WRONG_PW, SILENT_PW, spawnPassword];
    const kvm = new Kvm(nc);
    const stored: string[] = [];
    for (const bucket of [JOBS_BUCKET, INSTANCES_BUCKET]) {
      const kv = await kvm.open(bucket);
      for await (const k of await kv.keys()) stored.push((await kv.get(k))?.string() ?? '');
    }
    const listed = await (await req(app, '/restores?limit=100')).text();
    const instances = await (await req(app, '/instances')).text();
    for (const [what, text] of [
      ['KV', stored.join('\n')],
      ['GET /restores', listed],
      ['GET /instances', instances],
      ['logs', logLines.join('')],
    ] as const) {
      for (const s of secrets) assert.ok(!text.includes(s), `${what} holds a password`);
      assert.ok(text.length > 0, what);
    }
    assert.ok(listed.includes('redis://:***@127.0.0.1'));
  });
});
