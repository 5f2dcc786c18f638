// The CLI an operator uses during an incident: --version, completion, examples in every command's help, relative
// instants, and the README's "What to try next" from a second terminal beside a running `flashback up` (found through
// its context file, FLASHBACK_DATA_DIR or the nearest ./.flashback).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { writeContext } from '../cli/context.js';
import { COMMANDS, joinRelativeTimes } from '../cli/main.js';
import { EXAMPLES } from '../cli/examples.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { packageVersion } from '../core/version.js';
import { testRedis } from './helpers/servers.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'flashback-dev.js');
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The caller's environment without FLASHBACK_*, plus `env`. */
function cleanEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLASHBACK_'))), ...env };
}

/** Runs `flashback args` from `cwd` with `env` (and no other FLASHBACK_* variable). */
function run(
  args: string[],
  o: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      cwd: o.cwd ?? process.cwd(),
      env: cleanEnv(o.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test('--version prints the package version; completion prints a script and completes command names', async () => {
  const v = await run(['--version']);
  assert.equal(v.code, 0);
  assert.equal(v.stdout.trim(), packageVersion());
  assert.match(packageVersion(), /^\d+\.\d+\.\d+/);
  const c = await run(['completion']);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /complete -o bashdefault -o default -F _flashback_yargs_completions flashback/);
  const words = await run(['--get-yargs-completions', 'flashback', 'win']);
  assert.match(words.stdout, /^windows$/m);
});

test('every command module matches the command list, and every command has examples', async () => {
  for (const entry of COMMANDS) {
    const mod = await entry.load();
    assert.equal(mod.command, entry.command);
    const name = entry.command.split(' ')[0]!;
    assert.ok((EXAMPLES[name] ?? []).length > 0, `examples for ${name}`);
  }
  assert.deepEqual(Object.keys(EXAMPLES).sort(), COMMANDS.map((c) => c.command.split(' ')[0]).sort());
  const help = await run(['restore', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Examples:\n\s+flashback restore --node 127\.0\.0\.1:6379 --to -5m/);
});

test('--to -5m reaches the command as one value (not the flags -5 and -m)', () => {
  assert.deepEqual(joinRelativeTimes(['restore', '--to', '-5m', '--spawn']), ['restore', '--to=-5m', '--spawn']);
  assert.deepEqual(joinRelativeTimes(['history', '--since', '-1h30m']), ['history', '--since=-1h30m']);
  assert.deepEqual(joinRelativeTimes(['restore', '--to', 'now-90s']), ['restore', '--to', 'now-90s']);
  // Not a time: left to the parser, which names the unknown flag.
  assert.deepEqual(joinRelativeTimes(['restore', '--to', '--spawn']), ['restore', '--to', '--spawn']);
});

test("README's next steps from a second terminal beside flashback up: windows, sql, history, restore --to -3s, instances", async () => {
  const project = await mkdtemp(path.join(os.tmpdir(), 'fb-ctx-'));
  dirs.push(project);
  const dataDir = path.join(project, '.flashback');
  const elsewhere = path.join(project, 'src', 'deep');
  await mkdir(elsewhere, { recursive: true });
  await using source = await testRedis(SOURCE_ARGS);
  const node = source.url.replace('redis://', '');
  const up = spawn(process.execPath, [BIN, 'up', '--data-dir', dataDir, '--api-port', '0', '--redis', source.url], {
    env: cleanEnv({ FLASHBACK_LOG_LEVEL: 'warn' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
  const contextFile = path.join(dataDir, 'context.json');
  try {
    await waitFor('the ready line', async () => (/^flashback: ready/m.test(out) ? true : undefined), 90_000).catch(
      (e: Error) => {
        throw new Error(`${e.message}\nstdout: ${out}\nstderr: ${err}`);
      },
    );
    assert.equal(statSync(contextFile).mode & 0o777, 0o600, 'the context file is private');
    const ctx = JSON.parse(readFileSync(contextFile, 'utf8')) as Record<string, unknown>;
    assert.equal(ctx.apiUrl, /^flashback: api (\S+)$/m.exec(out)?.[1]);
    assert.doesNotMatch(
      readFileSync(contextFile, 'utf8'),
      new RegExp(readFileSync(ctx.tokenFile as string, 'utf8').trim()),
    );

    const r = new Redis(source.url);
    try {
      for (let i = 0; i < 10; i++) await r.hset('userprofile', `foo${i}`, i % 3);
    } finally {
      r.disconnect();
    }
    const afterWritesUs = Date.now() * 1000;
    // `windows` from a sub-directory: the nearest ./.flashback upwards.
    const windows = await waitFor(
      'a window from `flashback windows`',
      async () => {
        const w = await run(['windows', '--json'], { cwd: elsewhere });
        assert.equal(w.code, 0, w.stderr);
        const list = JSON.parse(w.stdout) as { node: string; toTsUs: number }[];
        return list.some((x) => x.node === node) ? list : undefined;
      },
      30_000,
    );
    assert.ok(windows.length > 0);
    // The rest with FLASHBACK_DATA_DIR, from a directory with no .flashback above it.
    const env = { FLASHBACK_DATA_DIR: dataDir };
    const sql = await waitFor(
      'the 10 HSETs through `flashback sql`',
      async () => {
        const s = await run(
          [
            'sql',
            `SELECT count() AS n FROM flashback.events WHERE key = 'userprofile' AND command = 'HSET'`,
            '--format',
            'json',
          ],
          { cwd: os.tmpdir(), env },
        );
        assert.equal(s.code, 0, s.stderr);
        return Number((JSON.parse(s.stdout) as { rows: unknown[][] }).rows[0]![0]) >= 10 ? s : undefined;
      },
      30_000,
    );
    assert.ok(sql);
    const history = await run(['history', '--node', node, '--key', 'userprofile', '--json'], { cwd: os.tmpdir(), env });
    assert.equal(history.code, 0, history.stderr);
    assert.equal((JSON.parse(history.stdout) as unknown[]).length, 10);

    // A relative instant: resolved here, printed, and the restore (through the stack's API) holds all 10 fields.
    // The idle node's window keeps reaching now; once it is 3.5 s past the writes, now-3s lies inside it and after them.
    await waitFor(
      'the window to pass the writes by 3.5 s',
      async () => {
        const w = await run(['windows', '--node', node, '--json'], { cwd: os.tmpdir(), env });
        const list = JSON.parse(w.stdout) as { toTsUs: number }[];
        return Math.max(...list.map((x) => x.toTsUs)) >= afterWritesUs + 3_500_000 ? true : undefined;
      },
      30_000,
    );
    const restore = await run(['restore', '--node', node, '--to', '-3s', '--spawn', '--json'], {
      cwd: os.tmpdir(),
      env,
    });
    assert.equal(restore.code, 0, restore.stderr);
    assert.match(restore.stderr, /^flashback: --to -3s is \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \(/m);
    // The instance's password stays with the restorer (SEC-API): compare digests with the source, unchanged since.
    const report = JSON.parse(restore.stdout) as { pid: number; keys: number; digest: string };
    const src = new Redis(source.url);
    try {
      assert.equal(report.keys, 1);
      assert.equal(report.digest, await src.call('DEBUG', 'DIGEST'));
    } finally {
      src.disconnect();
    }
    const list = await run(['instances', '--json'], { cwd: os.tmpdir(), env });
    assert.equal(list.code, 0, list.stderr);
    const instances = JSON.parse(list.stdout) as { id: string; pid: number }[];
    const mine = instances.find((i) => i.pid === report.pid);
    assert.ok(mine, `the restored instance is listed: ${list.stdout}`);
    const stop = await run(['instances', 'stop', mine.id], { cwd: os.tmpdir(), env });
    assert.equal(stop.code, 0, stop.stderr);
    await waitFor('the restored instance to stop', async () => (isPidAlive(report.pid) ? undefined : true), 20_000);

    up.kill('SIGTERM');
    assert.equal(await exited, 0, `clean exit; stderr: ${err.slice(-2000)}`);
    assert.equal(existsSync(contextFile), false, 'a stopped stack leaves no context');
  } finally {
    if (up.exitCode === null) up.kill('SIGKILL');
  }
});

test('the old env names still work, each with a deprecation line; a stale context says the stack is gone', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-ctx-'));
  dirs.push(dir);
  const dead = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => dead.once('exit', r));
  await writeContext({
    apiUrl: 'http://127.0.0.1:9',
    clickhouseUrl: 'http://127.0.0.1:9',
    natsUrl: 'nats://127.0.0.1:9',
    pid: dead.pid!,
    dataDir: dir,
  });
  const stale = await run(['instances'], { cwd: dir, env: { FLASHBACK_DATA_DIR: dir } });
  assert.notEqual(stale.code, 0);
  assert.match(stale.stderr, new RegExp(`the stack of ${dir} is not running \\(its flashback up, pid ${dead.pid}`));
  // The deprecated names reach the command (here: an API nobody listens on, named in the error).
  const old = await run(['instances'], {
    cwd: dir,
    env: { FLASHBACK_API: 'http://127.0.0.1:9', FLASHBACK_TOKEN: 't' },
  });
  assert.notEqual(old.code, 0);
  assert.match(old.stderr, /FLASHBACK_API is deprecated and will be dropped: set FLASHBACK_API_URL/);
  assert.match(old.stderr, /FLASHBACK_TOKEN is deprecated and will be dropped: set FLASHBACK_API_TOKEN/);
  assert.match(old.stderr, /cannot reach the flashback API at http:\/\/127\.0\.0\.1:9/);
  // The new name wins and `instances` no longer ignores it.
  const both = await run(['instances'], { cwd: dir, env: { FLASHBACK_API_URL: 'http://127.0.0.1:19' } });
  assert.match(both.stderr, /cannot reach the flashback API at http:\/\/127\.0\.0\.1:19/);
});

test('a FLASHBACK_* variable a command has no flag for is ignored (env files shared by services); a flag is not', async () => {
  const r = await run(['agent'], {
    env: {
      FLASHBACK_CLICKHOUSE: 'http://127.0.0.1:9',
      FLASHBACK_REDIS: 'redis://127.0.0.1:9',
      FLASHBACK_NATS: 'nats://127.0.0.1:9',
    },
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot connect to Redis at 127\.0\.0\.1:9/);
  const bad = await run(['windows', '--whatever', '1']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Unknown argument: whatever/);
});
