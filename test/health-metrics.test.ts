// Health that means "can I restore?" and Prometheus metrics: an agent whose Redis refuses PSYNC is unready with the
// reason within 30 s and becomes ready by itself (baseline retried with backoff) once PSYNC is granted; every
// service's /metrics passes `promtool check metrics`, and `flashback up`'s single endpoint joins them.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startAgent, type Agent } from '../agent/index.js';
import { startApi, type Api } from '../api/index.js';
import { ConfigError } from '../core/errors.js';
import { renderRegistries } from '../core/metrics/exposition.js';
import { freePort } from '../core/servers/free-port.js';
import { processRegistry } from '../core/metrics/process-metrics.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { startRestorer, type Restorer } from '../restorer/index.js';
import { startSink, type Sink } from '../sink/index.js';
import { testClickHouse, testNats, testRedis } from './helpers/servers.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';

const TOKEN = 'metrics-test-token';

/** `promtool check metrics` on `text`: its complaints, '' when there are none. */
function promtoolCheck(text: string): string {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw r.error;
  return r.status === 0 ? '' : `${r.stdout}${r.stderr}`.trim() || `exit ${r.status}`;
}

async function get(url: string, token?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, text: await res.text() };
}

/** The value of one series in a Prometheus text page (`name{labels}` exactly as rendered), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

let nats: ServerProcess;
let clickhouse: ServerProcess;
let sink: Sink;
let restorer: Restorer;
const cleanup: (() => Promise<unknown>)[] = [];
/** The API's page as under `flashback up` (every service), for the dashboard and alert checks. */
let upPage = '';

before(async () => {
  [nats, clickhouse] = await Promise.all([testNats(), testClickHouse()]);
  sink = await startSink({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, flushIntervalMs: 50, healthPort: 0 });
  restorer = await startRestorer({ natsUrl: nats.url, clickhouseUrl: clickhouse.url, healthPort: 0 });
});

after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
  await restorer?.close();
  await sink?.close();
  await Promise.all([nats?.stop(), clickhouse?.stop()]);
});

describe('agent readiness', () => {
  test('PSYNC refused: /health is 503 naming PSYNC within 30 s; granted later, the baseline is retried and /health turns 200', async () => {
    const redis = await testRedis(SOURCE_ARGS);
    cleanup.push(() => redis.stop());
    // Like a managed Redis: the agent's user may run everything but the replication handshake.
    const admin = new Redis(redis.url);
    cleanup.push(async () => admin.disconnect());
    await admin.call('ACL', 'SETUSER', 'capture', 'on', '>capture-pw', '~*', '&*', '+@all', '-psync', '-sync');
    const url = `redis://capture:capture-pw@127.0.0.1:${redis.port}`;
    const started = Date.now();
    const agent = await startAgent({
      redisUrl: url,
      nodeId: 'no-psync',
      natsUrl: nats.url,
      source: 'monitor',
      healthPort: 0,
      baselineIntervalMs: 3_600_000,
    });
    cleanup.push(() => agent.close());
    const healthUrl = `http://127.0.0.1:${healthPortOf(agent)}/health`;
    const unready = await waitFor(
      'the agent to say why it is not ready',
      async () => {
        const r = await get(healthUrl);
        const body = JSON.parse(r.text) as { ok: boolean; ready: boolean; reason?: string; baselineFailures: number };
        return r.status === 503 && body.baselineFailures > 0 ? body : undefined;
      },
      30_000,
    );
    assert.ok(Date.now() - started < 30_000);
    assert.equal(unready.ok, false);
    assert.equal(unready.ready, false);
    assert.match(
      unready.reason ?? '',
      /no restorable window: epoch \d+ has no baseline; the last attempt failed: .*PSYNC/i,
    );
    assert.match(unready.reason ?? '', /next attempt in \d+ s/);
    const metrics = (await get(`http://127.0.0.1:${healthPortOf(agent)}/metrics`)).text;
    assert.equal(sample(metrics, 'flashback_agent_restorable{node="no-psync"}'), 0);
    assert.ok((sample(metrics, 'flashback_agent_baseline_failures_total{node="no-psync"}') ?? 0) >= 1, metrics);
    assert.equal(promtoolCheck(metrics), '');

    // The operator grants the replication commands: the next attempt (backoff of seconds, not the hour's interval)
    // succeeds and the node is ready.
    await admin.call('ACL', 'SETUSER', 'capture', '+psync', '+sync');
    const ready = await waitFor(
      'the agent to become ready',
      async () => {
        const r = await get(healthUrl);
        return r.status === 200
          ? (JSON.parse(r.text) as { ready: boolean; reason?: string; baselines: number })
          : undefined;
      },
      60_000,
    );
    assert.equal(ready.ready, true);
    assert.equal(ready.reason, undefined);
    assert.equal(ready.baselines, 1);
    const after = (await get(`http://127.0.0.1:${healthPortOf(agent)}/metrics`)).text;
    assert.equal(sample(after, 'flashback_agent_restorable{node="no-psync"}'), 1);
    assert.ok(
      (sample(after, 'flashback_agent_last_baseline_timestamp_seconds{node="no-psync"}') ?? 0) > started / 1000,
    );
  });

  test('a restarted replication agent resumes its epoch and is ready from the baseline stored before the restart', async () => {
    const redis = await testRedis(SOURCE_ARGS);
    cleanup.push(() => redis.stop());
    const o = { redisUrl: redis.url, nodeId: 'resumed', natsUrl: nats.url, source: 'replication' as const };
    const first = await startAgent(o);
    await waitFor('first agent ready', async () => (first.health().ok ? true : undefined), 30_000);
    const epoch = first.stats().epoch;
    await first.close();
    const second = await startAgent({ ...o, baselineIntervalMs: 3_600_000 });
    cleanup.push(() => second.close());
    const h = await waitFor(
      'resumed agent ready',
      async () => (second.health().ok ? second.health() : undefined),
      30_000,
    );
    assert.equal(h.epoch, epoch, 'the epoch was resumed, not restarted');
    assert.equal(h.baselines, 0, 'no baseline taken by the second process');
    assert.equal(h.lastBaselineEpoch, epoch);
  });

  test('replication capture refused PSYNC fails at start, naming the grant and --source monitor', async () => {
    const redis = await testRedis(SOURCE_ARGS);
    cleanup.push(() => redis.stop());
    const admin = new Redis(redis.url);
    cleanup.push(async () => admin.disconnect());
    await admin.call('ACL', 'SETUSER', 'capture', 'on', '>capture-pw', '~*', '&*', '+@all', '-psync', '-sync');
    await assert.rejects(
      startAgent({
        redisUrl: `redis://capture:capture-pw@127.0.0.1:${redis.port}`,
        nodeId: 'no-psync-repl',
        natsUrl: nats.url,
        source: 'replication',
        healthPort: 0,
      }),
      (err: unknown) =>
        err instanceof ConfigError && /\+psync/.test(err.message) && /--source monitor/.test(err.message),
    );
  });
});

test('flashback agent (replication) refused PSYNC stays up: /health 503 naming +psync within 30 s, 200 once granted; no password in its ps line', async (t) => {
  const redis = await testRedis(SOURCE_ARGS);
  cleanup.push(() => redis.stop());
  const admin = new Redis(redis.url);
  cleanup.push(async () => admin.disconnect());
  await admin.call('ACL', 'SETUSER', 'capture', 'on', '>capture-pw', '~*', '&*', '+@all', '-psync', '-sync');
  // A free port for the health endpoint: the refused agent serves it before any agent exists.
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      'bin/flashback-dev.js',
      'agent',
      '--node-id',
      'cli-no-psync',
      '--health-port',
      String(port),
      // On the command line on purpose: the process hides the password from ps (cli/ps-title.ts).
      '--redis',
      `redis://capture:capture-pw@127.0.0.1:${redis.port}`,
    ],
    {
      env: {
        ...process.env,
        FLASHBACK_NATS: nats.url,
        FLASHBACK_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanup.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const health = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
    return res && { status: res.status, body: (await res.json()) as { reason?: string } };
  };
  const started = Date.now();
  const refused = await waitFor('/health 503 naming the grant', async () => {
    const h = await health();
    return h?.status === 503 && /\+psync/.test(h.body.reason ?? '') ? h : undefined;
  }).catch((e: Error) => {
    throw new Error(`${e.message}; agent stderr: ${err.slice(-2000)}`);
  });
  t.diagnostic(`unready after ${Date.now() - started} ms: ${refused.body.reason}`);
  assert.match(refused.body.reason!, /--source monitor/);
  const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  assert.doesNotMatch(cmdline, /capture-pw/, 'the password is not in the ps line');
  assert.match(cmdline, /redis:\/\/capture:\*\*\*@/);
  await admin.call('ACL', 'SETUSER', 'capture', '+psync', '+sync');
  await waitFor(
    '/health 200 once PSYNC is granted (retried with backoff)',
    async () => ((await health())?.status === 200 ? true : undefined),
    60_000,
  );
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `clean stop; stderr: ${err.slice(-2000)}`);
});

test('flashback anchor-keeper --keeper-health-port: /health while it reaches its source, anchors counted in /metrics, promtool-clean', async () => {
  const redis = await testRedis(SOURCE_ARGS);
  cleanup.push(() => redis.stop());
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['bin/flashback-dev.js', 'anchor-keeper', '--redis', redis.url, '--keeper-health-port', String(port)],
    { env: { ...process.env, FLASHBACK_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanup.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const w = new Redis(redis.url);
  cleanup.push(async () => w.disconnect());
  // No agent is linked: each write moves the stream, and the keeper anchors it.
  const metrics = await waitFor('anchors counted', async () => {
    await w.set('k', String(Date.now()));
    const m = await get(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
    return m && (sample(m.text, 'flashback_anchor_keeper_anchors_total') ?? 0) > 0 ? m.text : undefined;
  }).catch((e: Error) => {
    throw new Error(`${e.message}; keeper stderr: ${err.slice(-2000)}`);
  });
  assert.equal(sample(metrics, 'flashback_anchor_keeper_agent_linked'), 0);
  assert.equal(sample(metrics, 'flashback_anchor_keeper_source_up'), 1);
  assert.equal(promtoolCheck(metrics), '');
  const h = await get(`http://127.0.0.1:${port}/health`);
  assert.equal(h.status, 200, h.text);
  assert.equal((JSON.parse(h.text) as { agentLinked: boolean }).agentLinked, false);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `clean stop; stderr: ${err.slice(-2000)}`);
});

describe('metrics', () => {
  const agents: Agent[] = [];
  let api: Api;

  before(async () => {
    for (const [node, source] of [
      ['metrics-repl', 'replication'],
      ['metrics-mon', 'monitor'],
    ] as const) {
      const redis = await testRedis(SOURCE_ARGS);
      cleanup.push(() => redis.stop());
      const agent = await startAgent({ redisUrl: redis.url, nodeId: node, natsUrl: nats.url, source, healthPort: 0 });
      cleanup.push(() => agent.close());
      agents.push(agent);
      const w = new Redis(redis.url);
      for (let i = 0; i < 50; i++) await w.set(`k${i}`, `v${i}`);
      w.disconnect();
    }
    api = await startApi({
      port: 0,
      natsUrl: nats.url,
      clickhouseUrl: clickhouse.url,
      tokens: [TOKEN],
      metrics: () => [sink.metrics(), restorer.metrics(), ...agents.map((a) => a.metrics())],
    });
    cleanup.push(() => api.close());
    for (const a of agents) await waitFor(`${a.node} ready`, async () => (a.health().ok ? true : undefined), 30_000);
  });

  test("each agent's /metrics: per-node restorability, times in seconds, lag histogram, default metrics; promtool-clean", async () => {
    for (const a of agents) {
      const { status, text } = await get(`http://127.0.0.1:${healthPortOf(a)}/metrics`);
      assert.equal(status, 200);
      assert.equal(promtoolCheck(text), '');
      const n = `node="${a.node}"`;
      assert.equal(sample(text, `flashback_agent_restorable{${n}}`), 1);
      assert.ok((sample(text, `flashback_agent_events_captured_total{${n}}`) ?? 0) >= 50, text);
      const lastEvent = sample(text, `flashback_agent_last_event_timestamp_seconds{${n}}`) ?? 0;
      assert.ok(Math.abs(lastEvent - Date.now() / 1000) < 600, `last event ${lastEvent}`);
      assert.ok((sample(text, `flashback_agent_lag_seconds_count{${n}}`) ?? 0) > 0, text);
      assert.equal(sample(text, `flashback_agent_epochs_ended_total{reason="output_buffer",${n}}`), 0);
      assert.match(text, /^# TYPE flashback_agent_lag_seconds histogram$/m);
      assert.match(text, /^process_cpu_seconds_total \d/m);
      assert.match(text, /^nodejs_eventloop_lag_seconds \d/m);
      assert.match(text, /^flashback_build_info\{version="[^"]+",nodejs="[^"]+"\} 1$/m);
      // No precomputed rates or percentiles of ours any more (prom-client's event-loop gauges are its own).
      assert.doesNotMatch(text, /^flashback_\w*(per_second|_p99|_p50|_ms)\b/m);
      const client = a.node === 'metrics-repl' ? 'replica' : 'monitor';
      assert.ok(
        sample(text, `flashback_agent_source_output_buffer_bytes{client="${client}",${n}}`) !== undefined,
        text,
      );
    }
  });

  test('sink and restorer /metrics and /health over their ports; promtool-clean', async () => {
    for (const port of [sink.healthPort!, restorer.healthPort!]) {
      const { status, text } = await get(`http://127.0.0.1:${port}/metrics`);
      assert.equal(status, 200);
      assert.equal(promtoolCheck(text), '');
    }
    const text = await renderRegistries([processRegistry(), sink.metrics()]);
    assert.ok((sample(text, 'flashback_sink_events_total') ?? 0) >= 100, text);
    assert.ok((sample(text, 'flashback_sink_insert_duration_seconds_count') ?? 0) > 0, text);
    assert.equal(sample(text, 'flashback_sink_clickhouse_ok'), 1);
    assert.equal(promtoolCheck(await renderRegistries([processRegistry(), restorer.metrics()])), '');
    const health = await get(`http://127.0.0.1:${sink.healthPort}/health`);
    assert.equal(health.status, 200);
  });

  test("the API's /metrics (as under `flashback up`): every service, both agents, windows per node; promtool-clean", async () => {
    const text = await waitFor('both nodes restorable in ClickHouse', async () => {
      const t = (await get(`${api.url}/metrics`, TOKEN)).text;
      return agents.every((a) => (sample(t, `flashback_restorable_windows{node="${a.node}"}`) ?? 0) >= 1)
        ? t
        : undefined;
    });
    assert.equal(promtoolCheck(text), '');
    upPage = text;
    for (const a of agents) {
      assert.equal(sample(text, `flashback_agent_restorable{node="${a.node}"}`), 1);
      const end = sample(text, `flashback_window_end_timestamp_seconds{node="${a.node}"}`) ?? 0;
      assert.ok(Math.abs(end - Date.now() / 1000) < 600, `window end ${end}`);
    }
    assert.match(text, /^flashback_sink_events_total \d+$/m);
    assert.match(text, /^flashback_restorer_busy 0$/m);
    assert.match(text, /^flashback_api_scrape_errors 0$/m);
    // One HELP/TYPE per family although two agents report it.
    assert.equal(text.match(/^# TYPE flashback_agent_restorable gauge$/gm)?.length, 1);
    assert.equal((await get(`${api.url}/metrics`)).status, 401);
  });
});

describe('deploy/prometheus and deploy/grafana', () => {
  const alerts = path.resolve('deploy/prometheus/alerts.yml');
  const dashboard = JSON.parse(readFileSync('deploy/grafana/flashback.json', 'utf8')) as {
    panels: { type: string; title: string; targets?: { expr: string }[] }[];
    templating: { list: { query: { query: string } }[] };
  };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));

  test('alerts.yml passes promtool check rules and its unit tests (promtool test rules)', () => {
    const check = spawnSync('promtool', ['check', 'rules', alerts], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 11 rules found/);
    const unit = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], {
      encoding: 'utf8',
      cwd: path.dirname(alerts),
    });
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);
    const names = [...readFileSync(alerts, 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]).sort();
    assert.deepEqual(names, [
      'FlashbackAgentLagging',
      'FlashbackBaselineTooOld',
      'FlashbackBaselinesFailing',
      'FlashbackEpochChurn',
      'FlashbackNoRestorableWindow',
      'FlashbackRestoreCheckMismatch',
      'FlashbackSinkBehind',
      'FlashbackSinkInsertsFailing',
      'FlashbackSinkStalled',
      'FlashbackSourceBufferGrowing',
      'FlashbackWindowBehind',
    ]);
  });

  test('every dashboard query is valid PromQL (checked as recording rules by promtool)', () => {
    assert.ok(exprs.length >= 25, `${exprs.length} queries`);
    const file = path.join(os.tmpdir(), `flashback-dashboard-${process.pid}.rules.yml`);
    const rules = exprs.map(
      (e, i) => `      - record: dashboard_query_${i}\n        expr: ${JSON.stringify(e.replaceAll('$node', '.*'))}`,
    );
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`);
    const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    rmSync(file, { force: true });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });

  test('every flashback metric the dashboard and the alerts use is served (as under flashback up)', () => {
    assert.ok(upPage, 'the API test ran first');
    const served = new Set([...upPage.matchAll(/^# TYPE (\w+) /gm)].map((m) => m[1]));
    const used = new Set(
      [...exprs, dashboard.templating.list[0]!.query.query, readFileSync(alerts, 'utf8')].flatMap((t) =>
        [...t.matchAll(/\b(flashback_\w+|process_\w+|nodejs_\w+)/g)].map((m) =>
          m[1]!.replace(/_(bucket|sum|count)$/, ''),
        ),
      ),
    );
    const missing = [...used].filter((n) => !served.has(n));
    assert.deepEqual(missing, []);
  });
});

function healthPortOf(agent: Agent): number {
  assert.ok(agent.healthPort !== undefined, 'the agent exposes its health port');
  return agent.healthPort;
}
