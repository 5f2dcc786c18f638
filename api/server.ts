import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { openClickHouse, type ClickHouseAuth, type Store } from '../core/store/clickhouse.js';
import { ConfigError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { connectNats, type NatsAuthOptions } from '../core/bus/nats.js';
import { restoreInfra } from '../core/bus/restore-jobs.js';
import { buildApp } from './app.js';
import { loadJobKey, type JobKey } from '../core/bus/job-secret.js';
import { parseTargetAllow, type TargetAllowList } from '../core/redis/target-allow.js';
import { apiTokensFromEnv, parseApiTokens, type ApiToken } from './auth.js';
import { natsJobClient, type ApiDeps } from './deps.js';

/** Options of {@link startApi}. */
export interface ApiOptions {
  /** TCP port; 0 picks a free one. @default 7480 (as `flashback up`) */
  port?: number;
  /** Interface to listen on. @default '127.0.0.1' */
  host?: string;
  natsUrl: string;
  clickhouseUrl: string;
  /** NATS credentials and TLS (docs/security.md). @default none */
  natsAuth?: NatsAuthOptions;
  /** ClickHouse user and password; override any in the URL. @default the URL's */
  clickhouseAuth?: ClickHouseAuth;
  /**
   * Credentials of a ClickHouse user whose profile enforces readonly=1 and the limits of user SQL
   * (CLICKHOUSE_SQL_USER): `POST /sql` then runs as that user, with the server's limits. @default user SQL runs as
   * `clickhouseAuth` with per-query readonly=1 and the sqlMax* limits
   */
  clickhouseSqlAuth?: ClickHouseAuth;
  /**
   * Accepted bearer tokens, each `read:T`, `restore:T`, `admin:T` or `T` (admin) (api/auth.ts).
   * @default FLASHBACK_API_TOKENS (comma-separated), else the file FLASHBACK_API_TOKENS_FILE
   */
  tokens?: readonly (string | ApiToken)[];
  /** Hosts a restore target may be: `--target-allow` entries (core/redis/target-allow.ts). @default loopback */
  targetAllow?: string | readonly string[] | TargetAllowList;
  /** The restorers' export dir when it is on this host (symlinked `rdb` names are refused here too). @default none */
  exportDir?: string;
  /** Key shared with the restorers for secrets in jobs (core/bus/job-secret.ts). @default FLASHBACK_JOB_KEY_FILE */
  jobKey?: JobKey;
  /** Largest request body, bytes. @default 262_144 */
  maxBodyBytes?: number;
  /** Largest answer of `POST /sql`, bytes. @default 8_388_608 */
  sqlMaxBytes?: number;
  /** `POST /sql` queries running at once. @default 4 */
  sqlConcurrency?: number;
  /** @default silent */
  logger?: Logger;
  /** Upper bound of rows of `POST /sql`. @default 10_000 */
  sqlMaxRows?: number;
  /** Time limit of `POST /sql`, seconds. @default 30 */
  sqlMaxSeconds?: number;
  /** History retention, ms, shown by `GET /nodes`. @default unknown */
  retentionMs?: number;
  /** More registries for `GET /metrics` (`flashback up`: the other services of the process). @default none */
  metrics?: ApiDeps['metrics'];
}

/** A running API server. */
export interface Api {
  readonly port: number;
  /** `http://host:port`. */
  readonly url: string;
  /** Stops listening, closes NATS and ClickHouse. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Connects to ClickHouse and NATS, creates the restore-job stream and buckets, and serves {@link buildApp} over HTTP.
 */
export async function startApi(o: ApiOptions): Promise<Api> {
  const { port = 7480, host = '127.0.0.1', natsUrl, clickhouseUrl, logger = silentLogger } = o;
  const tokens = parseApiTokens(o.tokens ?? apiTokensFromEnv());
  const targetAllow =
    typeof o.targetAllow === 'object' && 'allows' in o.targetAllow ? o.targetAllow : parseTargetAllow(o.targetAllow);
  const jobKey = loadJobKey({ key: o.jobKey });
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new ConfigError(`API port ${port} is not a port number; use 0–65535 (0 picks a free one)`);
  const store = await openStores(clickhouseUrl, o.clickhouseAuth, o.clickhouseSqlAuth);
  let nc;
  try {
    nc = await connectNats({ url: natsUrl, name: 'flashback-api', logger, auth: o.natsAuth });
    await restoreInfra(nc);
  } catch (err) {
    await nc?.close();
    await store.close();
    throw err;
  }
  const deps: ApiDeps = {
    store,
    jobs: natsJobClient(nc),
    tokens,
    logger,
    sqlMaxRows: o.sqlMaxRows,
    sqlMaxSeconds: o.sqlMaxSeconds,
    retentionMs: o.retentionMs,
    metrics: o.metrics,
    targetAllow,
    exportDir: o.exportDir,
    jobKey,
    maxBodyBytes: o.maxBodyBytes,
    sqlMaxBytes: o.sqlMaxBytes,
    sqlConcurrency: o.sqlConcurrency,
    sqlClient: store.sqlClient,
  };
  const app = buildApp(deps);
  let server: ServerType;
  const address = await new Promise<AddressInfo>((resolve, reject) => {
    server = serve({ fetch: app.fetch, port, hostname: host }, (info) => resolve(info));
    server.once('error', reject);
  }).catch(async (err: unknown) => {
    await nc.close();
    await store.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      `cannot listen on ${host}:${port}${code === 'EADDRINUSE' ? ': the port is taken; pick another with --port' : ''}`,
      { cause: err },
    );
  });
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  logger.info(
    {
      url,
      tokens: tokens.length,
      scopes: [...new Set(tokens.map((t) => t.scope))],
      targetAllow: targetAllow.entries,
      jobKey: jobKey !== undefined,
    },
    'API listening',
  );
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await nc.drain().catch(() => nc.close());
      await store.close();
    })());
  return { port: address.port, url, close, [Symbol.asyncDispose]: close };
}

/** The API's store; with `sqlAuth`, user SQL goes through a second client logged in as that (read-only) user. */
async function openStores(
  url: string,
  auth: ClickHouseAuth | undefined,
  sqlAuth: ClickHouseAuth | undefined,
): Promise<Store & { sqlClient: NonNullable<ApiDeps['sqlClient']> }> {
  const main = await openClickHouse(url, { ...auth });
  if (!sqlAuth) return { ...main, sqlClient: { client: main.client, serverLimits: false } };
  const sql = await openClickHouse(url, { ...sqlAuth, serverLimits: true }).catch(async (err: unknown) => {
    await main.close();
    throw err;
  });
  const close = async () => {
    await sql.close();
    await main.close();
  };
  return {
    ...main,
    readOnlySql: sql.readOnlySql,
    sqlClient: { client: sql.client, serverLimits: true },
    close,
    [Symbol.asyncDispose]: close,
  };
}
