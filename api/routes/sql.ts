import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { ConfigError } from '../../core/errors.js';
import type { ApiDeps } from '../deps.js';
import { errorResponses, SqlBody, SqlResultSchema } from '../schemas.js';
import { createSqlRunner, type SqlRunner } from '../sql-runner.js';

const route = createRoute({
  method: 'post',
  path: '/sql',
  summary:
    'Run one read-only query (readonly=1; row, byte, time and memory limits; a few at a time: more wait, then 429)',
  security: [{ Bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: SqlBody } } } },
  responses: {
    200: { description: 'result', content: { 'application/json': { schema: SqlResultSchema } } },
    ...errorResponses(400, 413, 429, 503),
  },
});

/** `POST /sql` `{ sql, maxRows? }`: maxRows is capped by the API's own limit. */
export function registerSqlRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const { sqlMaxRows = 10_000, sqlMaxSeconds = 30 } = deps;
  let runner: SqlRunner | undefined;
  const sqlRunner = () => {
    if (runner) return runner;
    const sql = deps.sqlClient ?? (deps.store.client ? { client: deps.store.client, serverLimits: false } : undefined);
    if (!sql) throw new ConfigError('the API has no ClickHouse client for POST /sql');
    return (runner = createSqlRunner({
      ...sql,
      maxSeconds: sqlMaxSeconds,
      maxBytes: deps.sqlMaxBytes,
      concurrency: deps.sqlConcurrency,
      maxQueued: deps.sqlMaxQueued,
    }));
  };
  app.openapi(route, async (c) => {
    const { sql, maxRows } = c.req.valid('json');
    const result = await sqlRunner().run(sql, Math.min(maxRows ?? sqlMaxRows, sqlMaxRows));
    return c.json(result, 200);
  });
}
