// Baseline integrity (docs/security.md): a restore checks each baseline object against the SHA-256 its node's agent
// published (the RDB as it streams to disk, the tail whole, an object refused before its end explained), on a real
// NATS object store; and the columns that carry the hashes on ClickHouse 18.16 and a current release (chdb): added to
// an old single-server store by ensureSchema, named for the operator on the sharded layout, read back by restores
// ('' from a store not migrated yet, which skips the check).
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Session } from 'chdb';
import type { BaselineRecord } from '../core/bus/baseline.js';
import { connectNats, ensureBaselineStore, type NatsConnection, type ObjectStore } from '../core/bus/nats.js';
import { ConfigError, ErrorCode, FlashbackError, ProtocolError } from '../core/errors.js';
import { startClickHouseShards, type ClickHouseShards } from '../core/servers/clickhouse-shards.js';
import type { NatsServerProcess } from '../core/servers/nats-server.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { baselineSql, clickHouseEventStore } from '../core/store/event-store.js';
import { addedColumnSql, ADDED_COLUMNS, columnsSql, distributedTablesSql } from '../core/store/schema.js';
import { shardedSchemaStatements } from '../core/store/sharded-schema.js';
import { writeBaseRdb } from '../restorer/aof-dir.js';
import { mismatchOr, objectBytes, objectStream, type ObjectCheck } from '../restorer/baseline-objects.js';
import { baselineToRow } from '../sink/rows.js';
import { testNats } from './helpers/servers.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const isMismatch = (name: string, part: string) => (e: unknown) => {
  assert.ok(e instanceof FlashbackError && e.code === ErrorCode.BaselineMismatch, String(e));
  for (const s of [
    `baseline ${part} object "${name}" of node "n1"`,
    'does not match the record its own agent published',
  ])
    assert.ok(e.message.includes(s), `"${s}" in ${e.message}`);
  return true;
};

let nats: NatsServerProcess;
let nc: NatsConnection;
let objects: ObjectStore;
let shards: ClickHouseShards;
let store: Store;
let dir: string;

before(async () => {
  [nats, shards] = await Promise.all([testNats(), startClickHouseShards({ shards: 1 })]);
  nc = await connectNats({ url: nats.url, name: 'baseline-integrity-test' });
  objects = await ensureBaselineStore(nc);
  store = await openClickHouse(shards.servers[0]!.url);
  dir = await mkdtemp(path.join(os.tmpdir(), 'fb-integrity-'));
});

after(async () => {
  await store?.close();
  await nc?.close();
  await nats?.stop();
  await shards?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function check(part: 'RDB' | 'tail', sha: string): ObjectCheck {
  return { node: 'n1', epoch: 1, seq: 5, tsUs: 1_785_788_890_500_000, part, sha256: sha };
}

describe('a restore checks baseline objects against their record', () => {
  test('an RDB that matches is written whole; one that does not ends in BASELINE_MISMATCH and leaves no file', async () => {
    const name = `integrity-${randomUUID()}/1/m.rdb`;
    // More than one object-store chunk, so the hash runs over a stream.
    const rdb = Buffer.concat([Buffer.from('REDIS0011'), randomBytes(300_000)]);
    await objects.putBlob({ name }, rdb);

    const good = path.join(dir, 'good.rdb');
    const written = await writeBaseRdb(good, await objectStream(objects, name, check('RDB', sha256(rdb))));
    assert.equal(written.bytes, rdb.length);
    assert.deepEqual(await readFile(good), rdb);

    const bad = path.join(dir, 'bad.rdb');
    const other = sha256(Buffer.from('what the agent stored'));
    await assert.rejects(writeBaseRdb(bad, await objectStream(objects, name, check('RDB', other))), (e: unknown) => {
      isMismatch(name, 'RDB')(e);
      assert.ok((e as Error).message.includes(`SHA-256 ${sha256(rdb)}, recorded ${other}`), (e as Error).message);
      return true;
    });
    assert.equal(existsSync(bad), false, 'no partial base RDB is left');

    // A record of an older agent has no hash: the object is taken as it is.
    const unchecked = path.join(dir, 'unchecked.rdb');
    await writeBaseRdb(unchecked, await objectStream(objects, name, check('RDB', '')));
    assert.deepEqual(await readFile(unchecked), rdb);
  });

  test('a tail that does not match is refused', async () => {
    const name = `integrity-${randomUUID()}/1/m.tail`;
    const tail = Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n');
    await objects.putBlob({ name }, tail);
    assert.deepEqual(await objectBytes(objects, name, check('tail', sha256(tail))), tail);
    await assert.rejects(objectBytes(objects, name, check('tail', sha256(Buffer.alloc(0)))), isMismatch(name, 'tail'));
    assert.deepEqual(await objectBytes(objects, name, check('tail', '')), tail);
  });

  test('an RDB refused before its end is a mismatch when it does not match the record, else its own error', async () => {
    const name = `integrity-${randomUUID()}/1/m.rdb`;
    const junk = Buffer.from('*1\r\n$4\r\nPING\r\n not an RDB');
    await objects.putBlob({ name }, junk);
    const recorded = check('RDB', sha256(Buffer.from('REDIS0011 the real one')));
    // The header check refuses it at its first bytes, before the hash has seen the end.
    const refused = await writeBaseRdb(path.join(dir, 'junk.rdb'), await objectStream(objects, name)).then(
      () => assert.fail('a non-RDB is refused'),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof ProtocolError && /is not an RDB/.test(refused.message), String(refused));
    const explained = await mismatchOr(refused, objects, name, recorded);
    isMismatch(name, 'RDB')(explained);
    assert.equal((explained as Error).cause, refused);
    // The object is what its record says: the refusal stands as it is.
    assert.equal(await mismatchOr(refused, objects, name, check('RDB', sha256(junk))), refused);
    assert.equal(await mismatchOr(refused, objects, name, check('RDB', '')), refused);
    // A failure that is not a refusal of the bytes (a full disk) is reported as it is, without reading the object.
    const full = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    assert.equal(await mismatchOr(full, objects, name, recorded), full);
    // As restore() runs it: whichever of the two errors comes first, a mismatch is what it reports.
    const reported = await writeBaseRdb(path.join(dir, 'junk.rdb'), await objectStream(objects, name, recorded)).then(
      () => assert.fail('a non-RDB is refused'),
      (e: unknown) => mismatchOr(e, objects, name, recorded),
    );
    isMismatch(name, 'RDB')(reported);
  });
});

const RECORD: BaselineRecord = {
  node: 'n1',
  epoch: 1_785_788_000_000,
  seq: 42,
  tsUs: 1_785_788_890_500_000,
  markerId: 'm-1',
  rdbObject: 'n1/1785788000000/m-1.rdb',
  tailObject: 'n1/1785788000000/m-1.tail',
  rdbBytes: 1234,
  tailBytes: 0,
  keys: 9,
  digest: '',
  rdbSha256: 'ab'.repeat(32),
  tailSha256: sha256(Buffer.alloc(0)),
};

/** The baselines table of the release before the hashes (with `source`). */
const OLD_BASELINES =
  'CREATE TABLE flashback.baselines (node String, epoch UInt64, seq UInt64, ts_us UInt64, time DateTime, marker String, rdb_object String, tail_object String, rdb_bytes UInt64, tail_bytes UInt64, keys UInt64, digest String, source String) ENGINE = ReplacingMergeTree() PARTITION BY toDate(time) ORDER BY (node, epoch, seq)';

const HASHES = ['rdb_sha256', 'tail_sha256'];

describe('the hash columns', () => {
  test('sharded layout without them (18.16): ensureSchema names the ALTERs and changes nothing; run as named, hashes are stored and read', async () => {
    const events = clickHouseEventStore(store, store.client);
    for (const q of shardedSchemaStatements(store.version, shards.cluster)) await store.command(q);
    // The layout as the DDL before the hashes made it.
    for (const t of ['baselines', 'baselines_local'])
      for (const c of HASHES) await store.command(`ALTER TABLE flashback.${t} DROP COLUMN ${c}`);
    const columns = async () =>
      (await store.query<{ table: string; name: string }>(columnsSql()))
        .filter((c) => HASHES.includes(c.name))
        .map((c) => `${c.table}.${c.name}`)
        .sort();
    assert.deepEqual(await store.query(distributedTablesSql()), [
      { name: 'baselines' },
      { name: 'broken_events' },
      { name: 'epochs' },
      { name: 'event_marks' },
      { name: 'event_rates' },
      { name: 'event_seqs' },
      { name: 'events' },
      { name: 'verifications' },
    ]);

    const statements = [
      "ALTER TABLE flashback.baselines_local ADD COLUMN rdb_sha256 String DEFAULT ''",
      "ALTER TABLE flashback.baselines_local ADD COLUMN tail_sha256 String DEFAULT ''",
      "ALTER TABLE flashback.baselines ADD COLUMN rdb_sha256 String DEFAULT ''",
      "ALTER TABLE flashback.baselines ADD COLUMN tail_sha256 String DEFAULT ''",
    ];
    await assert.rejects(store.ensureSchema(), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, /sharded layout \(Distributed tables\) without flashback\.baselines\.rdb_sha256, /);
      for (const s of statements) assert.ok(e.message.includes(s), `${s} in ${e.message}`);
      assert.ok(e.message.indexOf(statements[1]!) < e.message.indexOf(statements[2]!), 'local tables first');
      return true;
    });
    assert.deepEqual(await columns(), [], 'ensureSchema added nothing');

    // A restore meanwhile reads baselines without hashes (and so checks nothing).
    await store.insertBaselines([{ ...baselineToRow(RECORD), rdb_sha256: undefined, tail_sha256: undefined }]);
    const unhashed = await events.baseline(RECORD.node, RECORD.epoch, RECORD.seq);
    assert.deepEqual([unhashed.rdbSha256, unhashed.tailSha256, unhashed.rdbObject], ['', '', RECORD.rdbObject]);

    for (const s of statements) await store.command(s);
    await store.ensureSchema();
    assert.deepEqual(await columns(), [
      'baselines.rdb_sha256',
      'baselines.tail_sha256',
      'baselines_local.rdb_sha256',
      'baselines_local.tail_sha256',
    ]);
    const next = { ...RECORD, seq: RECORD.seq + 1 };
    await store.insertBaselines([baselineToRow(next)]);
    const hashed = await events.baseline(next.node, next.epoch, next.seq);
    assert.deepEqual([hashed.rdbSha256, hashed.tailSha256], [RECORD.rdbSha256, RECORD.tailSha256]);
    assert.deepEqual(
      (await events.baseline(RECORD.node, RECORD.epoch, RECORD.seq)).rdbSha256,
      '',
      'a row from before the columns reads as unhashed',
    );
  });

  test('single server (18.16): a store from before the hashes gets them from ensureSchema; a restore before reads none', async () => {
    await store.command('DROP DATABASE IF EXISTS flashback');
    await store.command('CREATE DATABASE flashback');
    await store.command(OLD_BASELINES);
    await store.insertBaselines([{ ...baselineToRow(RECORD), rdb_sha256: undefined, tail_sha256: undefined }]);
    const events = clickHouseEventStore(store, store.client);
    const before = await events.baseline(RECORD.node, RECORD.epoch, RECORD.seq);
    assert.deepEqual([before.rdbSha256, before.tailSha256, before.source], ['', '', undefined]);

    await store.ensureSchema();
    await store.ensureSchema(); // idempotent
    const have = (await store.query<{ table: string; name: string }>(columnsSql())).map((c) => `${c.table}.${c.name}`);
    for (const c of ADDED_COLUMNS) assert.ok(have.includes(`${c.table}.${c.column}`), `${c.table}.${c.column}`);
    const old = await events.baseline(RECORD.node, RECORD.epoch, RECORD.seq);
    assert.deepEqual([old.rdbSha256, old.tailSha256], ['', '']);
    const next = { ...RECORD, seq: RECORD.seq + 1 };
    await store.insertBaselines([baselineToRow(next)]);
    const hashed = await events.baseline(next.node, next.epoch, next.seq);
    assert.deepEqual([hashed.rdbSha256, hashed.tailSha256], [RECORD.rdbSha256, RECORD.tailSha256]);
  });

  test('current release (chdb): the lookups and ALTERs ensureSchema issues, and the restore’s read', () => {
    const session = new Session();
    try {
      const rows = (sql: string) => {
        const out = session.query(sql, 'JSONEachRow').trim();
        return out === '' ? [] : out.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      };
      session.query('CREATE DATABASE IF NOT EXISTS flashback');
      session.query(OLD_BASELINES);
      assert.deepEqual(rows(distributedTablesSql()), []);
      const have = new Set(rows(columnsSql()).map((c) => `${String(c.table)}.${String(c.name)}`));
      for (const c of ADDED_COLUMNS) if (!have.has(`${c.table}.${c.column}`)) session.query(addedColumnSql(c.table, c));
      session.query(`INSERT INTO flashback.baselines FORMAT JSONEachRow\n${JSON.stringify(baselineToRow(RECORD))}`);
      assert.deepEqual(
        rows(baselineSql(RECORD.node, RECORD.epoch, RECORD.seq)).map((r) => [r.rdb_sha256, r.tail_sha256]),
        [[RECORD.rdbSha256, RECORD.tailSha256]],
      );
    } finally {
      session.cleanup();
    }
  });
});
