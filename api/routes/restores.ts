import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { resolveCutoff } from '../../core/store/cutoff.js';
import { ErrorCode, InputError } from '../../core/errors.js';
import { checkExportName, exportPath } from '../../core/export-dir.js';
import { seal, unseal } from '../../core/bus/job-secret.js';
import { newJobId, type RestoreJobRequest } from '../../core/bus/restore-jobs.js';
import { parseRedisUrl, redactedRedisUrl } from '../../core/redis/redis-url.js';
import { assertTargetAllowed, parseTargetAllow } from '../../core/redis/target-allow.js';
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
    ...errorResponses(400, 404, 413, 422, 503),
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

const cancelJob = createRoute({
  method: 'delete',
  path: '/restores/{id}',
  summary:
    'Cancel a queued or running restore job: it is marked failed with code CANCELLED, what it made is removed, and its restorer takes the next job',
  security: [{ Bearer: [] }],
  request: { params: IdParam },
  responses: {
    200: { description: 'cancelled', content: { 'application/json': { schema: RestoreJobSchema } } },
    ...errorResponses(404, 409, 503),
  },
});

const getJob = createRoute({
  method: 'get',
  path: '/restores/{id}',
  summary:
    "A restore job: state, progress, report or error (a spawn job's instance password is in the first answer after it is done, and never again)",
  security: [{ Bearer: [] }],
  request: { params: IdParam },
  responses: {
    200: { description: 'job', content: { 'application/json': { schema: RestoreJobSchema } } },
    ...errorResponses(404, 503),
  },
});

/** `POST /restores`, `GET /restores`, `GET /restores/{id}`, `DELETE /restores/{id}`. */
export function registerRestoreRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  const targetAllow = deps.targetAllow ?? parseTargetAllow(undefined);
  app.openapi(createJob, async (c) => {
    const body = c.req.valid('json');
    const id = newJobId();
    const request: RestoreJobRequest = { ...body };
    // Where the data goes is checked before anything else; the restorer checks it again (a job may be forged).
    if (body.rdb !== undefined) {
      checkExportName(body.rdb);
      if (deps.exportDir !== undefined) await exportPath(deps.exportDir, body.rdb);
    }
    if (body.target !== undefined) {
      const t = parseRedisUrl(body.target, 'target');
      await assertTargetAllowed(body.target, targetAllow);
      // The job (in NATS, in logs, in GET /restores) holds the URL without its password; the password goes sealed.
      request.target = redactedRedisUrl(t);
      if (t.password !== undefined) {
        if (!deps.jobKey)
          throw new InputError(
            ErrorCode.BadInput,
            `target ${request.target} has a password, and this API has no job key to pass it sealed to the restorer; give the API and the restorers one --job-key-file (flashback up does), or use a target without a password`,
          );
        request.sealedTarget = seal(deps.jobKey, id, 'target', body.target);
      }
    }
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
    await deps.jobs.submit(request, { id });
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
    const status = await deps.jobs.get(id);
    if (status.state === 'done' && status.request.spawn !== undefined && deps.jobKey) {
      const sealed = await deps.jobs.takeSecret(id);
      if (sealed !== undefined) status.password = unseal(deps.jobKey, id, 'instance-password', sealed);
    }
    return c.json(status, 200);
  });

  app.openapi(cancelJob, async (c) => {
    const { id } = c.req.valid('param');
    const status = await deps.jobs.cancel(id);
    deps.logger?.info({ job: id }, 'restore job cancelled');
    return c.json(status, 200);
  });
}
