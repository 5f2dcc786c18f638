// parseDuration: units to milliseconds, bare numbers as ms, and the ConfigError naming the flag.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, ErrorCode } from '../core/errors.js';
import { parseBytes, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it('reads every unit to ms', () => {
    const cases: [string, number][] = [
      ['500ms', 500],
      ['30s', 30_000],
      ['15m', 900_000],
      ['1h', 3_600_000],
      ['7d', 604_800_000],
      ['2w', 1_209_600_000],
      ['1.5s', 1_500],
      [' 2 h ', 7_200_000],
      ['250', 250],
      ['0', 0],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text, '--x'), ms, text);
  });

  it('rounds to whole ms', () => {
    assert.equal(parseDuration('0.4ms', '--x'), 0);
    assert.equal(parseDuration('1.0005s', '--x'), 1_001);
  });

  it('takes a finite non-negative number as ms as is', () => {
    assert.equal(parseDuration(1234, '--x'), 1234);
    assert.equal(parseDuration(1.5, '--x'), 1.5);
  });

  it('refuses anything else, naming the flag and the value', () => {
    for (const bad of ['', 'soon', '5 minutes', '1H', '-1s', '1e3', '.5s', 'ms', '1s2']) {
      assert.throws(
        () => parseDuration(bad, '--retention'),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.code === ErrorCode.Config &&
          e.message === `--retention "${bad}" is not a duration; use a number with a unit: 500ms, 30s, 15m, 1h, 7d`,
        bad,
      );
    }
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => parseDuration(bad, '--every'), ConfigError, String(bad));
    }
  });
});

describe('parseBytes', () => {
  it('reads bytes and Redis-style units', () => {
    assert.equal(parseBytes('0', '--min-backlog'), 0);
    assert.equal(parseBytes('512kb', '--min-backlog'), 512 * 1024);
    assert.equal(parseBytes('64MB', '--min-backlog'), 64 * 1024 * 1024);
    assert.equal(parseBytes(100, '--min-backlog'), 100);
  });

  it('refuses anything else, naming the flag and the value', () => {
    for (const bad of ['', 'big', '-1mb', '1.5mb', '1tb']) {
      assert.throws(
        () => parseBytes(bad, '--min-backlog'),
        (e: unknown) => e instanceof ConfigError && e.message.startsWith(`--min-backlog "${bad}" is not a size`),
        bad,
      );
    }
  });
});
