// Redis URLs: parseRedisUrl's fields and ConfigErrors naming the flag, redisAddress and the redacted URL.
import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { ConfigError, ErrorCode } from '../errors.js';
import { hidePassword, parseRedisUrl, redactedRedisUrl, redisAddress } from './redis-url.js';

describe('parseRedisUrl', () => {
  it('reads host, port, db and TLS, with defaults port 6379 and db 0', () => {
    assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6380/3'), {
      host: '127.0.0.1',
      port: 6380,
      username: undefined,
      password: undefined,
      db: 3,
      tls: false,
    });
    assert.deepEqual(parseRedisUrl('rediss://cache.example.com'), {
      host: 'cache.example.com',
      port: 6379,
      username: undefined,
      password: undefined,
      db: 0,
      tls: true,
    });
    assert.equal(parseRedisUrl('redis://h:1/').db, 0);
  });

  it('decodes user and password, each optional', () => {
    const t = parseRedisUrl('redis://app%40x:p%3Ass%2F@h:7000/1');
    assert.equal(t.username, 'app@x');
    assert.equal(t.password, 'p:ss/');
    const passOnly = parseRedisUrl('redis://:secret@h');
    assert.equal(passOnly.username, undefined);
    assert.equal(passOnly.password, 'secret');
    const userOnly = parseRedisUrl('redis://admin@h');
    assert.equal(userOnly.username, 'admin');
    assert.equal(userOnly.password, undefined);
  });

  it('takes an IPv6 host without its brackets', () => {
    const t = parseRedisUrl('redis://[::1]:6390/2');
    assert.equal(t.host, '::1');
    assert.equal(t.port, 6390);
    assert.equal(t.db, 2);
  });

  it('refuses what is not a redis URL, naming the flag and the URL', () => {
    const cases: [string, string][] = [
      ['localhost:6379', '"localhost:6379" has scheme "localhost:"; expected redis:// or rediss://'],
      ['not a url', '"not a url" is not a URL; expected redis://[user:password@]host:port[/db]'],
      ['http://h:6379', '"http://h:6379" has scheme "http:"'],
      ['redis://h/abc', '"redis://h/abc" has database "abc"; expected a number such as /0'],
      ['redis://h/1.5', 'has database "1.5"'],
      ['redis://h/-1', 'has database "-1"'],
      ['redis://h/1/2', 'has database "1/2"'],
    ];
    for (const [url, want] of cases) {
      assert.throws(
        () => parseRedisUrl(url, '--source'),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.code === ErrorCode.Config &&
          e.message.startsWith(`--source "${url}"`) &&
          e.message.includes(want),
        url,
      );
    }
    for (const url of ['redis://', 'redis:///3']) {
      assert.throws(() => parseRedisUrl(url), {
        name: 'ConfigError',
        message: `--redis "${url}" has no host; expected redis://host:port`,
      });
    }
  });

  it('keeps the URL parse error as cause', () => {
    assert.throws(
      () => parseRedisUrl('::'),
      (e: unknown) => e instanceof ConfigError && e.cause instanceof TypeError,
    );
  });
});

describe('redisAddress / redactedRedisUrl', () => {
  it('prints host:port, bracketing IPv6', () => {
    assert.equal(redisAddress(parseRedisUrl('redis://10.1.2.3:7001')), '10.1.2.3:7001');
    assert.equal(redisAddress(parseRedisUrl('redis://[fe80::1]:7001')), '[fe80::1]:7001');
  });

  it('never shows the password; keeps user, scheme, address and db', () => {
    assert.equal(redactedRedisUrl(parseRedisUrl('rediss://admin:hunter2@h:6380/4')), 'rediss://admin:***@h:6380/4');
    assert.equal(redactedRedisUrl(parseRedisUrl('redis://:hunter2@h')), 'redis://:***@h:6379/0');
    assert.equal(redactedRedisUrl(parseRedisUrl('redis://h')), 'redis://h:6379/0');
    assert.equal(redactedRedisUrl(parseRedisUrl('redis://[::1]:1/9')), 'redis://[::1]:1/9');
  });

  it('round-trips: the redacted URL of a password-less target parses to the same target', () => {
    for (const url of ['redis://h:6380/3', 'rediss://[::1]:6379/0', 'redis://10.0.0.1:1/15']) {
      const t = parseRedisUrl(url);
      assert.deepEqual(parseRedisUrl(redactedRedisUrl(t)), t);
    }
  });
});

test('bad ports, databases and escapes are refused, and no error shows the password', () => {
  const refused = (url: string, pattern: RegExp) =>
    assert.throws(
      () => parseRedisUrl(url, '--target'),
      (err: unknown) => err instanceof ConfigError && pattern.test(err.message) && !err.message.includes('s3cret'),
      url,
    );
  refused('redis://u:s3cret@h:0/0', /has port 0; expected a port from 1 to 65535/);
  refused('redis://u:s3cret@h:6379/0x10', /has database "0x10"/);
  refused('redis://u:s3cret@h:6379/1e1', /has database "1e1"/);
  refused('redis://u:s3cret@h:6379/-1', /has database "-1"/);
  refused('redis://u:s3cret%zz@h:6379', /malformed password/);
  refused('http://u:s3cret@h:6379', /scheme "http:"/);
  refused('redis://u:s3cret@', /no host|not a URL/);
  assert.equal(hidePassword('redis://u:s3cret@h:1/0'), 'redis://u:***@h:1/0');
  assert.equal(hidePassword('redis://:s3cret@h'), 'redis://:***@h');
  assert.equal(hidePassword('redis://h:1'), 'redis://h:1');
  // A raw '@' (or '/', '#') in the password: the user info runs to the last '@', so no part of it shows.
  assert.equal(hidePassword('redis://u:p@ss@h:1/0'), 'redis://u:***@h:1/0');
  assert.equal(hidePassword('redis://:a@b/c#d@h'), 'redis://:***@h');
  assert.equal(hidePassword('redis://u@h:1/0'), 'redis://u@h:1/0');
  for (const url of ['redis://u:p@ss@h:1/0', 'redis://:s3cr@t@h', 'redis://u:x#s3cret@h']) {
    assert.ok(!/ss@|s3cr|s3cret/.test(hidePassword(url)), hidePassword(url));
  }
  assert.throws(
    () => parseRedisUrl('redis://u:s3c@ret@h:0/0', '--target'),
    (err: unknown) => err instanceof ConfigError && !/s3c|ret@/.test(err.message) && /u:\*\*\*@h:0/.test(err.message),
  );
  assert.equal(redactedRedisUrl(parseRedisUrl('redis://alice@h:1/2')), 'redis://alice@h:1/2');
});
