import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventKind, type FlashbackEvent } from '../../core/bus/event.js';
import { HeldQueue } from './held-queue.js';

const event = (seq: number): FlashbackEvent => ({
  node: 'n',
  epoch: 1,
  seq,
  tsUs: seq,
  db: 0,
  client: 'c',
  kind: EventKind.Command,
  command: 'SET',
  keys: [],
  args: [Buffer.from('SET'), Buffer.alloc(10)],
  replay: [],
  tx: 0,
});

test('held queue: positions stay valid while the front is taken, across compactions; bytes follow what is held', () => {
  const q = new HeldQueue();
  let seq = 1;
  let taken = 0;
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 1000; i++) q.push(event(seq++));
    const mid = q.positionOf(q.at(q.start)!.seq + 700);
    assert.equal(q.at(mid)!.seq, q.at(q.start)!.seq + 700);
    const out = q.take(mid);
    assert.equal(out.length, 700);
    assert.equal(out[0]!.seq, taken + 1, 'taken in order, nothing skipped');
    taken += out.length;
    assert.equal(q.start, taken);
    assert.equal(q.length, q.end - taken);
    assert.equal(q.at(q.start)!.seq, taken + 1);
    assert.equal(q.bytes, q.length * (128 + 13));
  }
  assert.equal(q.positionOf(seq + 5), q.end, 'a seq not pushed yet is at the end');
  assert.equal(q.take(q.end).length, 50 * 300);
  assert.equal(q.length, 0);
  assert.equal(q.bytes, 0);
  assert.equal(q.last, undefined);
});
