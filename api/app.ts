import { OpenAPIHono } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { ErrorCode, InputError } from '../core/errors.js';
import { silentLogger } from '../core/log.js';
import { bearerAuth } from './auth.js';
import { describeIssues, errorBody, errorHandler, HttpErrorCode } from './errors.js';
import type { ApiDeps } from './deps.js';
import { ApiMetrics, countRequests, registerMetricsRoute } from './metrics.js';
import { registerEventRoutes } from './routes/events.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerInstanceRoutes } from './routes/instances.js';
import { registerNodeRoutes } from './routes/nodes.js';
import { registerRestoreRoutes } from './routes/restores.js';
import { registerSqlRoutes } from './routes/sql.js';
import { registerTimelineRoutes } from './routes/timeline.js';
import { registerUiRoutes } from './routes/ui.js';

/**
 * The HTTP API as a Hono app (serve it with startApi, or call
 * `app.request()` in tests). Routes are declared with zod schemas, which both
 * validate requests and generate `GET /openapi.json`. Every failure answers
 * `{ "error": { "code", "message" } }` with the status of its code.
 */
export function buildApp(deps: ApiDeps): OpenAPIHono {
  const logger = deps.logger ?? silentLogger;
  const app = new OpenAPIHono({
    // zod failures reach onError as our BAD_INPUT error, like every other 400.
    defaultHook: (result) => {
      if (!result.success)
        throw new InputError(
          ErrorCode.BadInput,
          `invalid request ${result.target}: ${describeIssues(result.error.issues)}`,
        );
    },
  });
  const metrics = new ApiMetrics(deps);
  app.use('*', countRequests(metrics));
  // The pages (/, /docs) and their assets hold no data: served before auth; they ask for the token themselves.
  registerUiRoutes(app);
  const maxBodyBytes = deps.maxBodyBytes ?? 262_144;
  app.use(
    '*',
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: (c) =>
        c.json(
          errorBody(
            HttpErrorCode.TooLarge,
            `the request body is over the API's limit of ${maxBodyBytes} bytes; send a smaller one (fewer keys patterns, a shorter query)`,
          ),
          413,
        ),
    }),
  );
  app.use('*', bearerAuth(deps.tokens));
  app.onError(errorHandler(logger));
  app.notFound((c) =>
    c.json(
      errorBody(ErrorCode.NotFound, `no route ${c.req.method} ${c.req.path}; GET /openapi.json lists the routes`),
      404,
    ),
  );
  app.openAPIRegistry.registerComponent('securitySchemes', 'Bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'one of FLASHBACK_API_TOKENS',
  });

  registerHealthRoutes(app, deps);
  registerMetricsRoute(app, deps, metrics);
  registerNodeRoutes(app, deps);
  registerEventRoutes(app, deps);
  registerSqlRoutes(app, deps);
  registerRestoreRoutes(app, deps);
  registerInstanceRoutes(app, deps);
  registerTimelineRoutes(app, deps);
  app.doc('/openapi.json', {
    openapi: '3.0.0',
    info: {
      title: 'redis-flashback API',
      version: '0.1.0',
      description: 'History, read-only SQL, restorable windows and restore jobs of captured Redis nodes.',
    },
  });
  return app;
}
