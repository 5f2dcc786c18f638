// normalizeArgv on real servers: commands run at a source, their MONITOR lines normalized into an AOF that a fresh
// redis-server loads, keys compared.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { normalizeArgv } from '../agent/monitor/normalize.js';
import { CommandTable } from '../core/redis/command-table.js';
import type { MonitorLine } from '../core/redis/monitor-line.js';
import { MonitorParser } from '../core/redis/monitor-parser.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { encodeCommand, RespError, type RespValue } from '../core/redis/resp.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { testRedis } from './helpers/servers.js';

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A MONITOR connection collecting lines, binary-exact. */
async function monitor(url: string): Promise<{ lines: MonitorLine[]; close(): void }> {
  const conn = await RawRedis.connect(parseRedisUrl(url));
  const lines: MonitorLine[] = [];
  const parser = new MonitorParser((l) => lines.push(l));
  const ok = await conn.call(['MONITOR']);
  assert.equal(ok, 'OK');
  const rest = conn.detach();
  if (rest.length > 0) parser.push(rest);
  conn.socket.on('data', (c: Buffer) => parser.push(c));
  return { lines, close: () => conn.close() };
}

interface KeyState {
  type: string;
  pexpiretime: number;
  dump: string;
}

async function stateOf(conn: RawRedis, key: Buffer): Promise<KeyState> {
  const type = (await conn.call(['TYPE', key])) as string;
  const pexpiretime = (await conn.call(['PEXPIRETIME', key])) as number;
  const dump = await conn.call(['DUMP', key]);
  return { type, pexpiretime, dump: Buffer.isBuffer(dump) ? dump.toString('hex') : 'nil' };
}

describe('normalized expiries replayed from an AOF match the source', () => {
  let source: ServerProcess;
  let client: RawRedis;
  let table: CommandTable;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'flashback-normalize-'));

  before(async () => {
    source = await testRedis();
    client = await RawRedis.connect(parseRedisUrl(source.url));
    table = await CommandTable.load(client);
  });
  after(async () => {
    client?.close();
    await source?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('every rule: existence, type, value and PEXPIRETIME after loading equal the source', async () => {
    const mon = await monitor(source.url);
    const call = async (...argv: (string | Buffer)[]): Promise<RespValue> => client.call(argv);
    const futureS = Math.floor(Date.now() / 1000) + 3600;
    const binKey = Buffer.from([0x62, 0x00, 0xff, 0x0d, 0x0a]);
    const keys: Buffer[] = [];
    const k = (name: string) => {
      const b = Buffer.from(name);
      keys.push(b);
      return b;
    };
    try {
      await call('SET', k('set-ex'), 'v', 'EX', '3600');
      await call('SET', k('set-px-nx'), 'v', 'PX', '3600000', 'NX');
      await call('SET', k('set-exat'), 'v', 'EXAT', String(futureS));
      // Past PXAT then APPEND: the source sees the key gone, so APPEND creates a fresh persistent "x".
      await call('SET', k('set-past'), 'old');
      await call('SET', 'set-past', 'v', 'PXAT', '1000');
      await call('APPEND', 'set-past', 'x');
      await call('SET', k('set-past-nx'), 'old', 'EX', '3600');
      await call('SET', 'set-past-nx', 'v', 'NX', 'PXAT', '1000');
      await call('HSET', k('set-past-get-hash'), 'f', 'v');
      assert.ok((await call('SET', 'set-past-get-hash', 'v', 'PXAT', '1000', 'GET')) instanceof RespError);
      await call('SET', k('set-past-get-str'), 'old');
      await call('SET', 'set-past-get-str', 'v', 'PXAT', '1000', 'GET');
      await call('SETEX', k('setex'), '3600', 'v');
      await call('PSETEX', k('psetex'), '3600000', 'v');
      await call('SETEX', binKey, '3600', Buffer.from([0x00, 0x01, 0xfe]));
      keys.push(binKey);
      await call('SET', k('getex-ex'), 'v');
      await call('GETEX', 'getex-ex', 'EX', '3600');
      await call('SET', k('getex-past'), 'v');
      await call('GETEX', 'getex-past', 'PXAT', '1000');
      await call('APPEND', 'getex-past', 'y');
      await call('HSET', k('getex-past-hash'), 'f', 'v');
      assert.ok((await call('GETEX', 'getex-past-hash', 'PXAT', '1000')) instanceof RespError);
      await call('SET', k('expire'), 'v');
      await call('EXPIRE', 'expire', '3600');
      await call('SET', k('pexpire-xx'), 'v', 'EX', '100');
      await call('PEXPIRE', 'pexpire-xx', '3600000', 'XX');
      await call('SET', k('expireat'), 'v');
      await call('EXPIREAT', 'expireat', String(futureS));
      await call('SET', k('expire-neg'), 'v');
      await call('EXPIRE', 'expire-neg', '-1');
      await call('SET', k('expireat-past'), 'v');
      await call('EXPIREAT', 'expireat-past', '1000');
      await call('APPEND', 'expireat-past', 'x');
      // Conditional past expiries: the condition decides whether the source deleted.
      await call('SET', k('gt-persistent'), 'v');
      assert.equal(await call('EXPIRE', 'gt-persistent', '-1', 'GT'), 0);
      await call('SET', k('lt-persistent'), 'v');
      assert.equal(await call('EXPIRE', 'lt-persistent', '-1', 'LT'), 1);
      await call('SET', k('nx-volatile'), 'v', 'EX', '3600');
      assert.equal(await call('EXPIRE', 'nx-volatile', '-1', 'NX'), 0);
      await call('SET', k('xx-volatile'), 'v', 'EX', '3600');
      assert.equal(await call('PEXPIREAT', 'xx-volatile', '1000', 'XX'), 1);
      await call('APPEND', 'xx-volatile', 'z');
      await call('RPUSH', 'payload-src', 'a', 'b');
      const payload = (await call('DUMP', 'payload-src')) as Buffer;
      await call('RESTORE', k('restore-rel'), '3600000', payload);
      await call('SET', k('restore-past-replace'), 'v');
      await call('RESTORE', 'restore-past-replace', '1000', payload, 'ABSTTL', 'REPLACE');
      await call('RESTORE', k('restore-past'), '1000', payload, 'ABSTTL');
      await call('ECHO', 'normalize-done');
      await until('the last MONITOR line', () => mon.lines.some((l) => l.argv[1]?.toString() === 'normalize-done'));
    } finally {
      mon.close();
    }

    const sourceStates = new Map<string, KeyState>();
    for (const key of keys) sourceStates.set(key.toString('hex'), await stateOf(client, key));

    const dir = path.join(tmp, 'aof');
    mkdirSync(path.join(dir, 'appendonlydir'), { recursive: true });
    writeFileSync(
      path.join(dir, 'appendonlydir', 'appendonly.aof.manifest'),
      'file appendonly.aof.1.incr.aof seq 1 type i\n',
    );
    const parts: Buffer[] = [];
    let rewritten = 0;
    for (const line of mon.lines) {
      const spec = table.lookup(line.argv);
      if (!spec?.write) continue;
      const replay = normalizeArgv(line.argv, line.tsUs, spec);
      if (replay !== line.argv) rewritten++;
      if (replay.length > 0) parts.push(encodeCommand(replay));
    }
    assert.ok(rewritten >= 20, `rewrote ${rewritten} commands`);
    writeFileSync(path.join(dir, 'appendonlydir', 'appendonly.aof.1.incr.aof'), Buffer.concat(parts));

    await using restored = await startRedisServer({ dir, args: ['--appendonly', 'yes'] });
    const rc = await RawRedis.connect(parseRedisUrl(restored.url));
    try {
      for (const key of keys) {
        const want = sourceStates.get(key.toString('hex'))!;
        const got = await stateOf(rc, key);
        const name = JSON.stringify(key.toString('latin1'));
        assert.equal(got.type, want.type, `${name} type`);
        assert.equal(got.dump, want.dump, `${name} value`);
        if (want.pexpiretime < 0) assert.equal(got.pexpiretime, want.pexpiretime, `${name} has no expiry`);
        else {
          // The MONITOR time may be 1 ms past the source's mstime() (see agent/monitor/normalize.ts).
          const d = got.pexpiretime - want.pexpiretime;
          assert.ok(d === 0 || d === 1, `${name} PEXPIRETIME ${got.pexpiretime} vs source ${want.pexpiretime}`);
        }
      }
      assert.equal(sourceStates.get(Buffer.from('set-past').toString('hex'))!.dump !== 'nil', true);
    } finally {
      rc.close();
    }
  });

  test('how often floor(tsUs/1000) differs from the source expiry (SET EX, PEXPIRETIME right after)', async () => {
    const mon = await monitor(source.url);
    const n = 3000;
    const actual: number[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const key = `m:${i}`;
        await client.call(['SET', key, 'v', 'EX', '1000']);
        actual.push((await client.call(['PEXPIRETIME', key])) as number);
      }
      await client.call(['ECHO', 'measure-done']);
      await until('the last MONITOR line', () => mon.lines.some((l) => l.argv[1]?.toString() === 'measure-done'));
    } finally {
      mon.close();
    }
    const sets = mon.lines.filter((l) => l.argv[0]!.toString() === 'SET' && l.argv[1]!.toString().startsWith('m:'));
    assert.equal(sets.length, n);
    const diffs = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const ours = normalizeArgv(sets[i]!.argv, sets[i]!.tsUs, table.lookup(sets[i]!.argv));
      const d = Number(ours[4]!.toString()) - actual[i]!;
      diffs.set(d, (diffs.get(d) ?? 0) + 1);
    }
    const off = n - (diffs.get(0) ?? 0);
    console.log(
      `# floor(tsUs/1000) vs source expiry over ${n} SET EX: ${JSON.stringify(Object.fromEntries(diffs))} (ms → count); ${off} off (${((off / n) * 100).toFixed(2)} %)`,
    );
    for (const d of diffs.keys()) assert.ok(d === 0 || d === 1, `difference ${d} ms`);
  });
});
