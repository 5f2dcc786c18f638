// The guard wraps exactly the commands a loading server checks more loosely than a client, byte-exact, and leaves every
// other command untouched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeCommand, encodeCommand } from '../core/redis/resp.js';
import { commandName, guardRefusable, REFUSAL_GUARD_SCRIPT } from './refusal-guard.js';

const enc = (...argv: (string | Buffer)[]) => encodeCommand(argv);

test('commandName reads the name without decoding the rest', () => {
  assert.equal(commandName(enc('SetRange', 'k', '1', 'v')), 'setrange');
  assert.equal(commandName(enc('PING')), 'ping');
  assert.equal(commandName(Buffer.from('+OK\r\n')), undefined);
  assert.equal(commandName(Buffer.alloc(0)), undefined);
});

test('SETRANGE, APPEND, SETBIT and BITFIELD run inside the guard EVAL with their bytes intact', () => {
  const key = Buffer.from([0x00, 0xff, 0x0d, 0x0a]);
  const value = Buffer.from([0xc3, 0x28, 0x00]);
  for (const argv of [
    [Buffer.from('SETRANGE'), key, Buffer.from('9223372036854775807'), value],
    [Buffer.from('append'), key, value],
    [Buffer.from('SETBIT'), key, Buffer.from('4294967296'), Buffer.from('1')],
    [Buffer.from('BITFIELD'), key, Buffer.from('SET'), Buffer.from('u8'), Buffer.from('#3'), Buffer.from('7')],
  ]) {
    const guarded = decodeCommand(guardRefusable(encodeCommand(argv)));
    assert.deepEqual(guarded, [
      Buffer.from('EVAL'),
      Buffer.from(REFUSAL_GUARD_SCRIPT),
      Buffer.from('1'),
      key,
      argv[0],
      ...argv.slice(2),
    ]);
  }
});

test('XADD and XTRIM are guarded only with ~ or LIMIT', () => {
  const plain = enc('XADD', 's', '1-1', 'f', 'v');
  assert.equal(guardRefusable(plain), plain);
  const exact = enc('XTRIM', 's', 'MAXLEN', '10');
  assert.equal(guardRefusable(exact), exact);
  assert.equal(commandName(guardRefusable(enc('XADD', 's', 'MAXLEN', '~', '10', '1-1', 'f', 'v'))), 'eval');
  assert.equal(commandName(guardRefusable(enc('XTRIM', 's', 'MAXLEN', '10', 'LIMIT', '5'))), 'eval');
});

test('everything else, and commands too long for Lua to unpack, pass through as the same buffer', () => {
  for (const resp of [
    enc('SET', 'k', 'v'),
    enc('HSET', 'h', 'f', 'v'),
    enc('APPEND'),
    enc('RESTORE', 'k', '0', 'payload'),
  ])
    assert.equal(guardRefusable(resp), resp);
  const long = encodeCommand(['BITFIELD', 'k', ...Array.from({ length: 8_000 }, () => 'GET')]);
  assert.equal(guardRefusable(long), long);
});
