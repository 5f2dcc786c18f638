import type { ArgumentsCamelCase, Argv } from 'yargs';
import { startAgent, type Agent, type AgentOptions } from '../../agent/index.js';
import { ConfigError } from '../../core/errors.js';
import { startHealthServer } from '../../core/health-server.js';
import type { Logger } from '../../core/log.js';
import { createLogger } from '../../core/log.js';
import { healthHostOption, healthPortOption, natsAuthFrom, natsAuthOptions, natsOption } from '../options.js';
import { runUntilSignal } from '../run-service.js';
import { parseBytes, parseDuration } from '../duration.js';

export const command = 'agent';
export const describe =
  'capture one Redis node into NATS JetStream: as a replica of it (default) or from MONITOR + keyspace notifications';

export function builder(y: Argv) {
  return y
    .option('redis', {
      type: 'string',
      demandOption: 'give the Redis to capture: --redis redis://host:6379',
      describe: 'Redis URL: redis://[user:password@]host:port or rediss://… (TLS)',
    })
    .option('node-id', { type: 'string', describe: 'capture source id (default host:port of --redis)' })
    .option('nats', natsOption)
    .options(natsAuthOptions)
    .option('baseline-interval', {
      type: 'string',
      default: '1h',
      describe: 'take a baseline this often (e.g. 15m, 1h)',
    })
    .option('baseline-every-events', {
      type: 'number',
      default: 0,
      describe: 'also take a baseline after this many events (0 = off)',
    })
    .option('baseline-digest', {
      choices: ['auto', 'always', 'never'] as const,
      default: 'auto' as const,
      describe: 'record DEBUG DIGEST at baselines (auto: ≤ 100k keys)',
    })
    .option('retention', { type: 'string', default: '7d', describe: 'how long the stream keeps events' })
    .option('source', {
      choices: ['replication', 'monitor'] as const,
      default: 'replication' as const,
      describe:
        'replication: the agent is a replica of the node (exact effects, replica cost, resumes after a restart; needs +psync +replconf); monitor: MONITOR + keyspace notifications, for servers that refuse PSYNC',
    })
    .option('attribution', {
      choices: ['monitor', 'off'] as const,
      default: 'off' as const,
      describe:
        'replication mode: monitor = MONITOR beside the stream gives each event its client, µs time and argv as issued (costs what MONITOR costs); off = events timed by anchors, replica cost',
    })
    .option('audit-noops', {
      type: 'boolean',
      default: false,
      describe:
        'with --attribution monitor: store each write that changed nothing or was refused (MONITOR showed it, the stream has nothing) as an audit row restores skip',
    })
    .option('min-backlog', {
      type: 'string',
      default: '64mb',
      describe: "replication mode: raise the source's repl-backlog-size to at least this (0 = leave it)",
    })
    .option('health-port', healthPortOption)
    .option('health-host', healthHostOption);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const logger = createLogger('agent');
  const agent = await startWhenAllowed(logger, {
    redisUrl: args.redis,
    nodeId: args.nodeId,
    natsUrl: args.nats,
    natsAuth: natsAuthFrom(args),
    baselineIntervalMs: parseDuration(args.baselineInterval, '--baseline-interval'),
    baselineEveryEvents: args.baselineEveryEvents,
    baselineDigest: args.baselineDigest,
    retentionMs: parseDuration(args.retention, '--retention'),
    source: args.source,
    attribution: args.attribution,
    auditNoops: args.auditNoops,
    minBacklogBytes: parseBytes(args.minBacklog, '--min-backlog'),
    healthPort: args.healthPort,
    healthHost: args.healthHost,
    logger,
  });
  await runUntilSignal(agent, logger);
}

/**
 * Starts the agent; when the source refuses what capture needs (PSYNC, the anchor script: a retryable ConfigError)
 * and a health port is set, the process stays up, `/health` answering 503 with the reason, and tries again with
 * backoff (5 s to 1 min) until the rights are granted or a signal stops it. Without a health port it exits with the
 * error, as before: nothing could report it.
 */
async function startWhenAllowed(logger: Logger, options: AgentOptions): Promise<Agent> {
  const refusal = (err: unknown): err is ConfigError => err instanceof ConfigError && err.retryable;
  try {
    return await startAgent(options);
  } catch (err) {
    if (!refusal(err) || options.healthPort === undefined) throw err;
    let reason = err.message;
    let stopped = false;
    let wake = () => undefined as void;
    const stop = () => {
      stopped = true;
      wake();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      for (let delayMs = 5_000; ; delayMs = Math.min(delayMs * 2, 60_000)) {
        const hs = await startHealthServer(
          options.healthPort,
          { health: () => ({ ok: false, ready: false, reason }), metrics: () => [] },
          options.healthHost,
        );
        logger.error({ err: reason, retryInMs: delayMs }, 'cannot capture: /health says why; trying again');
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, delayMs).unref();
        });
        await hs.close();
        if (stopped) process.exit(0);
        try {
          return await startAgent(options);
        } catch (again) {
          if (!refusal(again)) throw again;
          reason = again.message;
        }
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }
}
