import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { ApiDeps } from '../deps.js';
import { HealthSchema } from '../schemas.js';

const route = createRoute({
  method: 'get',
  path: '/health',
  summary: 'Liveness: ClickHouse and NATS reachable (no token needed)',
  responses: {
    200: { description: 'healthy', content: { 'application/json': { schema: HealthSchema } } },
    503: { description: 'ClickHouse or NATS unreachable', content: { 'application/json': { schema: HealthSchema } } },
  },
});

/** How long /health waits for ClickHouse's ping before saying it does not answer, ms. */
const PING_TIMEOUT_MS = 1_000;

/**
 * `GET /health`: 200 when ClickHouse answers its ping within a second and NATS is connected, else 503. The ping
 * waits on no query in flight: user SQL runs a few at a time (api/sql-runner.ts), so connections stay free for it.
 */
export function registerHealthRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(route, async (c) => {
    let timer: NodeJS.Timeout | undefined;
    const clickhouse = await Promise.race([
      deps.store.ping().catch(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    const nats = deps.jobs.connected();
    const body = { ok: clickhouse && nats, clickhouse, nats };
    return body.ok ? c.json(body, 200) : c.json(body, 503);
  });
}
