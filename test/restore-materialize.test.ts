// Restore back end on real redis-server: incr AOF writing, AOF dir loading, exact expiry semantics, copy to a target,
// RDB, keep-ttl-relative.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ErrorCode, ProtocolError } from '../core/errors.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { RespError, encodeCommand } from '../core/redis/resp.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { createAofDir, writeBaseRdb } from '../restorer/aof-dir.js';
import { IncrWriter, type ReplayItem } from '../restorer/incr-writer.js';
import {
  AofLoadError,
  TargetNotEmptyError,
  copyToTarget,
  countKeys,
  digest,
  expireDueKeys,
  keepTtlRelativeScript,
  loadAofDir,
  saveRdb,
} from '../restorer/materialize.js';

type Argv = (Buffer | string | number)[];
interface Cmd {
  db: number;
  tx?: number;
  argv: Argv;
}

const servers: ServerProcess[] = [];
const dirs: string[] = [];
async function server(args: string[] = []): Promise<ServerProcess> {
  const s = await startRedisServer({ args });
  servers.push(s);
  return s;
}
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'flashback-restore-test-'));
  dirs.push(d);
  return d;
}
after(async () => {
  await Promise.allSettled(servers.map((s) => s.stop()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Runs commands live over one connection, MULTI/EXEC around each tx group, failing on any error reply. */
async function runLive(url: string, cmds: Cmd[]): Promise<void> {
  const conn = await RawRedis.connect(parseRedisUrl(url));
  try {
    let tx = 0;
    const check = (r: unknown, argv: Argv) => {
      if (r instanceof RespError) throw new Error(`${String(argv[0])}: ${r.message}`);
      if (Array.isArray(r)) for (const x of r) check(x, argv);
    };
    for (const c of cmds) {
      if ((c.tx ?? 0) !== tx) {
        if (tx !== 0) check(await conn.call(['EXEC']), ['EXEC']);
        tx = c.tx ?? 0;
        if (tx !== 0) {
          check(await conn.call(['SELECT', c.db]), ['SELECT']);
          check(await conn.call(['MULTI']), ['MULTI']);
        }
      }
      check(await conn.call(['SELECT', c.db]), ['SELECT']);
      check(await conn.call(c.argv), c.argv);
    }
    if (tx !== 0) check(await conn.call(['EXEC']), ['EXEC']);
  } finally {
    conn.close();
  }
}

/** Writes an AOF dir (optional base RDB, then `items`, then `raw`) and returns its dir. */
async function buildAofDir(opts: {
  baseRdb?: string;
  items: Cmd[];
  raw?: Buffer[];
}): Promise<{ dir: string; bytes: number; events: number }> {
  const dir = await tempDir();
  const paths = await createAofDir(dir, { base: opts.baseRdb !== undefined });
  if (opts.baseRdb) await writeBaseRdb(paths.baseRdbPath, createReadStream(opts.baseRdb));
  const w = new IncrWriter(createWriteStream(paths.incrPath), { chunkBytes: 4096 });
  let seq = 1;
  for (const c of opts.items) await w.write({ seq: seq++, db: c.db, tx: c.tx ?? 0, resp: encodeCommand(c.argv) });
  for (const r of opts.raw ?? []) await w.writeRaw(r);
  return { dir, ...(await w.end()) };
}

async function withClient<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true });
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

const bin = (...bytes: number[]) => Buffer.from(bytes);
const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const big = Buffer.alloc(3 * 1024 * 1024 + 7, allBytes);
const farFutureMs = Date.UTC(2100, 0, 1);

/** The dataset of the baseline: every type, binary keys and values, expiries, 3 dbs. */
const baseCmds: Cmd[] = [
  { db: 0, argv: ['SET', 'str', 'hello'] },
  { db: 0, argv: ['SET', bin(0, 0xff, 0x0d, 0x0a, 0x20), allBytes] },
  { db: 0, argv: ['SET', 'ttl:str', 'v', 'PXAT', farFutureMs] },
  { db: 0, argv: ['HSET', 'hash', 'f1', 'v1', bin(0xc3, 0x28), bin(0, 1, 2)] },
  { db: 0, argv: ['RPUSH', 'list', 'a', bin(0xfe), 'c'] },
  { db: 0, argv: ['SET', 'big', big] },
  { db: 1, argv: ['SADD', 'set', 'x', 'y', bin(0x80, 0x81)] },
  { db: 1, argv: ['ZADD', 'zset', 1, 'one', 2.5, bin(0xff, 0x00)] },
  { db: 1, argv: ['XADD', 'stream', '1700000000000-1', 'field', bin(0x00, 0x01)] },
  { db: 1, argv: ['PFADD', 'hll', 'a', 'b', 'c'] },
  { db: 1, argv: ['PEXPIREAT', 'set', farFutureMs + 1] },
  { db: 2, argv: ['SETBIT', 'bits', 1001, 1] },
  { db: 2, argv: ['HSET', 'ttl:hash', 'k', 'v'] },
  { db: 2, argv: ['PEXPIREAT', 'ttl:hash', farFutureMs + 2] },
];

/** History after the baseline: db changes, transactions (one changing db inside), overwrites and deletes. */
const incrCmds: Cmd[] = [
  { db: 0, argv: ['APPEND', 'str', bin(0x00, 0xfe)] },
  { db: 1, argv: ['SREM', 'set', 'x'] },
  { db: 1, tx: 3, argv: ['ZINCRBY', 'zset', 3, 'one'] },
  { db: 1, tx: 3, argv: ['XADD', 'stream', '1700000000000-2', 'f', 'v'] },
  { db: 2, tx: 3, argv: ['LPUSH', 'tx:list', bin(0xde, 0xad)] },
  { db: 2, tx: 3, argv: ['SET', 'tx:str', 'in-tx', 'PXAT', farFutureMs + 3] },
  { db: 2, tx: 7, argv: ['INCRBY', 'counter', 41] },
  { db: 2, tx: 7, argv: ['INCR', 'counter'] },
  { db: 0, argv: ['DEL', 'list'] },
  { db: 0, tx: 10, argv: ['HSET', 'hash', 'f2', bin(0xff)] },
  { db: 0, argv: ['RENAME', 'ttl:str', bin(0x01, 0x02, 0x03)] },
  { db: 3, argv: ['SET', 'db3', 'x'] },
  { db: 3, argv: ['FLUSHDB'] },
  { db: 2, argv: ['SET', 'after', big.subarray(0, 100_000)] },
];

let baseRdb: string;
let loaded: ServerProcess;
let loadedDigest: string;

before(async () => {
  const scratch = await server();
  await runLive(scratch.url, baseCmds);
  await withClient(scratch.url, (r) => r.call('SAVE'));
  baseRdb = path.join(await tempDir(), 'base.rdb');
  await copyFile(path.join(scratch.dir, 'dump.rdb'), baseRdb);

  const reference = await server();
  await runLive(reference.url, [...baseCmds, ...incrCmds]);

  const { dir } = await buildAofDir({ baseRdb, items: incrCmds });
  loaded = await loadAofDir(dir);
  servers.push(loaded);
  loadedDigest = await digest(loaded.url);
  assert.equal(loadedDigest, await digest(reference.url), 'AOF-loaded dataset equals the reference that ran live');
  assert.notEqual(loadedDigest, '0'.repeat(40));
});

test('IncrWriter: SELECT only where the db changes, before MULTI unless the tx itself changes db, EXEC on tx change', async () => {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const w = new IncrWriter(out, { chunkBytes: 1 });
  const item = (seq: number, db: number, tx: number, ...argv: Argv): ReplayItem => ({
    seq,
    db,
    tx,
    resp: encodeCommand(argv),
  });
  await w.writeTail(encodeCommand(['SELECT', 0]));
  await w.write(item(1, 0, 0, 'SET', 'a', '1'));
  await w.write(item(2, 0, 0, 'SET', 'b', '1'));
  await w.write(item(3, 1, 3, 'SET', 'c', '1'));
  await w.write(item(4, 1, 3, 'SET', 'd', '1'));
  await w.write(item(5, 2, 3, 'SET', 'e', '1'));
  await w.write(item(6, 2, 6, 'SET', 'f', '1'));
  await w.write(item(7, 2, 0, 'SET', 'g', '1'));
  await w.writeRaw(encodeCommand(['PING']));
  await w.write(item(8, 2, 8, 'SET', 'h', '1'));
  const res = await w.end();
  const expected = Buffer.concat(
    (
      [
        ['SELECT', 0],
        ['SELECT', 0],
        ['SET', 'a', '1'],
        ['SET', 'b', '1'],
        ['SELECT', 1],
        ['MULTI'],
        ['SET', 'c', '1'],
        ['SET', 'd', '1'],
        ['SELECT', 2],
        ['SET', 'e', '1'],
        ['EXEC'],
        ['MULTI'],
        ['SET', 'f', '1'],
        ['EXEC'],
        ['SET', 'g', '1'],
        ['PING'],
        ['SELECT', 2],
        ['MULTI'],
        ['SET', 'h', '1'],
        ['EXEC'],
      ] as Argv[]
    ).map((a) => encodeCommand(a)),
  );
  assert.deepEqual(Buffer.concat(chunks), expected);
  assert.deepEqual(res, { events: 8, bytes: expected.length });
});

test('createAofDir writes the manifest as Redis 7.0 does and refuses a used dir', async () => {
  const dir = await tempDir();
  const p = await createAofDir(dir);
  assert.equal(
    await readFile(p.manifestPath, 'utf8'),
    'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n',
  );
  assert.equal(p.baseRdbPath, path.join(dir, 'appendonlydir', 'appendonly.aof.1.base.rdb'));
  assert.equal((await readFile(p.incrPath)).length, 0);
  await assert.rejects(createAofDir(dir), (e: unknown) => e instanceof Error && /not empty/.test(e.message));
  const bare = await createAofDir(await tempDir(), { base: false });
  assert.equal(await readFile(bare.manifestPath, 'utf8'), 'file appendonly.aof.1.incr.aof seq 1 type i\n');
});

test('writeBaseRdb streams bytes and refuses what is not an RDB', async () => {
  const dir = await tempDir();
  async function* pieces(b: Buffer) {
    for (let i = 0; i < b.length; i += 3) yield b.subarray(i, i + 3);
  }
  const rdb = await readFile(baseRdb);
  const res = await writeBaseRdb(path.join(dir, 'a.rdb'), pieces(rdb));
  assert.equal(res.bytes, rdb.length);
  assert.deepEqual(await readFile(path.join(dir, 'a.rdb')), rdb);
  const web = new Blob([rdb]).stream();
  await writeBaseRdb(path.join(dir, 'b.rdb'), web);
  assert.deepEqual(await readFile(path.join(dir, 'b.rdb')), rdb);
  await assert.rejects(writeBaseRdb(path.join(dir, 'c.rdb'), pieces(encodeCommand(['SET', 'a', 'b']))), ProtocolError);
  await assert.rejects(writeBaseRdb(path.join(dir, 'd.rdb'), pieces(Buffer.from('REDI'))), ProtocolError);
});

test('base RDB + incr with MULTI and db changes loads to the live reference digest; key count and values exact', async () => {
  // before() asserted the digest; check a few values byte for byte too.
  await withClient(loaded.url, async (r) => {
    assert.deepEqual(await r.getBuffer('str'), Buffer.concat([Buffer.from('hello'), bin(0x00, 0xfe)]));
    assert.deepEqual(await r.getBuffer(bin(0, 0xff, 0x0d, 0x0a, 0x20)), allBytes);
    assert.equal(await r.pexpiretime(bin(0x01, 0x02, 0x03)), farFutureMs);
    await r.select(2);
    assert.equal(await r.get('counter'), '42');
    assert.equal(await r.pexpiretime('tx:str'), farFutureMs + 3);
  });
  // db0: str, binary, renamed, hash, big; db1: set, zset, stream, hll; db2: bits, ttl:hash, tx:list, tx:str, counter,
  // after.
  assert.equal(await countKeys(loaded.url), 15);
});

test('loading keeps history on its own clock: SET PXAT <past> then APPEND leaves no key; a future PXAT stays exact', async () => {
  const past = Date.now() - 60_000;
  const future = Date.now() + 3_600_000;
  const { dir } = await buildAofDir({
    items: [
      { db: 0, argv: ['SET', 'k', 'v', 'PXAT', past] },
      { db: 0, argv: ['APPEND', 'k', 'x'] },
      { db: 0, argv: ['SET', 'f', 'v', 'PXAT', future] },
      { db: 5, argv: ['SET', 'g', 'v', 'PXAT', past] },
    ],
  });
  const s = await loadAofDir(dir);
  servers.push(s);
  await expireDueKeys(s.url);
  assert.equal(await countKeys(s.url), 1);
  await withClient(s.url, async (r) => {
    assert.equal(await r.exists('k'), 0);
    assert.equal(await r.pexpiretime('f'), future);
  });

  // The same history replayed over a socket into a running server leaves a key the source never had.
  const live = await server();
  await runLive(live.url, [
    { db: 0, argv: ['SET', 'k', 'v', 'PXAT', past] },
    { db: 0, argv: ['APPEND', 'k', 'x'] },
  ]);
  await withClient(live.url, async (r) => {
    assert.equal(await r.get('k'), 'x');
    assert.equal(await r.pttl('k'), -1);
  });
});

test('expireDueKeys drops keys whose expiry passed (SCAN expires what it returns) and counts them', async () => {
  const s = await server();
  await withClient(s.url, async (r) => {
    await r.call('DEBUG', 'SET-ACTIVE-EXPIRE', '0');
    await r.set('a', '1', 'PX', 1);
    await r.select(4);
    await r.set(bin(0xff), '1', 'PX', 1);
    await r.set('stays', '1', 'PX', 3_600_000);
    const dueAt = Date.now() + 2;
    // Waiting for the wall clock to pass the expiry, not for another process.
    while (Date.now() <= dueAt) await delay(2);
  });
  assert.equal(await countKeys(s.url), 3, 'expired keys stay counted until touched');
  assert.equal(await expireDueKeys(s.url), 2);
  assert.equal(await countKeys(s.url), 1);
  assert.equal(await expireDueKeys(s.url), 2, 'a second pass expires nothing more: the total stays 2');
});

test('an AOF that does not load rejects with the server log', async () => {
  const { dir } = await buildAofDir({ items: [{ db: 0, argv: ['NOSUCHCOMMAND', 'x'] }] });
  await assert.rejects(loadAofDir(dir), (e: unknown) => {
    assert.ok(e instanceof AofLoadError);
    assert.ok(e.message.includes(path.join(dir, 'appendonlydir')));
    assert.match(e.logTail, /Unknown command 'NOSUCHCOMMAND' reading the append only file/);
    return true;
  });
  // A truncated last command fails too instead of being dropped (aof-load-truncated no).
  const cut = await buildAofDir({ items: [{ db: 0, argv: ['SET', 'a', '1'] }] });
  await writeFile(
    path.join(cut.dir, 'appendonlydir', 'appendonly.aof.1.incr.aof'),
    Buffer.concat([encodeCommand(['SELECT', 0]), encodeCommand(['SET', 'a', '1']).subarray(0, 12)]),
  );
  await assert.rejects(
    loadAofDir(cut.dir),
    (e: unknown) => e instanceof AofLoadError && /truncated|Unexpected end of file/i.test(e.logTail),
  );
});

test('copyToTarget copies every db exactly, refuses a non-empty target without writing, flushes on request', async () => {
  const target = await server();
  const res = await copyToTarget(loaded.url, target.url, { batchKeys: 2 });
  assert.equal(res.keys, 15);
  assert.equal(await digest(target.url), loadedDigest);

  const other = await server();
  await withClient(other.url, (r) => r.set('mine', '1'));
  const before = await digest(other.url);
  await assert.rejects(copyToTarget(loaded.url, other.url), (e: unknown) => {
    assert.ok(e instanceof TargetNotEmptyError);
    assert.equal(e.code, ErrorCode.TargetNotEmpty);
    assert.equal(e.keys, 1);
    assert.match(e.message, /\(1 key\)/);
    assert.match(e.message, /--flush/);
    return true;
  });
  assert.equal(await digest(other.url), before);

  assert.deepEqual(await copyToTarget(loaded.url, other.url, { flush: true }), { keys: 15 });
  assert.equal(await digest(other.url), loadedDigest);
});

test('saveRdb hands over an RDB that loads to the same digest', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'restored.rdb');
  const { bytes } = await saveRdb(loaded.url, loaded.dir, file);
  assert.equal(bytes, (await readFile(file)).length);
  const fromRdb = await startRedisServer({ dir, args: ['--dbfilename', 'restored.rdb'] });
  servers.push(fromRdb);
  assert.equal(await digest(fromRdb.url), loadedDigest);
});

test('keep-ttl-relative EVAL runs while the AOF loads: keys alive at the cutoff come back alive, shifted exactly', async () => {
  const now = Date.now();
  const cutoffMs = now - 600_000;
  const shiftMs = now - cutoffMs;
  const alive = cutoffMs + 60_000; // alive at the cutoff, but already past now
  const { dir } = await buildAofDir({
    items: [
      { db: 0, argv: ['SET', 'alive', 'v', 'PXAT', alive] },
      { db: 0, argv: ['SET', 'dead', 'v', 'PXAT', cutoffMs - 1_000] },
      { db: 0, argv: ['SET', 'persistent', 'v'] },
      { db: 7, tx: 4, argv: ['HSET', 'h', 'f', 'v'] },
      { db: 7, tx: 4, argv: ['PEXPIREAT', 'h', alive + 1] },
      // Enough keys that SCAN takes many steps inside the script.
      ...Array.from({ length: 3000 }, (_, i): Cmd => ({ db: 9, argv: ['SET', `many:${i}`, 'v', 'PXAT', alive + 2] })),
    ],
    raw: [keepTtlRelativeScript(shiftMs)],
  });
  const s = await loadAofDir(dir);
  servers.push(s);
  await withClient(s.url, async (r) => {
    assert.equal(await r.pexpiretime('alive'), alive + shiftMs);
    const pttl = await r.pttl('alive');
    assert.ok(pttl > 0 && pttl <= 60_000, `PTTL ${pttl}`);
    assert.equal(await r.exists('dead'), 0);
    assert.equal(await r.pexpiretime('persistent'), -1);
    await r.select(7);
    assert.equal(await r.pexpiretime('h'), alive + 1 + shiftMs);
    await r.select(9);
    const times = new Set<number>();
    for (let i = 0; i < 3000; i++) times.add(await r.pexpiretime(`many:${i}`));
    assert.deepEqual([...times], [alive + 2 + shiftMs], 'every key shifted exactly once');
  });
});
