// Which XADD forms get a state probe: only generated ids (`*`, `<ms>-*`), past every option.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { autoId } from './state-capture.js';

const argv = (s: string) => s.split(' ').map((a) => Buffer.from(a));

test('autoId finds the id argument after NOMKSTREAM and MAXLEN/MINID [=|~] n [LIMIT c]', () => {
  assert.equal(autoId(argv('XADD s * f v')), true);
  assert.equal(autoId(argv('XADD s 1700000000000-* f v')), true);
  assert.equal(autoId(argv('XADD s 5-1 f *')), false);
  assert.equal(autoId(argv('XADD s NOMKSTREAM MAXLEN ~ 1000 LIMIT 10 * f v')), true);
  assert.equal(autoId(argv('XADD s MINID = 5-0 7-0 * v')), false);
  assert.equal(autoId(argv('XADD s maxlen 10 *')), true);
  assert.equal(autoId(argv('XADD s')), false);
});
