/**
 * Sink throughput: N events, pre-encoded as the agent sends them (encodeBatch,
 * 2 000 events per message), are published to a real JetStream; then a sink
 * starts and the time until ClickHouse accepted every row is measured.
 * Baseline in the same run: a raw @clickhouse/client JSONEachRow insert of the
 * same rows, already built, in batches as large as the sink's. Rounds are
 * interleaved (raw, sink, raw, sink …).
 * Run alone: `node --import tsx bench/sink-throughput.ts [--quick]`.
 */
import { createClient } from '@clickhouse/client';
import { jetstream } from '@nats-io/jetstream';
import { encodeBatch, decodeBatch } from '../core/bus/event-codec.js';
import { eventSubject, messageId, type FlashbackEvent } from '../core/bus/event.js';
import { silentLogger } from '../core/log.js';
import {
  connectNats,
  ensureEventStream,
  EVENT_STREAM,
  natsJetStreamManager,
  type NatsConnection,
} from '../core/bus/nats.js';
import { openClickHouse } from '../core/store/clickhouse.js';
import { EVENTS_TABLE } from '../core/store/schema.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { eventToRow, startSink } from '../sink/index.js';
import { pollUntil, round, runIfMain, secondsSince, spread, type BenchResult, type BenchSize } from './report.js';
import { seededRandom } from '../test/helpers/seeded-random.js';

const EVENTS_PER_MESSAGE = 2_000;
/** The sink's default maxBatchRows: the raw baseline inserts batches of the same size. */
const ROWS_PER_INSERT = 50_000;
const PUBLISH_IN_FLIGHT = 32;
const NODE = 'bench-sink';

const rng = seededRandom;

/**
 * `count` events shaped like redis-benchmark's SET/HSET/LPUSH/INCR capture (5 % with binary values), one second of time
 * per 100 000.
 */
function buildEvents(count: number): FlashbackEvent[] {
  const random = rng(7);
  const b = (s: string) => Buffer.from(s, 'latin1');
  const startUs = Date.now() * 1000 - count * 10;
  const events: FlashbackEvent[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const n = Math.floor(random() * 100_000);
    const pick = random();
    let args: Buffer[];
    let keys: Buffer[];
    if (pick < 0.05) {
      const bin = Buffer.alloc(8 + (n % 24));
      for (let j = 0; j < bin.length; j++) bin[j] = Math.floor(random() * 256);
      keys = [b(`bin:${n}`)];
      args = [b('SET'), keys[0]!, bin];
    } else if (pick < 0.4) {
      keys = [b(`key:${n}`)];
      args = [b('SET'), keys[0]!, b(`value-${n}-${'x'.repeat(n % 16)}`)];
    } else if (pick < 0.65) {
      keys = [b(`user:${n % 10_000}`)];
      args = [b('HSET'), keys[0]!, b('name'), b(`name-${n}`), b('score'), b(String(n))];
    } else if (pick < 0.85) {
      keys = [b(`queue:${n % 100}`)];
      args = [b('LPUSH'), keys[0]!, b(`job-${n}`)];
    } else {
      keys = [b(`counter:${n % 1000}`)];
      args = [b('INCR'), keys[0]!];
    }
    events[i] = {
      node: NODE,
      epoch: 0,
      seq: i + 1,
      tsUs: startUs + i * 10,
      db: n % 4,
      client: `127.0.0.1:${50_000 + (n % 8)}`,
      kind: 'command',
      command: args[0]!.toString('latin1'),
      keys,
      args,
      replay: args,
      tx: 0,
    };
  }
  return events;
}

/** Publishes the encoded batches to JetStream with a window of acks in flight; returns seconds. */
async function publishAll(
  nc: NatsConnection,
  node: string,
  epoch: number,
  bodies: { firstSeq: number; body: Buffer }[],
): Promise<number> {
  const js = jetstream(nc);
  const subject = eventSubject(node);
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < bodies.length) {
      const m = bodies[next++]!;
      await js.publish(subject, m.body, { msgID: messageId(node, epoch, m.firstSeq) });
    }
  };
  await Promise.all(Array.from({ length: PUBLISH_IN_FLIGHT }, worker));
  return secondsSince(t0);
}

/** Sizes per run size: events per round, rounds. */
const SIZES: Record<BenchSize, { events: number; rounds: number }> = {
  quick: { events: 200_000, rounds: 1 },
  full: { events: 1_000_000, rounds: 2 },
};

/** Runs the sink-throughput benchmark; rows: raw insert (baseline), sink, and two reference rows. */
export async function benchSinkThroughput(size: BenchSize = 'full'): Promise<BenchResult> {
  const { events: count, rounds } = SIZES[size];
  const [nats, clickhouse] = await Promise.all([startNatsServer(), startClickHouseServer()]);
  let nc: NatsConnection | undefined;
  const raw = createClient({ url: clickhouse.url });
  try {
    const store = await openClickHouse(clickhouse.url);
    await store.ensureSchema();
    const version = store.version;
    await store.close();
    nc = await connectNats({ url: nats.url, name: 'bench sink-throughput' });
    await ensureEventStream(nc);
    const jsm = await natsJetStreamManager(nc);

    const events = buildEvents(count);
    const rawS: number[] = [];
    const sinkS: number[] = [];
    const publishS: number[] = [];
    const decodeS: number[] = [];
    let messageBytes = 0;
    for (let r = 0; r < rounds; r++) {
      // Raw insert of the same rows, built before the clock starts: the floor for any sink.
      const rawEpoch = 1_000 + r;
      const rows = events.map((e) => ({ ...eventToRow(e), node: `${NODE}-raw`, epoch: rawEpoch }));
      let t0 = process.hrtime.bigint();
      for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
        await raw.insert({ table: EVENTS_TABLE, values: rows.slice(i, i + ROWS_PER_INSERT), format: 'JSONEachRow' });
      }
      rawS.push(secondsSince(t0));
      rows.length = 0;

      // The sink: messages wait in the stream, then the sink starts and drains them.
      const epoch = 2_000 + r;
      const bodies: { firstSeq: number; body: Buffer }[] = [];
      for (let i = 0; i < events.length; i += EVENTS_PER_MESSAGE) {
        bodies.push({
          firstSeq: events[i]!.seq,
          body: encodeBatch({ node: NODE, epoch, events: events.slice(i, i + EVENTS_PER_MESSAGE) }),
        });
      }
      messageBytes = bodies.reduce((s, m) => s + m.body.length, 0);
      await jsm.streams.purge(EVENT_STREAM);
      publishS.push(await publishAll(nc, NODE, epoch, bodies));

      // What the sink does per message without any I/O: decode and build rows.
      t0 = process.hrtime.bigint();
      let built = 0;
      for (const m of bodies)
        for (const e of decodeBatch(m.body).events) built += eventToRow(e).args.length > 0 ? 1 : 0;
      decodeS.push(secondsSince(t0));
      if (built !== count) throw new Error(`decoded ${built} events, expected ${count}`);

      t0 = process.hrtime.bigint();
      const sink = await startSink({
        natsUrl: nats.url,
        clickhouseUrl: clickhouse.url,
        durable: `bench-sink-${r}`,
        logger: silentLogger,
      });
      try {
        const done = await pollUntil(() => sink.stats().inserted >= count, 600_000, 20);
        if (!done) throw new Error(`the sink inserted ${sink.stats().inserted} of ${count} events within 600 s`);
        sinkS.push(secondsSince(t0));
      } finally {
        await sink.close();
      }
      const check = await (
        await raw.query({
          query: `SELECT count() AS n FROM ${EVENTS_TABLE} WHERE node = '${NODE}' AND epoch = ${epoch}`,
          format: 'JSONEachRow',
        })
      ).json<{ n: string }>();
      if (Number(check[0]?.n) < count)
        throw new Error(`ClickHouse holds ${check[0]?.n} rows of epoch ${epoch}, expected ${count}`);
    }
    const rate = (s: number[]) => s.map((x) => count / x);
    const rawRates = rate(rawS);
    const ratio = (s: number[]) => s.map((x, i) => count / x / rawRates[i]!);
    const many = rounds > 1;
    const f = (xs: number[], d = 2) => (many ? spread(xs, d) : round(xs[0]!, d));
    return {
      name: `Sink throughput: JetStream → ClickHouse ${version} (${count.toLocaleString('en-US')} events per round, ${rounds} round${many ? 's' : ''})`,
      rows: [
        {
          path: 'raw @clickhouse/client JSONEachRow insert, rows pre-built (baseline)',
          seconds: f(rawS),
          'events/s': f(rawRates, 0),
          'ratio vs baseline': f(rawS.map(() => 1)),
        },
        {
          path: 'sink: drain the stream into ClickHouse (startSink → all rows inserted)',
          seconds: f(sinkS),
          'events/s': f(rate(sinkS), 0),
          'ratio vs baseline': f(ratio(sinkS)),
        },
        {
          path: 'reference: decodeBatch + eventToRow only, one core, no I/O',
          seconds: f(decodeS),
          'events/s': f(rate(decodeS), 0),
          'ratio vs baseline': f(ratio(decodeS)),
        },
        {
          path: 'reference: publishing the pre-encoded batches to JetStream',
          seconds: f(publishS),
          'events/s': f(rate(publishS), 0),
          'ratio vs baseline': f(ratio(publishS)),
        },
      ],
      notes: [
        `Events: SET/HSET/LPUSH/INCR shapes with short keys, 5 % binary values; ${EVENTS_PER_MESSAGE.toLocaleString('en-US')} events per message, ${(messageBytes / count).toFixed(1)} B/event encoded.`,
        `Sink with its defaults (maxBatchRows ${ROWS_PER_INSERT.toLocaleString('en-US')}, maxPullMessages 256); its time includes start-up (schema check, consumer creation). Baseline inserts the same rows in ${ROWS_PER_INSERT.toLocaleString('en-US')}-row requests, one at a time.`,
        'ratio > 1 means faster than the raw insert. Everything (nats-server, clickhouse-server, this process) shares the 2 cores.',
      ],
    };
  } finally {
    await raw.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await Promise.all([nats.stop(), clickhouse.stop()]);
  }
}

await runIfMain(import.meta.url, benchSinkThroughput);
