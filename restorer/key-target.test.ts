// How a restore target's URL is shown in reports, logs and errors: never with its password.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shownUrl } from './key-target.js';

test('a URL without a password is shown as given; one with a password without it', () => {
  assert.equal(shownUrl('redis://127.0.0.1:6390'), 'redis://127.0.0.1:6390');
  assert.equal(shownUrl('redis://app@10.0.0.1:6379/2'), 'redis://app@10.0.0.1:6379/2');
  assert.equal(shownUrl('redis://:s3cret@10.0.0.1:6379'), 'redis://:***@10.0.0.1:6379/0');
  assert.equal(shownUrl('rediss://app:s3cret@[::1]:6380/1'), 'rediss://app:***@[::1]:6380/1');
  // An @ or a / inside the password (percent-encoded or not) leaves nothing of it behind.
  assert.equal(shownUrl('redis://:pa%40ss@h:1'), 'redis://:***@h:1/0');
  assert.equal(shownUrl('redis://:pa@ss@h:1'), 'redis://:***@h:1/0');
  // Not a URL we accept: still without the password.
  assert.doesNotMatch(shownUrl('redis://:s3cret@h:1/notadb'), /s3cret/);
});
