import { ConfigError } from '../errors.js';
import { DATABASE, schemaStatements } from './schema.js';

/*
 * The sharded layout (docs/scale.md): on every shard server, each flashback table exists as `<table>_local` with the
 * engine of the single-server schema, and `<table>` is a `Distributed` table over the cluster's `<table>_local`,
 * sharded by node. Every query the code issues names `flashback.<table>`, so restores, windows, history, the timeline
 * and users' SQL read through the distributed tables unchanged; the sink inserts through them too (each row goes to
 * the shard of its node). ClickHouse 18.16 runs Distributed tables without ZooKeeper; each shard's DDL is applied on
 * that shard (no ON CLUSTER, which needs ZooKeeper).
 *
 * Sharding by node keeps every row of a node on one shard: ReplacingMergeTree's duplicates (a batch the sink inserted
 * twice) meet in one table and merge, and a subquery over one node's rows finds them all on the shard that runs it,
 * which is what `distributed_product_mode = 'local'` (sent with every query, core/store/clickhouse.ts) relies on.
 */

/** The sharding key of every table: the node's hash, so one node's rows live on one shard. */
export const SHARDING_KEY = 'cityHash64(node)';

const CREATE_TABLE = new RegExp(`^CREATE TABLE IF NOT EXISTS ${DATABASE}\\.(\\w+) \\(`);

/** A cluster name as `remote_servers` accepts it and as a literal-free identifier. */
export function checkClusterName(cluster: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(cluster))
    throw new ConfigError(
      `ClickHouse cluster name "${cluster}" is invalid; use letters, digits and '_' (the name under <remote_servers>)`,
    );
  return cluster;
}

/**
 * The DDL of one shard server of cluster `cluster` (every statement idempotent): the single-server schema with each
 * table renamed `<table>_local`, views and fills moved onto the local tables, and a `Distributed` table under each
 * table's own name.
 */
export function shardedSchemaStatements(
  version: string,
  cluster: string,
  o: {
    /**
     * Local tables as `Replicated…MergeTree` at `/clickhouse/tables/{shard}/flashback/<table>_local`, replica
     * `{replica}` (macros of each server's config): every replica of a shard holds the shard's rows. Needs ZooKeeper.
     * @default false
     */
    replicated?: boolean;
  } = {},
): string[] {
  checkClusterName(cluster);
  const plain = schemaStatements(version);
  const tables = plain.map((s) => CREATE_TABLE.exec(s)?.[1]).filter((t): t is string => t !== undefined);
  const names = new RegExp(`\\b${DATABASE}\\.(${tables.join('|')})(?!\\w)`, 'g');
  const out: string[] = [];
  for (const statement of plain) {
    const table = CREATE_TABLE.exec(statement)?.[1];
    if (table === undefined) {
      // Materialized views and one-off fills read and write the shard's own rows.
      out.push(statement.replace(names, `${DATABASE}.$1_local`));
      continue;
    }
    let local = statement.replace(CREATE_TABLE, `CREATE TABLE IF NOT EXISTS ${DATABASE}.${table}_local (`);
    if (o.replicated)
      local = local.replace(/ENGINE = (\w*MergeTree)\(([^)]*)\)/, (_m, engine: string, args: string) => {
        const zkPath = `'/clickhouse/tables/{shard}/${DATABASE}/${table}_local'`;
        return `ENGINE = Replicated${engine}(${zkPath}, '{replica}'${args.trim() ? `, ${args.trim()}` : ''})`;
      });
    out.push(local);
    out.push(
      `CREATE TABLE IF NOT EXISTS ${DATABASE}.${table} AS ${DATABASE}.${table}_local ` +
        `ENGINE = Distributed(${cluster}, ${DATABASE}, ${table}_local, ${SHARDING_KEY})`,
    );
  }
  return out;
}

/**
 * The text of deploy/clickhouse/sharded/schema[-replicated]-<label>.sql: the shard DDL for `version`, one statement per
 * `;`.
 */
export function shardedSchemaFile(label: string, version: string, o: { replicated?: boolean } = {}): string {
  const cluster = 'flashback';
  const what = o.replicated ? 'each replica of each shard' : 'each shard server';
  const head =
    `-- flashback's DDL for ${what} of cluster "${cluster}" (ClickHouse ${label}), made by shardedSchemaFile in\n` +
    `-- core/store/sharded-schema.ts (test/clickhouse-shards.test.ts checks it). Apply on every server:\n` +
    `--   clickhouse-client --multiquery < this file\n` +
    (o.replicated
      ? `-- Each server's config names its ZooKeeper and its {shard} and {replica} macros (replica.xml).\n`
      : '') +
    '\n';
  return (
    head +
    shardedSchemaStatements(version, cluster, o)
      .map((s) => `${s};\n`)
      .join('\n')
  );
}
