/**
 * The differential check behind test/differential.test.ts and `npm run soak`: a random workload runs on a captured
 * source; at random moments it is paused and the source's state is recorded (DEBUG DIGEST, and every key's type,
 * value digest, expiry and stream consumer groups); at the end every recorded moment is restored, by seq and by time,
 * and the restored instance must hold exactly that state. A difference names the seed and the first diverging key.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { connectNats, ensureBaselineStore } from '../../core/bus/nats.js';
import { readableBytes } from '../../core/redis/escape.js';
import { stopPid } from '../../core/servers/server-process.js';
import { sqlString, sqlUInt } from '../../core/store/sql-literal.js';
import { seededRandom } from './seeded-random.js';
import { formatTsUs } from '../../core/time.js';
import { clickHouseEventStore, restore, type RestoreRequest } from '../../restorer/index.js';
import { LONG_TTL_MIN_MS, RandomWorkload, type WorkloadStats } from './random-workload.js';
import { startSource, waitFor, waitForWindow, waitForWindowSeq, type Stack } from './stack.js';

/** Options of {@link runDifferential}. */
export interface DifferentialOptions {
  seed: number;
  /** Clients writing in parallel. @default 4 */
  clients?: number;
  /** Moments recorded (each restored by seq and by time). @default 6 */
  points?: number;
  /** Operations before each moment: a random count in this range. @default [150, 600] */
  opsPerPoint?: [number, number];
  /** Operations before the baseline the restores start from (they are in its RDB). @default 300 */
  prefillOps?: number;
  /** Logical databases. @default 3 */
  dbs?: number;
  /** Keys per data type. @default 6 */
  keysPerFamily?: number;
  /** The workload's nondeterministic and blocking families (see RandomWorkloadOptions). @default false */
  nondeterministic?: boolean;
  /** Workload operations left out (RandomWorkloadOptions.exclude). @default [] */
  exclude?: string[];
  /** Progress lines. @default none */
  log?: (line: string) => void;
  /** Capture mode of the agent. @default 'monitor' */
  source?: 'monitor' | 'replication';
  /** Replication mode: attribution by MONITOR. @default 'off' */
  attribution?: 'monitor' | 'off';
  /** With attribution: writes that left no entry stored as audit rows. @default false */
  auditNoops?: boolean;
  /** The source's server binary. @default redis-server on PATH */
  bin?: string;
}

/** One recorded moment of the source. */
export interface RecordedPoint {
  index: number;
  /** Date.now() × 1000 while the workload was idle: every command before it has ts_us ≤ this, every later one >. */
  tsUs: number;
  /** Seq of the marker written right after recording: the moment is "just before" it. */
  markerSeq: number;
  /** Agent's lastSeq after `agent.flush()` when recorded (MONITOR lines still in flight are not in it). */
  agentLastSeq: number;
  digest: string;
  keys: number;
  snapshot: Snapshot;
}

/** What a run did and found. */
export interface DifferentialResult {
  seed: number;
  node: string;
  points: RecordedPoint[];
  restores: number;
  /** One line per failed restore, each naming the seed, the moment and the first diverging key. */
  failures: string[];
  workload: WorkloadStats;
}

/** The marker key written after each recorded moment; nothing of the workload touches it. */
const MARKER_KEY = '__fbdiff__:sync';

/**
 * Runs the whole differential check on a fresh captured source of `stack`; never throws for a mismatch (it is in
 * `failures`), only when the machinery itself fails.
 */
export async function runDifferential(stack: Stack, options: DifferentialOptions): Promise<DifferentialResult> {
  const {
    seed,
    clients = 4,
    points = 6,
    opsPerPoint = [150, 600],
    prefillOps = 300,
    dbs = 3,
    keysPerFamily = 6,
    nondeterministic = false,
    exclude = [],
    log = () => {},
    source = 'monitor',
    attribution = 'off',
  } = options;
  const dice = seededRandom(seed ^ 0x5eed5eed);
  const int = (n: number) => Math.floor(dice() * n);
  const nc = await connectNats({ url: stack.nats.url, name: `differential-${seed}` });
  const objects = await ensureBaselineStore(nc);
  const instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-differential-'));
  const src = await startSource(stack, [], { source, attribution, auditNoops: options.auditNoops, bin: options.bin });
  const ctl = new Redis(src.redis.url);
  const workload = new RandomWorkload({
    url: src.redis.url,
    seed,
    clients,
    dbs,
    keysPerFamily,
    nondeterministic,
    exclude,
    // A history re-read changes only what Redis does not replicate (delivery counts, times): see docs/exactness.md.
    historyReads: source === 'monitor',
  });
  const result: DifferentialResult = {
    seed,
    node: src.node,
    points: [],
    restores: 0,
    failures: [],
    workload: { ops: 0, byOp: {}, errors: {} },
  };
  const spawned: number[] = [];
  try {
    await workload.start();
    await workload.run(prefillOps);
    await src.agent.baseline();
    const baselineAt = int(points);
    for (let i = 0; i < points; i++) {
      const ops = opsPerPoint[0] + int(opsPerPoint[1] - opsPerPoint[0] + 1);
      // One baseline is taken while the clients write: restores after it start from RDB + replication tail.
      if (i === baselineAt) await workload.runWhile(ops, () => src.agent.baseline());
      else await workload.run(ops);
      const p = await recordPoint(i);
      result.points.push(p);
      log(
        `seed ${seed}: point ${i + 1}/${points} recorded after ${workload.summary().ops} ops: ${p.keys} keys, digest ${p.digest}`,
      );
    }
    await workload.close();
    result.workload = workload.summary();

    // Every marker stored (the last one's MONITOR line may still be on its way), and restorable.
    const markers = await waitFor(
      `the ${points} markers of ${src.node} stored`,
      async () => {
        assertFlushed(await src.agent.flush());
        const rows = await stack.store.query<{ epoch: string | number; seq: string | number; args: string[] }>(
          `SELECT DISTINCT epoch, seq, args FROM flashback.events WHERE node = ${sqlString(src.node)} AND key = ${sqlString(MARKER_KEY)} AND command = 'SET' ORDER BY epoch, seq`,
        );
        return rows.length >= points ? rows : undefined;
      },
      60_000,
    );
    for (const m of markers) {
      const p = result.points[Number(m.args[2])];
      if (p) p.markerSeq = Number(m.seq);
    }
    const lagging = result.points.filter((p) => p.markerSeq > 0 && p.agentLastSeq !== p.markerSeq - 1).length;
    log(
      `seed ${seed}: markers stored; the agent's lastSeq after flush() was not the event before the marker at ${lagging} of ${points} moments`,
    );
    // Every seq up to the last marker stored, in the last marker's epoch (seqs of an epoch run from 1), and a window
    // reaching it.
    const lastMarker = markers[markers.length - 1]!;
    const lastEpoch = Number(lastMarker.epoch);
    const lastSeq = Number(lastMarker.seq);
    await waitFor(
      `every seq of epoch ${lastEpoch} of ${src.node} up to ${lastSeq} stored`,
      async () => {
        const n = await stack.store.query<{ n: string | number }>(
          `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(src.node)} AND epoch = ${sqlUInt(lastEpoch)} AND seq <= ${sqlUInt(lastSeq)}`,
        );
        return Number(n[0]?.n ?? 0) >= lastSeq ? true : undefined;
      },
      60_000,
    );
    await waitForWindowSeq(stack, src.node, lastEpoch, lastSeq, 60_000);
    const last = result.points[result.points.length - 1];
    if (last) await waitForWindow(stack, src.node, last.tsUs, 60_000);

    const deps = { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir };
    for (const p of result.points) {
      if (p.markerSeq === 0) {
        result.failures.push(
          `${header(seed, p, 'seq')}: the marker written after this moment (SET ${MARKER_KEY} ${p.index}) was not captured`,
        );
        continue;
      }
      const requests: [string, RestoreRequest][] = [
        [`seq ${p.markerSeq - 1}`, { node: src.node, toSeq: p.markerSeq - 1, spawn: {} }],
        // Every other moment by time with --keep-ttl-relative: expiries come back shifted by one constant.
        [
          `time ${formatTsUs(p.tsUs)}${p.index % 2 ? ' --keep-ttl-relative' : ''}`,
          { node: src.node, to: p.tsUs, spawn: {}, keepTtlRelative: p.index % 2 === 1 },
        ],
      ];
      for (const [how, req] of requests) {
        result.restores++;
        let report;
        try {
          report = await restore(deps, req);
        } catch (err) {
          result.failures.push(`${header(seed, p, how)}: restore failed: ${(err as Error).message}`);
          continue;
        }
        if (report.pid) spawned.push(report.pid);
        const r = new Redis(report.url!);
        // A failed restore's instance dir (its AOF above all) is kept for a look: the run's temporary dirs are not.
        let keep: string | undefined;
        try {
          const digest = String(await r.call('DEBUG', 'DIGEST'));
          const snap = await snapshot(r);
          const diffs = compareSnapshots(p.snapshot, snap, { shiftedExpiries: req.keepTtlRelative === true });
          if (digest !== p.digest || diffs.length > 0) {
            keep = path.join(
              os.tmpdir(),
              'flashback-differential-failures',
              `${seed}-moment${p.index}-${how.split(' ')[0]}`,
            );
            const first =
              diffs[0]?.line ??
              'no key differs in type, value digest, expiry or groups (DEBUG DIGEST covers what else?)';
            result.failures.push(
              `${header(seed, p, how)}: restored digest ${digest}${digest === p.digest ? ' (equal)' : ` != source ${p.digest}`}; ` +
                `${diffs.length} key(s) differ (source ${p.keys} keys, restored ${snap.size}); first: ${first}` +
                (report.warnings.length > 0 ? `; restore warnings: ${clip(report.warnings.join('; '), 300)}` : '') +
                `; the restored instance's files are kept in ${keep}` +
                (process.env.FLASHBACK_TEST_AGENT_LOG
                  ? `; the agent's log: ${path.join(process.env.FLASHBACK_TEST_AGENT_LOG, `${src.node}.log`)}`
                  : '') +
                (diffs[0] ? `\n${await keyHistory(stack, src.node, diffs[0].key, p.markerSeq)}` : ''),
            );
          }
        } finally {
          r.disconnect();
          if (report.pid) await stopPid(report.pid);
          if (report.dir && keep) await cp(report.dir, keep, { recursive: true });
          if (report.dir) await rm(report.dir, { recursive: true, force: true });
        }
      }
      log(`seed ${seed}: point ${p.index + 1} restored and compared (${result.failures.length} failure(s) so far)`);
    }
    return result;
  } catch (err) {
    throw new Error(`differential run with seed ${seed} (FLASHBACK_SEED=${seed}) failed: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    await workload.close();
    ctl.disconnect();
    for (const pid of spawned) await stopPid(pid).catch(() => undefined);
    await src.close();
    await nc.close();
    await rm(instancesDir, { recursive: true, force: true });
  }

  /**
   * Records the source while every client is idle: first no key may be about to expire (those are waited out and
   * their expirations stored as events), then the digest and key states, then the time, then the marker.
   */
  async function recordPoint(index: number): Promise<RecordedPoint> {
    await settleExpiries(ctl);
    const expired = Number(/expired_keys:(\d+)/.exec(String(await ctl.info('stats')))?.[1] ?? 0);
    // Replication mode: expirations are the stream's DELs, in order before the marker that follows; nothing to wait for.
    if (source === 'monitor')
      await waitFor(`${expired} expirations of ${src.node} stored as events`, async () => {
        assertFlushed(await src.agent.flush());
        const rows = await stack.store.query<{ n: string | number }>(
          `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind = 'expired'`,
        );
        return Number(rows[0]?.n ?? 0) >= expired ? true : undefined;
      });
    const agentLastSeq = src.agent.stats().lastSeq;
    // A command that ran in this millisecond has ts_us above Date.now() * 1000: let the millisecond end first.
    await clockPast(Date.now());
    const digest = String(await ctl.call('DEBUG', 'DIGEST'));
    const snap = await snapshot(ctl);
    const tsUs = Date.now() * 1000;
    // And the marker must not share the recorded millisecond, or a restore by time would include it.
    await clockPast(tsUs / 1000);
    await ctl.select(0);
    await ctl.set(MARKER_KEY, String(index));
    return { index, tsUs, markerSeq: 0, agentLastSeq, digest, keys: snap.size, snapshot: snap };
  }
}

function header(seed: number, p: RecordedPoint, how: string): string {
  return `seed ${seed} (FLASHBACK_SEED=${seed}), moment ${p.index} (${formatTsUs(p.tsUs)}, marker seq ${p.markerSeq}), restored by ${how}`;
}

function assertFlushed(ok: boolean): void {
  if (!ok) throw new Error('agent.flush() did not get everything acknowledged by JetStream');
}

/** Resolves once the wall clock has passed `ms` (a few ms at most here). */
async function clockPast(ms: number): Promise<void> {
  while (Date.now() <= ms) await new Promise((r) => setTimeout(r, 1));
}

/**
 * Brings the source to a state that means the same at any instant of the next hours: every key whose expiry has
 * passed is dropped (SCAN expires what it visits), and keys that would expire soon (short TTLs) are waited out.
 * The workload sets only TTLs ≤ SHORT_TTL_MAX_MS or ≥ LONG_TTL_MIN_MS, so this waits at most that short TTL.
 */
async function settleExpiries(r: Redis): Promise<void> {
  for (;;) {
    const horizon = Date.now() + LONG_TTL_MIN_MS / 2;
    let latest = 0;
    for (const db of await dbsWithKeys(r)) {
      await r.select(db);
      for (const batch of await scanAll(r)) {
        const p = r.pipeline();
        for (const k of batch) p.pexpiretime(k);
        for (const [err, t] of (await p.exec()) ?? []) {
          if (err) throw err;
          if (Number(t) > 0 && Number(t) <= horizon) latest = Math.max(latest, Number(t));
        }
      }
    }
    if (latest === 0) return;
    await clockPast(latest);
  }
}

async function dbsWithKeys(r: Redis): Promise<number[]> {
  const info = String(await r.info('keyspace'));
  return [...info.matchAll(/^db(\d+):keys=(\d+)/gm)].filter((m) => Number(m[2]) > 0).map((m) => Number(m[1]));
}

/** Every key of the selected db, in SCAN batches, each key once. */
async function scanAll(r: Redis): Promise<Buffer[][]> {
  const seen = new Set<string>();
  const batches: Buffer[][] = [];
  let cursor = '0';
  do {
    const [next, keys] = (await r.callBuffer('SCAN', cursor, 'COUNT', 500)) as [Buffer, Buffer[]];
    cursor = next.toString('latin1');
    const fresh = keys.filter((k) => {
      const id = k.toString('hex');
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    if (fresh.length > 0) batches.push(fresh);
  } while (cursor !== '0');
  return batches;
}

/** One key as compared: encoding-independent (DEBUG DIGEST-VALUE), unlike DUMP, whose bytes follow the encoding. */
export interface KeyState {
  db: number;
  key: Buffer;
  type: string;
  /** DEBUG DIGEST-VALUE: the value, whatever its encoding. */
  value: string;
  /** PEXPIRETIME (−1: persistent). */
  expireMs: number;
  /**
   * Streams: consumer groups, their PELs with delivery times and counts, ids and counters (not consumers' seen-time).
   */
  groups: string;
  /** A short readable rendering, for messages. */
  preview: string;
}

/** Keys by `db:hex(key)`. */
export type Snapshot = Map<string, KeyState>;

/** Reads every key of every db of `r`. Only reads; run it while nothing writes. */
export async function snapshot(r: Redis): Promise<Snapshot> {
  const out: Snapshot = new Map();
  for (const db of await dbsWithKeys(r)) {
    await r.select(db);
    for (const batch of await scanAll(r)) {
      const p = r.pipeline();
      for (const k of batch) {
        p.type(k);
        p.pexpiretime(k);
        p.callBuffer('DEBUG', 'DIGEST-VALUE', k);
      }
      const res = (await p.exec()) ?? [];
      const states: KeyState[] = [];
      batch.forEach((key, i) => {
        const [[e1, type], [e2, exp], [e3, dv]] = [res[3 * i]!, res[3 * i + 1]!, res[3 * i + 2]!];
        if (e1 || e2 || e3) throw e1 ?? e2 ?? e3;
        const value = Array.isArray(dv) ? String(dv[0]) : String(dv);
        states.push({ db, key, type: String(type), value, expireMs: Number(exp), groups: '', preview: '' });
      });
      const q = r.pipeline();
      for (const s of states) {
        for (const argv of previewCommands(s)) q.callBuffer(argv[0], ...argv.slice(1));
        if (s.type === 'stream') q.callBuffer('XINFO', 'STREAM', s.key, 'FULL', 'COUNT', 0);
      }
      const more = (await q.exec()) ?? [];
      let j = 0;
      for (const s of states) {
        const n = previewCommands(s).length;
        const parts = more.slice(j, j + n).map(([err, v]) => (err ? `(${(err as Error).message})` : render(v)));
        j += n;
        s.preview = clip(parts.join(' '), 240);
        if (s.type === 'stream') {
          const [err, v] = more[j++]!;
          s.groups = err ? `(${(err as Error).message})` : render(v, STREAM_VOLATILE);
        }
        out.set(`${db}:${s.key.toString('hex')}`, s);
      }
    }
  }
  return out;
}

/**
 * Fields of XINFO STREAM FULL left out: entries (the value digest covers them), layout, and consumer clocks Redis's own
 * AOF does not keep.
 */
const STREAM_VOLATILE = new Set(['entries', 'radix-tree-keys', 'radix-tree-nodes', 'seen-time', 'active-time']);

function previewCommands(s: KeyState): [string, ...(string | Buffer | number)[]][] {
  switch (s.type) {
    case 'string':
      return [
        ['STRLEN', s.key],
        ['GETRANGE', s.key, 0, 47],
      ];
    case 'hash':
      return [['HGETALL', s.key]];
    case 'list':
      return [
        ['LLEN', s.key],
        ['LRANGE', s.key, 0, 11],
      ];
    case 'set':
      return [
        ['SCARD', s.key],
        ['SORT_RO', s.key, 'ALPHA', 'LIMIT', 0, 12],
      ];
    case 'zset':
      return [['ZRANGE', s.key, 0, 11, 'WITHSCORES']];
    case 'stream':
      return [
        ['XLEN', s.key],
        ['XRANGE', s.key, '-', '+', 'COUNT', 3],
      ];
    default:
      return [];
  }
}

/** A RESP reply as short readable text; a flat field/value array is read as a map, skipping `skip` fields. */
function render(v: unknown, skip?: ReadonlySet<string>): string {
  if (Buffer.isBuffer(v)) return `"${readableBytes(v)}"`;
  if (v === null || v === undefined) return 'nil';
  if (!Array.isArray(v)) return String(v);
  const isMap =
    skip !== undefined &&
    v.length % 2 === 0 &&
    v.length > 0 &&
    v.every((x, i) => i % 2 === 1 || (Buffer.isBuffer(x) && /^[a-z][a-z-]*$/.test(x.toString('latin1'))));
  if (isMap) {
    const parts: string[] = [];
    for (let i = 0; i < v.length; i += 2) {
      const name = (v[i] as Buffer).toString('latin1');
      if (!skip.has(name)) parts.push(`${name}=${render(v[i + 1], skip)}`);
    }
    return `{${parts.join(' ')}}`;
  }
  return `[${v.map((x) => render(x, skip)).join(' ')}]`;
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n)}…`;
}

/**
 * Differences between two snapshots, ordered by db then key bytes (the first is "the first diverging key").
 * `shiftedExpiries`: the restore moved every expiry by one constant (--keep-ttl-relative); each must move by it.
 */
export function compareSnapshots(
  source: Snapshot,
  restored: Snapshot,
  options: { shiftedExpiries?: boolean } = {},
): { key: Buffer; line: string }[] {
  let shift = 0;
  if (options.shiftedExpiries) {
    const counts = new Map<number, number>();
    for (const [id, s] of source) {
      const t = restored.get(id);
      if (t && s.expireMs > 0 && t.expireMs > 0)
        counts.set(t.expireMs - s.expireMs, (counts.get(t.expireMs - s.expireMs) ?? 0) + 1);
    }
    shift = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 0;
  }
  const ids = [...new Set([...source.keys(), ...restored.keys()])].sort((a, b) => {
    const [da, ka] = splitId(a);
    const [db, kb] = splitId(b);
    return da - db || Buffer.compare(ka, kb);
  });
  const lines: { key: Buffer; line: string }[] = [];
  for (const id of ids) {
    const s = source.get(id);
    const t = restored.get(id);
    const k = s ?? t!;
    const name = `db ${k.db} key "${readableBytes(k.key)}"`;
    const out = { push: (line: string) => lines.push({ key: k.key, line }) };
    if (!t)
      out.push(
        `${name} (${s!.type}) is missing from the restored instance; source: ${s!.preview}${s!.expireMs > 0 ? ` (PEXPIRETIME ${s!.expireMs})` : ''}`,
      );
    else if (!s)
      out.push(
        `${name} (${t.type}) exists only in the restored instance: ${t.preview}${t.expireMs > 0 ? ` (PEXPIRETIME ${t.expireMs})` : ''}`,
      );
    else if (s.type !== t.type)
      out.push(`${name}: type ${s.type} at the source, ${t.type} restored; source ${s.preview}; restored ${t.preview}`);
    else if (s.value !== t.value)
      out.push(`${name} (${s.type}): value differs; source ${s.preview}; restored ${t.preview}`);
    else if (s.groups !== t.groups)
      out.push(`${name} (stream): consumer groups differ; ${firstDifference(s.groups, t.groups)}`);
    else if (s.expireMs > 0 !== t.expireMs > 0 || (s.expireMs > 0 && t.expireMs - s.expireMs !== shift)) {
      out.push(
        `${name} (${s.type}): PEXPIRETIME ${s.expireMs} at the source, ${t.expireMs} restored${shift ? ` (the restore shifted expiries by ${shift} ms)` : ''}`,
      );
    }
  }
  return lines;
}

/**
 * The last stored events up to `uptoSeq` (and a few after) that name `key` or no key (FLUSH*, SWAPDB), oldest first:
 * what a failure report shows.
 */
async function keyHistory(stack: Stack, node: string, key: Buffer, uptoSeq: number): Promise<string> {
  // Aliases differ from the column names: ClickHouse 18.16 would read an alias in WHERE as the aggregate.
  const rows = await stack.store.query<{
    seq: string | number;
    t: string | number;
    ts: string | number;
    d: number;
    c: string;
    k: string;
    cmd: string;
    a: string[];
  }>(
    `SELECT seq, any(tx) AS t, any(ts_us) AS ts, any(db) AS d, any(client) AS c, any(kind) AS k, any(command) AS cmd, any(args) AS a FROM flashback.events ` +
      `WHERE node = ${sqlString(node)} AND seq <= ${uptoSeq + 20} AND (has(keys, ${sqlString(readableBytes(key))}) OR (empty(keys) AND kind = 'command')) ` +
      `GROUP BY seq ORDER BY seq DESC LIMIT 60`,
  );
  const lines = rows.reverse().map((r) => {
    const args = r.a.map((a) => readableBytes(Buffer.from(a, 'latin1'))).join(' ');
    return `  seq ${r.seq}${Number(r.t) ? ` tx ${r.t}` : ''} ${formatTsUs(Number(r.ts))} db ${r.d} ${r.c} ${r.k === 'command' ? '' : `[${r.k}] `}${clip(args || r.cmd, 160)}${Number(r.seq) >= uptoSeq ? ' (after the moment)' : ''}`;
  });
  return `events of "${readableBytes(key)}" and keyless writes up to the marker (seq ${uptoSeq}):\n${lines.join('\n')}`;
}

/** Where two renderings part: a little context before, then each side from there. */
function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  const from = Math.max(0, i - 120);
  const pre = from > 0 ? '…' : '';
  return `source ${pre}${clip(a.slice(from), i - from + 200)}; restored ${pre}${clip(b.slice(from), i - from + 200)}`;
}

function splitId(id: string): [number, Buffer] {
  const i = id.indexOf(':');
  return [Number(id.slice(0, i)), Buffer.from(id.slice(i + 1), 'hex')];
}
