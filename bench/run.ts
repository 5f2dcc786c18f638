/**
 * `npm run bench [-- --quick] [-- NAME …]`: runs every benchmark (or the named ones: monitor-parse,
 * capture-overhead, sink-throughput, restore-rate, state-capture, refusal-guard, replication-pipeline, verify-cost) one after another and prints markdown: the machine,
 * then one table per benchmark. `--quick` uses small sizes (under 2 minutes); the default size takes
 * several minutes on a 2-core machine. A failing benchmark is reported and the others still run. Every row names
 * the server it ran on; `--redis-bin=PATH` runs the benches that start a source on that server (e.g.
 * /opt/redis-8.0.2/bin/redis-server; restores then load with the matching server).
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { benchSize, markdownSection, round, type BenchResult, type BenchSize } from './report.js';

const size = benchSize();
// `--redis-bin=PATH`: the source (and so the restore server, matched to it) of the benches that start one.
const redisBinArg = process.argv.find((a) => a.startsWith('--redis-bin='));
if (redisBinArg) process.env.FLASHBACK_BENCH_REDIS_BIN = redisBinArg.slice('--redis-bin='.length);
const redisBin = process.env.FLASHBACK_BENCH_REDIS_BIN ?? 'redis-server';
/** Every row names the server line it ran on (`redis 7.0.15`, `valkey 8.0.1`). */
const serverColumn = (() => {
  const m = /^(\w+) server v=(\S+)/i.exec(versionOf(redisBin, ['--version']));
  return m ? `${m[1]!.toLowerCase()} ${m[2]}` : redisBin;
})();
// monitor-parse reads its size when it is imported.
if (size === 'quick') process.env.BENCH_MONITOR_LINES ??= '200000';

const BENCHES: Record<string, (size: BenchSize) => Promise<BenchResult>> = {
  'monitor-parse': async () => (await import('./monitor-parse.js')).benchMonitorParse(),
  'capture-overhead': async (s) => (await import('./capture-overhead.js')).benchCaptureOverhead(s),
  'sink-throughput': async (s) => (await import('./sink-throughput.js')).benchSinkThroughput(s),
  'restore-rate': async (s) => (await import('./restore-rate.js')).benchRestoreRate(s),
  'state-capture': async (s) => (await import('./state-capture.js')).benchStateCapture(s),
  'refusal-guard': async (s) => (await import('./refusal-guard.js')).benchRefusalGuard(s),
  'replication-pipeline': async (s) => (await import('./replication-pipeline.js')).benchReplicationPipeline(s),
  'verify-cost': async (s) => (await import('./verify-cost.js')).benchVerifyCost(s),
  scale: async (s) => (await import('./scale.js')).benchScale(s),
};

/**
 * First line a `--version` prints; clickhouse-client 18.16 prints it and then exits non-zero, so the exit code is
 * ignored.
 */
function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.error) return `${cmd}: not found`;
  return (r.stdout || r.stderr)
    .trim()
    .split('\n')[0]!
    .replace(/Unknown option.*$/, '')
    .slice(0, 120);
}

function machine(): string {
  const cpus = os.cpus();
  const [redis, nats, clickhouse, benchmark, git] = [
    versionOf(redisBin, ['--version']),
    versionOf('nats-server', ['--version']),
    versionOf('clickhouse-client', ['--version']),
    versionOf('redis-benchmark', ['--version']),
    versionOf('git', ['rev-parse', '--short', 'HEAD']),
  ];
  return [
    `- when: ${new Date().toISOString()}, size: ${size}, commit: ${git}`,
    `- machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${round(os.totalmem() / 2 ** 30, 1)} GiB RAM, ${os.type()} ${os.release()}, load average at start ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    `- node ${process.version}; ${redis}; ${benchmark}; ${nats}; ${clickhouse}`,
  ].join('\n');
}

const names = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const unknown = names.filter((n) => !(n in BENCHES));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}`);
  process.exit(2);
}
const selected = names.length > 0 ? names : Object.keys(BENCHES);

const started = process.hrtime.bigint();
console.log(`## redis-flashback benchmarks\n\n${machine()}\n`);
let failed = 0;
for (const name of selected) {
  const t0 = process.hrtime.bigint();
  try {
    const result = await BENCHES[name]!(size);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const rows = result.rows.map((r) => ('server' in r ? r : { server: serverColumn, ...r }));
    console.log(markdownSection({ ...result, rows, notes: [...(result.notes ?? []), `(${name}: ${s.toFixed(0)} s)`] }));
  } catch (err) {
    failed++;
    console.log(
      `### ${name}: FAILED\n\n\`\`\`\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n\`\`\`\n`,
    );
  }
}
console.log(
  `Total: ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(0)} s${failed ? `, ${failed} benchmark(s) failed` : ''}; load average at the end ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}.`,
);
process.exitCode = failed ? 1 : 0;
