import type { ArgumentsCamelCase, Argv } from 'yargs';
import { apiClientFrom } from '../api-client.js';
import { runDemo } from '../demo.js';

export const command = 'demo';
export const describe =
  'run the seed scenario against a running stack (flashback up): writes to --redis, restores through the API';

export function builder(y: Argv) {
  return y
    .option('api', {
      type: 'string',
      describe:
        'API of the running stack (env FLASHBACK_API_URL; default: the flashback up found here, else http://127.0.0.1:7480)',
    })
    .option('token', { type: 'string', describe: 'API token (env FLASHBACK_API_TOKEN)' })
    .option('redis', {
      type: 'string',
      demandOption: 'give the captured Redis to write to: --redis redis://host:port',
      describe: 'a Redis the stack captures',
    })
    .option('node', { type: 'string', demandOption: 'give its node id: --node ID', describe: 'its node id' })
    .option('fast', { type: 'boolean', default: false, describe: 'one write every 20 ms instead of every second' });
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  await runDemo({
    api: apiClientFrom(args)!,
    redisUrl: args.redis,
    node: args.node,
    intervalMs: args.fast ? 20 : 1_000,
  });
}
