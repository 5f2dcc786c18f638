import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { ApiDeps } from '../deps.js';
import { errorResponses, SqlBody, SqlResultSchema } from '../schemas.js';

const route = createRoute({
  method: 'post',
  path: '/sql',
  summary: 'Run one read-only query (readonly=1, row and time limits)',
  security: [{ Bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: SqlBody } } } },
  responses: {
    200: { description: 'result', content: { 'application/json': { schema: SqlResultSchema } } },
    ...errorResponses(400, 503),
  },
});

/** `POST /sql` `{ sql, maxRows? }`: maxRows is capped by the API's own limit. */
export function registerSqlRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const { sqlMaxRows = 10_000, sqlMaxSeconds = 30 } = deps;
  app.openapi(route, async (c) => {
    const { sql, maxRows } = c.req.valid('json');
    const result = await deps.store.readOnlySql(sql, {
      maxRows: Math.min(maxRows ?? sqlMaxRows, sqlMaxRows),
      maxSeconds: sqlMaxSeconds,
    });
    return c.json(result, 200);
  });
}
