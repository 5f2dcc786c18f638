// Which failed loads the restore host caused (nothing is recorded as broken then), from redis-server 7.0.15's logs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLoadFailure } from './broken-events.js';
import { compareVersions, hostCause } from './load-failure.js';

const START =
  '8173:C 07 Dec 2026 11:07:32.951 # Redis version=7.0.15, bits=64, commit=00000000, modified=0, pid=8173\n';
// `ulimit -v 300000` around a restore server loading `SETRANGE x 400000000 A`: the host's limit, not the event.
const HOST_OOM = `${START}8173:M 07 Dec 2026 11:07:32.955 # Out Of Memory allocating 400000011 bytes!
8173:M 07 Dec 2026 11:07:32.955 # Guru Meditation: Redis aborting for OUT OF MEMORY. Allocating 400000011 bytes! #server.c:6658
------ CURRENT CLIENT INFO ------
argv[0]: '"SETRANGE"'
argv[1]: '"x"'
argv[2]: '"400000000"'
argv[3]: '"A"'
`;
const ABSURD_OOM = HOST_OOM.replaceAll('400000011', '9223372036854775826');
const UNKNOWN = `${START}8189:M 07 Dec 2026 11:07:33.419 # Unknown command 'HSETEX' reading the append only file appendonly.aof.1.incr.aof\n`;
const source = (server: string, version: string) => ({ server, version, config: {} });

test('an abort for out of memory is the host when the allocation is plausible, the event when it is absurd', () => {
  assert.match(hostCause(parseLoadFailure(HOST_OOM), undefined) ?? '', /ran out of memory allocating 400000011 bytes/);
  assert.equal(hostCause(parseLoadFailure(ABSURD_OOM), undefined), undefined);
});

test('an unknown command is the host when the restore server is older than the source, or another server', () => {
  const f = parseLoadFailure(UNKNOWN);
  assert.match(
    hostCause(f, source('redis', '7.4.2')) ?? '',
    /restore server \(redis 7\.0\.15\) is older than the source \(redis 7\.4\.2\).* does not know HSETEX/,
  );
  assert.match(hostCause(f, source('valkey', '7.2.5')) ?? '', /\(valkey 7\.2\.5\)/);
  assert.equal(hostCause(f, source('redis', '7.0.15')), undefined);
  assert.equal(hostCause(f, source('redis', '7.0.3')), undefined);
  // Versions not known (a baseline of an older agent): the event is blamed, as before.
  assert.equal(hostCause(f, undefined), undefined);
  assert.equal(hostCause(parseLoadFailure(UNKNOWN.replace(START, '')), source('redis', '7.4.2')), undefined);
});

test('versions compare by number', () => {
  assert.equal(compareVersions('7.0.15', '7.2.0'), -1);
  assert.equal(compareVersions('7.10.0', '7.9.9'), 1);
  assert.equal(compareVersions('7.0', '7.0.0'), 0);
});
