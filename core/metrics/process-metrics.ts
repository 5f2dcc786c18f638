import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

let shared: Registry | undefined;

/** The version in package.json (read once; 'unknown' when the file cannot be read). */
export function flashbackVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * The process's own metrics, one registry per process whatever the number of services in it: prom-client's default
 * process and Node.js metrics (CPU, memory, event loop lag, GC, handles) and `flashback_build_info`. Every metrics
 * endpoint serves it beside its service's registry.
 */
export function processRegistry(): Registry {
  if (shared) return shared;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges named *_total break the naming rules (`promtool check metrics` refuses them); the same counts stay as
  // nodejs_active_handles / _requests / _resources by type, whose sum is the total.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])
    registry.removeSingleMetric(name);
  const info = new Gauge({
    name: 'flashback_build_info',
    help: 'Always 1; the labels say which flashback and Node.js versions run',
    labelNames: ['version', 'nodejs'],
    registers: [registry],
  });
  info.set({ version: flashbackVersion(), nodejs: process.versions.node }, 1);
  shared = registry;
  return registry;
}
