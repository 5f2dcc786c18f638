import type { ArgumentsCamelCase, Argv } from 'yargs';
import { ErrorCode, InputError } from '../../core/errors.js';
import { openClickHouse } from '../../core/store/clickhouse.js';
import { forgetBrokenEvent } from '../../restorer/broken-events.js';
import { formatTsUs } from '../../core/time.js';
import { nodesSql, restoreWindows, type RestoreWindow } from '../../core/store/windows.js';
import { verifiedJson, withVerifications, type VerifiedStretchJson } from '../../core/store/verifications.js';
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
    const all: ShownWindow[] = [];
    for (const node of nodes) {
      const ws = await withVerifications(store, node, await restoreWindows(store, node));
      all.push(...ws.map((w) => ({ ...w, verified: w.verified.map(verifiedJson) })));
    }
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

/** A window as printed: with its checked stretches (from the API or the store). */
type ShownWindow = RestoreWindow & { verified?: VerifiedStretchJson[] };

/**
 * The verified column: stretches between baselines whose check matched, of those that can be checked (`2/3`), and
 * `!` when one mismatched; `–` for a window with one baseline.
 */
function verifiedCell(w: ShownWindow): string {
  const stretches = w.baselines.length - 1;
  if (stretches < 1) return '–';
  const v = w.verified ?? [];
  const ok = v.filter((c) => c.result === 'match').length;
  const bad = v.filter((c) => c.result === 'mismatch').length;
  return `${ok}/${stretches}${bad > 0 ? ` !${bad} mismatch` : ''}`;
}

function print(all: ShownWindow[], json: boolean): void {
  if (json) {
    process.stdout.write(
      JSON.stringify(all.map((w) => ({ ...w, from: formatTsUs(w.fromTsUs), to: formatTsUs(w.toTsUs) }))) + '\n',
    );
    return;
  }
  printTable(
    ['node', 'epoch', 'from', 'to', 'seq', 'baselines', 'verified', 'broken'],
    all.map((w) => [
      w.node,
      w.epoch,
      formatTsUs(w.fromTsUs),
      formatTsUs(w.toTsUs),
      `${w.fromSeq}–${w.toSeq}`,
      w.baselines.length,
      verifiedCell(w),
      (w.broken ?? []).length,
    ]),
  );
  for (const w of all) {
    for (const c of w.verified ?? []) {
      if (c.result === 'match') continue;
      process.stdout.write(
        c.result === 'mismatch'
          ? `MISMATCH: ${w.node} epoch ${w.epoch} seq ${c.fromSeq}–${c.toSeq} (${c.from} – ${c.to}): restored from the baseline at seq ${c.fromSeq} plus its events, the data differs from the source's digest at seq ${c.toSeq}${c.firstKey !== undefined ? `; first differing key "${c.firstKey}"` : ''}; ${c.detail}; restores inside this stretch are not proven exact\n`
          : `unverifiable: ${w.node} epoch ${w.epoch} seq ${c.fromSeq}–${c.toSeq}: ${c.detail}\n`,
      );
    }
  }
  for (const w of all) {
    for (const b of w.broken ?? []) {
      process.stdout.write(
        `broken: ${w.node} epoch ${w.epoch} seq ${b.seq} (${formatTsUs(b.tsUs)}) ${b.args} — "${b.reason}"; restores past it skip it and warn; its state just before: --before-seq ${b.seq}; to replay it again: --node ${w.node} --forget-broken ${w.epoch}:${b.seq}\n`,
      );
    }
  }
}
