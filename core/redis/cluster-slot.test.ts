// Cluster hash slots: keySlot against CLUSTER KEYSLOT values and hash-tag rules, hashTagForSlots' choice of tag.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CLUSTER_SLOTS, hashTagForSlots, keySlot } from './cluster-slot.js';

const slot = (k: string | Buffer) => keySlot(Buffer.isBuffer(k) ? k : Buffer.from(k, 'latin1'));

/** CRC16/XMODEM bit by bit, as a reference independent of the module's table. */
function crc16Bitwise(b: Buffer): number {
  let crc = 0;
  for (const byte of b) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

describe('keySlot', () => {
  it('gives the slots redis-server gives (CRC16/XMODEM mod 16384)', () => {
    assert.equal(CLUSTER_SLOTS, 16_384);
    // CRC16/XMODEM check value of "123456789" is 0x31c3
    assert.equal(slot('123456789'), 0x31c3);
    assert.equal(slot('foo'), 12_182);
    assert.equal(slot('bar'), 5_061);
    assert.equal(slot('hello'), 866);
    assert.equal(slot(''), 0);
  });

  it('hashes only the tag: bytes between the first { and the next }', () => {
    assert.equal(slot('{user1000}.following'), slot('user1000'));
    assert.equal(slot('{user1000}.followers'), slot('{user1000}.following'));
    assert.equal(slot('foo{bar}{zap}'), slot('bar'));
    assert.equal(slot('foo{{bar}}zap'), slot('{bar'));
    assert.equal(slot(Buffer.from([0x7b, 0x00, 0xff, 0x7d, 0x61])), slot(Buffer.from([0x00, 0xff])));
  });

  it('hashes the whole key when the tag is empty or unclosed', () => {
    for (const k of ['foo{}{bar}', 'foo{bar', '}bar{', '{}', '{'])
      assert.equal(slot(k), crc16Bitwise(Buffer.from(k)) % 16_384, k);
    assert.notEqual(slot('foo{}{bar}'), slot('bar'));
  });

  it('agrees with a bitwise CRC16 on binary keys without braces', () => {
    let x = 12_345;
    for (let n = 0; n < 500; n++) {
      const key = Buffer.from(
        Array.from({ length: n % 40 }, () => ((x = (x * 1_103_515_245 + 12_345) >>> 0) >>> 16) & 0xff),
      );
      const plain = Buffer.from(key.filter((b) => b !== 0x7b));
      assert.equal(keySlot(plain), crc16Bitwise(plain) % 16_384, plain.toString('hex'));
    }
  });

  it('stays within 0 … 16383', () => {
    for (let i = 0; i < 2_000; i++) {
      const s = slot(`key:${i}`);
      assert.ok(Number.isInteger(s) && s >= 0 && s < CLUSTER_SLOTS, String(s));
    }
  });
});

describe('hashTagForSlots', () => {
  it('returns the smallest {fb:N} whose slot is owned', () => {
    const owned = new Set([slot('fb:7')]);
    const tag = hashTagForSlots(owned);
    assert.ok(tag !== undefined);
    assert.ok(owned.has(slot(tag)));
    const n = Number(/^\{fb:(\d+)\}$/.exec(tag)![1]);
    assert.ok(n <= 7);
    for (let i = 0; i < n; i++) assert.ok(!owned.has(slot(`{fb:${i}}`)), `{fb:${i}} is not owned`);
  });

  it('takes a prefix, and is undefined for no slots', () => {
    const all = new Set(Array.from({ length: CLUSTER_SLOTS }, (_, i) => i));
    assert.equal(hashTagForSlots(all, 'x'), '{x:0}');
    assert.equal(hashTagForSlots(new Set()), undefined);
  });

  it('reaches a node owning a small range', () => {
    const owned = new Set(Array.from({ length: 100 }, (_, i) => 16_000 + i));
    const tag = hashTagForSlots(owned)!;
    assert.ok(owned.has(slot(tag)), tag);
    assert.equal(slot(`${tag}:any:key`), slot(tag));
  });
});
