import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeCommand } from './resp.js';
import { approximateGroupKeys } from './tail-groups.js';

test('tail groups: the keys of XCLAIM … LASTID in their db, once each; other commands and plain XCLAIMs are not', () => {
  const key = Buffer.from([0x78, 0x00, 0xff, 0x0d, 0x0a]);
  const tail = Buffer.concat([
    encodeCommand([
      'XCLAIM',
      's',
      'g',
      'c',
      '0',
      '1-0',
      'TIME',
      '5',
      'RETRYCOUNT',
      '1',
      'FORCE',
      'JUSTID',
      'LASTID',
      '1-0',
    ]),
    encodeCommand(['SELECT', '3']),
    encodeCommand([
      'XCLAIM',
      key,
      'g',
      'c',
      '0',
      '2-0',
      'TIME',
      '5',
      'RETRYCOUNT',
      '1',
      'FORCE',
      'JUSTID',
      'lastid',
      '2-0',
    ]),
    encodeCommand([
      'XCLAIM',
      key,
      'g',
      'c',
      '0',
      '3-0',
      'TIME',
      '5',
      'RETRYCOUNT',
      '1',
      'FORCE',
      'JUSTID',
      'LASTID',
      '3-0',
    ]),
    encodeCommand(['XCLAIM', 'plain', 'g', 'c', '0', '4-0', 'JUSTID']),
    encodeCommand(['XGROUP', 'SETID', 'other', 'g', '5-0', 'ENTRIESREAD', '5']),
    encodeCommand(['SET', 'LASTID', 'x']),
  ]);
  assert.deepEqual(approximateGroupKeys(tail), [
    { db: 0, key: Buffer.from('s') },
    { db: 3, key },
  ]);
  assert.deepEqual(approximateGroupKeys(Buffer.alloc(0)), []);
});

test('tail groups: keys are named where the rest of the tail moved them (SWAPDB, MOVE, RENAME, COPY … DB)', () => {
  const claim = (key: string) =>
    encodeCommand([
      'XCLAIM',
      key,
      'g',
      'c',
      '0',
      '1-0',
      'TIME',
      '5',
      'RETRYCOUNT',
      '1',
      'FORCE',
      'JUSTID',
      'LASTID',
      '1-0',
    ]);
  const tail = Buffer.concat([
    encodeCommand(['SELECT', '1']),
    claim('a'),
    claim('b'),
    claim('c'),
    claim('d'),
    encodeCommand(['SWAPDB', '1', '0']),
    encodeCommand(['SELECT', '0']),
    encodeCommand(['MOVE', 'b', '5']),
    encodeCommand(['RENAME', 'c', 'c2']),
    encodeCommand(['COPY', 'd', 'd2', 'DB', '7']),
  ]);
  const got = approximateGroupKeys(tail)
    .map((k) => `${k.db}:${k.key.toString()}`)
    .sort();
  assert.deepEqual(got, ['0:a', '0:c2', '0:d', '5:b', '7:d2']);
});
