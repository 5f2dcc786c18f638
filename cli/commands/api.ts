import type { ArgumentsCamelCase, Argv } from 'yargs';
import { startApi } from '../../api/index.js';
import { parseDuration } from '../duration.js';
import { createLogger } from '../../core/log.js';
import {
  clickhouseAuthFrom,
  clickhouseAuthOptions,
  clickhouseOption,
  clickhouseSqlAuthFrom,
  clickhouseSqlAuthOptions,
  natsAuthFrom,
  natsAuthOptions,
  natsOption,
} from '../options.js';
import { runUntilSignal } from '../run-service.js';

export const command = 'api';
export const describe =
  'serve the HTTP API: history, read-only SQL, windows, restore jobs (bearer tokens from FLASHBACK_API_TOKENS)';

export function builder(y: Argv) {
  return y
    .option('port', { type: 'number', default: 7480, describe: 'TCP port (0 picks a free one; 7480 as flashback up)' })
    .option('host', { type: 'string', default: '127.0.0.1', describe: 'interface to listen on' })
    .option('tokens', {
      type: 'string',
      describe:
        'accepted bearer tokens, comma-separated (env FLASHBACK_API_TOKENS; prefer the env var: flags show in ps)',
    })
    .option('sql-max-rows', { type: 'number', default: 10_000, describe: 'upper bound of rows of POST /sql' })
    .option('sql-max-seconds', { type: 'number', default: 30, describe: 'time limit of POST /sql' })
    .option('retention', { type: 'string', describe: 'history retention shown by GET /nodes (e.g. 7d)' })
    .option('nats', natsOption)
    .options(natsAuthOptions)
    .option('clickhouse', clickhouseOption)
    .options(clickhouseAuthOptions)
    .options(clickhouseSqlAuthOptions);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const logger = createLogger('api');
  const tokens = args.tokens ?? process.env.FLASHBACK_API_TOKENS;
  const api = await startApi({
    port: args.port,
    host: args.host,
    natsUrl: args.nats,
    natsAuth: natsAuthFrom(args),
    clickhouseUrl: args.clickhouse,
    clickhouseAuth: clickhouseAuthFrom(args),
    clickhouseSqlAuth: clickhouseSqlAuthFrom(args),
    tokens: tokens === undefined ? [] : tokens.split(','),
    logger,
    sqlMaxRows: args.sqlMaxRows,
    sqlMaxSeconds: args.sqlMaxSeconds,
    retentionMs: args.retention === undefined ? undefined : parseDuration(args.retention, '--retention'),
  });
  process.stderr.write(`flashback api listening on ${api.url}\n`);
  await runUntilSignal(api, logger);
}
