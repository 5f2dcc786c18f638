// What a restore server's log says about a failed load: the reason line and the command it names, matched against what
// the restore wrote.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeCommand } from '../core/redis/resp.js';
import { matchesFailure, parseLoadFailure, shortArgs } from './broken-events.js';

// Shaped like Redis 7.0.15's crash report (trimmed).
const CRASH = `9288:C 03 Dec 2026 20:27:29.020 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo
9289:M 03 Dec 2026 20:27:29.022 # Server initialized
9289:M 03 Dec 2026 20:27:29.026 # Out Of Memory allocating 9223372036854775826 bytes!
=== REDIS BUG REPORT START: Cut & paste starting from here ===
9289:M 03 Dec 2026 20:27:29.026 # Guru Meditation: Redis aborting for OUT OF MEMORY. Allocating 9223372036854775826 bytes! #server.c:6658
------ CURRENT CLIENT INFO ------
id=18446744073709551615 addr=?:0 laddr=?:0 fd=-1 name= age=0 idle=0 flags=x db=0 cmd=exec user=default redir=-1 resp=2
argv[0]: '"SETRANGE"'
argv[1]: '"k\\x00\\n\\"q"'
argv[2]: '"9223372036854775807"'
argv[3]: '"A"'

------ MODULES INFO OUTPUT ------
`;

test('a crash report gives the reason and the argv, unescaped to bytes', () => {
  const f = parseLoadFailure(CRASH);
  assert.equal(f.reason, 'Redis aborting for OUT OF MEMORY. Allocating 9223372036854775826 bytes!');
  assert.deepEqual(
    f.argv?.map((a) => a.bytes),
    [Buffer.from('SETRANGE'), Buffer.from('k\x00\n"q', 'latin1'), Buffer.from('9223372036854775807'), Buffer.from('A')],
  );
  const key = Buffer.from('k\x00\n"q', 'latin1');
  assert.ok(matchesFailure(encodeCommand(['setrange', key, '9223372036854775807', 'A']), f));
  assert.ok(!matchesFailure(encodeCommand(['SETRANGE', key, '1', 'A']), f));
  assert.ok(!matchesFailure(encodeCommand(['SETRANGE', key, '9223372036854775807', 'A', 'extra']), f));
  assert.ok(!matchesFailure(encodeCommand(['SET', key, 'v']), f));
});

test('an argument the report cut at 128 bytes matches by its prefix', () => {
  const long = 'x'.repeat(300);
  const f = parseLoadFailure(
    `x # Guru Meditation: boom #a.c:1\n------ CURRENT CLIENT INFO ------\nargv[0]: '"APPEND"'\nargv[1]: '"k"'\nargv[2]: '"${long.slice(0, 128)}"'\n`,
  );
  assert.ok(matchesFailure(encodeCommand(['APPEND', 'k', long]), f));
  assert.ok(!matchesFailure(encodeCommand(['APPEND', 'k', `y${long}`]), f));
});

test('an unknown command is named; a log without either names nothing but still says why', () => {
  const unknown = parseLoadFailure(
    "1:M 03 Dec 2026 20:00:00.000 # Unknown command 'HSETEX' reading the append only file appendonly.aof.1.incr.aof\n",
  );
  assert.equal(unknown.unknownCommand, 'HSETEX');
  assert.ok(matchesFailure(encodeCommand(['hsetex', 'h', 'PXAT', '1', 'FIELDS', '1', 'a', 'b']), unknown));
  const bare = parseLoadFailure(
    '1:M 03 Dec 2026 20:00:00.000 # Server initialized\n1:M 03 Dec 2026 20:00:00.000 # Something odd happened\n',
  );
  assert.equal(bare.reason, 'Something odd happened');
  assert.equal(bare.argv, undefined);
  assert.ok(!matchesFailure(encodeCommand(['SET', 'k', 'v']), bare));
  assert.equal(parseLoadFailure('').reason, 'the server exited without saying why');
});

test('shortArgs keeps people-sized text', () => {
  assert.equal(shortArgs([Buffer.from('SET'), Buffer.from([0, 255]), Buffer.from('v')]), 'SET \\x00\\xff v');
  assert.match(
    shortArgs([Buffer.from('SET'), Buffer.from('k'), Buffer.alloc(1000, 0x61)]),
    /^SET k a{64}…\(1000 bytes\)$/,
  );
});
