import type { ArgumentsCamelCase, Argv } from 'yargs';
import { createLogger } from '../../core/log.js';
import { startSink } from '../../sink/index.js';
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
    .option('health-port', healthPortOption)
    .option('health-host', healthHostOption);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const logger = createLogger('sink');
  const sink = await startSink({
    natsUrl: args.nats,
    natsAuth: natsAuthFrom(args),
    clickhouseUrl: args.clickhouse,
    clickhouseAuth: clickhouseAuthFrom(args),
    healthPort: args.healthPort,
    healthHost: args.healthHost,
    logger,
  });
  await runUntilSignal(sink, logger);
}
