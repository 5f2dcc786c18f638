// `npm run soak`: the differential check of test/differential.test.ts at soak size, seed after seed.
//
//   node --import tsx test/differential-soak.ts [--long] [--rounds N] [--seed N] [--deterministic] [--exclude A,B]
//     [--source replication|monitor] [--attribution [--audit-noops]] [--bin PATH]
//
// --long: about 3 minutes per round, 8 clients, 4 dbs, 30 moments; without it, the test's size. --rounds: how many
// seeds
// (default 1; 0 = until one fails). --seed (or FLASHBACK_SEED): the first seed, the next rounds count up from it.
// --deterministic: leave out SPOP, XADD *, consumer-group reads and claims, and blocking commands. --exclude: leave out
// these operations by their stats names (e.g. PFCOUNT,blocking), to narrow a failure down. --source: the capture mode
// (default: the helper's, MONITOR); --attribution: replication mode with MONITOR beside the stream (flashback up's
// default); --bin: the source's redis-server or valkey-server (e.g. /opt/redis-8.0.2/bin/redis-server).
// Exit code 1 when any restore differed from the source; every failure line names its seed.
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { runDifferential, type DifferentialOptions } from './helpers/differential.js';
import { startStack } from './helpers/stack.js';

const { values } = parseArgs({
  options: {
    long: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '1' },
    seed: { type: 'string' },
    deterministic: { type: 'boolean', default: false },
    exclude: { type: 'string', default: '' },
    source: { type: 'string' },
    attribution: { type: 'boolean', default: false },
    'audit-noops': { type: 'boolean', default: false },
    bin: { type: 'string' },
  },
});
const source = values.attribution ? 'replication' : values.source;
if (source !== undefined && source !== 'replication' && source !== 'monitor') {
  console.error(`--source ${source}: use replication or monitor`);
  process.exit(2);
}
const firstSeed = Number(values.seed ?? process.env.FLASHBACK_SEED ?? randomInt(2 ** 31));
const rounds = Number(values.rounds);
if (!Number.isSafeInteger(firstSeed) || !Number.isSafeInteger(rounds) || rounds < 0) {
  console.error('usage: differential-soak.ts [--long] [--rounds N] [--seed N] [--deterministic] [--exclude A,B]');
  process.exit(2);
}
const size: Omit<DifferentialOptions, 'seed'> = values.long
  ? { clients: 8, points: 30, opsPerPoint: [1_500, 8_000], prefillOps: 3_000, dbs: 4, keysPerFamily: 12 }
  : { clients: 4, points: 8, opsPerPoint: [150, 600] };
const log = (line: string) => console.error(`${new Date().toISOString()} ${line}`);

const stack = await startStack();
// Ctrl-C (or a kill) mid-round still stops every server this run started: the stack's and the round's source.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the servers this run started`);
    spawnSync('pkill', ['-TERM', '-P', String(process.pid)]);
    process.exit(130);
  });
}
let failed = 0;
try {
  for (let round = 0; rounds === 0 || round < rounds; round++) {
    const seed = firstSeed + round;
    const started = Date.now();
    log(
      `round ${round + 1}: seed ${seed} (FLASHBACK_SEED=${seed})${values.deterministic ? ', deterministic families only' : ''}, ${source ?? 'monitor'} capture${values.attribution ? ` with attribution${values['audit-noops'] ? ' and audit rows' : ''}` : ''}${values.bin ? `, ${values.bin}` : ''}`,
    );
    const exclude = values.exclude.split(',').filter(Boolean);
    const r = await runDifferential(stack, {
      ...size,
      seed,
      nondeterministic: !values.deterministic,
      exclude,
      log,
      source,
      attribution: values.attribution ? 'monitor' : undefined,
      auditNoops: values['audit-noops'],
      bin: values.bin,
    });
    log(
      `round ${round + 1}: seed ${seed}: ${r.workload.ops} operations, ${r.restores} restores, ${r.failures.length} differed, ${Math.round((Date.now() - started) / 1000)} s`,
    );
    log(`error replies ${JSON.stringify(r.workload.errors)}`);
    for (const f of r.failures) console.log(f);
    if (r.failures.length > 0) {
      failed++;
      if (rounds === 0) break;
    }
  }
} finally {
  await stack.close();
}
process.exitCode = failed > 0 ? 1 : 0;
