import { Counter, Gauge, type Registry } from 'prom-client';

/** One series of a metric read at scrape time: its labels and value. */
export type Sample<L extends string> = [labels: Partial<Record<L, string>>, value: number];

/**
 * A gauge whose series are read at scrape time from `read` (the service's own state), so nothing has to be kept in
 * step with prom-client on the hot path.
 */
export function snapshotGauge<L extends string>(
  registry: Registry,
  o: { name: string; help: string; labelNames: readonly L[]; read: () => Sample<L>[] },
): Gauge<L> {
  return new Gauge<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of o.read()) this.set(labels, Number.isFinite(value) ? value : 0);
    },
  });
}

/**
 * A counter whose totals are read at scrape time from `read`: the service keeps plain cumulative numbers (also shown by
 * its JSON health), exported as a counter so Prometheus takes rates of it.
 */
export function snapshotCounter<L extends string>(
  registry: Registry,
  o: { name: string; help: string; labelNames: readonly L[]; read: () => Sample<L>[] },
): Counter<L> {
  return new Counter<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of o.read()) this.inc(labels, Number.isFinite(value) ? Math.max(0, value) : 0);
    },
  });
}
