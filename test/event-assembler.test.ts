// EventAssembler on a real redis-server's MONITOR stream: writes only, gapless seq, MULTI/EXEC, DISCARD, WATCH abort,
// scripts, markers, bytes, db, expiries.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { EventAssembler } from '../agent/monitor/event-assembler.js';
import { MARKER_CHANNEL } from '../core/bus/baseline.js';
import { CommandTable } from '../core/redis/command-table.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import type { MonitorLine } from '../core/redis/monitor-line.js';
import { MonitorParser } from '../core/redis/monitor-parser.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { testRedis } from './helpers/servers.js';

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const str = (b: Buffer) => b.toString('latin1');
const BIN_KEY = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x22, 0x5c, 0x20]);
const BIN_VALUE = Buffer.from([0x01, 0x80, 0x00, 0xfe]);

describe('EventAssembler (live MONITOR)', () => {
  let redis: ServerProcess;
  let control: RawRedis;
  let monitorConn: RawRedis;
  let w: Redis;
  let w2: Redis;
  let assembler: EventAssembler;
  const lines: MonitorLine[] = [];
  const groups: FlashbackEvent[][] = [];
  const markers: FlashbackEvent[] = [];

  before(async () => {
    redis = await testRedis();
    const target = parseRedisUrl(redis.url);
    control = await RawRedis.connect(target);
    const info = str((await control.call(['CLIENT', 'INFO'])) as Buffer);
    const controlAddr = /addr=(\S+)/.exec(info)![1]!;
    const table = await CommandTable.load(control);
    assembler = new EventAssembler({
      node: 'n1',
      epoch: 42,
      table,
      ownClients: new Set([controlAddr]),
      markerChannel: MARKER_CHANNEL,
      emit: (events) => groups.push(events),
      onMarker: (ev) => markers.push(ev),
    });
    const parser = new MonitorParser((line) => {
      lines.push(line);
      assembler.push(line);
    });
    monitorConn = await RawRedis.connect(target);
    assert.equal(await monitorConn.call(['MONITOR']), 'OK');
    const rest = monitorConn.detach();
    if (rest.length > 0) parser.push(rest);
    monitorConn.socket.on('data', (c: Buffer) => parser.push(c));
    w = new Redis(redis.url, { lazyConnect: true });
    w2 = new Redis(redis.url, { lazyConnect: true });
    await w.connect();
    await w2.connect();
  });

  after(async () => {
    w?.disconnect();
    w2?.disconnect();
    monitorConn?.close();
    control?.close();
    await redis?.stop();
  });

  /** Waits until the line of our own `ECHO tag` arrived: everything before it has been pushed. */
  async function sync(tag: string): Promise<void> {
    await control.call(['ECHO', tag]);
    await until(`ECHO ${tag}`, () =>
      lines.some((l) => l.argv[0] && str(l.argv[0]) === 'ECHO' && l.argv[1] && str(l.argv[1]) === tag),
    );
  }

  test('a mixed workload gives exactly the expected events', async () => {
    await w.set('a', '1');
    await w.get('a');
    await w.multi().set('t1', '1').get('t1').incr('t2').exec();
    await w.multi({ pipeline: false });
    await w.set('d', '1');
    await w.discard();
    await w.watch('wk');
    await w2.set('wk', 'x');
    assert.equal(await w.multi().set('wk', 'y').exec(), null);
    await w.multi({ pipeline: false });
    await assert.rejects(w.call('SET', 'e'));
    await assert.rejects(w.exec());
    await w.eval(
      "redis.call('set', KEYS[1], ARGV[1]); redis.call('get', KEYS[1]); redis.call('hset', KEYS[2], 'f', ARGV[1]); return 1",
      2,
      's1',
      's2',
      'v',
    );
    await w
      .multi()
      .set('m1', '1')
      .eval("redis.call('incr', KEYS[1]) return redis.call('get', KEYS[1])", 1, 'm2')
      .exec();
    await w.eval("return redis.call('get', KEYS[1])", 1, 'a');
    await w.set(BIN_KEY, BIN_VALUE);
    await w.select(3);
    await w.set('in3', 'x');
    await w.select(0);
    await w.set('ttl', 'v', 'EX', 100);
    await control.call(['SET', 'ours', 'x']);
    await control.call(['MULTI']);
    await control.call(['PUBLISH', MARKER_CHANNEL, '{"markerId":"m-1"}']);
    await control.call(['EXEC']);
    await w.call(
      'FUNCTION',
      'LOAD',
      "#!lua name=lib\nredis.register_function('f', function(keys, args) return redis.call('set', keys[1], args[1]) end)",
    );
    await w.fcall('f', 1, 'fk', 'fv');
    await w.flushdb();
    await sync('done');

    const events = groups.flat();
    const shape = events.map((e) => [
      e.seq,
      e.kind,
      e.command,
      e.args.map(str).join(' '),
      e.db,
      e.client === 'lua' ? 'lua' : e.client === 'agent' ? 'agent' : 'client',
      e.tx,
    ]);
    const bin = str(BIN_KEY) + ' ' + str(BIN_VALUE);
    assert.deepEqual(shape, [
      [1, 'command', 'SET', 'set a 1', 0, 'client', 0],
      [2, 'command', 'SET', 'set t1 1', 0, 'client', 2],
      [3, 'command', 'INCR', 'incr t2', 0, 'client', 2],
      [4, 'command', 'SET', 'set wk x', 0, 'client', 0],
      [5, 'command', 'SET', 'set s1 v', 0, 'lua', 5],
      [6, 'command', 'HSET', 'hset s2 f v', 0, 'lua', 5],
      [7, 'command', 'SET', 'set m1 1', 0, 'client', 7],
      [8, 'command', 'INCR', 'incr m2', 0, 'lua', 7],
      [9, 'command', 'SET', `set ${bin}`, 0, 'client', 0],
      [10, 'command', 'SET', 'set in3 x', 3, 'client', 0],
      [11, 'command', 'SET', 'set ttl v EX 100', 0, 'client', 0],
      [12, 'baseline', 'PUBLISH', `PUBLISH ${MARKER_CHANNEL} {"markerId":"m-1"}`, 0, 'client', 0],
      [
        13,
        'command',
        'FUNCTION',
        `FUNCTION LOAD #!lua name=lib\nredis.register_function('f', function(keys, args) return redis.call('set', keys[1], args[1]) end)`,
        0,
        'client',
        0,
      ],
      [14, 'command', 'SET', 'set fk fv', 0, 'lua', 14],
      [15, 'command', 'FLUSHDB', 'flushdb', 0, 'client', 0],
    ]);
    assert.equal(assembler.lastSeq, 15);
    assert.equal(assembler.unknownCommands, 0);

    // Groups: one emit per transaction / script, single events otherwise.
    assert.deepEqual(
      groups.map((g) => g.map((e) => e.seq)),
      [[1], [2, 3], [4], [5, 6], [7, 8], [9], [10], [11], [12], [13], [14], [15]],
    );
    for (const e of events) assert.ok(e.node === 'n1' && e.epoch === 42);

    // Binary bytes exact, keys from the key specs.
    const binEvent = events[8]!;
    assert.ok(binEvent.args[1]!.equals(BIN_KEY) && binEvent.args[2]!.equals(BIN_VALUE));
    assert.ok(binEvent.keys.length === 1 && binEvent.keys[0]!.equals(BIN_KEY));
    assert.deepEqual(events[5]!.keys.map(str), ['s2']);
    assert.deepEqual(events[12]!.keys, []);

    // A group carries its commit time: EXEC's line for MULTI, the last lua line for a script.
    const lineOf = (pred: (l: MonitorLine) => boolean) => lines.find(pred)!;
    const execs = lines.filter((l) => str(l.argv[0]!).toUpperCase() === 'EXEC' && l.client !== 'lua');
    assert.equal(events[1]!.tsUs, events[2]!.tsUs);
    assert.ok(
      execs.some((l) => l.tsUs === events[1]!.tsUs),
      'MULTI group at its EXEC time',
    );
    const lastLuaOfS = lineOf((l) => l.client === 'lua' && str(l.argv[0]!) === 'hset');
    assert.equal(events[4]!.tsUs, lastLuaOfS.tsUs);
    assert.equal(events[5]!.tsUs, lastLuaOfS.tsUs);
    assert.equal(events[0]!.tsUs, lineOf((l) => str(l.argv[0]!) === 'set' && str(l.argv[1]!) === 'a').tsUs);

    // Expiry normalized from the command's own line; replay is args itself where nothing changes.
    const ttlLine = lineOf((l) => str(l.argv[1] ?? Buffer.alloc(0)) === 'ttl');
    assert.deepEqual(events[10]!.replay.map(str), [
      'set',
      'ttl',
      'v',
      'PXAT',
      String(Math.floor(ttlLine.tsUs / 1000) + 100_000),
    ]);
    assert.equal(events[0]!.replay, events[0]!.args);

    // The marker: nothing to replay, reported to onMarker with its seq.
    assert.deepEqual(events[11]!.replay, []);
    assert.equal(markers.length, 1);
    assert.equal(markers[0]!.seq, 12);
  });

  test('a script stays pending until a later line (the probe) proves it ended', async () => {
    const before = assembler.lastSeq;
    await w.eval("redis.call('set', KEYS[1], 'p') redis.call('rpush', KEYS[2], 'x') return 1", 2, 'p1', 'p2');
    await until('the script lines', () => lines.some((l) => l.client === 'lua' && str(l.argv[0]!) === 'rpush'));
    assert.equal(assembler.pendingScript, true);
    assert.equal(assembler.lastSeq, before, 'nothing emitted while the script may go on');
    await control.call(['ECHO', 'flashback-probe']);
    await until('the probe line', () => !assembler.pendingScript);
    const last = groups.at(-1)!;
    assert.deepEqual(
      last.map((e) => [e.seq, e.args.map(str).join(' '), e.tx]),
      [
        [before + 1, 'set p1 p', before + 1],
        [before + 2, 'rpush p2 x', before + 1],
      ],
    );
  });

  test('a MULTI left without EXEC (client gone, ip:port reused) yields plain events; unknown commands are counted', () => {
    const line = (client: string, ...argv: string[]): MonitorLine => ({
      tsUs: 1_000_000,
      db: 0,
      client,
      argv: argv.map((a) => Buffer.from(a)),
    });
    const before = assembler.lastSeq;
    const unknownBefore = assembler.unknownCommands;
    assembler.push(line('10.0.0.1:1', 'MULTI'));
    assembler.push(line('10.0.0.1:1', 'SET', 'x', '1'));
    assembler.push(line('10.0.0.2:2', 'SET', 'y', '2'));
    assembler.push(line('10.0.0.2:2', 'MODULE.WRITE', 'k'));
    const got = groups.slice(-2).map((g) => g.map((e) => [e.seq, e.args.map(str).join(' '), e.tx]));
    assert.deepEqual(got, [[[before + 1, 'SET x 1', 0]], [[before + 2, 'SET y 2', 0]]]);
    assert.equal(assembler.unknownCommands, unknownBefore + 1);
  });

  test('server-side expirations and evictions wait for the next line: placed before it, with its time, replayed as DEL', () => {
    const before = assembler.lastSeq;
    const groupsBefore = groups.length;
    assembler.pushServerEvent({ kind: 'expired', db: 2, key: BIN_KEY });
    assembler.pushServerEvent({ kind: 'evicted', db: 2, key: BIN_KEY });
    assert.equal(groups.length, groupsBefore, 'held until the next line proves their time');
    assert.equal(assembler.pendingServerEvents, true);
    assembler.push({
      tsUs: 1_700_000_000_123_456,
      db: 0,
      client: '10.0.0.9:9',
      argv: [Buffer.from('SET'), Buffer.from('k'), Buffer.from('v')],
    });
    const got = groups.slice(groupsBefore).flat();
    assert.deepEqual(
      got.map((e) => [e.seq, e.kind, e.tsUs]),
      [
        [before + 1, 'expired', 1_700_000_000_123_456],
        [before + 2, 'evicted', 1_700_000_000_123_456],
        [before + 3, 'command', 1_700_000_000_123_456],
      ],
    );
    assert.deepEqual(got[0]!.replay.map(str), ['DEL', str(BIN_KEY)]);
    assert.ok(got[0]!.keys[0]!.equals(BIN_KEY));
    assert.deepEqual(got[1]!.replay.map(str), ['DEL', str(BIN_KEY)]);
    assert.equal(assembler.pendingServerEvents, false);
  });
});
