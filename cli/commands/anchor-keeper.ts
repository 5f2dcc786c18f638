import type { ArgumentsCamelCase, Argv } from 'yargs';
import { startAnchorKeeper } from '../../agent/index.js';
import { createLogger } from '../../core/log.js';
import { parseRedisUrl } from '../../core/redis/redis-url.js';
import { parseDuration } from '../duration.js';
import { runUntilSignal } from '../run-service.js';

export const command = 'anchor-keeper';
export const describe =
  "place time anchors in a node's replication stream while its agent is away (run it beside a replication-mode agent)";

export function builder(y: Argv) {
  return y
    .option('redis', {
      type: 'string',
      demandOption: 'give the Redis the agent captures: --redis redis://host:6379',
      describe: 'Redis URL: redis://[user:password@]host:port or rediss://… (TLS)',
    })
    .option('every', {
      type: 'string',
      default: '1ms',
      describe: 'how often the stream is checked while no agent is linked',
    });
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
  await runUntilSignal(keeper, logger);
  logger.info({ anchors: keeper.anchors }, 'anchor keeper stopped');
}
