import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { keyHistory } from '../../core/store/key-history.js';
import type { ApiDeps } from '../deps.js';
import { errorResponses, EventSchema, EventsQuery } from '../schemas.js';

const route = createRoute({
  method: 'get',
  path: '/events',
  summary: 'Event history (e.g. of one key), newest first',
  security: [{ Bearer: [] }],
  request: { query: EventsQuery },
  responses: {
    200: {
      description: 'events',
      content: { 'application/json': { schema: z.object({ events: z.array(EventSchema) }) } },
    },
    ...errorResponses(400, 503),
  },
});

/** `GET /events?node&key&since&until&limit`. */
export function registerEventRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid('query');
    return c.json({ events: await keyHistory(deps.store, q) }, 200);
  });
}
