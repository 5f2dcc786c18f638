import { REPLAY_CONFIG, type SourceInfo } from '../core/bus/baseline.js';
import { readableBytes } from '../core/redis/escape.js';

/** The redis-server args a restore server starts with to share the source's settings, and what it says about them. */
export interface ReplayConfig {
  /** `--name value` pairs, names from {@link REPLAY_CONFIG} only. */
  args: string[];
  /** For the restore report: settings the restore server could not take over, and what that risks. */
  warnings: string[];
}

/** What the restore server runs with when it does not get the source's value (Redis 7.0 defaults). */
const DEFAULTS: Record<(typeof REPLAY_CONFIG)[number], string> = {
  'proto-max-bulk-len': '536870912 (512 MB)',
  'stream-node-max-entries': '100',
  'stream-node-max-bytes': '4096',
};

/** What a wrong value of each setting may change in a restore. */
const RISK: Record<(typeof REPLAY_CONFIG)[number], string> = {
  'proto-max-bulk-len':
    'a string write the source refused for its size (APPEND, SETRANGE, SETBIT, BITFIELD) may be replayed as done, or one it did refused',
  'stream-node-max-entries': 'an approximate stream trim (XADD … ~) may keep other entries than the source kept',
  'stream-node-max-bytes': 'an approximate stream trim (XADD … ~) may keep other entries than the source kept',
};

/**
 * A value that can only be a value on a command line: digits, or a word of letters, digits, `.` and `_` (CONFIG GET
 * gives `536870912`, `100`, `4096`). A stored baseline is data, and anything else — a leading `-`, a space — could
 * add flags of its own to the restore server's command line.
 */
const PLAIN_VALUE = /^[A-Za-z0-9_.]{1,64}$/;

/**
 * The source's replay settings (SourceInfo.config, recorded with the baseline) as redis-server args: only names in
 * REPLAY_CONFIG and plain values; every setting left out, and a baseline that recorded none (an older agent), gets a
 * warning saying the restore server runs with its default and what may differ because of it.
 */
export function replayConfig(source: SourceInfo | undefined, baselineSeq: number): ReplayConfig {
  const config: Record<string, unknown> = source?.config ?? {};
  const args: string[] = [];
  const warnings: string[] = [];
  const missing: string[] = [];
  for (const name of REPLAY_CONFIG) {
    const value = Object.hasOwn(config, name) ? config[name] : undefined;
    if (value === undefined) {
      missing.push(name);
    } else if (typeof value === 'string' && PLAIN_VALUE.test(value)) {
      args.push(`--${name}`, value);
    } else {
      warnings.push(
        `the source's ${name} recorded with baseline seq ${baselineSeq} ("${shown(String(value))}") is not a plain number or word, so the restore server did not take it and runs with its default ${DEFAULTS[name]}; ${RISK[name]}`,
      );
    }
  }
  const unknown = Object.keys(config).filter((n) => !(REPLAY_CONFIG as readonly string[]).includes(n));
  if (unknown.length > 0)
    warnings.push(
      `baseline seq ${baselineSeq} records source settings a restore does not take over (${unknown.map((n) => `"${shown(n)}"`).join(', ')}); they were ignored`,
    );
  if (missing.length > 0) {
    const why = source
      ? "the source did not let the agent read them (CONFIG GET refused, or unknown to the source's version)"
      : 'it was taken by an agent that did not record the source server';
    warnings.push(
      `baseline seq ${baselineSeq} has no record of the source's ${missing.join(', ')} (${why}), so the restore server runs with its default ${missing.map((n) => `${n} ${DEFAULTS[n as keyof typeof DEFAULTS]}`).join(', ')}; if the source ran with other values, ${[...new Set(missing.map((n) => RISK[n as keyof typeof RISK]))].join('; ')}`,
    );
  }
  return { args, warnings };
}

function shown(s: string): string {
  const r = readableBytes(Buffer.from(s, 'latin1'));
  return r.length > 40 ? `${r.slice(0, 40)}…` : r;
}
