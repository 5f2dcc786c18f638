/**
 * What the refusal guard (restorer/refusal-guard.ts) costs a restore: redis-server loading an incr AOF of N `APPEND`
 * and `SETRANGE` commands as captured, against the same commands as the restore writes them (inside the guard
 * `EVAL`), rounds interleaved in one run; the server's own load time from its log.
 * Run alone: `node --import tsx bench/refusal-guard.ts [--quick]`.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encodeCommand } from '../core/redis/resp.js';
import { createAofDir } from '../restorer/aof-dir.js';
import { IncrWriter } from '../restorer/incr-writer.js';
import { loadAofDir } from '../restorer/materialize.js';
import { guardRefusable } from '../restorer/refusal-guard.js';
import { median, round, runIfMain, spread, type BenchResult, type BenchSize } from './report.js';

const COMMANDS: Record<BenchSize, number> = { quick: 100_000, full: 1_000_000 };
const ROUNDS = 3;

/** Writes an AOF dir of `n` APPEND/SETRANGE commands over 1 000 keys, guarded or as captured. */
async function writeDir(dir: string, n: number, guarded: boolean): Promise<void> {
  const files = await createAofDir(dir, { base: false });
  const incr = new IncrWriter(createWriteStream(files.incrPath));
  for (let i = 0; i < n; i++) {
    const key = `k${i % 1000}`;
    const resp = i % 2 === 0 ? encodeCommand(['APPEND', key, 'xy']) : encodeCommand(['SETRANGE', key, i % 97, 'z']);
    await incr.write({ seq: i + 1, db: 0, tx: 0, resp: guarded ? guardRefusable(resp) : resp });
  }
  await incr.end();
}

/** The server's own load time (its log), seconds. */
async function loadSeconds(dir: string): Promise<number> {
  const server = await loadAofDir(dir);
  try {
    // Every start appends to the same log: the last line is this load's.
    const log = await readFile(server.logFile, 'utf8');
    const all = [...log.matchAll(/DB loaded from append only file: ([\d.]+) seconds/g)];
    return Number(all.at(-1)?.[1] ?? Number.NaN);
  } finally {
    await server.stop();
  }
}

export async function benchRefusalGuard(size: BenchSize = 'full'): Promise<BenchResult> {
  const n = COMMANDS[size];
  const work = await mkdtemp(path.join(os.tmpdir(), 'flashback-bench-guard-'));
  try {
    const plainDir = path.join(work, 'plain');
    const guardedDir = path.join(work, 'guarded');
    await writeDir(plainDir, n, false);
    await writeDir(guardedDir, n, true);
    const plain: number[] = [];
    const guarded: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      plain.push(await loadSeconds(plainDir));
      guarded.push(await loadSeconds(guardedDir));
    }
    const rate = (s: number[]) => Math.round(n / median(s)).toLocaleString('en-US');
    return {
      name: 'Refusal guard: loading APPEND/SETRANGE as captured vs inside the guard EVAL',
      rows: [
        {
          load: `${n.toLocaleString('en-US')} commands as captured`,
          seconds: spread(plain, 3),
          rate: `${rate(plain)} cmd/s`,
        },
        {
          load: `${n.toLocaleString('en-US')} commands inside the guard`,
          seconds: spread(guarded, 3),
          rate: `${rate(guarded)} cmd/s`,
          'ratio to as captured': round(median(plain) / median(guarded)),
        },
      ],
      notes: [
        `${ROUNDS} rounds, interleaved; seconds are redis-server's own "DB loaded from append only file" (median, range).`,
        'Only SETRANGE, APPEND, SETBIT, BITFIELD and XADD/XTRIM with LIMIT or ~ are guarded; other commands load as captured.',
      ],
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await runIfMain(import.meta.url, benchRefusalGuard);
