import { redisBinOption } from '../redis-bins.js';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { ArgumentsCamelCase, Argv } from 'yargs';
import type { RestoreOutcome } from '../../core/bus/restore-report.js';
import { ensurePrivateDir } from '../../core/private-dir.js';
import { adoptInstance, newInstancePassword, shownInstanceUrl } from '../../restorer/instance-records.js';
import { openClickHouse } from '../../core/store/clickhouse.js';
import { ErrorCode, InputError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { connectNats, ensureBaselineStore } from '../../core/bus/nats.js';
import {
  clickHouseEventStore,
  clusterRestore,
  restore,
  type ClusterRestoreReport,
  type RestoreProgress,
  type RestoreReport,
} from '../../restorer/index.js';
import { apiClientFrom, apiOptions, type ApiClient } from '../api-client.js';
import { clickhouseOption, natsOption } from '../options.js';
import { parseCutoffTime } from '../../core/time.js';
import { ProgressLine } from '../progress.js';

export const command = 'restore';
export const describe =
  'restore a node at an instant (or just before one event), or several nodes (a Redis Cluster) at one instant, into a new instance, a target (standalone or Cluster) or an RDB file';

export function builder(y: Argv) {
  return y
    .option('node', {
      type: 'string',
      array: true,
      describe:
        "capture source id; repeat it (or use --nodes) to restore several nodes, e.g. a Redis Cluster's masters, at one --to instant into one destination",
    })
    .option('nodes', {
      type: 'string',
      describe: 'several nodes, comma-separated: --nodes c1-m1,c1-m2,c1-m3 (same as repeating --node)',
    })
    .option('to', {
      type: 'string',
      describe: "include every event up to this instant: '2026-08-03 20:28:10', ISO 8601, or epoch s/ms",
    })
    .option('to-seq', { type: 'number', describe: 'include events up to this seq (and the rest of its transaction)' })
    .option('before-seq', { type: 'number', describe: 'include events before this seq (and before its transaction)' })
    .option('epoch', { type: 'number', describe: 'epoch of --to-seq/--before-seq (default: the newest that holds it)' })
    .option('spawn', { type: 'boolean', describe: 'start a new redis-server holding the data (it keeps running)' })
    .option('port', { type: 'number', describe: 'port of the spawned instance (default: a free one)' })
    .option('target', {
      type: 'string',
      describe:
        "copy into this existing, empty Redis (redis://host:port); a Redis Cluster node URL means the whole cluster, each key on its slot's master",
    })
    .option('flush', { type: 'boolean', default: false, describe: 'with --target: empty it first' })
    .option('rdb', { type: 'string', describe: 'write an RDB file' })
    .option('keys', {
      type: 'string',
      array: true,
      describe: 'restore only keys matching this Redis glob pattern (repeatable)',
    })
    .option('db', { type: 'number', describe: 'restore only this logical database' })
    .option('keep-ttl-relative', {
      type: 'boolean',
      default: false,
      describe: 'shift expiries by (now − cutoff) so keys keep the TTL they had at the cutoff',
    })
    .option('redis-bin', redisBinOption)
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' })
    .option('nats', natsOption)
    .option('clickhouse', clickhouseOption)
    .option('api', apiOptions.api)
    .option('token', apiOptions.token)
    .check((a) => {
      const nodes = nodeList(a.node, a.nodes);
      if (nodes.length === 0)
        throw new InputError(
          ErrorCode.BadInput,
          'name the node: --node ID, or several: --node A --node B / --nodes A,B (flashback windows lists them)',
        );
      const dup = nodes.find((n, i) => nodes.indexOf(n) !== i);
      if (dup !== undefined) throw new InputError(ErrorCode.BadInput, `node "${dup}" is named twice`);
      if (nodes.length > 1 && a.to === undefined)
        throw new InputError(
          ErrorCode.BadInput,
          'several nodes are restored at one instant: give --to TIME (a seq belongs to one node)',
        );
      const cut = [a.to, a.toSeq, a.beforeSeq].filter((v) => v !== undefined).length;
      if (cut !== 1)
        throw new InputError(ErrorCode.BadInput, 'give exactly one cutoff: --to TIME, --to-seq N or --before-seq N');
      const dest = [a.spawn, a.target, a.rdb].filter((v) => v !== undefined && v !== false).length;
      if (dest !== 1)
        throw new InputError(ErrorCode.BadInput, 'give exactly one destination: --spawn, --target URL or --rdb FILE');
      return true;
    });
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

/** The nodes of `--node` (repeatable) and `--nodes a,b,c`, in order. */
function nodeList(node: readonly unknown[] | undefined, nodes: string | undefined): string[] {
  return [...(node ?? []).map(String), ...(nodes ?? '').split(',')].map((n) => n.trim()).filter((n) => n !== '');
}

export async function handler(args: Args): Promise<void> {
  const api = apiClientFrom(args);
  if (api) return restoreViaApi(api, args);
  const logger = createLogger('restore');
  const store = await openClickHouse(args.clickhouse);
  const nc = await connectNats({ url: args.nats, name: 'flashback-restore' }).catch(async (err) => {
    await store.close();
    throw err;
  });
  const progress = new ProgressLine(!args.json && process.stderr.isTTY === true);
  const nodes = nodeList(args.node, args.nodes);
  try {
    const objects = await ensureBaselineStore(nc);
    // Restored instances live in a dir only this user can enter (a /tmp dir made by someone else is refused).
    const instancesDir = args.spawn
      ? await ensurePrivateDir(path.join(os.tmpdir(), 'flashback-instances'), 'instances dir')
      : undefined;
    const deps = {
      events: clickHouseEventStore(store, store.client),
      objects,
      logger,
      instancesDir,
      redisBins: args.redisBin?.map(String),
    };
    // Where the restored data goes: the same for one node and for several.
    const destination = {
      spawn: args.spawn ? { port: args.port } : undefined,
      target: args.target,
      rdb: args.rdb,
      keepTtlRelative: args.keepTtlRelative,
      keys: args.keys?.map(String),
      db: args.db,
    };
    if (nodes.length > 1) {
      const report = await clusterRestore(
        deps,
        {
          nodes,
          to: args.to!,
          ...destination,
          flush: args.target !== undefined ? args.flush : undefined,
        },
        (p: RestoreProgress) => progress.update(p.phase, p.events, p.totalEvents),
      );
      progress.done();
      const password = instancesDir ? await lockDown(instancesDir, report) : undefined;
      process.stdout.write(
        args.json ? JSON.stringify({ ...report, password }) + '\n' : formatClusterReport(report) + shownOnce(password),
      );
      return;
    }
    const report = await restore(
      deps,
      {
        node: nodes[0]!,
        to: args.to,
        toSeq: args.toSeq,
        beforeSeq: args.beforeSeq,
        epoch: args.epoch,
        ...destination,
        flush: args.flush,
      },
      (p: RestoreProgress) => progress.update(p.phase, p.events, p.totalEvents),
    );
    progress.done();
    const password = instancesDir ? await lockDown(instancesDir, report) : undefined;
    process.stdout.write(
      args.json ? JSON.stringify({ ...report, password }) + '\n' : formatReport(report) + shownOnce(password),
    );
  } finally {
    progress.done();
    await nc.close();
    await store.close();
  }
}

/** `--api`: the same restore as a job of a restorer service; waits for it with progress and prints the same report. */
async function restoreViaApi(api: ApiClient, args: Args): Promise<void> {
  const progress = new ProgressLine(!args.json && process.stderr.isTTY === true);
  try {
    const nodes = nodeList(args.node, args.nodes);
    const job = await api.createRestore({
      ...(nodes.length > 1 ? { nodes } : { node: nodes[0]! }),
      // Parsed here: a time without a zone is the operator's local time, not the restorer host's.
      to: args.to === undefined ? undefined : String(parseCutoffTime(args.to)),
      toSeq: args.toSeq,
      beforeSeq: args.beforeSeq,
      epoch: args.epoch,
      spawn: args.spawn ? (args.port !== undefined ? { port: args.port } : {}) : undefined,
      target: args.target,
      flush: args.target !== undefined ? args.flush : undefined,
      rdb: args.rdb,
      keepTtlRelative: args.keepTtlRelative || undefined,
      keys: args.keys?.map(String),
      db: args.db,
    });
    const done = await api.waitForRestore(job.id, {
      onStatus: (s) =>
        progress.update(s.state === 'queued' ? 'queued' : s.progress.phase, s.progress.events, s.progress.totalEvents),
    });
    progress.done();
    const { password } = done;
    if (done.clusterReport)
      process.stdout.write(
        args.json
          ? JSON.stringify({ ...done.clusterReport, password }) + '\n'
          : formatClusterReport(done.clusterReport) + shownOnce(password),
      );
    else
      process.stdout.write(
        args.json
          ? JSON.stringify({ ...done.report, password }) + '\n'
          : formatReport(done.report!) + shownOnce(password),
      );
  } finally {
    progress.done();
  }
}

/**
 * Gives a spawned instance its generated password and this user's record (restorer/instance-records.ts); the report's
 * url then shows the password as ***.
 * @returns the password, to print once.
 */
async function lockDown(root: string, report: RestoreOutcome): Promise<string | undefined> {
  if (report.pid === undefined || report.url === undefined || report.dir === undefined) return undefined;
  const password = newInstancePassword();
  const own = await adoptInstance(root, {
    id: `local-${randomUUID().slice(0, 8)}`,
    url: report.url,
    pid: report.pid,
    dir: report.dir,
    password,
  });
  report.url = shownInstanceUrl(own);
  return password;
}

/** The line that shows a restored instance's password, the one time it is shown. */
function shownOnce(password: string | undefined): string {
  return password === undefined
    ? ''
    : `  password   ${password} (shown once: redis-cli -a ${'<password>'} or REDISCLI_AUTH; it also is in the instance dir's flashback-instance.json, mode 600)\n`;
}

/** The human-readable restore report. */
export function formatReport(r: RestoreReport): string {
  const lines = [
    `restored node ${r.node} at seq ${r.cutoff.seq} (${r.cutoff.time})${r.cutoff.asked ? ` for --to ${r.cutoff.asked}` : ''}, epoch ${r.epoch}`,
    `  baseline   seq ${r.baseline.seq} at ${r.baseline.time} (${r.baseline.rdbBytes} RDB bytes)`,
    `  replayed   ${r.eventsReplayed} events in ${r.seconds} s${r.server ? ` by ${r.server}` : ''}`,
    `  keys       ${r.keys}${r.expiredAtRestore > 0 ? ` (${r.expiredAtRestore} more had expired by now: absolute TTLs; --keep-ttl-relative keeps them)` : ''}`,
    `  digest     ${r.digest}${r.verified === 'match' ? ' = source digest at the baseline (verified)' : ''}`,
  ];
  for (const w of r.warnings ?? []) lines.push(`  warning    ${w}`);
  if (r.rdb) lines.push(`  rdb        ${r.rdb}`);
  else if (r.pid)
    lines.push(
      `  instance   ${r.url} (pid ${r.pid}, files in ${r.dir}); stop it with: REDISCLI_AUTH=<password> redis-cli -p ${portOf(r.url)} shutdown nosave`,
    );
  else lines.push(`  target     ${r.url}`);
  return lines.join('\n') + '\n';
}

function portOf(url: string | undefined): string {
  return /:(\d+)(?:\/\d*)?$/.exec(url ?? '')?.[1] ?? '<port>';
}

/** The human-readable report of a restore of several nodes. */
export function formatClusterReport(r: ClusterRestoreReport): string {
  const lines = [`restored ${r.nodes.length} nodes at ${r.cutoff.time} in ${r.seconds} s`];
  for (const p of r.parts) {
    lines.push(
      `  node       ${p.node}: seq ${p.cutoff.seq} (${p.cutoff.time}), epoch ${p.epoch}, baseline seq ${p.baseline.seq}, ${p.eventsReplayed} events replayed, ${p.keys} keys, digest ${p.digest}`,
    );
  }
  lines.push(`  keys       ${r.keys}`);
  if (r.digest !== undefined) lines.push(`  digest     ${r.digest}`);
  for (const m of r.masters ?? [])
    lines.push(
      `  master     ${m.url} slots ${(m.slots ?? []).map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')}: ${m.keys} keys${m.digest ? `, digest ${m.digest}` : ''}`,
    );
  for (const w of r.warnings) lines.push(`  warning    ${w}`);
  if (r.rdb) lines.push(`  rdb        ${r.rdb}`);
  else if (r.pid)
    lines.push(
      `  instance   ${r.url} (pid ${r.pid}, files in ${r.dir}); stop it with: REDISCLI_AUTH=<password> redis-cli -p ${portOf(r.url)} shutdown nosave`,
    );
  else lines.push(`  target     ${r.url}`);
  return lines.join('\n') + '\n';
}
