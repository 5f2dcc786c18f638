import { startClickHouseServer, type ClickHouseServerProcess } from '../../core/servers/clickhouse-server.js';
import { startNatsServer, type NatsServerProcess } from '../../core/servers/nats-server.js';
import { startRedisServer } from '../../core/servers/redis-server.js';
import type { ServerProcess } from '../../core/servers/server-process.js';

// Each server gets OS-picked loopback ports and a temp dir under os.tmpdir() that stop() removes;
// servers write only to their own log file there, never to the test's output.

/**
 * Env var naming the server binary test sources run (test/versions.test.ts runs suites again with each installed
 * line); unset: redis-server on PATH.
 */
export const TEST_REDIS_BIN_ENV = 'FLASHBACK_TEST_REDIS_BIN';

/**
 * A redis-server for one test suite; `args` are appended to the defaults (e.g. `['--appendonly', 'yes']`). Use with
 * `await using`.
 */
export function testRedis(args: string[] = [], bin?: string): Promise<ServerProcess> {
  return startRedisServer({ args, bin: bin ?? process.env[TEST_REDIS_BIN_ENV] });
}

/** A nats-server with JetStream for one test suite. Use with `await using`. */
export function testNats(): Promise<NatsServerProcess> {
  return startNatsServer();
}

/** A clickhouse-server (Debian's 18.16 here) for one test suite. Use with `await using`. */
export function testClickHouse(): Promise<ClickHouseServerProcess> {
  return startClickHouseServer();
}
