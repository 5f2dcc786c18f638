import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PROMETHEUS_CONTENT_TYPE, renderRegistries } from '../core/metrics/exposition.js';
import { processRegistry } from '../core/metrics/process-metrics.js';
import { nodesSql, restoreWindows } from '../core/store/windows.js';
import type { ApiDeps } from './deps.js';
import { errorResponses } from './schemas.js';

/** The API's own metrics: requests by route and status, their durations, and what it reads at scrape time. */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'flashback_api_requests_total',
    help: 'HTTP requests served, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'flashback_api_request_duration_seconds',
    help: 'Time to answer an HTTP request, by method and route pattern',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  /** Reads ClickHouse and NATS KV into the store gauges; called by each scrape before rendering. */
  readonly refresh: () => Promise<void>;

  constructor(deps: ApiDeps) {
    this.refresh = storeGauges(this.registry, deps);
  }
}

/** Middleware counting and timing every answer by its route pattern (never the raw path: ids would grow the labels). */
export function countRequests(m: ApiMetrics): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    await next();
    const route = c.req.routePath || 'unmatched';
    m.requests.inc({ method: c.req.method, route, status: String(c.res.status) });
    m.requestSeconds.observe({ method: c.req.method, route }, (performance.now() - started) / 1000);
  };
}

/**
 * Gauges read at scrape time from ClickHouse (events stored, newest event and end of the last restorable window per
 * node) and from NATS KV (restore jobs by state). A source that fails is left out, and `flashback_api_scrape_errors`
 * says so, rather than failing the scrape.
 */
function storeGauges(registry: Registry, deps: ApiDeps): () => Promise<void> {
  const eventsStored = new Gauge({
    name: 'flashback_events_stored',
    help: 'Events stored in ClickHouse per node (unmerged duplicates included)',
    labelNames: ['node'],
    registers: [registry],
  });
  const lastEvent = new Gauge({
    name: 'flashback_last_event_timestamp_seconds',
    help: 'Server time of the newest stored event per node, Unix seconds',
    labelNames: ['node'],
    registers: [registry],
  });
  const windowEnd = new Gauge({
    name: 'flashback_window_end_timestamp_seconds',
    help: 'End of the latest restorable window per node (the newest instant a restore can reach), Unix seconds',
    labelNames: ['node'],
    registers: [registry],
  });
  const restorable = new Gauge({
    name: 'flashback_restorable_windows',
    help: 'Restorable windows per node in ClickHouse (0: nothing of the node can be restored)',
    labelNames: ['node'],
    registers: [registry],
  });
  const jobs = new Gauge({
    name: 'flashback_restore_jobs',
    help: 'Restore jobs kept in NATS KV, by state',
    labelNames: ['state'],
    registers: [registry],
  });
  const scrapeErrors = new Gauge({
    name: 'flashback_api_scrape_errors',
    help: 'Metric sources (ClickHouse, NATS KV) that failed in this scrape',
    registers: [registry],
  });
  // Read before rendering, not in prom-client's collect(): a registry runs all collects at once, and these five
  // gauges come from the same two reads.
  return async () => {
    let errors = 0;
    for (const g of [eventsStored, lastEvent, windowEnd, restorable, jobs]) g.reset();
    try {
      const nodes = await deps.store.query<{ node: string; events: number | string; last_ts: number | string }>(
        nodesSql(),
      );
      for (const n of nodes) {
        eventsStored.set({ node: n.node }, Number(n.events));
        lastEvent.set({ node: n.node }, Number(n.last_ts) / 1e6);
        const windows = await restoreWindows(deps.store, n.node);
        restorable.set({ node: n.node }, windows.length);
        const end = Math.max(0, ...windows.map((w) => w.toTsUs));
        if (windows.length > 0) windowEnd.set({ node: n.node }, end / 1e6);
      }
    } catch {
      errors++;
    }
    try {
      const byState: Record<string, number> = { queued: 0, running: 0, done: 0, failed: 0 };
      for (const j of await deps.jobs.list({})) byState[j.state] = (byState[j.state] ?? 0) + 1;
      for (const [state, n] of Object.entries(byState)) jobs.set({ state }, n);
    } catch {
      errors++;
    }
    scrapeErrors.set(errors);
  };
}

const route = createRoute({
  method: 'get',
  path: '/metrics',
  summary:
    'Prometheus text: requests, events and restorable windows per node, restore jobs by state, process metrics; under `flashback up` also every service of the process',
  security: [{ Bearer: [] }],
  responses: {
    200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: z.string() } } },
    ...errorResponses(),
  },
});

/** `GET /metrics`: the process's metrics, the API's, and those `deps.metrics` adds. */
export function registerMetricsRoute(app: OpenAPIHono, deps: ApiDeps, m: ApiMetrics): void {
  app.openapi(route, async (c) => {
    await m.refresh();
    const more = deps.metrics ? await deps.metrics() : [];
    const text = await renderRegistries([processRegistry(), m.registry, ...more]);
    return c.text(text, 200, { 'content-type': PROMETHEUS_CONTENT_TYPE });
  });
}
