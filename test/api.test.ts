// The HTTP API in-process (app.request) on real ClickHouse and NATS: every route, auth, validation and error mapping.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { buildApp, natsJobClient } from '../api/index.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { connectNats, type NatsConnection } from '../core/bus/nats.js';
import { getJob } from '../core/bus/restore-jobs.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { formatTsUs } from '../core/time.js';
import type { EventRow } from '../core/store/schema.js';
import { testClickHouse, testNats } from './helpers/servers.js';

const TOKEN = `tok-${randomUUID()}`;
const node = `test-${randomUUID().slice(0, 8)}`;
/** Event n happens at T0 + n ms; the baseline marker is seq 1, so the window is [T0+1ms, T0+10ms]. */
const T0 = Date.UTC(2026, 7, 3, 20, 28, 0) * 1000;
const ts = (seq: number) => T0 + seq * 1000;

let ch: ServerProcess;
let nats: ServerProcess;
let store: Store;
let nc: NatsConnection;
let app: ReturnType<typeof buildApp>;

function req(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.set('authorization', `Bearer ${token}`);
  if (init.body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
  return Promise.resolve(app.request(path, { ...init, headers }));
}

const post = (path: string, body: unknown) =>
  req(path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });

async function expectError(res: Response, status: number, code: string): Promise<string> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error.code, code, body.error.message);
  assert.equal(typeof body.error.message, 'string');
  return body.error.message;
}

before(async () => {
  [ch, nats] = await Promise.all([testClickHouse(), testNats()]);
  store = await openClickHouse(ch.url);
  await store.ensureSchema();
  nc = await connectNats({ url: nats.url, name: 'api-test' });
  const rows: EventRow[] = [];
  for (let seq = 1; seq <= 10; seq++) {
    const marker = seq === 1;
    rows.push({
      node,
      epoch: 1,
      seq,
      ts_us: ts(seq),
      time: Math.floor(ts(seq) / 1e6),
      db: 0,
      client: marker ? 'agent' : '127.0.0.1:5555',
      kind: marker ? 'baseline' : 'command',
      command: marker ? 'PUBLISH' : 'HSET',
      key: marker ? '' : 'userprofile',
      keys: marker ? [] : ['userprofile'],
      args: marker ? [] : ['userprofile', `foo${seq}`, 'bin\\x00\\xff'],
      replay: '',
      tx: 0,
    });
  }
  // A duplicate row (redelivered batch) that ReplacingMergeTree has not merged: history must show seq 10 once.
  rows.push({ ...rows[9]! });
  await store.insertEvents(rows);
  await store.insertBaselines([
    {
      node,
      epoch: 1,
      seq: 1,
      ts_us: ts(1),
      time: Math.floor(ts(1) / 1e6),
      marker: 'm1',
      rdb_object: 'x.rdb',
      tail_object: 'x.tail',
      rdb_bytes: 10,
      tail_bytes: 0,
      keys: 0,
      digest: '',
    },
  ]);
  app = buildApp({ store, jobs: natsJobClient(nc), tokens: ['other-token', TOKEN], retentionMs: 7 * 86_400_000 });
});

after(async () => {
  await nc?.close();
  await store?.close();
  await Promise.all([ch?.stop(), nats?.stop()]);
});

describe('auth', () => {
  test('/health needs no token and reports both servers', async () => {
    const res = await req('/health', { token: null });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true, clickhouse: true, nats: true });
  });

  test('no token → 401, wrong token → 403, on every other route', async () => {
    for (const path of [
      '/nodes',
      '/metrics',
      '/openapi.json',
      '/restores',
      '/instances',
      `/nodes/${node}/windows`,
      '/events',
    ]) {
      const r401 = await req(path, { token: null });
      await expectError(r401, 401, 'UNAUTHORIZED');
      assert.match(r401.headers.get('www-authenticate') ?? '', /^Bearer/);
      await expectError(await req(path, { token: 'nope' }), 403, 'FORBIDDEN');
    }
    await expectError(
      await req('/nodes', { token: null, headers: { authorization: 'Basic abc' } }),
      401,
      'UNAUTHORIZED',
    );
  });

  test('an unknown route answers 404 with the error body', async () => {
    await expectError(await req('/nope'), 404, 'NOT_FOUND');
  });
});

describe('history', () => {
  test('GET /nodes lists the node with its events and window', async () => {
    const res = await req('/nodes');
    assert.equal(res.status, 200);
    const { nodes } = (await res.json()) as { nodes: Record<string, unknown>[] };
    const n = nodes.find((x) => x.node === node);
    assert.ok(n);
    assert.equal(n.events, 11);
    assert.equal(n.lastTsUs, ts(10));
    assert.equal(n.lastTime, formatTsUs(ts(10)));
    assert.equal(n.windows, 1);
    assert.equal(n.restorableFrom, formatTsUs(ts(1)));
    assert.equal(n.restorableTo, formatTsUs(ts(10)));
    assert.equal(n.retentionMs, 7 * 86_400_000);
  });

  test('GET /nodes/:node/windows gives the window; an unknown node is 404', async () => {
    const res = await req(`/nodes/${node}/windows`);
    assert.equal(res.status, 200);
    const { windows } = (await res.json()) as { windows: Record<string, unknown>[] };
    assert.deepEqual(windows, [
      {
        node,
        epoch: 1,
        fromSeq: 1,
        fromTsUs: ts(1),
        from: formatTsUs(ts(1)),
        toSeq: 10,
        toTsUs: ts(10),
        to: formatTsUs(ts(10)),
        baselines: [1],
        broken: [],
        // No restore check has run on this window (restorer/verifier.ts).
        verified: [],
      },
    ]);
    const msg = await expectError(await req('/nodes/no-such-node/windows'), 404, 'UNKNOWN_NODE');
    assert.match(msg, new RegExp(node));
  });

  test('GET /events gives a key history newest first, escaped args as stored, duplicates once', async () => {
    const res = await req(`/events?node=${node}&key=userprofile&limit=3`);
    assert.equal(res.status, 200);
    const { events } = (await res.json()) as { events: Record<string, unknown>[] };
    assert.deepEqual(
      events.map((e) => e.seq),
      [10, 9, 8],
    );
    assert.deepEqual(events[0]!.args, ['userprofile', 'foo10', 'bin\\x00\\xff']);
    assert.equal(events[0]!.time, formatTsUs(ts(10)));
    assert.equal(events[0]!.command, 'HSET');
    const since = await req(`/events?node=${node}&since=${encodeURIComponent(formatTsUs(ts(9)))}`);
    assert.deepEqual(
      ((await since.json()) as { events: { seq: number }[] }).events.map((e) => e.seq),
      [10, 9],
    );
    const until = await req(`/events?node=${node}&until=${ts(2)}`);
    assert.deepEqual(
      ((await until.json()) as { events: { seq: number }[] }).events.map((e) => e.seq),
      [2, 1],
    );
  });

  test('GET /events refuses a malformed time and a bad limit', async () => {
    assert.match(await expectError(await req(`/events?node=${node}&since=yesterday`), 400, 'BAD_TIME'), /"yesterday"/);
    assert.match(await expectError(await req(`/events?limit=abc`), 400, 'BAD_INPUT'), /limit/);
    await expectError(await req(`/events?limit=0`), 400, 'BAD_INPUT');
  });
});

describe('POST /sql', () => {
  test('runs a SELECT and returns columns and rows', async () => {
    const res = await post('/sql', {
      sql: `SELECT seq, command FROM flashback.events WHERE node = '${node}' AND seq <= 2 GROUP BY seq, command ORDER BY seq`,
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      columns: [
        { name: 'seq', type: 'UInt64' },
        { name: 'command', type: 'String' },
      ],
      rows: [
        ['1', 'PUBLISH'],
        ['2', 'HSET'],
      ],
    });
  });

  test('refuses writes, DDL, several statements, settings changes and table functions', async () => {
    for (const sql of [
      `INSERT INTO flashback.events (node) VALUES ('x')`,
      'DROP TABLE flashback.events',
      'SELECT 1; DROP TABLE flashback.events',
      'ALTER TABLE flashback.events DELETE WHERE 1',
      'SELECT * FROM system.tables SETTINGS readonly = 0',
      "SELECT * FROM file('/etc/passwd', 'CSV', 'a String')",
      "SELECT * FROM remote('127.0.0.1', system.one)",
    ]) {
      await expectError(await post('/sql', { sql }), 400, 'READ_ONLY_SQL');
    }
    const n = await store.query<{ n: number }>(`SELECT count() AS n FROM flashback.events WHERE node = '${node}'`);
    assert.equal(Number(n[0]!.n), 11);
  });

  test('limits rows, and reports SQL mistakes as bad input', async () => {
    assert.match(
      await expectError(
        await post('/sql', { sql: 'SELECT number FROM system.numbers LIMIT 50', maxRows: 10 }),
        400,
        'BAD_INPUT',
      ),
      /too large/,
    );
    assert.match(
      await expectError(await post('/sql', { sql: 'SELECT nope FROM flashback.events' }), 400, 'BAD_INPUT'),
      /nope/,
    );
  });

  test('bad JSON and schema violations are 400 BAD_INPUT', async () => {
    assert.match(await expectError(await post('/sql', '{"sql": '), 400, 'BAD_INPUT'), /JSON/);
    assert.match(await expectError(await post('/sql', { query: 'SELECT 1' }), 400, 'BAD_INPUT'), /sql/);
    await expectError(await post('/sql', { sql: 'SELECT 1', maxRows: -1 }), 400, 'BAD_INPUT');
  });
});

describe('restores', () => {
  test('POST /restores validates the cutoff at once', async () => {
    assert.match(
      await expectError(await post('/restores', { node, to: '20:28 yesterday', spawn: {} }), 400, 'BAD_TIME'),
      /"20:28 yesterday"/,
    );
    await expectError(
      await post('/restores', { node: 'no-such-node', to: formatTsUs(ts(5)), spawn: {} }),
      404,
      'UNKNOWN_NODE',
    );
    assert.match(
      await expectError(await post('/restores', { node, to: formatTsUs(ts(11)), spawn: {} }), 422, 'OUTSIDE_WINDOW'),
      /windows:/,
    );
    await expectError(await post('/restores', { node, toSeq: 99, spawn: {} }), 422, 'OUTSIDE_WINDOW');
  });

  test('POST /restores validates the shape with zod', async () => {
    assert.match(
      await expectError(
        await post('/restores', { node, to: formatTsUs(ts(5)), toSeq: 3, spawn: {} }),
        400,
        'BAD_INPUT',
      ),
      /exactly one cutoff/,
    );
    assert.match(
      await expectError(await post('/restores', { node, to: formatTsUs(ts(5)) }), 400, 'BAD_INPUT'),
      /exactly one destination/,
    );
    await expectError(await post('/restores', { node, toSeq: 'five', spawn: {} }), 400, 'BAD_INPUT');
    await expectError(await post('/restores', { node, toSeq: 5, target: 'http://x' }), 400, 'BAD_INPUT');
    assert.match(
      await expectError(await post('/restores', { node, toSeq: 5, spawn: {}, surprise: 1 }), 400, 'BAD_INPUT'),
      /surprise/,
    );
    await expectError(await post('/restores', '[1,'), 400, 'BAD_INPUT');
  });

  test('a valid request is queued (202), listed and readable by id', async () => {
    const res = await post('/restores', { node, to: formatTsUs(ts(5) + 500), spawn: {} });
    assert.equal(res.status, 202, await res.clone().text());
    const accepted = (await res.json()) as {
      id: string;
      state: string;
      cutoff: { seq: number; tsUs: number; baselineSeq: number; epoch: number };
    };
    assert.equal(accepted.state, 'queued');
    assert.deepEqual(accepted.cutoff, { epoch: 1, seq: 5, tsUs: ts(5), time: formatTsUs(ts(5)), baselineSeq: 1 });
    const stored = await getJob(nc, accepted.id);
    assert.equal(stored.state, 'queued');
    assert.deepEqual(stored.request, { node, to: formatTsUs(ts(5) + 500), spawn: {} });

    const one = await req(`/restores/${accepted.id}`);
    assert.equal(one.status, 200);
    const job = (await one.json()) as { id: string; state: string; attempts: number };
    assert.equal(job.id, accepted.id);
    assert.equal(job.state, 'queued');
    assert.equal(job.attempts, 0);

    const second = (await (await post('/restores', { node, beforeSeq: 4, rdb: 'x.rdb' })).json()) as {
      id: string;
      cutoff: { seq: number };
    };
    assert.equal(second.cutoff.seq, 3);
    const list = (await (await req('/restores?limit=10')).json()) as { restores: { id: string }[] };
    assert.deepEqual(
      list.restores.map((j) => j.id),
      [second.id, accepted.id],
    );
    const none = (await (await req('/restores?state=done')).json()) as { restores: unknown[] };
    assert.deepEqual(none.restores, []);
  });

  test('an unknown job id is 404, a malformed one too', async () => {
    await expectError(await req(`/restores/${randomUUID()}`), 404, 'NOT_FOUND');
    await expectError(await req('/restores/a.b'), 404, 'NOT_FOUND');
  });
});

describe('instances, metrics, openapi', () => {
  test('GET /instances lists none; DELETE of an unknown one is 404', async () => {
    const res = await req('/instances');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { instances: [] });
    await expectError(await req('/instances/nope', { method: 'DELETE' }), 404, 'NOT_FOUND');
  });

  test('GET /metrics gives events per node and jobs by state as Prometheus text', async () => {
    const res = await req('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    assert.ok(text.includes(`flashback_events_stored{node="${node}"} 11\n`), text);
    assert.match(text, /^flashback_restore_jobs\{state="queued"\} \d+$/m);
    assert.match(text, /^flashback_restore_jobs\{state="done"\} 0$/m);
    assert.match(text, /^flashback_api_requests_total\{method="GET",route="\/nodes",status="200"\} \d+$/m);
    assert.match(text, /^flashback_api_scrape_errors 0$/m);
  });

  test('GET /openapi.json documents every route from the zod schemas', async () => {
    const res = await req('/openapi.json');
    assert.equal(res.status, 200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, unknown> };
    };
    assert.equal(doc.openapi, '3.0.0');
    assert.deepEqual(Object.keys(doc.paths).sort(), [
      '/events',
      '/health',
      '/instances',
      '/instances/{id}',
      '/metrics',
      '/nodes',
      '/nodes/{node}/windows',
      '/restores',
      '/restores/{id}',
      '/sql',
      '/timeline/marks',
      '/timeline/nodes/{node}/spans',
      '/timeline/rates',
      '/timeline/values',
      '/timeline/values/{id}',
    ]);
    assert.ok(doc.paths['/restores']!.post);
    assert.ok(doc.components.schemas.RestoreRequest);
    assert.ok(doc.components.schemas.Error);
  });
});
