// CommandTable against a real redis-server: lookup (subcommands, case), flags, and keys compared with the server's own
// COMMAND GETKEYS.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CommandTable } from '../core/redis/command-table.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { RespError } from '../core/redis/resp.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { testRedis } from './helpers/servers.js';

const argv = (...a: (string | Buffer)[]) => a.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)));
const strs = (bs: Buffer[]) => bs.map((b) => b.toString('latin1'));

describe('CommandTable (live server)', () => {
  let redis: ServerProcess;
  let conn: RawRedis;
  let table: CommandTable;

  before(async () => {
    redis = await testRedis();
    conn = await RawRedis.connect(parseRedisUrl(redis.url));
    table = await CommandTable.load(conn);
  });
  after(async () => {
    conn?.close();
    await redis?.stop();
  });

  /** The server's own answer; commands without key arguments answer an error, which means []. */
  async function serverKeys(a: Buffer[]): Promise<string[]> {
    const r = await conn.call(['COMMAND', 'GETKEYS', ...a]);
    if (r instanceof RespError) return [];
    return strs(r as Buffer[]);
  }

  const cases: {
    argv: Buffer[];
    name: string;
    write: boolean;
    keys: string[];
    blocking?: boolean;
    nondeterministic?: boolean;
  }[] = [
    { argv: argv('SET', 'k', 'v', 'EX', '10'), name: 'set', write: true, keys: ['k'] },
    { argv: argv('mset', 'a', '1', 'b', '2'), name: 'mset', write: true, keys: ['a', 'b'] },
    { argv: argv('HSET', 'h', 'f', 'v', 'g', 'w'), name: 'hset', write: true, keys: ['h'] },
    { argv: argv('ZADD', 'z', '1', 'm'), name: 'zadd', write: true, keys: ['z'] },
    { argv: argv('XADD', 's', '*', 'f', 'v'), name: 'xadd', write: true, keys: ['s'] },
    { argv: argv('XGROUP', 'CREATE', 's', 'g', '$', 'MKSTREAM'), name: 'xgroup|create', write: true, keys: ['s'] },
    { argv: argv('xgroup', 'createconsumer', 's', 'g', 'c'), name: 'xgroup|createconsumer', write: true, keys: ['s'] },
    { argv: argv('EVAL', 'return 1', '2', 'k1', 'k2', 'a1'), name: 'eval', write: false, keys: ['k1', 'k2'] },
    {
      argv: argv('SORT', 'src', 'BY', 'w_*', 'LIMIT', '0', '1', 'GET', '#', 'STORE', 'dst'),
      name: 'sort',
      write: true,
      keys: ['src', 'dst'],
    },
    { argv: argv('SORT', 'src', 'GET', 'store', 'ALPHA'), name: 'sort', write: true, keys: ['src'] },
    {
      argv: argv('ZUNIONSTORE', 'd', '2', 'a', 'b', 'WEIGHTS', '1', '2'),
      name: 'zunionstore',
      write: true,
      keys: ['d', 'a', 'b'],
    },
    { argv: argv('LMOVE', 'a', 'b', 'LEFT', 'RIGHT'), name: 'lmove', write: true, keys: ['a', 'b'] },
    {
      argv: argv('BLMOVE', 'a', 'b', 'LEFT', 'RIGHT', '0'),
      name: 'blmove',
      write: true,
      blocking: true,
      keys: ['a', 'b'],
    },
    {
      argv: argv('MIGRATE', '127.0.0.1', '1', '', '0', '5000', 'KEYS', 'x', 'y'),
      name: 'migrate',
      write: true,
      keys: ['x', 'y'],
    },
    {
      argv: argv('MIGRATE', '127.0.0.1', '1', 'kk', '0', '5000', 'REPLACE'),
      name: 'migrate',
      write: true,
      keys: ['kk'],
    },
    {
      argv: argv('GEORADIUS', 'g', '0', '0', '1', 'km', 'STORE', 'd1'),
      name: 'georadius',
      write: true,
      keys: ['g', 'd1'],
    },
    { argv: argv('OBJECT', 'FREQ', 'k'), name: 'object|freq', write: false, nondeterministic: true, keys: ['k'] },
    { argv: argv('FUNCTION', 'LOAD', '#!lua name=x\n'), name: 'function|load', write: true, keys: [] },
    { argv: argv('FCALL', 'f', '1', 'fk', 'fv'), name: 'fcall', write: false, keys: ['fk'] },
    { argv: argv('SPOP', 's', '2'), name: 'spop', write: true, nondeterministic: true, keys: ['s'] },
    { argv: argv('BLPOP', 'l1', 'l2', '0'), name: 'blpop', write: true, blocking: true, keys: ['l1', 'l2'] },
    { argv: argv('GET', 'k'), name: 'get', write: false, keys: ['k'] },
    { argv: argv('FLUSHALL'), name: 'flushall', write: true, keys: [] },
  ];

  for (const c of cases) {
    test(strs(c.argv).join(' ').replace(/\n/g, '\\n'), async () => {
      const spec = table.lookup(c.argv);
      assert.ok(spec, 'found');
      assert.equal(spec.name, c.name);
      assert.equal(spec.write, c.write);
      assert.equal(spec.blocking, c.blocking ?? false);
      if (c.nondeterministic !== undefined) assert.equal(spec.nondeterministic, c.nondeterministic);
      const keys = strs(table.keys(c.argv, spec));
      assert.deepEqual(keys, c.keys);
      // Order may differ from the server's getkeys procs; the set must not.
      assert.deepEqual([...keys].sort(), [...new Set(await serverKeys(c.argv))].sort());
    });
  }

  test('lookup is case-insensitive, resolves subcommands, and falls back to the container', () => {
    assert.equal(table.lookup(argv('sEt', 'k', 'v'))?.name, 'set');
    assert.equal(table.lookup(argv('Config', 'sEt', 'x', 'y'))?.name, 'config|set');
    assert.equal(table.lookup(argv('XGROUP'))?.name, 'xgroup');
    assert.equal(table.lookup(argv('XGROUP', 'nosuchsub'))?.name, 'xgroup');
    assert.equal(table.lookup(argv('NOSUCHCOMMAND', 'k')), undefined);
    assert.equal(table.lookup([]), undefined);
  });

  test('binary keys come back as the exact bytes of argv', () => {
    const k1 = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x22]);
    const k2 = Buffer.from([0xc3, 0x28]);
    const keys = table.keys([Buffer.from('MSET'), k1, Buffer.from('v'), k2, Buffer.from('w')]);
    assert.equal(keys.length, 2);
    assert.ok(keys[0]!.equals(k1) && keys[1]!.equals(k2));
  });

  test('a table built from a saved COMMAND INFO reply equals the loaded one for those commands', async () => {
    const reply = await conn.call(['COMMAND', 'INFO', 'set', 'xgroup', 'sort']);
    const saved = CommandTable.fromReply(reply);
    assert.equal(saved.commands.size, 3);
    assert.equal(saved.lookup(argv('XGROUP', 'CREATE', 's', 'g', '$'))?.name, 'xgroup|create');
    assert.deepEqual(strs(saved.keys(argv('SORT', 'a', 'STORE', 'b'))), ['a', 'b']);
    assert.equal(saved.lookup(argv('GET', 'k')), undefined);
  });

  test('every write command of the server is found by its own name', () => {
    let writes = 0;
    for (const spec of table.commands.values()) {
      assert.equal(table.lookup([Buffer.from(spec.name.toUpperCase())]), spec);
      if (spec.write) writes++;
    }
    assert.ok(writes > 50, `server lists ${writes} write commands`);
  });
});
