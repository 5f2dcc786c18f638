// The source's settings a restore server starts with: only known names and plain values reach its command line, and
// a setting it does not get is a warning naming the default and the risk.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { replayConfig } from './replay-config.js';

const source = (config: Record<string, unknown>) => ({ server: 'redis', version: '7.0.15', config }) as never;

test('every recorded setting becomes --name value, without a warning', () => {
  const r = replayConfig(
    source({ 'proto-max-bulk-len': '1048576', 'stream-node-max-entries': '7', 'stream-node-max-bytes': '0' }),
    12,
  );
  assert.deepEqual(r.args, [
    '--proto-max-bulk-len',
    '1048576',
    '--stream-node-max-entries',
    '7',
    '--stream-node-max-bytes',
    '0',
  ]);
  assert.deepEqual(r.warnings, []);
});

test('a stored baseline cannot add flags: unknown names and values that are not plain are left out and named', () => {
  const r = replayConfig(
    source({
      'proto-max-bulk-len': '--loadmodule /tmp/evil.so',
      'stream-node-max-entries': '7 --port 1',
      'stream-node-max-bytes': '-1',
      loadmodule: '/tmp/evil.so',
      dir: '/etc',
    }),
    12,
  );
  assert.deepEqual(r.args, []);
  assert.equal(r.warnings.length, 4);
  assert.match(r.warnings[0]!, /proto-max-bulk-len .*"--loadmodule \/tmp\/evil\.so".* runs with its default 536870912/);
  assert.match(r.warnings[1]!, /stream-node-max-entries .*"7 --port 1".*default 100/);
  assert.match(r.warnings[2]!, /stream-node-max-bytes .*"-1".*default 4096/);
  assert.match(r.warnings[3]!, /\("loadmodule", "dir"\); they were ignored/);
  assert.ok(!r.args.some((a) => /loadmodule|dir|port/.test(a)));
  // Not strings at all (a hand-edited JSON row): left out the same way.
  const odd = replayConfig(source({ 'proto-max-bulk-len': 5, 'stream-node-max-entries': ['1'] }), 3);
  assert.deepEqual(odd.args, []);
});

test('a baseline of an older agent, or one missing a setting, restores with defaults and says what that risks', () => {
  const old = replayConfig(undefined, 40);
  assert.deepEqual(old.args, []);
  assert.equal(old.warnings.length, 1);
  assert.match(
    old.warnings[0]!,
    /^baseline seq 40 has no record of the source's proto-max-bulk-len, stream-node-max-entries, stream-node-max-bytes \(it was taken by an agent that did not record the source server\), so the restore server runs with its default proto-max-bulk-len 536870912 \(512 MB\), stream-node-max-entries 100, stream-node-max-bytes 4096; if the source ran with other values, a string write the source refused .*; an approximate stream trim \(XADD … ~\) may keep other entries than the source kept$/,
  );
  const partial = replayConfig(source({ 'stream-node-max-entries': '100', 'stream-node-max-bytes': '4096' }), 41);
  assert.deepEqual(partial.args, ['--stream-node-max-entries', '100', '--stream-node-max-bytes', '4096']);
  assert.equal(partial.warnings.length, 1);
  assert.match(partial.warnings[0]!, /no record of the source's proto-max-bulk-len \(the source did not let the agent/);
  assert.doesNotMatch(partial.warnings[0]!, /stream trims/);
});
