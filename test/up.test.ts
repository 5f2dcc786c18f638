// `flashback up` as a child process: ready line, capture of a Redis, a restore through POST /restores, clean SIGTERM
// with no child left.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { ApiClient } from '../cli/api-client.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { testRedis } from './helpers/servers.js';
import { restoreSeedDemo } from './helpers/seed-demo.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * `flashback up` (sources, fresh data dir, API on a free port) as a child, its output collected in `io`; disposing it
 * stops what a failed run left: the children first, then `up` itself.
 */
async function spawnUp(prefix: string, args: string[]) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(dataDir);
  const child = spawn(
    process.execPath,
    ['bin/flashback-dev.js', 'up', '--data-dir', dataDir, '--api-port', '0', ...args],
    {
      env: { ...process.env, FLASHBACK_LOG_LEVEL: 'warn', FLASHBACK_API_TOKENS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const io = { out: '', err: '' };
  child.stdout.on('data', (d: Buffer) => (io.out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (io.err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    dataDir,
    child,
    io,
    exited,
    async [Symbol.asyncDispose]() {
      if (child.exitCode !== null) return;
      for (const pid of childrenOf(child.pid!)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      child.kill('SIGKILL');
    },
  };
}

test('flashback up: ready line, capture, restore via the API, SIGTERM stops every child', async () => {
  await using source = await testRedis(SOURCE_ARGS);
  await using up = await spawnUp('fb-up-', ['--redis', source.url]);
  const { dataDir, child, io, exited } = up;
  const apiUrl = await waitFor(
    'the ready line',
    async () => /^flashback: api (http:\/\/\S+)$/m.exec(io.out)?.[1],
    60_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nstdout: ${io.out}\nstderr: ${io.err}`);
  });
  const token = /^flashback: token (\S+)/m.exec(io.out)?.[1];
  assert.ok(token, 'a generated token is printed once');
  assert.equal(readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim(), token);
  const node = source.url.replace('redis://', '');
  assert.match(io.out, new RegExp(`capturing ${node.replace(/\./g, '\\.')}`));

  const api = new ApiClient(apiUrl, token);
  const done = await restoreSeedDemo(api, source.url, node);
  // The instance's generated password comes once, with the first answer after the job is done.
  const restored = new Redis(done.report!.url!.replace(':***@', `:${done.password}@`));
  try {
    assert.deepEqual(
      (await restored.hkeys('userprofile')).sort(),
      Array.from({ length: 10 }, (_, i) => `foo${i}`).sort(),
    );
  } finally {
    restored.disconnect();
  }
  const instances = await api.instances();
  for (const inst of instances) await api.stopInstance(inst.id);

  const children = childrenOf(child.pid!);
  assert.ok(children.length >= 2, `nats-server and clickhouse-server run as children (${children.join(', ')})`);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `clean exit; stderr: ${io.err.slice(-2000)}`);
  await waitFor(
    'every child to be gone',
    async () => (children.every((p) => !isPidAlive(p)) ? true : undefined),
    20_000,
  );
});

test('flashback up --demo --fast (npm start): the seed demo restores the middle moment, 60 of the 120 fields', async () => {
  await using up = await spawnUp('fb-demo-', ['--demo', '--fast']);
  const { dataDir, child, io, exited } = up;
  const line = await waitFor(
    "the demo's restored instance",
    async () =>
      // A failed demo ends the wait at once (asserted below).
      /demo failed/.test(io.out)
        ? ['failed', '', '']
        : (/^demo: new instance \S+: hkeys userprofile \| wc -l → (\d+) \(was (\d+)\)$/m.exec(io.out) ?? undefined),
    120_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nstdout: ${io.out}\nstderr: ${io.err.slice(-2000)}`);
  });
  assert.notEqual(line[0], 'failed', `the demo failed:\n${io.out}\n${io.err.slice(-2000)}`);
  assert.deepEqual([line[1], line[2]], ['60', '120'], 'the moment in the middle: the first 60 fields');
  assert.match(io.out, /^demo: its password \(shown once/m);
  // The restored instance outlives `up` (instances stay until stopped): stop it through its record.
  for (const dir of readdirSync(path.join(dataDir, 'instances'))) {
    const rec = JSON.parse(readFileSync(path.join(dataDir, 'instances', dir, 'flashback-instance.json'), 'utf8'));
    process.kill(Number(rec.pid), 'SIGTERM');
  }
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `clean exit; stderr: ${io.err.slice(-2000)}`);
});
