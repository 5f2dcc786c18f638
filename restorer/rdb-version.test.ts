// RDB versions: which server line reads which format, the header's version, and the refusal before any work.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertLoadable, rdbHeaderVersion, rdbVersionRead, serverBuild } from './rdb-version.js';

describe('rdb versions', () => {
  it('knows what each server line reads', () => {
    assert.equal(rdbVersionRead({ server: 'redis', version: '7.0.15' }), 10);
    assert.equal(rdbVersionRead({ server: 'redis', version: '7.2.4' }), 11);
    assert.equal(rdbVersionRead({ server: 'redis', version: '7.4.2' }), 12);
    assert.equal(rdbVersionRead({ server: 'redis', version: '8.0.2' }), 12);
    assert.equal(rdbVersionRead({ server: 'valkey', version: '8.0.1' }), 11);
    assert.equal(rdbVersionRead({ server: 'redis', version: '9.0.0' }), undefined);
  });

  it('reads the header', () => {
    assert.equal(rdbHeaderVersion(Buffer.from('REDIS0012\xfa', 'latin1')), 12);
    assert.equal(rdbHeaderVersion(Buffer.from('*3\r\n$3\r\nSET')), undefined);
  });

  it('refuses a newer RDB than the restore server reads, naming both versions', () => {
    assert.throws(
      () =>
        assertLoadable({
          restore: { server: 'redis', version: '7.0.15' },
          rdbVersion: 12,
          source: { server: 'redis', version: '7.4.2' },
          what: 'the baseline at seq 1',
        }),
      /format version 12 \(written by redis 7\.4\.2\); the restore server redis 7\.0\.15 reads up to version 10/,
    );
    assert.throws(
      () =>
        assertLoadable({
          restore: { server: 'redis', version: '7.0.15' },
          source: { server: 'valkey', version: '8.0.1' },
          what: 'the baseline',
        }),
      /Valkey 8\.0\.1; the restore server is redis 7\.0\.15/,
    );
    assertLoadable({ restore: { server: 'redis', version: '7.0.15' }, rdbVersion: 10, what: 'the baseline' });
    assertLoadable({ restore: { server: 'redis', version: '8.0.2' }, rdbVersion: 10, what: 'the baseline' });
  });

  it('reads the installed server build', async () => {
    const b = await serverBuild();
    assert.equal(b.server, 'redis');
    assert.match(b.version, /^\d+\.\d+\.\d+$/);
  });
});
