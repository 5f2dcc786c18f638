import { z } from '@hono/zod-openapi';
import type { HistoryEvent } from '../core/store/key-history.js';

/**
 * The API's request and response shapes: zod validates requests with them
 * and the OpenAPI document (`GET /openapi.json`) is generated from them, so
 * the two cannot disagree.
 */

/** `{ "error": { "code", "message" } }`: every non-2xx answer. */
export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'OUTSIDE_WINDOW' }),
      message: z
        .string()
        .openapi({ example: 'no restorable window of node "n1" covers 2026-08-03T20:28:10.000000Z; windows: …' }),
    }),
  })
  .openapi('Error');

const seq = z.number().int().positive();

/** Body of `POST /restores`: one node or several (`nodes`, one instant), one cutoff, one destination. */
export const RestoreRequestBody = z
  .object({
    node: z.string().min(1).optional().openapi({ description: 'the node to restore (or give nodes)', example: 'n1' }),
    nodes: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .openapi({
        description:
          "several nodes (a Redis Cluster's masters) restored at one instant `to` into one destination: a standalone instance or a Redis Cluster",
        example: ['c1-m1', 'c1-m2', 'c1-m3'],
      }),
    to: z.string().min(1).optional().openapi({
      description: "include every event up to this instant: ISO 8601, 'YYYY-MM-DD HH:MM:SS[.ffffff]', or epoch s/ms/µs",
      example: '2026-08-03T20:28:10Z',
    }),
    toSeq: seq.optional().openapi({ description: 'include events up to this seq (and the rest of its transaction)' }),
    beforeSeq: seq.optional().openapi({ description: 'include events before this seq (and before its transaction)' }),
    epoch: z
      .number()
      .int()
      .nonnegative()
      .optional()
      .openapi({ description: 'epoch of toSeq/beforeSeq (default: the newest that holds it)' }),
    spawn: z
      .object({ port: z.number().int().min(1).max(65_535).optional() })
      .strict()
      .optional()
      .openapi({
        description:
          "start a new redis-server on the restorer's host; it keeps running (DELETE /instances/{id} stops it)",
      }),
    target: z
      .string()
      .regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')
      .optional()
      .openapi({ description: 'copy into this existing, empty Redis', example: 'redis://10.0.0.5:6379' }),
    flush: z.boolean().optional().openapi({ description: 'with target: empty it first' }),
    rdb: z.string().min(1).max(200).optional().openapi({
      description:
        "write an RDB file of this name into the restorer's export dir (--export-dir): a plain file name, no path",
      example: 'orders-2026-08-03.rdb',
    }),
    keepTtlRelative: z.boolean().optional().openapi({ description: 'shift expiries by (now − cutoff)' }),
    keys: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .openapi({ description: 'restore only keys matching one of these Redis glob patterns', example: ['user:*'] }),
    db: z.number().int().nonnegative().optional().openapi({ description: 'restore only this logical database' }),
  })
  .strict()
  .superRefine((b, ctx) => {
    if ((b.node === undefined) === (b.nodes === undefined))
      ctx.addIssue({ code: 'custom', message: 'give exactly one of node and nodes' });
    if (b.nodes !== undefined) {
      const dup = b.nodes.find((n, i) => b.nodes!.indexOf(n) !== i);
      if (dup !== undefined) ctx.addIssue({ code: 'custom', path: ['nodes'], message: `node "${dup}" is named twice` });
      if (b.to === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['nodes'],
          message: 'nodes go with to: one instant for every node (a seq belongs to one node)',
        });
    }
    const cutoffs = [b.to, b.toSeq, b.beforeSeq].filter((v) => v !== undefined).length;
    if (cutoffs !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one cutoff: to, toSeq or beforeSeq' });
    const dests = [b.spawn, b.target, b.rdb].filter((v) => v !== undefined).length;
    if (dests !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one destination: spawn, target or rdb' });
    if (b.flush && b.target === undefined)
      ctx.addIssue({ code: 'custom', path: ['flush'], message: 'flush goes with target' });
    if (b.epoch !== undefined && b.to !== undefined)
      ctx.addIssue({ code: 'custom', path: ['epoch'], message: 'epoch goes with toSeq or beforeSeq' });
  })
  .openapi('RestoreRequest');

/** The fields every restore report ends with: warnings, time taken, and where the data went. */
const reportTail = {
  warnings: z.array(z.string()),
  seconds: z.number(),
  url: z.string().optional(),
  pid: z.number().optional(),
  dir: z.string().optional(),
  rdb: z.string().optional(),
};

/** What a restore did. */
export const RestoreReportSchema = z
  .object({
    node: z.string(),
    epoch: z.number(),
    cutoff: z.object({ seq: z.number(), tsUs: z.number(), time: z.string(), asked: z.string().optional() }),
    baseline: z.object({
      seq: z.number(),
      tsUs: z.number(),
      time: z.string(),
      rdbBytes: z.number(),
      digest: z.string(),
    }),
    eventsReplayed: z.number(),
    keys: z.number(),
    droppedKeys: z.number().optional(),
    expiredAtRestore: z.number(),
    digest: z.string(),
    verified: z.enum(['match', 'unchecked']),
    server: z.string().optional().openapi({ description: 'the server that loaded the restore, e.g. "redis 8.0.2"' }),
    ...reportTail,
  })
  .openapi('RestoreReport');

/** What a cluster-wide restore (`nodes`) did. */
export const ClusterRestoreReportSchema = z
  .object({
    nodes: z.array(z.string()),
    cutoff: z.object({ tsUs: z.number(), time: z.string() }),
    parts: z.array(RestoreReportSchema),
    keys: z.number(),
    digest: z.string().optional(),
    masters: z
      .array(
        z.object({
          url: z.string(),
          slots: z.array(z.tuple([z.number(), z.number()])).optional(),
          keys: z.number(),
          digest: z.string(),
        }),
      )
      .optional(),
    ...reportTail,
  })
  .openapi('ClusterRestoreReport');

/** A restore job's status. */
export const RestoreJobSchema = z
  .object({
    id: z.string(),
    state: z.enum(['queued', 'running', 'done', 'failed']),
    request: z.record(z.string(), z.unknown()),
    progress: z.object({ phase: z.string(), events: z.number(), totalEvents: z.number() }),
    report: RestoreReportSchema.optional().openapi({ description: 'when done, for a request naming one node' }),
    clusterReport: ClusterRestoreReportSchema.optional().openapi({
      description: 'when done, for a request naming nodes',
    }),
    error: z
      .object({ code: z.string(), message: z.string() })
      .optional()
      .openapi({ description: 'when failed; code CANCELLED after DELETE /restores/{id}, TIMEOUT past the deadline' }),
    attempts: z.number(),
    restorer: z.string().optional(),
    password: z.string().optional().openapi({
      description:
        "the generated password of the instance a spawn job started: in the first answer after the job is done, and never again (the report's url shows it as ***)",
    }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('RestoreJob');

const AcceptedCutoff = z.object({
  epoch: z.number(),
  seq: z.number(),
  tsUs: z.number(),
  time: z.string(),
  baselineSeq: z.number(),
});

/** Answer of `POST /restores`. */
export const RestoreAccepted = z
  .object({
    id: z.string(),
    state: z.literal('queued'),
    cutoff: AcceptedCutoff.openapi({ description: 'the resolved cutoff (for nodes: of the first node)' }),
    cutoffs: z
      .array(AcceptedCutoff.extend({ node: z.string() }))
      .optional()
      .openapi({ description: 'with nodes: the resolved cutoff of each node' }),
  })
  .openapi('RestoreAccepted');

/** A restorable window. */
export const WindowSchema = z
  .object({
    node: z.string(),
    epoch: z.number(),
    fromSeq: z.number(),
    fromTsUs: z.number(),
    from: z.string(),
    toSeq: z.number(),
    toTsUs: z.number(),
    to: z.string(),
    baselines: z.array(z.number()),
    broken: z
      .array(
        z.object({
          seq: z.number(),
          tsUs: z.number(),
          time: z.string(),
          command: z.string(),
          args: z.string(),
          reason: z.string(),
        }),
      )
      .openapi({
        description:
          'events a restore server could not load: restores past one skip it and warn; before-seq of one gives the state just before it',
      }),
    verified: z
      .array(
        z.object({
          fromSeq: z.number(),
          toSeq: z.number(),
          from: z.string(),
          to: z.string(),
          result: z.enum(['match', 'mismatch', 'unverifiable']),
          firstKey: z.string().optional().openapi({ description: 'a mismatch: the first differing key, readable' }),
          keysDiffering: z.number(),
          detail: z.string(),
          checkedAt: z.string(),
        }),
      )
      .openapi({
        description:
          "background checks of the stretches between two baselines (restorer --verify-interval): the earlier baseline plus the stretch's events restored and compared with the DEBUG DIGEST the source recorded at the later one; match = verified, mismatch = restores inside it are not proven exact",
      }),
  })
  .openapi('Window');

/** A captured node. */
export const NodeSchema = z
  .object({
    node: z.string(),
    events: z.number(),
    lastTsUs: z.number(),
    lastTime: z.string(),
    lastEpoch: z.number(),
    windows: z.number(),
    restorableFrom: z
      .string()
      .nullable()
      .openapi({ description: 'start of the oldest restorable window (retention moves it forward)' }),
    restorableTo: z.string().nullable().openapi({ description: 'end of the newest restorable window' }),
    retentionMs: z.number().nullable().openapi({ description: 'configured history retention, when the API knows it' }),
  })
  .openapi('Node');

/** One stored event (readable columns; binary bytes escaped as stored): a HistoryEvent (core/store/key-history.ts). */
export const EventSchema = z
  .object({
    node: z.string(),
    epoch: z.number(),
    seq: z.number(),
    tsUs: z.number(),
    time: z.string(),
    db: z.number(),
    client: z.string(),
    kind: z.string(),
    command: z.string(),
    keys: z.array(z.string()),
    args: z.array(z.string()),
    tx: z.number(),
  })
  .openapi('Event') satisfies z.ZodType<HistoryEvent>;

/** Query of `GET /events`. */
export const EventsQuery = z.object({
  node: z
    .string()
    .min(1)
    .optional()
    .openapi({ param: { name: 'node', in: 'query' }, example: 'n1' }),
  key: z
    .string()
    .min(1)
    .optional()
    .openapi({
      param: { name: 'key', in: 'query' },
      description: 'key as stored (readable, binary bytes escaped)',
      example: 'userprofile',
    }),
  since: z
    .string()
    .min(1)
    .optional()
    .openapi({ param: { name: 'since', in: 'query' }, description: 'events at or after this time' }),
  until: z
    .string()
    .min(1)
    .optional()
    .openapi({ param: { name: 'until', in: 'query' }, description: 'events at or before this time' }),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(100)
    .openapi({ param: { name: 'limit', in: 'query' } }),
});

/** Body of `POST /sql`. */
export const SqlBody = z
  .object({
    sql: z.string().min(1).openapi({
      example:
        "SELECT time, client, command, args FROM flashback.events WHERE key = 'userprofile' ORDER BY seq DESC LIMIT 20",
    }),
    maxRows: z
      .number()
      .int()
      .positive()
      .optional()
      .openapi({ description: 'refuse results larger than this (capped by the server setting)' }),
  })
  .strict()
  .openapi('SqlRequest');

/** Answer of `POST /sql`. */
export const SqlResultSchema = z
  .object({
    columns: z.array(z.object({ name: z.string(), type: z.string() })),
    rows: z.array(z.array(z.unknown())),
  })
  .openapi('SqlResult');

/** A spawned instance. */
export const InstanceSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    pid: z.number(),
    dir: z.string(),
    node: z.string(),
    cutoff: z.object({ epoch: z.number(), seq: z.number(), tsUs: z.number(), time: z.string() }),
    createdAt: z.string(),
    host: z.string(),
  })
  .openapi('Instance');

/** Answer of `GET /health`. */
export const HealthSchema = z.object({ ok: z.boolean(), clickhouse: z.boolean(), nats: z.boolean() }).openapi('Health');

/** `:node` and `:id` path parameters. */
export const NodeParam = z.object({
  node: z
    .string()
    .min(1)
    .openapi({ param: { name: 'node', in: 'path' }, example: 'n1' }),
});
export const IdParam = z.object({
  id: z
    .string()
    .min(1)
    .openapi({ param: { name: 'id', in: 'path' } }),
});

/** Query of list endpoints. */
export const ListQuery = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(1_000)
    .default(100)
    .openapi({ param: { name: 'limit', in: 'query' } }),
  state: z
    .enum(['queued', 'running', 'done', 'failed'])
    .optional()
    .openapi({ param: { name: 'state', in: 'query' } }),
});

/** The standard error responses of a route that needs a token. */
export function errorResponses(...statuses: (400 | 401 | 403 | 404 | 409 | 413 | 422 | 429 | 503)[]) {
  const descriptions = {
    400: 'bad input',
    401: 'no bearer token',
    403: 'wrong bearer token, or a token whose scope is too small (the message names the scope needed), or a target outside the allow-list',
    404: 'not found',
    409: 'conflict',
    413: 'request body (or restore job) too large',
    422: 'not restorable',
    429: 'too many queries at once; retry later',
    503: 'a server is unreachable',
  } as const;
  const out: Record<number, { description: string; content: { 'application/json': { schema: typeof ErrorBody } } }> =
    {};
  for (const s of [401, 403, ...statuses] as const)
    out[s] = { description: descriptions[s], content: { 'application/json': { schema: ErrorBody } } };
  return out;
}
