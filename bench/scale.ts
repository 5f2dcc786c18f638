/**
 * Scale-out figures (issue 17, docs/scale.md), each against a baseline measured in the same run:
 * 1. end-to-end events/s with 1, 4 and 16 Redis nodes: redis-benchmark writes to every node at once, one replication
 *    agent per node (all in this process, and with 16 nodes also one process per agent), one NATS, one sink, one
 *    ClickHouse; the clock stops when the sink has inserted every event. Baseline: the 1-node run.
 * 2. JetStream R3 vs R1: the same pre-encoded batches published to an R1 stream on one nats-server and to an R3 stream
 *    on a 3-server cluster, then drained by a sink into ClickHouse. Baseline: R1.
 * 3. Sink rows/s into one ClickHouse shard vs two (Distributed tables sharded by node): one sink, and two sinks sharing
 *    the durable consumer. Baseline: one sink into one shard.
 * 4. Per-node agent lag in each end-to-end run (p99 of every node's flashback_agent_lag_seconds over the load,
 *    bench/scale-lag.ts) and whether each node's SETs and seqs all reached ClickHouse. Baseline: the 1-node p99.
 * 5. restore() of one node's history through the Distributed tables (2 shards) vs the same history on one server
 *    (bench/scale-restore.ts). Baseline: the single server.
 * Run alone: `node --import tsx bench/scale.ts [--quick]`; also `npm run bench -- scale`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { jetstream } from '@nats-io/jetstream';
import { startAgent, type Agent } from '../agent/index.js';
import { encodeBatch } from '../core/bus/event-codec.js';
import { eventSubject, messageId, type FlashbackEvent } from '../core/bus/event.js';
import { connectNats, ensureEventStream, type NatsConnection } from '../core/bus/nats.js';
import { silentLogger } from '../core/log.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startClickHouseShards } from '../core/servers/clickhouse-shards.js';
import { startNatsCluster } from '../core/servers/nats-cluster.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { freePort } from '../core/servers/free-port.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { startSink, type Sink } from '../sink/index.js';
import { gaugeOf, lagFromScrapes, lagSummary, perNodeList, type NodeLag } from './scale-lag.js';
import { restoreThroughShards } from './scale-restore.js';
import {
  median,
  pollUntil,
  round,
  runIfMain,
  secondsSince,
  type BenchResult,
  type BenchRow,
  type BenchSize,
} from './report.js';

const SIZES: Record<
  BenchSize,
  { e2eEvents: number; busEvents: number; sinkEvents: number; restoreEvents: number; restoreRounds: number }
> = {
  quick: { e2eEvents: 160_000, busEvents: 200_000, sinkEvents: 200_000, restoreEvents: 100_000, restoreRounds: 3 },
  full: { e2eEvents: 640_000, busEvents: 1_000_000, sinkEvents: 1_000_000, restoreEvents: 500_000, restoreRounds: 5 },
};

const SOURCE_ARGS = ['--repl-diskless-sync-delay', '0', '--save', '', '--appendonly', 'no'];

/** Runs redis-benchmark SET against `url` with `n` requests, pipelined; resolves when it exits. */
function redisBenchmark(url: string, n: number): Promise<void> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const p = spawn(
      'redis-benchmark',
      ['-h', u.hostname, '-p', u.port, '-t', 'set', '-n', String(n), '-P', '16', '-c', '4', '-r', '100000', '-q'],
      { stdio: 'ignore' },
    );
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-benchmark exited with ${code}`))));
  });
}

/** What each agent process logged last (warnings and errors). */
const logTails = new WeakMap<ChildProcess, { text: string }>();

/**
 * `flashback agent` as a process of its own (the sources through tsx, as tests run it), logging warnings only, serving
 * GET /metrics on `healthPort`.
 */
function agentProcess(redisUrl: string, natsUrl: string, nodeId: string, healthPort: number): ChildProcess {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLASHBACK_')));
  const p = spawn(
    process.execPath,
    [
      'bin/flashback-dev.js',
      'agent',
      '--redis',
      redisUrl,
      '--nats',
      natsUrl,
      '--node-id',
      nodeId,
      '--health-port',
      String(healthPort),
    ],
    { env: { ...env, FLASHBACK_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // The last 2 000 characters it logged, for the error when it stalls.
  const tail = { text: '' };
  const keep = (d: Buffer) => (tail.text = (tail.text + d.toString('utf8')).slice(-2_000));
  p.stdout!.on('data', keep);
  p.stderr!.on('data', keep);
  logTails.set(p, tail);
  return p;
}

/** GET /metrics of an agent process, retried while its health server is not up yet (up to 30 s). */
async function scrapeProcess(port: number): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      if (res.ok) return await res.text();
      if (Date.now() > deadline) throw new Error(`GET /metrics on port ${port}: HTTP ${res.status}`);
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc; this process's own from process.cpuUsage(). */
function cpuSeconds(pid: number = process.pid): number {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), in clock ticks of 1/100 s on Linux.
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds of several processes. */
const cpuOf = (pids: readonly number[]) => pids.reduce((s, p) => s + cpuSeconds(p), 0);

/** µs of CPU per event, for the table. */
const perEvent = (cpuS: number, events: number) => round((cpuS / events) * 1e6, 1);

/** Sum of `inserted` of the sinks. */
const inserted = (sinks: readonly Sink[]) => sinks.reduce((s, x) => s + x.stats().inserted, 0);

/** What one end-to-end run measured. */
interface EndToEnd {
  seconds: number;
  loadSeconds: number;
  events: number;
  cpu: string;
  /** Per node: lag over the load (from its Prometheus histogram) and whether its history reached ClickHouse. */
  lags: NodeLag[];
}

/**
 * Part 1: end-to-end events/s with `nodes` nodes; agents in this process, or one process each. Each agent's
 * `flashback_agent_lag_seconds` is scraped (in-process: its registry's text; processes: GET /metrics) before the load
 * and once ClickHouse holds every SET: the difference is the lag over the load.
 */
async function endToEnd(nodes: number, total: number, agentsIn: 'one process' | 'a process each'): Promise<EndToEnd> {
  const [nats, clickhouse, ...redis] = await Promise.all([
    startNatsServer(),
    startClickHouseServer(),
    ...Array.from({ length: nodes }, () => startRedisServer({ args: SOURCE_ARGS })),
  ]);
  const agents: Agent[] = [];
  const procs: ChildProcess[] = [];
  const ports: number[] = [];
  let sink: Sink | undefined;
  let sampler: NodeJS.Timeout | undefined;
  try {
    const store = await openClickHouse(clickhouse.url);
    await store.ensureSchema();
    sink = await startSink({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, logger: silentLogger });
    const nodeIds = redis.map((_, i) => `bench-${nodes}-${i}`);
    for (const [i, r] of redis.entries()) {
      const nodeId = nodeIds[i]!;
      if (agentsIn === 'one process')
        agents.push(
          await startAgent({ redisUrl: r.url, nodeId, natsUrl: nats.url, logger: silentLogger, source: 'replication' }),
        );
      else {
        let port = await freePort();
        while (ports.includes(port)) port = await freePort();
        ports.push(port);
        procs.push(agentProcess(r.url, nats.url, nodeId, port));
      }
    }
    // Every agent has its baseline stored before the clock starts.
    const ready = await pollUntil(() => sink!.stats().baselines >= nodes, 120_000, 50);
    if (!ready) {
      // Say what each agent was doing: a run that stalls here is otherwise silent.
      const why =
        agentsIn === 'one process'
          ? agents.map((a) => {
              const st = a.stats();
              return `${a.node}: connected ${st.connected}, baselines ${st.baselines}, failures ${st.baselineFailures}${st.lastBaselineError ? ` (${st.lastBaselineError})` : ''}`;
            })
          : procs.map(
              (p, i) =>
                `${nodeIds[i]}: ${p.exitCode === null ? 'running' : `exited ${p.exitCode}`}, logged: ${logTails.get(p)?.text.trim() || 'nothing'}`,
            );
      throw new Error(
        `only ${sink.stats().baselines} of ${nodes} baselines within 120 s; sink ${JSON.stringify(sink.stats())}; ${why.join('; ')}`,
      );
    }
    const scrape = (i: number) =>
      agentsIn === 'one process' ? agents[i]!.metrics().metrics() : scrapeProcess(ports[i]!);
    const before = await Promise.all(nodeIds.map((_, i) => scrape(i)));
    const perNode = Math.floor(total / nodes);
    const sets = async () =>
      Number(
        (await store.query<{ n: number }>("SELECT count() AS n FROM flashback.events WHERE command = 'SET'"))[0]?.n,
      );
    // In-process agents: their own per-second p99 (agent.stats(), rolled every second), the highest seen.
    const maxIntervalP99 = nodeIds.map(() => 0);
    if (agents.length > 0)
      sampler = setInterval(() => {
        for (const [i, a] of agents.entries()) maxIntervalP99[i] = Math.max(maxIntervalP99[i]!, a.stats().lagMsP99);
      }, 1_000);
    const storedAt = new Map<string, number>();
    const cpu0 = [cpuSeconds(), cpuOf(procs.map((p) => p.pid!)), cpuSeconds(nats.pid), cpuSeconds(clickhouse.pid)];
    const t0 = process.hrtime.bigint();
    await Promise.all(redis.map((r) => redisBenchmark(r.url, perNode)));
    const loadSeconds = secondsSince(t0);
    // Counted in ClickHouse (the rows queries see), node by node, every 100 ms.
    const done = await pollUntil(
      async () => {
        const rows = await store.query<{ node: string; n: string | number }>(
          "SELECT node, count() AS n FROM flashback.events WHERE command = 'SET' GROUP BY node",
        );
        for (const r of rows)
          if (Number(r.n) >= perNode && !storedAt.has(r.node)) storedAt.set(r.node, secondsSince(t0));
        return storedAt.size >= nodes;
      },
      600_000,
      100,
    );
    const seconds = secondsSince(t0);
    const n = perNode * nodes;
    const [own, agentProcs, natsCpu, chCpu] = [
      cpuSeconds() - cpu0[0]!,
      cpuOf(procs.map((p) => p.pid!)) - cpu0[1]!,
      cpuSeconds(nats.pid) - cpu0[2]!,
      cpuSeconds(clickhouse.pid) - cpu0[3]!,
    ];
    clearInterval(sampler);
    const cpu =
      agentsIn === 'one process'
        ? `CPU µs/event: agents + sink ${perEvent(own, n)}, nats-server ${perEvent(natsCpu, n)}, clickhouse-server ${perEvent(chCpu, n)}`
        : `CPU µs/event: agent processes ${perEvent(agentProcs, n)}, sink ${perEvent(own, n)}, nats-server ${perEvent(natsCpu, n)}, clickhouse-server ${perEvent(chCpu, n)}`;
    if (!done) {
      const stored = await sets();
      await store.close();
      throw new Error(`ClickHouse holds ${stored} of ${perNode * nodes} SETs after 600 s`);
    }
    const after = await Promise.all(nodeIds.map((_, i) => scrape(i)));
    const lags = await nodeHistories(store, nodeIds, perNode, (i) =>
      agentsIn === 'one process'
        ? { epoch: agents[i]!.stats().epoch, lastSeq: agents[i]!.stats().lastSeq }
        : {
            epoch: gaugeOf(after[i]!, 'flashback_agent_epoch') ?? Number.NaN,
            lastSeq: gaugeOf(after[i]!, 'flashback_agent_last_seq') ?? Number.NaN,
          },
    );
    await store.close();
    return {
      seconds,
      loadSeconds,
      events: n,
      cpu,
      lags: nodeIds.map((node, i) => ({
        ...lagFromScrapes(node, before[i]!, after[i]!),
        ...(agents.length > 0 ? { maxIntervalP99Ms: maxIntervalP99[i]! } : {}),
        storedAfterS: storedAt.get(node) ?? Number.NaN,
        ...lags[i]!,
      })),
    };
  } finally {
    clearInterval(sampler);
    for (const a of agents) await a.close();
    await Promise.all(
      procs.map((p) =>
        p.exitCode !== null ? undefined : new Promise((resolve) => p.once('exit', resolve).kill('SIGTERM')),
      ),
    );
    await sink?.close();
    await Promise.all([nats.stop(), clickhouse.stop(), ...redis.map((r: ServerProcess) => r.stop())]);
  }
}

/**
 * Whether each node's history reached ClickHouse: its SETs (distinct seqs) against what redis-benchmark sent, and
 * every seq of its one epoch from the first to the agent's last (`agentAt`, read after the load) there, no hole.
 * Heartbeats follow the load, so the check is polled (up to 30 s) until every node passes.
 */
async function nodeHistories(
  store: Store,
  nodeIds: readonly string[],
  perNode: number,
  agentAt: (i: number) => { epoch: number; lastSeq: number },
): Promise<{ setsStored: number; setsSent: number; seqsComplete: boolean }[]> {
  const want = nodeIds.map((_, i) => agentAt(i));
  let out: { setsStored: number; setsSent: number; seqsComplete: boolean }[] = [];
  await pollUntil(
    async () => {
      const rows = await store.query<{
        node: string;
        epoch: string | number;
        n: string | number;
        lo: string | number;
        hi: string | number;
        sets: string | number;
      }>(
        `SELECT node, epoch, uniqExact(seq) AS n, min(seq) AS lo, max(seq) AS hi, uniqExactIf(seq, command = 'SET') AS sets
         FROM flashback.events GROUP BY node, epoch`,
      );
      out = nodeIds.map((node, i) => {
        const mine = rows.filter((r) => r.node === node);
        const r = mine[0];
        const seqsComplete =
          mine.length === 1 &&
          r !== undefined &&
          Number(r.epoch) === want[i]!.epoch &&
          Number(r.hi) >= want[i]!.lastSeq &&
          Number(r.n) === Number(r.hi) - Number(r.lo) + 1;
        return { setsStored: mine.reduce((s, x) => s + Number(x.sets), 0), setsSent: perNode, seqsComplete };
      });
      return out.every((o) => o.seqsComplete && o.setsStored === o.setsSent);
    },
    30_000,
    500,
  );
  return out;
}

/** `count` SET events of node `node`, as the agent sends them. */
function buildEvents(node: string, count: number): FlashbackEvent[] {
  const startUs = Date.now() * 1000 - count * 10;
  return Array.from({ length: count }, (_, i) => {
    const key = Buffer.from(`key:${i % 100_000}`);
    const args = [Buffer.from('SET'), key, Buffer.from(`value-${i}-${'x'.repeat(i % 16)}`)];
    return {
      node,
      epoch: 1,
      seq: i + 1,
      tsUs: startUs + i * 10,
      db: 0,
      client: '127.0.0.1:50000',
      kind: 'command',
      command: 'SET',
      keys: [key],
      args,
      replay: args,
      tx: 0,
    };
  });
}

/** Encoded batches of 2 000 events of each of `nodes` nodes, `total` events in all. */
function buildBatches(nodes: number, total: number): { node: string; firstSeq: number; body: Buffer }[] {
  const out: { node: string; firstSeq: number; body: Buffer }[] = [];
  for (let n = 0; n < nodes; n++) {
    const node = `bench-shard-${n}`;
    const events = buildEvents(node, Math.floor(total / nodes));
    for (let i = 0; i < events.length; i += 2_000)
      out.push({ node, firstSeq: i + 1, body: encodeBatch({ node, epoch: 1, events: events.slice(i, i + 2_000) }) });
  }
  return out;
}

/** Publishes every batch with 32 acks in flight; returns seconds. */
async function publishAll(nc: NatsConnection, batches: { node: string; firstSeq: number; body: Buffer }[]) {
  const js = jetstream(nc);
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const m = batches[next++]!;
      await js.publish(eventSubject(m.node), m.body, { msgID: messageId(m.node, 1, m.firstSeq) });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return secondsSince(t0);
}

/**
 * Starts one sink per ClickHouse URL, all on one durable, and returns the seconds until they inserted `events` rows and
 * the CPU seconds this process (the sinks) and `serverPids` used meanwhile.
 */
async function drain(
  natsUrl: string,
  clickhouseUrls: string[],
  events: number,
  serverPids: number[],
): Promise<{ seconds: number; sinkCpu: number; serverCpu: number }> {
  const c0 = [cpuSeconds(), cpuOf(serverPids)];
  const t0 = process.hrtime.bigint();
  const sinks = await Promise.all(
    // No retention pass (it would need the shard list on the sharded layouts): the bench measures inserts.
    clickhouseUrls.map((clickhouseUrl) =>
      startSink({ natsUrl, clickhouseUrl, retentionIntervalMs: 0, logger: silentLogger }),
    ),
  );
  try {
    if (!(await pollUntil(() => inserted(sinks) >= events, 600_000, 20)))
      throw new Error(`the sinks inserted ${inserted(sinks)} of ${events} within 600 s`);
    return { seconds: secondsSince(t0), sinkCpu: cpuSeconds() - c0[0]!, serverCpu: cpuOf(serverPids) - c0[1]! };
  } finally {
    for (const s of sinks) await s.close();
  }
}

/** Part 2: publish and drain on R1 (one server) and R3 (a 3-server cluster). */
async function jetStreamReplicas(total: number): Promise<BenchRow[]> {
  const batches = buildBatches(4, total);
  const events = Math.floor(total / 4) * 4;
  const rows: BenchRow[] = [];
  let r1: { publish: number; drain: number } | undefined;
  for (const replicas of [1, 3]) {
    const [nats, clickhouse] = await Promise.all([
      replicas === 1
        ? startNatsServer().then((s) => ({ url: s.url, pids: [s.pid], stop: () => s.stop() }))
        : startNatsCluster({ size: 3 }).then((c) => ({
            url: c.url,
            pids: c.members.map((m) => m.process!.pid),
            stop: () => c.stop(),
          })),
      startClickHouseServer(),
    ]);
    const nc = await connectNats({ url: nats.url, name: 'bench scale' });
    try {
      const store = await openClickHouse(clickhouse.url);
      await store.ensureSchema();
      await store.close();
      await ensureEventStream(nc, { replicas });
      const natsCpu0 = cpuOf(nats.pids);
      const publish = await publishAll(nc, batches);
      const publishCpu = cpuOf(nats.pids) - natsCpu0;
      const d = await drain(nats.url, [clickhouse.url], events, [...nats.pids, clickhouse.pid]);
      const drainS = d.seconds;
      r1 ??= { publish, drain: drainS };
      const stream = replicas === 1 ? 'R1 stream, one nats-server' : 'R3 stream, 3-server cluster';
      const base = replicas === 1 ? ' (baseline)' : '';
      rows.push(
        {
          what: `publish, ${stream}${base}`,
          'events/s': Math.round(events / publish),
          'vs baseline': round(r1.publish / publish),
          detail: `${batches.length} messages of 2 000 events, 32 acks in flight, ${round(publish)} s; nats-server CPU ${perEvent(publishCpu, events)} µs/event (all members)`,
        },
        {
          what: `sink drain into ClickHouse, ${stream}${base}`,
          'events/s': Math.round(events / drainS),
          'vs baseline': round(r1.drain / drainS),
          detail: `startSink → all rows inserted, ${round(drainS)} s; CPU µs/event: sink ${perEvent(d.sinkCpu, events)}, servers ${perEvent(d.serverCpu, events)}`,
        },
      );
    } finally {
      await nc.close();
      await Promise.all([nats.stop(), clickhouse.stop()]);
    }
  }
  return rows;
}

/** Part 3: one sink into one shard, one sink and two sinks into two shards. */
async function shardRates(total: number): Promise<BenchRow[]> {
  const batches = buildBatches(8, total);
  const events = Math.floor(total / 8) * 8;
  const rows: BenchRow[] = [];
  let base: number | undefined;
  const layouts: { name: string; shards: number; sinks: number }[] = [
    { name: 'one sink → one server, plain tables (baseline)', shards: 1, sinks: 1 },
    { name: 'one sink → 2 shards (Distributed)', shards: 2, sinks: 1 },
    { name: 'two sinks (one per shard server) → 2 shards', shards: 2, sinks: 2 },
  ];
  for (const l of layouts) {
    const nats = await startNatsServer();
    const shards = l.shards === 1 ? undefined : await startClickHouseShards({ shards: l.shards });
    const single = l.shards === 1 ? await startClickHouseServer() : undefined;
    const urls = shards ? shards.servers.map((s) => s.url) : [single!.url];
    const nc = await connectNats({ url: nats.url, name: 'bench scale' });
    try {
      for (const url of urls) {
        const store = await openClickHouse(url);
        if (shards) for (const q of shardedSchemaStatements(store.version, shards.cluster)) await store.command(q);
        else await store.ensureSchema();
        await store.close();
      }
      await ensureEventStream(nc);
      await publishAll(nc, batches);
      const chPids = shards ? shards.servers.map((x) => x.pid) : [single!.pid];
      const d = await drain(nats.url, urls.slice(0, l.sinks), events, chPids);
      const seconds = d.seconds;
      const rate = events / seconds;
      base ??= rate;
      rows.push({
        what: l.name,
        'events/s': Math.round(rate),
        'vs baseline': round(rate / base),
        detail: `8 nodes, ${round(seconds)} s; CPU µs/event: sink${l.sinks > 1 ? 's' : ''} ${perEvent(d.sinkCpu, events)}, clickhouse-server${shards ? 's' : ''} ${perEvent(d.serverCpu, events)}`,
      });
    } finally {
      await nc.close();
      await Promise.all([nats.stop(), shards?.stop(), single?.stop()]);
    }
  }
  return rows;
}

/** Runs the parts; one table with a `part` column. */
export async function benchScale(size: BenchSize = 'full'): Promise<BenchResult> {
  const s = SIZES[size];
  const rows: BenchRow[] = [];
  const lagRows: BenchRow[] = [];
  const notes: string[] = [];
  let one: number | undefined;
  let oneLag: number | undefined;
  const runs: [number, 'one process' | 'a process each'][] = [
    [1, 'one process'],
    [4, 'one process'],
    [16, 'one process'],
    [16, 'a process each'],
  ];
  for (const [nodes, agentsIn] of runs) {
    const r = await endToEnd(nodes, s.e2eEvents, agentsIn);
    const rate = r.events / r.seconds;
    one ??= rate;
    const what = `${nodes} node${nodes > 1 ? 's' : ''}, agents in ${agentsIn}${nodes === 1 ? ' (baseline)' : ''}`;
    rows.push({
      part: 'end to end',
      what,
      'events/s': Math.round(rate),
      'vs baseline': round(rate / one),
      detail: `redis-benchmark done after ${round(r.loadSeconds)} s, all stored after ${round(r.seconds)} s; ${r.cpu}`,
    });
    const p99 = median(r.lags.map((l) => l.p99Ms));
    oneLag ??= p99;
    lagRows.push({
      part: 'per-node lag',
      what,
      'vs baseline': round(p99 / oneLag),
      detail: lagSummary(r.lags),
    });
    if (nodes === 16) notes.push(`per-node lag, ${what}: p99 ms by node: ${perNodeList(r.lags)}`);
  }
  rows.push(...lagRows);
  for (const r of await jetStreamReplicas(s.busEvents)) rows.push({ part: 'JetStream replicas', ...r });
  for (const r of await shardRates(s.sinkEvents)) rows.push({ part: 'ClickHouse shards', ...r });
  const rs = await restoreThroughShards({
    eventsPerNode: s.restoreEvents,
    rounds: s.restoreRounds,
    sourceArgs: SOURCE_ARGS,
  });
  for (const r of rs.rows) rows.push({ part: 'restore through shards', ...r });
  return {
    name: `Scale-out (${size}): ${s.e2eEvents.toLocaleString('en-US')} end-to-end events per run, ${s.busEvents.toLocaleString('en-US')} per JetStream and shard run, ${s.restoreEvents.toLocaleString('en-US')} per restored node`,
    rows,
    notes: [
      'end to end: redis-benchmark -t set -P 16 -c 4 on every node at once; replication agents; one nats-server, one sink, one clickhouse-server 18.16; stops when the sink inserted every event',
      "per-node lag: each agent's flashback_agent_lag_seconds histogram (agent clock − server time of the newest event emitted; the metric every agent serves on GET /metrics, labelled node=<its node>), scraped before the load and once ClickHouse held every SET (agents in one process: each registry's text; processes: GET /metrics on --health-port); quantiles of the difference interpolated within buckets as histogram_quantile does (buckets 1, 5, 10, 50, 100, 250, 500 ms, 1 s …). vs baseline: median p99 over the nodes ÷ the 1-node p99 (higher is worse). Stored: the node's SETs counted in ClickHouse every 100 ms; every seq: one epoch, no hole from its first seq to the agent's last",
      ...notes,
      ...rs.notes,
      'every server, agent, sink and load generator shares the same 2 cores: these are ratios on one box, not the capacity of a deployment (docs/scale.md)',
    ],
  };
}

await runIfMain(import.meta.url, benchScale);
