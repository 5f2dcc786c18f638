/**
 * State-capture overhead: write throughput of a source Redis under workloads
 * whose replay needs state captured by the agent — `XADD s * f v` (ids read
 * back with XRANGE), `SPOP` on sets of ~1 000 and ~100 000 members (a
 * DUMP + PEXPIRETIME script per probe, one in flight per key) — and plain
 * `SET` for reference, with (a) nothing attached and (c) our agent capturing
 * into a real JetStream. Interleaved rounds (for each workload: a c, …);
 * every ratio is against (a) of the same workload and round. Afterwards one
 * captured XADD run is stored by a real sink and restored to its last event:
 * the restored stream's last-generated-id, length and the DEBUG DIGEST must be
 * the source's (printed in the notes).
 * Run alone: `node --import tsx bench/state-capture.ts [--quick]`.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { startAgent, type Agent } from '../agent/index.js';
import { baselineSubject } from '../core/bus/baseline.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { eventSubject } from '../core/bus/event.js';
import { silentLogger } from '../core/log.js';
import {
  connectNats,
  ensureBaselineStore,
  EVENT_STREAM,
  natsJetStreamManager,
  type NatsConnection,
} from '../core/bus/nats.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { startSink, type Sink } from '../sink/index.js';
import { processCpuSeconds, runCommand, SOURCE_ARGS } from './capture-overhead.js';
import {
  median,
  pollUntil,
  round,
  runIfMain,
  secondsSince,
  spread,
  type BenchResult,
  type BenchRow,
  type BenchSize,
} from './report.js';

/** A logger keeping the reasons the agent gave for ending an epoch (warn and above), for the notes. */
function reasonLogger(): { logger: Logger; reasons: string[] } {
  const reasons: string[] = [];
  const logger = pino(
    { level: 'warn' },
    {
      write(line: string) {
        try {
          const o = JSON.parse(line) as { msg?: string; reason?: string };
          reasons.push(o.reason ?? o.msg ?? line);
        } catch {
          reasons.push(line);
        }
      },
    },
  );
  return { logger, reasons };
}

/** How often the agent's stats (held events) are sampled during a run. */
const SAMPLE_EVERY_MS = 50;

/** One workload: the command redis-benchmark sends, and the dataset it needs first. */
interface Workload {
  name: string;
  /** Arguments after redis-benchmark's options (an arbitrary command). */
  command: string[];
  /** `-r`: how many keys `__rand_int__` ranges over. */
  keyspace?: number;
  /** Sets to fill before capture starts: how many, members each. */
  sets?: { count: number; members: number };
}

/**
 * `SPOP s:__rand_int__` over enough sets of `members` members that none runs empty: each set loses about
 * half its members over the run (a set of `members` members on average; binomial spread ≈ √(members/2)).
 */
function spopWorkload(members: number, requests: number): Workload {
  const count = Math.max(1, Math.ceil((2 * requests) / members));
  return {
    name: `SPOP, ${count.toLocaleString('en-US')} set(s) of ${members.toLocaleString('en-US')} members`,
    command: ['SPOP', 's:__rand_int__'],
    keyspace: count,
    sets: { count, members },
  };
}

function workloads(requests: number): Workload[] {
  return [
    { name: 'SET k v (reference)', command: ['SET', 'k', 'v'] },
    { name: 'XADD s * f v', command: ['XADD', 's', '*', 'f', 'v'] },
    spopWorkload(1_000, requests),
    spopWorkload(100_000, requests),
  ];
}

/** redis-benchmark's key for `__rand_int__` = i: twelve digits, zero-padded. */
const randKey = (prefix: string, i: number) => `${prefix}${String(i).padStart(12, '0')}`;

/** Fills the workload's sets (before the agent starts, so they are in its baseline, not in the measured events). */
async function fill(conn: Redis, w: Workload): Promise<void> {
  if (!w.sets) return;
  const CHUNK = 1_000;
  for (let k = 0; k < w.sets.count; k++) {
    const pipe = conn.pipeline();
    for (let from = 0; from < w.sets.members; from += CHUNK) {
      const members: string[] = [];
      for (let i = from; i < Math.min(from + CHUNK, w.sets.members); i++) members.push(`element:${i}`);
      pipe.sadd(randKey('s:', k), ...members);
    }
    const res = await pipe.exec();
    const err = res?.find(([e]) => e)?.[0];
    if (err) throw err;
  }
  const got = await conn.scard(randKey('s:', 0));
  if (got !== w.sets.members)
    throw new Error(`filled ${randKey('s:', 0)} with ${got} members, expected ${w.sets.members}`);
}

/** Smallest set left after a SPOP run (0 = some set ran empty and SPOP popped nothing). */
async function smallestSet(conn: Redis, w: Workload): Promise<number> {
  if (!w.sets) return Number.NaN;
  const pipe = conn.pipeline();
  for (let k = 0; k < w.sets.count; k++) pipe.scard(randKey('s:', k));
  const res = (await pipe.exec()) ?? [];
  return Math.min(...res.map(([, n]) => Number(n)));
}

/** `redis-benchmark -h 127.0.0.1 -p P -n N -P 16 -c 50 [-r K] -q --csv CMD…`: requests per second. */
async function benchmarkCommand(port: number, requests: number, w: Workload): Promise<number> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-n', String(requests), '-P', '16', '-c', '50', '-q', '--csv'];
  if (w.keyspace !== undefined) args.push('-r', String(w.keyspace));
  const { stdout } = await runCommand('redis-benchmark', [...args, ...w.command]);
  for (const line of stdout.split('\n')) {
    // "CMD","rps","avg_latency_ms",…: the second field.
    const m = /^"([^"]*)","([\d.]+)"/.exec(line.trim());
    if (m) return Number(m[2]);
  }
  throw new Error(`redis-benchmark printed no result for ${w.command.join(' ')}: ${stdout.slice(0, 300)}`);
}

type Config = 'a' | 'c';
const CONFIG_NAMES: Record<Config, string> = {
  a: 'a  nothing attached (baseline)',
  c: 'c  flashback agent → JetStream',
};

/** What the source held at the end of the XADD run that is restored afterwards. */
interface SourceFacts {
  node: string;
  epoch: number;
  lastSeq: number;
  lastGeneratedId: string;
  length: number;
  digest: string;
}

/** One measured run of one config. */
interface Run {
  rps: number;
  serverCpuUsPerReq: number;
  serverCpuPct: number;
  smallestSet: number;
  agent?: {
    cpuPct: number;
    natsCpuPct: number;
    probes: number;
    states: number;
    idsResolved: number;
    heldMax: number;
    events: number;
    catchUpS: number;
    epochEnded: boolean;
    /** Why the agent ended an epoch (its warn logs). */
    reasons: string[];
    lagP99MaxMs: number;
  };
  /** Set on the run kept for the restore check. */
  facts?: SourceFacts;
}

interface Env {
  natsUrl: string;
  natsPid: number;
  nc: NatsConnection;
}

/** Flat XINFO STREAM reply → field. */
function xinfoField(reply: unknown, field: string): unknown {
  const a = reply as unknown[];
  for (let i = 0; i + 1 < a.length; i += 2) if (String(a[i]) === field) return a[i + 1];
  return undefined;
}

async function runConfig(env: Env, w: Workload, config: Config, requests: number, keep: boolean): Promise<Run> {
  const redis = await startRedisServer({ args: SOURCE_ARGS });
  const conn = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let agent: Agent | undefined;
  let node: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let kept = false;
  const log = reasonLogger();
  try {
    await conn.connect();
    await fill(conn, w);
    if (config === 'c') {
      node = `bench-${randomUUID().slice(0, 8)}`;
      agent = await startAgent({ redisUrl: redis.url, nodeId: node, natsUrl: env.natsUrl, logger: log.logger });
      const a = agent;
      if (!(await pollUntil(() => a.stats().baselines >= 1, 60_000)))
        throw new Error('the agent stored no baseline within 60 s');
    }
    let heldMax = 0;
    let p99Max = 0;
    // stats() counts probes per epoch: when an epoch ends, what the last sample of the old one had is added here.
    const ended = { probes: 0, states: 0, ids: 0 };
    const before = agent?.stats();
    if (agent) {
      const a = agent;
      let last = a.stats();
      timer = setInterval(() => {
        const s = a.stats();
        if (s.epoch !== last.epoch) {
          ended.probes += last.stateProbes;
          ended.states += last.statesCaptured;
          ended.ids += last.xaddIdsResolved;
        }
        last = s;
        heldMax = Math.max(heldMax, s.heldForState);
        p99Max = Math.max(p99Max, s.lagMsP99);
      }, SAMPLE_EVERY_MS);
    }
    const serverCpu0 = processCpuSeconds(redis.pid);
    const ownCpu0 = process.cpuUsage();
    const natsCpu0 = processCpuSeconds(env.natsPid);
    const t0 = process.hrtime.bigint();
    const rps = await benchmarkCommand(redis.port, requests, w);
    const wallS = secondsSince(t0);
    const serverCpu = processCpuSeconds(redis.pid) - serverCpu0;
    const own = process.cpuUsage(ownCpu0);
    const natsCpu = processCpuSeconds(env.natsPid) - natsCpu0;
    const run: Run = {
      rps,
      serverCpuUsPerReq: (serverCpu * 1e6) / requests,
      serverCpuPct: (serverCpu / wallS) * 100,
      smallestSet: await smallestSet(conn, w),
    };
    if (agent && before) {
      const a = agent;
      const t1 = process.hrtime.bigint();
      // Every request captured (state events come on top) and nothing held waiting for a probe any more.
      // An ended epoch drops what it held: stop waiting then.
      const caughtUp = await pollUntil(
        () =>
          (a.stats().eventsCaptured - before.eventsCaptured >= requests && a.stats().heldForState === 0) ||
          a.stats().epochs > 1,
        300_000,
      );
      const catchUpS = secondsSince(t1);
      clearInterval(timer);
      if (!(await a.flush(120_000)))
        throw new Error('the agent could not publish everything to JetStream within 120 s');
      const s = a.stats();
      heldMax = Math.max(heldMax, s.heldForState);
      run.agent = {
        // The agent runs in this process: its CPU is ours while redis-benchmark (a child) runs.
        cpuPct: ((own.user + own.system) / 1e6 / wallS) * 100,
        natsCpuPct: (natsCpu / wallS) * 100,
        probes: ended.probes + s.stateProbes - before.stateProbes,
        states: ended.states + s.statesCaptured - before.statesCaptured,
        idsResolved: ended.ids + s.xaddIdsResolved - before.xaddIdsResolved,
        heldMax,
        events: s.eventsCaptured - before.eventsCaptured,
        catchUpS: caughtUp && s.epochs === 1 ? catchUpS : Number.NaN,
        epochEnded: s.epochs > 1,
        reasons: [...log.reasons],
        lagP99MaxMs: Math.max(p99Max, s.lagMsP99),
      };
      if (keep && s.epochs === 1) {
        const info = await conn.call('XINFO', 'STREAM', 's');
        run.facts = {
          node: node!,
          epoch: s.epoch,
          lastSeq: s.lastSeq,
          lastGeneratedId: String(xinfoField(info, 'last-generated-id')),
          length: Number(xinfoField(info, 'length')),
          digest: String(await conn.call('DEBUG', 'DIGEST')),
        };
        kept = true;
      }
    }
    return run;
  } finally {
    clearInterval(timer);
    await agent?.close().catch(() => undefined);
    conn.disconnect();
    await redis.stop();
    // Keep the stream small between runs: only the run kept for the restore check stays.
    if (node && !kept) {
      const jsm = await natsJetStreamManager(env.nc);
      for (const filter of [eventSubject(node), baselineSubject(node)])
        await jsm.streams.purge(EVENT_STREAM, { filter }).catch(() => undefined);
    }
  }
}

/**
 * Stores the kept XADD run with a real sink, restores it to its last event (--spawn) and compares the new
 * instance with what the source held then. Returns one line for the notes.
 */
async function checkRestore(env: Env, facts: SourceFacts): Promise<string> {
  const clickhouse = await startClickHouseServer();
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'flashback-bench-state-'));
  let store: Store | undefined;
  let sink: Sink | undefined;
  try {
    store = await openClickHouse(clickhouse.url);
    await store.ensureSchema();
    const s = store;
    sink = await startSink({ natsUrl: env.natsUrl, clickhouseUrl: clickhouse.url, logger: silentLogger });
    const t0 = process.hrtime.bigint();
    const stored = await pollUntil(
      async () => {
        const r = await s.query<{ n: string | number }>(
          `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(facts.node)} AND epoch = ${sqlUInt(facts.epoch)} AND seq <= ${sqlUInt(facts.lastSeq)}`,
        );
        return Number(r[0]?.n ?? 0) >= facts.lastSeq;
      },
      600_000,
      200,
    );
    if (!stored)
      throw new Error(`ClickHouse did not receive all ${facts.lastSeq} events of ${facts.node} within 600 s`);
    const storeS = secondsSince(t0);
    const objects = await ensureBaselineStore(env.nc);
    const report = await restore(
      { events: clickHouseEventStore(s, s.client), objects, instancesDir: workDir },
      { node: facts.node, toSeq: facts.lastSeq, spawn: {} },
    );
    try {
      const r = new Redis(report.url!, { maxRetriesPerRequest: 1 });
      try {
        const info = await r.call('XINFO', 'STREAM', 's');
        const id = String(xinfoField(info, 'last-generated-id'));
        const length = Number(xinfoField(info, 'length'));
        const digest = String(await r.call('DEBUG', 'DIGEST'));
        const same = id === facts.lastGeneratedId && length === facts.length && digest === facts.digest;
        return (
          `Restore check (last round's XADD run with the agent, stored by a sink in ${round(storeS, 1)} s, restored to its last event seq ${facts.lastSeq.toLocaleString('en-US')} in ${round(report.seconds, 1)} s): ` +
          `${same ? 'MATCH' : 'MISMATCH'} — last-generated-id ${id} (source ${facts.lastGeneratedId}), length ${length.toLocaleString('en-US')} (source ${facts.length.toLocaleString('en-US')}), DEBUG DIGEST ${digest === facts.digest ? 'equal' : `${digest} ≠ source ${facts.digest}`}.`
        );
      } finally {
        r.disconnect();
      }
    } finally {
      if (report.pid) await stopPid(report.pid);
      if (report.dir) await rm(report.dir, { recursive: true, force: true });
    }
  } finally {
    await sink?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await clickhouse.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

function rowsFor(w: Workload, requests: number, runs: Record<Config, Run[]>, showSpread: boolean): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const config of ['a', 'c'] as const) {
    const rs = runs[config];
    const fmt = (xs: number[], d = 2) => (showSpread ? spread(xs, d) : round(xs[0]!, d));
    const row: BenchRow = {
      workload: `${w.name}, n=${requests.toLocaleString('en-US')}`,
      config: CONFIG_NAMES[config],
      'kops/s': fmt(
        rs.map((r) => r.rps / 1000),
        0,
      ),
      'ratio vs a': fmt(rs.map((r, i) => r.rps / runs.a[i]!.rps)),
      'server CPU µs/req': fmt(rs.map((r) => r.serverCpuUsPerReq)),
      'server CPU %': fmt(
        rs.map((r) => r.serverCpuPct),
        0,
      ),
    };
    const ag = (f: (a: NonNullable<Run['agent']>) => number, d = 0) =>
      config === 'c'
        ? fmt(
            rs.map((r) => f(r.agent!)),
            d,
          )
        : '–';
    row['agent CPU %'] = ag((a) => a.cpuPct);
    row['nats-server CPU %'] = ag((a) => a.natsCpuPct);
    row['probes sent'] = ag((a) => a.probes);
    row['states captured'] = ag((a) => a.states);
    row['XADD ids resolved'] = ag((a) => a.idsResolved);
    row['events held max'] = ag((a) => a.heldMax);
    row['agent lag p99 (max) ms'] = ag((a) => a.lagP99MaxMs);
    row['catch-up after load s'] = ag((a) => a.catchUpS, 1);
    const ended = rs.filter((r) => r.agent?.epochEnded).length;
    row['epoch ended'] = config === 'c' ? (ended > 0 ? `yes (${ended}/${rs.length})` : 'no') : '–';
    row['smallest set after'] = w.sets
      ? fmt(
          rs.map((r) => r.smallestSet),
          0,
        )
      : '–';
    rows.push(row);
  }
  return rows;
}

/** Requests per workload run and rounds, per run size. */
const SIZES: Record<BenchSize, { requests: number; rounds: number }> = {
  quick: { requests: 100_000, rounds: 1 },
  full: { requests: 300_000, rounds: 2 },
};

/** Runs the state-capture benchmark; one row per (workload, config). */
export async function benchStateCapture(size: BenchSize = 'full'): Promise<BenchResult> {
  const { requests, rounds } = SIZES[size];
  const ws = workloads(requests);
  const nats = await startNatsServer();
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats({ url: nats.url, name: 'bench state-capture' });
    const env: Env = { natsUrl: nats.url, natsPid: nats.pid, nc };
    const runs = ws.map(() => ({ a: [] as Run[], c: [] as Run[] }));
    let facts: SourceFacts | undefined;
    for (let r = 0; r < rounds; r++) {
      for (const [i, w] of ws.entries()) {
        for (const config of ['a', 'c'] as const) {
          const keep = config === 'c' && r === rounds - 1 && w.command[0] === 'XADD';
          const run = await runConfig(env, w, config, requests, keep);
          runs[i]![config].push(run);
          facts ??= run.facts;
        }
      }
    }
    const check = facts
      ? await checkRestore(env, facts)
      : 'Restore check: not run — the kept XADD run ended an epoch, so no single window spans it.';
    const spopRuns = ws.flatMap((w, i) => (w.sets ? [...runs[i]!.a, ...runs[i]!.c] : []));
    const heldAll = runs.flatMap((x) => x.c.map((r) => r.agent!.heldMax));
    const endings = ws.flatMap((w, i) => {
      const rs = runs[i]!.c.filter((r) => r.agent!.epochEnded);
      if (rs.length === 0) return [];
      const reasons = [...new Set(rs.flatMap((r) => r.agent!.reasons))].map((x) => x.slice(0, 300));
      return [
        `Epoch ended in ${rs.length}/${runs[i]!.c.length} agent run(s) of "${w.name}"; the agent's reason: ${reasons.map((x) => `"${x}"`).join('; ') || '(none logged)'}. Probe counts then add the ended epoch's last 50 ms sample to the new epoch's counters.`,
      ];
    });
    return {
      name: 'State capture: source write throughput with nondeterministic writes (redis-benchmark -P 16 -c 50)',
      rows: ws.flatMap((w, i) => rowsFor(w, requests, runs[i]!, rounds > 1)),
      notes: [
        `Command per run: \`redis-benchmark -h 127.0.0.1 -p P -n ${requests} -P 16 -c 50 [-r K] -q --csv CMD…\` with CMD = \`SET k v\`, \`XADD s '*' f v\`, \`SPOP s:__rand_int__\` (-r K = the number of sets).`,
        `${rounds} interleaved round(s): per workload (a) then (c); ratios are against (a) of the same workload and round; with several rounds a cell is median (min–max).`,
        'Each run starts a fresh redis-server. SPOP runs first fill K sets (`element:0` … by SADD pipelines, before the agent starts, so they are in its first baseline) so that each set loses about half its members: K = 2n / members. "smallest set after" is the smallest SCARD left (> 0: SPOP never ran empty).',
        '"probes sent" = DUMP+PEXPIRETIME scripts (SPOP) and XRANGE reads (XADD *), one in flight per key; "states captured" = key states they placed; "XADD ids resolved" = XADD events that got their id from the source; "events held max" = largest number of events held back waiting for a probe (stats().heldForState sampled every 50 ms); all from the agent\'s stats() over the load.',
        '"agent CPU %" is this Node process (the agent) while redis-benchmark ran; "catch-up after load" = time from redis-benchmark\'s end until every request was captured and nothing was held; "epoch ended" = stats().epochs > 1.',
        ...endings,
        check,
        `(largest held stretch over all agent runs: ${Math.max(...heldAll).toLocaleString('en-US')} events; median smallest SPOP set after a run: ${spopRuns.length ? median(spopRuns.map((r) => r.smallestSet)).toLocaleString('en-US') : '–'})`,
      ],
    };
  } finally {
    await nc?.close().catch(() => undefined);
    await nats.stop();
  }
}

await runIfMain(import.meta.url, benchStateCapture);
