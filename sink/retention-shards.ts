import { ConfigError, ConnectionError, describeError } from '../core/errors.js';
import { openClickHouse, parseClickHouseUrl, type ClickHouseAuth, type Store } from '../core/store/clickhouse.js';
import {
  clusterShardCountSql,
  eventsEngineSql,
  localRetentionTablesSql,
  localShardSql,
  RETENTION_TABLES,
} from '../core/store/retention-sql.js';

/** The flag (and FLASHBACK_CLICKHOUSE_SHARDS) the messages below point at. */
const FLAG = '--clickhouse-shards';

/** How the store is laid out, as retention sees it (docs/scale.md). */
export type StoreLayout =
  | { sharded: false; engine: string }
  | {
      sharded: true;
      /** Cluster of the Distributed tables (`remote_servers`). */
      cluster: string;
      /** Its shards, as the server asked sees them. */
      shards: number;
    };

/** The layout of the store behind `store`: sharded when flashback.events is a Distributed table. */
export async function storeLayout(store: Pick<Store, 'query' | 'url'>): Promise<StoreLayout> {
  const [events] = await store.query<{ engine: string; engine_full: string }>(eventsEngineSql());
  const engine = events?.engine ?? '';
  if (engine !== 'Distributed') return { sharded: false, engine };
  // `Distributed(flashback, flashback, events_local, cityHash64(node))`; a current release may quote the names.
  const cluster = /^Distributed\(\s*['"`]?([^'"`,\s)]+)/.exec(events!.engine_full)?.[1];
  if (cluster === undefined)
    throw new ConfigError(
      `cannot read the cluster of flashback.events on ${store.url} from "${events!.engine_full}"; expected Distributed(<cluster>, …)`,
    );
  const [count] = await store.query<{ shards: number | string }>(clusterShardCountSql(cluster));
  return { sharded: true, cluster, shards: Number(count?.shards ?? 0) };
}

/** Options of {@link openRetentionShards}. */
export interface RetentionShardsOptions {
  /** The sink's store (`--clickhouse`). */
  store: Store;
  /** Its URL as given: shard URLs without credentials log in with its user and password. */
  clickhouseUrl: string;
  /** Credentials of `--clickhouse-user` / `--clickhouse-password`: every shard server gets them too. */
  auth?: ClickHouseAuth;
  /** One HTTP URL per shard (`--clickhouse-shards`). */
  urls: readonly string[];
}

/**
 * The shard servers retention drops history on, one per shard, in shard order; `undefined` on the single-server
 * layout. ConfigError naming {@link FLAG} when the store is sharded and the URLs are missing, are not one server of
 * each of the cluster's shards (each server says which shard it is: `is_local` in system.clusters), or lack the
 * local tables; and when URLs are given for a single-server store.
 */
export async function openRetentionShards(o: RetentionShardsOptions): Promise<Store[] | undefined> {
  const { store, urls } = o;
  const layout = await storeLayout(store);
  if (!layout.sharded) {
    if (urls.length > 0)
      throw new ConfigError(
        `${FLAG} is for the sharded layout, but flashback.events on ${store.url} is a ${layout.engine} table (one ` +
          `server, whose retention needs no shard list): drop ${FLAG}`,
      );
    return undefined;
  }
  const { cluster, shards } = layout;
  const example = Array.from({ length: Math.min(Math.max(shards, 1), 3) }, (_, i) => `http://shard${i + 1}:8123`);
  if (urls.length === 0)
    throw new ConfigError(
      `flashback.events on ${store.url} is Distributed over cluster "${cluster}" (${shards} shards): retention drops ` +
        `old history on each shard's own tables, so give one server of each shard: ${FLAG} ${example.join(',')} ` +
        `(docs/scale.md), or turn retention off with --retention-interval 0`,
    );
  if (urls.length !== shards)
    throw new ConfigError(
      `${FLAG} names ${urls.length} server(s), but cluster "${cluster}" has ${shards} shards (system.clusters on ` +
        `${store.url}): give one server of each shard`,
    );

  const main = parseClickHouseUrl(o.clickhouseUrl);
  const opened: Store[] = [];
  const byShard = new Map<number, Store>();
  try {
    for (const url of urls) {
      const own = shardUrl(url);
      const hasOwn = own.username !== undefined || own.password !== undefined;
      let server: Store;
      try {
        server = await openClickHouse(url, {
          user: o.auth?.user ?? (hasOwn ? own.username : main.username),
          password: o.auth?.password ?? (hasOwn ? own.password : main.password),
        });
      } catch (err) {
        // Unreachable stays retryable; anything else (a refused login) is the shard list's to fix.
        if (err instanceof ConnectionError) throw new ConnectionError(`${FLAG}: ${err.message}`, { cause: err });
        throw new ConfigError(`${FLAG}: ${describeError(err)}`, { cause: err });
      }
      opened.push(server);
      const tables = new Set((await server.query<{ name: string }>(localRetentionTablesSql())).map((t) => t.name));
      const missing = RETENTION_TABLES.map((t) => `${t}_local`).filter((t) => !tables.has(t));
      if (missing.length > 0)
        throw new ConfigError(
          `${FLAG}: ${server.url} has no ${missing.map((t) => `flashback.${t}`).join(', ')}; each URL must be a ` +
            `shard server of cluster "${cluster}" with the shard DDL (deploy/clickhouse/sharded/)`,
        );
      const ownShards = (await server.query<{ shard_num: number | string }>(localShardSql(cluster))).map((r) =>
        Number(r.shard_num),
      );
      if (ownShards.length !== 1)
        throw new ConfigError(
          `${FLAG}: ${server.url} does not find itself in cluster "${cluster}" (system.clusters there has ` +
            `${ownShards.length === 0 ? 'no row' : 'several shards'} with is_local = 1); give servers by the ` +
            `addresses remote_servers names, one per shard`,
        );
      const shard = ownShards[0]!;
      const twin = byShard.get(shard);
      if (twin)
        throw new ConfigError(
          `${FLAG}: ${twin.url} and ${server.url} are both shard ${shard} of cluster "${cluster}"; give one server ` +
            `of each shard`,
        );
      byShard.set(shard, server);
    }
  } catch (err) {
    await Promise.all(opened.map((s) => s.close()));
    throw err;
  }
  return [...byShard.entries()].sort(([a], [b]) => a - b).map(([, s]) => s);
}

function shardUrl(url: string): ReturnType<typeof parseClickHouseUrl> {
  try {
    return parseClickHouseUrl(url);
  } catch (err) {
    // Its message shows the URL with the password hidden, and names the accepted form.
    throw new ConfigError(`${FLAG}: ${(err as Error).message}`);
  }
}
