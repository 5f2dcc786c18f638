/**
 * MONITOR parser throughput: ~1 M realistic MONITOR lines (SET/HSET/LPUSH/INCR
 * with short keys, ~5 % with escaped binary values) held in memory and fed in
 * 64 KiB chunks, as a socket delivers them. Baseline in the same run: finding
 * the line ends of the same chunks with indexOf only, the least any parser
 * must do. Run: `node --import tsx bench/monitor-parse.ts`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readableBytes } from '../core/redis/escape.js';
import { MonitorParser } from '../core/redis/monitor-parser.js';
import { seededRandom } from '../test/helpers/seeded-random.js';

/** Number of MONITOR lines generated. @default 1_000_000 */
const LINES = Number(process.env.BENCH_MONITOR_LINES ?? 1_000_000);
const CHUNK_BYTES = 64 * 1024;
const ROUNDS = 5;

const rng = seededRandom;

function buildStream(lines: number): Buffer {
  const random = rng(42);
  const clients = Array.from({ length: 8 }, (_, i) => `127.0.0.1:${50_000 + i * 37}`);
  const parts: string[] = [];
  let ts = 1_795_611_592_000_000;
  let client = clients[0];
  for (let i = 0; i < lines; i++) {
    ts += 1 + Math.floor(random() * 3);
    // Clients interleave in runs, as pipelining ones do.
    if (random() < 0.1) client = clients[Math.floor(random() * clients.length)];
    const n = Math.floor(random() * 100_000);
    let argv: string[];
    const pick = random();
    if (pick < 0.05) {
      const bin = Buffer.alloc(8 + Math.floor(random() * 24));
      for (let j = 0; j < bin.length; j++) bin[j] = Math.floor(random() * 256);
      argv = ['SET', `bin:${n}`, readableBytes(bin)];
    } else if (pick < 0.4) argv = ['SET', `key:${n}`, `value-${n}-${'x'.repeat(n % 16)}`];
    else if (pick < 0.65) argv = ['HSET', `user:${n % 10_000}`, 'name', `name-${n}`, 'score', String(n)];
    else if (pick < 0.85) argv = ['LPUSH', `queue:${n % 100}`, `job-${n}`];
    else argv = ['INCR', `counter:${n % 1000}`];
    const sec = Math.floor(ts / 1e6);
    const usec = String(ts % 1e6).padStart(6, '0');
    parts.push(`+${sec}.${usec} [${n % 4} ${client}] "${argv.join('" "')}"\r\n`);
  }
  return Buffer.from(parts.join(''), 'latin1');
}

function chunks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += CHUNK_BYTES) out.push(buf.subarray(i, i + CHUNK_BYTES));
  return out;
}

function baseline(input: Buffer[]): number {
  let lines = 0;
  for (const c of input) {
    for (let nl = c.indexOf(0x0a); nl >= 0; nl = c.indexOf(0x0a, nl + 1)) lines++;
  }
  return lines;
}

function parse(input: Buffer[]): number {
  let lines = 0;
  let bytes = 0;
  const parser = new MonitorParser((l) => {
    lines++;
    // Touch the result so the work cannot be optimised away.
    bytes += l.argv.length + l.db + l.client.length;
  });
  for (const c of input) parser.push(c);
  if (bytes === 0) throw new Error('parser produced nothing');
  return lines;
}

/** Best of ROUNDS runs, in ms, after one warm-up run. */
function timeBest(fn: () => number, expectLines: number): number {
  let best = Infinity;
  for (let r = 0; r <= ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    const n = fn();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (n !== expectLines) throw new Error(`counted ${n} lines, expected ${expectLines}`);
    if (r > 0) best = Math.min(best, ms);
  }
  return best;
}

/** Runs the benchmark; rows are one per method, with lines/s, MB/s and the slowdown against the indexOf baseline. */
export async function benchMonitorParse(): Promise<{ name: string; rows: Record<string, string | number>[] }> {
  const stream = buildStream(LINES);
  const input = chunks(stream);
  const mb = stream.length / 1e6;
  const baseMs = timeBest(() => baseline(input), LINES);
  const parseMs = timeBest(() => parse(input), LINES);
  const row = (method: string, ms: number) => ({
    method,
    lines: LINES,
    MB: Number(mb.toFixed(1)),
    'best ms': Number(ms.toFixed(1)),
    'lines/s': Math.round(LINES / (ms / 1000)),
    'MB/s': Number((mb / (ms / 1000)).toFixed(1)),
    'x baseline time': Number((ms / baseMs).toFixed(2)),
  });
  return {
    name: 'MONITOR parse (64 KiB chunks, one core)',
    rows: [row('indexOf line split (baseline)', baseMs), row('MonitorParser (full decode)', parseMs)],
  };
}

function markdown(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0]);
  const fmt = (v: string | number) => (typeof v === 'number' ? v.toLocaleString('en-US') : v);
  return [
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => fmt(r[c])).join(' | ')} |`),
  ].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { name, rows } = await benchMonitorParse();
  console.log(`### ${name}\n\n${markdown(rows)}`);
}
