// The deploy recipes: the systemd units pass `systemd-analyze verify`; every FLASHBACK_* variable of their env files
// and of deploy/compose.yaml is a flag of a command that reads it (a typo would be ignored silently); the compose file
// passes docker-compose's schema check; and the units' commands run here as plain processes with the units' own
// environment (only server addresses, ports and credentials of the test servers substituted) and serve a restore.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, symlink, copyFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import yargs, { type Argv } from 'yargs';
import { Redis } from 'ioredis';
import { ApiClient } from '../cli/api-client.js';
import { COMMANDS } from '../cli/main.js';
import { freePort } from '../core/servers/free-port.js';
import { testClickHouse, testNats, testRedis } from './helpers/servers.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const UNITS = path.join(ROOT, 'deploy', 'systemd');
const BIN = path.join(ROOT, 'bin', 'flashback-dev.js');
/** Settings every command accepts (cli/main.ts). */
const GLOBAL = new Set(['log-level', 'log-format', 'api-tokens', 'api-url', 'api-token', 'stop-timeout', 'data-dir']);
const run = promisify(execFile);
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Unit {
  file: string;
  /** `agent`, `sink` … (the word after bin/flashback.js). */
  command: string;
  /** Env files, `%i` → `instance`. */
  envFiles: string[];
  /** `Environment=` lines. */
  env: Record<string, string>;
}

/** The units, a template read for instance `cache-1` (its env file is the example one). */
function units(): Unit[] {
  return readdirSync(UNITS)
    .filter((f) => f.endsWith('.service'))
    .map((file) => {
      const text = readFileSync(path.join(UNITS, file), 'utf8').replaceAll('%i', 'cache-1');
      const values = (key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
      const exec = values('ExecStart')[0]!;
      const command = /bin\/flashback\.js (\S+)/.exec(exec)?.[1];
      assert.ok(command, `${file}: ExecStart runs bin/flashback.js <command>`);
      return {
        file,
        command,
        envFiles: values('EnvironmentFile').map((f) => path.join(UNITS, 'env', path.basename(f))),
        env: Object.fromEntries(values('Environment').map((kv) => kv.split('=', 2) as [string, string])),
      };
    });
}

/** KEY=value lines of an env file. */
function readEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** The flags of a command, as its module declares them. */
async function flagsOf(command: string): Promise<Set<string>> {
  const entry = COMMANDS.find((c) => c.command.split(' ')[0] === command);
  assert.ok(entry, `flashback ${command} exists`);
  const mod = await entry.load();
  const y = mod.builder(yargs([]) as Argv) as unknown as { getOptions(): { key: Record<string, unknown> } };
  return new Set([...Object.keys(y.getOptions().key), ...GLOBAL]);
}

const flagOf = (envName: string) =>
  envName
    .replace(/^FLASHBACK_/, '')
    .toLowerCase()
    .replace(/_/g, '-');

test('the systemd units pass systemd-analyze verify', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-units-'));
  dirs.push(dir);
  const files: string[] = [];
  for (const f of readdirSync(UNITS).filter((x) => x.endsWith('.service'))) {
    await copyFile(path.join(UNITS, f), path.join(dir, f));
    // A template is verified through an instance of it.
    const name = f.endsWith('@.service') ? f.replace('@.service', '@cache-1.service') : f;
    if (name !== f) await symlink(path.join(dir, f), path.join(dir, name));
    files.push(path.join(dir, name));
  }
  assert.ok(files.length >= 5, files.join(' '));
  const { stdout, stderr } = await run('systemd-analyze', ['verify', '--man=no', ...files]);
  assert.equal(stdout + stderr, '', 'no warning');
});

test('every FLASHBACK_* variable of the env files and the compose file is a flag of a command that reads it', async () => {
  // An env file may serve several units (agent-%i.env: the agent and its anchor keeper): a name in it must be a
  // flag of at least one of them. common.env serves every unit (checked below).
  const readers = new Map<string, { commands: string[]; flags: Set<string> }>();
  for (const unit of units()) {
    const flags = await flagsOf(unit.command);
    for (const file of unit.envFiles) {
      if (path.basename(file) === 'common.env') continue;
      const r = readers.get(file) ?? { commands: [], flags: new Set<string>() };
      r.commands.push(unit.command);
      for (const f of flags) r.flags.add(f);
      readers.set(file, r);
    }
    for (const name of Object.keys(unit.env))
      assert.ok(flags.has(flagOf(name)), `${name} of ${unit.file} is no flag of ${unit.command}`);
  }
  for (const [file, r] of readers)
    for (const name of Object.keys(readEnvFile(file)))
      assert.ok(r.flags.has(flagOf(name)), `${name} in ${file} is no flag of flashback ${r.commands.join(' or ')}`);
  const everyFlag = new Set<string>();
  for (const unit of units()) for (const f of await flagsOf(unit.command)) everyFlag.add(f);
  for (const name of Object.keys(readEnvFile(path.join(UNITS, 'env', 'common.env'))))
    assert.ok(everyFlag.has(flagOf(name)), `${name} in common.env is a flag of no service`);
  const compose = readFileSync(path.join(ROOT, 'deploy', 'compose.yaml'), 'utf8');
  for (const [, name] of compose.matchAll(/^\s+(FLASHBACK_[A-Z0-9_]+):/gm))
    assert.ok(everyFlag.has(flagOf(name!)), `${name} in compose.yaml is a flag of no service`);
});

test('deploy/compose.yaml passes docker-compose config (its compose schema)', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-compose-'));
  dirs.push(dir);
  const env = path.join(dir, '.env');
  await writeFile(
    env,
    readFileSync(path.join(ROOT, 'deploy', 'compose.env.example'), 'utf8')
      .replace(/^(FLASHBACK_(?:NATS_PASSWORD|CLICKHOUSE_PASSWORD|API_TOKENS))=$/gm, '$1=x')
      .concat('\n'),
  );
  const { stdout } = await run('docker-compose', [
    '--env-file',
    env,
    '-f',
    path.join(ROOT, 'deploy', 'compose.yaml'),
    'config',
  ]);
  for (const s of ['nats', 'clickhouse', 'sink', 'restorer', 'api', 'agent-cache-1'])
    assert.match(stdout, new RegExp(`^  ${s}:$`, 'm'), `service ${s}`);
  // Without the secrets the file refuses to start, naming what is missing.
  await assert.rejects(
    run('docker-compose', ['-f', path.join(ROOT, 'deploy', 'compose.yaml'), 'config', '-q']),
    (e: Error) => /set FLASHBACK_NATS_PASSWORD in deploy\/\.env/.test(String((e as { stderr?: string }).stderr)),
  );
});

test("the units' commands run as plain processes with the units' environment and serve a restore", async () => {
  await using nats = await testNats();
  await using clickhouse = await testClickHouse();
  await using source = await testRedis(SOURCE_ARGS);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-units-'));
  dirs.push(dir);
  const token = 'deploy-recipes-test-token';
  const apiPort = await freePort();
  const children: { unit: string; child: ChildProcess; log: () => string; healthPort: number }[] = [];
  try {
    for (const unit of units()) {
      const env: Record<string, string> = {};
      for (const f of unit.envFiles) Object.assign(env, readEnvFile(f));
      Object.assign(env, unit.env);
      // The test servers have no users; addresses and ports are this machine's.
      for (const k of Object.keys(env)) if (/_(USER|PASSWORD_FILE)$/.test(k)) delete env[k];
      env.FLASHBACK_NATS = nats.url;
      env.FLASHBACK_CLICKHOUSE = clickhouse.url;
      if (env.FLASHBACK_REDIS) env.FLASHBACK_REDIS = source.url;
      if (env.FLASHBACK_HEALTH_PORT) env.FLASHBACK_HEALTH_PORT = String(await freePort());
      if (env.FLASHBACK_HEALTH_HOST) env.FLASHBACK_HEALTH_HOST = '127.0.0.1';
      if (env.FLASHBACK_INSTANCES_DIR) env.FLASHBACK_INSTANCES_DIR = path.join(dir, 'instances');
      if (unit.command === 'api') {
        env.FLASHBACK_HOST = '127.0.0.1';
        env.FLASHBACK_PORT = String(apiPort);
        env.FLASHBACK_API_TOKENS = token;
      }
      const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLASHBACK_')));
      const child = spawn(process.execPath, [BIN, unit.command], {
        env: { ...base, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let log = '';
      child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      // Where it answers GET /health: the API on its own port, the others on --health-port (the anchor keeper has none).
      const flags = await flagsOf(unit.command);
      const healthPort =
        unit.command === 'api' ? apiPort : flags.has('health-port') ? Number(env.FLASHBACK_HEALTH_PORT ?? 0) : 0;
      children.push({ unit: unit.file, child, log: () => log, healthPort });
    }
    for (const c of children.filter((x) => x.healthPort > 0)) {
      await waitFor(
        `GET /health of ${c.unit}`,
        async () => {
          if (c.child.exitCode !== null) throw new Error(`${c.unit} exited: ${c.log().slice(-2000)}`);
          const res = await fetch(`http://127.0.0.1:${c.healthPort}/health`).catch(() => undefined);
          return res?.status === 200 ? true : undefined;
        },
        90_000,
      ).catch((e: Error) => {
        throw new Error(`${e.message}\n${c.log().slice(-2000)}`);
      });
    }
    const api = new ApiClient(`http://127.0.0.1:${apiPort}`, token);
    const node = 'cache-1';
    const r = new Redis(source.url);
    try {
      await r.set('deployed', 'yes');
    } finally {
      r.disconnect();
    }
    const history = await waitFor(
      'the SET in the history',
      async () => {
        const h = await api.history({ node, key: 'deployed' });
        return h.length > 0 ? h : undefined;
      },
      30_000,
    );
    const cut = history[0]!.tsUs;
    await waitFor(
      'a window covering it',
      async () => ((await api.windows(node)).some((w) => w.fromTsUs <= cut && cut <= w.toTsUs) ? true : undefined),
      30_000,
    );
    const job = await api.createRestore({ node, to: String(cut), spawn: {} });
    const done = await api.waitForRestore(job.id, { timeoutMs: 120_000 });
    assert.equal(done.report!.keys, 1);
    for (const inst of await api.instances()) await api.stopInstance(inst.id);
    for (const c of children) c.child.kill('SIGTERM');
    for (const c of children) {
      const code = c.child.exitCode ?? (await new Promise((res) => c.child.once('exit', res)));
      assert.equal(code, 0, `${c.unit} stopped cleanly: ${c.log().slice(-1500)}`);
    }
  } finally {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  }
});
