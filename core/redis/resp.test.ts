// RESP codec: encodeCommand round-trips through RespReader; the reader handles every reply type split at every byte,
// large bulks in linear time, and takeRemaining.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../errors.js';
import { encodeCommand, encodedCommandLength, RespError, RespReader, type RespValue } from './resp.js';

/** Pushes `chunks` and reads after each; returns every value read, in order. */
function readAll(reader: RespReader, chunks: Iterable<Buffer>): RespValue[] {
  const out: RespValue[] = [];
  for (const c of chunks) {
    reader.push(c);
    for (let v = reader.read(); v !== undefined; v = reader.read()) out.push(v);
  }
  return out;
}

function* pieces(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

const bin = (...bytes: number[]) => Buffer.from(bytes);

describe('encodeCommand', () => {
  it('round-trips binary, empty and CRLF-containing arguments through RespReader', () => {
    const argv = ['SET', bin(0x00, 0xff, 0x0d, 0x0a, 0x24), Buffer.alloc(0), 'ключ', 42, -7, 'a\r\n$3\r\nfoo'];
    const wire = encodeCommand(argv);
    assert.equal(wire.length, encodedCommandLength(argv.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(String(a))))));
    assert.ok(wire.subarray(0, 4).equals(Buffer.from('*7\r\n')));
    const reader = new RespReader();
    reader.push(wire);
    const back = reader.read();
    assert.deepEqual(
      back,
      argv.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(String(a)))),
    );
    assert.equal(reader.consumed, wire.length);
    assert.equal(reader.pending, 0);
    assert.equal(reader.read(), undefined);
  });

  it('encodes no arguments and a 1 MiB argument with exact lengths', () => {
    assert.ok(encodeCommand([]).equals(Buffer.from('*0\r\n')));
    assert.equal(encodedCommandLength([]), 4);
    const big = Buffer.alloc(1024 * 1024, 0xab);
    const wire = encodeCommand(['SET', 'k', big]);
    assert.equal(wire.length, encodedCommandLength([Buffer.from('SET'), Buffer.from('k'), big]));
    const reader = new RespReader();
    reader.push(wire);
    const back = reader.read() as Buffer[];
    assert.ok(back[2].equals(big));
  });
});

describe('RespReader', () => {
  const stream = Buffer.concat([
    Buffer.from('+OK\r\n'),
    Buffer.from('-ERR wrong number of arguments\r\n'),
    Buffer.from(':0\r\n:-42\r\n:9007199254740991\r\n'),
    Buffer.from('$-1\r\n*-1\r\n$0\r\n\r\n*0\r\n'),
    Buffer.from('$7\r\nab\r\n\x00\xffc\r\n', 'latin1'),
    Buffer.from('*3\r\n*2\r\n:1\r\n$1\r\na\r\n$-1\r\n*1\r\n*1\r\n-NOPE inner\r\n'),
    Buffer.from('+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 2\r\n'),
  ]);
  const expected: RespValue[] = [
    'OK',
    new RespError('ERR wrong number of arguments'),
    0,
    -42,
    9007199254740991,
    null,
    null,
    Buffer.alloc(0),
    [],
    Buffer.from('ab\r\n\x00\xffc', 'latin1'),
    [[1, Buffer.from('a')], null, [[new RespError('NOPE inner')]]],
    'FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 2',
  ];

  it('reads simple strings, errors, integers, nulls, bulks and nested arrays', () => {
    const reader = new RespReader();
    assert.deepEqual(readAll(reader, [stream]), expected);
    assert.equal(reader.consumed, stream.length);
    assert.equal(reader.pending, 0);
  });

  it('reads the same values when the stream arrives one byte at a time', () => {
    const reader = new RespReader();
    assert.deepEqual(readAll(reader, pieces(stream, 1)), expected);
    assert.equal(reader.consumed, stream.length);
  });

  it('reads the same values for a split at every position', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const reader = new RespReader();
      assert.deepEqual(readAll(reader, [stream.subarray(0, cut), stream.subarray(cut)]), expected, `cut at ${cut}`);
      assert.equal(reader.consumed, stream.length, `consumed, cut at ${cut}`);
    }
  });

  it('readCommand reads what read() does, commands fast, anything else and any split through read()', () => {
    const commands = Buffer.concat([
      encodeCommand(['SET', 'k', Buffer.from('a\r\nb\x00', 'latin1')]),
      encodeCommand(['SELECT', '1']),
      encodeCommand(['SET', Buffer.alloc(0), 'x'.repeat(300)]),
      stream,
      encodeCommand(['PUBLISH', '__flashback:anchor', '1796000000.000001']),
    ]);
    const want = readAll(new RespReader(), [commands]);
    const readCommands = (chunks: Iterable<Buffer>) => {
      const reader = new RespReader();
      const out: RespValue[] = [];
      for (const c of chunks) {
        reader.push(c);
        for (let v = reader.readCommand(); v !== undefined; v = reader.readCommand()) out.push(v);
      }
      return { out, reader };
    };
    for (let cut = 0; cut < commands.length; cut++) {
      const { out, reader } = readCommands([commands.subarray(0, cut), commands.subarray(cut)]);
      assert.deepEqual(out, want, `cut at ${cut}`);
      assert.equal(reader.consumed, commands.length, `consumed, cut at ${cut}`);
      assert.equal(reader.pending, 0);
    }
    assert.deepEqual(readCommands(pieces(commands, 1)).out, want);
  });

  it('counts consumed bytes per complete value only', () => {
    const reader = new RespReader();
    reader.push(Buffer.from('+OK\r\n$5\r\nhel'));
    assert.equal(reader.read(), 'OK');
    assert.equal(reader.consumed, 5);
    assert.equal(reader.read(), undefined);
    assert.equal(reader.consumed, 5);
    assert.equal(reader.pending, 7);
    reader.push(Buffer.from('lo\r\n'));
    assert.deepEqual(reader.read(), Buffer.from('hello'));
    assert.equal(reader.consumed, 16);
  });

  it('assembles a 5 MB bulk fed in 64 KB chunks with linear copying', () => {
    const size = 5 * 1024 * 1024;
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) payload[i] = (i * 31) & 0xff;
    const wire = Buffer.concat([Buffer.from(`$${size}\r\n`), payload, Buffer.from('\r\n:7\r\n')]);
    const reader = new RespReader();
    // Count the bytes Buffer.concat copies: re-concatenating per chunk would copy ~80 × 2.5 MB.
    const concat = Buffer.concat;
    let copied = 0;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      const b = concat(list, total);
      copied += b.length;
      return b;
    }) as typeof Buffer.concat;
    let values: RespValue[];
    try {
      values = readAll(reader, pieces(wire, 64 * 1024));
    } finally {
      Buffer.concat = concat;
    }
    assert.equal(values.length, 2);
    assert.ok((values[0] as Buffer).equals(payload));
    assert.equal(values[1], 7);
    assert.equal(reader.consumed, wire.length);
    assert.ok(copied <= 2 * wire.length, `copied ${copied} bytes for a ${wire.length}-byte stream`);
  });

  it('parses a 200 000-entry array reply fed in 64 KB chunks once, not once per chunk', () => {
    // The shape of XREVRANGE … COUNT n: [[id, [field, value]], …].
    const n = 200_000;
    const parts: Buffer[] = [Buffer.from(`*${n}\r\n`)];
    for (let i = 0; i < n; i++)
      parts.push(Buffer.from(`*2\r\n$${String(i).length + 2}\r\n${i}-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n`));
    const wire = Buffer.concat(parts);
    const lines = wire.toString('latin1').split('\r\n').length - 1;
    const reader = new RespReader();
    // Count the line scans and the bytes copied: re-parsing per chunk would scan ~lines × chunks / 2 times.
    const concat = Buffer.concat;
    const indexOf = Buffer.prototype.indexOf;
    let copied = 0;
    let scans = 0;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      const b = concat(list, total);
      copied += b.length;
      return b;
    }) as typeof Buffer.concat;
    Buffer.prototype.indexOf = function (this: Buffer, ...args: Parameters<Buffer['indexOf']>) {
      scans++;
      return indexOf.apply(this, args);
    } as Buffer['indexOf'];
    let values: RespValue[];
    try {
      values = readAll(reader, pieces(wire, 64 * 1024));
    } finally {
      Buffer.concat = concat;
      Buffer.prototype.indexOf = indexOf;
    }
    assert.equal(values.length, 1);
    const entries = values[0] as RespValue[][];
    assert.equal(entries.length, n);
    assert.equal((entries[n - 1]![0] as Buffer).toString(), `${n - 1}-0`);
    assert.deepEqual((entries[7]![1] as Buffer[]).map(String), ['f', 'v']);
    assert.equal(reader.consumed, wire.length);
    assert.ok(scans <= lines + 2 * Math.ceil(wire.length / (64 * 1024)), `${scans} line scans for ${lines} lines`);
    assert.ok(copied <= wire.length, `copied ${copied} bytes for a ${wire.length}-byte reply`);
  });

  it('hands back unread bytes in order with takeRemaining, including held chunks', () => {
    const reader = new RespReader();
    reader.push(Buffer.from('+FULLRESYNC abc 0\r\n$100\r\n0123'));
    assert.equal(reader.read(), 'FULLRESYNC abc 0');
    assert.equal(reader.read(), undefined);
    reader.push(Buffer.from('4567'));
    reader.push(Buffer.from('89'));
    const rest = reader.takeRemaining();
    assert.equal(rest.toString(), '$100\r\n0123456789');
    assert.equal(reader.pending, 0);
    assert.equal(reader.read(), undefined);
    // The reader is usable again afterwards.
    reader.push(Buffer.from(':5\r\n'));
    assert.equal(reader.read(), 5);
  });

  it('throws ProtocolError on an unknown type byte and on a non-numeric length', () => {
    const r1 = new RespReader();
    r1.push(Buffer.from('?what\r\n'));
    assert.throws(() => r1.read(), ProtocolError);
    const r2 = new RespReader();
    r2.push(Buffer.from('$EOF:0123456789012345678901234567890123456789\r\n'));
    assert.throws(() => r2.read(), ProtocolError);
    const r3 = new RespReader();
    r3.push(Buffer.from('*x\r\n'));
    assert.throws(() => r3.read(), ProtocolError);
  });
});
