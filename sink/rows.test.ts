// sink rows: eventToRow/baselineToRow column values, parseBaselineRecord's checks and the field its errors name.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BaselineRecord } from '../core/bus/baseline.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { ErrorCode, ProtocolError } from '../core/errors.js';
import { decodeCommand } from '../core/redis/resp.js';
import { baselineToRow, eventToRow, parseBaselineRecord } from './rows.js';

const b = (s: string) => Buffer.from(s, 'latin1');

function event(over: Partial<FlashbackEvent> = {}): FlashbackEvent {
  const args = [b('SET'), b('k\x00\xff"'), b('v\n')];
  return {
    node: 'n1',
    epoch: 1_785_788_000_000,
    seq: 7,
    tsUs: 1_785_788_890_999_999,
    db: 3,
    client: '127.0.0.1:50000',
    kind: 'command',
    command: 'SET',
    keys: [args[1]!],
    args,
    replay: args,
    tx: 0,
    ...over,
  };
}

const record: BaselineRecord = {
  node: 'n1',
  epoch: 1_785_788_000_000,
  seq: 42,
  tsUs: 1_785_788_890_500_000,
  markerId: 'm-1',
  rdbObject: 'n1/1785788000000/m-1.rdb',
  tailObject: 'n1/1785788000000/m-1.tail',
  rdbBytes: 1234,
  tailBytes: 56,
  keys: 9,
  digest: 'abc',
};

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

/** Asserts `fn` throws a ProtocolError whose message includes every one of `parts`. */
function throwsProtocol(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, String(e));
    assert.equal(e.code, ErrorCode.Protocol);
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    return true;
  });
}

describe('eventToRow', () => {
  it('maps every column, escapes keys and args, floors time to seconds', () => {
    const e = event();
    const row = eventToRow(e);
    assert.deepEqual(
      { ...row, replay: undefined },
      {
        node: 'n1',
        epoch: 1_785_788_000_000,
        seq: 7,
        ts_us: 1_785_788_890_999_999,
        time: 1_785_788_890,
        db: 3,
        client: '127.0.0.1:50000',
        kind: 'command',
        command: 'SET',
        key: 'k\\x00\\xff\\"',
        keys: ['k\\x00\\xff\\"'],
        args: ['SET', 'k\\x00\\xff\\"', 'v\\n'],
        replay: undefined,
        tx: 0,
      },
    );
  });

  it('keeps the exact replay bytes as base64 of their RESP encoding', () => {
    const replay = [b('SET'), b('k\x00\xff"'), b('v\n'), b('PXAT'), b('1785788891000')];
    const row = eventToRow(event({ replay }));
    const resp = Buffer.from(row.replay, 'base64');
    assert.equal(
      resp.toString('latin1'),
      '*5\r\n$3\r\nSET\r\n$4\r\nk\x00\xff"\r\n$2\r\nv\n\r\n$4\r\nPXAT\r\n$13\r\n1785788891000\r\n',
    );
    assert.deepEqual(decodeCommand(resp), replay);
    // args stay as issued, not as replayed
    assert.deepEqual(row.args, ['SET', 'k\\x00\\xff\\"', 'v\\n']);
  });

  it('gives key "" and no keys for a keyless event, replay "" for a marker', () => {
    const row = eventToRow(event({ kind: 'baseline', command: 'PUBLISH', keys: [], replay: [], tx: 0 }));
    assert.equal(row.key, '');
    assert.deepEqual(row.keys, []);
    assert.equal(row.replay, '');
  });

  it('takes the first key as `key` and keeps every key in order', () => {
    const args = [b('MSET'), b('a'), b('1'), b('b\t'), b('2')];
    const row = eventToRow(event({ command: 'MSET', args, replay: args, keys: [args[1]!, args[3]!], tx: 5 }));
    assert.equal(row.key, 'a');
    assert.deepEqual(row.keys, ['a', 'b\\t']);
    assert.equal(row.tx, 5);
  });
});

describe('baselineToRow', () => {
  it('maps every field to its column; source is "" when absent', () => {
    assert.deepEqual(baselineToRow(record), {
      node: 'n1',
      epoch: 1_785_788_000_000,
      seq: 42,
      ts_us: 1_785_788_890_500_000,
      time: 1_785_788_890,
      marker: 'm-1',
      rdb_object: 'n1/1785788000000/m-1.rdb',
      tail_object: 'n1/1785788000000/m-1.tail',
      rdb_bytes: 1234,
      tail_bytes: 56,
      keys: 9,
      digest: 'abc',
      source: '',
      rdb_sha256: '',
      tail_sha256: '',
    });
  });

  it("stores the objects' SHA-256 as published", () => {
    const row = baselineToRow({ ...record, rdbSha256: 'a'.repeat(64), tailSha256: 'b'.repeat(64) });
    assert.deepEqual([row.rdb_sha256, row.tail_sha256], ['a'.repeat(64), 'b'.repeat(64)]);
  });

  it('stores source as its JSON', () => {
    const source = { server: 'redis', version: '7.0.15', config: { 'proto-max-bulk-len': '536870912' } };
    const row = baselineToRow({ ...record, source });
    assert.equal(row.source, '{"server":"redis","version":"7.0.15","config":{"proto-max-bulk-len":"536870912"}}');
    assert.deepEqual(JSON.parse(row.source!), source);
  });
});

describe('parseBaselineRecord', () => {
  it('returns the record as published, with and without source', () => {
    assert.deepEqual(parseBaselineRecord(json(record)), record);
    const source = { server: 'valkey', version: '8.0.1', config: {} };
    assert.deepEqual(parseBaselineRecord(json({ ...record, source })), { ...record, source });
  });

  it('reads a Uint8Array view at an offset into a larger buffer', () => {
    const body = json(record);
    const big = new Uint8Array(body.length + 10);
    big.set(body, 5);
    assert.deepEqual(parseBaselineRecord(big.subarray(5, 5 + body.length)), record);
  });

  it('refuses a body that is not JSON, keeping the parse error as cause', () => {
    assert.throws(
      () => parseBaselineRecord(Buffer.from('{not json')),
      (e: unknown) =>
        e instanceof ProtocolError &&
        /is not JSON; was it published by a flashback agent\?/.test(e.message) &&
        e.cause instanceof SyntaxError,
    );
  });

  it('refuses JSON that is not an object', () => {
    for (const v of [null, 3, 'x']) throwsProtocol(() => parseBaselineRecord(json(v)), 'is not a JSON object');
  });

  it('names the first bad number field and its value', () => {
    for (const f of ['epoch', 'seq', 'tsUs', 'rdbBytes', 'tailBytes', 'keys'] as const) {
      for (const bad of [-1, 1.5, '3', null]) {
        throwsProtocol(
          () => parseBaselineRecord(json({ ...record, [f]: bad })),
          `field "${f}" is ${JSON.stringify(bad)}`,
          'not a non-negative integer',
        );
      }
      const { [f]: _, ...missing } = record;
      throwsProtocol(() => parseBaselineRecord(json(missing)), `field "${f}" is undefined, not a non-negative integer`);
    }
    throwsProtocol(() => parseBaselineRecord(json({ ...record, seq: 2 ** 53 })), `field "seq" is ${2 ** 53}`);
    // several bad: the first in field order is named
    throwsProtocol(() => parseBaselineRecord(json({ ...record, keys: -1, seq: 'x' })), 'field "seq"');
  });

  it('names the first bad string field and its value', () => {
    for (const f of ['node', 'markerId', 'rdbObject', 'tailObject', 'digest'] as const) {
      throwsProtocol(() => parseBaselineRecord(json({ ...record, [f]: 5 })), `field "${f}" is 5, not a string`);
    }
    // number fields are checked before string fields
    throwsProtocol(() => parseBaselineRecord(json({ ...record, node: 1, tailBytes: -2 })), 'field "tailBytes"');
  });

  it('refuses a source that is not {server, version, config} of strings', () => {
    const bads = [
      null,
      'redis',
      { version: '7.0.0', config: {} },
      { server: 'redis', version: 7, config: {} },
      { server: 'redis', version: '7.0.0' },
      { server: 'redis', version: '7.0.0', config: null },
      { server: 'redis', version: '7.0.0', config: { 'proto-max-bulk-len': 512 } },
    ];
    for (const source of bads) {
      throwsProtocol(
        () => parseBaselineRecord(json({ ...record, source })),
        `field "source" is ${JSON.stringify(source)}, not {server, version, config} of strings`,
      );
    }
  });

  it("takes the objects' SHA-256 when present, and refuses one that is not 64 lowercase hex digits", () => {
    const hashed = { ...record, rdbSha256: '0f'.repeat(32), tailSha256: 'e3'.repeat(32) };
    assert.deepEqual(parseBaselineRecord(json(hashed)), hashed);
    for (const f of ['rdbSha256', 'tailSha256'] as const) {
      for (const bad of ['', 'A'.repeat(64), 'a'.repeat(63), 5, null]) {
        throwsProtocol(
          () => parseBaselineRecord(json({ ...hashed, [f]: bad })),
          `field "${f}" is ${JSON.stringify(bad)}, not a SHA-256 (64 hex digits)`,
        );
      }
    }
  });
});
