// Events larger than NATS's max payload (3 MB and 20 MB binary values) go through agent, JetStream parts and sink
// byte-exact, and restore exactly.
import assert from 'node:assert/strict';
import { stopPid } from '../core/servers/server-process.js';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import { jetstream } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { encodeBatch } from '../core/bus/event-codec.js';
import { BATCH_HEADER, formatPart, PART_HEADER, partMessageId, splitBody } from '../core/bus/event-parts.js';
import { eventSubject, messageId, type FlashbackEvent } from '../core/bus/event.js';
import { silentLogger } from '../core/log.js';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { startSink } from '../sink/index.js';
import { decodeCommand } from '../core/redis/resp.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { markAndWait, startSource, startStack, waitFor, waitForWindow, type Stack } from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawnedPids: number[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'large-events-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-large-'));
});
after(async () => {
  for (const pid of spawnedPids) await stopPid(pid);
  await nc?.close();
  await stack?.close();
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

/** `n` bytes in which every byte value occurs, in a pattern that does not repeat with a short period. */
function binaryValue(n: number, salt: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i ^ (i >>> 8) ^ (i >>> 16) ^ salt) & 0xff;
  return b;
}

/** The exact argv a stored row replays (exactly one command, or decodeCommand throws). */
function decodeReplay(b64: string): Buffer[] {
  return decodeCommand(Buffer.from(b64, 'base64'));
}

test('3 MB and 20 MB binary values: split into parts, stored byte-exact, restored byte-exact', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const key3 = Buffer.from([0x62, 0x69, 0x67, 0x00, 0xff, 0x33]);
    const key20 = Buffer.from('big:20');
    const v3 = binaryValue(3 * 1024 * 1024 + 17, 0x5a);
    const v20 = binaryValue(20 * 1024 * 1024 + 3, 0xa5);
    for (const v of [v3, v20]) assert.equal(new Set(v).size, 256, 'every byte value occurs');
    // Small writes around the big ones in one pipeline: each big event travels alone, the small ones are not held back.
    const p = r.pipeline();
    p.set('before', '1');
    p.set(key3, v3);
    p.set('between', '2');
    p.set(key20, v20);
    p.set('after', '3');
    await p.exec();
    // The agent's flush does not wait for MONITOR to deliver the ~60 MB line of the 20 MB value: wait for the rows.
    await waitFor(
      'the five SETs in ClickHouse',
      async () => {
        const [c] = await stack.store.query<{ n: string }>(
          `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'SET'`,
        );
        return Number(c!.n) === 5 ? true : undefined;
      },
      120_000,
    );
    // A marker after the pipeline: once it and every seq before it are stored, the history up to it is complete.
    const last = await markAndWait(stack, src, r, undefined, 60_000);

    const rows = await stack.store.query<{ seq: string; command: string; key: string; replay: string }>(
      `SELECT seq, command, key, replay FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'SET' ORDER BY seq`,
    );
    assert.deepEqual(
      rows.map((x) => x.key),
      ['before', 'big\\x00\\xff3', 'between', 'big:20', 'after'],
    );
    const replay3 = decodeReplay(rows[1]!.replay);
    const replay20 = decodeReplay(rows[3]!.replay);
    assert.equal(replay3.length, 3);
    assert.ok(replay3[1]!.equals(key3), '3 MB event: key bytes');
    assert.ok(replay3[2]!.equals(v3), '3 MB event: value bytes');
    assert.equal(replay20.length, 3);
    assert.ok(replay20[1]!.equals(key20), '20 MB event: key bytes');
    assert.ok(replay20[2]!.equals(v20), '20 MB event: value bytes');
    const [count] = await stack.store.query<{ n: string; u: string; m: string }>(
      `SELECT count() AS n, uniqExact(seq) AS u, max(seq) AS m FROM flashback.events WHERE node = ${sqlString(src.node)} AND seq <= ${last}`,
    );
    assert.ok(Number(count!.u) === last && Number(count!.m) === last, 'gapless up to the marker');
    assert.equal(Number(count!.n), Number(count!.u), 'no event stored twice');
    assert.equal(src.agent.stats().epochs, 1, 'one epoch: the big MONITOR lines did not end capture');
    assert.ok(
      stack.sink.stats().joinedBatches >= 2,
      `the sink joined split batches (${stack.sink.stats().joinedBatches})`,
    );
    assert.equal(stack.sink.stats().heldPartBytes, 0, 'no part left waiting');

    const [t] = await stack.store.query<{ ts: string }>(
      `SELECT max(ts_us) AS ts FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'SET'`,
    );
    const to = Number(t!.ts);
    await waitForWindow(stack, src.node, to, 60_000);
    const report = await restore(
      { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
      { node: src.node, to, spawn: {} },
    );
    if (report.pid) spawnedPids.push(report.pid);
    const restored = new Redis(report.url!);
    try {
      assert.ok((await restored.getBuffer(key3))!.equals(v3), 'restored 3 MB value');
      assert.ok((await restored.getBuffer(key20))!.equals(v20), 'restored 20 MB value');
      assert.deepEqual(await restored.mget('before', 'between', 'after'), ['1', '2', '3']);
    } finally {
      restored.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('the sink joins parts that arrive out of order, interleaved, twice, and across a sink restart; rows only when whole', async () => {
  const js = jetstream(nc);
  const node = `parts-${process.pid}-${Date.now()}`;
  // Recent: the restarted sink's retention pass drops day partitions older than 7 days.
  const epoch = Date.now();
  const value = binaryValue(100_000, 7);
  const ev = (seq: number, v: Buffer): FlashbackEvent => {
    const args = [Buffer.from('SET'), Buffer.from(`k${seq}`), v];
    return {
      node,
      epoch,
      seq,
      tsUs: epoch * 1_000 + seq,
      db: 0,
      client: '127.0.0.1:5000',
      kind: 'command',
      command: 'SET',
      keys: [args[1]!],
      args,
      replay: args,
      tx: 0,
    };
  };
  const batchId = messageId(node, epoch, 1);
  const parts = splitBody(encodeBatch({ node, epoch, events: [ev(1, value), ev(2, Buffer.from('small'))] }), 30_000);
  assert.equal(parts.length, 4);
  const sendPart = async (i: number) => {
    const h = headers();
    h.set(PART_HEADER, formatPart({ index: i, count: parts.length }));
    h.set(BATCH_HEADER, batchId);
    return js.publish(eventSubject(node), parts[i - 1]!, { msgID: partMessageId(batchId, i), headers: h });
  };
  const rowsOf = async () =>
    Number(
      (
        await stack.store.query<{ n: string }>(
          `SELECT count() AS n FROM flashback.events WHERE node = ${sqlString(node)}`,
        )
      )[0]!.n,
    );
  await sendPart(3);
  // Another batch of the same node, whole, in between: stored at once.
  await js.publish(eventSubject(node), encodeBatch({ node, epoch, events: [ev(3, Buffer.from('x'))] }), {
    msgID: messageId(node, epoch, 3),
  });
  await sendPart(1);
  assert.equal((await sendPart(1)).duplicate, true, 'a retried part is a duplicate the stream drops');
  await waitFor('the whole batch stored and the parts held', async () =>
    (await rowsOf()) === 1 && stack.sink.stats().heldPartBytes > 0 ? true : undefined,
  );
  // Restart the sink while it holds parts: they go back to the stream and come to the new sink again.
  await stack.sink.close();
  stack.sink = await startSink({
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    logger: silentLogger,
    flushIntervalMs: 50,
  });
  await waitFor('the new sink holding the parts', async () =>
    stack.sink.stats().heldPartBytes > 0 ? true : undefined,
  );
  assert.equal(await rowsOf(), 1, 'nothing of an incomplete batch is stored');
  await sendPart(4);
  await sendPart(2);
  await waitFor('the joined batch stored', async () => ((await rowsOf()) === 3 ? true : undefined));
  const rows = await stack.store.query<{ seq: string; replay: string }>(
    `SELECT seq, replay FROM flashback.events WHERE node = ${sqlString(node)} ORDER BY seq`,
  );
  assert.deepEqual(
    rows.map((x) => Number(x.seq)),
    [1, 2, 3],
  );
  assert.ok(decodeReplay(rows[0]!.replay)[2]!.equals(value), 'joined value bytes');
  assert.equal(decodeReplay(rows[1]!.replay)[2]!.toString(), 'small');
  await waitFor('no parts held', async () => (stack.sink.stats().heldPartBytes === 0 ? true : undefined));
});
