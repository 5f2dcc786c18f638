// MonitorParser/parseMonitorLine: exact bytes from real redis-server MONITOR captures, every chunk split, malformed
// input, one live capture.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ProtocolError } from '../errors.js';
import type { MonitorLine } from './monitor-line.js';
import { MonitorParser, parseMonitorLine } from './monitor-parser.js';
import {
  captureMonitor,
  FIXTURE_DIR,
  startRedis,
  WORKLOADS,
  type MonitorCapture,
  type MonitorFixture,
} from '../../test/fixtures/capture-monitor.js';
import { seededRandom } from '../../test/helpers/seeded-random.js';

function loadFixture(name: string): MonitorCapture {
  return {
    raw: readFileSync(path.join(FIXTURE_DIR, `${name}.bin`)),
    fixture: JSON.parse(readFileSync(path.join(FIXTURE_DIR, `${name}.json`), 'utf8')) as MonitorFixture,
  };
}

/** Parses `raw` fed as the given chunks; returns the lines and what the parser still holds. */
function parseChunks(chunks: Iterable<Buffer>): { lines: MonitorLine[]; buffered: number } {
  const lines: MonitorLine[] = [];
  const parser = new MonitorParser((l) => lines.push(l));
  for (const c of chunks) parser.push(c);
  return { lines, buffered: parser.buffered };
}

function* splitAt(raw: Buffer, cuts: number[]): Generator<Buffer> {
  let from = 0;
  for (const c of cuts) {
    yield raw.subarray(from, c);
    from = c;
  }
  yield raw.subarray(from);
}

function* bytewise(raw: Buffer): Generator<Buffer> {
  for (let i = 0; i < raw.length; i++) yield raw.subarray(i, i + 1);
}

const rng = seededRandom;

function randomCuts(length: number, random: () => number, maxChunk: number): number[] {
  const cuts: number[] = [];
  for (let at = 1 + Math.floor(random() * maxChunk); at < length; at += 1 + Math.floor(random() * maxChunk))
    cuts.push(at);
  return cuts;
}

function assertMatches(lines: MonitorLine[], fixture: MonitorFixture, label: string): void {
  assert.equal(lines.length, fixture.lines.length, `${label}: line count`);
  let prevTs = 0;
  fixture.lines.forEach((want, i) => {
    const got = lines[i];
    assert.equal(got.db, want.db, `${label}: db of line ${i}`);
    assert.equal(got.client, want.client, `${label}: client of line ${i}`);
    assert.equal(got.argv.length, want.argv.length, `${label}: argc of line ${i}`);
    want.argv.forEach((b64, j) => {
      const expected = Buffer.from(b64, 'base64');
      assert.ok(Buffer.isBuffer(got.argv[j]), `${label}: line ${i} arg ${j} is a Buffer`);
      assert.ok(
        got.argv[j].equals(expected),
        `${label}: line ${i} arg ${j}: got ${got.argv[j].toString('hex').slice(0, 80)}, want ${expected.toString('hex').slice(0, 80)}`,
      );
    });
    assert.ok(
      got.tsUs >= fixture.capturedFromUs && got.tsUs <= fixture.capturedToUs,
      `${label}: ts of line ${i} (${got.tsUs}) within the capture`,
    );
    assert.ok(got.tsUs >= prevTs, `${label}: ts of line ${i} not before the previous line`);
    prevTs = got.tsUs;
  });
}

describe('MonitorParser on captured redis-server 7.0 output', () => {
  const mixed = loadFixture('mixed');
  const large = loadFixture('large');

  it('decodes every line of the mixed capture to the exact bytes sent', () => {
    const { lines, buffered } = parseChunks([mixed.raw]);
    assertMatches(lines, mixed.fixture, 'whole');
    assert.equal(buffered, 0);
    // The capture covers each client kind and a db above 9.
    const clients = new Set(
      lines.map((l) =>
        l.client.startsWith('unix:') ? 'unix' : l.client.startsWith('[') ? 'ipv6' : l.client === 'lua' ? 'lua' : 'tcp',
      ),
    );
    assert.deepEqual([...clients].sort(), ['ipv6', 'lua', 'tcp', 'unix']);
    assert.ok(lines.some((l) => l.db === 15));
    assert.ok(
      lines.some((l) => l.client.startsWith('unix:') && l.client.includes('] ')),
      'a unix path with "] " in it',
    );
  });

  it('gives the same lines when the mixed capture arrives one byte at a time', () => {
    const { lines, buffered } = parseChunks(bytewise(mixed.raw));
    assertMatches(lines, mixed.fixture, 'bytewise');
    assert.equal(buffered, 0);
  });

  it('gives the same lines for a split at every position of the mixed capture', () => {
    for (let cut = 1; cut < mixed.raw.length; cut++) {
      const { lines } = parseChunks(splitAt(mixed.raw, [cut]));
      assertMatches(lines, mixed.fixture, `cut at ${cut}`);
    }
  });

  it('gives the same lines for random splits of both captures', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const random = rng(seed);
      assertMatches(
        parseChunks(splitAt(mixed.raw, randomCuts(mixed.raw.length, random, 64))).lines,
        mixed.fixture,
        `mixed seed ${seed}`,
      );
    }
    for (let seed = 1; seed <= 5; seed++) {
      const random = rng(seed);
      assertMatches(
        parseChunks(splitAt(large.raw, randomCuts(large.raw.length, random, 70_000))).lines,
        large.fixture,
        `large seed ${seed}`,
      );
    }
  });

  it('decodes 1 MiB values, also fed one byte at a time', () => {
    const whole = parseChunks([large.raw]);
    assertMatches(whole.lines, large.fixture, 'large whole');
    assert.equal(whole.lines[2].argv[2].length, 1024 * 1024);
    const slow = parseChunks(bytewise(large.raw));
    assertMatches(slow.lines, large.fixture, 'large bytewise');
  });

  it('holds a partial line and reports its size in buffered', () => {
    const lines: MonitorLine[] = [];
    const parser = new MonitorParser((l) => lines.push(l));
    const first = mixed.raw.indexOf('\n') + 1;
    parser.push(mixed.raw.subarray(0, first + 10));
    assert.equal(lines.length, 1);
    assert.equal(parser.buffered, 10);
    parser.push(mixed.raw.subarray(first + 10, mixed.raw.indexOf('\n', first) + 1));
    assert.equal(lines.length, 2);
    assert.equal(parser.buffered, 0);
  });
});

describe('parseMonitorLine', () => {
  const line = (s: string | Buffer) => parseMonitorLine(Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'));

  it('reads the timestamp exactly in µs, the db and the client', () => {
    const l = line('1700000000.000001 [12 10.1.2.3:65535] "SET" "k" "v"');
    assert.equal(l.tsUs, 1_700_000_000_000_001);
    assert.equal(l.db, 12);
    assert.equal(l.client, '10.1.2.3:65535');
    assert.deepEqual(l.argv, [Buffer.from('SET'), Buffer.from('k'), Buffer.from('v')]);
    assert.equal(line('1795611592.999999 [0 lua] "GET" "x"').tsUs, 1_795_611_592_999_999);
  });

  it('reads IPv6, lua and unix clients, including a path with "] " in it', () => {
    assert.equal(line('1.000000 [0 [::1]:37968] "PING"').client, '[::1]:37968');
    assert.equal(line('1.000000 [3 lua] "PING"').client, 'lua');
    const u = line('1.000000 [0 unix:/tmp/a b]/r.sock] "set" "k] \\"x" "v"');
    assert.equal(u.client, 'unix:/tmp/a b]/r.sock');
    assert.deepEqual(u.argv, [Buffer.from('set'), Buffer.from('k] "x'), Buffer.from('v')]);
  });

  it('unescapes every sdscatrepr escape to its byte', () => {
    const l = line('1.000000 [0 127.0.0.1:1] "\\\\\\"\\n\\r\\t\\a\\b\\x00\\x7f\\xff\\xAB" "" "a b"');
    assert.deepEqual(l.argv[0], Buffer.from([0x5c, 0x22, 0x0a, 0x0d, 0x09, 0x07, 0x08, 0x00, 0x7f, 0xff, 0xab]));
    assert.deepEqual(l.argv[1], Buffer.alloc(0));
    assert.deepEqual(l.argv[2], Buffer.from('a b'));
  });

  it('honours start and end within a larger buffer', () => {
    const buf = Buffer.from('+1.000001 [1 lua] "A"\r\n+2.000002 [2 lua] "B" "C"\r\n', 'latin1');
    const second = buf.indexOf('+2');
    const l = parseMonitorLine(buf, second + 1, buf.length - 2);
    assert.equal(l.tsUs, 2_000_002);
    assert.deepEqual(l.argv, [Buffer.from('B'), Buffer.from('C')]);
  });

  it('rejects malformed lines with a ProtocolError that shows the line', () => {
    const bad = [
      '',
      'x.000000 [0 lua] "A"',
      '1.00000 [0 lua] "A"',
      '1.000000 0 lua] "A"',
      '1.000000 [x lua] "A"',
      '1.000000 [0 lua]',
      '1.000000 [0 lua] A',
      '1.000000 [0 lua] "A',
      '1.000000 [0 lua] "A""B"',
      '1.000000 [0 lua] "\\q"',
      '1.000000 [0 lua] "\\xg0"',
      '1.000000 [0 lua] "\\x0"',
    ];
    for (const s of bad) {
      assert.throws(
        () => line(s),
        (err: unknown) =>
          err instanceof ProtocolError && err.message.includes('MONITOR line') && err.message.includes('reconnect'),
        s,
      );
    }
  });

  it('keeps the lines after a malformed one for the next push', () => {
    const lines: MonitorLine[] = [];
    const parser = new MonitorParser((l) => lines.push(l));
    const stream = Buffer.from('+1.000001 [0 lua] "A"\r\n-ERR nope\r\n+1.000002 [0 lua] "B"\r\n+1.0000', 'latin1');
    assert.throws(() => parser.push(stream), ProtocolError);
    assert.equal(lines.length, 1);
    parser.push(Buffer.from('03 [0 lua] "C"\r\n'));
    assert.deepEqual(
      lines.map((l) => [l.tsUs, l.argv[0].toString()]),
      [
        [1_000_001, 'A'],
        [1_000_002, 'B'],
        [1_000_003, 'C'],
      ],
    );
  });
});

describe('MonitorParser against a live redis-server', () => {
  it('decodes a fresh capture of every workload in random chunks', async () => {
    const server = await startRedis('flashback mon] ');
    try {
      for (const [name, workload] of Object.entries(WORKLOADS)) {
        const { raw, fixture } = await captureMonitor(server, workload);
        assert.ok(
          Number(fixture.redisVersion.split('.')[0]) >= 7,
          `redis-server ${fixture.redisVersion} is 7 or later`,
        );
        const random = rng(name.length);
        assertMatches(parseChunks(splitAt(raw, randomCuts(raw.length, random, 20_000))).lines, fixture, `live ${name}`);
      }
    } finally {
      await server.stop();
    }
  });
});

describe('MonitorParser with RESP3 push frames (notifications on the MONITOR socket)', () => {
  // A binary key with CR, LF, a quote and 0xff: the frame is length-prefixed, so line splitting must not apply.
  const key = Buffer.from([0x6b, 0x0d, 0x0a, 0x22, 0xff, 0x00]);
  const push = Buffer.concat([
    Buffer.from('>4\r\n$8\r\npmessage\r\n$22\r\n__keyevent@*__:expired\r\n$22\r\n__keyevent@3__:expired\r\n$6\r\n'),
    key,
    Buffer.from('\r\n'),
  ]);
  const raw = Buffer.concat([
    Buffer.from('+1700000000.000001 [0 127.0.0.1:1] "SET" "a" "1"\r\n'),
    push,
    Buffer.from('+1700000000.000002 [3 127.0.0.1:1] "GET" "k\\r\\n\\"\\xff\\x00"\r\n'),
  ]);

  function parseAll(chunks: Iterable<Buffer>): string[] {
    const seen: string[] = [];
    const parser = new MonitorParser(
      (l) => seen.push(`line ${l.argv.map((a) => a.toString('hex')).join(' ')}`),
      (items) => seen.push(`push ${items.map((a) => a.toString('hex')).join(' ')}`),
    );
    for (const c of chunks) parser.push(c);
    assert.equal(parser.buffered, 0);
    return seen;
  }

  it('keeps lines and pushes in stream order with exact bytes, at every split position', () => {
    const whole = parseAll([raw]);
    assert.equal(whole.length, 3);
    assert.ok(whole[0]!.startsWith('line '));
    assert.equal(
      whole[1],
      `push ${['pmessage', '__keyevent@*__:expired', '__keyevent@3__:expired'].map((s) => Buffer.from(s).toString('hex')).join(' ')} ${key.toString('hex')}`,
    );
    assert.equal(whole[2], `line ${Buffer.from('GET').toString('hex')} ${key.toString('hex')}`);
    for (let cut = 1; cut < raw.length; cut++)
      assert.deepEqual(parseAll(splitAt(raw, [cut])), whole, `split at ${cut}`);
    assert.deepEqual(parseAll(bytewise(raw)), whole);
  });

  it('refuses a push frame when nobody subscribed', () => {
    const parser = new MonitorParser(() => undefined);
    assert.throws(() => parser.push(push), ProtocolError);
  });
});
