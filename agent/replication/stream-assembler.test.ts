// StreamAssembler: replication-stream entries → events, timed by the anchor after them, one tx per MULTI block, the
// db the stream has selected, and positions that carry it (a continued stream does not repeat its SELECT).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ANCHOR_CHANNEL } from '../../core/bus/baseline.js';
import { ANCHOR_COMMAND, EventKind, REPLICATION_CLIENT, type FlashbackEvent } from '../../core/bus/event.js';
import { CommandTable } from '../../core/redis/command-table.js';
import { parsePosition } from './resume.js';
import { StreamAssembler } from './stream-assembler.js';

// A command table reply of the few commands used here: name, arity, flags, first key, last key, step.
const table = CommandTable.fromReply(
  ['set', 'incr', 'srem', 'del', 'publish', 'select', 'multi', 'exec', 'ping'].map((name) => [
    Buffer.from(name),
    -2,
    [Buffer.from('write')],
    ['publish', 'select', 'multi', 'exec', 'ping'].includes(name) ? 0 : 1,
    ['publish', 'select', 'multi', 'exec', 'ping'].includes(name) ? 0 : 1,
    1,
  ]),
);

const b = (...xs: string[]) => xs.map((x) => Buffer.from(x));

function harness(o: { db?: number; lastSeq?: number } = {}) {
  const out: { events: FlashbackEvent[]; offset: number; db: number }[] = [];
  let anchorsWanted = 0;
  const a = new StreamAssembler({
    node: 'n',
    epoch: 7,
    table,
    lastSeq: o.lastSeq ?? 0,
    db: o.db,
    emit: (events, offset, db) => out.push({ events, offset, db }),
    wantAnchor: () => anchorsWanted++,
    serverNowUs: () => 2_000_000_000_000_000,
  });
  let offset = 100;
  const push = (...argv: string[]) => a.push(b(...argv), (offset += 10));
  return { a, out, push, wanted: () => anchorsWanted };
}

describe('StreamAssembler', () => {
  it('holds entries until the next anchor and gives them its time, then stores the anchor after them', () => {
    const h = harness();
    h.push('SET', 'k', 'v');
    h.push('INCR', 'n');
    assert.equal(h.out.length, 0);
    assert.ok(h.wanted() >= 1);
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000123');
    assert.equal(h.out.length, 1);
    const { events, offset } = h.out[0]!;
    assert.deepEqual(
      events.map((e) => [e.seq, e.command, e.tsUs, e.client]),
      [
        [1, 'SET', 1796000000000123, REPLICATION_CLIENT],
        [2, 'INCR', 1796000000000123, REPLICATION_CLIENT],
        [3, ANCHOR_COMMAND, 1796000000000123, 'agent'],
      ],
    );
    assert.equal(events[2]!.kind, EventKind.Heartbeat);
    assert.equal(offset, 130);
  });

  it('one tx per MULTI block; an anchor inside a block is no anchor', () => {
    const h = harness();
    h.push('MULTI');
    h.push('SREM', 's', 'a');
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000001');
    h.push('SREM', 's', 'b');
    h.push('EXEC');
    h.push('SET', 'x', '1');
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000002');
    const ev = h.out.flatMap((x) => x.events);
    assert.deepEqual(
      ev.map((e) => [e.seq, e.command, e.tx]),
      [
        [1, 'SREM', 1],
        [2, 'SREM', 1],
        [3, 'SET', 0],
        [4, ANCHOR_COMMAND, 0],
      ],
    );
  });

  it('follows SELECT, and positions carry the db the stream has selected', () => {
    const h = harness();
    h.push('SELECT', '3');
    assert.deepEqual(h.out.pop(), { events: [], offset: 110, db: 3 });
    h.push('SET', 'k', 'v');
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000001');
    const last = h.out.pop()!;
    assert.equal(last.events[0]!.db, 3);
    assert.equal(last.db, 3);
  });

  it('a resumed stream starts in the db its position names', () => {
    const h = harness({ db: 2, lastSeq: 40 });
    h.push('INCR', 'n');
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000001');
    const e = h.out[0]!.events[0]!;
    assert.equal(e.db, 2);
    assert.equal(e.seq, 41);
    assert.deepEqual(parsePosition(`7 41 ${'a'.repeat(40)} 500 1796000000000001 2`), {
      epoch: 7,
      seq: 41,
      tsUs: 1796000000000001,
      position: { replid: 'a'.repeat(40), offset: 500, db: 2 },
    });
    assert.equal(parsePosition('7 41 x 500 1 2'), undefined);
  });

  it('ignores anchors that are no time or lie in the future, and never goes back in time', () => {
    const h = harness();
    h.push('SET', 'k', 'v');
    h.push('PUBLISH', ANCHOR_CHANNEL, 'soon');
    h.push('PUBLISH', ANCHOR_CHANNEL, '9999999999.000000');
    assert.equal(h.out.length, 0);
    assert.equal(h.a.forgedAnchors, 2);
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000500');
    h.push('SET', 'k', 'w');
    h.push('PUBLISH', ANCHOR_CHANNEL, '1796000000.000100');
    const ts = h.out.flatMap((x) => x.events).map((e) => e.tsUs);
    assert.deepEqual(ts, [1796000000000500, 1796000000000500, 1796000000000500, 1796000000000500]);
  });
});

describe('StreamAssembler.closeWith', () => {
  it('publishes what waits with the given time, but never half a MULTI block', () => {
    const h = harness();
    h.push('SET', 'a', '1');
    h.push('MULTI');
    h.push('SREM', 's', 'x');
    h.a.closeWith(1796000000000900, 999);
    const { events, offset } = h.out[0]!;
    assert.deepEqual(
      events.map((e) => [e.seq, e.command, e.tsUs]),
      [[1, 'SET', 1796000000000900]],
    );
    assert.equal(offset, 999);
    assert.equal(parsePosition(`7 1 ${'a'.repeat(40)} 999 1796000000000900 0 end`), undefined);
  });
});
