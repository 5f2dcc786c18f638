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

/** `GET /health`: 200 when ClickHouse answers and NATS is connected, else 503. */
export function registerHealthRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(route, async (c) => {
    const clickhouse = await deps.store.ping().catch(() => false);
    const nats = deps.jobs.connected();
    const body = { ok: clickhouse && nats, clickhouse, nats };
    return body.ok ? c.json(body, 200) : c.json(body, 503);
  });
}
