// --audit-noops: the writes MONITOR shows that left nothing in the replication stream (a lost SET NX, a DEL of a
// missing key, a command the server refused, one inside a transaction) are stored as audit rows with their client,
// µs time and argv, where they ran among the real writes; restores skip them and equal the source.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { startAgent } from '../agent/index.js';
import { connectNats, ensureBaselineStore } from '../core/bus/nats.js';
import { ConfigError } from '../core/errors.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../restorer/index.js';
import { stopPid } from '../core/servers/server-process.js';
import { serverTimeUs, startSource, startStack, syncedSource, type Stack } from './helpers/stack.js';

let stack: Stack;
let instancesDir: string;
before(async () => {
  stack = await startStack();
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-audit-'));
});
after(async () => {
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

test('audit rows: writes that changed nothing or were refused are stored with who and when; restores skip them', async () => {
  const src = await startSource(stack, [], { source: 'replication', attribution: 'monitor', auditNoops: true });
  const r = new Redis(src.redis.url);
  const nc = await connectNats({ url: stack.nats.url, name: 'audit-test' });
  try {
    await r.set('lock', 'a');
    const t0 = await serverTimeUs(r);
    assert.equal(await r.set('lock', 'b', 'NX'), null, 'the SET NX loses');
    assert.equal(await r.del('missing'), 0);
    await assert.rejects(r.incr('lock'), /not an integer/);
    await r.multi().set('k', 'v').del('missing-too').set('k2', 'v2').exec();
    await r.hset('h', 'f', '1');
    const t1 = await serverTimeUs(r);
    const seq = await syncedSource(stack, src);
    const client = `127.0.0.1:${(r.stream as { localPort?: number }).localPort}`;
    const rows = await stack.store.query<{
      seq: number;
      ts_us: number;
      client: string;
      command: string;
      args: string[];
      tx: number;
      replay: string;
    }>(
      `SELECT seq, ts_us, client, command, args, tx, replay FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind = 'audit' ORDER BY seq`,
    );
    assert.deepEqual(
      rows.map((x) => [x.client, x.command, x.args, x.replay]),
      [
        // argv as issued (ioredis sends lower-case names)
        [client, 'SET', ['set', 'lock', 'b', 'NX'], ''],
        [client, 'DEL', ['del', 'missing'], ''],
        [client, 'INCR', ['incr', 'lock'], ''],
        [client, 'DEL', ['del', 'missing-too'], ''],
      ],
    );
    for (const x of rows) assert.ok(x.ts_us > t0 && x.ts_us < t1, `audit row ${x.seq} timed inside the writes`);
    // Where they ran among the real writes (anchors may fall anywhere between): the lost SET after the first SET, the
    // DEL inside the transaction's block with its SET.
    const around = await stack.store.query<{ seq: number; kind: string; command: string; tx: number }>(
      `SELECT seq, kind, command, tx FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind IN ('command', 'audit') AND key IN ('lock', 'missing', 'k', 'missing-too', 'k2', 'h') ORDER BY seq`,
    );
    assert.deepEqual(
      around.map((x) => [x.kind, x.command]),
      [
        ['command', 'SET'],
        ['audit', 'SET'],
        ['audit', 'DEL'],
        ['audit', 'INCR'],
        ['command', 'SET'],
        ['audit', 'DEL'],
        ['command', 'SET'],
        ['command', 'HSET'],
      ],
    );
    assert.ok(
      around[4]!.tx > 0 && around[5]!.tx === around[4]!.tx && around[6]!.tx === around[4]!.tx,
      'the DEL in MULTI is in its block',
    );
    const [span] = await stack.store.query<{ n: number; lo: number; hi: number }>(
      `SELECT count() AS n, min(seq) AS lo, max(seq) AS hi FROM flashback.events FINAL WHERE node = ${sqlString(src.node)}`,
    );
    assert.equal(Number(span!.n), Number(span!.hi) - Number(span!.lo) + 1, 'seqs stay gapless');
    const objects = await ensureBaselineStore(nc);
    const report = await restore(
      { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
      { node: src.node, toSeq: seq, spawn: {} } as RestoreRequest,
    );
    const c = new Redis(report.url!);
    try {
      assert.deepEqual(
        [await c.get('lock'), await c.get('k'), await c.get('k2'), await c.hgetall('h'), await c.dbsize()],
        [await r.get('lock'), await r.get('k'), await r.get('k2'), await r.hgetall('h'), await r.dbsize()],
      );
    } finally {
      c.disconnect();
      if (report.pid) await stopPid(report.pid);
    }
  } finally {
    r.disconnect();
    await nc.close();
    await src.close();
  }
});

test('--audit-noops without replication capture and attribution is refused, naming what it needs', async () => {
  await assert.rejects(
    startAgent({ redisUrl: 'redis://127.0.0.1:1', natsUrl: stack.nats.url, source: 'replication', auditNoops: true }),
    (err: unknown) => err instanceof ConfigError && /--attribution monitor/.test(err.message),
  );
});
