import type { ArgumentsCamelCase, Argv } from 'yargs';
import { openClickHouse } from '../../core/store/clickhouse.js';
import { formatTsUs } from '../../core/time.js';
import { nodesSql, restoreWindows, type RestoreWindow } from '../../core/store/windows.js';
import { apiClientFrom, apiOptions } from '../api-client.js';
import { clickhouseOption } from '../options.js';
import { printTable } from '../table.js';

export const command = 'windows';
export const describe = 'list the restorable windows of a node (or of every node)';

export function builder(y: Argv) {
  return y
    .option('node', { type: 'string', describe: 'capture source id (default: every node)' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' })
    .option('clickhouse', clickhouseOption)
    .option('api', apiOptions.api)
    .option('token', apiOptions.token);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const api = apiClientFrom(args);
  if (api) return print(await api.windows(args.node), args.json);
  const store = await openClickHouse(args.clickhouse);
  try {
    const nodes = args.node ? [args.node] : (await store.query<{ node: string }>(nodesSql())).map((n) => n.node);
    const all = [];
    for (const node of nodes) all.push(...(await restoreWindows(store, node)));
    print(all, args.json);
  } finally {
    await store.close();
  }
}

function print(all: RestoreWindow[], json: boolean): void {
  if (json) {
    process.stdout.write(
      JSON.stringify(all.map((w) => ({ ...w, from: formatTsUs(w.fromTsUs), to: formatTsUs(w.toTsUs) }))) + '\n',
    );
    return;
  }
  printTable(
    ['node', 'epoch', 'from', 'to', 'seq', 'baselines', 'broken'],
    all.map((w) => [
      w.node,
      w.epoch,
      formatTsUs(w.fromTsUs),
      formatTsUs(w.toTsUs),
      `${w.fromSeq}–${w.toSeq}`,
      w.baselines.length,
      (w.broken ?? []).length,
    ]),
  );
  for (const w of all) {
    for (const b of w.broken ?? []) {
      process.stdout.write(
        `broken: ${w.node} epoch ${w.epoch} seq ${b.seq} (${formatTsUs(b.tsUs)}) ${b.args} — "${b.reason}"; restores past it skip it and warn; its state just before: --before-seq ${b.seq}\n`,
      );
    }
  }
}
