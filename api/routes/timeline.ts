import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { unseal } from '../../core/bus/job-secret.js';
import { ErrorCode, FlashbackError, InputError } from '../../core/errors.js';
import { globForKey, readKeyValue, unreadableBytes, type KeyValue } from '../../core/redis/key-value.js';
import { dangerousEvents, MarkKind, nodeSpans, writeRates } from '../../core/store/timeline.js';
import { parseCutoffTime } from '../../core/time.js';
import type { ApiDeps } from '../deps.js';
import { errorResponses, IdParam, NodeParam } from '../schemas.js';

/*
 * The data of the timeline page (GET /): write rates, dangerous events, windows/holes/baselines, and a key's value at
 * an event (restored on demand into a scratch instance). `read` routes; the value lookup queues a restore job.
 */

const time = (name: string, description: string) =>
  z
    .string()
    .min(1)
    .openapi({ param: { name, in: 'query' }, description, example: '2026-08-03T20:28:00Z' });

const nodeQuery = z
  .string()
  .min(1)
  .optional()
  .openapi({ param: { name: 'node', in: 'query' }, description: 'only this node (default: every node)' });

const RangeQuery = z.object({
  from: time('from', "start of the range (inclusive): ISO 8601, 'YYYY-MM-DD HH:MM:SS[.ffffff]', or epoch s/ms/µs"),
  to: time('to', 'end of the range (exclusive), same forms'),
  node: nodeQuery,
});

const RatesQuery = RangeQuery.extend({
  buckets: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(1_000)
    .openapi({
      param: { name: 'buckets', in: 'query' },
      description: 'at most this many buckets; the width is the smallest round step (1 ms … 1 day) that fits',
    }),
});

const MarksQuery = RangeQuery.extend({
  manyKeys: z.coerce
    .number()
    .int()
    .min(2)
    .max(1_000_000)
    .default(10)
    .openapi({
      param: { name: 'manyKeys', in: 'query' },
      description: 'a DEL/UNLINK, transaction or script touching at least this many keys is marked',
    }),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(5_000)
    .default(500)
    .openapi({ param: { name: 'limit', in: 'query' }, description: 'at most this many marks of each kind' }),
});

const RatesSchema = z
  .object({
    fromUs: z.number(),
    toUs: z.number(),
    bucketUs: z.number().openapi({ description: 'bucket width, µs' }),
    nodes: z.array(
      z.object({
        node: z.string(),
        counts: z.array(z.number()).openapi({ description: 'writes in bucket i = [fromUs + i·bucketUs, + bucketUs)' }),
      }),
    ),
  })
  .openapi('TimelineRates');

const MarkSchema = z
  .object({
    kind: z.enum(Object.values(MarkKind) as [string, ...string[]]),
    node: z.string(),
    epoch: z.number(),
    seq: z.number().openapi({ description: 'the event (a transaction: its first); beforeSeq of a restore before it' }),
    tsUs: z.number(),
    time: z.string(),
    db: z.number(),
    client: z.string(),
    command: z.string(),
    keys: z.array(z.string()),
    keyCount: z.number(),
    summary: z.string(),
  })
  .openapi('TimelineMark');

const SpansSchema = z
  .object({
    node: z.string(),
    windows: z.array(
      z.object({ epoch: z.number(), fromSeq: z.number(), fromTsUs: z.number(), toSeq: z.number(), toTsUs: z.number() }),
    ),
    baselines: z.array(z.object({ epoch: z.number(), seq: z.number(), tsUs: z.number() })),
    holes: z.array(
      z.object({
        epoch: z.number(),
        afterSeq: z.number(),
        fromTsUs: z.number(),
        nextSeq: z.number(),
        toTsUs: z.number(),
      }),
    ),
  })
  .openapi('TimelineSpans');

const ValueRequest = z
  .object({
    node: z.string().min(1),
    epoch: z.number().int().nonnegative(),
    seq: z.number().int().positive().openapi({ description: 'the value right after this event' }),
    key: z.string().min(1).openapi({ description: 'key as stored (readable, binary bytes escaped)' }),
    db: z.number().int().nonnegative().default(0),
  })
  .strict()
  .openapi('KeyValueRequest');

const KeyValueSchema = z
  .object({
    type: z.string(),
    ttlMs: z.number(),
    size: z.number(),
    value: z.string().optional(),
    items: z.array(z.array(z.string())).optional(),
    truncated: z.boolean(),
  })
  .openapi('KeyValue');

const ValueStatus = z
  .object({
    id: z.string(),
    state: z.enum(['queued', 'running', 'done', 'failed']),
    progress: z.object({ phase: z.string(), events: z.number(), totalEvents: z.number() }),
    value: KeyValueSchema.optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
  })
  .openapi('KeyValueStatus');

const json = <T extends z.ZodType>(schema: T) => ({ content: { 'application/json': { schema } } });

const ratesRoute = createRoute({
  method: 'get',
  path: '/timeline/rates',
  summary: 'Writes per bucket of each node over a range (the timeline chart)',
  security: [{ Bearer: [] }],
  request: { query: RatesQuery },
  responses: { 200: { description: 'rates', ...json(RatesSchema) }, ...errorResponses(400, 503) },
});

const marksRoute = createRoute({
  method: 'get',
  path: '/timeline/marks',
  summary:
    'Dangerous events of a range, oldest first: FLUSHALL/FLUSHDB, SWAPDB, DEL/UNLINK of many keys, transactions or scripts writing many keys, RENAME over a key the history shows existing, a key changing type (ranges up to one hour)',
  security: [{ Bearer: [] }],
  request: { query: MarksQuery },
  responses: {
    200: { description: 'marks', ...json(z.object({ marks: z.array(MarkSchema) })) },
    ...errorResponses(400, 503),
  },
});

const spansRoute = createRoute({
  method: 'get',
  path: '/timeline/nodes/{node}/spans',
  summary: "A node's restorable windows, holes and baselines, with times",
  security: [{ Bearer: [] }],
  request: { params: NodeParam },
  responses: { 200: { description: 'spans', ...json(SpansSchema) }, ...errorResponses(404, 503) },
});

const valueRoute = createRoute({
  method: 'post',
  path: '/timeline/values',
  summary:
    "A key's value right after an event: queues a restore of that key up to the event into a scratch instance (stopped once read); poll GET /timeline/values/{id}",
  security: [{ Bearer: [] }],
  request: { body: { required: true, ...json(ValueRequest) } },
  responses: {
    202: { description: 'queued', ...json(z.object({ id: z.string() })) },
    ...errorResponses(400, 404, 422, 503),
  },
});

const valueStatusRoute = createRoute({
  method: 'get',
  path: '/timeline/values/{id}',
  summary:
    'Progress of a value lookup queued by this API process; when done, the value (read once from the scratch instance, which is then stopped)',
  security: [{ Bearer: [] }],
  request: { params: IdParam },
  responses: { 200: { description: 'status', ...json(ValueStatus) }, ...errorResponses(404, 503) },
});

/** A range from query text; at most 400 days, so one request cannot ask the store for years of buckets. */
function parseRange(q: { from: string; to: string }) {
  const fromUs = parseCutoffTime(q.from);
  const toUs = parseCutoffTime(q.to);
  if (toUs <= fromUs)
    throw new InputError(ErrorCode.BadInput, `"to" (${q.to}) is not after "from" (${q.from}); give from < to`);
  if (toUs - fromUs > 400 * 86_400e6)
    throw new InputError(ErrorCode.BadInput, 'the range is longer than 400 days; ask for a shorter one');
  return { fromUs, toUs };
}

/** `/timeline/*`: the timeline page's data (api/routes/ui.ts serves the page). */
export function registerTimelineRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(ratesRoute, async (c) => {
    const q = c.req.valid('query');
    return c.json(await writeRates(deps.store, parseRange(q), q.buckets, q.node), 200);
  });

  app.openapi(marksRoute, async (c) => {
    const q = c.req.valid('query');
    const marks = await dangerousEvents(deps.store, parseRange(q), {
      node: q.node,
      manyKeys: q.manyKeys,
      limit: q.limit,
    });
    return c.json({ marks }, 200);
  });

  app.openapi(spansRoute, async (c) => {
    const { node } = c.req.valid('param');
    return c.json(await nodeSpans(deps.store, node), 200);
  });

  // Lookups queued here, by job id, with the value once read: only these jobs' instances are read and stopped (any
  // other restore job's instance is someone's restore). A poll after the instance was stopped still answers.
  const lookups = new Map<string, { key: string; db: number; value?: KeyValue }>();
  app.openapi(valueRoute, async (c) => {
    const b = c.req.valid('json');
    const id = await deps.jobs.submit({
      node: b.node,
      epoch: b.epoch,
      toSeq: b.seq,
      spawn: {},
      keys: [globForKey(unreadableBytes(b.key))],
      db: b.db,
    });
    lookups.set(id, { key: b.key, db: b.db });
    if (lookups.size > 1_000) lookups.delete(lookups.keys().next().value!);
    return c.json({ id }, 202);
  });

  app.openapi(valueStatusRoute, async (c) => {
    const { id } = c.req.valid('param');
    const lookup = lookups.get(id);
    if (!lookup)
      throw new InputError(
        ErrorCode.NotFound,
        `no value lookup ${id} was queued by this API process; queue one with POST /timeline/values`,
      );
    const job = await deps.jobs.get(id);
    const status = { id, state: job.state, progress: job.progress, error: job.error };
    if (job.state !== 'done') return c.json(status, 200);
    if (!lookup.value) {
      const url = job.report?.url;
      if (!url) throw new InputError(ErrorCode.NotFound, `value lookup ${id} finished without an instance to read`);
      // The instance has a generated password, sealed for this API: the one taker of the job's secret opens it.
      const sealed = await deps.jobs.takeSecret(id);
      try {
        if (!deps.jobKey || sealed === undefined)
          throw new FlashbackError(
            ErrorCode.Config,
            deps.jobKey
              ? `the password of value lookup ${id}'s scratch instance was already taken; ask again`
              : "value lookups need the restorers' job key (--job-key-file) to open their scratch instance; give the API the restorers' key (flashback up shares one)",
          );
        const u = new URL(url);
        lookup.value = await readKeyValue(
          {
            host: u.hostname.replace(/^\[|\]$/g, ''),
            port: Number(u.port || 6379),
            password: unseal(deps.jobKey, id, 'instance-password', sealed),
          },
          lookup.db,
          unreadableBytes(lookup.key),
        );
      } finally {
        await deps.jobs.stopInstance(id).catch((err: unknown) => {
          deps.logger?.warn({ job: id, err: String(err) }, 'could not stop the scratch instance of a value lookup');
        });
      }
    }
    return c.json({ ...status, value: lookup.value }, 200);
  });
}
