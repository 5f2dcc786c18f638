import type { MetricObjectWithValues, MetricValueWithName, Registry } from 'prom-client';

/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * Renders several registries as one Prometheus text page. Unlike `Registry.merge`, families of the same name are
 * joined (one HELP/TYPE, every series) instead of refused: under `flashback up` one process runs several agents, each
 * with its own registry and the same metric names told apart by their `node` label. Two series with the same name and
 * labels keep the first one (an exposition with duplicate series fails `promtool check metrics`).
 */
export async function renderRegistries(registries: Registry[]): Promise<string> {
  const families = new Map<string, { help: string; type: string; lines: string[]; seen: Set<string> }>();
  for (const registry of registries) {
    for (const family of (await registry.getMetricsAsJSON()) as MetricObjectWithValues<MetricValueWithName<string>>[]) {
      let f = families.get(family.name);
      if (!f) {
        f = { help: family.help, type: String(family.type), lines: [], seen: new Set() };
        families.set(family.name, f);
      }
      for (const v of family.values) {
        const series = `${v.metricName ?? family.name}${renderLabels(v.labels)}`;
        if (f.seen.has(series)) continue;
        f.seen.add(series);
        f.lines.push(`${series} ${renderValue(v.value)}`);
      }
    }
  }
  const out: string[] = [];
  for (const [name, f] of families) {
    out.push(`# HELP ${name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${f.type}`);
    out.push(...f.lines);
  }
  return out.join('\n') + '\n';
}

function renderLabels(labels: Partial<Record<string, string | number>>): string {
  const entries = Object.entries(labels).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return '';
  const escaped = entries.map(
    ([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`,
  );
  return `{${escaped.join(',')}}`;
}

function renderValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
