// IncrWriter's exact bytes: SELECT on db change, MULTI/EXEC around a tx, unknown db after tail/raw, end().
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ErrorCode, FlashbackError } from '../core/errors.js';
import { encodeCommand } from '../core/redis/resp.js';
import { IncrWriter, type ReplayItem } from './incr-writer.js';

/** A PassThrough whose output is gathered, so its readable side ends and end() can finish. */
function collector(highWaterMark?: number): { out: PassThrough; bytes: () => Buffer } {
  const out = new PassThrough(highWaterMark === undefined ? {} : { highWaterMark });
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  return { out, bytes: () => Buffer.concat(chunks) };
}

const cmd = (...argv: (string | number | Buffer)[]) => encodeCommand(argv);
const item = (seq: number, db: number, tx: number, ...argv: (string | Buffer)[]): ReplayItem => ({
  seq,
  db,
  tx,
  resp: cmd(...argv),
});
const SELECT = (db: number) => cmd('SELECT', db);
const MULTI = cmd('MULTI');
const EXEC = cmd('EXEC');

/** Writes `items`, ends, and returns the bytes and the result. */
async function run(items: ReplayItem[], chunkBytes?: number) {
  const { out, bytes } = collector();
  const w = new IncrWriter(out, chunkBytes === undefined ? {} : { chunkBytes });
  for (const it of items) await w.write(it);
  const result = await w.end();
  return { bytes: bytes(), result };
}

describe('IncrWriter', () => {
  it('SELECTs before the first item and whenever the db changes, never twice for the same db', async () => {
    const items = [
      item(1, 0, 0, 'SET', 'a', '1'),
      item(2, 0, 0, 'SET', 'b', '2'),
      item(3, 5, 0, 'DEL', 'a'),
      item(4, 0, 0, 'INCR', 'n'),
    ];
    const { bytes, result } = await run(items);
    const want = Buffer.concat([
      SELECT(0),
      items[0]!.resp,
      items[1]!.resp,
      SELECT(5),
      items[2]!.resp,
      SELECT(0),
      items[3]!.resp,
    ]);
    assert.equal(bytes.toString('latin1'), want.toString('latin1'));
    assert.deepEqual(result, { events: 4, bytes: want.length });
  });

  it('wraps each tx in MULTI/EXEC, SELECT before MULTI, EXEC when the tx id changes', async () => {
    const items = [
      item(1, 2, 1, 'SET', 'a', '1'),
      item(2, 2, 1, 'SET', 'b', '2'),
      item(3, 2, 3, 'INCR', 'c'),
      item(4, 2, 0, 'DEL', 'x'),
    ];
    const { bytes } = await run(items);
    const want = Buffer.concat([
      SELECT(2),
      MULTI,
      items[0]!.resp,
      items[1]!.resp,
      EXEC,
      MULTI,
      items[2]!.resp,
      EXEC,
      items[3]!.resp,
    ]);
    assert.equal(bytes.toString('latin1'), want.toString('latin1'));
  });

  it('SELECTs inside a tx only when the tx itself changes db, and the db carries past EXEC', async () => {
    const items = [item(1, 0, 1, 'SET', 'a', '1'), item(2, 4, 1, 'SET', 'b', '2'), item(3, 4, 0, 'GETDEL', 'b')];
    const { bytes } = await run(items);
    const want = Buffer.concat([SELECT(0), MULTI, items[0]!.resp, SELECT(4), items[1]!.resp, EXEC, items[2]!.resp]);
    assert.equal(bytes.toString('latin1'), want.toString('latin1'));
  });

  it('closes a tx open at end() with EXEC', async () => {
    const items = [item(1, 0, 1, 'SET', 'a', '1')];
    const { bytes } = await run(items);
    assert.equal(bytes.toString('latin1'), Buffer.concat([SELECT(0), MULTI, items[0]!.resp, EXEC]).toString('latin1'));
  });

  it('endTx() closes a tx so the next one may reuse its id', async () => {
    const { out, bytes } = collector();
    const w = new IncrWriter(out);
    const a = item(1, 0, 1, 'SET', 'a', '1');
    const b = item(9, 0, 1, 'SET', 'b', '2');
    await w.write(a);
    await w.endTx();
    await w.endTx();
    await w.write(b);
    await w.end();
    const want = Buffer.concat([SELECT(0), MULTI, a.resp, EXEC, MULTI, b.resp, EXEC]);
    assert.equal(bytes().toString('latin1'), want.toString('latin1'));
  });

  it('writes the tail as is; after it (and raw RESP) the db is unknown, so the next item SELECTs', async () => {
    const { out, bytes } = collector();
    const w = new IncrWriter(out);
    const tail = Buffer.concat([SELECT(0), cmd('SET', 't', Buffer.from([0, 0xff])), SELECT(3)]);
    const raw = cmd('EVAL', 'return 1', '0');
    const a = item(1, 0, 0, 'SET', 'a', '1');
    const b = item(2, 0, 7, 'SET', 'b', '2');
    const c = item(3, 0, 0, 'SET', 'c', '3');
    await w.writeTail(tail);
    await w.write(a);
    await w.write(b);
    await w.writeRaw(raw);
    await w.write(c);
    const result = await w.end();
    const want = Buffer.concat([tail, SELECT(0), a.resp, MULTI, b.resp, EXEC, raw, SELECT(0), c.resp]);
    assert.deepEqual(bytes(), want);
    assert.deepEqual(result, { events: 3, bytes: want.length });
  });

  it('writeTail closes an open tx before the tail', async () => {
    const { out, bytes } = collector();
    const w = new IncrWriter(out);
    const a = item(1, 1, 1, 'SET', 'a', '1');
    const tail = cmd('PING');
    await w.write(a);
    await w.writeTail(tail);
    await w.end();
    assert.deepEqual(bytes(), Buffer.concat([SELECT(1), MULTI, a.resp, EXEC, tail]));
  });

  it('the bytes do not depend on the chunk size, down to one byte per flush', async () => {
    const items = Array.from({ length: 50 }, (_, i) =>
      item(i + 1, i % 3, i >= 10 && i < 20 ? 11 : 0, 'SET', `k${i}`, 'v'.repeat(i)),
    );
    const big = await run(items);
    const small = await run(items, 1);
    assert.deepEqual(small.bytes, big.bytes);
    assert.deepEqual(small.result, big.result);
  });

  it('waits for drain when the stream pushes back, losing nothing', async () => {
    const got: Buffer[] = [];
    let writes = 0;
    const slow = new Writable({
      highWaterMark: 16,
      write(chunk: Buffer, _enc, cb) {
        writes++;
        got.push(chunk);
        setTimeout(cb, 1);
      },
    });
    const w = new IncrWriter(slow, { chunkBytes: 8 });
    const items = Array.from({ length: 20 }, (_, i) => item(i + 1, 0, 0, 'SET', `key-${i}`, 'x'.repeat(40)));
    for (const it of items) await w.write(it);
    const result = await w.end();
    assert.deepEqual(Buffer.concat(got), Buffer.concat([SELECT(0), ...items.map((i) => i.resp)]));
    assert.equal(result.events, 20);
    assert.equal(writes, 20, 'one write per full chunk (each item exceeds chunkBytes)');
  });

  it('refuses writes after end() with an INTERNAL error', async () => {
    const { out } = collector();
    const w = new IncrWriter(out);
    await w.end();
    const internal = (e: unknown) =>
      e instanceof FlashbackError && e.code === ErrorCode.Internal && /after end\(\)/.test(e.message);
    await assert.rejects(w.write(item(1, 0, 0, 'PING')), internal);
    await assert.rejects(w.writeTail(cmd('PING')), internal);
    await assert.rejects(w.writeRaw(cmd('PING')), internal);
    await assert.rejects(w.endTx(), internal);
    await assert.rejects(w.end(), internal);
  });
});
