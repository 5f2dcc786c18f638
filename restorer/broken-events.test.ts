// What a restore server's log says about a failed load — the reason line, the command it names, the loader's progress —
// and which replayed event that is, in an incr file written as a restore writes it.
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { encodeCommand, RespReader } from '../core/redis/resp.js';
import type { StoredEvent } from '../core/store/event-store.js';
import { findBrokenEvent, matchesFailure, parseLoadFailure, shortArgs } from './broken-events.js';
import { withDumpChecksum } from './dump-payload.js';
import { IncrWriter } from './incr-writer.js';

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

// From redis-server 7.0.15 (trimmed): a corrupt RESTORE payload with a valid checksum, loaded from the incr file.
const RDB_ERROR = `7686:C 07 Dec 2026 11:06:36.233 # Redis version=7.0.15, bits=64, commit=00000000, modified=0, pid=7686, just started
7686:M 07 Dec 2026 11:06:36.234 # Server initialized
7686:M 07 Dec 2026 11:06:36.252 * DB loaded from base file appendonly.aof.1.base.rdb: 0.017 seconds
7686:M 07 Dec 2026 11:06:36.255 # Internal error in RDB reading offset 500273, function at rdb.c:413 -> Invalid LZF compressed string
[offset 0] Checking RDB file appendonly.aof.1.incr.aof
`;

test('an RDB error gives the reason and the loader progress; a crash report its progress, allocation and server', () => {
  const rdb = parseLoadFailure(RDB_ERROR);
  assert.equal(
    rdb.reason,
    'Internal error in RDB reading offset 500273, function at rdb.c:413 -> Invalid LZF compressed string',
  );
  assert.equal(rdb.rdbError, true);
  assert.equal(rdb.loadedBytes, 500_273);
  assert.deepEqual(rdb.server, { name: 'redis', version: '7.0.15' });
  assert.equal(rdb.argv, undefined);
  const crash = parseLoadFailure(
    CRASH.replace('# Server initialized', '# Redis version=7.0.15, bits=64\n9289:M x # Server initialized') +
      '------ INFO OUTPUT ------\r\nloading_total_bytes:154228\r\nloading_loaded_bytes:125866\r\n',
  );
  assert.equal(crash.loadedBytes, 125_866);
  assert.equal(crash.outOfMemoryBytes, 9223372036854775826);
  assert.deepEqual(crash.server, { name: 'redis', version: '7.0.15' });
  assert.equal(crash.rdbError, undefined);
});

const pad = `-- ${'p'.repeat(140)}\n`;
/** Events of one epoch from seq 1, each a SET unless given. */
function history(n: number, special: Record<number, (string | Buffer)[]> = {}): StoredEvent[] {
  return Array.from({ length: n }, (_, i) => {
    const seq = i + 1;
    return {
      seq,
      db: 0,
      tx: 0,
      tsUs: 1_000_000 * seq,
      kind: 'command',
      resp: encodeCommand(special[seq] ?? ['SET', `k${seq}`, 'v']),
    };
  });
}

/** Writes an incr file as a restore does (tail, then the events not skipped); its commands' offsets. */
async function incrFile(tail: Buffer, events: StoredEvent[], skip: Set<number> = new Set()) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-broken-'));
  const file = path.join(dir, 'appendonly.aof.1.incr.aof');
  const w = new IncrWriter(createWriteStream(file));
  await w.writeTail(tail);
  for (const e of events) if (!skip.has(e.seq)) await w.write(e);
  await w.end();
  const reader = new RespReader();
  reader.push(await readFile(file));
  const offsets: number[] = [];
  for (let at = 0; reader.read() !== undefined; at = reader.consumed) offsets.push(at);
  return { dir, file, offsets };
}

async function* stream<T>(items: T[]): AsyncGenerator<T> {
  for (const i of items) yield { ...i };
}

const crashAt = (argv: string[], loadedBytes?: number) => {
  const f = parseLoadFailure(
    `x # Redis 7.0.15 crashed by signal: 11\n------ CURRENT CLIENT INFO ------\n${argv.map((a, i) => `argv[${i}]: '"${a.slice(0, 128)}"'`).join('\n')}\n`,
  );
  if (loadedBytes !== undefined) f.loadedBytes = loadedBytes;
  return f;
};

test('findBrokenEvent: of two events sharing the 128 bytes the report shows, the one where the load stopped', async () => {
  const events = history(1500, {
    2: ['EVAL', `${pad}return 1`, '0'],
    1400: ['EVAL', `${pad}return redis.call('INCR', 'a', 'x')`, '0'],
  });
  const base = 1000;
  const { dir, file, offsets } = await incrFile(Buffer.alloc(0), events);
  try {
    const failure = crashAt(['EVAL', pad.replace('\n', '\\n'), '0'], base + offsets[1024]!);
    const write = (e: StoredEvent) => e.resp;
    const found = await findBrokenEvent({
      items: stream(events),
      failure,
      write,
      skip: new Set(),
      incr: { path: file, tailBytes: 0, baseBytes: base },
    });
    assert.equal(found?.item.seq, 1400);
    assert.deepEqual(
      found?.candidates.map((c) => c.seq),
      [1400],
    );
    // Without the file, only bytes: the first that fits (what the rule above improves on).
    const blind = await findBrokenEvent({ items: stream(events), failure, write, skip: new Set() });
    assert.equal(blind?.item.seq, 2);
    // A progress inside the base RDB: no event of the incr file broke it.
    const inBase = await findBrokenEvent({
      items: stream(events),
      failure: { ...failure, loadedBytes: base - 1 },
      write,
      skip: new Set(),
      incr: { path: file, tailBytes: 0, baseBytes: base },
    });
    assert.equal(inBase, undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('findBrokenEvent: a recorded broken event is skipped, so a repeat of it is named, not the old seq', async () => {
  const events = history(20, { 5: ['DEBUG', 'SEGFAULT'], 12: ['DEBUG', 'SEGFAULT'] });
  const skip = new Set([5]);
  const { dir, file } = await incrFile(Buffer.alloc(0), events, skip);
  try {
    const found = await findBrokenEvent({
      items: stream(events),
      failure: crashAt(['DEBUG', 'SEGFAULT'], 0),
      write: (e) => e.resp,
      skip,
      incr: { path: file, tailBytes: 0, baseBytes: 0 },
    });
    assert.equal(found?.item.seq, 12);
    const blind = await findBrokenEvent({
      items: stream(events),
      failure: crashAt(['DEBUG', 'SEGFAULT']),
      write: (e) => e.resp,
      skip,
    });
    assert.equal(blind?.item.seq, 12);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('findBrokenEvent: a tail command that fits first names no event; a queued command counts where its EXEC is', async () => {
  const tail = Buffer.concat([encodeCommand(['SET', 'a', '1']), encodeCommand(['DEBUG', 'SEGFAULT'])]);
  const events = history(2000, { 3: ['DEBUG', 'SEGFAULT'] });
  const { dir, file } = await incrFile(tail, events);
  const write = (e: StoredEvent) => e.resp;
  const incr = { path: file, tailBytes: tail.length, baseBytes: 0 };
  try {
    const fromTail = await findBrokenEvent({
      items: stream(events),
      failure: crashAt(['DEBUG', 'SEGFAULT'], 0),
      write,
      skip: new Set(),
      incr,
    });
    assert.equal(fromTail, undefined);
    // Seqs 1000–1030 are one transaction: the file holds 2 tail commands, a SELECT, seqs 1–999, then MULTI (command
    // 1002), seq 1010's DEBUG SEGFAULT at 1013 and EXEC at 1034; the progress moved at command 1024, between them.
    const inTx = history(2000, { 1010: ['DEBUG', 'SEGFAULT'] }).map((e) =>
      e.seq >= 1000 && e.seq <= 1030 ? { ...e, tx: 1000 } : e,
    );
    const tx = await incrFile(tail, inTx);
    try {
      const found = await findBrokenEvent({
        items: stream(inTx),
        failure: crashAt(['DEBUG', 'SEGFAULT'], tx.offsets[1024]!),
        write,
        skip: new Set(),
        incr: { ...incr, path: tx.file },
      });
      assert.equal(found?.item.seq, 1010);
    } finally {
      await rm(tx.dir, { recursive: true, force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('findBrokenEvent: an unknown command is the first of its name in the file; in the tail, no event', async () => {
  const events = history(10, { 4: ['HSETEX', 'h', 'PX', '1', 'FIELDS', '1', 'a', 'b'], 8: ['HSETEX', 'h'] });
  const unknown = parseLoadFailure("1:M x # Unknown command 'HSETEX' reading the append only file a.incr.aof\n");
  const write = (e: StoredEvent) => e.resp;
  const plain = await incrFile(Buffer.alloc(0), events);
  const tail = encodeCommand(['HSETEX', 'x']);
  const tailed = await incrFile(tail, events);
  try {
    const found = await findBrokenEvent({
      items: stream(events),
      failure: unknown,
      write,
      skip: new Set(),
      incr: { path: plain.file, tailBytes: 0, baseBytes: 0 },
    });
    assert.equal(found?.item.seq, 4);
    const none = await findBrokenEvent({
      items: stream(events),
      failure: unknown,
      write,
      skip: new Set(),
      incr: { path: tailed.file, tailBytes: tail.length, baseBytes: 0 },
    });
    assert.equal(none, undefined);
  } finally {
    await rm(plain.dir, { recursive: true, force: true });
    await rm(tailed.dir, { recursive: true, force: true });
  }
});

test('findBrokenEvent: an RDB error fits only RESTOREs whose checksum passes, where the load stopped', async () => {
  const good = Buffer.from('00c30940c8016161e0bb000161610a001f99f72e01b20de3', 'hex');
  const badBody = Buffer.from(good);
  badBody[4] = 0x7f;
  const corrupt = withDumpChecksum(badBody);
  const events = history(1200, {
    10: ['RESTORE', 'x', '0', corrupt],
    1100: ['RESTORE', 'y', '0', badBody],
    1150: ['RESTORE', 'z', '0', corrupt],
  });
  const { dir, file, offsets } = await incrFile(Buffer.alloc(0), events);
  try {
    const found = await findBrokenEvent({
      items: stream(events),
      failure: { ...parseLoadFailure(RDB_ERROR), loadedBytes: 500 + offsets[1024]! },
      write: (e) => e.resp,
      skip: new Set(),
      incr: { path: file, tailBytes: 0, baseBytes: 500 },
    });
    assert.equal(found?.item.seq, 1150);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
