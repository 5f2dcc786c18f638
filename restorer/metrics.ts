import { Histogram, Registry } from 'prom-client';
import { snapshotCounter, snapshotGauge, type Sample } from '../core/metrics/snapshot.js';

/** What a restorer counts (restorer/service.ts keeps the numbers, this file exports them). */
export interface RestorerCounts {
  jobsStarted: number;
  jobsDone: number;
  jobsFailed: number;
  jobsRequeued: number;
  instancesStopped: number;
  running?: string;
}

/** A restorer's Prometheus registry and the histogram its jobs are timed into. */
export interface RestorerMetrics {
  registry: Registry;
  /** Duration of each successful restore, seconds. */
  jobSeconds: Histogram;
}

/**
 * The restorer's metrics: jobs by outcome (counters), whether a job runs, and restore durations (a histogram: the
 * alert and the dashboard take quantiles of it across restorers). No restorer-id label: the id changes at each start,
 * and Prometheus's own `instance` label names the process.
 */
export function restorerMetrics(counts: () => RestorerCounts): RestorerMetrics {
  const registry = new Registry();
  const jobSeconds = new Histogram({
    name: 'flashback_restorer_job_duration_seconds',
    help: 'Duration of successful restores (baseline load plus replay)',
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [registry],
  });
  const value = (f: (c: RestorerCounts) => number) => (): Sample<never>[] => [[{}, f(counts())]];
  const counter = (name: string, help: string, f: (c: RestorerCounts) => number) =>
    snapshotCounter(registry, { name, help, labelNames: [], read: value(f) });
  counter('flashback_restorer_jobs_started_total', 'Restore jobs this restorer started', (c) => c.jobsStarted);
  counter('flashback_restorer_jobs_done_total', 'Restore jobs finished with a report', (c) => c.jobsDone);
  counter('flashback_restorer_jobs_failed_total', 'Restore jobs marked failed', (c) => c.jobsFailed);
  counter('flashback_restorer_jobs_requeued_total', 'Restore jobs handed back to the queue', (c) => c.jobsRequeued);
  counter(
    'flashback_restorer_instances_stopped_total',
    'Spawned instances stopped on request',
    (c) => c.instancesStopped,
  );
  snapshotGauge(registry, {
    name: 'flashback_restorer_busy',
    help: '1 while a job runs',
    labelNames: [],
    read: value((c) => (c.running ? 1 : 0)),
  });
  return { registry, jobSeconds };
}
