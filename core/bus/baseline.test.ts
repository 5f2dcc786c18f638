// Baseline helpers: the baseline subject, object-store names of a baseline's RDB and tail, the replay config list, and
// the SHA-256 of an object from its writer's digest.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ProtocolError } from '../errors.js';
import {
  baselineObjectName,
  baselineSubject,
  HEARTBEAT_MESSAGE,
  MARKER_CHANNEL,
  REPLAY_CONFIG,
  sha256OfDigest,
} from './baseline.js';

describe('baseline names', () => {
  it('subject uses the node as one subject token', () => {
    assert.equal(baselineSubject('10.0.0.1:6379'), 'flashback.baselines.10_0_0_1_6379');
  });

  it('object names share node token / epoch / marker id and differ by suffix', () => {
    assert.deepEqual(baselineObjectName('[::1]:6379', 1_785_788_000_000, 'm-7'), {
      rdb: '___1__6379/1785788000000/m-7.rdb',
      tail: '___1__6379/1785788000000/m-7.tail',
    });
  });

  it('the agent channels and replay settings are fixed names', () => {
    assert.equal(MARKER_CHANNEL, '__flashback__:marker');
    assert.equal(HEARTBEAT_MESSAGE, '__flashback__:heartbeat');
    assert.deepEqual(REPLAY_CONFIG, ['proto-max-bulk-len', 'stream-node-max-entries', 'stream-node-max-bytes']);
  });
});

describe('sha256OfDigest', () => {
  it("turns the object store's SHA-256=<base64url> digest into hex", () => {
    for (const bytes of [Buffer.alloc(0), Buffer.from('REDIS0011\xff', 'latin1')]) {
      const sha = createHash('sha256').update(bytes);
      const hex = sha.copy().digest('hex');
      // nats.js keeps the padding; both forms decode.
      const b64 = sha.digest('base64').replace(/\+/g, '-').replace(/\//g, '_');
      assert.equal(sha256OfDigest(`SHA-256=${b64}`), hex);
      assert.equal(sha256OfDigest(`SHA-256=${b64.replace(/=+$/, '')}`), hex);
    }
  });

  it('refuses anything else', () => {
    for (const bad of ['', 'SHA-256=', 'MD5=1B2M2Y8AsgTpgAmY7PhCfg==', 'SHA-256=AAAA']) {
      assert.throws(
        () => sha256OfDigest(bad),
        (e: unknown) => e instanceof ProtocolError && e.message.includes(bad),
      );
    }
  });
});
