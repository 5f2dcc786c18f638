// Source versions: older than supported is refused with the way out; a newer line than known is a warning.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { checkSourceVersion } from './source-version.js';

const info = (server: string, version: string) => ({ server, version, config: {} });

describe('checkSourceVersion', () => {
  it('refuses a server older than the oldest supported line, naming both', () => {
    assert.throws(
      () => checkSourceVersion(info('redis', '6.2.14'), 'Redis 127.0.0.1:6379', silentLogger),
      (e: unknown) =>
        e instanceof ConfigError && /runs redis 6\.2\.14; the agent supports redis 7\.0 and later/.test(e.message),
    );
  });

  it('captures supported and newer lines, warning on a newer one', () => {
    const warned: unknown[] = [];
    const logger = { ...silentLogger, warn: (o: unknown) => warned.push(o) } as unknown as Logger;
    checkSourceVersion(info('redis', '7.0.15'), 'x', logger);
    checkSourceVersion(info('redis', '8.0.2'), 'x', logger);
    checkSourceVersion(info('valkey', '8.0.1'), 'x', logger);
    assert.equal(warned.length, 0);
    checkSourceVersion(info('redis', '9.1.0'), 'x', logger);
    assert.equal(warned.length, 1);
  });
});
