import type { ArgumentsCamelCase, Argv } from 'yargs';
import { ErrorCode, InputError } from '../../core/errors.js';
import { openClickHouse } from '../../core/store/clickhouse.js';
import { forgetBrokenEvent } from '../../restorer/broken-events.js';
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
    .option('forget-broken', {
      type: 'string',
      describe:
        'EPOCH:SEQ of a recorded broken event of --node to remove: later restores replay it again (ClickHouse only)',
    })
    .option('clickhouse', clickhouseOption)
    .option('api', apiOptions.api)
    .option('token', apiOptions.token);
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  if (args.forgetBroken !== undefined) return forget(args.node, args.forgetBroken, args.clickhouse);
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

async function forget(node: string | undefined, spec: string, clickhouse: string): Promise<void> {
  const m = /^(\d+):(\d+)$/.exec(spec);
  if (node === undefined || !m)
    throw new InputError(
      ErrorCode.BadInput,
      `--forget-broken needs --node and EPOCH:SEQ (as windows lists them), not "${spec}"`,
    );
  const store = await openClickHouse(clickhouse);
  try {
    const event = { node, epoch: Number(m[1]), seq: Number(m[2]) };
    const removed = await forgetBrokenEvent(store, event);
    process.stdout.write(
      removed
        ? `forgot broken event seq ${event.seq} of ${node} epoch ${event.epoch}: restores past it replay it again\n`
        : `no broken event seq ${event.seq} of ${node} epoch ${event.epoch} is recorded\n`,
    );
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
        `broken: ${w.node} epoch ${w.epoch} seq ${b.seq} (${formatTsUs(b.tsUs)}) ${b.args} — "${b.reason}"; restores past it skip it and warn; its state just before: --before-seq ${b.seq}; to replay it again: --node ${w.node} --forget-broken ${w.epoch}:${b.seq}\n`,
      );
    }
  }
}
