import type { ArgumentsCamelCase, Argv } from 'yargs';
import { createLogger } from '../../core/log.js';
import { startSink, type SinkOptions } from '../../sink/index.js';
import { parseDuration } from '../duration.js';
import {
  clickhouseAuthFrom,
  clickhouseAuthOptions,
  clickhouseOption,
  healthHostOption,
  healthPortOption,
  natsAuthFrom,
  natsAuthOptions,
  natsOption,
} from '../options.js';
import { runUntilSignal } from '../run-service.js';

export const command = 'sink';
export const describe = 'store events from NATS JetStream in ClickHouse (flashback.events)';

export function builder(y: Argv) {
  return y
    .option('nats', natsOption)
    .options(natsAuthOptions)
    .option('clickhouse', clickhouseOption)
    .options(clickhouseAuthOptions)
    .option('clickhouse-shards', {
      type: 'string',
      describe:
        'sharded layout: HTTP URL of one server of each shard, comma-separated; retention drops old history there ' +
        '(same credentials as --clickhouse; docs/scale.md; env FLASHBACK_CLICKHOUSE_SHARDS)',
    })
    .option('retention', {
      type: 'string',
      default: '7d',
      describe:
        'history kept (e.g. 7d, 12h): older day partitions and baselines are dropped, and the stream keeps this long',
    })
    .option('retention-interval', {
      type: 'string',
      default: '1h',
      describe: 'how often the retention pass runs (also once at start); 0 = never',
    })
    .option('health-port', healthPortOption)
    .option('health-host', healthHostOption);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

/** The sink's options from its flags (ConfigError naming a flag that does not parse); the logger is the caller's. */
export function sinkOptionsFrom(args: Args): Omit<SinkOptions, 'logger'> {
  return {
    natsUrl: args.nats,
    natsAuth: natsAuthFrom(args),
    clickhouseUrl: args.clickhouse,
    clickhouseAuth: clickhouseAuthFrom(args),
    clickhouseShardUrls: (args.clickhouseShards ?? '')
      .split(',')
      .map((u) => u.trim())
      .filter((u) => u !== ''),
    retentionMs: parseDuration(args.retention, '--retention'),
    retentionIntervalMs: parseDuration(args.retentionInterval, '--retention-interval'),
    healthPort: args.healthPort,
    healthHost: args.healthHost,
  };
}

export async function handler(args: Args): Promise<void> {
  const options = sinkOptionsFrom(args);
  const logger = createLogger('sink');
  const sink = await startSink({ ...options, logger });
  await runUntilSignal(sink, logger);
}
