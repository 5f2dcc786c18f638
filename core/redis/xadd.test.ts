// Which XADD forms get a state probe: only generated ids (`*`, `<ms>-*`), past every option.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { autoIdIndex } from './xadd.js';

const argv = (s: string) => s.split(' ').map((a) => Buffer.from(a));

test('autoIdIndex finds the id argument after NOMKSTREAM and MAXLEN/MINID [=|~] n [LIMIT c]', () => {
  assert.equal(autoIdIndex(argv('XADD s * f v')), 2);
  assert.equal(autoIdIndex(argv('XADD s 1700000000000-* f v')), 2);
  assert.equal(autoIdIndex(argv('XADD s 5-1 f *')), -1);
  assert.equal(autoIdIndex(argv('XADD s NOMKSTREAM MAXLEN ~ 1000 LIMIT 10 * f v')), 8);
  assert.equal(autoIdIndex(argv('XADD s MINID = 5-0 7-0 * v')), -1);
  assert.equal(autoIdIndex(argv('XADD s maxlen 10 *')), 4);
  assert.equal(autoIdIndex(argv('XADD s')), -1);
});

test("autoIdIndex skips Redis 8.2's reference options (KEEPREF, DELREF, ACKED) before the trim and the id", () => {
  assert.equal(autoIdIndex(argv('XADD s KEEPREF * f v')), 3);
  assert.equal(autoIdIndex(argv('XADD s NOMKSTREAM ACKED MAXLEN = 5 * f v')), 7);
  assert.equal(autoIdIndex(argv('XADD s delref minid ~ 5-0 9-1 f v')), -1);
});
