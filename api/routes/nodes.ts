import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ErrorCode, InputError } from '../../core/errors.js';
import { formatTsUs } from '../../core/time.js';
import { nodesSql, restoreWindows, type RestoreWindow } from '../../core/store/windows.js';
import { verifiedJson, withVerifications, type VerifiedStretch } from '../../core/store/verifications.js';
import type { ApiDeps } from '../deps.js';
import { errorResponses, NodeParam, NodeSchema, WindowSchema } from '../schemas.js';

const listRoute = createRoute({
  method: 'get',
  path: '/nodes',
  summary: 'Captured nodes: events stored, last event, restorable windows',
  security: [{ Bearer: [] }],
  responses: {
    200: {
      description: 'nodes',
      content: { 'application/json': { schema: z.object({ nodes: z.array(NodeSchema) }) } },
    },
    ...errorResponses(503),
  },
});

const windowsRoute = createRoute({
  method: 'get',
  path: '/nodes/{node}/windows',
  summary: 'Restorable windows of a node, oldest first',
  security: [{ Bearer: [] }],
  request: { params: NodeParam },
  responses: {
    200: {
      description: 'windows',
      content: { 'application/json': { schema: z.object({ windows: z.array(WindowSchema) }) } },
    },
    ...errorResponses(404, 503),
  },
});

/** A window with readable times, and the checks of its stretches. */
export function windowJson(w: RestoreWindow & { verified?: VerifiedStretch[] }): z.infer<typeof WindowSchema> {
  return {
    ...w,
    from: formatTsUs(w.fromTsUs),
    to: formatTsUs(w.toTsUs),
    broken: w.broken.map((b) => ({ ...b, time: formatTsUs(b.tsUs) })),
    verified: (w.verified ?? []).map(verifiedJson),
  };
}

/** `GET /nodes`, `GET /nodes/{node}/windows`. */
export function registerNodeRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(listRoute, async (c) => {
    const rows = await deps.store.query<{
      node: string;
      events: number | string;
      last_ts: number | string;
      last_epoch: number | string;
    }>(nodesSql());
    const nodes = [];
    for (const r of rows) {
      const ws = await restoreWindows(deps.store, r.node);
      nodes.push({
        node: r.node,
        events: Number(r.events),
        lastTsUs: Number(r.last_ts),
        lastTime: formatTsUs(Number(r.last_ts)),
        lastEpoch: Number(r.last_epoch),
        windows: ws.length,
        restorableFrom: ws.length > 0 ? formatTsUs(Math.min(...ws.map((w) => w.fromTsUs))) : null,
        restorableTo: ws.length > 0 ? formatTsUs(Math.max(...ws.map((w) => w.toTsUs))) : null,
        retentionMs: deps.retentionMs ?? null,
      });
    }
    return c.json({ nodes }, 200);
  });

  app.openapi(windowsRoute, async (c) => {
    const { node } = c.req.valid('param');
    const ws = await withVerifications(deps.store, node, await restoreWindows(deps.store, node));
    if (ws.length === 0) {
      const known = await deps.store.query<{ node: string }>(nodesSql());
      if (!known.some((n) => n.node === node)) {
        throw new InputError(
          ErrorCode.UnknownNode,
          `no events captured for node "${node}"; known nodes: ${known.map((n) => `"${n.node}"`).join(', ') || 'none'}`,
        );
      }
    }
    return c.json({ windows: ws.map(windowJson) }, 200);
  });
}
