// The flashback CLI on bad input: one clear line on stderr naming the problem, exit code ≠ 0; --help lists every
// command.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort } from '../core/servers/free-port.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { testClickHouse, testNats, testRedis } from './helpers/servers.js';
import { cli } from './helpers/cli.js';

let redis: ServerProcess;
let nats: ServerProcess;
let clickhouse: ServerProcess;
let closedPort: number;
before(async () => {
  [redis, nats, clickhouse] = await Promise.all([testRedis(), testNats(), testClickHouse()]);
  closedPort = await freePort();
});
after(async () => {
  await Promise.all([redis?.stop(), nats?.stop(), clickhouse?.stop()]);
});

async function failsWith(args: string[], pattern: RegExp): Promise<void> {
  const r = await cli(args);
  assert.notEqual(r.code, 0, `exit code of flashback ${args.join(' ')}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^flashback: /);
  assert.match(lines[0]!, pattern);
}

test('--help lists every command', async () => {
  const r = await cli(['--help']);
  assert.equal(r.code, 0);
  for (const c of ['up', 'demo', 'agent', 'sink', 'sql', 'restore', 'windows', 'api', 'restorer', 'history'])
    assert.match(r.stdout, new RegExp(`flashback ${c}\\b`));
});

test('agent: unreachable or malformed Redis, unreachable NATS, missing --redis', async () => {
  await failsWith(
    ['agent', '--redis', `redis://127.0.0.1:${closedPort}`, '--nats', nats.url],
    new RegExp(`Redis at 127\\.0\\.0\\.1:${closedPort}.*refused`),
  );
  await failsWith(['agent', '--redis', 'localhost:6379', '--nats', nats.url], /--redis "localhost:6379".*redis:\/\//);
  await failsWith(
    ['agent', '--redis', 'redis://127.0.0.1:notaport', '--nats', nats.url],
    /--redis "redis:\/\/127\.0\.0\.1:notaport" is not a URL/,
  );
  await failsWith(
    ['agent', '--redis', redis.url, '--nats', `nats://127.0.0.1:${closedPort}`],
    new RegExp(`NATS at nats://127\\.0\\.0\\.1:${closedPort}`),
  );
  await failsWith(['agent', '--nats', nats.url], /redis/);
});

test('sink and sql: unreachable ClickHouse, malformed URL, write SQL refused', async () => {
  await failsWith(
    ['sink', '--nats', nats.url, '--clickhouse', `http://127.0.0.1:${closedPort}`],
    new RegExp(`ClickHouse at http://127\\.0\\.0\\.1:${closedPort}`),
  );
  await failsWith(['sql', 'SELECT 1', '--clickhouse', 'not a url'], /ClickHouse URL/i);
  await failsWith(['sql', 'DROP TABLE flashback.events', '--clickhouse', clickhouse.url], /read-only/i);
});

test('restore: malformed time, two cutoffs, no destination', async () => {
  await failsWith(
    ['restore', '--node', 'n1', '--to', 'next tuesday', '--spawn', '--clickhouse', clickhouse.url, '--nats', nats.url],
    /"next tuesday"/,
  );
  await failsWith(['restore', '--node', 'n1', '--to', '2026-01-01', '--to-seq', '3', '--spawn'], /exactly one cutoff/);
  await failsWith(['restore', '--node', 'n1', '--to-seq', '3'], /exactly one destination/);
});
