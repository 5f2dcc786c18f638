// applyKeyFilter's one server-free case: an empty filter drops nothing and never connects.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyKeyFilter } from './key-filter.js';

// Port 1 on loopback refuses connections: were a connection attempted, the call would reject.
const UNREACHABLE = 'redis://127.0.0.1:1';

describe('applyKeyFilter', () => {
  // The filtering itself needs a server: test/restore-e2e.test.ts (key-subset restore).
  it('returns 0 dropped keys for a filter with no patterns and no db, without connecting', async () => {
    assert.equal(await applyKeyFilter(UNREACHABLE, {}), 0);
    assert.equal(await applyKeyFilter(UNREACHABLE, { patterns: [] }), 0);
    assert.equal(await applyKeyFilter('redis://not-a-host.invalid:6379', { patterns: undefined, db: undefined }), 0);
  });
});
