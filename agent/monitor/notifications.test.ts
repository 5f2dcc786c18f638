// Keyevent notifications the MONITOR agent reads: the flags it adds (the hash class where fields have TTLs) and the
// push frames it turns into server-side changes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIELD_TTL_NOTIFY_FLAGS, mergeNotifyFlags, parseServerChange } from './notifications.js';

const frame = (...a: string[]) => a.map((x) => Buffer.from(x));

test('flags: ours are added to the operator’s, the hash class only where asked, A covers every class', () => {
  assert.equal(mergeNotifyFlags(''), 'Exe');
  assert.equal(mergeNotifyFlags('', FIELD_TTL_NOTIFY_FLAGS), 'Exeh');
  assert.equal(mergeNotifyFlags('Kl', FIELD_TTL_NOTIFY_FLAGS), 'KlExeh');
  assert.equal(mergeNotifyFlags('AE', FIELD_TTL_NOTIFY_FLAGS), 'AE');
});

test('push frames: expired, evicted and hexpired with their db and key; anything else is not a change', () => {
  assert.deepEqual(parseServerChange(frame('pmessage', '__keyevent@*__:hexpired', '__keyevent@3__:hexpired', 'h')), {
    kind: 'hexpired',
    db: 3,
    key: Buffer.from('h'),
  });
  assert.equal(
    parseServerChange(frame('pmessage', '__keyevent@*__:expired', '__keyevent@0__:expired', 'k'))?.kind,
    'expired',
  );
  assert.equal(parseServerChange(frame('pmessage', 'p', '__keyevent@0__:hset', 'h')), undefined);
  assert.equal(parseServerChange(frame('message', '__keyevent@0__:expired', 'k')), undefined);
});
