import type { ArgumentsCamelCase, Argv } from 'yargs';
import { loadJobKey } from '../../core/bus/job-secret.js';
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
        'accepted bearer tokens, comma-separated, each read:T, restore:T, admin:T or T (admin) (env FLASHBACK_API_TOKENS or the file FLASHBACK_API_TOKENS_FILE; prefer those: flags show in ps)',
    })
    .option('target-allow', {
      type: 'string',
      default: '127.0.0.0/8,::1',
      describe:
        'hosts a restore target may be: IPs, CIDRs, names, each with :port or not, or * (restorers check again)',
    })
    .option('export-dir', {
      type: 'string',
      describe: "the restorers' export dir when it is on this host (an rdb name that is a symlink there is refused)",
    })
    .option('job-key-file', {
      type: 'string',
      describe:
        'key file shared with the restorers: target passwords travel sealed (env FLASHBACK_JOB_KEY_FILE; openssl rand -hex 32)',
    })
    .option('max-body-bytes', { type: 'number', default: 262_144, describe: 'largest request body (413 beyond)' })
    .option('sql-max-bytes', { type: 'number', default: 8_388_608, describe: 'largest answer of POST /sql' })
    .option('sql-concurrency', { type: 'number', default: 4, describe: 'POST /sql queries running at once' })
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
    tokens: tokens === undefined ? undefined : tokens.split(','),
    targetAllow: args.targetAllow,
    exportDir: args.exportDir,
    jobKey: loadJobKey({ keyFile: args.jobKeyFile }),
    maxBodyBytes: args.maxBodyBytes,
    sqlMaxBytes: args.sqlMaxBytes,
    sqlConcurrency: args.sqlConcurrency,
    logger,
    sqlMaxRows: args.sqlMaxRows,
    sqlMaxSeconds: args.sqlMaxSeconds,
    retentionMs: args.retention === undefined ? undefined : parseDuration(args.retention, '--retention'),
  });
  process.stderr.write(`flashback api listening on ${api.url}\n`);
  await runUntilSignal(api, logger);
}
