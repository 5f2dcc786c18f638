// Baseline helpers: the baseline subject, object-store names of a baseline's RDB and tail, and the replay config list.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { baselineObjectName, baselineSubject, HEARTBEAT_MESSAGE, MARKER_CHANNEL, REPLAY_CONFIG } from './baseline.js';

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
