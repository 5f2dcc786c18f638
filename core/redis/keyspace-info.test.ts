// INFO keyspace parsing: per-db key counts and their total, from real INFO text (CRLF lines, other sections around).
import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { fieldTtlKeysInInfo, keysInInfo, keyspaceCounts } from './keyspace-info.js';

const INFO = [
  '# Keyspace',
  'db0:keys=12,expires=3,avg_ttl=41000,subexpiry=0',
  'db3:keys=5,expires=1,avg_ttl=0',
  'db15:keys=1000000,expires=0,avg_ttl=0',
  '',
].join('\r\n');

describe('keyspaceCounts', () => {
  it('maps each db to its key count, in the order INFO lists them', () => {
    assert.deepEqual(
      [...keyspaceCounts(INFO)],
      [
        [0, 12],
        [3, 5],
        [15, 1_000_000],
      ],
    );
  });

  it('is empty for an empty keyspace section', () => {
    assert.equal(keyspaceCounts('# Keyspace\r\n').size, 0);
    assert.equal(keyspaceCounts('').size, 0);
  });

  it('reads only lines that start with dbN:keys=', () => {
    const text = '# Server\r\nredis_version:7.0.15\r\nmydb0:keys=99\r\n db1:keys=98\r\ndb2:keys=7\r\n';
    assert.deepEqual([...keyspaceCounts(text)], [[2, 7]]);
  });
});

describe('keysInInfo', () => {
  it('sums the keys of every db', () => {
    assert.equal(keysInInfo(INFO), 12 + 5 + 1_000_000);
    assert.equal(keysInInfo('db0:keys=1,expires=0,avg_ttl=0\n'), 1);
    assert.equal(keysInInfo('# Keyspace\r\n'), 0);
  });
});

test('fieldTtlKeysInInfo sums subexpiry over dbs (Redis 7.4+), undefined on a server that does not report it', () => {
  assert.equal(
    fieldTtlKeysInInfo(
      '# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0,subexpiry=1\r\ndb3:keys=5,expires=1,avg_ttl=9,subexpiry=2\r\n',
    ),
    3,
  );
  assert.equal(fieldTtlKeysInInfo('# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0,subexpiry=0\r\n'), 0);
  assert.equal(fieldTtlKeysInInfo('# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n'), undefined);
});
