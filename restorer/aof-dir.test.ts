// AOF dir: createAofDir's files and manifest text, refusal of a used dir, writeBaseRdb's RDB magic check.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ErrorCode, InputError, ProtocolError } from '../core/errors.js';
import { AOF_DIR_NAME, AOF_FILE_NAME, createAofDir, writeBaseRdb } from './aof-dir.js';

let root: string;
let n = 0;
const fresh = () => path.join(root, `d${++n}`);

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'flashback-aof-dir-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fake RDB: the magic, 4 version digits, then every byte value. */
const rdb = Buffer.concat([
  Buffer.from('REDIS0011'),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from([0xff]),
]);

async function* chunksOf(b: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += size) yield new Uint8Array(b.subarray(o, o + size));
}

describe('createAofDir', () => {
  it('writes the manifest Redis 7.0 writes, with the base RDB, and an empty incr file', async () => {
    const dir = fresh();
    const p = await createAofDir(dir);
    const aofDir = path.join(dir, 'appendonlydir');
    assert.equal(AOF_DIR_NAME, 'appendonlydir');
    assert.equal(AOF_FILE_NAME, 'appendonly.aof');
    assert.deepEqual(p, {
      dir,
      aofDir,
      baseRdbPath: path.join(aofDir, 'appendonly.aof.1.base.rdb'),
      incrPath: path.join(aofDir, 'appendonly.aof.1.incr.aof'),
      manifestPath: path.join(aofDir, 'appendonly.aof.manifest'),
      hasBase: true,
    });
    assert.equal(
      await readFile(p.manifestPath, 'utf8'),
      'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n',
    );
    assert.equal((await readFile(p.incrPath)).length, 0);
    assert.deepEqual((await readdir(aofDir)).sort(), ['appendonly.aof.1.incr.aof', 'appendonly.aof.manifest']);
  });

  it('lists only the incr file when base is false', async () => {
    const p = await createAofDir(fresh(), { base: false });
    assert.equal(p.hasBase, false);
    assert.equal(await readFile(p.manifestPath, 'utf8'), 'file appendonly.aof.1.incr.aof seq 1 type i\n');
  });

  it('accepts an existing empty dir and refuses one that holds files, naming them', async () => {
    const dir = fresh();
    await mkdir(path.join(dir, AOF_DIR_NAME), { recursive: true });
    await createAofDir(dir);
    await assert.rejects(
      createAofDir(dir),
      (e: unknown) =>
        e instanceof InputError &&
        e.code === ErrorCode.BadInput &&
        e.message.includes(`AOF dir ${path.join(dir, AOF_DIR_NAME)} is not empty (`) &&
        e.message.includes('appendonly.aof.1.incr.aof') &&
        e.message.endsWith('restore into a new, empty directory'),
    );
    const many = fresh();
    await mkdir(path.join(many, AOF_DIR_NAME), { recursive: true });
    for (const f of ['a', 'b', 'c', 'd']) await writeFile(path.join(many, AOF_DIR_NAME, f), '');
    await assert.rejects(
      createAofDir(many),
      (e: unknown) => e instanceof InputError && /\(\w, \w, \w …\)/.test(e.message),
    );
  });
});

describe('writeBaseRdb', () => {
  it('streams an async iterable to the file byte for byte, the magic split across chunks', async () => {
    const { baseRdbPath } = await createAofDir(fresh());
    assert.deepEqual(await writeBaseRdb(baseRdbPath, chunksOf(rdb, 4)), { bytes: rdb.length });
    assert.deepEqual(await readFile(baseRdbPath), rdb);
  });

  it('takes a Node stream and a web ReadableStream', async () => {
    const a = path.join(root, 'node.rdb');
    assert.deepEqual(await writeBaseRdb(a, Readable.from([rdb.subarray(0, 100), rdb.subarray(100)])), {
      bytes: rdb.length,
    });
    assert.deepEqual(await readFile(a), rdb);
    const b = path.join(root, 'web.rdb');
    const web = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(rdb.subarray(0, 3)));
        c.enqueue(new Uint8Array(rdb.subarray(3)));
        c.close();
      },
    });
    assert.deepEqual(await writeBaseRdb(b, web), { bytes: rdb.length });
    assert.deepEqual(await readFile(b), rdb);
  });

  it('hands the header version to the check, which refuses before anything is kept', async () => {
    const f = path.join(root, 'v12.rdb');
    const newer = Buffer.concat([Buffer.from('REDIS0012'), Buffer.alloc(100_000, 1)]);
    const seen: number[] = [];
    await assert.rejects(
      writeBaseRdb(f, chunksOf(newer, 4), (v) => {
        seen.push(v);
        throw new Error(`format ${v} refused`);
      }),
      /format 12 refused/,
    );
    assert.deepEqual(seen, [12]);
    await assert.rejects(readFile(f), { code: 'ENOENT' });
  });

  it('accepts a header-only RDB of exactly 9 bytes', async () => {
    const f = path.join(root, 'header.rdb');
    assert.deepEqual(await writeBaseRdb(f, chunksOf(Buffer.from('REDIS0009'), 9)), { bytes: 9 });
    assert.equal(await readFile(f, 'latin1'), 'REDIS0009');
  });

  it('refuses what is not an RDB, quoting how it starts and naming the file', async () => {
    const cases: [Buffer, string][] = [
      [Buffer.from('*1\r\n$4\r\nPING\r\n'), JSON.stringify('*1\r\n$4\r\nPING\r\n')],
      [Buffer.from('REDIS00x1rest'), '"REDIS00x1rest"'],
      [Buffer.from('redis0011'), '"redis0011"'],
      [Buffer.from('REDIS'), '"REDIS"'],
      [Buffer.alloc(0), '""'],
    ];
    for (const [bytes, shown] of cases) {
      const f = path.join(root, `bad-${++n}.rdb`);
      await assert.rejects(
        writeBaseRdb(f, chunksOf(bytes, 64)),
        (e: unknown) =>
          e instanceof ProtocolError &&
          e.message ===
            `baseline for ${f} is not an RDB (starts with ${shown}, expected "REDIS0…"); ` +
              'check that the baseline object is complete and not a tail',
        shown,
      );
      assert.equal(existsSync(f), false, `no partial base left at ${f}`);
    }
  });

  it('checks as soon as 9 bytes are in, quoting what it has then', async () => {
    const f = path.join(root, 'early.rdb');
    const bad = Buffer.from('*1\r\n$4\r\nPING\r\n');
    await assert.rejects(
      writeBaseRdb(f, chunksOf(bad, 2)),
      (e: unknown) =>
        e instanceof ProtocolError && e.message.includes(`starts with ${JSON.stringify('*1\r\n$4\r\nPI')},`),
    );
  });

  it('quotes at most 16 bytes of a long bad start', async () => {
    const f = path.join(root, 'long-bad.rdb');
    await assert.rejects(
      writeBaseRdb(f, chunksOf(Buffer.alloc(1000, 'x'), 1000)),
      (e: unknown) => e instanceof ProtocolError && e.message.includes(`starts with "${'x'.repeat(16)}"`),
    );
  });
});
