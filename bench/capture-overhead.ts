/**
 * Capture overhead: write throughput of a source Redis under `redis-benchmark
 * -t set,hset,lpush,incr` with (a) nothing attached, (b) a bare `redis-cli
 * monitor > /dev/null`, (c) our agent capturing into a real JetStream.
 * Interleaved rounds (a b c a b c …); every ratio is against (a) of the same
 * round. Pipelined (-P 16) for several rounds, unpipelined (-P 1) once.
 * Run alone: `node --import tsx bench/capture-overhead.ts [--quick]`.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../core/log.js';
import { connectNats, EVENT_STREAM, natsJetStreamManager, type NatsConnection } from '../core/bus/nats.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import {
  median,
  pollUntil,
  round,
  runIfMain,
  spread,
  type BenchResult,
  type BenchRow,
  type BenchSize,
} from './report.js';

/**
 * Redis args of every source here: what a captured source gets in the tests (DEBUG DIGEST allowed, baselines start at
 * once).
 */
export const SOURCE_ARGS = ['--enable-debug-command', 'yes', '--repl-diskless-sync-delay', '0'];

const TESTS = ['SET', 'HSET', 'LPUSH', 'INCR'] as const;
const SAMPLE_EVERY_MS = 200;
/** Longest a child command (one redis-benchmark run) may take before it is killed. */
const COMMAND_TIMEOUT_MS = 300_000;

/** Output of a finished child process. */
export interface CommandOutput {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs `cmd args…` to its end (killed after `timeoutMs`); rejects when it cannot start or exits non-zero. */
export function runCommand(
  cmd: string,
  args: readonly string[],
  timeoutMs = COMMAND_TIMEOUT_MS,
): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${err.message}; is it installed and on PATH?`, { cause: err }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.trim().slice(0, 500)}`));
      else resolve({ stdout, stderr, code });
    });
  });
}

/** One redis-benchmark run: requests per second of each test, and their aggregate. */
export interface BenchmarkRun {
  /** Test name (SET, HSET …) → requests/s. */
  rps: Record<string, number>;
  /** All tests' requests / summed test time (the harmonic mean of the rps). */
  aggregateRps: number;
  /** Summed test time, s. */
  seconds: number;
  /** Requests sent over all tests. */
  requests: number;
}

/** Options of {@link redisBenchmark}. */
export interface RedisBenchmarkOptions {
  port: number;
  /** Requests per test (`-n`). */
  requests: number;
  /** Pipeline depth (`-P`). @default 16 */
  pipeline?: number;
  /** Parallel connections (`-c`). @default 50 */
  clients?: number;
  /** Tests (`-t`). @default set,hset,lpush,incr */
  tests?: readonly string[];
  /** Random keys out of this many (`-r`); undefined = redis-benchmark's single key per test. */
  keyspace?: number;
}

/** `redis-benchmark -h 127.0.0.1 -p P -t … -n N -P p -c c -q --csv`, parsed. */
export async function redisBenchmark(o: RedisBenchmarkOptions): Promise<BenchmarkRun> {
  const tests = o.tests ?? TESTS.map((t) => t.toLowerCase());
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(o.port),
    '-t',
    tests.join(','),
    '-n',
    String(o.requests),
    '-P',
    String(o.pipeline ?? 16),
    '-c',
    String(o.clients ?? 50),
    '-q',
    '--csv',
  ];
  if (o.keyspace !== undefined) args.push('-r', String(o.keyspace));
  const { stdout } = await runCommand('redis-benchmark', args);
  const rps: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const m = /^"([A-Z_ ]+)[^"]*","([\d.]+)"/.exec(line.trim());
    if (m) rps[m[1]!.trim()] = Number(m[2]);
  }
  const names = Object.keys(rps);
  if (names.length === 0) throw new Error(`redis-benchmark printed no results: ${stdout.slice(0, 300)}`);
  const seconds = names.reduce((s, t) => s + o.requests / rps[t]!, 0);
  const requests = o.requests * names.length;
  return { rps, aggregateRps: requests / seconds, seconds, requests };
}

const CLK_TCK = 100;

/** CPU seconds (user + system) a process has used so far; 0 when it is gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Samples `CLIENT LIST` of a server and keeps the largest `omem` of its MONITOR clients. */
class MonitorOmemSampler {
  maxBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  constructor(private readonly conn: Redis) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), SAMPLE_EVERY_MS);
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const list = String(await this.conn.call('CLIENT', 'LIST'));
      for (const line of list.split('\n')) {
        if (!/\bcmd=monitor\b/.test(line)) continue;
        this.maxBytes = Math.max(this.maxBytes, Number(/\bomem=(\d+)/.exec(line)?.[1] ?? 0));
      }
    } catch {
      // the server is stopping
    } finally {
      this.busy = false;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sample();
  }
}

type Config = 'a' | 'b' | 'c';
const CONFIG_NAMES: Record<Config, string> = {
  a: 'a  nothing attached (baseline)',
  b: 'b  bare `redis-cli monitor > /dev/null`',
  c: 'c  flashback agent → JetStream',
};

/** One measured run of one config. */
interface ConfigRun {
  bench: BenchmarkRun;
  serverCpuUsPerReq: number;
  serverCpuPct: number;
  consumerCpuPct?: number;
  natsCpuPct?: number;
  maxOmemBytes?: number;
  agent?: { lagP50Ms: number; lagP99MaxMs: number; catchUpS: number; epochEnded: boolean; events: number };
}

/** Shared servers of one capture-overhead run. */
interface Env {
  natsUrl: string;
  natsPid: number;
  nc: NatsConnection;
}

async function waitForMonitorClient(conn: Redis): Promise<void> {
  const ok = await pollUntil(async () => /\bcmd=monitor\b/.test(String(await conn.call('CLIENT', 'LIST'))), 10_000);
  if (!ok) throw new Error('redis-cli monitor did not show up in CLIENT LIST within 10 s');
}

async function stopChild(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

async function runConfig(env: Env, config: Config, requests: number, pipeline: number): Promise<ConfigRun> {
  const redis = await startRedisServer({ args: SOURCE_ARGS });
  const conn = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let consumer: ReturnType<typeof spawn> | undefined;
  let agent: Agent | undefined;
  let statsTimer: NodeJS.Timeout | undefined;
  const sampler = new MonitorOmemSampler(conn);
  try {
    await conn.connect();
    if (config === 'b') {
      consumer = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'monitor'], { stdio: 'ignore' });
      await waitForMonitorClient(conn);
    } else if (config === 'c') {
      agent = await startAgent({
        redisUrl: redis.url,
        nodeId: `bench-${randomUUID().slice(0, 8)}`,
        natsUrl: env.natsUrl,
        logger: silentLogger,
      });
      const a = agent;
      if (!(await pollUntil(() => a.stats().baselines >= 1, 30_000)))
        throw new Error('the agent stored no baseline within 30 s');
    }
    const p50s: number[] = [];
    let p99Max = 0;
    if (agent) {
      const a = agent;
      statsTimer = setInterval(() => {
        const s = a.stats();
        if (s.lagMsP50 > 0 || s.lagMsP99 > 0) p50s.push(s.lagMsP50);
        p99Max = Math.max(p99Max, s.lagMsP99);
      }, SAMPLE_EVERY_MS);
    }
    const capturedBefore = agent?.stats().eventsCaptured ?? 0;
    const serverCpu0 = processCpuSeconds(redis.pid);
    const consumerCpu0 = consumer?.pid ? processCpuSeconds(consumer.pid) : 0;
    const ownCpu0 = process.cpuUsage();
    const natsCpu0 = processCpuSeconds(env.natsPid);
    sampler.start();
    const t0 = process.hrtime.bigint();
    const bench = await redisBenchmark({ port: redis.port, requests, pipeline });
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    const serverCpu = processCpuSeconds(redis.pid) - serverCpu0;
    const consumerCpu = consumer?.pid ? processCpuSeconds(consumer.pid) - consumerCpu0 : 0;
    const own = process.cpuUsage(ownCpu0);
    const natsCpu = processCpuSeconds(env.natsPid) - natsCpu0;
    const run: ConfigRun = {
      bench,
      serverCpuUsPerReq: (serverCpu * 1e6) / bench.requests,
      serverCpuPct: (serverCpu / wallS) * 100,
    };
    if (consumer) run.consumerCpuPct = (consumerCpu / wallS) * 100;
    if (agent) {
      const a = agent;
      // The agent runs in this process: its CPU is ours while redis-benchmark (a child) runs.
      run.consumerCpuPct = ((own.user + own.system) / 1e6 / wallS) * 100;
      run.natsCpuPct = (natsCpu / wallS) * 100;
      const t1 = process.hrtime.bigint();
      const caughtUp = await pollUntil(() => a.stats().eventsCaptured - capturedBefore >= bench.requests, 300_000);
      const catchUpS = Number(process.hrtime.bigint() - t1) / 1e9;
      clearInterval(statsTimer);
      await a.flush(120_000);
      const s = a.stats();
      run.agent = {
        lagP50Ms: p50s.length ? median(p50s) : s.lagMsP50,
        lagP99MaxMs: Math.max(p99Max, s.lagMsP99),
        catchUpS: caughtUp ? catchUpS : Number.NaN,
        epochEnded: s.epochs > 1,
        events: s.eventsCaptured - capturedBefore,
      };
    }
    await sampler.stop();
    run.maxOmemBytes = Math.max(sampler.maxBytes, agent?.stats().maxMonitorOutputBytesSeen ?? 0);
    return run;
  } finally {
    clearInterval(statsTimer);
    await sampler.stop().catch(() => undefined);
    if (consumer) await stopChild(consumer);
    await agent?.close().catch(() => undefined);
    conn.disconnect();
    await redis.stop();
    // Keep the stream small between runs: the events were only the load, not data we read.
    if (config === 'c') await (await natsJetStreamManager(env.nc)).streams.purge(EVENT_STREAM).catch(() => undefined);
  }
}

const MB = 1024 * 1024;

function rowsFor(label: string, runs: Record<Config, ConfigRun[]>, showSpread: boolean): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const config of ['a', 'b', 'c'] as const) {
    const rs = runs[config];
    if (rs.length === 0) continue;
    const ratios = rs.map((r, i) => r.bench.aggregateRps / runs.a[i]!.bench.aggregateRps);
    const fmt = (xs: number[], d = 2) => (showSpread ? spread(xs, d) : round(xs[0]!, d));
    const row: BenchRow = {
      load: label,
      config: CONFIG_NAMES[config],
      'kops/s': fmt(
        rs.map((r) => r.bench.aggregateRps / 1000),
        0,
      ),
      'ratio vs a': fmt(ratios),
    };
    for (const t of TESTS)
      row[t] = fmt(rs.map((r, i) => (r.bench.rps[t] ?? Number.NaN) / (runs.a[i]!.bench.rps[t] ?? Number.NaN)));
    row['server CPU µs/req'] = fmt(rs.map((r) => r.serverCpuUsPerReq));
    row['server CPU %'] = fmt(
      rs.map((r) => r.serverCpuPct),
      0,
    );
    row['consumer CPU %'] =
      config === 'a'
        ? '–'
        : fmt(
            rs.map((r) => r.consumerCpuPct ?? 0),
            0,
          );
    row['nats-server CPU %'] =
      config === 'c'
        ? fmt(
            rs.map((r) => r.natsCpuPct ?? 0),
            0,
          )
        : '–';
    row['max MONITOR omem MB'] =
      config === 'a'
        ? '–'
        : fmt(
            rs.map((r) => (r.maxOmemBytes ?? 0) / MB),
            1,
          );
    if (config === 'c') {
      row['agent lag p50 ms'] = fmt(
        rs.map((r) => r.agent!.lagP50Ms),
        1,
      );
      row['agent lag p99 (max) ms'] = fmt(
        rs.map((r) => r.agent!.lagP99MaxMs),
        0,
      );
      row['catch-up after load s'] = fmt(
        rs.map((r) => r.agent!.catchUpS),
        1,
      );
      row['epoch ended'] =
        rs.filter((r) => r.agent!.epochEnded).length > 0
          ? `yes (${rs.filter((r) => r.agent!.epochEnded).length}/${rs.length})`
          : 'no';
    } else {
      row['agent lag p50 ms'] = '–';
      row['agent lag p99 (max) ms'] = '–';
      row['catch-up after load s'] = '–';
      row['epoch ended'] = '–';
    }
    rows.push(row);
  }
  return rows;
}

/** Sizes per run size: requests per test and rounds of the pipelined pass, requests per test of the unpipelined one. */
const SIZES: Record<BenchSize, { requests: number; rounds: number; unpipelined: number }> = {
  quick: { requests: 200_000, rounds: 2, unpipelined: 40_000 },
  full: { requests: 1_000_000, rounds: 3, unpipelined: 200_000 },
};

/** Runs the capture-overhead benchmark; one row per (load, config). */
export async function benchCaptureOverhead(size: BenchSize = 'full'): Promise<BenchResult> {
  const { requests, rounds, unpipelined } = SIZES[size];
  const nats = await startNatsServer();
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats({ url: nats.url, name: 'bench capture-overhead' });
    const env: Env = { natsUrl: nats.url, natsPid: nats.pid, nc };
    const piped: Record<Config, ConfigRun[]> = { a: [], b: [], c: [] };
    for (let r = 0; r < rounds; r++) {
      for (const config of ['a', 'b', 'c'] as const) piped[config].push(await runConfig(env, config, requests, 16));
    }
    const single: Record<Config, ConfigRun[]> = { a: [], b: [], c: [] };
    for (const config of ['a', 'b', 'c'] as const) single[config].push(await runConfig(env, config, unpipelined, 1));
    return {
      name: 'Capture overhead: source write throughput (redis-benchmark -t set,hset,lpush,incr -c 50)',
      rows: [
        ...rowsFor(`-P 16, n=${requests.toLocaleString('en-US')}/test, ${rounds} rounds`, piped, rounds > 1),
        ...rowsFor(`-P 1, n=${unpipelined.toLocaleString('en-US')}/test, once`, single, false),
      ],
      notes: [
        'Ratios are against config a of the same round; with several rounds a cell is median (min–max) over rounds.',
        'Each run starts a fresh redis-server (empty dataset); (c) starts the agent, waits for its first baseline, then loads.',
        '"server CPU µs/req" is redis-server CPU (utime+stime from /proc) per request: the cost inside the server, independent of CPU contention.',
        '"consumer CPU %" is redis-cli for (b) and this Node process (the agent) for (c); "nats-server CPU %" is the JetStream server storing the agent events: a third process on the 2 cores.',
        '"max MONITOR omem" is the largest server-side output buffer of the MONITOR client, sampled from CLIENT LIST every 200 ms (and the agent\'s own 1 s samples).',
        '"agent lag" is agent clock − server timestamp of the newest MONITOR line read: p50 = median of 200 ms samples of the per-second p50, p99 = largest per-second p99.',
        '"catch-up after load" = time from redis-benchmark\'s end until the agent had captured every request; "epoch ended" = the agent ended an epoch (stats().epochs > 1).',
      ],
    };
  } finally {
    await nc?.close().catch(() => undefined);
    await nats.stop();
  }
}

await runIfMain(import.meta.url, benchCaptureOverhead);
