// Hard command families restored exactly: FLUSHALL/FLUSHDB, SWAPDB, MOVE, COPY … DB, SELECT in MULTI and scripts,
// functions, RENAME/RENAMENX with TTLs and every byte value, INCRBYFLOAT/HINCRBYFLOAT — cut just before, at and after
// each, checked against the source's DEBUG DIGEST (and FUNCTION LIST WITHCODE) recorded then.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import { resolveCutoff, type CutoffSpec } from '../core/store/cutoff.js';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString, sqlUInt } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore, type EventStore } from '../restorer/index.js';
import { startSource, startStack, type Stack, syncedSource, type Source } from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let events: EventStore;
let instancesDir: string;

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'hard-cases-test' });
  objects = await ensureBaselineStore(nc);
  events = clickHouseEventStore(stack.store, stack.store.client);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-hard-'));
});
after(async () => {
  await nc?.close();
  await stack?.close();
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

type Arg = string | number | Buffer;

/** One step of a scenario: commands issued by the test's only client, then the source's state is recorded. */
interface Step {
  label: string;
  /**
   * Command names of the events the step must produce, in order: its writes (a transaction's or a script's effects).
   */
  events: string[];
  /** A hard command (one event, or one transaction / script): also cut just before it, inside it, and by time. */
  hard?: boolean;
  run(r: Redis, src: Source): Promise<unknown>;
}

/**
 * The source at one instant: DEBUG DIGEST, the function libraries, and the server's clock right after reading them
 * (µs).
 */
interface State {
  digest: string;
  functions: string;
  clockUs: number;
}

/** A step placed in the event stream. */
interface Placed {
  first: number;
  last: number;
  tsUs: number;
  tx: number;
}

/** A cutoff and the recorded state (index: 0 = right after the baseline, i = after step i) it must restore. */
interface Cut {
  spec: CutoffSpec;
  state: number;
  why: string;
}

/** Sends one command with exact bytes; a reply error is returned, not thrown (a failed write is a step too). */
function cmd(r: Redis, ...argv: Arg[]): Promise<unknown> {
  return r.callBuffer(String(argv[0]), ...argv.slice(1)).catch((err: unknown) => err);
}

/** MULTI … EXEC of these commands; reply errors inside stay in the result. */
async function multi(r: Redis, ...cmds: Arg[][]): Promise<unknown> {
  const m = r.multi();
  for (const [name, ...args] of cmds) m.callBuffer(String(name), ...args);
  return m.exec();
}

/**
 * FUNCTION LIST WITHCODE in an order-free form: libraries and their functions sorted (dict order may differ after a
 * reload).
 */
function canonicalFunctions(reply: unknown): string {
  const text = (v: unknown): unknown =>
    Buffer.isBuffer(v) ? v.toString('latin1') : Array.isArray(v) ? v.map(text) : v;
  const libs = (text(reply) as unknown[][]).map((lib) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < lib.length; i += 2) out[String(lib[i])] = lib[i + 1];
    if (Array.isArray(out.functions)) out.functions = (out.functions as unknown[]).map((f) => JSON.stringify(f)).sort();
    return JSON.stringify(out);
  });
  return JSON.stringify(libs.sort());
}

async function stateOf(url: string): Promise<State> {
  const r = new Redis(url);
  try {
    const digest = String(await r.call('DEBUG', 'DIGEST'));
    const functions = canonicalFunctions(await r.callBuffer('FUNCTION', 'LIST', 'WITHCODE'));
    // The server's clock, which MONITOR stamps events with: every event so far is at or before it.
    const [sec, usec] = (await r.call('TIME')) as [string, string];
    return { digest, functions, clockUs: Number(sec) * 1_000_000 + Number(usec) };
  } finally {
    r.disconnect();
  }
}

const synced = (src: Source) => syncedSource(stack, src);

async function inBatches<T, R>(items: T[], size: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

function describeSpec(s: CutoffSpec): string {
  if (s.toSeq !== undefined) return `--to-seq ${s.toSeq}`;
  if (s.beforeSeq !== undefined) return `--before-seq ${s.beforeSeq}`;
  return `--to ${String(s.to)}`;
}

/**
 * Plays `steps` on a fresh captured source (after `seed`, which lands in the first baseline's RDB), recording
 * the source's state after each step with no other client writing. Then finds each step's events in
 * flashback.events and checks every cutoff: that it resolves into the span of events between its state and
 * the next step, and — one restore per state, by one of its cutoffs in turn — that the restored instance
 * has that state's digest and function libraries.
 */
async function scenario(seed: (r: Redis) => Promise<unknown>, steps: Step[]): Promise<void> {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    // The agent's first baseline may still be running: baseline() would join it, and its marker precede the seed.
    await src.agent.baseline();
    await seed(r);
    await r.select(0);
    const base = await src.agent.baseline();
    const states: State[] = [await stateOf(src.redis.url)];
    for (const step of steps) {
      await step.run(r, src);
      states.push(await stateOf(src.redis.url));
    }
    // synced writes a marker (a DEL of a missing key: no state changes) and waits for it and every seq before it.
    const lastSeq = await synced(src);

    // Aliases must not shadow columns (18.16); GROUP BY seq: a duplicate row may not be merged yet. The steps' events
    // are those before the marker.
    const rows = await stack.store.query<{ s: string; t: string; k: string; c: string; x: string }>(
      `SELECT seq AS s, any(ts_us) AS t, any(kind) AS k, any(command) AS c, any(tx) AS x FROM flashback.events WHERE node = ${sqlString(src.node)} AND epoch = ${sqlUInt(base.epoch)} AND seq > ${sqlUInt(base.seq)} AND seq < ${sqlUInt(lastSeq)} GROUP BY seq ORDER BY seq`,
    );
    const data = rows
      .filter((x) => x.k !== 'heartbeat' && x.k !== 'baseline')
      .map((x) => ({ seq: Number(x.s), tsUs: Number(x.t), kind: x.k, command: x.c, tx: Number(x.x) }));
    const placed: Placed[] = [];
    let at = 0;
    for (const step of steps) {
      const got = data.slice(at, at + step.events.length);
      assert.deepEqual(
        got.map((e) => `${e.kind}:${e.command}`),
        step.events.map((c) => `command:${c}`),
        `events of step "${step.label}" (baseline at seq ${base.seq}; stream: ${data.map((e) => `${e.seq}:${e.kind === 'command' ? '' : `${e.kind}:`}${e.command}${e.tx ? `@${e.tx}` : ''}`).join(' ')})`,
      );
      at += got.length;
      const tx = got[0]!.tx;
      if (step.hard && got.length > 1)
        assert.ok(
          tx > 0 && got.every((e) => e.tx === tx && e.tsUs === got[0]!.tsUs),
          `step "${step.label}": its ${got.length} events are one tx with one time: ${JSON.stringify(got)}`,
        );
      placed.push({ first: got[0]!.seq, last: got[got.length - 1]!.seq, tsUs: got[0]!.tsUs, tx });
    }
    assert.equal(at, data.length, `no events beyond the steps': ${JSON.stringify(data.slice(at))}`);

    const cuts: Cut[] = [];
    steps.forEach((step, j) => {
      const i = j + 1;
      const p = placed[j]!;
      cuts.push({ spec: { toSeq: p.last }, state: i, why: `at the end of "${step.label}"` });
      // The last state's instant lies in a window only once a heartbeat follows: not worth an idle second.
      if (i < steps.length)
        cuts.push({ spec: { to: states[i]!.clockUs }, state: i, why: `the source's clock after "${step.label}"` });
      if (!step.hard) return;
      cuts.push({ spec: { beforeSeq: p.first }, state: i - 1, why: `just before "${step.label}"` });
      cuts.push({ spec: { toSeq: p.first }, state: i, why: `at "${step.label}"` });
      cuts.push({ spec: { to: p.tsUs }, state: i, why: `the time of "${step.label}"` });
      cuts.push({ spec: { to: p.tsUs - 1 }, state: i - 1, why: `1 µs before "${step.label}"` });
      for (let s = p.first + 1; s <= p.last; s++) {
        cuts.push({ spec: { toSeq: s }, state: i, why: `inside "${step.label}" (seq ${s})` });
        cuts.push({ spec: { beforeSeq: s }, state: i - 1, why: `before seq ${s} inside "${step.label}"` });
      }
      if (j + 1 < steps.length)
        cuts.push({ spec: { toSeq: placed[j + 1]!.last }, state: i + 1, why: `just after "${step.label}"` });
    });

    const problems: string[] = [];
    // Which seqs hold state s: from its step's last event up to the event before the next step.
    const span = (s: number): [number, number] => [
      s === 0 ? base.seq : placed[s - 1]!.last,
      s < steps.length ? placed[s]!.first - 1 : lastSeq,
    ];
    const label = (s: number) => (s === 0 ? 'the baseline' : `after "${steps[s - 1]!.label}"`);
    // Resolving is a few ClickHouse queries; eight at a time keeps a scenario's hundred-odd cutoffs quick.
    const resolved = await inBatches(cuts, 8, (c) => resolveCutoff(events, src.node, c.spec));
    cuts.forEach((c, i) => {
      const got = resolved[i]!;
      const [lo, hi] = span(c.state);
      if (got.seq < lo || got.seq > hi)
        problems.push(
          `${describeSpec(c.spec)} (${c.why}) resolved to seq ${got.seq}, expected ${lo}–${hi} (state ${label(c.state)})`,
        );
    });
    const byState = new Map<number, Cut[]>();
    for (const c of cuts) byState.set(c.state, [...(byState.get(c.state) ?? []), c]);
    for (const [s, list] of [...byState].sort((a, b) => a[0] - b[0])) {
      const c = list[s % list.length]!;
      let report;
      try {
        report = await restore({ events, objects, instancesDir }, { node: src.node, ...c.spec, spawn: {} });
      } catch (err) {
        problems.push(`${describeSpec(c.spec)} (${c.why}): restore failed: ${String(err)}`);
        continue;
      }
      try {
        const got = await stateOf(report.url!);
        const want = states[s]!;
        if (got.digest !== want.digest)
          problems.push(
            `${describeSpec(c.spec)} (${c.why}): digest ${got.digest}, source had ${want.digest} ${label(s)}`,
          );
        if (got.functions !== want.functions)
          problems.push(
            `${describeSpec(c.spec)} (${c.why}): FUNCTION LIST ${got.functions}, source had ${want.functions} ${label(s)}`,
          );
      } finally {
        if (report.pid) await stopPid(report.pid);
        if (report.dir) await rm(report.dir, { recursive: true, force: true });
      }
    }
    assert.deepEqual(problems, [], `${problems.length} of ${cuts.length} cutoffs (${byState.size} restores) wrong`);
  } finally {
    r.disconnect();
    await src.close();
  }
}

/** A few keys of every type in db `db`, names prefixed with `p`; one with an absolute TTL. */
async function fill(r: Redis, db: number, p: string): Promise<void> {
  await r.select(db);
  await cmd(r, 'SET', `${p}:s`, `${p}-${db}`);
  await cmd(r, 'HSET', `${p}:h`, 'f', `${db}`, Buffer.from([0, 255]), 'x');
  await cmd(r, 'RPUSH', `${p}:l`, 'a', 'b');
  await cmd(r, 'SADD', `${p}:set`, 'm1', 'm2');
  await cmd(r, 'ZADD', `${p}:z`, 1, 'one', 2.5, 'two');
  await cmd(r, 'SET', `${p}:t`, 'ttl', 'PXAT', Date.now() + 3_600_000);
}
const FILL_EVENTS = ['SET', 'HSET', 'RPUSH', 'SADD', 'ZADD', 'SET'];

const LIB1 =
  "#!lua name=lib1\nredis.register_function('f_set', function(keys, args) redis.call('SET', keys[1], args[1]) return redis.call('INCR', keys[2]) end)";
const LIB1_V2 =
  "#!lua name=lib1\nredis.register_function('f_set', function(keys, args) redis.call('APPEND', keys[1], args[1]) return redis.call('INCRBY', keys[2], 2) end)\n" +
  "redis.register_function{function_name='f_hset', callback=function(keys, args) return redis.call('HSET', keys[1], 'f', args[1]) end, flags={'allow-oom'}, description='sets f'}";
const LIB2 = "#!lua name=lib2\nredis.register_function('f_del', function(keys) return redis.call('DEL', keys[1]) end)";
const SEEDLIB =
  "#!lua name=seedlib\nredis.register_function('f_seed', function(keys, args) return redis.call('RPUSH', keys[1], args[1]) end)";

/** Every byte value once, in order; and reversed. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const ALL_BYTES_REV = Buffer.from([...ALL_BYTES].reverse());
const ONE_BYTE_KEYS = [0x00, 0x0a, 0x0d, 0x22, 0x5c, 0xff].map((b) => Buffer.from([b]));

// Each scenario has a source and agent of its own: run side by side, they share only the stack.
describe('hard commands', { concurrency: true }, () => {
  test('FLUSHALL and FLUSHDB (SYNC and ASYNC), SWAPDB, MOVE, COPY … DB, SELECT inside MULTI and inside EVAL, over dbs 0, 3 and 15', async () => {
    const SELECT_SCRIPT =
      "redis.call('SELECT', 3) redis.call('SET', 'lua:k', ARGV[1]) redis.call('SELECT', 15) redis.call('HSET', 'lua:h', 'f', ARGV[1]) return 1";
    const steps: Step[] = [
      {
        label: 'writes in dbs 0, 3, 15',
        events: [...FILL_EVENTS, ...FILL_EVENTS, ...FILL_EVENTS],
        run: async (r) => {
          await fill(r, 0, 'a');
          await fill(r, 3, 'a');
          await fill(r, 15, 'a');
        },
      },
      {
        label: 'FLUSHDB SYNC in db 3',
        events: ['FLUSHDB'],
        hard: true,
        run: async (r) => {
          await r.select(3);
          await cmd(r, 'FLUSHDB', 'SYNC');
        },
      },
      { label: 'writes in db 3', events: FILL_EVENTS, run: (r) => fill(r, 3, 'b') },
      {
        label: 'FLUSHDB ASYNC in db 15',
        events: ['FLUSHDB'],
        hard: true,
        run: async (r) => {
          await r.select(15);
          await cmd(r, 'FLUSHDB', 'ASYNC');
        },
      },
      { label: 'writes in db 15', events: FILL_EVENTS, run: (r) => fill(r, 15, 'c') },
      { label: 'SWAPDB 0 3', events: ['SWAPDB'], hard: true, run: (r) => cmd(r, 'SWAPDB', 0, 3) },
      { label: 'writes in db 0', events: FILL_EVENTS, run: (r) => fill(r, 0, 'd') },
      {
        label: 'MOVE d:s from db 0 to 15',
        events: ['MOVE'],
        hard: true,
        run: async (r) => {
          await r.select(0);
          await cmd(r, 'MOVE', 'd:s', 15);
        },
      },
      { label: 'SET c:s in db 0', events: ['SET'], run: (r) => cmd(r, 'SET', 'c:s', 'x') },
      {
        label: 'MOVE c:s from db 0 to 15, where it exists (no-op)',
        events: ['MOVE'],
        hard: true,
        run: (r) => cmd(r, 'MOVE', 'c:s', 15),
      },
      {
        label: 'COPY d:t to db 3 (absent there, keeps its TTL)',
        events: ['COPY'],
        hard: true,
        run: (r) => cmd(r, 'COPY', 'd:t', 'copied', 'DB', 3),
      },
      {
        label: 'COPY d:h onto an existing key of db 3 without REPLACE (no-op)',
        events: ['COPY'],
        hard: true,
        run: (r) => cmd(r, 'COPY', 'd:h', 'copied', 'DB', 3),
      },
      {
        label: 'COPY d:h onto an existing key of db 3 with REPLACE',
        events: ['COPY'],
        hard: true,
        run: (r) => cmd(r, 'COPY', 'd:h', 'copied', 'DB', 3, 'REPLACE'),
      },
      {
        label: 'MULTI: SELECT 15, SET, SELECT 3, HSET, SWAPDB 0 15, DEL, SELECT 0, RPUSH',
        events: ['SET', 'HSET', 'SWAPDB', 'DEL', 'RPUSH'],
        hard: true,
        run: (r) =>
          multi(
            r,
            ['SELECT', 15],
            ['SET', 'm:s', 'v'],
            ['SELECT', 3],
            ['HSET', 'm:h', 'f', 'v'],
            ['SWAPDB', 0, 15],
            ['DEL', 'c:l'],
            ['SELECT', 0],
            ['RPUSH', 'm:l', 'x'],
          ),
      },
      {
        label: 'SET in whatever db the client is in after that MULTI (0)',
        events: ['SET'],
        run: (r) => cmd(r, 'SET', 'after-multi', '1'),
      },
      {
        label: 'EVAL that SELECTs 3, writes, SELECTs 15, writes',
        events: ['SET', 'HSET'],
        hard: true,
        run: async (r) => {
          await r.select(0);
          await cmd(r, 'EVAL', SELECT_SCRIPT, 0, 'e1');
        },
      },
      {
        label: "SET in the caller's db after the script",
        events: ['SET'],
        run: (r) => cmd(r, 'SET', 'after-eval', '1'),
      },
      {
        label: 'MULTI: SELECT 3, EVAL that SELECTs 15 and writes, SET',
        events: ['SET', 'HSET', 'SET'],
        hard: true,
        run: (r) => multi(r, ['SELECT', 3], ['EVAL', SELECT_SCRIPT, 0, 'e2'], ['SET', 'after-eval-in-multi', '1']),
      },
      { label: 'SET after that MULTI', events: ['SET'], run: (r) => cmd(r, 'SET', 'after-multi-eval', '1') },
      { label: 'FLUSHALL ASYNC', events: ['FLUSHALL'], hard: true, run: (r) => cmd(r, 'FLUSHALL', 'ASYNC') },
      {
        label: 'writes in dbs 0, 3, 15 again',
        events: [...FILL_EVENTS, ...FILL_EVENTS, ...FILL_EVENTS],
        run: async (r) => {
          await fill(r, 0, 'e');
          await fill(r, 3, 'e');
          await fill(r, 15, 'e');
        },
      },
      { label: 'FLUSHALL SYNC', events: ['FLUSHALL'], hard: true, run: (r) => cmd(r, 'FLUSHALL', 'SYNC') },
      {
        label: 'FLUSHALL (no flag) on an empty dataset',
        events: ['FLUSHALL'],
        hard: true,
        run: (r) => cmd(r, 'FLUSHALL'),
      },
      {
        label: 'writes in dbs 15 and 3',
        events: [...FILL_EVENTS, ...FILL_EVENTS],
        run: async (r) => {
          await fill(r, 15, 'f');
          await fill(r, 3, 'f');
        },
      },
    ];
    await scenario(async (r) => {
      for (const db of [0, 3, 15]) await fill(r, db, 'seed');
    }, steps);
  });

  test('FUNCTION LOAD / LOAD REPLACE / DELETE / FLUSH / RESTORE and FCALL: data and libraries as the source had them', async () => {
    let dump: Buffer | undefined;
    const steps: Step[] = [
      { label: 'FUNCTION LOAD lib1', events: ['FUNCTION'], hard: true, run: (r) => cmd(r, 'FUNCTION', 'LOAD', LIB1) },
      {
        label: 'FCALL f_set',
        events: ['SET', 'INCR'],
        hard: true,
        run: (r) => cmd(r, 'FCALL', 'f_set', 2, 'fk', 'fc', 'v1'),
      },
      {
        label: 'FUNCTION LOAD REPLACE lib1 (new code, a second function)',
        events: ['FUNCTION'],
        hard: true,
        run: (r) => cmd(r, 'FUNCTION', 'LOAD', 'REPLACE', LIB1_V2),
      },
      {
        label: 'FCALL f_set (new code) in db 3',
        events: ['APPEND', 'INCRBY'],
        hard: true,
        run: async (r) => {
          await r.select(3);
          await cmd(r, 'FCALL', 'f_set', 2, 'fk', 'fc', 'v2');
          await r.select(0);
        },
      },
      {
        label: 'FUNCTION LOAD of an existing library without REPLACE (fails)',
        events: ['FUNCTION'],
        hard: true,
        run: (r) => cmd(r, 'FUNCTION', 'LOAD', LIB1),
      },
      {
        label: 'a baseline, then a SET',
        events: ['SET'],
        run: async (r, src) => {
          await src.agent.baseline();
          await cmd(r, 'SET', 'after-baseline', '1');
        },
      },
      { label: 'FCALL f_hset', events: ['HSET'], hard: true, run: (r) => cmd(r, 'FCALL', 'f_hset', 1, 'fh', 'x') },
      {
        label: 'FCALL f_seed (loaded before the baseline)',
        events: ['RPUSH'],
        hard: true,
        run: (r) => cmd(r, 'FCALL', 'f_seed', 1, 'seedlist', 'y'),
      },
      {
        label: 'FUNCTION DELETE seedlib',
        events: ['FUNCTION'],
        hard: true,
        run: (r) => cmd(r, 'FUNCTION', 'DELETE', 'seedlib'),
      },
      {
        label: 'FUNCTION LOAD lib2',
        events: ['FUNCTION'],
        hard: true,
        run: async (r) => {
          await cmd(r, 'FUNCTION', 'LOAD', LIB2);
          dump = (await r.callBuffer('FUNCTION', 'DUMP')) as Buffer;
        },
      },
      {
        label: 'FUNCTION FLUSH ASYNC',
        events: ['FUNCTION'],
        hard: true,
        run: (r) => cmd(r, 'FUNCTION', 'FLUSH', 'ASYNC'),
      },
      { label: 'SET', events: ['SET'], run: (r) => cmd(r, 'SET', 'between', '1') },
      {
        label: 'FUNCTION RESTORE of a binary dump',
        events: ['FUNCTION'],
        hard: true,
        run: (r) => cmd(r, 'FUNCTION', 'RESTORE', dump!),
      },
      { label: 'FCALL f_del', events: ['DEL'], hard: true, run: (r) => cmd(r, 'FCALL', 'f_del', 1, 'fk') },
      {
        label: 'FUNCTION FLUSH SYNC',
        events: ['FUNCTION'],
        hard: true,
        run: (r) => cmd(r, 'FUNCTION', 'FLUSH', 'SYNC'),
      },
      {
        label: 'MULTI: FUNCTION LOAD lib2, FCALL f_del',
        events: ['FUNCTION', 'DEL'],
        hard: true,
        run: (r) => multi(r, ['FUNCTION', 'LOAD', LIB2], ['FCALL', 'f_del', 1, 'fc']),
      },
    ];
    await scenario(async (r) => {
      await cmd(r, 'FUNCTION', 'LOAD', SEEDLIB);
      await cmd(r, 'FCALL', 'f_seed', 1, 'seedlist', 'x');
    }, steps);
  });

  test('RENAME and RENAMENX over existing keys with TTLs on both; keys and values of every byte value', async () => {
    const inAnHour = () => Date.now() + 3_600_000;
    const steps: Step[] = [
      {
        label: 'SET the all-bytes key to the all-bytes value',
        events: ['SET'],
        run: (r) => cmd(r, 'SET', ALL_BYTES, ALL_BYTES),
      },
      {
        label: 'SET each one-byte key (0x00 0x0a 0x0d 0x22 0x5c 0xff) with a TTL',
        events: ONE_BYTE_KEYS.map(() => 'SET'),
        run: async (r) => {
          for (const k of ONE_BYTE_KEYS)
            await cmd(r, 'SET', k, Buffer.concat([k, ALL_BYTES_REV, k]), 'EX', 7200 + k[0]!);
        },
      },
      {
        label: 'HSET, SADD, ZADD, RPUSH of every byte value as fields and members',
        events: ['HSET', 'SADD', 'ZADD', 'RPUSH'],
        run: async (r) => {
          const singles = [...ALL_BYTES].map((b) => Buffer.from([b]));
          await cmd(r, 'HSET', ALL_BYTES_REV, ...singles.flatMap((b) => [b, Buffer.concat([b, b])]));
          await cmd(r, 'SADD', Buffer.from([0x00, 0x0a]), ...singles);
          await cmd(r, 'ZADD', Buffer.from([0x0d, 0x0a]), ...singles.flatMap((b, i) => [i, b]));
          await cmd(r, 'RPUSH', Buffer.from('"\\'), ...singles);
        },
      },
      {
        label: 'SET a (relative TTL) and b (absolute TTL)',
        events: ['SET', 'SET'],
        run: async (r) => {
          await cmd(r, 'SET', 'a', 'va', 'EX', 3600);
          await cmd(r, 'SET', 'b', 'vb', 'PXAT', inAnHour() + 5_000);
        },
      },
      { label: 'RENAME a b (both with TTLs)', events: ['RENAME'], hard: true, run: (r) => cmd(r, 'RENAME', 'a', 'b') },
      {
        label: 'SET c (TTL), a2 (TTL)',
        events: ['SET', 'SET'],
        run: async (r) => {
          await cmd(r, 'SET', 'c', 'vc', 'PX', 5_000_000);
          await cmd(r, 'SET', 'a2', 'v2', 'EX', 100_000);
        },
      },
      {
        label: 'RENAMENX a2 c (c exists: no-op)',
        events: ['RENAMENX'],
        hard: true,
        run: (r) => cmd(r, 'RENAMENX', 'a2', 'c'),
      },
      {
        label: 'RENAMENX a2 d (d absent)',
        events: ['RENAMENX'],
        hard: true,
        run: (r) => cmd(r, 'RENAMENX', 'a2', 'd'),
      },
      {
        label: 'RENAME 0x00 0xff (both with TTLs)',
        events: ['RENAME'],
        hard: true,
        run: (r) => cmd(r, 'RENAME', ONE_BYTE_KEYS[0]!, ONE_BYTE_KEYS[5]!),
      },
      {
        label: 'PEXPIREAT the all-bytes key',
        events: ['PEXPIREAT'],
        run: (r) => cmd(r, 'PEXPIREAT', ALL_BYTES, inAnHour() + 9_000),
      },
      {
        label: 'RENAME the all-bytes key over 0x0a (both with TTLs)',
        events: ['RENAME'],
        hard: true,
        run: (r) => cmd(r, 'RENAME', ALL_BYTES, ONE_BYTE_KEYS[1]!),
      },
      {
        label: 'RENAMENX 0x22 to the all-bytes key (absent now)',
        events: ['RENAMENX'],
        hard: true,
        run: (r) => cmd(r, 'RENAMENX', ONE_BYTE_KEYS[3]!, ALL_BYTES),
      },
      {
        label: 'RENAME the reversed-bytes hash over 0x5c',
        events: ['RENAME'],
        hard: true,
        run: (r) => cmd(r, 'RENAME', ALL_BYTES_REV, ONE_BYTE_KEYS[4]!),
      },
      {
        label: 'in db 3: SET 0x00 (TTL) and 0x0d, RENAME 0x00 0x0d',
        events: ['SET', 'SET', 'RENAME'],
        run: async (r) => {
          await r.select(3);
          await cmd(r, 'SET', ONE_BYTE_KEYS[0]!, ALL_BYTES, 'PX', 9_000_000);
          await cmd(r, 'SET', ONE_BYTE_KEYS[2]!, ALL_BYTES_REV);
          await cmd(r, 'RENAME', ONE_BYTE_KEYS[0]!, ONE_BYTE_KEYS[2]!);
          await r.select(0);
        },
      },
      { label: 'RENAME a key onto itself', events: ['RENAME'], hard: true, run: (r) => cmd(r, 'RENAME', 'b', 'b') },
      {
        label: 'APPEND every byte value to 0xff',
        events: ['APPEND'],
        run: (r) => cmd(r, 'APPEND', ONE_BYTE_KEYS[5]!, ALL_BYTES),
      },
    ];
    await scenario(async (r) => {
      await cmd(r, 'SET', ALL_BYTES_REV, ALL_BYTES, 'PXAT', inAnHour());
    }, steps);
  });

  test('INCRBYFLOAT and HINCRBYFLOAT: 0.1 repeatedly, near 1e308, negative, exponents, errors', async () => {
    const incr = (key: string, by: string, times = 1): Step => ({
      label: `INCRBYFLOAT ${key} ${by}${times > 1 ? ` ×${times}` : ''}`,
      events: Array(times).fill('INCRBYFLOAT'),
      hard: times === 1,
      run: async (r) => {
        for (let i = 0; i < times; i++) await cmd(r, 'INCRBYFLOAT', key, by);
      },
    });
    const hincr = (key: string, field: string, by: string): Step => ({
      label: `HINCRBYFLOAT ${key} ${field} ${by}`,
      events: ['HINCRBYFLOAT'],
      hard: true,
      run: (r) => cmd(r, 'HINCRBYFLOAT', key, field, by),
    });
    const steps: Step[] = [
      incr('f', '0.1'),
      incr('f', '0.1', 9),
      incr('f', '0.1'),
      incr('f', '-0.30000000000000004'),
      incr('huge', '1e308'),
      incr('huge', '1e308'),
      incr('huge', '-1.7976931348623157e308'),
      incr('max', '1.7976931348623157e308'),
      incr('neg', '-5.5'),
      incr('neg', '-1e-20'),
      incr('neg', '3.0e2'),
      incr('ttl', '2.5'),
      incr('text', '1'),
      incr('f', 'inf'),
      incr('f', '1e4933'),
      hincr('h', 'f', '0.1'),
      hincr('h', 'f', '0.1'),
      hincr('h', 'f', '0.1'),
      hincr('h', 'big', '1e308'),
      hincr('h', 'big', '1e308'),
      hincr('h', 'neg', '-2.0e-3'),
      hincr('h', 'text', '1'),
    ];
    await scenario(async (r) => {
      await cmd(r, 'SET', 'ttl', '10.5', 'PXAT', Date.now() + 3_600_000);
      await cmd(r, 'SET', 'text', 'not a number');
      await cmd(r, 'HSET', 'h', 'text', 'nan?');
    }, steps);
  });
});
