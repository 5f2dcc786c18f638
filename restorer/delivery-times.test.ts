// Delivery times after a source-clock load: each entry's last delivery follows its stream through SWAPDB, MOVE,
// RENAME and COPY, and two streams of one name in two dbs keep their own (seen in a soak on Redis 8.0.2: a delivery
// in db 3 set the time of the same entry id of the same-named stream in db 0).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliveryTracker, replicatedDelivery } from './delivery-times.js';

const argv = (...a: (string | number)[]) => a.map((x) => Buffer.from(String(x)));
const claim = (key: string, group: string, consumer: string, id: string, timeMs: number) =>
  argv('XCLAIM', key, group, consumer, 0, id, 'TIME', timeMs, 'RETRYCOUNT', 1, 'FORCE', 'JUSTID', 'LASTID', id);
const listed = (t: DeliveryTracker) =>
  t
    .deliveries()
    .map((d) => `${d.db} ${String(d.key)} ${String(d.group)} ${String(d.id)} ${d.timeMs}`)
    .sort();

describe('DeliveryTracker', () => {
  it('keeps the last delivery of each entry, per db', () => {
    const t = new DeliveryTracker();
    t.apply(0, claim('s', 'g', 'c1', '1-0', 100));
    t.apply(3, claim('s', 'g', 'c2', '1-0', 200)); // same name, same id, another db's stream
    t.apply(0, claim('s', 'g', 'c1', '1-0', 150));
    assert.deepEqual(listed(t), ['0 s g 1-0 150', '3 s g 1-0 200']);
  });

  it('follows SWAPDB both ways, however often', () => {
    const t = new DeliveryTracker();
    t.apply(0, claim('s', 'g', 'c', '1-0', 100));
    t.apply(1, claim('s', 'g', 'c', '1-0', 200));
    t.apply(5, argv('SWAPDB', 0, 1));
    assert.deepEqual(listed(t), ['0 s g 1-0 200', '1 s g 1-0 100']);
    t.apply(0, claim('s', 'g', 'c', '1-0', 300)); // db 0 now holds what was db 1's
    t.apply(0, argv('SWAPDB', 1, 2));
    assert.deepEqual(listed(t), ['0 s g 1-0 300', '2 s g 1-0 100']);
  });

  it('carries deliveries with MOVE, RENAME and COPY, and drops them with DEL, RESTORE and FLUSH', () => {
    const t = new DeliveryTracker();
    t.apply(0, claim('a', 'g', 'c', '1-0', 100));
    t.apply(0, argv('MOVE', 'a', 2));
    assert.deepEqual(listed(t), ['2 a g 1-0 100']);
    t.apply(2, argv('RENAME', 'a', 'b'));
    assert.deepEqual(listed(t), ['2 b g 1-0 100']);
    t.apply(2, argv('COPY', 'b', 'c', 'DB', 4));
    assert.deepEqual(listed(t), ['2 b g 1-0 100', '4 c g 1-0 100']);
    t.apply(2, argv('DEL', 'x', 'b'));
    assert.deepEqual(listed(t), ['4 c g 1-0 100']);
    t.apply(4, claim('d', 'g', 'c', '2-0', 5));
    t.apply(4, argv('RESTORE', 'c', 0, 'payload'));
    assert.deepEqual(listed(t), ['4 d g 2-0 5']);
    t.apply(4, argv('FLUSHDB'));
    assert.deepEqual(listed(t), []);
    t.apply(1, claim('e', 'g', 'c', '3-0', 7));
    t.apply(1, argv('FLUSHALL'));
    assert.deepEqual(listed(t), []);
  });

  it('reads a delivery only from a replicated XCLAIM (TIME and LASTID), not a client one', () => {
    assert.equal(replicatedDelivery(argv('XCLAIM', 's', 'g', 'c', 0, '1-0'))?.timeMs, undefined);
    assert.equal(replicatedDelivery(claim('s', 'g', 'c', '1-0', 42))?.timeMs, 42);
  });
});
