/**
 * What every benchmark returns and how it is printed: markdown tables, one per
 * benchmark, plus the size flag and the run-alone entry point they share.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** One table row: column name → value (numbers are printed with thousands separators). */
export type BenchRow = Record<string, string | number>;

/** A benchmark's result: a titled table, and notes printed under it. */
export interface BenchResult {
  name: string;
  rows: BenchRow[];
  /** Lines printed under the table (what was run, caveats). */
  notes?: string[];
}

/** Sizes of one run: `quick` finishes in under 2 minutes, `full` in under 10 on the 2-core machine. */
export type BenchSize = 'quick' | 'full';

/** `quick` when `--quick` is among the arguments. */
export function benchSize(argv: readonly string[] = process.argv.slice(2)): BenchSize {
  return argv.includes('--quick') ? 'quick' : 'full';
}

function cell(v: string | number | undefined): string {
  if (v === undefined) return '';
  if (typeof v === 'number') return Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: 2 }) : '–';
  return v.replace(/\|/g, '\\|');
}

/** A markdown table of `rows`; columns are the union of the rows' keys, in first-seen order. */
export function markdownTable(rows: readonly BenchRow[]): string {
  if (rows.length === 0) return '(no rows)';
  const cols: string[] = [];
  for (const r of rows) for (const c of Object.keys(r)) if (!cols.includes(c)) cols.push(c);
  return [
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => cell(r[c])).join(' | ')} |`),
  ].join('\n');
}

/** A result as a markdown section: `### name`, the table, the notes as a list. */
export function markdownSection(result: BenchResult): string {
  const notes = result.notes?.length ? `\n\n${result.notes.map((n) => `- ${n}`).join('\n')}` : '';
  return `### ${result.name}\n\n${markdownTable(result.rows)}${notes}\n`;
}

/** Rounds to `digits` decimals (for ratios and seconds in tables). */
export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `median (min–max)` of a list, each rounded to `digits`; the single value when there is one. */
export function spread(xs: readonly number[], digits = 2): string {
  if (xs.length === 0) return '–';
  const f = (n: number) => round(n, digits).toLocaleString('en-US', { maximumFractionDigits: digits });
  if (xs.length === 1) return f(xs[0]!);
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
}

/** Polls `check` every `everyMs` until it returns true; false once `timeoutMs` has passed. */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Seconds since `startNs` (from process.hrtime.bigint()). */
export function secondsSince(startNs: bigint): number {
  return Number(process.hrtime.bigint() - startNs) / 1e9;
}

/**
 * Runs `bench` and prints its markdown when the file at `moduleUrl` is the program being run
 * (`node --import tsx bench/x.ts [--quick]`); does nothing when it is imported.
 */
export async function runIfMain(moduleUrl: string, bench: (size: BenchSize) => Promise<BenchResult>): Promise<void> {
  if (!process.argv[1] || path.resolve(process.argv[1]) !== fileURLToPath(moduleUrl)) return;
  const result = await bench(benchSize());
  console.log(markdownSection(result));
}
