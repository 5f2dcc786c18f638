import { OpenAPIHono } from '@hono/zod-openapi';
import type { Store } from '../core/store/clickhouse.js';
import { ErrorCode, InputError } from '../core/errors.js';
import type { Metric } from '../core/health-server.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { NatsConnection } from '../core/bus/nats.js';
import {
  getJob,
  listInstances,
  listJobs,
  stopInstance,
  submitRestoreJob,
  type InstanceRecord,
  type RestoreJobRequest,
  type RestoreJobState,
  type RestoreJobStatus,
} from '../core/bus/restore-jobs.js';
import { bearerAuth } from './auth.js';
import { describeIssues, errorBody, errorHandler } from './errors.js';
import { countRequests, registerMetricsRoute, RequestCounter } from './metrics.js';
import { registerEventRoutes } from './routes/events.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerInstanceRoutes } from './routes/instances.js';
import { registerNodeRoutes } from './routes/nodes.js';
import { registerRestoreRoutes } from './routes/restores.js';
import { registerSqlRoutes } from './routes/sql.js';

/** What the API needs from ClickHouse. */
export type ApiStore = Pick<Store, 'query' | 'readOnlySql' | 'ping'>;

/** What the API needs from the restore-job infrastructure. */
export interface JobClient {
  submit(request: RestoreJobRequest): Promise<string>;
  get(id: string): Promise<RestoreJobStatus>;
  list(o: { state?: RestoreJobState; limit?: number }): Promise<RestoreJobStatus[]>;
  instances(): Promise<InstanceRecord[]>;
  stopInstance(id: string): Promise<InstanceRecord>;
  /** Whether the bus is reachable now (for /health). */
  connected(): boolean;
}

/** The job client over a NATS connection (core/restore-jobs.ts). */
export function natsJobClient(nc: NatsConnection): JobClient {
  return {
    submit: (r) => submitRestoreJob(nc, r),
    get: (id) => getJob(nc, id),
    list: (o) => listJobs(nc, o),
    instances: () => listInstances(nc),
    stopInstance: (id) => stopInstance(nc, id),
    connected: () => !nc.isClosed() && !('isReconnecting' in nc && (nc as { isReconnecting?: () => boolean }).isReconnecting?.()),
  };
}

/** Dependencies of {@link buildApp}. */
export interface ApiDeps {
  store: ApiStore;
  jobs: JobClient;
  /** Bearer tokens accepted (parseApiTokens); every route but /health needs one. */
  tokens: readonly string[];
  /** @default silent */
  logger?: Logger;
  /** Upper bound of rows a `POST /sql` may return. @default 10_000 */
  sqlMaxRows?: number;
  /** Time limit of a `POST /sql` query, seconds. @default 30 */
  sqlMaxSeconds?: number;
  /** History retention, ms, shown by `GET /nodes` when known. @default unknown (null) */
  retentionMs?: number;
  /** More metrics for `GET /metrics`. @default none */
  metrics?: () => Metric[] | Promise<Metric[]>;
}

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
      if (!result.success) throw new InputError(ErrorCode.BadInput, `invalid request ${result.target}: ${describeIssues(result.error.issues)}`);
    },
  });
  const counter = new RequestCounter();
  app.use('*', countRequests(counter));
  app.use('*', bearerAuth(deps.tokens));
  app.onError(errorHandler(logger));
  app.notFound((c) => c.json(errorBody(ErrorCode.NotFound, `no route ${c.req.method} ${c.req.path}; GET /openapi.json lists the routes`), 404));
  app.openAPIRegistry.registerComponent('securitySchemes', 'Bearer', { type: 'http', scheme: 'bearer', description: 'one of FLASHBACK_API_TOKENS' });

  registerHealthRoutes(app, deps);
  registerMetricsRoute(app, deps, counter);
  registerNodeRoutes(app, deps);
  registerEventRoutes(app, deps);
  registerSqlRoutes(app, deps);
  registerRestoreRoutes(app, deps);
  registerInstanceRoutes(app, deps);
  app.doc('/openapi.json', {
    openapi: '3.0.0',
    info: { title: 'redis-flashback API', version: '0.1.0', description: 'History, read-only SQL, restorable windows and restore jobs of captured Redis nodes.' },
  });
  return app;
}
