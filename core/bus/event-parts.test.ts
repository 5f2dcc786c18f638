// Batch parts: split/join of binary bodies, the Flashback-Part header, PartCollector's joining and eviction.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../errors.js';
import { decodeBatch, encodeBatch } from './event-codec.js';
import {
  HEADER_ROOM_BYTES,
  PartCollector,
  formatPart,
  joinParts,
  maxPartBytes,
  parsePart,
  partMessageId,
  splitBody,
} from './event-parts.js';

const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
const msg = (data: Uint8Array, tag = '') => ({ data, tag });

describe('maxPartBytes', () => {
  it('leaves header room under max_payload, never below 1 KiB', () => {
    assert.equal(HEADER_ROOM_BYTES, 8192);
    assert.equal(maxPartBytes(1_048_576), 1_048_576 - 8192);
    assert.equal(maxPartBytes(8192 + 1024), 1024);
    assert.equal(maxPartBytes(100), 1024);
  });
});

describe('splitBody / joinParts', () => {
  it('returns the body itself when it fits', () => {
    const parts = splitBody(body, 1000);
    assert.equal(parts.length, 1);
    assert.equal(parts[0], body);
  });

  it('splits into views of at most partBytes, the last one shorter, and joins back byte for byte', () => {
    const parts = splitBody(body, 300);
    assert.deepEqual(
      parts.map((p) => p.length),
      [300, 300, 300, 100],
    );
    assert.equal(parts[1]!.buffer, body.buffer, 'a view, not a copy');
    assert.deepEqual(joinParts(parts), body);
    assert.deepEqual(splitBody(body, 1).length, 1000);
    assert.deepEqual(joinParts(splitBody(body, 1)), body);
  });

  it('carries an encoded batch with binary bytes through split and join', () => {
    const args = [Buffer.from('SET'), Buffer.from([0, 255, 13, 10]), Buffer.alloc(5000, 0xab)];
    const batch = {
      node: 'n',
      epoch: 1,
      events: [
        {
          node: 'n',
          epoch: 1,
          seq: 1,
          tsUs: 2,
          db: 0,
          client: 'c',
          kind: 'command' as const,
          command: 'SET',
          keys: [args[1]!],
          args,
          replay: args,
          tx: 0,
        },
      ],
    };
    const enc = encodeBatch(batch);
    const parts = splitBody(enc, 1024);
    assert.equal(parts.length, Math.ceil(enc.length / 1024));
    const back = decodeBatch(joinParts(parts.map((p) => new Uint8Array(p))));
    assert.deepEqual(
      back.events[0]!.args.map((a) => [...a]),
      args.map((a) => [...a]),
    );
  });

  it('refuses a part size that is not > 0', () => {
    for (const n of [0, -1, Number.NaN]) assert.throws(() => splitBody(body, n), RangeError);
  });
});

describe('Flashback-Part header', () => {
  it('formats i/n and parses it back', () => {
    assert.equal(formatPart({ index: 2, count: 5 }), '2/5');
    assert.deepEqual(parsePart('2/5'), { index: 2, count: 5 });
    assert.deepEqual(parsePart(' 1/1 '), { index: 1, count: 1 });
    assert.deepEqual(parsePart(formatPart({ index: 999_999_999, count: 999_999_999 })), {
      index: 999_999_999,
      count: 999_999_999,
    });
  });

  it('refuses anything but i/n with 1 ≤ i ≤ n, quoting the value', () => {
    for (const bad of ['', '0/3', '4/3', '1/0', '1', '1/2/3', 'a/b', '-1/2', '1 / 2', '1234567890/1234567890']) {
      assert.throws(
        () => parsePart(bad),
        (e: unknown) => e instanceof ProtocolError && e.message.startsWith(`Flashback-Part header "${bad}" is not i/n`),
        bad,
      );
    }
  });

  it('part message ids append the index to the batch id', () => {
    assert.equal(partMessageId('n1:100:7', 3), 'n1:100:7:3');
  });
});

describe('PartCollector', () => {
  it('joins parts arriving in any order, interleaved with another batch', () => {
    const c = new PartCollector<ReturnType<typeof msg>>();
    const a = splitBody(body, 400);
    const b = splitBody(Buffer.from('hello world'), 6);
    assert.equal(c.add('A', { index: 3, count: 3 }, msg(a[2]!, 'a3'), 10), undefined);
    assert.equal(c.add('B', { index: 2, count: 2 }, msg(b[1]!, 'b2'), 11), undefined);
    assert.equal(c.add('A', { index: 1, count: 3 }, msg(a[0]!, 'a1'), 12), undefined);
    assert.equal(c.size, 2);
    assert.equal(c.heldBytes, 200 + 5 + 400);
    const joinedB = c.add('B', { index: 1, count: 2 }, msg(b[0]!, 'b1'), 13)!;
    assert.equal(joinedB.batchId, 'B');
    assert.equal(joinedB.body.toString(), 'hello world');
    assert.deepEqual(
      joinedB.msgs.map((m) => m.tag),
      ['b1', 'b2'],
    );
    assert.equal(c.heldBytes, 600);
    const joinedA = c.add('A', { index: 2, count: 3 }, msg(a[1]!, 'a2'), 14)!;
    assert.deepEqual(joinedA.body, body);
    assert.deepEqual(
      joinedA.msgs.map((m) => m.tag),
      ['a1', 'a2', 'a3'],
    );
    assert.equal(c.size, 0);
    assert.equal(c.heldBytes, 0);
  });

  it('a part delivered again replaces the held copy and counts once', () => {
    const c = new PartCollector<ReturnType<typeof msg>>();
    c.add('A', { index: 1, count: 2 }, msg(Buffer.from('xx'), 'first'));
    c.add('A', { index: 1, count: 2 }, msg(Buffer.from('yyy'), 'again'));
    assert.equal(c.heldBytes, 3);
    assert.deepEqual(
      c.messages().map((m) => m.tag),
      ['again'],
    );
    const j = c.add('A', { index: 2, count: 2 }, msg(Buffer.from('z'), 'second'))!;
    assert.equal(j.body.toString(), 'yyyz');
    assert.deepEqual(
      j.msgs.map((m) => m.tag),
      ['again', 'second'],
    );
  });

  it('refuses a part whose count contradicts the batch', () => {
    const c = new PartCollector<ReturnType<typeof msg>>();
    c.add('A', { index: 1, count: 3 }, msg(Buffer.from('x')));
    assert.throws(
      () => c.add('A', { index: 2, count: 4 }, msg(Buffer.from('y'))),
      (e: unknown) =>
        e instanceof ProtocolError &&
        e.message.startsWith('part 2/4 of batch A contradicts the 3 parts announced before'),
    );
    assert.equal(c.heldBytes, 1);
  });

  it('evicts the oldest, takes those older than a time, and takes all', () => {
    const c = new PartCollector<ReturnType<typeof msg>>();
    c.add('A', { index: 1, count: 2 }, msg(Buffer.from('aa'), 'a'), 100);
    c.add('B', { index: 1, count: 2 }, msg(Buffer.from('bbb'), 'b'), 200);
    c.add('C', { index: 2, count: 2 }, msg(Buffer.from('c'), 'c'), 300);
    c.add('A', { index: 2, count: 2 }, msg(Buffer.alloc(0), 'a2'), 400);
    assert.equal(c.size, 2, 'A completed');
    assert.deepEqual(
      c.messages().map((m) => m.tag),
      ['b', 'c'],
    );
    const oldest = c.evictOldest()!;
    assert.equal(oldest.batchId, 'B');
    assert.equal(oldest.received, 1);
    assert.equal(oldest.sinceMs, 200);
    assert.equal(c.heldBytes, 1);
    c.add('D', { index: 1, count: 2 }, msg(Buffer.from('dddd'), 'd'), 500);
    assert.deepEqual(c.takeOlderThan(300), []);
    assert.deepEqual(
      c.takeOlderThan(301).map((h) => h.batchId),
      ['C'],
    );
    assert.equal(c.heldBytes, 4);
    assert.deepEqual(
      c.takeAll().map((h) => [h.batchId, h.bytes]),
      [['D', 4]],
    );
    assert.equal(c.size, 0);
    assert.equal(c.heldBytes, 0);
    assert.equal(c.evictOldest(), undefined);
  });
});
