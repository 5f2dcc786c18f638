// Capture end to end with real redis-server, nats-server -js and clickhouse-server: every mutation becomes one row, in
// order, byte-exact.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { readableBytes } from '../core/redis/escape.js';
import { decodeCommand } from '../core/redis/resp.js';
import type { EventRow } from '../core/store/schema.js';
import { sqlString } from '../core/store/sql-literal.js';
import { markStoredEvent, startSource, startStack, waitForEvents, type Stack } from './helpers/stack.js';

let stack: Stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

type Row = EventRow;

/** The exact argv a stored row replays (exactly one command, or decodeCommand throws). */
function decodeReplay(b64: string): Buffer[] {
  return decodeCommand(Buffer.from(b64, 'base64'));
}

const B = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s));

test('every mutation becomes one ordered, gapless, byte-exact row; reads and aborted transactions do not', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const info = String(await r.client('INFO'));
    const addr = /addr=(\S+)/.exec(info)![1]!;
    const binKey = B([0x00, 0xff, 0x22, 0x5c, 0x0a, 0x20, 0x6b, 0xc3, 0xa9]); // NUL 0xFF " \ LF space k é
    const binVal = Buffer.concat([
      B([0, 1, 2, 0xfe, 0xff, 0x0d, 0x0a]),
      B('"quoted" \\ back'),
      Buffer.alloc(300_000, 0x61),
    ]);
    type Expect = { db: number; client: string; argv: Buffer[]; replay?: () => Buffer[]; tx?: boolean };
    const expected: Expect[] = [];
    const times: [number, number][] = [];
    const run = async (fn: () => Promise<unknown>, ...exp: Expect[]) => {
      const t0 = Date.now() * 1000;
      await fn().catch(() => undefined);
      const t1 = Date.now() * 1000;
      for (const e of exp) {
        expected.push(e);
        times.push([t0, t1]);
      }
    };
    const c = (argv: (string | Buffer)[], extra: Partial<Expect> = {}): Expect => ({
      db: 0,
      client: addr,
      argv: argv.map((a) => (Buffer.isBuffer(a) ? a : B(a))),
      ...extra,
    });

    await run(() => r.set(binKey, binVal), c(['set', binKey, binVal]));
    await run(() => r.get(binKey)); // read: no event
    await run(() => r.hset('h', 'f1', 'v1', 'f2', B([0, 0xff])), c(['hset', 'h', 'f1', 'v1', 'f2', B([0, 0xff])]));
    await run(() => r.lpush('l', 'a', 'b', ''), c(['lpush', 'l', 'a', 'b', '']));
    await run(() => r.sadd('s', 'm1', 'm2'), c(['sadd', 's', 'm1', 'm2']));
    await run(() => r.zadd('z', 1, 'a', 2.5, 'b'), c(['zadd', 'z', '1', 'a', '2.5', 'b']));
    await run(() => r.xadd('st', '1-1', 'f', 'v'), c(['xadd', 'st', '1-1', 'f', 'v']));
    await run(() => r.pfadd('hll', 'a', 'b'), c(['pfadd', 'hll', 'a', 'b']));
    // Relative expiries replay as the exact absolute expiry the source set (PEXPIRETIME), not a 1 ms-late estimate.
    let ttlExpiry = 0;
    let hExpiry = 0;
    await run(
      async () => {
        await r.set('ttl', 'v', 'EX', 100);
        ttlExpiry = Number(await r.pexpiretime('ttl'));
      },
      c(['set', 'ttl', 'v', 'EX', '100'], {
        replay: () => [B('set'), B('ttl'), B('v'), B('PXAT'), B(String(ttlExpiry))],
      }),
    );
    await run(
      async () => {
        await r.expire('h', 200);
        hExpiry = Number(await r.pexpiretime('h'));
      },
      c(['expire', 'h', '200'], { replay: () => [B('PEXPIREAT'), B('h'), B(String(hExpiry))] }),
    );
    await run(() => r.set('ttl', 'other', 'NX'), c(['set', 'ttl', 'other', 'NX'])); // no-op write: recorded, replays as the same no-op
    await run(() => r.lpush('h', 'x'), c(['lpush', 'h', 'x'])); // WRONGTYPE: recorded, fails the same way on replay
    await run(() => r.select(2));
    await run(() => r.set('k2', 'in-db-2'), c(['set', 'k2', 'in-db-2'], { db: 2 }));
    await run(
      () => r.multi().incr('c').get('c').hset('h2', 'a', '1').exec(),
      c(['incr', 'c'], { db: 2, tx: true }),
      c(['hset', 'h2', 'a', '1'], { db: 2, tx: true }),
    );
    await run(async () => {
      await r.call('MULTI');
      await r.call('SET', 'never', '1');
      await r.call('DISCARD');
    }); // DISCARD: nothing
    await run(
      () =>
        r.eval(
          "redis.call('SET', KEYS[1], ARGV[1]); redis.call('GET', KEYS[1]); return redis.call('INCR', KEYS[2])",
          2,
          'sk',
          'sc',
          B([0xff, 0]),
        ),
      c(['SET', 'sk', B([0xff, 0])], { db: 2, client: 'lua', tx: true }),
      c(['INCR', 'sc'], { db: 2, client: 'lua', tx: true }),
    );
    await run(() => r.select(0));
    await run(() => r.del('l', 'missing'), c(['del', 'l', 'missing']));

    // The test's marker (a DEL of a missing key, written last on r): once it and every seq before it are stored, so is
    // every row above.
    const marker = await markStoredEvent(stack, src.node, r);
    const rows = await stack.store.query<Row>(
      `SELECT seq, ts_us, db, client, kind, command, key, keys, args, replay, tx FROM flashback.events WHERE node = ${sqlString(src.node)} AND seq <= ${marker.seq} ORDER BY seq`,
    );
    // Gapless: seq 1..N, each once; the marker is the last.
    assert.deepEqual(
      rows.map((x) => Number(x.seq)),
      rows.map((_, i) => i + 1),
    );
    assert.ok(
      rows.some((x) => x.kind === 'baseline'),
      'the baseline marker is an event',
    );
    assert.deepEqual([rows.at(-1)!.command, rows.at(-1)!.key], ['DEL', marker.key], 'the test marker is the last row');
    const commands = rows.slice(0, -1).filter((x) => x.kind === 'command');
    assert.equal(commands.length, expected.length, `rows: ${commands.map((x) => x.command).join(' ')}`);
    let lastTx = 0;
    for (const [i, e] of expected.entries()) {
      const row = commands[i]!;
      const ts = Number(row.ts_us);
      const [t0, t1] = times[i]!;
      assert.equal(row.command, e.argv[0]!.toString().toUpperCase(), `#${i} command`);
      assert.equal(row.db, e.db, `#${i} db`);
      assert.equal(row.client, e.client, `#${i} client`);
      assert.deepEqual(row.args, e.argv.map(readableBytes), `#${i} args`);
      assert.ok(
        ts >= t0 - 2_000 && ts <= t1 + 2_000,
        `#${i} ts_us ${ts} within the command's wall time [${t0}, ${t1}]`,
      );
      const replay = decodeReplay(row.replay);
      const want = e.replay ? e.replay() : e.argv;
      assert.deepEqual(
        replay.map((b) => b.toString('hex')),
        want.map((b) => b.toString('hex')),
        `#${i} replay bytes`,
      );
      const tx = Number(row.tx);
      if (e.tx) {
        assert.notEqual(tx, 0, `#${i} in a tx`);
        if (expected[i - 1]?.tx && expected[i - 1]!.client === e.client)
          assert.equal(tx, lastTx, `#${i} same tx as the previous`);
      } else assert.equal(tx, 0, `#${i} not in a tx`);
      lastTx = tx;
    }
    assert.equal(commands[0]!.key, readableBytes(binKey));
    assert.deepEqual(commands.find((x) => x.command === 'DEL')!.keys, ['l', 'missing']);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('restarting the sink mid-stream loses and duplicates nothing', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    const total = 20_000;
    const batch = async (from: number) => {
      const p = r.pipeline();
      for (let j = from; j < from + 500; j++) p.hset('hash', `f${j}`, j);
      await p.exec();
    };
    for (let i = 0; i < total / 2; i += 500) await batch(i);
    // Some of the history is stored, more is in the stream: restart the sink now, and write while it is down.
    await waitForEvents(stack, src.node, 1_000);
    await stack.sink.close();
    for (let i = total / 2; i < (total * 3) / 4; i += 500) await batch(i);
    const { startSink } = await import('../sink/index.js');
    const { silentLogger } = await import('../core/log.js');
    stack.sink = await startSink({
      natsUrl: stack.nats.url,
      clickhouseUrl: stack.clickhouse.url,
      logger: silentLogger,
      flushIntervalMs: 50,
    });
    for (let i = (total * 3) / 4; i < total; i += 500) await batch(i);
    // A marker written after the last batch: stored with every seq before it means every HSET is stored (agent.flush()
    // cannot know about MONITOR lines the server has not delivered yet).
    const last = (await markStoredEvent(stack, src.node, r, undefined, 120_000)).seq;
    const [c] = await stack.store.query<{ n: string; u: string; hs: string; un: string; nn: string }>(
      `SELECT countIf(seq <= ${last}) AS n, uniqExactIf(seq, seq <= ${last}) AS u, countIf(command = 'HSET') AS hs, uniqExact(seq) AS un, count() AS nn FROM flashback.events WHERE node = ${sqlString(src.node)}`,
    );
    assert.equal(Number(c!.u), last, 'every seq up to the marker stored');
    assert.equal(Number(c!.n), last, 'no seq up to the marker stored twice');
    assert.equal(Number(c!.nn), Number(c!.un), 'no seq stored twice');
    assert.equal(Number(c!.hs), total);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('relative expiries are stored as the exact absolute expiry the source set, also where MONITOR time leaves the ms uncertain', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    const n = 3_000;
    // Pipelined bursts (lines µs apart) and single commands (the previous line far back: always uncertain).
    for (let i = 0; i < n; i += 100) {
      const p = r.pipeline();
      for (let j = i; j < i + 100; j++) p.set(`e${j}`, 'v', 'PX', 1_000_000 + j);
      await p.exec();
      await r.expire(`e${i}`, 3_600);
    }
    const expected = new Map<string, number>();
    for (let i = 0; i < n; i += 500) {
      const p = r.pipeline();
      for (let j = i; j < i + 500; j++) p.pexpiretime(`e${j}`);
      const res = await p.exec();
      res!.forEach(([, v], k) => expected.set(`e${i + k}`, Number(v)));
    }
    const marker = await markStoredEvent(stack, src.node, r);
    const rows = await stack.store.query<{ key: string; replay: string }>(
      `SELECT key, replay FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind = 'command' AND seq < ${marker.seq} ORDER BY seq`,
    );
    const last = new Map<string, number>();
    for (const row of rows) {
      const argv = decodeReplay(row.replay);
      last.set(row.key, Number(argv[argv.length - 1]!.toString()));
    }
    let wrong = 0;
    for (const [k, v] of expected) if (last.get(k) !== v) wrong++;
    const st = src.agent.stats();
    assert.equal(
      wrong,
      0,
      `keys whose stored expiry differs from PEXPIRETIME (corrector: ${st.expiryCorrected} corrected, ${st.expiryConfirmed} confirmed, ${st.expiryUncorrectable} left)`,
    );
    assert.ok(st.expiryConfirmed + st.expiryCorrected > 0, 'uncertain expiries were checked against the source');
  } finally {
    r.disconnect();
    await src.close();
  }
});
