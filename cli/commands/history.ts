import type { ArgumentsCamelCase, Argv } from 'yargs';
import { openClickHouse } from '../../core/store/clickhouse.js';
import { keyHistory, type HistoryEvent } from '../../core/store/key-history.js';
import { apiClientFrom, apiOptions } from '../api-client.js';
import { clickhouseOption } from '../options.js';
import { printTable } from '../table.js';

export const command = 'history';
export const describe = 'show the events that touched a key, newest first (ClickHouse, or --api)';

export function builder(y: Argv) {
  return y
    .option('node', { type: 'string', describe: 'capture source id (default: every node)' })
    .option('key', {
      type: 'string',
      demandOption: 'name the key: --key KEY (as stored: binary bytes escaped as \\xHH)',
      describe: 'the key',
    })
    .option('since', { type: 'string', describe: 'events at or after this time' })
    .option('until', { type: 'string', describe: 'events at or before this time' })
    .option('limit', { type: 'number', default: 50, describe: 'at most this many events' })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON array' })
    .option('clickhouse', clickhouseOption)
    .option('api', apiOptions.api)
    .option('token', apiOptions.token);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const q = { node: args.node, key: args.key, since: args.since, until: args.until, limit: args.limit };
  const api = apiClientFrom(args);
  let events: HistoryEvent[];
  if (api) events = await api.history(q);
  else {
    const store = await openClickHouse(args.clickhouse);
    try {
      events = await keyHistory(store, q);
    } finally {
      await store.close();
    }
  }
  if (args.json) {
    process.stdout.write(JSON.stringify(events) + '\n');
    return;
  }
  printTable(
    ['time', 'node', 'seq', 'db', 'client', 'command', 'args'],
    events.map((e) => [e.time, e.node, `${e.epoch}:${e.seq}`, e.db, e.client, e.command, e.args.join(' ')]),
  );
}
