import type { ArgumentsCamelCase, Argv } from 'yargs';
import { startAnchorKeeper } from '../../agent/index.js';
import { createLogger } from '../../core/log.js';
import { parseRedisUrl } from '../../core/redis/redis-url.js';
import { parseDuration } from '../duration.js';
import { Registry } from 'prom-client';
import { startHealthServer } from '../../core/health-server.js';
import { snapshotCounter, snapshotGauge } from '../../core/metrics/snapshot.js';
import { healthHostOption, healthPortOption } from '../options.js';
import { runUntilSignal } from '../run-service.js';

export const command = 'anchor-keeper';
export const describe =
  "place time anchors in a node's replication stream while its agent is away (run it beside a replication-mode agent)";

export function builder(y: Argv) {
  return (
    y
      .option('redis', {
        type: 'string',
        demandOption: 'give the Redis the agent captures: --redis redis://host:6379',
        describe: 'Redis URL: redis://[user:password@]host:port or rediss://… (TLS)',
      })
      .option('every', {
        type: 'string',
        default: '1ms',
        describe: 'how often the stream is checked while no agent is linked',
      })
      // Its own name: the keeper reads the agent's env file (FLASHBACK_HEALTH_PORT is the agent's port there).
      .option('keeper-health-port', {
        ...healthPortOption,
        describe: 'serve GET /health and /metrics on this port (see --health-host; env FLASHBACK_KEEPER_HEALTH_PORT)',
      })
      .option('health-host', healthHostOption)
  );
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const logger = createLogger('anchor-keeper');
  const keeper = await startAnchorKeeper({
    target: parseRedisUrl(args.redis),
    everyMs: parseDuration(args.every, '--every'),
    logger,
  });
  logger.info({ every: args.every }, 'anchor keeper running');
  if (args.keeperHealthPort !== undefined) {
    // Healthy while it can reach the source: it stands by while the agent is linked, anchors while it is not.
    const registry = new Registry();
    snapshotCounter(registry, {
      name: 'flashback_anchor_keeper_anchors_total',
      help: 'Time anchors the keeper placed while no agent was linked',
      labelNames: [],
      read: () => [[{}, keeper.anchors]],
    });
    snapshotGauge(registry, {
      name: 'flashback_anchor_keeper_agent_linked',
      help: "1 while the agent's replica link is seen on the source (the keeper stands by), else 0",
      labelNames: [],
      read: () => [[{}, keeper.agentLinked ? 1 : 0]],
    });
    snapshotGauge(registry, {
      name: 'flashback_anchor_keeper_source_up',
      help: '1 while the keeper reaches its source, else 0',
      labelNames: [],
      read: () => [[{}, keeper.sourceUp ? 1 : 0]],
    });
    const hs = await startHealthServer(
      args.keeperHealthPort,
      {
        health: () => ({
          ok: keeper.sourceUp,
          agentLinked: keeper.agentLinked,
          anchors: keeper.anchors,
          ...(keeper.lastError ? { reason: keeper.lastError } : {}),
        }),
        metrics: () => [registry],
      },
      args.healthHost,
    );
    logger.info({ port: hs.port }, 'health endpoint: GET /health, /metrics');
    const close = keeper.close.bind(keeper);
    keeper.close = async () => {
      await close();
      await hs.close();
    };
  }
  await runUntilSignal(keeper, logger);
  logger.info({ anchors: keeper.anchors }, 'anchor keeper stopped');
}
