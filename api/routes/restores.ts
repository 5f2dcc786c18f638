import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { resolveCutoff } from '../../core/store/cutoff.js';
import type { RestoreJobRequest } from '../../core/bus/restore-jobs.js';
import { formatTsUs } from '../../core/time.js';
import type { ApiDeps } from '../deps.js';
import {
  errorResponses,
  IdParam,
  ListQuery,
  RestoreAccepted,
  RestoreJobSchema,
  RestoreRequestBody,
} from '../schemas.js';

const createJob = createRoute({
  method: 'post',
  path: '/restores',
  summary:
    'Queue a restore of one node, or of several (`nodes`) at one instant into one destination; every cutoff is checked at once (malformed time, unknown node, outside every window of a node → 4xx naming the node)',
  security: [{ Bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: RestoreRequestBody } } } },
  responses: {
    202: { description: 'queued', content: { 'application/json': { schema: RestoreAccepted } } },
    ...errorResponses(400, 404, 422, 503),
  },
});

const listJobs = createRoute({
  method: 'get',
  path: '/restores',
  summary: 'Restore jobs, newest first',
  security: [{ Bearer: [] }],
  request: { query: ListQuery },
  responses: {
    200: {
      description: 'jobs',
      content: { 'application/json': { schema: z.object({ restores: z.array(RestoreJobSchema) }) } },
    },
    ...errorResponses(400, 503),
  },
});

const getJob = createRoute({
  method: 'get',
  path: '/restores/{id}',
  summary: 'A restore job: state, progress, report or error',
  security: [{ Bearer: [] }],
  request: { params: IdParam },
  responses: {
    200: { description: 'job', content: { 'application/json': { schema: RestoreJobSchema } } },
    ...errorResponses(404, 503),
  },
});

/** `POST /restores`, `GET /restores`, `GET /restores/{id}`. */
export function registerRestoreRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(createJob, async (c) => {
    const body = c.req.valid('json');
    // zod let through exactly one of node and nodes; every node's cutoff is checked now, each error naming its node.
    const nodes = body.nodes ?? [body.node!];
    const cutoffs = [];
    for (const node of nodes) {
      const cut = await resolveCutoff(deps.store, node, {
        to: body.to,
        toSeq: body.toSeq,
        beforeSeq: body.beforeSeq,
        epoch: body.epoch,
      });
      cutoffs.push({
        node,
        epoch: cut.epoch,
        seq: cut.seq,
        tsUs: cut.tsUs,
        time: formatTsUs(cut.tsUs),
        baselineSeq: cut.baselineSeq,
      });
    }
    const request: RestoreJobRequest = body;
    const id = await deps.jobs.submit(request);
    deps.logger?.info(
      { job: id, nodes, cutoffs: cutoffs.map((x) => ({ node: x.node, epoch: x.epoch, seq: x.seq })) },
      'restore job queued',
    );
    const { node: _node, ...cutoff } = cutoffs[0]!;
    return c.json({ id, state: 'queued' as const, cutoff, ...(body.nodes ? { cutoffs } : {}) }, 202);
  });

  app.openapi(listJobs, async (c) => {
    const { limit, state } = c.req.valid('query');
    return c.json({ restores: await deps.jobs.list({ limit, state }) }, 200);
  });

  app.openapi(getJob, async (c) => {
    const { id } = c.req.valid('param');
    return c.json(await deps.jobs.get(id), 200);
  });
}
