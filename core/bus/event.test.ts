// Event model helpers: kind list order (the codec's byte values), subject tokens, subjects and message ids.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVENT_KINDS, eventSubject, messageId, subjectToken } from './event.js';

describe('EVENT_KINDS', () => {
  it('lists the kinds in their fixed order: the event codec stores the index as a byte', () => {
    assert.deepEqual(EVENT_KINDS, ['command', 'state', 'expired', 'evicted', 'baseline', 'heartbeat', 'audit']);
  });
});

describe('subjectToken / eventSubject / messageId', () => {
  it('turns anything outside [A-Za-z0-9_-] into _, one per UTF-16 unit', () => {
    assert.equal(subjectToken('127.0.0.1:6379'), '127_0_0_1_6379');
    assert.equal(subjectToken('[::1]:6379'), '___1__6379');
    assert.equal(subjectToken('a.b*c>d e'), 'a_b_c_d_e');
    assert.equal(subjectToken('Node_1-a'), 'Node_1-a');
    assert.equal(subjectToken('nœud'), 'n_ud');
  });

  it('builds the events subject from the token', () => {
    assert.equal(eventSubject('10.0.0.1:6379'), 'flashback.events.10_0_0_1_6379');
  });

  it('message ids keep the raw node, epoch and first seq', () => {
    assert.equal(messageId('10.0.0.1:6379', 1_785_788_000_000, 42), '10.0.0.1:6379:1785788000000:42');
  });
});
