import type { ArgumentsCamelCase, Argv } from 'yargs';
import { openClickHouse, type SqlResult } from '../../core/store/clickhouse.js';
import { apiClientFrom, apiOptions } from '../api-client.js';
import { clickhouseOption } from '../options.js';
import { printTable } from '../table.js';

export const command = 'sql <query>';
export const describe = 'run a read-only SQL query over the history (ClickHouse, readonly=1; or POST /sql with --api)';

export function builder(y: Argv) {
  return y
    .positional('query', {
      type: 'string',
      demandOption: true,
      describe:
        'e.g. "SELECT time, client, command, args FROM flashback.events WHERE key = \'k\' ORDER BY seq DESC LIMIT 20"',
    })
    .option('clickhouse', clickhouseOption)
    .option('format', { choices: ['table', 'json'] as const, default: 'table' as const, describe: 'output format' })
    .option('max-rows', { type: 'number', default: 10_000, describe: 'refuse results larger than this' })
    .option('max-seconds', { type: 'number', default: 30, describe: 'stop queries running longer than this' })
    .option('api', apiOptions.api)
    .option('token', apiOptions.token);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const api = apiClientFrom(args);
  if (api)
    return print(
      await api.request<SqlResult>('POST', '/sql', { sql: String(args.query), maxRows: args.maxRows }),
      args.format,
    );
  const store = await openClickHouse(args.clickhouse);
  try {
    print(
      await store.readOnlySql(String(args.query), { maxRows: args.maxRows, maxSeconds: args.maxSeconds }),
      args.format,
    );
  } finally {
    await store.close();
  }
}

function print(result: SqlResult, format: 'table' | 'json'): void {
  if (format === 'json') {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  printTable(
    result.columns.map((c) => c.name),
    result.rows,
  );
}
