// Redis's CRC-64 and the DUMP payload checksum RESTORE checks before parsing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc64, dumpChecksumOk, withDumpChecksum } from './dump-payload.js';

test("crc64 is Redis's: its own test vector", () => {
  // src/crc64.c: crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9ca
  assert.equal(crc64(Buffer.from('123456789')), 0xe9c6d914c4b8d9can);
  assert.equal(crc64(Buffer.alloc(0)), 0n);
});

test('a DUMP of Redis 7.0.15 passes; a changed byte fails until the CRC is made right again', () => {
  // DUMP of a 200-byte string of "a" (LZF-compressed), from redis-server 7.0.15.
  const dump = Buffer.from('00c30940c8016161e0bb000161610a001f99f72e01b20de3', 'hex');
  assert.ok(dumpChecksumOk(dump));
  const bad = Buffer.from(dump);
  bad[4] = 0x7f;
  assert.ok(!dumpChecksumOk(bad));
  assert.ok(dumpChecksumOk(withDumpChecksum(bad)));
  assert.ok(!dumpChecksumOk(Buffer.from('0a00', 'hex')));
});
