// `flashback up --nats-cluster 3`: three nats-servers routed into one JetStream cluster, every stream and bucket R3,
// capture and a restore through the API on it, SIGTERM stops all three.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { ApiClient } from '../cli/api-client.js';
import { loadStackSecrets } from '../cli/stack-secrets.js';
import { BASELINE_BUCKET, connectNats, EVENT_STREAM } from '../core/bus/nats.js';
import { JOBS_BUCKET, RESTORE_STREAM } from '../core/bus/restore-jobs.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { testRedis } from './helpers/servers.js';
import { restoreSeedDemo } from './helpers/seed-demo.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Pids of nats-server processes whose parent is `pid` (from /proc). */
function natsChildrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && readFileSync(`/proc/${name}/comm`, 'utf8').trim() === 'nats-server') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

test('flashback up --nats-cluster 3: R3 streams and buckets, capture and restore, SIGTERM stops every member', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fb-up-cluster-'));
  dirs.push(dataDir);
  await using source = await testRedis(SOURCE_ARGS);
  const child = spawn(
    process.execPath,
    [
      'bin/flashback-dev.js',
      'up',
      '--data-dir',
      dataDir,
      '--api-port',
      '0',
      '--nats-cluster',
      '3',
      '--redis',
      source.url,
    ],
    {
      env: { ...process.env, FLASHBACK_LOG_LEVEL: 'warn', FLASHBACK_API_TOKENS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const apiUrl = await waitFor(
      'the ready line',
      async () => /^flashback: api (http:\/\/\S+)$/m.exec(out)?.[1],
      90_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\nstdout: ${out}\nstderr: ${err}`);
    });
    const token = /^flashback: token (\S+)/m.exec(out)?.[1];
    assert.ok(token);
    const members = natsChildrenOf(child.pid!);
    assert.equal(members.length, 3, 'three nats-servers');

    // The admin (the user up set everything up with) sees R3 everywhere.
    const secrets = await loadStackSecrets(dataDir);
    const context = JSON.parse(readFileSync(path.join(dataDir, 'context.json'), 'utf8')) as { natsUrl?: string };
    const natsUrl = context.natsUrl ?? '';
    assert.equal(natsUrl.split(',').length, 3, `the context names every member: ${natsUrl}`);
    const nc = await connectNats({ url: natsUrl, name: 'up-cluster-test', auth: secrets.nats({ role: 'admin' }) });
    try {
      const jsm = await jetstreamManager(nc);
      for (const name of [EVENT_STREAM, `OBJ_${BASELINE_BUCKET}`, RESTORE_STREAM, `KV_${JOBS_BUCKET}`])
        assert.equal((await jsm.streams.info(name)).config.num_replicas, 3, name);
    } finally {
      await nc.close();
    }

    const node = source.url.replace('redis://', '');
    const api = new ApiClient(apiUrl, token);
    const done = await restoreSeedDemo(api, source.url, node);
    // The report's url hides the instance's generated password, shown once in this answer.
    const port = Number(/:(\d+)\/\d+$/.exec(done.report!.url!)![1]);
    const restored = new Redis({ port, password: done.password });
    try {
      assert.equal(await restored.hlen('userprofile'), 10);
    } finally {
      restored.disconnect();
    }
    for (const inst of await api.instances()) await api.stopInstance(inst.id);

    child.kill('SIGTERM');
    assert.equal(await exited, 0, `clean exit; stderr: ${err.slice(-2000)}`);
    await waitFor(
      'every member to be gone',
      async () => (members.every((p) => !isPidAlive(p)) ? true : undefined),
      20_000,
    );
  } finally {
    if (child.exitCode === null) {
      for (const pid of natsChildrenOf(child.pid!)) process.kill(pid, 'SIGKILL');
      child.kill('SIGKILL');
    }
  }
});
