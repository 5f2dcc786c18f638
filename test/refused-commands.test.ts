// Commands the source refused (MONITOR shows them like any other) never change a restore: each member of the class
// Redis checks only for ordinary clients, then normal writes, restored digest-equal to the source; and an event a
// restore server cannot load is named, kept, listed and skipped afterwards.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ObjectStore } from '@nats-io/obj';
import { Redis } from 'ioredis';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { FlashbackError } from '../core/errors.js';
import { encodeCommand } from '../core/redis/resp.js';
import { findExecutable, ServerStartError, stopPid } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { restoreWindows } from '../core/store/windows.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../restorer/index.js';
import { RestoreLoadError } from '../restorer/load-failure.js';
import { withDumpChecksum } from '../restorer/dump-payload.js';
import { TargetNotEmptyError } from '../restorer/materialize.js';
import {
  markAndWait,
  markStoredEvent,
  startSource,
  startStack,
  waitFor,
  waitForWindowSeq,
  type Source,
  type Stack,
} from './helpers/stack.js';
import { cli } from './helpers/cli.js';
import { testRedis } from './helpers/servers.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;
const spawned: { pid?: number }[] = [];

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'refused-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-refused-'));
});
after(async () => {
  for (const s of spawned) if (s.pid) await stopPid(s.pid);
  await nc?.close();
  await stack?.close();
  await rm(instancesDir, { recursive: true, force: true });
});

// Restores here load with Debian's redis-server only: what they check is how 7.0 refuses and fails (a newer restore
// server found on this machine would run a command 7.0 does not know).
const deps = () => ({
  events: clickHouseEventStore(stack.store, stack.store.client),
  objects,
  instancesDir,
  redisBins: [findExecutable('redis-server')!],
  discoverServers: false,
});

async function doRestore(node: string, req: Omit<RestoreRequest, 'node' | 'spawn'>) {
  const report = await restore(deps(), { node, spawn: {}, ...req } as RestoreRequest);
  spawned.push(report);
  return report;
}

/** Sends one command with exact bytes and returns its reply or its error. */
function send(r: Redis, ...argv: (string | number | Buffer)[]): Promise<unknown> {
  return r.callBuffer(String(argv[0]), ...argv.slice(1)).catch((err: unknown) => err);
}

/** Writes a marker and waits until it and every event before it are stored; returns its seq. */
const markStored = (src: Source, r: Redis, name: string) => markAndWait(stack, src, r, name);

/**
 * markStored, and waits until a window reaches the marker: it is a transaction, and a window ends there only once an
 * event after it (the idle heartbeat) is stored.
 */
async function markRestorable(src: Source, r: Redis, name: string): Promise<number> {
  const marker = await markStoredEvent(stack, src, r, name);
  await waitForWindowSeq(stack, src.node, marker.epoch, marker.seq);
  return marker.seq;
}

/** Makes the stored event that wrote `key` replay as `argv` (a forged history); returns its seq. */
async function forge(node: string, key: string, argv: (string | Buffer)[]): Promise<number> {
  const [row] = await stack.store.query<Record<string, string | number>>(
    `SELECT * FROM flashback.events WHERE node = ${sqlString(node)} AND key = ${sqlString(key)} LIMIT 1`,
  );
  assert.ok(row, `the event of ${key} is stored`);
  const replay = encodeCommand(argv).toString('base64');
  await stack.store.insertEvents([{ ...row, replay } as never]);
  await merged(`flashback.events`, `node = ${sqlString(node)} AND seq = ${Number(row.seq)}`, replay);
  return Number(row.seq);
}

/**
 * Merges `table` until the rows `where` selects are one, with `replay` or `source` as given: OPTIMIZE … FINAL does
 * nothing on 18.16 when a merge (of the sink's inserts) is already running.
 */
async function merged(table: string, where: string, value: string): Promise<void> {
  const column = table.endsWith('events') ? 'replay' : 'source';
  await waitFor(`one row of ${table} where ${where}`, async () => {
    await stack.store.command(`OPTIMIZE TABLE ${table} FINAL`);
    const rows = await stack.store.query<{ v: string }>(`SELECT ${column} AS v FROM ${table} WHERE ${where}`);
    return rows.length === 1 && rows[0]!.v === value ? true : undefined;
  });
}

/** A restore that must fail: its error, the kept files removed. */
async function failedRestore(node: string, req: Omit<RestoreRequest, 'node'>): Promise<unknown> {
  const err = await restore(deps(), { node, ...req } as RestoreRequest).then(
    (report) => {
      spawned.push(report); // stopped in after()
      assert.fail('the restore succeeded');
    },
    (e: unknown) => e,
  );
  if (err instanceof RestoreLoadError) await rm(err.dir, { recursive: true, force: true });
  return err;
}

const brokenSeqs = async (node: string) =>
  (await restoreWindows(stack.store, node)).flatMap((w) => w.broken.map((b) => b.seq));

const digestOf = async (r: Redis) => String(await r.call('DEBUG', 'DIGEST'));

/** Asserts that `reply` is the error the source gave, so the test knows the command really was refused. */
function refused(reply: unknown, pattern: RegExp, what: string): void {
  assert.ok(reply instanceof Error, `${what} was not refused by the source (reply ${String(reply)})`);
  assert.match(reply.message, pattern, what);
}

test('refused SETRANGE (both offsets), SETBIT, BITFIELD, XADD LIMIT, in MULTI and scripts, and an XTRIM the loader would not cap: restores after them are digest-equal', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('a', '1');
    await r.hset('h', 'f', 'v');
    await r.set('K', 'abc');
    const tooBig = /string exceeds maximum allowed size/;
    const badOffset = /bit offset is not an integer or out of range/;
    refused(await send(r, 'SETRANGE', 'K', '9223372036854775807', 'A'), tooBig, 'SETRANGE at 2^63-1');
    refused(await send(r, 'SETRANGE', 'fresh', '536870911', 'xx'), tooBig, 'SETRANGE past 512 MB on a new key');
    refused(await send(r, 'SETRANGE', 'K', '536870911', 'xx'), tooBig, 'SETRANGE past 512 MB on an existing key');
    refused(await send(r, 'SETBIT', 'B', '4294967296', '1'), badOffset, 'SETBIT at 2^32');
    refused(await send(r, 'BITFIELD', 'B', 'SET', 'u8', '4294967296', '1'), badOffset, 'BITFIELD SET at bit 2^32');
    refused(await send(r, 'BITFIELD', 'B', 'INCRBY', 'u8', '#536870912', '1'), badOffset, 'BITFIELD INCRBY at #2^29');
    refused(
      await send(r, 'XADD', 'st', 'MAXLEN', '10', 'LIMIT', '5', '1-1', 'f', 'v'),
      /LIMIT cannot be used without/,
      'XADD LIMIT without ~',
    );
    refused(
      await send(r, 'XTRIM', 'st', 'MAXLEN', '10', 'LIMIT', '5'),
      /LIMIT cannot be used without/,
      'XTRIM LIMIT without ~',
    );
    const tx = (await r.multi().call('SETRANGE', 'K', '9223372036854775807', 'A').set('in-multi', '1').exec()) ?? [];
    refused(tx[0]?.[0], tooBig, 'SETRANGE inside MULTI');
    assert.equal(tx[1]?.[1], 'OK');
    const script =
      "redis.pcall('SETBIT', KEYS[1], '4294967296', '1') redis.pcall('SETRANGE', KEYS[1], '9223372036854775807', 'A') return redis.call('SET', KEYS[2], 'x')";
    assert.equal(await r.eval(script, 2, 'B', 'in-script'), 'OK');
    // Approximate trimming: a client's XTRIM removes at most LIMIT (default 100 × 100) entries, a loading server all.
    const p = r.pipeline();
    for (let i = 1; i <= 30_000; i++) p.xadd('trim', `${i}-1`, 'f', 'v');
    await p.exec();
    assert.equal(await r.xtrim('trim', 'MAXLEN', '~', 0), 10_000);
    const beforeNormal = await markStored(src, r, 'refused');
    const refusedDigest = await digestOf(r);

    await r.set('b', '2');
    await r.setrange('K', 5, 'Z');
    await r.setbit('B', 100, 1);
    await r.call('BITFIELD', 'B', 'SET', 'u8', '#3', '7');
    await r.append('K', 'tail');
    await r.xadd('st', 'MAXLEN', '~', '10', 'LIMIT', '5', '1-2', 'f', 'v');
    const last = await markStored(src, r, 'normal');
    const finalDigest = await digestOf(r);

    const atRefused = await doRestore(src.node, { toSeq: beforeNormal });
    assert.equal(atRefused.digest, refusedDigest, 'restored just after the refused commands');
    const atEnd = await doRestore(src.node, { toSeq: last });
    assert.equal(atEnd.digest, finalDigest, 'restored after the normal writes that followed');
    assert.deepEqual(atEnd.warnings, []);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('with a small proto-max-bulk-len at the source, a refused APPEND, SETRANGE and SETBIT stay refused in the restore', async () => {
  const src = await startSource(stack, ['--proto-max-bulk-len', '1mb']);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const limit = 1024 * 1024;
    await r.set('big', Buffer.alloc(limit - 100, 0x61));
    refused(
      await send(r, 'APPEND', 'big', Buffer.alloc(200, 0x62)),
      /string exceeds maximum allowed size/,
      'APPEND past the limit',
    );
    refused(
      await send(r, 'SETRANGE', 'big', String(limit - 5), '0123456789'),
      /string exceeds maximum allowed size/,
      'SETRANGE past the limit',
    );
    refused(
      await send(r, 'SETBIT', 'bits', String(limit * 8), '1'),
      /bit offset is not an integer or out of range/,
      'SETBIT past the limit',
    );
    await r.append('big', 'ok'); // within the limit: must be replayed
    await r.setbit('bits', limit * 8 - 1, 1);
    const last = await markStored(src, r, 'end');
    const sourceDigest = await digestOf(r);
    const report = await doRestore(src.node, { toSeq: last });
    assert.equal(report.digest, sourceDigest);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test("the source's stream-node-max-entries and -bytes reach the restore server: an approximate XADD trim keeps what the source kept", async () => {
  const src = await startSource(stack, ['--stream-node-max-entries', '7', '--stream-node-max-bytes', '2048']);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const p = r.pipeline();
    for (let i = 1; i <= 1000; i++) p.xadd('s', `${i}-1`, 'f', 'v');
    await p.exec();
    // Whole nodes go while 500 entries stay: 71 nodes of 7 → 504 left; a restore server making nodes of 100 (the
    // default) would keep 501. (An XTRIM gets the stream's state captured after it; an XADD … ~ is replayed as is.)
    await r.xadd('s', 'MAXLEN', '~', '500', '1001-1', 'f', 'v');
    assert.equal(await r.xlen('s'), 504);
    const last = await markRestorable(src, r, 'trimmed');
    const sourceDigest = await digestOf(r);
    const report = await doRestore(src.node, { toSeq: last });
    assert.deepEqual(report.warnings, []);
    assert.equal(report.digest, sourceDigest);
    const restored = new Redis(report.url!);
    try {
      assert.equal(await restored.xlen('s'), 504);
      // CONFIG GET with a pattern answers in hash-table order.
      const pairs = (await restored.config('GET', 'stream-node-max-*')) as string[];
      assert.deepEqual(Object.fromEntries([0, 2].map((i) => [pairs[i], pairs[i + 1]])), {
        'stream-node-max-entries': '7',
        'stream-node-max-bytes': '2048',
      });
    } finally {
      restored.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('an event a restore server cannot load is named with its seq, its files kept, listed by windows, and skipped with a warning afterwards', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('before', '1');
    await r.set('victim', 'v');
    await r.set('after', '1');
    const last = await markStored(src, r, 'end');
    // Forge the history: the event of `SET victim v` now replays as a command that crashes a loading server.
    const seq = await forge(src.node, 'victim', ['DEBUG', 'SEGFAULT']);

    const err = await restore(deps(), { node: src.node, toSeq: last, spawn: {} }).then(
      () => assert.fail('the restore loaded a crashing event'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RestoreLoadError, String(err));
    assert.equal(err.code, 'BROKEN_EVENT');
    assert.equal(err.event?.seq, seq);
    assert.equal(err.event?.command, 'DEBUG');
    assert.match(err.message, new RegExp(`event seq ${seq} of epoch`));
    assert.match(err.message, new RegExp(`--before-seq ${seq}`));
    assert.match(err.message, /crashed by signal/);
    assert.ok(existsSync(path.join(err.dir, 'redis.log')), `the failed restore's files are kept in ${err.dir}`);
    await rm(err.dir, { recursive: true, force: true });

    const windows = await restoreWindows(stack.store, src.node);
    const broken = windows.flatMap((w) => w.broken);
    assert.deepEqual(
      broken.map((b) => [b.seq, b.command]),
      [[seq, 'DEBUG']],
    );

    const justBefore = await doRestore(src.node, { beforeSeq: seq });
    assert.deepEqual(justBefore.warnings, []);
    const skipped = await doRestore(src.node, { toSeq: last });
    assert.equal(skipped.warnings.length, 1);
    assert.match(skipped.warnings[0]!, new RegExp(`event seq ${seq} .* was skipped`));
    const restored = new Redis(skipped.url!);
    try {
      assert.deepEqual(
        [await restored.get('before'), await restored.get('victim'), await restored.get('after')],
        ['1', null, '1'],
      );
    } finally {
      restored.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('a target URL with a password shows it nowhere: not in the not-empty error, nor in the report', async () => {
  await using target = await testRedis();
  const admin = new Redis(target.url);
  await admin.set('occupied', '1');
  // Set after start: the launcher's readiness probe does not authenticate.
  await admin.config('SET', 'requirepass', 's3cret-pw');
  admin.disconnect();
  const url = `redis://:s3cret-pw@${target.host}:${target.port}`;
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('k', 'v');
    const last = await markRestorable(src, r, 'end');
    const err = await restore(deps(), { node: src.node, toSeq: last, target: url }).then(
      () => assert.fail('a non-empty target was written'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TargetNotEmptyError, String(err));
    assert.equal(
      err.message,
      `target redis://:***@${target.host}:${target.port}/0 is not empty (1 keys); restore into an empty instance, or add --flush to empty it first`,
    );
    const report = await restore(deps(), { node: src.node, toSeq: last, target: url, flush: true });
    assert.equal(report.url, `redis://:***@${target.host}:${target.port}/0`);
    assert.doesNotMatch(JSON.stringify(report), /s3cret/);
    const check = new Redis(url);
    try {
      assert.equal(await check.get('k'), 'v');
    } finally {
      check.disconnect();
    }
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('the event named is where the load stopped: of two sharing the 128 bytes a crash report shows, the later; a repeat of a recorded one, itself', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('harmless', '1');
    const p = r.pipeline();
    for (let i = 0; i < 1100; i++) p.set(`fill:${i}`, 'v');
    await p.exec();
    await r.set('crashing', '1');
    await r.set('repeat1', '1');
    await r.set('repeat2', '1');
    const last = await markRestorable(src, r, 'end');
    // A script that raises an error crashes a loading 7.0.15 (the report shows EVAL and the script's first 128 bytes);
    // one that returns does not.
    const pad = `-- ${'p'.repeat(140)}\n`;
    const harmless = await forge(src.node, 'harmless', ['EVAL', `${pad}return 1`, '0']);
    const crashing = await forge(src.node, 'crashing', ['EVAL', `${pad}return redis.call('INCR', 'a', 'x')`, '0']);
    const repeat1 = await forge(src.node, 'repeat1', ['DEBUG', 'SEGFAULT']);
    const repeat2 = await forge(src.node, 'repeat2', ['DEBUG', 'SEGFAULT']);

    const first = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(first instanceof RestoreLoadError, String(first));
    assert.equal(first.event?.seq, crashing, `not seq ${harmless}, loaded 1100 commands before the crash`);
    assert.equal(first.code, 'BROKEN_EVENT');
    const second = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(second instanceof RestoreLoadError, String(second));
    assert.equal(second.event?.seq, repeat1);
    const third = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(third instanceof RestoreLoadError, String(third));
    assert.equal(third.event?.seq, repeat2, 'the recorded repeat1 was skipped, so the crash is the other one');
    assert.deepEqual(await brokenSeqs(src.node), [crashing, repeat1, repeat2]);

    const report = await doRestore(src.node, { toSeq: last });
    assert.deepEqual(
      report.warnings.map((w) => Number(/^event seq (\d+) .* was skipped/.exec(w)?.[1])),
      [crashing, repeat1, repeat2],
    );

    // Forgotten (the CLI), it is replayed again: the restore breaks on it once more.
    const forgot = await cli([
      'windows',
      '--node',
      src.node,
      '--forget-broken',
      `${first.event!.epoch}:${crashing}`,
      '--clickhouse',
      stack.clickhouse.url,
    ]);
    assert.equal(forgot.code, 0, forgot.stderr);
    assert.match(forgot.stdout, new RegExp(`^forgot broken event seq ${crashing} of `));
    assert.deepEqual(await brokenSeqs(src.node), [repeat1, repeat2]);
    const again = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(again instanceof RestoreLoadError, String(again));
    assert.equal(again.event?.seq, crashing);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('a RESTORE the source refused for a corrupt payload with a valid checksum is named (the server logs no argv) and skipped afterwards', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('lz', 'a'.repeat(200));
    const dump = await r.dumpBuffer('lz');
    const body = Buffer.from(dump);
    body[4] = 0x7f; // inside the LZF data
    const corrupt = withDumpChecksum(body);
    assert.equal(String(await send(r, 'RESTORE', 'good', '0', dump)), 'OK');
    refused(await send(r, 'RESTORE', 'bad', '0', corrupt), /Bad data format/, 'RESTORE of a corrupt payload');
    await r.set('after', '1');
    const last = await markRestorable(src, r, 'end');
    const sourceDigest = await digestOf(r);
    const [bad] = await stack.store.query<{ seq: string | number }>(
      `SELECT seq FROM flashback.events WHERE node = ${sqlString(src.node)} AND key = 'bad' LIMIT 1`,
    );
    assert.ok(bad, 'the refused RESTORE is in the history');

    const err = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(err instanceof RestoreLoadError, String(err));
    assert.equal(err.code, 'BROKEN_EVENT');
    assert.equal(err.event?.seq, Number(bad.seq), 'the corrupt RESTORE, not the good one before it');
    assert.equal(err.event?.command, 'RESTORE');
    assert.match(
      err.message,
      /redis-server: "Internal error in RDB reading offset \d+, .*Invalid LZF compressed string"/,
    );

    const report = await doRestore(src.node, { toSeq: last });
    assert.equal(report.warnings.length, 1);
    assert.equal(report.digest, sourceDigest);
  } finally {
    r.disconnect();
    await src.close();
  }
});

test('failures of the restore host are not broken events: a taken port, an unknown command on a server older than the source', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  const blocker = net.createServer();
  try {
    await src.agent.baseline();
    await r.set('victim', 'v');
    const last = await markRestorable(src, r, 'end');
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const taken = await failedRestore(src.node, { toSeq: last, spawn: { port } });
    assert.ok(taken instanceof ServerStartError && !(taken instanceof RestoreLoadError), String(taken));
    assert.ok(taken.portInUse);

    // HSETEX came with Redis 8.0: a 7.0.15 restore server does not know it. The source is said to run a later 7.0
    // release (same RDB format): a source of a newer RDB format is refused before any work (restorer/rdb-version.ts).
    const seq = await forge(src.node, 'victim', ['HSETEX', 'h', 'FIELDS', '1', 'f', 'v']);
    const setSourceVersion = async (version: string) => {
      const [row] = await stack.store.query<Record<string, string | number>>(
        `SELECT * FROM flashback.baselines WHERE node = ${sqlString(src.node)} LIMIT 1`,
      );
      const source = JSON.stringify({ ...(JSON.parse(String(row!.source)) as object), version });
      await stack.store.insertBaselines([{ ...row, source } as never]);
      await merged('flashback.baselines', `node = ${sqlString(src.node)} AND seq = ${Number(row!.seq)}`, source);
    };
    await setSourceVersion('7.0.99');
    const older = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(older instanceof RestoreLoadError, String(older));
    assert.equal(older.code, 'INTERNAL');
    assert.equal(older.event?.seq, seq);
    assert.match(older.message, /restore server \(redis 7\.0\.15\) is older than the source \(redis 7\.0\.99\)/);
    assert.match(older.message, /nothing was recorded as broken/);
    assert.deepEqual(await brokenSeqs(src.node), []);
    // The same source version as the restore server's: the event itself is at fault.
    await setSourceVersion('7.0.15');
    const same = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(same instanceof RestoreLoadError, String(same));
    assert.equal(same.code, 'BROKEN_EVENT');
    assert.deepEqual(await brokenSeqs(src.node), [seq]);
    // A source of a newer line (Redis 8, RDB format 12; 7.0 reads up to 10) with only 7.0 to restore with: refused
    // before any work, naming the line needed and the servers found.
    await setSourceVersion('8.0.2');
    const newer = await failedRestore(src.node, { toSeq: last, spawn: {} });
    assert.ok(newer instanceof FlashbackError && !(newer instanceof RestoreLoadError), String(newer));
    assert.match(
      (newer as Error).message,
      /comes from redis 8\.0\.2; restoring it needs Redis 8\.0 or a newer line of Redis, and the restore servers here are: redis 7\.0\.15/,
    );
  } finally {
    blocker.close();
    r.disconnect();
    await src.close();
  }
});

test('a baseline that recorded no source settings (an older agent) restores with the defaults and says so', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    await r.set('k', 'v');
    const last = await markRestorable(src, r, 'end');
    const [row] = await stack.store.query<Record<string, string | number>>(
      `SELECT * FROM flashback.baselines WHERE node = ${sqlString(src.node)} LIMIT 1`,
    );
    await stack.store.insertBaselines([{ ...row, source: '' } as never]);
    await merged('flashback.baselines', `node = ${sqlString(src.node)} AND seq = ${Number(row!.seq)}`, '');
    const report = await doRestore(src.node, { toSeq: last });
    assert.equal(report.warnings.length, 1);
    assert.match(
      report.warnings[0]!,
      /^baseline seq \d+ has no record of the source's proto-max-bulk-len, stream-node-max-entries, stream-node-max-bytes .* runs with its default proto-max-bulk-len 536870912/,
    );
    assert.equal(report.digest, await digestOf(r));
  } finally {
    r.disconnect();
    await src.close();
  }
});
