// Stopping: a second SIGTERM to `flashback up` still takes nats-server and clickhouse-server down with it; servers an
// `up` killed with SIGKILL left behind are stopped by the next `up` on that data dir; an agent whose Redis and NATS are
// both gone exits by its --stop-timeout and logs what it still held.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { findLeftoverServers } from '../cli/leftover-servers.js';
import { isPidAlive, stopPid } from '../core/servers/server-process.js';
import { spawnAgent } from './helpers/agent-process.js';
import { testNats, testRedis } from './helpers/servers.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'flashback-dev.js');
const dirs: string[] = [];
const strays: number[] = [];
after(async () => {
  for (const pid of strays) await stopPid(pid, { timeoutMs: 5_000 }).catch(() => undefined);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

interface Up {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | NodeJS.Signals | null>;
}

/** `flashback up` on `dataDir` (no Redis to capture), resolved once it printed its ready line. */
async function startUp(dataDir: string): Promise<Up> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLASHBACK_')));
  const child = spawn(process.execPath, [BIN, 'up', '--data-dir', dataDir, '--api-port', '0'], {
    env: { ...env, FLASHBACK_LOG_LEVEL: 'info', FLASHBACK_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  );
  await waitFor(
    'the ready line of flashback up',
    async () => (/^flashback: ready/m.test(text) ? true : undefined),
    90_000,
  ).catch((e: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n${text}`);
  });
  return { child, out: () => text, exited };
}

test('a second SIGTERM makes flashback up exit at once and still kills nats-server and clickhouse-server', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fb-stop-'));
  dirs.push(dataDir);
  const up = await startUp(dataDir);
  const servers = childrenOf(up.child.pid!);
  strays.push(...servers);
  assert.ok(servers.length >= 2, `nats-server and clickhouse-server run as children (${servers.join(', ')})`);
  up.child.kill('SIGTERM');
  // Signals are not queued: the second is sent once the first was taken (else the kernel merges them).
  await waitFor('the first stop', async () =>
    /"msg":"stopping: flushing what is in hand"/.test(up.out()) ? true : undefined,
  );
  up.child.kill('SIGTERM');
  assert.equal(await up.exited, 130, up.out().slice(-3000));
  assert.match(up.out(), /"msg":"second SIGTERM: exiting without finishing the stop/);
  await waitFor('no server left', async () => (servers.every((p) => !isPidAlive(p)) ? true : undefined), 20_000);
  assert.deepEqual(findLeftoverServers(dataDir), []);
});

test('servers left by an up killed with SIGKILL are stopped by the next up on that data dir', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fb-stop-'));
  dirs.push(dataDir);
  const first = await startUp(dataDir);
  const servers = childrenOf(first.child.pid!);
  strays.push(...servers);
  first.child.kill('SIGKILL');
  await first.exited;
  // SIGKILL runs no exit hook: the servers, in process groups of their own, keep running on the data dir.
  const left = findLeftoverServers(dataDir);
  assert.deepEqual(left.map((s) => s.pid).sort(), [...servers].sort());
  assert.deepEqual(left.map((s) => path.basename(s.dir)).sort(), ['clickhouse', 'nats']);

  const second = await startUp(dataDir);
  try {
    assert.equal(
      second.out().match(/"msg":"stopping a server an earlier flashback up left running on this data dir"/g)?.length,
      2,
      second.out(),
    );
    for (const pid of servers) assert.equal(isPidAlive(pid), false, `old server ${pid} is gone`);
    const now = childrenOf(second.child.pid!);
    strays.push(...now);
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0, second.out().slice(-3000));
    await waitFor('no server left', async () => (now.every((p) => !isPidAlive(p)) ? true : undefined), 20_000);
  } finally {
    if (second.child.exitCode === null) second.child.kill('SIGKILL');
  }
});

test('an agent whose Redis and NATS are both gone exits by --stop-timeout and logs what it still held', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-stop-'));
  dirs.push(dir);
  const redis = await testRedis(SOURCE_ARGS);
  const nats = await testNats();
  const agent = spawnAgent({
    redisUrl: redis.url,
    natsUrl: nats.url,
    nodeId: 'stop-1',
    logFile: path.join(dir, 'agent.log'),
    args: ['--stop-timeout', '2s'],
  });
  try {
    await agent.waitForLog('capturing', 60_000);
    await redis.stop();
    await nats.stop();
    let exit: number | NodeJS.Signals | undefined;
    void agent.exited.then((e) => (exit = e));
    void agent.kill('SIGTERM');
    // Its own close waits up to 10 s for a flush and 30 s for JetStream: the 2 s deadline must cut that short.
    await waitFor('the agent to exit', async () => (exit !== undefined ? true : undefined), 20_000).catch(
      async (e: Error) => {
        throw new Error(`${e.message}; its log:\n${(await readFile(agent.logFile, 'utf8')).slice(-4000)}`);
      },
    );
    const log = await agent.log();
    const stopped = log.find((l) => l.msg === 'agent stopped');
    const forced = log.find((l) => String(l.msg).startsWith('not stopped after 2000 ms (--stop-timeout)'));
    assert.ok(stopped ?? forced, `a clean stop or a forced one is logged: ${agent.logFile}`);
    if (forced) {
      assert.equal(exit, 1);
      const stats = (forced as { stats?: Record<string, unknown> }).stats;
      assert.ok(stats && 'publishBacklogBytes' in stats && 'epoch' in stats, JSON.stringify(forced));
    }
  } finally {
    await agent.kill('SIGKILL');
    await redis.stop();
    await nats.stop();
  }
});
