// LazyExpiryReorder: guards put before held events that mention an expired key, release order, window and maxHeld.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeCommand } from '../core/redis/resp.js';
import type { StoredEvent } from '../core/store/event-store.js';
import type { ReplayItem } from './incr-writer.js';
import { LAZY_EXPIRE_SCRIPT, LazyExpiryReorder } from './lazy-expiry.js';

const AGENT_EXPIRE_SCRIPT = "redis.call('DEL', KEYS[1])";

function cmd(seq: number, tsUs: number, argv: (string | Buffer)[], over: Partial<StoredEvent> = {}): StoredEvent {
  return { seq, tsUs, db: 0, tx: 0, kind: 'command', resp: encodeCommand(argv), ...over };
}

/** An expiration as agents reading notifications on their own connection stored it: EVAL <script> 1 <key> <ms>. */
function expired(seq: number, tsUs: number, key: string | Buffer, db = 0): StoredEvent {
  const argv = ['EVAL', AGENT_EXPIRE_SCRIPT, '1', key, String(Math.floor(tsUs / 1000))];
  return { seq, tsUs, db, tx: 0, kind: 'expired', resp: encodeCommand(argv) };
}

const guard = (key: string | Buffer, ms: number) => encodeCommand(['EVAL', LAZY_EXPIRE_SCRIPT, '1', key, String(ms)]);

/** What reached `out`, as comparable rows: [seq, db, tx, resp as latin1]. */
function sink() {
  const items: ReplayItem[] = [];
  const rows = () => items.map((i) => [i.seq, i.db, i.tx, i.resp.toString('latin1')]);
  return { out: async (i: ReplayItem) => void items.push(i), items, rows };
}
const row = (i: ReplayItem) => [i.seq, i.db, i.tx, i.resp.toString('latin1')];

describe('LazyExpiryReorder', () => {
  it("guards each held event of the db that mentions the expired key, at that event's own time", async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out);
    const incr = cmd(1, 1_000_999, ['INCR', 'k']);
    const other = cmd(2, 1_001_000, ['SET', 'other', 'v']);
    const hget = cmd(3, 1_500_000, ['HGET', 'h', 'k'], { tx: 3 });
    const exp = expired(4, 1_600_000, 'k');
    for (const e of [incr, other, hget, exp]) await r.push(e);
    assert.equal(s.items.length, 0, 'all within the window: held');
    await r.end();
    assert.deepEqual(s.rows(), [
      [1, 0, 0, guard('k', 1_000).toString('latin1')],
      row(incr),
      row(other),
      [3, 0, 3, guard('k', 1_500).toString('latin1')],
      row(hget),
      row(exp),
    ]);
    assert.equal(r.guards, 2);
    assert.equal(s.items[1], incr, 'the event itself is passed on');
  });

  it('matches whole argument bytes: not other dbs, expirations, substrings or the command name', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out);
    const events = [
      cmd(1, 10, ['SET', 'k', 'v'], { db: 1 }),
      expired(2, 20, 'k'),
      cmd(3, 30, ['SET', 'kk', 'k2']),
      cmd(4, 40, ['k', 'x']),
      cmd(5, 50, ['SET', 'x', 'k']),
    ];
    for (const e of events) await r.push(e);
    await r.push(expired(6, 60, 'k'));
    await r.end();
    // only seq 5 (a value equal to the key: a guard is never wrong, only costs time)
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [1, 2, 3, 4, 5, 5, 6],
    );
    assert.deepEqual(s.items[4]!.resp, guard('k', 0));
    assert.equal(r.guards, 1);
  });

  it('matches binary keys byte for byte', async () => {
    const key = Buffer.from([0x00, 0xff, 0x0d, 0x0a]);
    const s = sink();
    const r = new LazyExpiryReorder(s.out);
    await r.push(cmd(1, 5_000, ['GET', key]));
    await r.push(cmd(2, 6_000, ['GET', Buffer.from([0x00, 0xff, 0x0d])]));
    await r.push(expired(3, 7_000, key));
    await r.end();
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [1, 1, 2, 3],
    );
    assert.deepEqual(s.items[0]!.resp, guard(key, 5));
  });

  it('passes DEL-form expirations (notifications read on the MONITOR socket) through unguarded', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out);
    const events = [cmd(1, 10, ['INCR', 'k']), { ...cmd(2, 20, ['DEL', 'k']), kind: 'expired' }];
    for (const e of events) await r.push(e);
    await r.end();
    assert.deepEqual(s.items, events);
    assert.equal(r.guards, 0);
  });

  it('releases events older than the window, in order; one exactly at the edge stays held', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out, 1_000);
    await r.push(cmd(1, 0, ['SET', 'a', '1']));
    await r.push(cmd(2, 500, ['SET', 'b', '1']));
    await r.push(cmd(3, 1_000, ['SET', 'c', '1']));
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [],
      'seq 1 is exactly windowUs old',
    );
    await r.push(cmd(4, 1_600, ['SET', 'd', '1']));
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [1, 2],
    );
    // an expiration now reaches only what is still held
    await r.push(expired(5, 1_700, 'a'));
    await r.push(expired(6, 1_800, 'c'));
    await r.end();
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [1, 2, 3, 3, 4, 5, 6],
    );
    assert.equal(r.guards, 1);
  });

  it('holds at most maxHeld events whatever their times', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out, 1e12, 2);
    for (let i = 1; i <= 5; i++) {
      await r.push(cmd(i, i, ['SET', `k${i}`, 'v']));
      assert.deepEqual(
        s.items.map((x) => x.seq),
        Array.from({ length: Math.max(0, i - 2) }, (_, j) => j + 1),
      );
    }
    await r.end();
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [1, 2, 3, 4, 5],
    );
  });

  it('lookahead guards held events without emitting the late expiration itself', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out);
    await r.push(cmd(1, 3_000_000, ['LPUSH', 'q', 'x'], { db: 2, tx: 1 }));
    r.lookahead(expired(99, 3_500_000, 'q', 2));
    r.lookahead(expired(100, 3_600_000, 'q', 3));
    await r.end();
    assert.deepEqual(s.rows(), [
      [1, 2, 1, guard('q', 3_000).toString('latin1')],
      [1, 2, 1, s.items[1]!.resp.toString('latin1')],
    ]);
    assert.equal(r.guards, 1);
  });

  it('end() empties it: a second end() emits nothing and later pushes start afresh', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out);
    await r.push(cmd(1, 1, ['SET', 'k', 'v']));
    await r.end();
    await r.end();
    await r.push(expired(2, 2, 'k'));
    await r.end();
    assert.deepEqual(
      s.items.map((i) => i.seq),
      [1, 2],
    );
    assert.equal(r.guards, 0);
  });

  it('keeps order through the held-array compaction of a long run', async () => {
    const s = sink();
    const r = new LazyExpiryReorder(s.out, 100, 20_000);
    for (let i = 1; i <= 12_000; i++) await r.push(cmd(i, i * 10, ['SET', 'k', String(i)]));
    await r.push(expired(12_001, 120_005, 'k'));
    await r.end();
    // held at the expiration: the 11 events of the last 100 µs (ts 119_900 … 120_000), each gets its guard
    assert.equal(r.guards, 11);
    const want: number[] = [];
    for (let i = 1; i <= 12_000; i++) want.push(...(i >= 11_990 ? [i, i] : [i]));
    want.push(12_001);
    assert.deepEqual(
      s.items.map((i) => i.seq),
      want,
    );
    assert.deepEqual(s.items[11_989]!.resp, guard('k', 119));
  });
});
