// The background restore check (issue 16, proven restorable) on real servers: a restorer with --verify-interval
// restores each stretch between two baselines and compares it with the digest the source recorded at the later one;
// an honest history shows verified stretches (store, API, CLI), a forged event is a mismatch naming its key in the
// log, the metric and the window.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { buildApp, natsJobClient } from '../api/index.js';
import { connectNats, type NatsConnection } from '../core/bus/nats.js';
import { renderRegistries } from '../core/metrics/exposition.js';
import { encodeCommand } from '../core/redis/resp.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import { nodeVerifications, pendingStretches, type VerifiedStretch } from '../core/store/verifications.js';
import { restoreWindows } from '../core/store/windows.js';
import { startRestorer, type Restorer } from '../restorer/index.js';
import { cli } from './helpers/cli.js';
import { startSource, startStack, syncedSource, waitFor, type Source, type Stack } from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
const lines: string[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  }),
);

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'verify-test' });
});
after(async () => {
  await nc?.close();
  await stack?.close();
});

/** Takes a baseline on the source and waits until it and every event before it are stored in one window. */
async function baseline(src: Source): Promise<number> {
  const b = await src.agent.baseline();
  await syncedSource(stack, src);
  await waitFor(`baseline ${b.seq} in a window`, async () =>
    (await restoreWindows(stack.store, src.node)).some((w) => w.baselines.includes(b.seq)) ? true : undefined,
  );
  return b.seq;
}

/** Writes a little of every type (TTLs far off: nothing expires while the test runs). */
async function writeSome(r: Redis, tag: string): Promise<void> {
  await r.set(`s:${tag}`, `v-${tag}`);
  await r.incrby('counter', 7);
  await r.hset(`h:${tag}`, 'a', '1', 'b', Buffer.from([0, 255, 1]));
  await r.rpush('list', tag, `${tag}-2`);
  await r.sadd('set', tag);
  await r.zadd('zset', 3, tag);
  await r.set(`ttl:${tag}`, 'x', 'EX', 3600);
  await r.del('s:gone');
}

/** Makes the stored event of `key`'s first write replay as `argv` (a forged history); returns its seq. */
async function forge(node: string, key: string, argv: string[]): Promise<number> {
  const [row] = await stack.store.query<Record<string, string | number>>(
    `SELECT * FROM flashback.events WHERE node = ${sqlString(node)} AND key = ${sqlString(key)} ORDER BY seq LIMIT 1`,
  );
  assert.ok(row, `the event of ${key} is stored`);
  const replay = encodeCommand(argv.map((a) => Buffer.from(a))).toString('base64');
  await stack.store.insertEvents([{ ...row, replay } as never]);
  const where = `node = ${sqlString(node)} AND epoch = ${sqlUInt(Number(row.epoch))} AND seq = ${sqlUInt(Number(row.seq))}`;
  // OPTIMIZE … FINAL does nothing on 18.16 while a merge of the sink's inserts runs: repeat until one row is left.
  await waitFor(`one forged row of ${key}`, async () => {
    await stack.store.command('OPTIMIZE TABLE flashback.events FINAL');
    const rows = await stack.store.query<{ replay: string }>(`SELECT replay FROM flashback.events WHERE ${where}`);
    return rows.length === 1 && rows[0]!.replay === replay ? true : undefined;
  });
  return Number(row.seq);
}

/** The value of flashback_verify_checks_total for a node and result. */
async function checksMetric(r: Restorer, node: string, result: string): Promise<number> {
  const m = (await r.metrics().getSingleMetric('flashback_verify_checks_total')!.get()).values;
  return m.find((v) => v.labels.node === node && v.labels.result === result)?.value ?? 0;
}

test('stretches between baselines: verified when the history is exact, a forged event is a mismatch naming its key', async () => {
  // Replication capture, as flashback up runs it: its first baseline (the full resync) has no digest, the later ones do.
  const src = await startSource(stack, [], { source: 'replication' });
  const r = new Redis(src.redis.url);
  let restorer: Restorer | undefined;
  try {
    await writeSome(r, 'a');
    const b1 = await baseline(src);
    await writeSome(r, 'b');
    await r.lpush('list', 'x');
    const b2 = await baseline(src);
    await writeSome(r, 'c');
    await r.set('bystander', 'fine');
    const b3 = await baseline(src);
    await syncedSource(stack, src);
    assert.ok(b1 < b2 && b2 < b3, `baselines ${b1} < ${b2} < ${b3}`);
    // The epoch's first baseline (seq 1, the full resync's RDB) recorded no digest: it can start a stretch, not end one.
    const pending = await pendingStretches(stack.store, src.node);
    assert.deepEqual(
      pending.map((p) => [p.fromSeq, p.toSeq]),
      [
        [1, b1],
        [b1, b2],
        [b2, b3],
      ],
      'every stretch waits for a check',
    );
    assert.ok(pending.every((p) => /^[0-9a-f]{40}$/.test(p.digest)));

    // A forged event inside the second stretch: the write of `bystander` replays as another value.
    const forged = await forge(src.node, 'bystander', ['SET', 'bystander', 'forged']);
    assert.ok(b2 < forged && forged < b3, `forged seq ${forged} lies in ${b2}–${b3}`);

    restorer = await startRestorer({
      natsUrl: stack.nats.url,
      clickhouseUrl: stack.clickhouse.url,
      verifyIntervalMs: 300,
      logger,
    });
    const checks = await waitFor(
      'every stretch checked',
      async () => {
        const v = await nodeVerifications(stack.store, src.node);
        return v.length === 3 ? v : undefined;
      },
      120_000,
    );
    const [zeroth, first, second] = checks as [VerifiedStretch, VerifiedStretch, VerifiedStretch];
    assert.deepEqual([zeroth.fromSeq, zeroth.toSeq, zeroth.result], [1, b1, 'match'], zeroth.detail);
    assert.deepEqual([first.fromSeq, first.toSeq, first.result], [b1, b2, 'match'], first.detail);
    assert.deepEqual([second.fromSeq, second.toSeq, second.result], [b2, b3, 'mismatch']);
    assert.equal(second.firstKey, 'bystander');
    assert.equal(second.keysDiffering, 1);
    assert.match(second.detail, /value differs/);

    // The alert: the metric, and an error log line naming the key.
    assert.equal(await checksMetric(restorer, src.node, 'mismatch'), 1);
    assert.equal(await checksMetric(restorer, src.node, 'match'), 2);
    const page = await renderRegistries([restorer.metrics()]);
    assert.match(page, new RegExp(`flashback_verify_verified_to_timestamp_seconds\\{node="${src.node}"\\} \\d`));
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: page, encoding: 'utf8' });
    assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const alert = logged.find((l) => l.level === 50 && l.node === src.node && String(l.msg).includes('MISMATCH'));
    assert.ok(alert, 'a mismatch is logged as an error');
    assert.equal(alert.firstKey, 'bystander');
    assert.equal(alert.fromSeq, b2);
    assert.equal(alert.toSeq, b3);
    assert.deepEqual(await pendingStretches(stack.store, src.node), [], 'nothing left to check');

    // The API shows them with the window.
    const app = buildApp({ store: stack.store, jobs: natsJobClient(nc), tokens: ['t'] });
    const res = await app.request(`/nodes/${encodeURIComponent(src.node)}/windows`, {
      headers: { authorization: 'Bearer t' },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      windows: { baselines: number[]; verified: { fromSeq: number; result: string; firstKey?: string }[] }[];
    };
    const w = body.windows.find((x) => x.baselines.includes(b3))!;
    assert.deepEqual(
      w.verified.map((v) => [v.fromSeq, v.result, v.firstKey]),
      [
        [1, 'match', undefined],
        [b1, 'match', undefined],
        [b2, 'mismatch', 'bystander'],
      ],
    );

    // And flashback windows.
    const out = await cli(['windows', '--node', src.node, '--clickhouse', stack.clickhouse.url]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /verified/);
    assert.match(out.stdout, /2\/3 !1 mismatch/);
    assert.match(
      out.stdout,
      new RegExp(`MISMATCH: ${src.node} epoch \\d+ seq ${b2}–${b3} .*first differing key "bystander"`),
    );
  } finally {
    await restorer?.close();
    r.disconnect();
    await src.close();
  }
});
