// Event batch codec: byte layout, round-trip of binary keys/args/replay, shared replay, and refusal of bad bodies.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../errors.js';
import { BatchWriter, decodeBatch, encodeBatch, type EventBatch } from './event-codec.js';
import { EVENT_KINDS, type FlashbackEvent } from './event.js';

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function ev(seq: number, over: Partial<FlashbackEvent> = {}): FlashbackEvent {
  const args = [Buffer.from('SET'), Buffer.from([0x00, 0xff, 0x0d, 0x0a]), allBytes];
  return {
    node: 'nœud:6379',
    epoch: 1_785_788_000_000,
    seq,
    tsUs: 1_785_788_890_123_456 + seq,
    db: 15,
    client: '10.0.0.1:5000',
    kind: 'command',
    command: 'SET',
    keys: [args[1]!],
    args,
    replay: args,
    tx: 0,
    ...over,
  };
}

/** Plain copies of the Buffers so deepEqual compares bytes, not views. */
const f64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};

const plain = (e: FlashbackEvent) => ({
  ...e,
  keys: e.keys.map((k) => [...k]),
  args: e.args.map((a) => [...a]),
  replay: e.replay.map((r) => [...r]),
});

describe('encodeBatch / decodeBatch', () => {
  it('round-trips every field and every byte value, in order', () => {
    const events = [
      ev(1),
      ev(2, { kind: 'state', command: 'RESTORE', replay: [Buffer.from('RESTORE'), Buffer.alloc(0), allBytes], tx: 2 }),
      ev(3, { kind: 'expired', command: 'expired', client: 'agent', keys: [Buffer.alloc(0)], args: [], replay: [] }),
      ev(4, { kind: 'heartbeat', db: 65_535, keys: [], args: [], replay: [], tx: 0 }),
    ];
    const batch: EventBatch = { node: 'nœud:6379', epoch: 1_785_788_000_000, events };
    const back = decodeBatch(encodeBatch(batch));
    assert.equal(back.node, 'nœud:6379');
    assert.equal(back.epoch, 1_785_788_000_000);
    assert.deepEqual(back.events.map(plain), events.map(plain));
    assert.deepEqual(
      back.events.map((e) => e.seq),
      [1, 2, 3, 4],
    );
  });

  it('writes the documented layout byte for byte (v2: differences, strings once, keys as arg indexes)', () => {
    const a = [Buffer.from('DEL'), Buffer.from([0xff])];
    const e: FlashbackEvent = {
      node: 'n',
      epoch: 2,
      seq: 7,
      tsUs: 4,
      db: 5,
      client: 'c',
      kind: 'evicted',
      command: 'X',
      keys: [a[1]!],
      args: a,
      replay: a,
      tx: 6,
    };
    const foreignKey = { ...e, seq: 8, tsUs: 300, tx: 0, keys: [Buffer.from([0xff])] };
    const fractional = { ...e, seq: 9, tsUs: 1.5, tx: 0, keys: [] };
    const buf = encodeBatch({ node: 'n', epoch: 2, events: [e, foreignKey, fractional] });
    const kind = EVENT_KINDS.indexOf('evicted');
    const args = [2, 3, ...Buffer.from('DEL'), 1, 0xff];
    // prettier-ignore
    const want = Buffer.concat([
      Buffer.from([2, 1, ...Buffer.from('n')]), f64(2), Buffer.from([3]), // version, node, epoch, count
      Buffer.from([2, 1, ...Buffer.from('c'), 1, ...Buffer.from('X')]), // strings: client, command
      // flags (replay is args, keys by index), db, client, kind, command, seq 0+7 (zigzag 14), ts 0+4 (8), tx 7-6+1
      Buffer.from([1 | 2, 5, 0, kind, 1, 14, 8, 2]),
      Buffer.from([1, 1, ...args]), // one key: args[1]; args
      // seq +1 (zigzag 2), ts +296 (zigzag 592: LEB128 0xd0 0x04), no tx; a key that is no arg's own Buffer: a list
      Buffer.from([1, 5, 0, kind, 1, 2, 0xd0, 0x04, 0, 1, 1, 0xff, ...args]),
      Buffer.from([1 | 4, 5, 0, kind, 1]), f64(9), f64(1.5), f64(0), Buffer.from([0, ...args]), // no integer time: f64s
    ]);
    assert.deepEqual(buf, want);
    const back = decodeBatch(buf).events;
    assert.equal(back[0]!.keys[0], back[0]!.args[1], 'a key by index is that arg');
    assert.deepEqual([...back[1]!.keys[0]!], [0xff]);
    assert.deepEqual(
      back.map((x) => [x.seq, x.tsUs, x.tx]),
      [
        [7, 4, 6],
        [8, 300, 0],
        [9, 1.5, 0],
      ],
    );
  });

  it('round-trips times and seqs that go back, jump or are no integers, and large numbers', () => {
    const times = [1_785_788_890_123_456, 5, 2 ** 52, 2 ** 52 + 2, -3, 0.25, 1_785_788_890_123_457, 0, 7e15];
    const events = times.map((tsUs, i) =>
      ev(i % 2 === 0 ? 1_000_000 - i : 2 ** 40 + i, { tsUs, db: i * 1000, tx: i === 3 ? 2 ** 40 + 1 : 0 }),
    );
    const back = decodeBatch(encodeBatch({ node: events[0]!.node, epoch: events[0]!.epoch, events })).events;
    assert.deepEqual(back.map(plain), events.map(plain));
  });

  it('still decodes v1 batches (stored by an older agent)', () => {
    // prettier-ignore
    const v1 = Buffer.concat([
      Buffer.from([1]), u32(1), Buffer.from('n'), f64(2), u32(1), // version, node, epoch, count
      f64(3), f64(4), u16(5), u32(1), Buffer.from('c'), // seq, tsUs, db, client
      Buffer.from([EVENT_KINDS.indexOf('evicted')]), u32(1), Buffer.from('X'), f64(6), // kind, command, tx
      u32(1), u32(1), Buffer.from([0xff]), // keys
      u32(2), u32(3), Buffer.from('DEL'), u32(1), Buffer.from([0xff]), // args
      Buffer.from([1]), // replay is args
    ]);
    const { node, epoch, events } = decodeBatch(v1);
    assert.equal(node, 'n');
    assert.equal(epoch, 2);
    assert.deepEqual(events.map(plain), [
      plain({
        node: 'n',
        epoch: 2,
        seq: 3,
        tsUs: 4,
        db: 5,
        client: 'c',
        kind: 'evicted',
        command: 'X',
        keys: [Buffer.from([0xff])],
        args: [Buffer.from('DEL'), Buffer.from([0xff])],
        replay: [Buffer.from('DEL'), Buffer.from([0xff])],
        tx: 6,
      }),
    ]);
    assert.equal(events[0]!.replay, events[0]!.args);
  });

  it('stores a key by index when args holds it, wherever it is', () => {
    const args = [Buffer.from('MSET'), Buffer.from('k1'), Buffer.from('v'), Buffer.from('k2'), Buffer.from('v')];
    // Out of order and a key equal to another arg's bytes but not that Buffer.
    const keys = [args[3]!, args[1]!];
    const e = ev(1, { args, replay: args, keys });
    const back = decodeBatch(encodeBatch({ node: e.node, epoch: e.epoch, events: [e] })).events[0]!;
    assert.equal(back.keys[0], back.args[3]);
    assert.equal(back.keys[1], back.args[1]);
    assert.deepEqual(back.keys.map(String), ['k2', 'k1']);
  });

  it('encodes large values and many events (scratch growth) exactly', () => {
    const big = Buffer.alloc(3 << 20, 0x61);
    big[big.length - 1] = 0x7a;
    const events = [ev(1), ev(2, { args: [Buffer.from('SET'), Buffer.from('k'), big], replay: [], keys: [] })];
    for (let i = 3; i < 5_000; i++) events.push(ev(i, { client: `c${i % 7}`, command: i % 2 ? 'SET' : 'DEL' }));
    const back = decodeBatch(encodeBatch({ node: events[0]!.node, epoch: events[0]!.epoch, events })).events;
    assert.deepEqual(back.map(plain), events.map(plain));
    // And the next batch after a huge one is still right.
    const again = decodeBatch(encodeBatch({ node: events[0]!.node, epoch: events[0]!.epoch, events: [ev(9)] })).events;
    assert.deepEqual(again.map(plain), [plain(ev(9))]);
  });

  it('stores replay once when it is the args array, and decodes it as that same array', () => {
    const shared = ev(1);
    const copied = ev(1, { replay: shared.args.map((x) => Buffer.from(x)) });
    const sharedBuf = encodeBatch({ node: shared.node, epoch: shared.epoch, events: [shared] });
    const copiedBuf = encodeBatch({ node: shared.node, epoch: shared.epoch, events: [copied] });
    // a separate replay list costs its own bytes: count, then per arg length and bytes (LEB128: 1 byte below 128)
    const varLen = (n: number) => (n < 128 ? 1 : 2);
    const listBytes = varLen(shared.args.length) + shared.args.reduce((n, a) => n + varLen(a.length) + a.length, 0);
    assert.equal(copiedBuf.length - sharedBuf.length, listBytes);
    const back = decodeBatch(sharedBuf).events[0]!;
    assert.equal(back.replay, back.args);
    const backCopied = decodeBatch(copiedBuf).events[0]!;
    assert.notEqual(backCopied.replay, backCopied.args);
    assert.deepEqual(
      backCopied.replay.map((r) => [...r]),
      shared.args.map((a) => [...a]),
    );
  });

  it('decodes from a Uint8Array view at an offset', () => {
    const buf = encodeBatch({ node: 'n1', epoch: 9, events: [ev(1, { node: 'n1', epoch: 9 })] });
    const big = new Uint8Array(buf.length + 7);
    big.set(buf, 3);
    const back = decodeBatch(big.subarray(3, 3 + buf.length));
    assert.equal(back.node, 'n1');
    assert.deepEqual([...back.events[0]!.args[2]!], [...allBytes]);
  });

  it('BatchWriter: event by event, batch after batch on one buffer, its size known all along', () => {
    const w = new BatchWriter('nœud:6379', 1_785_788_000_000, 64);
    const batches: FlashbackEvent[][] = [
      [ev(1), ev(2, { client: 'other', command: 'DEL' })],
      [ev(3, { args: [Buffer.from('SET'), Buffer.from('k'), Buffer.alloc(100_000, 7)], keys: [], replay: [] })],
      [ev(4, { tx: 4 }), ev(5, { tx: 4 }), ev(6)],
    ];
    for (const events of batches) {
      for (const e of events) w.add(e);
      assert.equal(w.count, events.length);
      const bound = w.bytes;
      const body = w.finish();
      assert.ok(body.length <= bound, `${body.length} bytes, said at most ${bound}`);
      assert.deepEqual(body, encodeBatch({ node: 'nœud:6379', epoch: 1_785_788_000_000, events }));
      assert.deepEqual(decodeBatch(body).events.map(plain), events.map(plain));
      assert.equal(w.count, 0);
    }
  });

  it('round-trips an empty batch', () => {
    assert.deepEqual(decodeBatch(encodeBatch({ node: '', epoch: 0, events: [] })), { node: '', epoch: 0, events: [] });
  });

  it('refuses another version, naming it', () => {
    const buf = encodeBatch({ node: 'n', epoch: 1, events: [] });
    buf[0] = 3;
    assert.throws(
      () => decodeBatch(buf),
      (e: unknown) => e instanceof ProtocolError && /version 3 is not supported \(expected 1 or 2\)/.test(e.message),
    );
  });

  it('refuses a truncated body at every cut, naming the byte', () => {
    const buf = encodeBatch({
      node: 'n',
      epoch: 1,
      events: [ev(1, { node: 'n', epoch: 1 }), ev(2, { node: 'n', epoch: 1 })],
    });
    for (let cut = 0; cut < buf.length; cut++) {
      assert.throws(
        () => decodeBatch(buf.subarray(0, cut)),
        (e: unknown) => e instanceof ProtocolError && new RegExp(`truncated at byte \\d+ of ${cut}$`).test(e.message),
        `cut at ${cut}`,
      );
    }
  });

  it('refuses an unknown event kind', () => {
    const e = ev(1, { node: 'n', epoch: 1, client: 'c' });
    const buf = encodeBatch({ node: 'n', epoch: 1, events: [e] });
    // version, node str, epoch, count, strings (client 'c', command 'SET'), flags, db, client index → kind byte
    const kindAt = 1 + 2 + 8 + 1 + 1 + 2 + 4 + 1 + 1 + 1;
    assert.equal(buf[kindAt], EVENT_KINDS.indexOf('command'));
    buf[kindAt] = 200;
    assert.throws(
      () => decodeBatch(buf),
      (e: unknown) => e instanceof ProtocolError && e.message.includes(`unknown event kind at byte ${kindAt}`),
    );
  });
});
