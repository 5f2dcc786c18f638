// ConsumerCreations: the consumers a group read created without an entry (Redis 7.2+, Valkey) become events where the
// read ran, once per consumer until an entry may have removed it; the output's seqs and tx ids stay gapless.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ANCHOR_COMMAND, EventKind, REPLICATION_CLIENT, type FlashbackEvent } from '../../core/bus/event.js';
import type { IssuedWrite } from './attribution.js';
import { ConsumerCreations, CREATE_CONSUMER_SCRIPT, parseGroupRead } from './consumer-creations.js';

const b = (...xs: string[]) => xs.map((x) => Buffer.from(x));

function ev(
  seq: number,
  command: string,
  key: string | undefined,
  tx = 0,
  kind: EventKind = EventKind.Command,
): FlashbackEvent {
  return {
    node: 'n',
    epoch: 3,
    seq,
    tsUs: 0,
    db: 0,
    client: REPLICATION_CLIENT,
    kind,
    command,
    keys: key === undefined ? [] : b(key),
    args: b(command),
    replay: b(command),
    tx,
  };
}

const anchor = (seq: number) => ev(seq, ANCHOR_COMMAND, undefined, 0, EventKind.Heartbeat);

function read(consumer: string, tsUs: number, ...keys: string[]): IssuedWrite {
  const argv = b('XREADGROUP', 'GROUP', 'g', consumer, 'COUNT', '5', 'STREAMS', ...keys, ...keys.map(() => '>'));
  return { tsUs, db: 0, client: '10.0.0.1:5000', argv, name: 'XREADGROUP', firstKey: argv[7] };
}

describe('ConsumerCreations', () => {
  it('adds one event per stream the read named, after the entry of the write before it, and renumbers the output', () => {
    const c = new ConsumerCreations();
    // reader's read delivered (XCLAIM + SETID in one block), idle's did not, then a SET that left an entry.
    const events = [ev(10, 'XREADGROUP', 's', 10), ev(11, 'XREADGROUP', 's', 10), ev(12, 'SET', 'k'), anchor(13)];
    const set: IssuedWrite = {
      tsUs: 30,
      db: 0,
      client: 'x',
      argv: b('SET', 'k', 'v'),
      name: 'SET',
      firstKey: b('k')[0],
    };
    const writes = [read('reader', 10), read('idle', 20, 's', 't'), set];
    const times: (number | undefined)[] = [10, 10, 30, undefined];
    assert.equal(c.insert(events, writes, [1, undefined, 2], times), 2);
    assert.deepEqual(
      events.map((e) => [e.seq, e.command, e.keys.map(String), e.tx]),
      [
        [10, 'XREADGROUP', ['s'], 10],
        [11, 'XREADGROUP', ['s'], 10],
        [12, 'XREADGROUP', ['s'], 0],
        [13, 'XREADGROUP', ['t'], 0],
        [14, 'SET', ['k'], 0],
        [15, ANCHOR_COMMAND, [], 0],
      ],
    );
    assert.deepEqual(times, [10, 10, 20, 20, 30, undefined]);
    assert.deepEqual(events[2]!.replay.map(String), ['EVAL', CREATE_CONSUMER_SCRIPT, '1', 's', 'g', 'idle']);
    assert.equal(events[2]!.client, '10.0.0.1:5000');
  });

  it('a polling consumer costs one event; an entry on its key (DELCONSUMER, DEL) or a FLUSHALL makes it count again', () => {
    const c = new ConsumerCreations();
    const once = (...extra: FlashbackEvent[]) => {
      const events = [...extra, anchor(100)];
      return c.insert(
        events,
        [read('idle', 5, 's')],
        [undefined],
        events.map(() => undefined),
      );
    };
    assert.equal(once(), 1);
    assert.equal(once(), 0);
    assert.equal(once(ev(99, 'XADD', 's')), 0, 'XADD leaves consumers as they are');
    assert.equal(once(ev(99, 'XGROUP', 's')), 1, 'an XGROUP entry in the same output: added again');
    assert.equal(once(), 1, 'and not remembered, since the entry may have come after the read');
    assert.equal(once(), 0);
    assert.equal(once(ev(99, 'DEL', 'other')), 0, 'another key');
    assert.equal(once(ev(99, 'FLUSHALL', undefined)), 1);
  });

  it('goes before an output’s anchor when no write left an entry, and never ahead of the epoch’s marker', () => {
    const c = new ConsumerCreations();
    const idle = [anchor(7)];
    assert.equal(c.insert(idle, [read('a', 1, 's')], [undefined], [undefined]), 1);
    assert.deepEqual(
      idle.map((e) => [e.seq, e.command]),
      [
        [7, 'XREADGROUP'],
        [8, ANCHOR_COMMAND],
      ],
    );
    const first = [ev(1, 'PUBLISH', undefined, 0, EventKind.Baseline), ev(2, 'SET', 'k'), anchor(3)];
    const set: IssuedWrite = {
      tsUs: 9,
      db: 0,
      client: 'x',
      argv: b('SET', 'k', 'v'),
      name: 'SET',
      firstKey: b('k')[0],
    };
    assert.equal(c.insert(first, [read('b', 1, 's'), set], [undefined, 0], [undefined, 9, undefined]), 1);
    assert.deepEqual(
      first.map((e) => [e.seq, e.kind === EventKind.Baseline ? 'marker' : e.command]),
      [
        [1, 'marker'],
        [2, 'XREADGROUP'],
        [3, 'SET'],
        [4, ANCHOR_COMMAND],
      ],
    );
  });

  it('a consumer the watch found goes after the interval’s last entry on its stream, else first; timed by the anchor', () => {
    const c = new ConsumerCreations();
    const found = (key: string, consumer: string) => ({
      db: 0,
      key: Buffer.from(key),
      group: Buffer.from('g'),
      consumer: Buffer.from(consumer),
    });
    const events = [ev(20, 'DEL', 'marker'), ev(21, 'XGROUP', 's'), ev(22, 'SET', 'k'), anchor(23)];
    events[3]!.tsUs = 777;
    assert.equal(c.insertInInterval(events, [found('s', 'a'), found('t', 'b'), found('s', 'a')]), 2);
    assert.deepEqual(
      events.map((e) => [e.seq, e.command, e.args.map(String).join(' ')]),
      [
        [20, 'XGROUP', 'XGROUP CREATECONSUMER t g b'],
        [21, 'DEL', 'DEL'],
        [22, 'XGROUP', 'XGROUP'],
        [23, 'XGROUP', 'XGROUP CREATECONSUMER s g a'],
        [24, 'SET', 'SET'],
        [25, ANCHOR_COMMAND, ANCHOR_COMMAND],
      ],
    );
    assert.deepEqual(events[3]!.replay.map(String), ['EVAL', CREATE_CONSUMER_SCRIPT, '1', 's', 'g', 'a']);
    assert.equal(events[0]!.tsUs, 777);
    // s was touched in that output (XGROUP): not remembered; t was: found again, nothing added.
    assert.equal(c.insertInInterval([anchor(30)], [found('s', 'a'), found('t', 'b')]), 1);
  });

  it('reads the group, consumer and keys of every form of XREADGROUP, and refuses what is not one', () => {
    const r = parseGroupRead(b('xreadgroup', 'group', 'g', 'c', 'BLOCK', '0', 'NOACK', 'STREAMS', 'a', 'b', '>', '0'));
    assert.deepEqual(r && [String(r.group), String(r.consumer), r.keys.map(String)], ['g', 'c', ['a', 'b']]);
    assert.equal(parseGroupRead(b('XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 'a', 'b', '>')), undefined);
    assert.equal(parseGroupRead(b('XREADGROUP', 'STREAMS', 'a', '>')), undefined);
    assert.equal(parseGroupRead(b('XREADGROUP', 'GROUP', 'g', 'c', 'BOGUS', 'STREAMS', 'a', '>')), undefined);
  });
});
