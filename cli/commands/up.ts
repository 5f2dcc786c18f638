import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import { parseDuration } from '../duration.js';
import { createLogger } from '../../core/log.js';
import { startRedisServer } from '../../core/servers/redis-server.js';
import { ApiClient } from '../api-client.js';
import { runDemo } from '../demo.js';
import { startLocalStack } from '../local-stack.js';
import { runUntilSignal } from '../run-service.js';
import { stopLeftoverServers } from '../leftover-servers.js';

export const command = 'up';
export const describe =
  'run the whole stack on this machine: nats-server, clickhouse-server, sink, restorer, API and one agent per --redis';

export function builder(y: Argv) {
  return y
    .option('redis', {
      type: 'string',
      array: true,
      default: [] as string[],
      describe: 'Redis to capture (repeatable): redis://host:port',
    })
    .option('data-dir', {
      type: 'string',
      default: './.flashback',
      describe: 'where NATS, ClickHouse, restored instances and the API token live',
    })
    .option('api-port', { type: 'number', default: 7480, describe: 'API port (0 = a free one)' })
    .option('nats', { type: 'string', describe: 'use this NATS instead of starting nats-server' })
    .option('clickhouse', { type: 'string', describe: 'use this ClickHouse instead of starting clickhouse-server' })
    .option('clickhouse-shards', {
      type: 'string',
      describe:
        'with a sharded --clickhouse: HTTP URL of one server of each shard, comma-separated, where retention drops old history (docs/scale.md)',
    })
    .option('nats-cluster', {
      type: 'number',
      describe: 'start a JetStream cluster of N nats-servers (3 survives one down) instead of one (docs/scale.md)',
    })
    .option('replicas', {
      type: 'number',
      describe:
        'JetStream replicas of the event stream, baseline bucket and job queue (default: 3 on a cluster, else 1)',
    })
    .option('retention', { type: 'string', default: '7d', describe: 'history kept (e.g. 7d, 12h)' })
    .option('audit-noops', {
      type: 'boolean',
      default: false,
      describe: 'store writes that changed nothing or were refused as audit rows (restores skip them)',
    })
    .option('verify-interval', {
      type: 'string',
      default: '1m',
      describe: 'how often the restorer looks for stretches between baselines to check against their digest; 0 = off',
    })
    .option('demo', {
      type: 'boolean',
      default: false,
      describe: 'also run the seed demo on a scratch Redis once the stack is up',
    })
    .option('fast', {
      type: 'boolean',
      default: false,
      describe: 'with --demo: one write every 20 ms instead of every second',
    });
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

const say = (s: string) => process.stdout.write(`flashback: ${s}\n`);

export async function handler(args: Args): Promise<void> {
  const logger = createLogger('up');
  const retentionMs = parseDuration(args.retention, '--retention');
  const dataDir = path.resolve(args.dataDir);
  // A killed earlier `up` leaves nats-server and clickhouse-server holding the data dir: this start would fail on them.
  await stopLeftoverServers(dataDir, logger);
  const stack = await startLocalStack({
    dataDir,
    natsUrl: args.nats,
    natsCluster: args.natsCluster,
    replicas: args.replicas,
    clickhouseUrl: args.clickhouse,
    clickhouseShardUrls: (args.clickhouseShards ?? '')
      .split(',')
      .map((u) => u.trim())
      .filter((u) => u !== ''),
    apiPort: args.apiPort,
    redisUrls: args.redis.map(String),
    retentionMs,
    auditNoops: args.auditNoops,
    verifyIntervalMs: parseDuration(args.verifyInterval, '--verify-interval'),
    logger,
  });
  say(`api ${stack.apiUrl}`);
  if (stack.tokenFile)
    say(`token ${stack.token} (shown once; saved in ${stack.tokenFile}; export FLASHBACK_API_TOKEN=…)`);
  for (const a of stack.agents) say(`capturing ${a.node}`);
  let demoRedis: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  const closeAll = async () => {
    await stack.close();
    await demoRedis?.stop();
  };
  if (args.demo) {
    try {
      const dir = path.join(dataDir, 'demo-redis');
      await mkdir(dir, { recursive: true });
      demoRedis = await startRedisServer({ dir, processGroup: true, args: ['--repl-diskless-sync-delay', '0'] });
      const agent = await stack.addAgent(demoRedis.url, 'demo');
      say(`capturing ${agent.node} (scratch redis ${demoRedis.url})`);
      await agent.baseline();
    } catch (err) {
      await closeAll();
      throw err;
    }
    const api = new ApiClient(stack.apiUrl, stack.token);
    void runDemo({ api, redisUrl: demoRedis.url, node: 'demo', intervalMs: args.fast ? 20 : 1_000 }).then(
      () =>
        say(
          'demo done; the stack keeps running: try flashback sql, flashback windows, flashback restore (Ctrl-C stops it all)',
        ),
      (err: unknown) => say(`demo failed: ${(err as Error).message}`),
    );
  }
  say('ready (Ctrl-C stops everything)');
  await runUntilSignal({ close: closeAll }, logger);
}
