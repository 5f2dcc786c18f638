// Our DDL and every query the code issues run on ClickHouse 18.16 (real server) and on a current release (chdb), with
// the same answers; string literals round-trip; read-only SQL is refused before and by the server.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Session } from 'chdb';
import {
  checkReadOnlySql,
  openClickHouse,
  readOnlySettings,
  translateClickHouseError,
  type Store,
} from '../core/store/clickhouse.js';
import { ErrorCode, InputError } from '../core/errors.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import {
  columnsSql,
  schemaFeatures,
  schemaStatements,
  versionSql,
  type BrokenEventRow,
  type VerificationRow,
} from '../core/store/schema.js';
import { sqlString, sqlStringArray, sqlUInt } from '../core/store/sql-literal.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import {
  clusterShardCountSql,
  deleteBaselinesSql,
  dropEventPartitionSql,
  eventNodesSql,
  eventPartitionsSql,
  eventsEngineSql,
  localRetentionTablesSql,
  localShardSql,
  neededBaselinesSql,
  oldBaselinesSql,
  partitionDaySql,
} from '../core/store/retention-sql.js';
import {
  fieldTtlCommandsSql,
  firstSettleSql,
  groupEndSql,
  unstatedCommandsSql,
  unstatedXaddsSql,
} from '../core/store/restore-sql.js';
import { historySql } from '../core/store/key-history.js';
import { lastAtOrBeforeSql, txEndSql } from '../core/store/cutoff.js';
import { groupStateSql, lastAnchorSql, nextChangeSql } from '../core/store/cutoff-precision.js';
import { baselinesSql, brokenSql, epochSummarySql, eventTimesSql, holeSql, nodesSql } from '../core/store/windows.js';
import { baselineSql, brokenEventsSql, clickHouseEventStore, replaySql } from '../core/store/event-store.js';
import { digestBaselinesSql, firstEventOfKeysSql, verificationsSql } from '../core/store/verifications.js';
import { baselineToRow, eventToRow } from '../sink/rows.js';
import { testClickHouse } from './helpers/servers.js';

let server: ServerProcess;
let store: Store;
let current: Session;
let currentVersion: string;

function chdbRows(session: Session, sql: string): Record<string, unknown>[] {
  const out = session.query(sql, 'JSONEachRow').trim();
  return out === '' ? [] : out.split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

const NODE = "n1:6379 it's";
const EPOCH = 1_754_252_890_000;
const T0 = EPOCH * 1_000;
const B = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s));
const EVENTS: FlashbackEvent[] = [1, 2, 3, 5, 6].map((seq) => {
  const args = [B('SET'), B([0x00, 0xff, seq]), B(`v${seq}`)];
  return {
    node: NODE,
    epoch: EPOCH,
    seq,
    tsUs: T0 + seq * 1_000,
    db: seq % 2,
    client: '127.0.0.1:5000',
    kind: seq === 1 ? 'baseline' : 'command',
    command: 'SET',
    keys: [args[1]!],
    args,
    replay: seq === 1 ? [] : args,
    tx: seq === 6 ? 5 : 0,
  };
});
const BASELINE = baselineToRow({
  node: NODE,
  epoch: EPOCH,
  seq: 1,
  tsUs: T0 + 1_000,
  markerId: 'm1',
  rdbObject: 'n1/1/m1.rdb',
  tailObject: 'n1/1/m1.tail',
  rdbBytes: 100,
  tailBytes: 5,
  keys: 3,
  digest: '00ff',
  source: { server: 'redis', version: '7.0.15', config: { 'proto-max-bulk-len': '536870912' } },
  rdbSha256: 'ab'.repeat(32),
  tailSha256: 'cd'.repeat(32),
});
const BROKEN: BrokenEventRow = {
  node: NODE,
  epoch: EPOCH,
  seq: 5,
  ts_us: T0 + 5_000,
  command: 'SET',
  args: "SET \\x00 it's",
  reason: 'Guru Meditation: aborting',
  found_us: T0 + 9_000,
};

const WINDOW = { epoch: EPOCH, fromSeq: 1, toSeq: 6 };

/** Two checks of one stretch: the newer one (a mismatch) is its state. */
const CHECKS: VerificationRow[] = [T0 + 8_000, T0 + 9_000].map((checked_us, i) => ({
  node: NODE,
  epoch: EPOCH,
  from_seq: 1,
  to_seq: 5,
  from_ts_us: T0 + 1_000,
  to_ts_us: T0 + 5_000,
  result: i === 0 ? 'match' : 'mismatch',
  source_digest: '00ff',
  restored_digest: i === 0 ? '00ff' : '0a0b',
  first_key: i === 0 ? '' : "\\x00it's",
  keys_differing: i,
  detail: i === 0 ? '' : 'value differs',
  events: 4,
  seconds: 0.5,
  checked_us,
}));

/** Every SELECT the code issues, as built by its own functions, over the fixture above. */
function queries(): Record<string, string> {
  return {
    version: versionSql(),
    epochSummary: epochSummarySql(NODE),
    holes: holeSql(NODE, EPOCH),
    baselines: baselinesSql(NODE),
    eventTimes: eventTimesSql(NODE, EPOCH, [2, 5, 99]),
    eventTimesEmpty: eventTimesSql(NODE, EPOCH, []),
    nodes: nodesSql(),
    replay: replaySql(NODE, EPOCH, 1, 5),
    baseline: baselineSql(NODE, EPOCH, 1),
    broken: brokenSql(NODE),
    brokenEvents: brokenEventsSql(NODE, EPOCH, 1, 6),
    columns: `${columnsSql()} AND table = 'baselines' ORDER BY name`,
    partitions: eventPartitionsSql(),
    neededBaselines: neededBaselinesSql(T0 + 10_000),
    partitionDay: partitionDaySql(EPOCH / 1_000),
    eventNodes: eventNodesSql(),
    oldBaselines: oldBaselinesSql({ [NODE]: T0 + 10_000, other: 1 }),
    clusterShards: clusterShardCountSql('flashback'),
    localShard: localShardSql('flashback'),
    localRetentionTables: localRetentionTablesSql(),
    firstSettle: firstSettleSql(NODE, EPOCH, 0, 10),
    groupEnd: groupEndSql(NODE, EPOCH, 5, 5),
    groupEndSingle: groupEndSql(NODE, EPOCH, 0, 3),
    unstatedCommands: unstatedCommandsSql(NODE, EPOCH, 0, 10),
    unstatedXadds: unstatedXaddsSql(NODE, EPOCH, 0, 10),
    fieldTtlCommands: fieldTtlCommandsSql(NODE, EPOCH, 0, 10),
    lastAtOrBefore: lastAtOrBeforeSql(NODE, WINDOW, T0 + 6_000),
    txEnd: txEndSql(NODE, WINDOW, 5),
    nextChange: nextChangeSql(NODE, WINDOW, 1),
    lastAnchor: lastAnchorSql(NODE, WINDOW, 5),
    groupState: groupStateSql(NODE, WINDOW, 5),
    history: historySql({ node: NODE, key: '\\x00\\xff\\x02', since: '2025-08-01T00:00:00Z', limit: 10 }),
    byKey: `SELECT seq, command, args FROM flashback.events WHERE key = ${sqlString('\\x00\\xff\\x02')} ORDER BY seq DESC LIMIT 20`,
    verifications: verificationsSql(NODE),
    digestBaselines: digestBaselinesSql(NODE),
    firstEventOfKeys: firstEventOfKeysSql(NODE, EPOCH, 1, 6, ['\\x00\\xff\\x03', '\\x00\\xff\\x02']),
    inArray: `SELECT count() AS n FROM flashback.events WHERE has(${sqlStringArray(['x', '\\x00\\xff\\x03'])}, key) AND seq >= ${sqlUInt(0)}`,
  };
}

before(async () => {
  server = await testClickHouse();
  store = await openClickHouse(server.url);
  await store.ensureSchema();
  await store.ensureSchema(); // idempotent
  await store.insertEvents(EVENTS.map(eventToRow));
  await store.insertBaselines([BASELINE]);
  await store.insertEpochs([{ node: NODE, epoch: EPOCH, started_us: T0, reason: 'start' }]);
  await store.insertBrokenEvents([BROKEN]);
  await store.client.insert({ table: 'flashback.verifications', values: CHECKS, format: 'JSONEachRow' });

  current = new Session();
  currentVersion = String(chdbRows(current, versionSql())[0]!.version);
  for (const statement of schemaStatements(currentVersion)) current.query(statement);
  for (const statement of schemaStatements(currentVersion)) current.query(statement);
  const insert = (table: string, rows: object[]) =>
    current.query(`INSERT INTO ${table} FORMAT JSONEachRow\n${rows.map((r) => JSON.stringify(r)).join('\n')}`);
  insert('flashback.events', EVENTS.map(eventToRow));
  insert('flashback.baselines', [BASELINE]);
  insert('flashback.epochs', [{ node: NODE, epoch: EPOCH, started_us: T0, reason: 'start' }]);
  insert('flashback.broken_events', [BROKEN]);
  insert('flashback.verifications', CHECKS);
});

after(async () => {
  current?.cleanup();
  await store?.close();
  await server?.stop();
});

test('the DDL is plain on 18.16 and compact on the current release, and both variants are accepted', async () => {
  assert.match(store.version, /^18\.16\./);
  assert.deepEqual(store.features, { lowCardinality: false, codecs: false });
  assert.deepEqual(schemaFeatures(currentVersion), { lowCardinality: true, codecs: true });
  const oldDdl = schemaStatements(store.version).join('\n');
  assert.doesNotMatch(oldDdl, /LowCardinality|CODEC|TTL|DateTime64/);
  const types = await store.query<{ name: string; type: string }>(
    "SELECT name, type FROM system.columns WHERE database = 'flashback' AND table = 'events'",
  );
  assert.deepEqual(Object.fromEntries(types.map((c) => [c.name, c.type])), {
    node: 'String',
    epoch: 'UInt64',
    seq: 'UInt64',
    ts_us: 'UInt64',
    time: 'DateTime',
    db: 'UInt16',
    client: 'String',
    kind: 'String',
    command: 'String',
    key: 'String',
    keys: 'Array(String)',
    args: 'Array(String)',
    replay: 'String',
    tx: 'UInt64',
  });
  const cur = Object.fromEntries(
    chdbRows(
      current,
      "SELECT name, type, compression_codec FROM system.columns WHERE database = 'flashback' AND table = 'events'",
    ).map((c) => [c.name, `${c.type} ${c.compression_codec}`.trim()]),
  );
  assert.equal(cur.node, 'LowCardinality(String)');
  assert.equal(cur.command, 'LowCardinality(String)');
  assert.match(String(cur.seq), /^UInt64 CODEC\(Delta.*ZSTD/);
  assert.match(String(cur.replay), /^String CODEC\(ZSTD/);
  assert.doesNotMatch(
    chdbRows(current, "SELECT engine_full FROM system.tables WHERE database = 'flashback' AND name = 'events'")[0]!
      .engine_full as string,
    /TTL/,
  );
  // The plain variant also runs on a current server (a store created by an old release keeps working).
  // chdb allows one data dir per process, so it goes into a database of its own.
  for (const statement of schemaStatements('18.16.1'))
    current.query(statement.replaceAll('flashback', 'flashback_plain'));
  assert.equal(
    chdbRows(current, "SELECT count() AS n FROM system.tables WHERE database = 'flashback_plain'")[0]!.n,
    11,
  );
  assert.equal(
    chdbRows(
      current,
      "SELECT type FROM system.columns WHERE database = 'flashback_plain' AND table = 'events' AND name = 'node'",
    )[0]!.type,
    'String',
  );
});

test('a store made before a column was added gets it from ensureSchema, and keeps its rows', async () => {
  await store.command('DROP TABLE IF EXISTS flashback.baselines_before');
  await store.command('RENAME TABLE flashback.baselines TO flashback.baselines_before');
  try {
    // The baselines table as the first release made it: no `source`.
    await store.command(
      `CREATE TABLE flashback.baselines (node String, epoch UInt64, seq UInt64, ts_us UInt64, time DateTime, marker String, rdb_object String, tail_object String, rdb_bytes UInt64, tail_bytes UInt64, keys UInt64, digest String) ENGINE = ReplacingMergeTree() PARTITION BY toDate(time) ORDER BY (node, epoch, seq)`,
    );
    const { source: _dropped, rdb_sha256: _rdb, tail_sha256: _tail, ...old } = BASELINE;
    await store.insertBaselines([old]);
    // A restore before the sink has migrated the store reads the baseline without `source`, and no broken events.
    const events = clickHouseEventStore(store, store.client);
    const before = await events.baseline(NODE, EPOCH, 1);
    assert.deepEqual([before.digest, before.source, before.rdbSha256], ['00ff', undefined, '']);
    await store.command('RENAME TABLE flashback.broken_events TO flashback.broken_events_before');
    try {
      assert.deepEqual(await events.brokenEvents(NODE, EPOCH, 0, 10), []);
    } finally {
      await store.command('RENAME TABLE flashback.broken_events_before TO flashback.broken_events');
    }
    await store.ensureSchema();
    const rows = await store.query<{ source: string; digest: string }>(
      `SELECT source, digest, rdb_sha256, tail_sha256 FROM flashback.baselines WHERE node = ${sqlString(NODE)}`,
    );
    assert.deepEqual(rows, [{ source: '', digest: '00ff', rdb_sha256: '', tail_sha256: '' }]);
  } finally {
    await store.command('DROP TABLE flashback.baselines');
    await store.command('RENAME TABLE flashback.baselines_before TO flashback.baselines');
  }
});

test('every query the code issues runs on 18.16 and on the current release with the same answers', async () => {
  for (const [name, sql] of Object.entries(queries())) {
    const old = await store.query(sql);
    const cur = chdbRows(current, sql);
    if (name === 'version') {
      assert.match(String(old[0]!.version), /^18\.16\./);
      assert.match(String(cur[0]!.version), /^\d{2}\./);
      continue;
    }
    // Only eventTimes has no ORDER BY (its caller maps rows by seq): compare it as a set.
    const norm = (rows: unknown[]) => (name === 'eventTimes' ? rows.map((r) => JSON.stringify(r)).sort() : rows);
    assert.deepEqual(norm(cur), norm(old), `${name}: ${sql}`);
    const empty = ['eventTimesEmpty', 'unstatedXadds', 'groupState', 'localShard', 'localRetentionTables'];
    assert.ok(old.length > 0 || empty.includes(name), `${name} returned rows`);
  }
  const q = queries();
  assert.deepEqual(await store.query(q.holes!), [{ seq: 3 }, { seq: 6 }]);
  assert.deepEqual(await store.query(q.brokenEvents!), [BROKEN]);
  assert.deepEqual((await store.query<{ source: string }>(q.baseline!))[0]!.source, BASELINE.source);
  assert.deepEqual(
    (await store.query<{ rdb_sha256: string; tail_sha256: string }>(q.baseline!)).map((r) => [
      r.rdb_sha256,
      r.tail_sha256,
    ]),
    [[BASELINE.rdb_sha256, BASELINE.tail_sha256]],
  );
  assert.deepEqual(await store.query(q.partitions!), [{ partition: '2025-08-03' }]);
  assert.deepEqual(
    await store.query(q.partitionDay!),
    [{ day: '2025-08-03' }],
    'the day retention compares partitions with',
  );
  assert.deepEqual(await store.query(q.byKey!), [{ seq: 2, command: 'SET', args: ['SET', '\\x00\\xff\\x02', 'v2'] }]);
  // A --to cutoff's queries (core/store/cutoff.ts, cutoff-precision.ts): seq 6 ends tx 5; the marker is no change.
  assert.deepEqual(await store.query(q.lastAtOrBefore!), [{ last_seq: 6, last_ts: T0 + 6_000, last_tx: 5 }]);
  assert.deepEqual(await store.query(q.txEnd!), [{ tx_end: 6 }]);
  assert.deepEqual(await store.query(q.nextChange!), [
    { seq: 2, ts_us: T0 + 2_000, client: '127.0.0.1:5000', command: 'SET', tx: 0 },
  ]);
  assert.deepEqual(await store.query(q.lastAnchor!), [{ seq: 1, ts_us: T0 + 1_000 }]);
  // The retention statements that change data, on both.
  assert.deepEqual(await store.query(q.groupEnd!), [{ s: 6, at: T0 + 6_000 }]);
  assert.deepEqual(await store.query(q.unstatedCommands!), [{ command: 'SET', n: 4 }]);
  // The newest check of a stretch is its state; the first event of differing keys names the earliest.
  assert.deepEqual(await store.query(q.verifications!), [
    {
      epoch: EPOCH,
      from_seq: 1,
      to_seq: 5,
      f_ts: T0 + 1_000,
      t_ts: T0 + 5_000,
      res: 'mismatch',
      fk: "\\x00it's",
      kd: 1,
      det: 'value differs',
      at_us: T0 + 9_000,
    },
  ]);
  assert.deepEqual(await store.query(q.digestBaselines!), [{ epoch: EPOCH, seq: 1, dg: '00ff' }]);
  assert.deepEqual(await store.query(q.firstEventOfKeys!), [{ key: '\\x00\\xff\\x02', first_seq: 2 }]);
  // Retention's layout check: one server is no Distributed table and no cluster.
  assert.deepEqual(await store.query(q.clusterShards!), [{ shards: 0 }]);
  for (const engine of [await store.query(eventsEngineSql()), chdbRows(current, eventsEngineSql())])
    assert.equal(engine[0]!.engine, 'ReplacingMergeTree');
  for (const sql of [
    deleteBaselinesSql([
      { node: 'none', epoch: 1, seq: 1 },
      { node: "it's", epoch: 2, seq: 3 },
    ]),
    dropEventPartitionSql('2001-01-01'),
  ]) {
    await store.command(sql);
    current.query(sql);
  }
});

test('tricky strings round-trip byte for byte through 18.16 and the current release', async () => {
  const tricky = [
    '',
    "it's",
    '\\',
    "\\'",
    "'); DROP TABLE flashback.events; --",
    'a\u0000b',
    '\n\r\t\b\f\u0007\u001b\u007f',
    '\\x41',
    'é 中文 🎉',
    Array.from({ length: 128 }, (_, i) => String.fromCharCode(i)).join(''),
  ];
  const sql = `SELECT ${tricky.map((s, i) => `hex(${sqlString(s)}) AS h${i}`).join(', ')}, toString(${sqlUInt(2n ** 64n - 1n)}) AS big`;
  const expected: Record<string, unknown> = Object.fromEntries(
    tricky.map((s, i) => [`h${i}`, Buffer.from(s, 'utf8').toString('hex').toUpperCase()]),
  );
  const old = await store.readOnlySql(sql);
  assert.deepEqual(Object.fromEntries(old.columns.map((c, i) => [c.name, old.rows[0]![i]])), {
    ...expected,
    big: '18446744073709551615',
  });
  const cur = chdbRows(current, sql)[0]!;
  assert.deepEqual(cur, { ...expected, big: '18446744073709551615' });
});

test('readOnlySql refuses writes before they reach the server, and readonly=1 refuses what slips through', async () => {
  const refused = (err: unknown) =>
    err instanceof InputError && err.code === ErrorCode.ReadOnlySql && /only read-only queries/.test(err.message);
  for (const sql of [
    'DROP TABLE flashback.events',
    'INSERT INTO flashback.epochs VALUES (1)',
    'SELECT 1; DROP TABLE flashback.events',
    'ALTER TABLE flashback.events DROP PARTITION 1',
    '  /* c */ TRUNCATE TABLE flashback.events',
    '',
    '-- only a comment',
  ]) {
    assert.throws(() => checkReadOnlySql(sql), refused, sql);
    await assert.rejects(store.readOnlySql(sql), refused, sql);
  }
  assert.equal(checkReadOnlySql("SELECT ';' AS s; -- trailing"), "SELECT ';' AS s");
  assert.equal(checkReadOnlySql('(SELECT 1) UNION ALL (SELECT 2)'), '(SELECT 1) UNION ALL (SELECT 2)');
  assert.equal(
    (await store.query<{ n: number }>('SELECT count() AS n FROM flashback.events'))[0]!.n,
    EVENTS.length,
    'nothing was dropped',
  );

  // The server guard: a statement that passes the check but tries to change a setting, and a write sent with our
  // settings directly.
  await assert.rejects(store.readOnlySql('SELECT 1 SETTINGS readonly = 0'), refused);
  await assert.rejects(
    store.client
      .command({
        query: 'CREATE TABLE flashback.sneaky (a UInt8) ENGINE = Memory',
        clickhouse_settings: readOnlySettings(10, 5),
      })
      .catch((err: unknown) => {
        throw translateClickHouseError(err);
      }),
    refused,
  );
  assert.equal((await store.query('EXISTS TABLE flashback.sneaky'))[0]!.result, 0);
  // Limits hold and come back as input errors.
  await assert.rejects(
    store.readOnlySql('SELECT number FROM system.numbers LIMIT 100', { maxRows: 10 }),
    (err: unknown) => err instanceof InputError && err.code === ErrorCode.BadInput && /too large/.test(err.message),
  );
  await assert.rejects(
    store.readOnlySql('SELECT )'),
    (err: unknown) => err instanceof InputError && err.code === ErrorCode.BadInput && /Syntax error/.test(err.message),
  );
  const ok = await store.readOnlySql(
    `SELECT seq, keys FROM flashback.events WHERE node = ${sqlString(NODE)} ORDER BY seq LIMIT 2`,
  );
  assert.deepEqual(ok, {
    columns: [
      { name: 'seq', type: 'UInt64' },
      { name: 'keys', type: 'Array(String)' },
    ],
    rows: [
      ['1', ['\\x00\\xff\\x01']],
      ['2', ['\\x00\\xff\\x02']],
    ],
  });
});
