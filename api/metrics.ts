import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { renderPrometheus, type Metric } from '../core/health-server.js';
import { nodesSql } from '../core/store/windows.js';
import type { ApiDeps } from './deps.js';
import { errorResponses } from './schemas.js';

/** Requests served, by method, route and status: counted by {@link countRequests}. */
export class RequestCounter {
  private readonly counts = new Map<string, { method: string; route: string; status: string; n: number }>();
  add(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`;
    const e = this.counts.get(key);
    if (e) e.n++;
    else this.counts.set(key, { method, route, status: String(status), n: 1 });
  }
  metrics(): Metric[] {
    return [...this.counts.values()].map((e) => ({
      name: 'flashback_api_requests_total',
      help: 'HTTP requests served',
      type: 'counter' as const,
      value: e.n,
      labels: { method: e.method, route: e.route, status: e.status },
    }));
  }
}

/** Middleware counting every answer by its route pattern (never the raw path: ids would grow the label set). */
export function countRequests(counter: RequestCounter): MiddlewareHandler {
  return async (c, next) => {
    await next();
    counter.add(c.req.method, c.req.routePath || 'unmatched', c.res.status);
  };
}

/**
 * What `GET /metrics` shows: events stored per node (ClickHouse), restore jobs
 * by state and restore durations (job statuses in NATS KV), requests served,
 * and whatever `deps.metrics` adds. A source that fails is left out (and
 * `flashback_api_scrape_errors` says so) rather than failing the scrape.
 */
export async function collectMetrics(deps: ApiDeps, counter: RequestCounter): Promise<Metric[]> {
  const out: Metric[] = [];
  let errors = 0;
  try {
    const nodes = await deps.store.query<{ node: string; events: number | string; last_ts: number | string }>(
      nodesSql(),
    );
    for (const n of nodes) {
      out.push({
        name: 'flashback_events_stored',
        help: 'Events stored in ClickHouse per node (unmerged duplicates included)',
        type: 'gauge',
        value: Number(n.events),
        labels: { node: n.node },
      });
      out.push({
        name: 'flashback_last_event_timestamp_seconds',
        help: 'Server time of the newest stored event per node',
        type: 'gauge',
        value: Number(n.last_ts) / 1e6,
        labels: { node: n.node },
      });
    }
  } catch {
    errors++;
  }
  try {
    const jobs = await deps.jobs.list({});
    const byState: Record<string, number> = { queued: 0, running: 0, done: 0, failed: 0 };
    let seconds = 0;
    let done = 0;
    let max = 0;
    for (const j of jobs) {
      byState[j.state] = (byState[j.state] ?? 0) + 1;
      if (j.report) {
        seconds += j.report.seconds;
        done++;
        max = Math.max(max, j.report.seconds);
      }
    }
    for (const [state, n] of Object.entries(byState))
      out.push({
        name: 'flashback_restore_jobs',
        help: 'Restore jobs kept in NATS KV, by state',
        type: 'gauge',
        value: n,
        labels: { state },
      });
    out.push({
      name: 'flashback_restore_duration_seconds_sum',
      help: 'Total seconds of the finished restores kept in KV',
      type: 'gauge',
      value: seconds,
    });
    out.push({
      name: 'flashback_restore_duration_seconds_count',
      help: 'Finished restores kept in KV',
      type: 'gauge',
      value: done,
    });
    out.push({
      name: 'flashback_restore_duration_seconds_max',
      help: 'Longest finished restore kept in KV',
      type: 'gauge',
      value: max,
    });
  } catch {
    errors++;
  }
  out.push(...counter.metrics());
  if (deps.metrics) out.push(...(await deps.metrics()));
  out.push({
    name: 'flashback_api_scrape_errors',
    help: 'Metric sources that failed in this scrape',
    type: 'gauge',
    value: errors,
  });
  return out;
}

const route = createRoute({
  method: 'get',
  path: '/metrics',
  summary: 'Prometheus text: events per node, restore jobs by state, durations, requests',
  security: [{ Bearer: [] }],
  responses: {
    200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: z.string() } } },
    ...errorResponses(),
  },
});

/** `GET /metrics`. */
export function registerMetricsRoute(app: OpenAPIHono, deps: ApiDeps, counter: RequestCounter): void {
  app.openapi(route, async (c) =>
    c.text(renderPrometheus(await collectMetrics(deps, counter)), 200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
    }),
  );
}
