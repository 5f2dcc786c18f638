import type { ArgumentsCamelCase, Argv } from 'yargs';
import { ConfigError } from '../../core/errors.js';
import { apiClientFrom, apiOptions } from '../api-client.js';
import { printTable } from '../table.js';

export const command = 'instances [action] [id]';
export const describe = 'list the instances restores spawned, or stop one (through the API)';

export function builder(y: Argv) {
  return y
    .positional('action', {
      choices: ['list', 'stop'] as const,
      default: 'list' as const,
      describe: 'list, or stop ID',
    })
    .positional('id', { type: 'string', describe: 'instance id (with stop)' })
    .option('api', { ...apiOptions.api, default: 'http://127.0.0.1:7480' })
    .option('token', apiOptions.token)
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' });
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const api = apiClientFrom(args)!;
  if (args.action === 'stop') {
    if (!args.id)
      throw new ConfigError('name the instance to stop: flashback instances stop ID (flashback instances lists them)');
    const stopped = await api.stopInstance(args.id);
    process.stdout.write(
      args.json ? JSON.stringify(stopped) + '\n' : `stopped ${stopped.id} (${stopped.url}, pid ${stopped.pid})\n`,
    );
    return;
  }
  const list = await api.instances();
  if (args.json) {
    process.stdout.write(JSON.stringify(list) + '\n');
    return;
  }
  printTable(
    ['id', 'url', 'pid', 'node', 'cutoff', 'created'],
    list.map((i) => [i.id, i.url, i.pid, i.node, `${i.cutoff.time} (seq ${i.cutoff.seq})`, i.createdAt]),
  );
}
