import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { sqlString, sqlUInt } from '../../core/store/sql-literal.js';
import { formatTsUs, parseCutoffTime } from '../../core/time.js';
import type { QueryRunner } from '../../core/store/windows.js';
import type { ApiDeps } from '../app.js';
import { errorResponses, EventSchema, EventsQuery } from '../schemas.js';

/** Filters of a key's history; times as an operator types them (see parseCutoffTime). */
export interface HistoryQuery {
  node?: string;
  /** Key as stored: readable, binary bytes escaped. Matches any key the event touches. */
  key?: string;
  since?: string;
  until?: string;
  /** @default 100 */
  limit?: number;
}

/** One event of a history, readable. */
export type HistoryEvent = z.infer<typeof EventSchema>;

/**
 * SQL of a history, newest first. Duplicate rows that ReplacingMergeTree has
 * not merged yet are collapsed with LIMIT 1 BY (18.16 and current accept it).
 * @throws InputError (BAD_TIME) for a malformed since/until.
 */
export function historySql(q: HistoryQuery): string {
  const where: string[] = [];
  if (q.node !== undefined) where.push(`node = ${sqlString(q.node)}`);
  if (q.key !== undefined) where.push(`(key = ${sqlString(q.key)} OR has(keys, ${sqlString(q.key)}))`);
  if (q.since !== undefined) where.push(`ts_us >= ${sqlUInt(parseCutoffTime(q.since))}`);
  if (q.until !== undefined) where.push(`ts_us <= ${sqlUInt(parseCutoffTime(q.until))}`);
  const limit = q.limit ?? 100;
  return `SELECT node, epoch, seq, ts_us, db, client, kind, command, keys, args, tx FROM flashback.events${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
ORDER BY ts_us DESC, seq DESC LIMIT 1 BY node, epoch, seq LIMIT ${sqlUInt(limit)}`;
}

/** A history, newest first: what `GET /events` and `flashback history` show. */
export async function keyHistory(db: QueryRunner, q: HistoryQuery): Promise<HistoryEvent[]> {
  const rows = await db.query<Record<string, unknown>>(historySql(q));
  return rows.map((r) => ({
    node: String(r.node),
    epoch: Number(r.epoch),
    seq: Number(r.seq),
    tsUs: Number(r.ts_us),
    time: formatTsUs(Number(r.ts_us)),
    db: Number(r.db),
    client: String(r.client),
    kind: String(r.kind),
    command: String(r.command),
    keys: (r.keys as string[]) ?? [],
    args: (r.args as string[]) ?? [],
    tx: Number(r.tx),
  }));
}

const route = createRoute({
  method: 'get',
  path: '/events',
  summary: 'Event history (e.g. of one key), newest first',
  security: [{ Bearer: [] }],
  request: { query: EventsQuery },
  responses: { 200: { description: 'events', content: { 'application/json': { schema: z.object({ events: z.array(EventSchema) }) } } }, ...errorResponses(400, 503) },
});

/** `GET /events?node&key&since&until&limit`. */
export function registerEventRoutes(app: OpenAPIHono, deps: ApiDeps): void {
  app.openapi(route, async (c) => {
    const q = c.req.valid('query');
    return c.json({ events: await keyHistory(deps.store, q) }, 200);
  });
}
