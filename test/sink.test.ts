// Sink with real nats-server -js and clickhouse-server: every column and replay byte stored, restart and duplicates
// lose and double nothing, insert failures retried, consumer loss and NATS restarts survived, clear startup errors.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { baselineSubject, type BaselineRecord } from '../core/bus/baseline.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { ConfigError, ConnectionError } from '../core/errors.js';
import { readableBytes } from '../core/redis/escape.js';
import { encodeBatch } from '../core/bus/event-codec.js';
import { eventSubject, messageId, type EventKind, type FlashbackEvent } from '../core/bus/event.js';
import { silentLogger } from '../core/log.js';
import { connectNats, ensureEventStream, EVENT_STREAM, type NatsConnection } from '../core/bus/nats.js';
import { decodeCommand } from '../core/redis/resp.js';
import { sqlString } from '../core/store/sql-literal.js';
import { freePort } from '../core/servers/free-port.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { startSink, type Sink } from '../sink/index.js';
import { testClickHouse, testNats } from './helpers/servers.js';

let nats: ServerProcess;
let clickhouse: ServerProcess;
let nc: NatsConnection;
let js: JetStreamClient;
let store: Store;

before(async () => {
  [nats, clickhouse] = await Promise.all([testNats(), testClickHouse()]);
  nc = await connectNats({ url: nats.url, name: 'sink-test' });
  await ensureEventStream(nc);
  js = jetstream(nc);
  store = await openClickHouse(clickhouse.url);
});

after(async () => {
  await store?.close();
  await nc?.close();
  await Promise.all([nats?.stop(), clickhouse?.stop()]);
});

const B = (bytes: number[] | string) => (typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.from(bytes));

function ev(node: string, epoch: number, seq: number, over: Partial<FlashbackEvent> = {}): FlashbackEvent {
  const args = [B('SET'), B(`k${seq}`), B(`v${seq}`)];
  return {
    node,
    epoch,
    seq,
    tsUs: epoch * 1_000 + seq,
    db: 0,
    client: '127.0.0.1:5000',
    kind: 'command' as EventKind,
    command: 'SET',
    keys: [args[1]!],
    args,
    replay: args,
    tx: 0,
    ...over,
  };
}

/** Publishes consecutive events as the agent does: one batch per message, Nats-Msg-Id of its first seq. */
async function publish(events: FlashbackEvent[], perMessage = 100): Promise<number> {
  let duplicates = 0;
  for (let i = 0; i < events.length; i += perMessage) {
    const chunk = events.slice(i, i + perMessage);
    const { node, epoch, seq } = chunk[0]!;
    const ack = await js.publish(eventSubject(node), encodeBatch({ node, epoch, events: chunk }), {
      msgID: messageId(node, epoch, seq),
    });
    if (ack.duplicate) duplicates++;
  }
  return duplicates;
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await delay(25);
  }
}

async function counts(node: string): Promise<{ n: number; u: number }> {
  const [r] = await store.query<{ n: number; u: number }>(
    `SELECT count() AS n, uniqExact(node, epoch, seq) AS u FROM flashback.events WHERE node = ${sqlString(node)}`,
  );
  return r!;
}

/** The exact argv a stored row replays (exactly one command, or decodeCommand throws). */
function decodeReplay(b64: string): Buffer[] {
  return decodeCommand(Buffer.from(b64, 'base64'));
}

// Fixtures carry fixed past dates: a retention window of 10 years keeps the sink's own retention pass off them.
const startTestSink = (o: Partial<Parameters<typeof startSink>[0]> = {}): Promise<Sink> =>
  startSink({
    natsUrl: nats.url,
    clickhouseUrl: clickhouse.url,
    logger: silentLogger,
    flushIntervalMs: 50,
    retentionMs: 10 * 365 * 86_400_000,
    ...o,
  });

test('every column is stored and replay decodes to the exact bytes; baseline records land in flashback.baselines', async () => {
  const node = `n-${randomUUID()}`;
  const epoch = 1_754_252_890_000;
  const binKey = B([0x00, 0xff, 0x22, 0x5c, 0x0a, 0x20, 0x6b, 0xc3, 0xa9]);
  const binVal = Buffer.concat([
    B([0, 1, 2, 0xfe, 0xff, 0x0d, 0x0a]),
    B('it\'s "quoted" \\ back'),
    Buffer.alloc(70_000, 0x61),
  ]);
  const events: FlashbackEvent[] = [
    ev(node, epoch, 1, {
      kind: 'baseline',
      command: 'BASELINE',
      keys: [],
      args: [B('PUBLISH'), B('__flashback__:marker'), B('m1')],
      replay: [],
    }),
    ev(node, epoch, 2, {
      db: 3,
      client: 'unix:/tmp/redis.sock',
      keys: [binKey],
      args: [B('SET'), binKey, binVal, B('EX'), B('10')],
      replay: [B('SET'), binKey, binVal, B('PXAT'), B('1754252900000')],
    }),
    ev(node, epoch, 3, { command: 'MULTI', keys: [], args: [B('MULTI')], replay: [B('MULTI')], tx: 3 }),
    ev(node, epoch, 4, {
      command: 'HSET',
      client: 'lua',
      keys: [B('h')],
      args: [B('HSET'), B('h'), B('f'), B([0xff])],
      tx: 3,
    }),
    ev(node, epoch, 5, { command: 'MSET', keys: [B('a'), B('b')], args: [B('MSET'), B('a'), B('1'), B('b'), B('2')] }),
    ev(node, epoch, 6, {
      kind: 'state',
      command: 'SPOP',
      keys: [B('s')],
      args: [B('SPOP'), B('s')],
      replay: [B('RESTORE'), B('s'), B('0'), B([0x02, 0x00, 0xff, 0x0a]), B('REPLACE'), B('ABSTTL')],
    }),
    ev(node, epoch, 7, {
      kind: 'expired',
      command: 'expired',
      client: 'agent',
      keys: [B('gone')],
      args: [B('gone')],
      replay: [B('DEL'), B('gone')],
    }),
  ];
  events[3]!.replay = events[3]!.args;
  await publish(events, 3);
  const record: BaselineRecord = {
    node,
    epoch,
    seq: 1,
    tsUs: epoch * 1_000 + 1,
    markerId: 'm1',
    rdbObject: `${node}/${epoch}/m1.rdb`,
    tailObject: `${node}/${epoch}/m1.tail`,
    rdbBytes: 12_345,
    tailBytes: 67,
    keys: 42,
    digest: 'ab'.repeat(20),
  };
  await js.publish(baselineSubject(node), JSON.stringify(record), { msgID: `baseline:${node}:${epoch}:1` });

  await using sink = await startTestSink();
  await waitFor(
    '7 rows',
    () => counts(node),
    (c) => c.n === events.length,
  );
  await waitFor(
    'baseline row',
    () => store.query(`SELECT 1 FROM flashback.baselines WHERE node = ${sqlString(node)}`),
    (r) => r.length === 1,
  );

  const rows = await store.query<Record<string, unknown>>(
    `SELECT node, epoch, seq, ts_us, toUnixTimestamp(time) AS t, db, client, kind, command, key, keys, args, replay, tx FROM flashback.events WHERE node = ${sqlString(node)} ORDER BY seq`,
  );
  assert.equal(rows.length, events.length);
  rows.forEach((row, i) => {
    const e = events[i]!;
    const { replay, ...rest } = row;
    assert.deepEqual(rest, {
      node,
      epoch,
      seq: e.seq,
      ts_us: e.tsUs,
      t: Math.floor(e.tsUs / 1_000_000),
      db: e.db,
      client: e.client,
      kind: e.kind,
      command: e.command,
      key: e.keys.length > 0 ? readableBytes(e.keys[0]!) : '',
      keys: e.keys.map(readableBytes),
      args: e.args.map(readableBytes),
      tx: e.tx,
    });
    if (e.replay.length === 0) assert.equal(replay, '');
    else assert.deepEqual(decodeReplay(replay as string), e.replay, `replay of seq ${e.seq}`);
  });
  // Readable columns: escaped the way redis-cli shows bytes, so binary keys can be found with SQL.
  const second = rows[1]!;
  assert.equal(second.key, '\\x00\\xff\\"\\\\\\n k\\xc3\\xa9');
  assert.deepEqual(second.keys, ['\\x00\\xff\\"\\\\\\n k\\xc3\\xa9']);
  assert.deepEqual((second.args as string[]).slice(3), ['EX', '10']);
  assert.ok((second.args as string[])[2]!.startsWith('\\x00\\x01\\x02\\xfe\\xff\\r\\nit\'s \\"quoted\\" \\\\ backaaa'));
  assert.deepEqual(rows[4]!.keys, ['a', 'b']);
  assert.equal(rows[4]!.key, 'a');
  assert.deepEqual(rows[3]!.args, ['HSET', 'h', 'f', '\\xff']);

  const [b] = await store.query<Record<string, unknown>>(
    `SELECT node, epoch, seq, ts_us, toUnixTimestamp(time) AS t, marker, rdb_object, tail_object, rdb_bytes, tail_bytes, keys, digest FROM flashback.baselines WHERE node = ${sqlString(node)}`,
  );
  assert.deepEqual(b, {
    node,
    epoch,
    seq: 1,
    ts_us: record.tsUs,
    t: Math.floor(record.tsUs / 1_000_000),
    marker: 'm1',
    rdb_object: record.rdbObject,
    tail_object: record.tailObject,
    rdb_bytes: 12_345,
    tail_bytes: 67,
    keys: 42,
    digest: record.digest,
  });
  const s = sink.stats();
  assert.ok(
    s.events >= events.length &&
      s.baselines >= 1 &&
      s.inserted >= events.length + 1 &&
      s.batches >= 1 &&
      s.lastInsertMs > 0,
    JSON.stringify(s),
  );
  assert.equal(sink.health().ok, true);
});

test('closing the sink while messages flow and starting it again stores every event exactly once', async () => {
  const node = `n-${randomUUID()}`;
  const epoch = Date.now();
  const third = 10_000;
  const events = Array.from({ length: 3 * third }, (_, i) => ev(node, epoch, i + 1));
  let sink = await startTestSink();
  try {
    await publish(events.slice(0, third), 50);
    await waitFor(
      'first rows',
      () => counts(node),
      (c) => c.n > 0,
    );
    // Close while the sink is busy and the second third is still being published to it.
    const publishing = publish(events.slice(third, 2 * third), 20);
    await waitFor(
      'more rows',
      () => counts(node),
      (c) => c.n > third / 2,
    );
    await sink.close();
    await sink.close(); // idempotent
    assert.equal(await publishing, 0);
    await publish(events.slice(2 * third), 50);
    const stored = (await counts(node)).n;
    assert.ok(stored > 0 && stored < events.length, `stored ${stored} before the restart`);
    sink = await startTestSink();
    const c = await waitFor(
      `${events.length} rows`,
      () => counts(node),
      (v) => v.u === events.length,
      60_000,
    );
    // Nothing was acked before its insert and nothing inserted twice: no duplicate, even before merges.
    assert.deepEqual(c, { n: events.length, u: events.length });
    const [range] = await store.query<{ lo: number; hi: number }>(
      `SELECT min(seq) AS lo, max(seq) AS hi FROM flashback.events WHERE node = ${sqlString(node)}`,
    );
    assert.deepEqual(range, { lo: 1, hi: events.length });
  } finally {
    await sink.close();
  }
});

test('a message published twice with the same Nats-Msg-Id is stored once', async () => {
  const node = `n-${randomUUID()}`;
  const epoch = Date.now();
  const events = Array.from({ length: 10 }, (_, i) => ev(node, epoch, i + 1));
  assert.equal(await publish(events, 10), 0);
  assert.equal(await publish(events, 10), 1, 'JetStream reports the second publish as a duplicate');
  const later = Array.from({ length: 5 }, (_, i) => ev(node, epoch, i + 11));
  await publish(later, 5);
  await using sink = await startTestSink();
  const c = await waitFor(
    '15 rows',
    () => counts(node),
    (v) => v.u === 15,
  );
  assert.deepEqual(c, { n: 15, u: 15 });
  assert.ok(sink.stats().events >= 15);
});

test('a batch of a newer format is left in the stream and offered again, never terminated; the others are stored', async () => {
  const node = `n-${randomUUID()}`;
  const epoch = Date.now();
  const body = encodeBatch({ node, epoch, events: [ev(node, epoch, 1)] });
  body[0] = 99; // a format a later agent may write
  await js.publish(eventSubject(node), body, { msgID: messageId(node, epoch, 1) });
  await publish(
    Array.from({ length: 5 }, (_, i) => ev(node, epoch, i + 2)),
    5,
  );
  const durable = `newer-${randomUUID().slice(0, 8)}`;
  await using sink = await startTestSink({ durable });
  await waitFor(
    'the 5 readable rows',
    () => counts(node),
    (v) => v.u === 5,
  );
  await waitFor(
    'the newer-format message seen',
    async () => sink.stats().newerVersionMessages,
    (n) => n >= 1,
  );
  assert.equal(sink.stats().poisonMessages, 0, 'not counted as poison');
  // Not terminated: once this new consumer has gone through the whole stream (earlier tests' messages too), the one
  // message left waiting for its acknowledgement is that one (a terminated message is not waited for).
  const jsm = await jetstreamManager(nc);
  await waitFor(
    'the consumer through the stream, one message left unacknowledged',
    async () => {
      const c = await jsm.consumers.info(EVENT_STREAM, durable);
      return { pending: c.num_pending, ackPending: c.num_ack_pending };
    },
    (v) => v.pending === 0 && v.ackPending === 1,
    60_000,
  );
});

test('inserts that fail are retried and nothing is acknowledged before ClickHouse accepted it', async () => {
  const node = `n-${randomUUID()}`;
  const epoch = Date.now();
  await using sink = await startTestSink({ retryDelayMs: 20, maxRetryDelayMs: 100 });
  await store.command('DROP TABLE flashback.events');
  try {
    await publish(
      Array.from({ length: 30 }, (_, i) => ev(node, epoch, i + 1)),
      10,
    );
    await waitFor(
      'failed inserts',
      async () => sink.stats(),
      (s) => s.insertFailures >= 2,
    );
    assert.equal(sink.health().clickhouseOk, false);
    assert.equal(sink.health().ok, false);
    assert.match(String(sink.health().lastError), /events/);
    const info = await (await js.consumers.get('FLASHBACK_EVENTS', 'flashback-sink')).info();
    assert.ok(
      info.num_ack_pending >= 3,
      `messages held unacknowledged while ClickHouse fails (ack pending ${info.num_ack_pending})`,
    );
  } finally {
    await store.ensureSchema();
  }
  const c = await waitFor(
    '30 rows after the table is back',
    () => counts(node),
    (v) => v.u === 30,
  );
  assert.deepEqual(c, { n: 30, u: 30 });
  await waitFor(
    'healthy again',
    async () => sink.health(),
    (h) => h.ok,
  );
});

test('an unreachable ClickHouse or NATS, or a malformed URL, gives one clear error', async () => {
  const port = await freePort();
  await assert.rejects(
    startSink({ natsUrl: nats.url, clickhouseUrl: `http://127.0.0.1:${port}`, logger: silentLogger }),
    (err: unknown) => {
      assert.ok(err instanceof ConnectionError);
      assert.equal(err.message.split('\n').length, 1);
      assert.match(
        err.message,
        new RegExp(`^cannot connect to ClickHouse at http://127\\.0\\.0\\.1:${port}; is clickhouse-server running\\?`),
      );
      return true;
    },
  );
  await assert.rejects(
    startSink({ natsUrl: `nats://127.0.0.1:${port}`, clickhouseUrl: clickhouse.url, logger: silentLogger }),
    (err: unknown) => {
      assert.ok(err instanceof ConnectionError);
      assert.match(
        err.message,
        new RegExp(`^cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}; is nats-server -js running there\\?$`),
      );
      return true;
    },
  );
  await assert.rejects(
    startSink({ natsUrl: nats.url, clickhouseUrl: 'clickhouse:8123', logger: silentLogger }),
    ConfigError,
  );
  await assert.rejects(
    startSink({ natsUrl: 'nats://bad host', clickhouseUrl: clickhouse.url, logger: silentLogger }),
    ConfigError,
  );
});

test('the sink carries on when its consumer is deleted and when nats-server restarts', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flashback-sink-nats-'));
  let own = await startNatsServer({ dir });
  const port = own.port;
  const node = `n-${randomUUID()}`;
  const epoch = Date.now();
  const events = Array.from({ length: 300 }, (_, i) => ev(node, epoch, i + 1));
  const pub = await connectNats({
    url: own.url,
    name: 'sink-test-restart',
    reconnectDelayMs: 20,
    maxReconnectDelayMs: 200,
  });
  const sink = await startSink({
    natsUrl: own.url,
    clickhouseUrl: clickhouse.url,
    logger: silentLogger,
    flushIntervalMs: 50,
    retryDelayMs: 20,
    maxRetryDelayMs: 200,
  });
  try {
    const pjs = jetstream(pub);
    const send = async (from: number, to: number) => {
      for (let i = from; i < to; i += 10) {
        const chunk = events.slice(i, i + 10);
        await pjs.publish(eventSubject(node), encodeBatch({ node, epoch, events: chunk }), {
          msgID: messageId(node, epoch, chunk[0]!.seq),
        });
      }
    };
    await send(0, 100);
    await waitFor(
      '100 rows',
      () => counts(node),
      (c) => c.u === 100,
    );

    // nats-server 2.9 can refuse the delete while it writes the consumer's state ("unlinkat …: directory not empty",
    // seen once under load): asked again until it is gone.
    const jsm = await jetstreamManager(pub);
    for (let attempt = 1; ; attempt++) {
      const err = await jsm.consumers.delete('FLASHBACK_EVENTS', 'flashback-sink').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      if (err === undefined || /not found/i.test(err.message)) break;
      if (!/directory not empty/.test(err.message) || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
    await send(100, 200);
    await waitFor(
      '200 rows after the consumer was deleted',
      () => counts(node),
      (c) => c.u === 200,
    );

    await own.stop();
    own = await startNatsServer({ dir, port });
    await waitFor(
      'publisher reconnected',
      () =>
        jetstreamManager(pub)
          .then((m) => m.getAccountInfo())
          .then(
            () => true,
            () => false,
          ),
      (ok) => ok,
    );
    await send(200, 300);
    await waitFor(
      '300 rows after nats-server restarted',
      () => counts(node),
      (c) => c.u === 300,
    );
    await waitFor(
      'healthy',
      async () => sink.health(),
      (h) => h.ok && h.natsConnected,
    );
  } finally {
    await sink.close();
    await pub.close();
    await own.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
