import type { ArgumentsCamelCase, Argv } from 'yargs';
import { loadJobKey } from '../../core/bus/job-secret.js';
import { parseDuration } from '../duration.js';
import { createLogger } from '../../core/log.js';
import { startRestorer } from '../../restorer/index.js';
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
import { applyRedisBins, redisBinOption } from '../redis-bins.js';

export const command = 'restorer';
export const describe = 'run restore jobs from the NATS work queue (POST /restores, flashback restore --api)';

export function builder(y: Argv) {
  return y
    .option('instances-dir', {
      type: 'string',
      describe: 'where spawned instances keep their files (default: <tmp>/flashback-instances)',
    })
    .option('export-dir', {
      type: 'string',
      default: './.flashback/exports',
      describe: "where restore jobs' rdb files go (a plain name each; made mode 700)",
    })
    .option('target-allow', {
      type: 'string',
      default: '127.0.0.0/8,::1',
      describe: 'hosts a restore target may be: IPs, CIDRs, names, each with :port or not, or * (as the API)',
    })
    .option('job-key-file', {
      type: 'string',
      describe:
        "the API's key file: opens sealed target passwords, seals instance passwords (env FLASHBACK_JOB_KEY_FILE)",
    })
    .option('job-timeout', {
      type: 'string',
      default: '30m',
      describe: 'a job running longer fails (TIMEOUT) and the next one runs',
    })
    .option('max-instances', {
      type: 'number',
      default: 10,
      describe: 'restored instances kept running at most; a spawn job beyond fails',
    })
    .option('ack-wait', {
      type: 'string',
      default: '60s',
      describe: 'how long a job of a dead restorer waits before another restorer takes it',
    })
    .option('max-attempts', { type: 'number', default: 3, describe: 'runs of one job before it is marked failed' })
    .option('close-timeout', {
      type: 'string',
      default: '30s',
      describe: 'on SIGTERM, how long the job in hand may finish before it is handed back',
    })
    .option('verify-interval', {
      type: 'string',
      default: '1m',
      describe:
        'how often to look for stretches between two baselines to check in the background (restored and compared with the digest the source recorded; one at a time, never while a job runs); 0 = off',
    })
    .option('redis-bin', redisBinOption)
    .option('nats', natsOption)
    .options(natsAuthOptions)
    .option('clickhouse', clickhouseOption)
    .options(clickhouseAuthOptions)
    .option('health-port', healthPortOption)
    .option('health-host', healthHostOption);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const logger = createLogger('restorer');
  applyRedisBins(args.redisBin);
  const restorer = await startRestorer({
    natsUrl: args.nats,
    natsAuth: natsAuthFrom(args),
    clickhouseUrl: args.clickhouse,
    clickhouseAuth: clickhouseAuthFrom(args),
    instancesDir: args.instancesDir,
    exportDir: args.exportDir,
    targetAllow: args.targetAllow,
    jobKey: loadJobKey({ keyFile: args.jobKeyFile }),
    jobTimeoutMs: parseDuration(args.jobTimeout, '--job-timeout'),
    maxInstances: args.maxInstances,
    healthPort: args.healthPort,
    healthHost: args.healthHost,
    ackWaitMs: parseDuration(args.ackWait, '--ack-wait'),
    maxAttempts: args.maxAttempts,
    closeTimeoutMs: parseDuration(args.closeTimeout, '--close-timeout'),
    verifyIntervalMs: parseDuration(args.verifyInterval, '--verify-interval'),
    logger,
  });
  await runUntilSignal(restorer, logger);
}
