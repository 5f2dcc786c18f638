import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Results a stretch check ends with, and `error`: the check could not run this time (retried later). */
export const CHECK_RESULTS = ['match', 'mismatch', 'unverifiable', 'error'] as const;
export type CheckResult = (typeof CHECK_RESULTS)[number];

/** The metrics of the background restore check (restorer/verifier.ts). */
export interface VerificationMetrics {
  /** Checks by node and result; a `mismatch` is the alert. */
  checks: Counter<'node' | 'result'>;
  /** Duration of each check that ran to a result, seconds. */
  seconds: Histogram;
  /** Source time of the end of the newest stretch that matched, per node (Unix seconds). */
  verifiedTo: Gauge<'node'>;
  /** Stretches waiting for a check, per node, as of the last round. */
  pending: Gauge<'node'>;
  /** Starts every result series of `node` at 0, so a rate or increase sees the first mismatch. */
  seeNode(node: string): void;
}

/**
 * Registers the check's metrics in `registry` (the restorer's). Counters are incremented where the check ends (a
 * check is rare and slow: no snapshot needed); `node` is the only label besides the bounded `result`.
 */
export function verificationMetrics(registry: Registry): VerificationMetrics {
  const checks = new Counter<'node' | 'result'>({
    name: 'flashback_verify_checks_total',
    help: 'Background checks of a stretch between two baselines: the replay reached the digest the source recorded (match), did not (mismatch: alert), cannot be checked (unverifiable), or the check failed and is retried (error)',
    labelNames: ['node', 'result'],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: 'flashback_verify_check_duration_seconds',
    help: 'Duration of a background check (restore of the earlier baseline plus the stretch, digest, key comparison on a mismatch)',
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [registry],
  });
  const verifiedTo = new Gauge<'node'>({
    name: 'flashback_verify_verified_to_timestamp_seconds',
    help: 'Source time of the end of the newest stretch whose check matched',
    labelNames: ['node'],
    registers: [registry],
  });
  const pending = new Gauge<'node'>({
    name: 'flashback_verify_pending_stretches',
    help: 'Stretches between two baselines (the later one with a digest) not checked yet',
    labelNames: ['node'],
    registers: [registry],
  });
  const seen = new Set<string>();
  return {
    checks,
    seconds,
    verifiedTo,
    pending,
    seeNode(node) {
      if (seen.has(node)) return;
      seen.add(node);
      for (const result of CHECK_RESULTS) checks.inc({ node, result }, 0);
    },
  };
}
