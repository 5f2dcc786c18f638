// The timeline page's SQL (core/store/timeline-sql.ts) on ClickHouse 18.16 (real server) and on a current release
// (chdb), with the same answers: write rates per bucket, dangerous events, big transactions, RENAME targets, type mixes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Session } from 'chdb';
import type { FlashbackEvent } from '../core/bus/event.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { dropMarksPartitionSql, dropRatesPartitionSql, dropSeqsPartitionSql } from '../core/store/retention-sql.js';
import { schemaStatements, versionSql } from '../core/store/schema.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import {
  bigTxSql,
  dangerousEventsSql,
  eventsWhoSql,
  nextEventSql,
  pickBucketUs,
  rateFromSecondsSql,
  rateSql,
  seqSpansSql,
  renameTargetSql,
  typeChanges,
  typeMixSql,
  type TypedWrite,
} from '../core/store/timeline-sql.js';
import { eventToRow } from '../sink/rows.js';
import { testClickHouse } from './helpers/servers.js';

const NODE = "tl:6379 it's";
const EPOCH = 7;
/** 2025-08-03 00:00:00 UTC, µs. */
const T0 = Date.UTC(2025, 7, 3) * 1000;
const B = (s: string) => Buffer.from(s);

/** Event n at T0 + n·250 ms: four per second. */
const script: [string, string[], { kind?: string; tx?: number; db?: number }?][] = [
  ['PUBLISH', ['__flashback'], { kind: 'baseline' }], // 1
  ['HSET', ['profile', 'a', '1']], // 2
  ['SET', ['dst', 'x']], // 3
  ['SET', ['profile', 'oops']], // 4: hash → string
  ['RENAME', ['src', 'dst']], // 5: over dst (written at 3)
  ['RENAME', ['src2', 'fresh']], // 6: onto a key no event touched
  ['DEL', ['k1', 'k2', 'k3', 'k0']], // 7: many keys (4; the first 3 are shown)
  ['DEL', ['k4']], // 8: one key
  ['SET', ['t1', '1'], { tx: 9 }], // 9
  ['SET', ['t2', '1'], { tx: 9 }], // 10
  ['SET', ['t3', '1'], { tx: 9 }], // 11: tx 9 wrote 3 keys
  ['FLUSHALL', []], // 12
  ['HEARTBEAT', [], { kind: 'heartbeat' }], // 13
  ['DEL', ['profile']], // 14
  ['LPUSH', ['profile', 'x']], // 15: after a DEL: no type change
  ['SET', ['z', '1'], { db: 1 }], // 16; 17 is missing: a hole after 16
  ['SET', ['z', '2'], { db: 1 }], // 18
  ['UNLINK', Array.from({ length: 11 }, (_, i) => `m${i}`)], // 19: many keys (11), kept in the marks table
];
const ts = (seq: number) => T0 + seq * 250_000;
const EVENTS: FlashbackEvent[] = script.map(([command, rest, o = {}], i) => {
  const seq = i < 16 ? i + 1 : i + 2;
  const keyCount = ['DEL', 'UNLINK'].includes(command)
    ? rest.length
    : command === 'RENAME'
      ? 2
      : rest.length > 0
        ? 1
        : 0;
  const args = [command, ...rest].map(B);
  return {
    node: NODE,
    epoch: EPOCH,
    seq,
    tsUs: ts(seq),
    db: o.db ?? 0,
    client: seq === 4 ? '10.0.0.9:4242' : '127.0.0.1:5000',
    kind: (o.kind ?? 'command') as FlashbackEvent['kind'],
    command,
    keys: rest.slice(0, keyCount).map(B),
    args,
    replay: args,
    tx: o.tx ?? 0,
  };
});
const RANGE = { fromUs: T0, toUs: T0 + 10_000_000 };

let server: ServerProcess;
let store: Store;
let current: Session;

function chdbRows(sql: string): Record<string, unknown>[] {
  const out = current.query(sql, 'JSONEachRow').trim();
  return out === '' ? [] : out.split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs `sql` on both servers, checks they agree (numbers compared as numbers), returns 18.16's rows. */
async function both(sql: string): Promise<Record<string, unknown>[]> {
  const old = await store.query(sql);
  const norm = (rows: unknown[]) => JSON.parse(JSON.stringify(rows, (_k, v) => (/^\d+$/.test(v) ? Number(v) : v)));
  assert.deepEqual(norm(chdbRows(sql)), norm(old), sql);
  return old;
}

before(async () => {
  server = await testClickHouse();
  store = await openClickHouse(server.url);
  await store.ensureSchema();
  await store.insertEvents(EVENTS.map(eventToRow));
  current = new Session();
  const version = String(chdbRows(versionSql())[0]!.version);
  for (const statement of schemaStatements(version)) current.query(statement);
  current.query(
    `INSERT INTO flashback.events FORMAT JSONEachRow\n${EVENTS.map((e) => JSON.stringify(eventToRow(e))).join('\n')}`,
  );
});

after(async () => {
  current?.cleanup();
  await store?.close();
  await server?.stop();
});

test('bucket steps are round and keep under the asked count', () => {
  assert.equal(pickBucketUs(0, 86_400e6, 1_500), 60e6, 'a day at one-minute buckets');
  assert.equal(pickBucketUs(0, 60e6, 6_000), 1e4, 'a minute at 10 ms buckets');
  assert.equal(pickBucketUs(0, 1e6, 1_000), 1e3);
  assert.equal(pickBucketUs(0, 1e15, 10), 864e8, 'capped at a day');
});

test('write rates per bucket count commands and expirations, not markers or heartbeats', async () => {
  const rows = await both(rateSql(RANGE, 1_000_000, NODE));
  // Seconds 0..4: seqs 1-3 (1 is the marker), 4-7, 8-11, 12-15 (13 heartbeat), 16, 18, 19.
  assert.deepEqual(
    rows.map((r) => [r.node, Number(r.b), Number(r.n)]),
    [
      [NODE, 0, 2],
      [NODE, 1, 4],
      [NODE, 2, 4],
      [NODE, 3, 3],
      [NODE, 4, 3],
    ],
  );
  const all = await both(rateSql({ fromUs: ts(4), toUs: ts(8) }, 500_000));
  assert.deepEqual(
    all.filter((r) => r.node === NODE).map((r) => [Number(r.b), Number(r.n)]),
    [
      [0, 2],
      [1, 2],
    ],
    'the range bounds are [from, to)',
  );
});

test('dangerous single events: FLUSHALL, DEL of many keys, RENAME', async () => {
  const rows = await both(dangerousEventsSql(RANGE, 4, 100, NODE));
  assert.deepEqual(
    rows.map((r) => [Number(r.seq), r.command, Number(r.nkeys)]),
    [
      [5, 'RENAME', 2],
      [6, 'RENAME', 2],
      [7, 'DEL', 4],
      [12, 'FLUSHALL', 0],
      [19, 'UNLINK', 11],
    ],
  );
  // From 10 keys on, the marks table answers, the same as the events.
  const fromEvents = await both(dangerousEventsSql(RANGE, 10, 100, NODE, false));
  assert.deepEqual(
    fromEvents.map((r) => Number(r.seq)),
    [5, 6, 12, 19],
  );
  assert.deepEqual(await both(dangerousEventsSql(RANGE, 10, 100, NODE)), fromEvents);
  assert.match(dangerousEventsSql(RANGE, 10, 100), /FROM flashback\.event_marks/);
  assert.throws(() => dangerousEventsSql(RANGE, 4, 100, NODE, true), /10 keys or more/);
  assert.deepEqual(rows[2]!.first_args, ['DEL', 'k1', 'k2', 'k3', 'k0']);
  assert.deepEqual(rows[2]!.first_keys, ['k1', 'k2', 'k3']);
  assert.equal(Number(rows[3]!.ts_us), ts(12));
});

test('a transaction writing many keys', async () => {
  const rows = await both(bigTxSql(RANGE, 3, 100, NODE));
  assert.equal(rows.length, 1);
  assert.equal(Number(rows[0]!.tx), 9);
  assert.equal(Number(rows[0]!.nkeys), 3);
  assert.equal(Number(rows[0]!.first_ts), ts(9));
  assert.equal(rows[0]!.first_command, 'SET');
  assert.deepEqual(rows[0]!.commands, ['SET']);
  assert.deepEqual(await both(bigTxSql(RANGE, 4, 100, NODE)), []);
});

test('RENAME targets: the last event on the target before it, or a flush', async () => {
  const over = await both(renameTargetSql(NODE, EPOCH, 0, 5, 'dst'));
  assert.deepEqual(
    over.map((r) => [Number(r.seq), r.command]),
    [[3, 'SET']],
  );
  assert.deepEqual(await both(renameTargetSql(NODE, EPOCH, 0, 6, 'fresh')), []);
  const flushed = await both(renameTargetSql(NODE, EPOCH, 0, 14, 'dst'));
  assert.deepEqual(
    flushed.map((r) => r.command),
    ['FLUSHALL'],
  );
});

test('type mixes and the changes in them: a SET over a hash, not an LPUSH after a DEL', async () => {
  const rows = await both(typeMixSql(RANGE, 100, NODE));
  assert.deepEqual(
    rows.map((r) => r.key),
    ['profile'],
  );
  const h = (rows[0]!.h as unknown[][]).map(
    ([s, t, u, c]) => [Number(s), String(t), Number(u), String(c)] as TypedWrite,
  );
  assert.deepEqual(
    h.map(([s, t]) => [s, t]),
    [
      [2, 'hash'],
      [4, 'string'],
      [14, 'del'],
      [15, 'list'],
    ],
  );
  assert.deepEqual(typeChanges(h), [{ seq: 4, tsUs: ts(4), from: 'hash', to: 'string' }]);
  // An HSET on the string (refused with WRONGTYPE, but in MONITOR's stream) is no change; a SET over a list is.
  assert.deepEqual(
    typeChanges([
      [1, 'string', 10, 'SET'],
      [2, 'hash', 20, 'HSET'],
      [3, 'string', 30, 'APPEND'],
      [4, 'del', 40, 'DEL'],
      [5, 'list', 50, 'LPUSH'],
      [6, 'string', 60, 'SET'],
    ]),
    [{ seq: 6, tsUs: 60, from: 'list', to: 'string' }],
  );
  assert.deepEqual(await both(eventsWhoSql(NODE, EPOCH, [4, 99])), [
    { seq: 4, who: '10.0.0.9:4242', what: 'SET', argv: ['SET', 'profile', 'oops'] },
  ]);
});

test('the end of a hole', async () => {
  const rows = await both(nextEventSql(NODE, EPOCH, 16));
  assert.deepEqual(
    rows.map((r) => [Number(r.next_seq), Number(r.next_ts)]),
    [[18, ts(18)]],
  );
});

test('per-second counts and marks (kept by materialized views) give the same answers, and fill from a store made before them', async () => {
  const bySeconds = rateFromSecondsSql(RANGE, 2_000_000, NODE);
  const expected = [
    [NODE, 0, 6],
    [NODE, 1, 7],
    [NODE, 2, 3],
  ];
  const shape = (rows: Record<string, unknown>[]) => rows.map((r) => [r.node, Number(r.b), Number(r.n)]);
  assert.deepEqual(shape(await both(bySeconds)), expected);
  assert.deepEqual(shape(await both(rateSql(RANGE, 2_000_000, NODE))), expected, 'the same as counting the events');
  assert.throws(() => rateFromSecondsSql({ fromUs: T0 + 1, toUs: T0 + 2e6 }, 1e6), /whole-second/);

  // A store from before the view: its events are counted once when the schema is ensured, and not again after.
  for (const run of [(sql: string) => store.command(sql), async (sql: string) => void current.query(sql)]) {
    await run('DROP TABLE flashback.event_rates_mv');
    await run('TRUNCATE TABLE flashback.event_rates');
    await run('DROP TABLE flashback.event_marks_mv');
    await run('TRUNCATE TABLE flashback.event_marks');
    await run('DROP TABLE flashback.event_seqs_mv');
    await run('TRUNCATE TABLE flashback.event_seqs');
  }
  await store.ensureSchema();
  await store.ensureSchema();
  const version = String(chdbRows(versionSql())[0]!.version);
  for (const _ of [1, 2]) for (const statement of schemaStatements(version)) current.query(statement);
  assert.deepEqual(shape(await both(bySeconds)), expected);
  assert.deepEqual(
    (await both(dangerousEventsSql(RANGE, 10, 100, NODE))).map((r) => Number(r.seq)),
    [5, 6, 12, 19],
    'the marks table filled once',
  );
  assert.deepEqual(
    (await both(seqSpansSql(RANGE))).filter((r) => r.node === NODE),
    [{ node: NODE, epoch: EPOCH, lo: 1, hi: 19 }],
    'the seqs table filled once',
  );

  for (const sql of [
    dropRatesPartitionSql('2001-01-01'),
    dropMarksPartitionSql('2001-01-01'),
    dropSeqsPartitionSql('2001-01-01'),
  ]) {
    await store.command(sql);
    current.query(sql);
  }
});

test('a range narrowed to its seqs gives the same answers', async () => {
  const mid = { fromUs: ts(2), toUs: ts(13) };
  const spans = await both(seqSpansSql(mid, NODE));
  // Whole seconds around the range: seconds 0..3 hold seqs 1..15.
  assert.deepEqual(spans, [{ node: NODE, epoch: EPOCH, lo: 1, hi: 15 }]);
  const narrowed = {
    ...mid,
    seqSpans: spans.map((r) => ({ node: String(r.node), epoch: Number(r.epoch), lo: Number(r.lo), hi: Number(r.hi) })),
  };
  for (const [wide, narrow] of [
    [rateSql(mid, 250_000, NODE), rateSql(narrowed, 250_000, NODE)],
    [dangerousEventsSql(mid, 4, 100, NODE), dangerousEventsSql(narrowed, 4, 100, NODE)],
    [bigTxSql(mid, 3, 100), bigTxSql(narrowed, 3, 100)],
    [typeMixSql(mid, 100), typeMixSql(narrowed, 100)],
  ]) {
    const rows = await both(wide!);
    assert.ok(rows.length > 0, wide);
    assert.deepEqual(await both(narrow!), rows, narrow);
  }
  assert.deepEqual(await both(rateSql({ ...mid, seqSpans: [] }, 250_000)), [], 'no seqs: nothing in range');
  const only4to7 = await both(rateSql({ ...mid, seqSpans: [{ node: NODE, epoch: EPOCH, lo: 4, hi: 7 }] }, 11e6));
  assert.deepEqual(
    only4to7.map((r) => Number(r.n)),
    [4],
    'the spans bound what is read',
  );
});
