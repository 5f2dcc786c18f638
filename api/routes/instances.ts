import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ApiDeps } from '../deps.js';
import { errorResponses, IdParam, InstanceSchema } from '../schemas.js';

const listRoute = createRoute({
  method: 'get',
  path: '/instances',
  summary: 'redis-servers spawned by restores (still running until stopped)',
  security: [{ Bearer: [] }],
  responses: {
    200: {
      description: 'instances',
      content: { 'application/json': { schema: z.object({ instances: z.array(InstanceSchema) }) } },
    },
    ...errorResponses(503),
  },
});

const stopRoute = createRoute({
  method: 'delete',
  path: '/instances/{id}',
  summary: "Stop a spawned instance and remove its files (done by a restorer on the instance's host)",
  security: [{ Bearer: [] }],
  request: { params: IdParam },
  responses: {
    200: { description: 'stopped', content: { 'application/json': { schema: z.object({ stopped: InstanceSchema }) } } },
    ...errorResponses(404, 503),
  },
});

/** `GET /instances`, `DELETE /instances/{id}`. */
export function registerInstanceRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(listRoute, async (c) => c.json({ instances: await deps.jobs.instances() }, 200));
  app.openapi(stopRoute, async (c) => {
    const { id } = c.req.valid('param');
    return c.json({ stopped: await deps.jobs.stopInstance(id) }, 200);
  });
}
