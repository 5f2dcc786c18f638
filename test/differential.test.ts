// Differential test: a seeded random workload (every type, dbs, MULTI, scripts, functions, TTLs, binary data; then also
// the nondeterministic and blocking families) on a captured source; every recorded moment restores to exactly the
// source's state then. `npm run soak` runs it seed after seed.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, test, type TestContext } from 'node:test';
import { runDifferential } from './helpers/differential.js';
import { startStack, type Stack } from './helpers/stack.js';

/** FLASHBACK_SEED replays a run; without it every run draws a new seed (printed, and in every failure). */
const seed = process.env.FLASHBACK_SEED ? Number(process.env.FLASHBACK_SEED) : randomInt(2 ** 31);
if (!Number.isSafeInteger(seed))
  throw new Error(`FLASHBACK_SEED must be an integer, got "${process.env.FLASHBACK_SEED}"`);

let stack: Stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

/** One differential run; every restore must equal the source at its moment, else the first diverging keys are named. */
async function check(
  t: TestContext,
  options: {
    points: number;
    clients: number;
    nondeterministic: boolean;
    source?: 'monitor' | 'replication';
    attribution?: 'monitor' | 'off';
  },
): Promise<void> {
  const { points } = options;
  t.diagnostic(`seed ${seed}: replay with FLASHBACK_SEED=${seed}`);
  const r = await runDifferential(stack, {
    seed,
    opsPerPoint: [150, 600],
    ...options,
    log: (line) => t.diagnostic(line),
  });
  t.diagnostic(
    `seed ${seed}: ${r.workload.ops} operations; ${JSON.stringify(r.workload.byOp)}; error replies ${JSON.stringify(r.workload.errors)}`,
  );
  assert.equal(r.points.length, points);
  assert.equal(r.restores, 2 * points);
  assert.ok(
    r.points.every((p) => p.keys > 0),
    'every recorded moment holds keys',
  );
  const shown =
    r.failures.slice(0, 4).join('\n') + (r.failures.length > 4 ? `\n… and ${r.failures.length - 4} more` : '');
  assert.equal(
    r.failures.length,
    0,
    `seed ${seed} (FLASHBACK_SEED=${seed}): ${r.failures.length} of ${r.restores} restores differ from the source:\n${shown}`,
  );
}

test(`deterministic families: every recorded moment restores exactly, by seq and by time (seed ${seed})`, async (t) => {
  await check(t, { points: 6, clients: 4, nondeterministic: false });
});

test(`every family, nondeterministic and blocking ones too (SPOP, XADD *, group reads and claims, pops served later): every recorded moment restores exactly (seed ${seed})`, async (t) => {
  await check(t, { points: 6, clients: 4, nondeterministic: true });
});

test(`replication mode, every family: every recorded moment restores exactly, by seq and by time (seed ${seed})`, async (t) => {
  await check(t, { points: 6, clients: 4, nondeterministic: true, source: 'replication' });
});

test(`replication mode with attribution (MONITOR beside the stream), every family: every recorded moment restores exactly (seed ${seed})`, async (t) => {
  await check(t, { points: 6, clients: 4, nondeterministic: true, source: 'replication', attribution: 'monitor' });
});
