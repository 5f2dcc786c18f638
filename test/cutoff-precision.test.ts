// Whether a `--to T` restore is provably the state at T (core/store/cutoff-precision.ts), on a real clickhouse-server:
// exact cutoffs say nothing; a left-out event at or before T, a replication-timed next change, and a MONITOR state
// group spanning T each give one warning with the asked and resolved instants, the gap, the seq and the way out.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { ANCHOR_COMMAND, EventKind, REPLICATION_CLIENT, type FlashbackEvent } from '../core/bus/event.js';
import { resolveCutoff } from '../core/store/cutoff.js';
import { cutoffPrecision } from '../core/store/cutoff-precision.js';
import type { ServerProcess } from '../core/servers/server-process.js';
import { formatTsUs } from '../core/time.js';
import { baselineToRow, eventToRow } from '../sink/rows.js';
import { testClickHouse } from './helpers/servers.js';

let server: ServerProcess;
let store: Store;

const EPOCH = 1_754_252_890_000;
const T0 = EPOCH * 1_000;
const ms = (n: number) => T0 + Math.round(n * 1_000);

/** One event of a history: `at` in ms after the epoch start. */
interface Spec {
  at: number;
  kind?: EventKind;
  client?: string;
  command?: string;
  tx?: number;
}

/** Stores a history under a fresh node (seq 1 is the baseline marker) and returns the node. */
async function history(specs: Spec[]): Promise<string> {
  const node = `test-${randomUUID()}`;
  const events: FlashbackEvent[] = specs.map((s, i) => {
    const seq = i + 1;
    const kind = s.kind ?? EventKind.Command;
    const key = Buffer.from(`k${seq}`);
    const args = kind === EventKind.Command ? [Buffer.from(s.command ?? 'SET'), key, Buffer.from('v')] : [key];
    return {
      node,
      epoch: EPOCH,
      seq,
      tsUs: ms(s.at),
      db: 0,
      client: s.client ?? '127.0.0.1:5555',
      kind,
      command: s.command ?? (kind === EventKind.Command ? 'SET' : kind.toUpperCase()),
      keys: [key],
      args,
      replay: kind === EventKind.Baseline || kind === EventKind.Heartbeat ? [] : args,
      tx: s.tx ?? 0,
    };
  });
  await store.insertEvents(events.map(eventToRow));
  await store.insertBaselines([
    baselineToRow({
      node,
      epoch: EPOCH,
      seq: 1,
      tsUs: events[0]!.tsUs,
      markerId: 'm1',
      rdbObject: `${node}/m1.rdb`,
      tailObject: `${node}/m1.tail`,
      rdbBytes: 100,
      tailBytes: 0,
      keys: 0,
      digest: '',
    }),
  ]);
  return node;
}

const MARKER: Spec = { at: 0, kind: EventKind.Baseline, client: 'agent', command: 'PUBLISH' };
const anchor = (at: number): Spec => ({ at, kind: EventKind.Heartbeat, client: 'agent', command: ANCHOR_COMMAND });
const replicated = (at: number, tx = 0): Spec => ({ at, client: REPLICATION_CLIENT, tx });

/** Resolves `--to` the instant `at` ms and returns the cutoff's seq and the warnings. */
async function warningsAt(node: string, at: number): Promise<{ seq: number; tsUs: number; warnings: string[] }> {
  const cut = await resolveCutoff(store, node, { to: ms(at) });
  return { seq: cut.seq, tsUs: cut.tsUs, warnings: await cutoffPrecision(store, node, cut) };
}

before(async () => {
  server = await testClickHouse();
  store = await openClickHouse(server.url);
  await store.ensureSchema();
});

after(async () => {
  await store?.close();
  await server?.stop();
});

test('MONITOR: a cutoff in a pause, and one just before a later burst, are exact', async () => {
  const node = await history([
    MARKER,
    { at: 1 },
    { at: 2 },
    { at: 80 }, // 4: the next burst
    { at: 81 },
    { at: 1_500, kind: EventKind.Heartbeat, command: 'ECHO' },
  ]);
  assert.deepEqual(await warningsAt(node, 30), { seq: 3, tsUs: ms(2), warnings: [] });
  // Nothing that changes data after the cutoff in the window: only the heartbeat.
  assert.deepEqual(await warningsAt(node, 1_000), { seq: 5, tsUs: ms(81), warnings: [] });
  // A transaction after T without state events is one atomic write at its commit time: exact.
  const multi = await history([MARKER, { at: 1 }, { at: 70, tx: 3 }, { at: 70, tx: 3 }, { at: 90 }]);
  assert.deepEqual(await warningsAt(multi, 40), { seq: 2, tsUs: ms(1), warnings: [] });
});

test('a cutoff is never told for --to-seq / --before-seq', async () => {
  const node = await history([MARKER, { at: 1 }, replicated(50), anchor(50)]);
  const cut = await resolveCutoff(store, node, { toSeq: 2 });
  assert.deepEqual(await cutoffPrecision(store, node, cut), []);
});

test('a transaction that goes on past T is left out whole, and the event at or before T it leaves out is named', async () => {
  // Times inside one tx that differ (not written so by the MONITOR agent; a defensive case for other sources).
  const node = await history([MARKER, { at: 1 }, { at: 5, tx: 3 }, { at: 50, tx: 3 }, { at: 60 }]);
  const { seq, tsUs, warnings } = await warningsAt(node, 10);
  assert.equal(seq, 2, 'cut before the tx, not inside it');
  assert.equal(tsUs, ms(1));
  assert.deepEqual(warnings, [
    `restore to ${formatTsUs(ms(10))} resolved to ${formatTsUs(ms(1))} (9.0 ms earlier; cutoff epoch ${EPOCH} seq 2): ` +
      `the next change, seq 3 (SET) at ${formatTsUs(ms(5))} is at or before the asked instant but left out: its tx ` +
      `(from seq 3) goes on past the asked instant; choose with --before-seq 3 (without it) or --to-seq 3 (with it and ` +
      `the rest of its tx)`,
  ]);
});

test('replication: the next change is timed only by its anchors; warned when T is more than 1 ms past the anchor before it', async () => {
  const node = await history([
    MARKER,
    replicated(10),
    replicated(10),
    anchor(10), // 4
    replicated(100), // 5: ran somewhere in (10 ms, 100 ms]
    replicated(100),
    anchor(100),
  ]);
  const far = await warningsAt(node, 50);
  assert.equal(far.seq, 4);
  assert.equal(far.warnings.length, 1);
  assert.equal(
    far.warnings[0],
    `restore to ${formatTsUs(ms(50))} resolved to ${formatTsUs(ms(10))} (40.0 ms earlier; cutoff epoch ${EPOCH} seq 4): ` +
      `the next change, seq 5 (SET) comes from the replication stream, which carries no time: it ran after the anchor ` +
      `at ${formatTsUs(ms(10))} and by ${formatTsUs(ms(100))}, so whether the state at the asked instant includes it ` +
      `is unknown; choose with --before-seq 5 (without it) or --to-seq 5 (with it); attribution (MONITOR beside the ` +
      `stream) or MONITOR capture gives each event its µs time`,
  );
  // Within 1 ms of the anchor: the change cannot have run yet by more than the promise.
  assert.deepEqual(await warningsAt(node, 10.9), { seq: 4, tsUs: ms(10), warnings: [] });
  assert.match((await warningsAt(node, 11.1)).warnings[0] ?? '', /1\.1 ms earlier.*seq 5 \(SET\)/);
  // Past the last anchor nothing follows: exact.
  assert.deepEqual((await warningsAt(node, 100)).warnings, []);
});

test('replication: with no anchor before the next change, the baseline marker bounds it', async () => {
  const node = await history([MARKER, replicated(30, 2), replicated(30, 2), anchor(30)]);
  const { seq, warnings } = await warningsAt(node, 20);
  assert.equal(seq, 1);
  assert.match(
    warnings[0] ?? '',
    new RegExp(
      `resolved to ${formatTsUs(ms(0)).replace(/\./g, '\\.')} \\(20\\.0 ms earlier.*seq 2 \\(SET\\) comes from the replication stream.*--to-seq 2 \\(with it and the rest of its tx\\)`,
    ),
  );
});

test('replication events with attribution carry µs times: exact', async () => {
  const node = await history([MARKER, { at: 10 }, anchor(10), { at: 95, tx: 4 }, { at: 95, tx: 4 }, anchor(100)]);
  assert.deepEqual(await warningsAt(node, 50), { seq: 3, tsUs: ms(10), warnings: [] });
});

test('MONITOR: a state group spanning T (issue 13: 15 ms after a burst) warns; before it by less than 1 ms does not', async () => {
  const node = await history([
    MARKER,
    { at: 1 },
    { at: 2 }, // 3: the last write before the group
    // A stretch: SPOP at 3 ms, more writes, the next burst's write at 120 ms, then the probe's state; one tx stamped
    // with its last command (agent/monitor/state-capture.ts).
    { at: 120, tx: 4, command: 'SPOP' },
    { at: 120, tx: 4 },
    { at: 120, tx: 4 },
    { at: 120, tx: 4, kind: EventKind.State, client: 'agent', command: 'STATE' },
    { at: 130 },
  ]);
  const { seq, warnings } = await warningsAt(node, 17);
  assert.equal(seq, 3);
  assert.deepEqual(warnings, [
    `restore to ${formatTsUs(ms(17))} resolved to ${formatTsUs(ms(2))} (15.0 ms earlier; cutoff epoch ${EPOCH} seq 3): ` +
      `the next change, seq 4 (SPOP) opens a group (tx 4) of writes whose effects the agent read only at its end ` +
      `(SPOP, XADD *, served pops …), all stamped ${formatTsUs(ms(120))}: they ran after ${formatTsUs(ms(2))} at ` +
      `instants not kept, so how many of them the state at the asked instant holds is unknown; choose with ` +
      `--before-seq 4 (without it) or --to-seq 4 (with it and the rest of its tx); capture from the replication ` +
      `stream has no such groups`,
  ]);
  assert.deepEqual((await warningsAt(node, 2.9)).warnings, []);
  assert.deepEqual((await warningsAt(node, 125)).warnings, [], 'after the group: exact');
});
